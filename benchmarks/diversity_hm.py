"""Diversity against accuracy on real data: the blend reranked by ``models.diversity.diversify``
at a few levels, on the H&M sample.

Runs the evaluation harness (:mod:`training.evaluate`, protocol ``last_day``, the same folds and
sources as ``benchmarks/offline_hm.py``) with the blend only, and adds one method per diversity
level: the blend's ranked list (fused, topped up with popularity) cut to the service's pool of
``candidate_pool(12) = 24`` and reranked down to 12 by the same function the service calls.
Per level, over the same customers (paired): MAP@12, its difference to the plain blend, the
intra-list diversity (ILD: mean pairwise attribute dissimilarity ``1 - similarity`` of a list's 12
items, the similarity being :class:`models.diversity.ItemSimilarity`: the cosine of weighted
one-hot product type, colour, material, pattern, styles and category) and the number of distinct
product types and colours per list, each with a 95 % percentile-bootstrap interval over customers
(:func:`training.metrics.bootstrap_interval`); and the rerank's CPU time per list.

    python benchmarks/diversity_hm.py var/diversity_hm            # 6 folds, ~4 min on 2 cores
    python benchmarks/diversity_hm.py var/diversity_hm --folds 3 --levels 0,0.5,1
"""

from __future__ import annotations

import argparse
import logging
import shlex
import sys
import time
import warnings
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from feature_store.schema import ItemCols  # noqa: E402
from models.base import IntArray  # noqa: E402
from models.diversity import (  # noqa: E402
    ItemSimilarity,
    candidate_pool,
    diversify_rows,
    intra_list_diversity,
)
from training.evaluate import (  # noqa: E402
    load_for_evaluation,
    prepare,
    preset_config,
    run_evaluation,
)
from training.metrics import bootstrap_interval  # noqa: E402
from training.report import markdown_table  # noqa: E402

HM = REPO.parent / "shared" / "data" / "hm_neo4j_customer_sample"


def rerank(
    rows: IntArray,
    *,
    k: int,
    level: float,
    similarity: ItemSimilarity,
    clock: dict[float, list[float]],
) -> IntArray:
    """The service's rerank of each ranked row: its first ``candidate_pool(k)`` items → ``k``
    (the time spent and the lists reranked are added to ``clock[level]``)."""
    t0 = time.perf_counter()
    out = diversify_rows(rows[:, : candidate_pool(k)], k, level, similarity)
    spent = clock.setdefault(level, [0.0, 0.0])
    spent[0] += time.perf_counter() - t0
    spent[1] += len(rows)
    return out


def distinct(lists: IntArray, codes: IntArray) -> IntArray:
    """Distinct known values of ``codes`` per list (``-1`` items and unknown codes ignored)."""
    out = np.zeros(len(lists), dtype=np.int64)
    for r, row in enumerate(lists):
        values = codes[row[row >= 0]]
        out[r] = len(set(values[values >= 0].tolist()))
    return out


def mean_ci(values: np.ndarray, n_boot: int, seed: int) -> str:
    low, high = bootstrap_interval(np.mean, values, n_resamples=n_boot, seed=seed)
    return f"{values.mean():.4f} [{low:.4f}, {high:.4f}]"


def paired_difference(a: np.ndarray, b: np.ndarray, n_boot: int, seed: int) -> str:
    def mean_difference(x: np.ndarray, y: np.ndarray, axis: int = -1) -> np.ndarray:
        return np.mean(x - y, axis=axis)

    low, high = bootstrap_interval(mean_difference, a, b, n_resamples=n_boot, seed=seed)
    return f"{(a - b).mean():+.4f} [{low:+.4f}, {high:+.4f}]"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, nargs="?", help="folder for report.md")
    parser.add_argument("--data", type=Path, default=HM)
    parser.add_argument("--folds", type=int, default=6)
    parser.add_argument("--levels", default="0,0.25,0.5,0.75,1")
    parser.add_argument("--n-boot", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    for noisy in ("lookbook.models", "lookbook.data", "pytorch_lightning", "lightning"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", category=UserWarning)
    if not args.data.exists():
        print(f"skipping: {args.data} not found")
        return 1
    command = "python benchmarks/diversity_hm.py " + " ".join(
        shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:])
    )
    levels = [float(v) for v in args.levels.split(",")]
    start = time.perf_counter()
    dataset, _ = load_for_evaluation(args.data)
    prepared = prepare(dataset, args.data.name)
    items = dataset.items.set_index(dataset.items[ItemCols.ID].astype(str))
    items = (
        items[~items.index.duplicated()].reindex(prepared.maps.items.ids()).reset_index(drop=True)
    )
    similarity = ItemSimilarity.from_frame(items)
    config = preset_config(
        "last_day",
        n_interactions=dataset.n_interactions,
        seed=args.seed,
        folds=args.folds,
        methods=("blend",),
        n_boot=args.n_boot,
    )
    k = config.k
    label = {level: f"div {level:g}" for level in levels}
    clock: dict[float, list[float]] = {}
    rerankers = {
        label[level]: partial(rerank, k=k, level=level, similarity=similarity, clock=clock)
        for level in levels
    }
    result = run_evaluation(prepared, config, name=args.data.name, rerankers=rerankers)
    blend = result.methods["blend"].ap
    if 0.0 in label:
        same = np.array_equal(result.predictions[label[0.0]], result.predictions["blend"])
        print(f"diversity 0 reproduces the blend's lists exactly: {same}")
    types = pd.factorize(items[ItemCols.PRODUCT_TYPE].astype("string"))[0].astype(np.int64)
    colours = pd.factorize(items[ItemCols.COLOUR].astype("string"))[0].astype(np.int64)
    rows = []
    for i, level in enumerate(levels):
        name = label[level]
        lists = result.predictions[name]
        ild = np.asarray([intra_list_diversity(row, similarity) for row in lists])
        ild = np.nan_to_num(ild, nan=0.0)
        ap = result.methods[name].ap
        seed = args.seed + i
        rows.append(
            [
                f"{level:g}",
                mean_ci(ap, args.n_boot, seed),
                paired_difference(ap, blend, args.n_boot, seed),
                mean_ci(ild, args.n_boot, seed),
                mean_ci(distinct(lists, types).astype(float), args.n_boot, seed),
                mean_ci(distinct(lists, colours).astype(float), args.n_boot, seed),
            ]
        )
    table = markdown_table(
        [
            "diversity",
            f"MAP@{k} [95% CI]",
            "Δ MAP vs blend [95% CI]",
            "ILD [95% CI]",
            "product types / list",
            "colours / list",
        ],
        rows,
    )
    # CPU time of the rerank per list (a pool of 24 → 12, this catalog's attributes)
    timing = markdown_table(
        ["diversity", f"rerank ms / list ({candidate_pool(k)} → {k})"],
        [
            [f"{level:g}", f"{clock[level][0] / max(clock[level][1], 1) * 1e3:.3f}"]
            for level in levels
            if level in clock
        ],
    )
    print(f"{result.dataset}: {len(result.users)} customers, {config.folds} folds, k={k}")
    print(table)
    print()
    print(timing)
    print(f"({time.perf_counter() - start:.0f}s)")
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        report = args.out / "report.md"
        report.write_text(
            "\n".join(
                [
                    "# Diversity against MAP@12 on the H&M sample",
                    "",
                    "Command:",
                    "",
                    "```",
                    command,
                    "```",
                    "",
                    f"{len(result.users)} customers, {config.folds} folds, k={k}.",
                    "",
                    table,
                    "",
                    timing,
                    "",
                ]
            )
        )
        print(f"report: {report}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
