"""Complete the look on real data: the complementary model against simple baselines, same run.

Sections (each skipped with a message when its data folder is absent):

* **Mango** (``mango_outfits_datathon2023``): 20 % of the outfits held out (seeded). For every held-out
  outfit one item is hidden and ranked against 3 random catalog items of the same category
  (fill-in-the-blank, FITB accuracy; random = 25 %), and the outfit is scored against a copy with
  that item swapped for a random same-category item (compatibility AUC). The model's
  hyper-parameters were chosen on a validation split carved from the training outfits
  (``--tune`` reruns that search and prints it); the test outfits are used once.
* **Polyvore Outfits, nondisjoint** (``polyvore_outfits_lzcn_processed``): FITB on the 10,000
  provided test questions and AUC on the provided test compatibility outfits, from metadata only
  (11 categories + fine categories; no images, no titles). Trained on the non-test outfits available
  (see :func:`feature_store.outfits.load_polyvore_nondisjoint`).
* **H&M** (``hm_neo4j_customer_sample``): complementary hits. At several cut-off dates, a model
  trained on the same-day baskets before the cut-off completes each customer's last basket before
  it; a hit is a customer whose next basket (first purchase day in the 4 weeks from the cut-off)
  contains a suggested item. Baselines: co-purchase (items bought the same day as the seed items
  before the cut-off) and popularity (the 28 days before the cut-off), both read from
  :class:`models.cooccurrence.CoOccurrence` as the model's blend is. The blend (co-occurrence and
  sales half-lives and weights, default or all slots) is chosen on the monthly validation
  cut-offs 2019-03 .. 2019-09 and measured once, inside the model
  (:meth:`ComplementaryModel.rank`), on the test cut-offs. No look-ahead.

Baselines: *random* (all candidates tie; FITB counts a tie as 1/ties), *category co-occurrence*
(PMI of the finest category level — product type — between outfit members), *attribute match*
(number of equal attribute values, e.g. colour, fabric, collection), *item popularity* (training
outfits containing the item) and *item co-occurrence* (training outfits containing both items).
On Mango the model's id settings are chosen on the validation split too (one fit per id dropout;
id weight, id shrinkage and attribute neighbours at scoring time, items without history backing
off to their product code's seen items; the best FITB on unseen answers among the settings within
1 point of the best FITB, averaged over 10 question draws).

    .venv/bin/python benchmarks/complete_the_look.py [--data-root ../shared/data] [--seed 0]
        [--sections mango,polyvore,hm] [--threads 1] [--tune]

Prints Markdown tables; writes nothing.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
import numpy.typing as npt
import pandas as pd
import scipy.sparse as sp
from scipy.stats import rankdata

from feature_store.outfits import (
    MANGO_FOLDER,
    POLYVORE_FOLDER,
    FITBQuestions,
    Outfits,
    baskets_from_dataset,
    load_mango_outfits,
    load_polyvore_nondisjoint,
    split_outfits,
)
from feature_store.schema import InteractionCols, ItemCols
from models.complementary import ComplementaryModel
from models.cooccurrence import CoOccurrence
from training.report import markdown_table

logger = logging.getLogger("lookbook.benchmarks")
REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO.parent / "shared" / "data"
HM_FOLDER = "hm_neo4j_customer_sample"

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float32]

# Chosen on the Mango validation split (see --tune); the test split never informed them.
MANGO_PARAMS: dict[str, Any] = {
    "dim": 64,
    "attr_dim": 16,
    "hidden": 128,
    "epochs": 20,
    "negatives": 32,
    "id_dropout": 0.5,
    "attribute_dropout": 0.2,
    "lr": 3e-3,
    "set_aggregate": "min",
}
# The id part searched on the Mango validation split (one fit per id dropout, every scoring
# setting without refitting): id dropout x id weight x id shrinkage x attribute neighbours, the
# items of a product code (the same garment in other colours) always backing off to each other.
# Chosen: the best FITB on items unseen in the fitting outfits among the settings within
# MANGO_FITB_SLACK of the best overall FITB, both averaged over MANGO_VALID_DRAWS question draws.
MANGO_GROUP_COLUMN = ItemCols.PRODUCT_CODE
MANGO_ID_DROPOUTS: tuple[float, ...] = (0.5, 0.25)
MANGO_ID_WEIGHTS: tuple[float, ...] = (1.0, 0.5, 0.25, 0.0)
MANGO_ID_SHRINKAGES: tuple[float, ...] = (0.0, 3.0, 10.0, 30.0)
MANGO_ID_NEIGHBOURS: tuple[int, ...] = (0, 10)
MANGO_VALID_DRAWS = 10
MANGO_FITB_SLACK = 0.01
POLYVORE_PARAMS: dict[str, Any] = {**MANGO_PARAMS, "epochs": 8}
HM_PARAMS: dict[str, Any] = {**MANGO_PARAMS, "epochs": 10}
MANGO_TUNE_GRID: list[dict[str, Any]] = [
    {},
    {"epochs": 10},
    {"epochs": 30},
    {"attribute_dropout": 0.0},
    {"attribute_dropout": 0.1},
    {"id_dropout": 0.25},
    {"id_dropout": 0.75},
    {"dim": 32},
]


# ------------------------------------------------------------------------------------ scorers


class Scorer(Protocol):
    def score_candidates(
        self, context: Sequence[int] | IntArray, candidates: Sequence[int] | IntArray
    ) -> FloatArray: ...

    def compatibility(self, item_indices: Sequence[int] | IntArray) -> float: ...


class PairBaseline:
    """A baseline defined by a pairwise score: candidates by mean score with the context, sets by
    the mean over their pairs (``set_aggregate="min"``: the weakest item's mean, as the model)."""

    def __init__(self, pair: Callable[[IntArray, IntArray], FloatArray], aggregate: str = "mean"):
        self.pair = pair
        self.aggregate = aggregate

    def score_candidates(
        self, context: Sequence[int] | IntArray, candidates: Sequence[int] | IntArray
    ) -> FloatArray:
        ctx = np.asarray(context, dtype=np.int64)
        return self.pair(ctx, np.asarray(candidates, dtype=np.int64)).mean(axis=0)

    def compatibility(self, item_indices: Sequence[int] | IntArray) -> float:
        idx = np.asarray(item_indices, dtype=np.int64)
        pairs = self.pair(idx, idx)
        off = ~np.eye(len(idx), dtype=bool)
        if self.aggregate == "min":
            return float(((pairs * off).sum(1) / (len(idx) - 1)).min())
        return float(pairs[off].mean())


class ItemPopularity:
    """Training sets containing the item (log); a set scores the mean of its items."""

    def __init__(self, sets: Outfits, n_items: int):
        self.score = np.log1p(np.bincount(sets.indices, minlength=n_items)).astype(np.float32)

    def score_candidates(
        self, context: Sequence[int] | IntArray, candidates: Sequence[int] | IntArray
    ) -> FloatArray:
        return self.score[np.asarray(candidates, dtype=np.int64)]

    def compatibility(self, item_indices: Sequence[int] | IntArray) -> float:
        return float(self.score[np.asarray(item_indices, dtype=np.int64)].mean())


def random_baseline() -> PairBaseline:
    return PairBaseline(lambda a, b: np.zeros((len(a), len(b)), dtype=np.float32))


def _incidence(sets: Outfits, n_items: int) -> sp.csr_matrix:
    rows = np.repeat(np.arange(len(sets)), sets.sizes())
    matrix = sp.csr_matrix(
        (np.ones(len(rows), dtype=np.float32), (rows, sets.indices)), shape=(len(sets), n_items)
    )
    matrix.sum_duplicates()
    matrix.data[:] = 1.0
    return matrix


def item_cooccurrence(sets: Outfits, n_items: int) -> PairBaseline:
    x = _incidence(sets, n_items)
    together = (x.T @ x).tocsr()

    def pair(a: IntArray, b: IntArray) -> FloatArray:
        return np.log1p(together[a][:, b].toarray()).astype(np.float32)

    return PairBaseline(pair)


def category_cooccurrence(sets: Outfits, levels: Sequence[Any]) -> PairBaseline:
    """PMI of the item *level* (e.g. product type) between members of the training sets."""
    codes, _ = pd.factorize(pd.Series(list(levels), dtype=object).fillna("<missing>"))
    codes = codes.astype(np.int64)
    n_levels = int(codes.max()) + 1
    x = _incidence(sets, len(codes))
    per_set = (
        x
        @ sp.csr_matrix(
            (np.ones(len(codes), dtype=np.float32), (np.arange(len(codes)), codes)),
            shape=(len(codes), n_levels),
        )
    ).tocsr()
    per_set.data[:] = 1.0
    together = (per_set.T @ per_set).toarray() + 1.0
    totals = np.asarray(per_set.sum(axis=0)).reshape(-1) + 1.0
    pmi = np.log(together * (len(sets) + 1.0) / np.outer(totals, totals)).astype(np.float32)

    def pair(a: IntArray, b: IntArray) -> FloatArray:
        return pmi[codes[a]][:, codes[b]]

    return PairBaseline(pair)


def attribute_match(items: pd.DataFrame, columns: Sequence[str]) -> PairBaseline:
    """Number of equal (known) attribute values between two items."""
    cols = [c for c in columns if c in items.columns]
    codes = np.stack(
        [pd.factorize(items[c].astype(object).where(items[c].notna(), None))[0] for c in cols],
        axis=1,
    ).astype(np.int64)

    def pair(a: IntArray, b: IntArray) -> FloatArray:
        ca, cb = codes[a][:, None, :], codes[b][None, :, :]
        return ((ca == cb) & (ca >= 0)).sum(-1).astype(np.float32)

    return PairBaseline(pair)


# ---------------------------------------------------------------------------------- protocols


def fitb_accuracy(scores: npt.NDArray[np.floating[Any]], answer: IntArray) -> float:
    """Mean over questions of 1/ties when the answer is among the top-scored candidates."""
    best = scores.max(axis=1, keepdims=True)
    tied = np.isclose(scores, best, rtol=0.0, atol=1e-7) | (scores == best)
    right = tied[np.arange(len(answer)), answer]
    return float(np.mean(right / tied.sum(axis=1)))


def auc(positive: Sequence[float], negative: Sequence[float]) -> float:
    """ROC AUC (ties count one half)."""
    pos, neg = np.asarray(positive, np.float64), np.asarray(negative, np.float64)
    ranks = rankdata(np.concatenate([pos, neg]))
    return float((ranks[: len(pos)].sum() - len(pos) * (len(pos) + 1) / 2) / (len(pos) * len(neg)))


@dataclass
class Questions:
    fitb: FITBQuestions
    swapped: Outfits  # each held-out outfit with its blank replaced by a random negative
    outfits: Outfits


def make_questions(outfits: Outfits, groups: npt.NDArray[Any], *, seed: int) -> Questions:
    """One FITB question per outfit (blank and 3 negatives of the blank's group, drawn from the
    whole catalog, never members of the outfit) and its one-swapped copy for the AUC."""
    rng = np.random.default_rng(seed)
    codes, _ = pd.factorize(pd.Series(groups, dtype=object))
    members = {g: np.flatnonzero(codes == g) for g in np.unique(codes)}
    contexts, candidates, swapped, kept = [], [], [], []
    for r, outfit in enumerate(outfits):
        if len(outfit) < 2:
            continue
        blank = int(rng.integers(len(outfit)))
        pool = members[codes[outfit[blank]]]
        if len(pool) - np.isin(pool, outfit).sum() < 3:
            continue
        negs: list[int] = []
        while len(negs) < 3:
            pick = int(pool[rng.integers(len(pool))])
            if pick not in outfit and pick not in negs:
                negs.append(pick)
        contexts.append(np.delete(outfit, blank))
        candidates.append([int(outfit[blank]), *negs])
        copy = outfit.copy()
        copy[blank] = negs[0]
        swapped.append(copy)
        kept.append(r)
    fitb = FITBQuestions(
        context=Outfits.from_lists(contexts),
        candidates=np.asarray(candidates, dtype=np.int64).reshape(-1, 4),
        answer=np.zeros(len(contexts), dtype=np.int64),
    )
    return Questions(fitb=fitb, swapped=Outfits.from_lists(swapped), outfits=outfits.subset(kept))


def fitb_scores(scorer: Scorer, questions: FITBQuestions) -> FloatArray:
    return np.stack(
        [
            scorer.score_candidates(questions.context[q], questions.candidates[q])
            for q in range(len(questions))
        ]
    ).astype(np.float32)


def evaluate(
    scorer: Scorer,
    q: Questions,
    *,
    cold: npt.NDArray[np.bool_] | None = None,
) -> dict[str, float]:
    scores = fitb_scores(scorer, q.fitb)
    out = {"fitb": fitb_accuracy(scores, q.fitb.answer)}
    if cold is not None and cold.any():
        out["fitb_cold"] = fitb_accuracy(scores[cold], q.fitb.answer[cold])
    pos = [scorer.compatibility(o) for o in q.outfits]
    neg = [scorer.compatibility(o) for o in q.swapped]
    out["auc"] = auc(pos, neg)
    return out


def pct(x: float | None) -> str:
    return "–" if x is None or np.isnan(x) else f"{100 * x:.1f} %"


# ------------------------------------------------------------------------------------- Mango


def run_mango(root: Path, seed: int, threads: int, tune: bool) -> None:
    print(f"\n## Mango outfits ({root / MANGO_FOLDER})\n")
    t0 = time.perf_counter()
    data = load_mango_outfits(root)
    parts = split_outfits(data.splits["all"], {"train": 0.8, "test": 0.2}, seed=seed)
    train, test = parts["train"], parts["test"]
    groups = data.items[data.negative_group].astype(str).to_numpy()
    print(
        f"{data.n_items} products, {len(data.splits['all'])} outfits: {len(train)} train, "
        f"{len(test)} test (seed {seed}); FITB candidates: 3 random catalog items of the "
        f"blank's category\n"
    )
    if tune:
        tune_mango(data, train, groups, seed, threads)
    chosen = choose_id_scoring(data, train, groups, seed, threads)

    questions = make_questions(test, groups, seed=seed + 101)
    seen = np.zeros(data.n_items, dtype=bool)
    seen[train.indices] = True
    cold = ~seen[questions.fitb.candidates[:, 0]]
    rows: list[list[object]] = []

    def add(name: str, scorer: Scorer, seconds: float | None = None) -> None:
        res = evaluate(scorer, questions, cold=cold)
        rows.append(
            [
                name,
                pct(res["fitb"]),
                pct(res.get("fitb_cold")),
                f"{res['auc']:.3f}",
                "" if seconds is None else f"{seconds:.0f}",
            ]
        )

    for name, params in (
        ("complementary model (attributes + ids)", MANGO_PARAMS),
        (
            "complementary model (attributes + ids), id backoff",
            {**MANGO_PARAMS, "id_dropout": chosen.id_dropout, "group_column": MANGO_GROUP_COLUMN},
        ),
        ("complementary model, attributes only", {**MANGO_PARAMS, "use_ids": False}),
    ):
        t = time.perf_counter()
        model = ComplementaryModel(**params, seed=seed, threads=threads).fit(
            data.items, train, attributes=data.attributes, negative_group=data.negative_group
        )
        if "group_column" in params:
            model.set_id_weight(chosen.weight)
            model.set_id_backoff(chosen.shrinkage, chosen.neighbours)
            name = f"{name} ({chosen.label()})"
        add(name, model, time.perf_counter() - t)
    columns = [ItemCols.COLOUR, "colour_detail", ItemCols.MATERIAL, "line", "collection"]
    add("baseline: random", random_baseline())
    add(
        "baseline: category co-occurrence (product type PMI)",
        category_cooccurrence(train, data.items[ItemCols.PRODUCT_TYPE].tolist()),
    )
    add(f"baseline: attribute match ({', '.join(columns)})", attribute_match(data.items, columns))
    add("baseline: item popularity (in training outfits)", ItemPopularity(train, data.n_items))
    add("baseline: item co-occurrence", item_cooccurrence(train, data.n_items))
    print(
        markdown_table(
            ["method", "FITB", f"FITB, unseen answer (n={int(cold.sum())})", "AUC", "fit s"],
            rows,
        )
    )
    print(
        f"\n{len(questions.fitb)} FITB questions / AUC pairs; targets FITB >= 60 %, AUC >= 0.85; "
        f"{time.perf_counter() - t0:.0f} s"
    )


@dataclass(frozen=True)
class IdScoring:
    """The id part of the Mango model: training id dropout and the scoring-time settings."""

    id_dropout: float
    weight: float
    shrinkage: float
    neighbours: int

    def label(self) -> str:
        return (
            f"id dropout {self.id_dropout:g}, id weight {self.weight:g}, shrinkage "
            f"{self.shrinkage:g}, {self.neighbours} attribute neighbours"
        )


def choose_id_scoring(
    data: Any, train: Outfits, groups: npt.NDArray[Any], seed: int, threads: int
) -> IdScoring:
    """The id settings chosen on a validation split carved from the training outfits (as
    ``--tune``): one fit per id dropout of :data:`MANGO_ID_DROPOUTS`, every weight, shrinkage
    and neighbour count scored on :data:`MANGO_VALID_DRAWS` question draws (different blanks
    and negatives) over the validation outfits."""
    parts = split_outfits(train, {"fit": 0.875, "valid": 0.125}, seed=seed + 1)
    draws = [
        make_questions(parts["valid"], groups, seed=seed + 202 + k)
        for k in range(MANGO_VALID_DRAWS)
    ]
    seen = np.zeros(data.n_items, dtype=bool)
    seen[parts["fit"].indices] = True
    colds = [~seen[q.fitb.candidates[:, 0]] for q in draws]
    results: dict[IdScoring, tuple[float, float]] = {}
    for dropout in MANGO_ID_DROPOUTS:
        params = {**MANGO_PARAMS, "id_dropout": dropout, "group_column": MANGO_GROUP_COLUMN}
        model = ComplementaryModel(**params, seed=seed, threads=threads).fit(
            data.items, parts["fit"], attributes=data.attributes, negative_group=data.negative_group
        )
        for weight in MANGO_ID_WEIGHTS:
            model.set_id_weight(weight)
            for shrinkage in MANGO_ID_SHRINKAGES:
                for neighbours in MANGO_ID_NEIGHBOURS:
                    setting = IdScoring(dropout, weight, shrinkage, neighbours)
                    if weight == 0.0 and (shrinkage, neighbours) != (0.0, 0):
                        continue  # the attributes alone: the id settings change nothing
                    model.set_id_backoff(shrinkage, neighbours)
                    accuracy, unseen = [], []
                    for q, cold in zip(draws, colds, strict=True):
                        scores = fitb_scores(model, q.fitb)
                        accuracy.append(fitb_accuracy(scores, q.fitb.answer))
                        unseen.append(fitb_accuracy(scores[cold], q.fitb.answer[cold]))
                    results[setting] = (float(np.mean(accuracy)), float(np.mean(unseen)))
    best_all = max(r[0] for r in results.values())
    eligible = [k for k, r in results.items() if r[0] >= best_all - MANGO_FITB_SLACK]
    chosen = max(eligible, key=lambda k: (results[k][1], results[k][0]))
    # the 8 best eligible settings, then those without shrinkage or neighbours (as before)
    ranked = sorted(eligible, key=lambda k: (-results[k][1], -results[k][0]))[:8]
    plain = [k for k in results if k.shrinkage == 0.0 and k.neighbours == 0]
    print(
        f"Validation of the id settings (carved from the training outfits; mean of "
        f"{len(draws)} question draws; {len(results)} settings; best FITB "
        f"{pct(best_all)}; chosen: {chosen.label()}):\n"
    )
    print(
        markdown_table(
            [
                "id dropout",
                "id weight",
                "shrinkage",
                "neighbours",
                "FITB",
                f"FITB, unseen answer (n={int(np.mean([c.sum() for c in colds])):d} per draw)",
                f"within {100 * MANGO_FITB_SLACK:g} pt",
            ],
            [
                [
                    f"{k.id_dropout:g}",
                    f"{k.weight:g}",
                    f"{k.shrinkage:g}",
                    k.neighbours,
                    pct(results[k][0]),
                    pct(results[k][1]),
                    "yes" if k in eligible else "",
                ]
                for k in dict.fromkeys([*ranked, *plain])
            ],
        )
    )
    print()
    return chosen


def tune_mango(
    data: Any, train: Outfits, groups: npt.NDArray[Any], seed: int, threads: int
) -> None:
    parts = split_outfits(train, {"fit": 0.875, "valid": 0.125}, seed=seed + 1)
    questions = make_questions(parts["valid"], groups, seed=seed + 202)
    rows: list[list[object]] = []
    for change in MANGO_TUNE_GRID:
        params = {**MANGO_PARAMS, **change}
        model = ComplementaryModel(**params, seed=seed, threads=threads).fit(
            data.items, parts["fit"], attributes=data.attributes, negative_group=data.negative_group
        )
        res_min = evaluate(model, questions)
        model.set_aggregate = "mean"
        res_mean = evaluate(model, questions)
        rows.append(
            [
                ", ".join(f"{k}={v}" for k, v in change.items()) or "(chosen settings)",
                pct(res_min["fitb"]),
                f"{res_min['auc']:.3f}",
                f"{res_mean['auc']:.3f}",
            ]
        )
    print("Validation (carved from the training outfits):\n")
    print(markdown_table(["change", "FITB", "AUC (min)", "AUC (mean)"], rows))
    print()


# ---------------------------------------------------------------------------------- Polyvore


def run_polyvore(root: Path, seed: int, threads: int) -> None:
    print(f"\n## Polyvore Outfits, nondisjoint ({root / POLYVORE_FOLDER}), metadata only\n")
    t0 = time.perf_counter()
    data = load_polyvore_nondisjoint(root)
    train = data.splits["train"].concat(data.splits["valid"])
    fitb = data.fitb["test"]
    compat = data.compatibility["test"]
    print(
        f"{data.n_items} items; trained on {len(train)} outfits (rebuilt train + valid); "
        f"{len(fitb)} test FITB questions; {len(compat)} test compatibility outfits\n"
    )
    seen = np.zeros(data.n_items, dtype=bool)
    seen[train.indices] = True
    cold = ~seen[fitb.candidates[:, 0]]
    pos_rows = np.flatnonzero(compat.labels == 1)
    neg_rows = np.flatnonzero(compat.labels == 0)
    rows: list[list[object]] = []

    def add(name: str, scorer: Scorer, seconds: float | None = None) -> None:
        scores = fitb_scores(scorer, fitb)
        acc = fitb_accuracy(scores, fitb.answer)
        acc_cold = fitb_accuracy(scores[cold], fitb.answer[cold])
        pos = [scorer.compatibility(compat.outfits[int(r)]) for r in pos_rows]
        neg = [scorer.compatibility(compat.outfits[int(r)]) for r in neg_rows]
        rows.append(
            [
                name,
                pct(acc),
                pct(acc_cold),
                f"{auc(pos, neg):.3f}",
                "" if seconds is None else f"{seconds:.0f}",
            ]
        )

    t = time.perf_counter()
    model = ComplementaryModel(**POLYVORE_PARAMS, seed=seed, threads=threads).fit(
        data.items, train, attributes=data.attributes, negative_group=data.negative_group
    )
    add("complementary model (categories + ids)", model, time.perf_counter() - t)
    add("baseline: random", random_baseline())
    add(
        "baseline: category co-occurrence (fine category PMI)",
        category_cooccurrence(train, data.items["fine_type"].tolist()),
    )
    add("baseline: attribute match (fine category)", attribute_match(data.items, ["fine_type"]))
    add("baseline: item popularity (in training outfits)", ItemPopularity(train, data.n_items))
    add("baseline: item co-occurrence", item_cooccurrence(train, data.n_items))
    print(
        markdown_table(
            [
                "method",
                "FITB (provided questions)",
                f"FITB, unseen answer (n={int(cold.sum())})",
                "compat. AUC (provided)",
                "fit s",
            ],
            rows,
        )
    )
    print(f"\n{time.perf_counter() - t0:.0f} s")


# ---------------------------------------------------------------------------------------- H&M


HM_TEST_CUTOFFS = (
    "2019-10-01",
    "2019-12-01",
    "2020-01-31",
    "2020-04-01",
    "2020-06-01",
    "2020-08-01",
)
# validation cut-offs: every month whose 4-week window ends before the first test cut-off
HM_VALID_CUTOFFS = tuple(
    str(d.date()) for d in pd.date_range("2019-03-01", "2019-09-01", freq="MS")
)
HM_HORIZON_DAYS = 28
# The blend searched on the validation cut-offs: co-occurrence half-life (days, None = no decay),
# popularity half-life (days), weights of log(1 + co-occurrence) and log(1 + popularity), slots.
HM_COOC_HALF_LIVES: tuple[float | None, ...] = (None, 180.0)
HM_POP_HALF_LIVES: tuple[float, ...] = (7.0, 28.0)
HM_COOC_WEIGHTS = (0.0, 0.5, 1.0, 2.0, 4.0)
HM_POP_WEIGHTS = (0.0, 0.5, 1.0, 2.0, 4.0)
HM_SLOTS = ("default", "all")


@dataclass(frozen=True)
class Blend:
    cooc_half_life: float | None
    pop_half_life: float
    cooc_weight: float
    pop_weight: float
    slots: str

    def label(self) -> str:
        life = "no decay" if self.cooc_half_life is None else f"half-life {self.cooc_half_life:g} d"
        return (
            f"{self.cooc_weight:g} x log(1 + co-occurrence, {life}) + {self.pop_weight:g} x "
            f"log(1 + sales, half-life {self.pop_half_life:g} d), {self.slots} slots"
        )


def _basket_ages(baskets: Outfits, cutoff: pd.Timestamp) -> npt.NDArray[np.float64]:
    """Age in days at ``cutoff`` of each basket (ids are ``"<customer>@<YYYY-MM-DD>"``)."""
    days = pd.to_datetime([i.rsplit("@", 1)[1] for i in baskets.ids], utc=True)
    return np.asarray((cutoff - days) / pd.Timedelta(days=1), dtype=np.float64)


def run_hm(root: Path, seed: int, threads: int) -> None:
    from feature_store.loaders import load_dataset

    folder = root / HM_FOLDER
    print(f"\n## H&M same-day baskets ({folder}): complementary hits\n")
    t0 = time.perf_counter()
    dataset = load_dataset(folder)
    items = dataset.items.reset_index(drop=True)
    n_items = len(items)
    inter = dataset.interactions
    item_index = pd.Index(items[ItemCols.ID].astype(str))
    frame = pd.DataFrame(
        {
            "customer": inter[InteractionCols.CUSTOMER_ID].astype(str).to_numpy(),
            "item": item_index.get_indexer(pd.Index(inter[InteractionCols.ITEM_ID].astype(str))),
            "ts": inter[InteractionCols.TIMESTAMP].to_numpy(),
        }
    )
    frame["ts"] = pd.to_datetime(frame["ts"], utc=True)
    names = items[ItemCols.NAME].astype(str).to_numpy()
    attributes = [ItemCols.PRODUCT_TYPE, ItemCols.COLOUR, ItemCols.PATTERN, ItemCols.PRICE_BAND]
    k_total = 12
    horizon = pd.Timedelta(days=HM_HORIZON_DAYS)
    valid_cutoffs = [pd.Timestamp(d, tz="UTC") for d in HM_VALID_CUTOFFS]
    test_cutoffs = [pd.Timestamp(d, tz="UTC") for d in HM_TEST_CUTOFFS]
    grid = [
        Blend(hc, hp, wc, wp, sl)
        for hc in HM_COOC_HALF_LIVES
        for hp in HM_POP_HALF_LIVES
        for wc in HM_COOC_WEIGHTS
        for wp in HM_POP_WEIGHTS
        for sl in HM_SLOTS
    ]
    # per cut-off, per method: [item hits, name hits, customers]
    Counts = dict[str, list[float]]

    def cutoff_state(cutoff: pd.Timestamp) -> dict[str, Any]:
        before = frame[frame["ts"] < cutoff]
        after = frame[(frame["ts"] >= cutoff) & (frame["ts"] < cutoff + horizon)]
        baskets = baskets_from_dataset(dataset, end=cutoff)
        ages = _basket_ages(baskets, cutoff)
        event_ages = (cutoff - before["ts"]).dt.total_seconds().to_numpy(dtype=np.float64) / 86400.0
        model = ComplementaryModel(**HM_PARAMS, seed=seed, threads=threads).fit(
            items, baskets, attributes=attributes
        )

        def stats(
            cooc_life: float | None, pop_life: float | None, window: float | None = None
        ) -> CoOccurrence:
            return CoOccurrence(
                half_life_days=cooc_life, popularity_half_life_days=pop_life, window_days=window
            ).fit(
                n_items,
                list(baskets),
                set_ages_days=ages,
                events=before["item"].to_numpy(dtype=np.int64),
                event_ages_days=event_ages,
            )

        # the baselines' statistics, from the same module: all baskets before the cut-off, sales of
        # the last 4 weeks
        plain = stats(None, None)
        recent = stats(None, None, window=float(HM_HORIZON_DAYS))
        first_day = after.groupby("customer")["ts"].min()
        next_basket = after[after["ts"] == after["customer"].map(first_day)]
        truth = {c: set(v.tolist()) for c, v in items_by(next_basket).items()}
        last_day = before.groupby("customer")["ts"].max()
        seeds_of = items_by(before[before["ts"] == before["customer"].map(last_day)])
        history = items_by(before)
        customers = [c for c in sorted(truth) if c in seeds_of]
        logger.info(
            "hm: cut-off %s: %d customers, %d baskets", cutoff.date(), len(customers), len(baskets)
        )
        return {
            "model": model, "stats": stats, "plain": plain, "recent": recent, "truth": truth,
            "seeds": seeds_of, "history": history, "customers": customers,
        }  # fmt: skip

    def tally(counts: Counts, method: str, picks: IntArray, actual: set[int]) -> None:
        c = counts.setdefault(method, [0.0, 0.0, 0.0])
        c[0] += float(bool(actual & set(picks.tolist())))
        c[1] += float(bool({names[i] for i in actual} & {names[i] for i in picks}))
        c[2] += 1.0

    def baselines(state: dict[str, Any], customer: str, counts: Counts) -> None:
        seeds, bought = state["seeds"][customer], state["history"][customer]
        actual = state["truth"][customer]
        popular = state["recent"].popularity_.astype(np.float64)
        lists = {
            "complementary model": _model_list(state["model"], seeds, bought, k_total),
            "co-purchase": _cooc_list(state["plain"], seeds, bought, popular, k_total),
            "popularity (last 4 weeks)": _top(popular, bought, k_total),
        }
        for method, picks in lists.items():
            tally(counts, method, picks, actual)

    # validation: the whole grid, from each customer's compatibility with every item (the formula
    # of ComplementaryModel.rank, evaluated once per customer)
    valid_counts: list[Counts] = []
    for cutoff in valid_cutoffs:
        state = cutoff_state(cutoff)
        model: ComplementaryModel = state["model"]
        per_stats = {
            (hc, hp): state["stats"](hc, hp)
            for hc in HM_COOC_HALF_LIVES
            for hp in HM_POP_HALF_LIVES
        }
        counts: Counts = {}
        all_items = np.arange(n_items)
        for customer in state["customers"]:
            seeds, bought = state["seeds"][customer], state["history"][customer]
            actual = state["truth"][customer]
            baselines(state, customer, counts)
            compat = model.pair_scores(seeds, all_items).mean(axis=0).astype(np.float64)
            slot_ok = {
                "default": np.isin(
                    model.item_category_,
                    [model.categories_.index(c) for c in model.slots(seeds)],
                ),
                "all": np.ones(n_items, dtype=bool),
            }
            logs = {
                key: (np.log1p(st.scores(seeds)), np.log1p(st.popularity_))
                for key, st in per_stats.items()
            }
            for blend in grid:
                co, pop = logs[(blend.cooc_half_life, blend.pop_half_life)]
                score = compat + blend.cooc_weight * co + blend.pop_weight * pop
                score[~slot_ok[blend.slots]] = -np.inf
                score[seeds] = -np.inf
                tally(counts, str(blend), _top(score, bought, k_total), actual)
        valid_counts.append(counts)

    def rate(results: list[Counts], method: str) -> tuple[float, float, int]:
        n = sum(r[method][2] for r in results)
        hits = sum(r[method][0] for r in results)
        names_hit = sum(r[method][1] for r in results)
        return hits / max(n, 1), names_hit / max(n, 1), int(n)

    best = max(grid, key=lambda b: (rate(valid_counts, str(b))[0], rate(valid_counts, str(b))[1]))
    logger.info("hm: chose %s", best)

    # test: the chosen blend inside the model (ComplementaryModel.rank), once
    test_counts: list[Counts] = []
    for cutoff in test_cutoffs:
        state = cutoff_state(cutoff)
        model = state["model"]
        counts = {}
        for customer in state["customers"]:  # the model without the blend, and the baselines
            baselines(state, customer, counts)
        blended = model
        blended.cooc_weight, blended.popularity_weight = best.cooc_weight, best.pop_weight
        blended.set_cooccurrence(state["stats"](best.cooc_half_life, best.pop_half_life))
        for customer in state["customers"]:
            seeds, bought = state["seeds"][customer], state["history"][customer]
            categories = None if best.slots == "default" else model.categories_
            picks, _ = blended.rank(seeds, k_total, categories=categories, exclude=bought)
            tally(counts, str(best), picks, state["truth"][customer])
        blended.set_cooccurrence(None)
        test_counts.append(counts)

    shown = {
        "complementary model": "complementary model (compatibility only)",
        str(best): f"complementary model + {best.label()}",
        "co-purchase": "baseline: co-purchase (same-day baskets)",
        "popularity (last 4 weeks)": "baseline: popularity (last 4 weeks)",
    }
    rows = []
    for key, label in shown.items():
        v_item, v_name, _ = rate(valid_counts, key)
        t_item, t_name, _ = rate(test_counts, key)
        rows.append([label, pct(v_item), pct(v_name), pct(t_item), pct(t_name)])
    n_valid = rate(valid_counts, "popularity (last 4 weeks)")[2]
    n_test = rate(test_counts, "popularity (last 4 weeks)")[2]
    print(
        markdown_table(
            [
                "method",
                f"valid: item (n={n_valid})",
                "valid: product name",
                f"test: item (n={n_test})",
                "test: product name",
            ],
            rows,
        )
    )
    runner_up = sorted(grid, key=lambda b: -rate(valid_counts, str(b))[0])[:5]
    print("\nBest blends on validation (item hit rate):\n")
    print(
        markdown_table(
            ["blend", "valid: item", "valid: product name"],
            [[b.label(), *map(pct, rate(valid_counts, str(b))[:2])] for b in runner_up],
        )
    )
    print(
        f"\nvalidation cut-offs {', '.join(HM_VALID_CUTOFFS)} (chose the blend among {len(grid)}); "
        f"test cut-offs {', '.join(HM_TEST_CUTOFFS)}. A hit: the customer's next basket (first "
        f"purchase day within {HM_HORIZON_DAYS} days of the cut-off) contains one of {k_total} "
        f"suggestions — the item itself, or (product name) an item of the same product name in any "
        f"colour. Seeds: the customer's last basket before the cut-off; items the customer bought "
        f"before are never suggested. {time.perf_counter() - t0:.0f} s"
    )


def items_by(frame: pd.DataFrame) -> dict[str, IntArray]:
    """The distinct items of each customer in ``frame``."""
    return {
        str(customer): np.unique(group.to_numpy(dtype=np.int64))
        for customer, group in frame.groupby("customer")["item"]
    }


def _top(scores: npt.NDArray[np.float64], banned: IntArray, k: int) -> IntArray:
    row = scores.astype(np.float64).copy()
    row[banned] = -np.inf
    order = np.lexsort((np.arange(len(row)), -row))[:k]
    return order[np.isfinite(row[order])].astype(np.int64)


def _cooc_list(
    together: CoOccurrence,
    seeds: IntArray,
    banned: IntArray,
    popular: npt.NDArray[np.float64],
    k: int,
) -> IntArray:
    scores = together.scores(seeds).astype(np.float64)
    scores[seeds] = 0.0
    # ties (and customers with no co-purchases) broken by recent popularity
    scores = scores + popular / (popular.max() + 1.0)
    return _top(scores, banned, k)


def _model_list(
    model: ComplementaryModel,
    seeds: IntArray,
    banned: IntArray,
    k: int,
) -> IntArray:
    """Interleave the slots (best slot first) until ``k`` items."""
    slots = model.complete(seeds, k_per_slot=k, exclude=banned)
    columns = [ids for ids, _ in slots.values() if len(ids)]
    picked: list[int] = []
    for rank in range(k):
        for ids in columns:
            if rank < len(ids) and len(picked) < k:
                picked.append(int(ids[rank]))
    return np.asarray(picked, dtype=np.int64)


# -------------------------------------------------------------------------------------- main


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-root", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--sections", default="mango,polyvore,hm")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    parser.add_argument("--tune", action="store_true", help="rerun the Mango validation search")
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING)
    root: Path = args.data_root
    if not root.is_dir():
        print(f"data folder {root} not found: nothing to evaluate (pass --data-root)")
        return 0
    wanted = [s.strip() for s in args.sections.split(",") if s.strip()]
    runners: dict[str, tuple[str, Callable[[], None]]] = {
        "mango": (MANGO_FOLDER, lambda: run_mango(root, args.seed, args.threads, args.tune)),
        "polyvore": (POLYVORE_FOLDER, lambda: run_polyvore(root, args.seed, args.threads)),
        "hm": (HM_FOLDER, lambda: run_hm(root, args.seed, args.threads)),
    }
    print(f"# Complete the look — seed {args.seed}, torch threads {args.threads}")
    for section in wanted:
        if section not in runners:
            print(f"unknown section {section!r} (known: {', '.join(runners)})")
            return 2
        folder, run = runners[section]
        if not (root / folder).is_dir():
            print(f"\n## {section}: {root / folder} not found, skipped")
            continue
        run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
