"""The evaluation harness: no look-ahead, metric and CI plumbing, reports, real-data smoke."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import shared_dataset

from feature_store.config import validate_config
from feature_store.dataset import Dataset
from feature_store.errors import DataFormatError
from feature_store.schema import CustomerCols, InteractionCols, ItemCols
from models.candidates import repeat_ranking, repurchase_ranking
from models.sequence import SequenceConfig
from training.evaluate import (
    BLEND_SOURCES,
    EvalConfig,
    EvaluationResult,
    fold_context,
    last_day_folds,
    prepare,
    preset_config,
    repeat_rates,
    run_evaluation,
    siblings_table,
    source_repeat,
    source_repurchase,
    source_siblings,
    write_report,
)
from training.split import last_day_holdout

FAST_LSTM = SequenceConfig(
    id_dim=8, feature_dim=4, hidden_dim=16, output_dim=8, epochs=2, num_threads=1, seed=1
)
FAST = EvalConfig(
    folds=3,
    depth=20,
    n_boot=200,
    min_validation_days=10,
    max_validation_days=20,
    sequence=FAST_LSTM,
    methods=("popularity", "repurchase", "als", "item_knn", "lstm", "blend", "ranker"),
    threads=1,
)


def synthetic_retailer(n_customers: int = 90, n_items: int = 40, seed: int = 0) -> Dataset:
    """Customers with a favourite category who buy on random days over 120 days, sometimes
    rebuying; deterministic."""
    rng = np.random.default_rng(seed)
    categories = ["top", "bottom", "dress", "shoes"]
    items = pd.DataFrame(
        {
            ItemCols.ID: [f"i{i}" for i in range(n_items)],
            ItemCols.NAME: [f"item {i}" for i in range(n_items)],
            ItemCols.CATEGORY: [categories[i % 4] for i in range(n_items)],
            ItemCols.COLOUR: [["black", "white", "red"][i % 3] for i in range(n_items)],
            ItemCols.PRICE: [5.0 + i for i in range(n_items)],
        }
    )
    rows = []
    start = pd.Timestamp("2024-01-01", tz="UTC")
    for c in range(n_customers):
        favourite = c % 4
        days = np.sort(rng.choice(120, size=int(rng.integers(2, 7)), replace=False))
        bought: list[int] = []
        for d in days:
            for _ in range(int(rng.integers(1, 4))):
                if bought and rng.random() < 0.3:
                    item = int(rng.choice(bought))
                else:
                    item = int(favourite + 4 * rng.integers(0, n_items // 4))
                bought.append(item)
                rows.append(
                    {
                        InteractionCols.CUSTOMER_ID: f"c{c}",
                        InteractionCols.ITEM_ID: f"i{item}",
                        InteractionCols.TYPE: "purchase",
                        InteractionCols.TIMESTAMP: start + pd.Timedelta(days=int(d)),
                        InteractionCols.SIZE: ["S", "M", "L"][c % 3],
                    }
                )
    interactions = pd.DataFrame(rows)
    customers = pd.DataFrame({CustomerCols.ID: [f"c{c}" for c in range(n_customers)]})
    return Dataset(items=items, interactions=interactions, customers=customers, source="synthetic")


@pytest.fixture(scope="module")
def retailer() -> Dataset:
    return synthetic_retailer()


@pytest.fixture(scope="module")
def result(retailer: Dataset) -> EvaluationResult:
    return run_evaluation(retailer, FAST, name="synthetic")


def test_every_method_is_measured_with_cis(result: EvaluationResult) -> None:
    assert set(result.methods) == set(FAST.methods)
    for method in result.methods.values():
        for mean, low, high in method.metrics.values():
            assert 0.0 <= low <= mean <= high <= 1.0
        assert 0.0 < method.coverage <= 1.0
        assert len(method.ap) == len(result.users)
    for preds in result.predictions.values():
        assert preds.shape == (len(result.users), FAST.k)
    assert "lstm/als" in result.ratios and any(r.startswith("blend/") for r in result.ratios)
    assert "synthetic" in result.table()


def test_no_training_event_on_or_after_any_cutoff(
    retailer: Dataset, result: EvaluationResult
) -> None:
    assert {a.kind for a in result.audits} == {"test", "validation"}
    timestamps = prepare(retailer).data.timestamps
    for audit in result.audits:
        audit.check()
        # the audit's figures are those of the data, recomputed here
        before = timestamps < audit.train_end
        assert audit.train_events == int(before.sum())
        assert audit.max_train_timestamp == int(timestamps[before].max())
        if audit.kind == "test":
            held_out = result.cutoffs[result.fold_of == audit.fold]
            assert audit.min_cutoff == int(held_out.min())
            assert int(timestamps[before].max()) < int(held_out.min())
        if audit.max_train_timestamp is not None and audit.min_cutoff is not None:
            assert audit.max_train_timestamp < audit.min_cutoff
        if audit.max_history_timestamp_minus_cutoff is not None:
            assert audit.max_history_timestamp_minus_cutoff < 0
        if audit.max_popularity_timestamp_minus_cutoff is not None:
            assert audit.max_popularity_timestamp_minus_cutoff < 0


def test_history_and_popularity_stop_before_the_cutoff(retailer: Dataset) -> None:
    prepared = prepare(retailer)
    folds = last_day_folds(prepared, FAST)
    for fold in folds:
        for user, cutoff in zip(fold.test.users, fold.test.cutoffs, strict=True):
            events = prepared.history(int(user), int(cutoff))
            assert (prepared.data.timestamps[events] < cutoff).all()
            assert (prepared.data.user_idx[events] == user).all()
            assert int(cutoff) >= fold.test.train_end


def test_the_future_does_not_change_anyones_recommendations(
    retailer: Dataset, result: EvaluationResult
) -> None:
    """Rewrite every event dated on or after customer u's cutoff (any customer's, including u's
    held-out day): u's recommendations, and those of everyone with an earlier cutoff, must not
    change for any method."""
    order = np.argsort(result.cutoffs, kind="stable")
    u_pos = int(order[len(order) * 2 // 3])
    cutoff = pd.Timestamp(int(result.cutoffs[u_pos]), unit="s", tz="UTC")
    changed = retailer.interactions.copy()
    future = changed[InteractionCols.TIMESTAMP] >= cutoff
    assert future.sum() > 5
    shifted = changed.loc[future, InteractionCols.ITEM_ID].str[1:].astype(int).add(13).mod(40)
    changed.loc[future, InteractionCols.ITEM_ID] = "i" + shifted.astype(str)
    perturbed = Dataset(
        items=retailer.items, interactions=changed, customers=retailer.customers, source="x"
    )
    again = run_evaluation(perturbed, FAST, name="synthetic")
    np.testing.assert_array_equal(again.users, result.users)
    np.testing.assert_array_equal(again.cutoffs, result.cutoffs)
    earlier = result.cutoffs <= result.cutoffs[u_pos]
    for method, preds in result.predictions.items():
        np.testing.assert_array_equal(again.predictions[method][earlier], preds[earlier], method)
    # the held-out truths did change for u, so the metrics are really computed on new answers
    assert any(not np.array_equal(a, b) for a, b in zip(again.truths, result.truths, strict=True))


def test_blend_weights_come_from_validation_only(retailer: Dataset) -> None:
    """A fold's weights are fitted on its validation period, before its training end: rewriting
    every event on or after that end — all of the fold's held-out test days among them — leaves
    the weights of that fold (and of earlier folds) unchanged."""
    config = FAST.replace(methods=("popularity", "repurchase", "als", "lstm", "blend"))
    base = run_evaluation(retailer, config, name="synthetic")
    fitted = [f for f, w in enumerate(base.blend_weights) if w.fitted]
    assert fitted
    fold = fitted[0]
    # the fold's training end, computed from the holdout alone: its earliest customer's cutoff
    _, _, cutoffs = last_day_holdout(retailer.interactions, type_col=InteractionCols.TYPE)
    ordered = np.sort([int(c.timestamp()) for c in cutoffs])
    train_end = int(np.array_split(ordered, config.folds)[fold].min())
    audits = {(a.fold, a.kind): a for a in base.audits}
    assert audits[fold, "test"].train_end == train_end
    validation = audits[fold, "validation"]
    assert validation.max_cutoff is not None and validation.max_cutoff < train_end
    changed = retailer.interactions.copy()
    future = changed[InteractionCols.TIMESTAMP] >= pd.Timestamp(train_end, unit="s", tz="UTC")
    changed.loc[future, InteractionCols.ITEM_ID] = "i0"
    perturbed = Dataset(
        items=retailer.items, interactions=changed, customers=retailer.customers, source="x"
    )
    again = run_evaluation(perturbed, config, name="synthetic")
    for f in range(fold + 1):
        assert again.blend_weights[f].to_dict() == base.blend_weights[f].to_dict()
    # the test answers of the fold did change
    rows = np.flatnonzero(base.fold_of == fold)
    assert any(not np.array_equal(again.truths[r], base.truths[r]) for r in rows)


def test_folds_follow_the_last_day_holdout(retailer: Dataset) -> None:
    prepared = prepare(retailer)
    folds = last_day_folds(prepared, FAST)
    _, test, cutoffs = last_day_holdout(retailer.interactions, type_col=InteractionCols.TYPE)
    truth = test.groupby(InteractionCols.CUSTOMER_ID)[InteractionCols.ITEM_ID].agg(set)
    seen = 0
    for fold in folds:
        assert fold.test.train_end == int(fold.test.cutoffs.min())
        for user, cut, items in zip(
            fold.test.users, fold.test.cutoffs, fold.test.truths, strict=True
        ):
            customer = prepared.maps.customers.id(int(user))
            assert pd.Timestamp(int(cut), unit="s", tz="UTC") == cutoffs[customer]
            assert set(prepared.maps.items.ids(items)) == truth[customer]
            seen += 1
    assert seen == len(cutoffs)
    ends = [f.test.train_end for f in folds]
    assert ends == sorted(ends)


def test_metrics_on_a_tiny_dataset_with_known_answers() -> None:
    """Customer a rebuys item x on their last day (repurchase: AP=1); b and c buy the day's best
    seller y (popularity ranks y first for them: AP=1)."""
    t0 = pd.Timestamp("2024-03-01", tz="UTC")
    rows = [
        ("a", "x", 0),
        ("b", "z", 1),
        ("c", "z", 2),
        ("d", "y", 3),
        ("d", "y", 4),
        ("e", "y", 4),
        ("a", "x", 6),
        ("b", "y", 6),
        ("c", "y", 7),
    ]
    interactions = pd.DataFrame(
        {
            InteractionCols.CUSTOMER_ID: [r[0] for r in rows],
            InteractionCols.ITEM_ID: [r[1] for r in rows],
            InteractionCols.TYPE: "purchase",
            InteractionCols.TIMESTAMP: [t0 + pd.Timedelta(days=r[2]) for r in rows],
        }
    )
    items = pd.DataFrame(
        {
            ItemCols.ID: ["x", "y", "z"],
            ItemCols.NAME: ["x", "y", "z"],
            ItemCols.CATEGORY: "top",
            ItemCols.PRICE: 1.0,
        }
    )
    dataset = Dataset(items=items, interactions=interactions, source="tiny")
    config = EvalConfig(folds=1, depth=12, n_boot=50, methods=("popularity", "repurchase"))
    res = run_evaluation(dataset, config, name="tiny")
    by_customer = {
        customer: i for i, customer in enumerate(prepare(dataset).maps.customers.ids(res.users))
    }
    rep = res.methods["repurchase"].ap
    assert rep[by_customer["a"]] == 1.0
    pop = res.methods["popularity"].ap
    # b (cutoff day 6): before it, y was bought 3 times (days 3, 4, 4), z twice -> y first
    assert pop[by_customer["b"]] == 1.0
    assert res.methods["repurchase"].metrics["recall"][0] == pytest.approx(
        float(res.methods["repurchase"].recall.mean())
    )
    # d and e bought only on their last day: no history, so they are cold (not warm)
    assert not res.warm[by_customer["e"]]
    assert res.warm[by_customer["a"]]


def test_report_files(result: EvaluationResult, tmp_path: Path) -> None:
    paths = write_report([result], tmp_path / "report", command="pytest")
    text = paths["markdown"].read_text()
    assert "| blend |" in text and "Leak audit" in text and "pytest" in text
    assert paths["json"].is_file()
    if "plot" in paths:
        assert paths["plot"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.realdata
def test_hm_sample_folds_cover_every_customer() -> None:
    from feature_store.loaders import load_dataset

    dataset = load_dataset(shared_dataset("hm_neo4j_customer_sample"))
    prepared = prepare(dataset, "hm")
    folds = last_day_folds(prepared, EvalConfig())
    assert sum(len(f.test) for f in folds) == 1000
    assert all(f.test.train_end <= int(f.test.cutoffs.min()) for f in folds)
    later = [f for f in folds if f.validation is not None and len(f.validation)]
    assert later and all(
        f.validation is not None and f.validation.train_end < f.test.train_end for f in later
    )


def test_preset_config() -> None:
    small = preset_config("last_day", n_interactions=23_199, folds=4, max_customers=None)
    assert small.folds == 4 and small.sequence.epochs == SequenceConfig().epochs
    large = preset_config("time_split", n_interactions=192_544, lstm_epochs=2)
    assert large.max_customers == 3000 and large.sequence.epochs == 2
    assert large.sequence.batch_size == 256 and large.peer.epochs == 2


def test_a_misspelt_setting_is_an_error_naming_it() -> None:
    with pytest.raises(DataFormatError, match=r"unknown key 'foldz' \(allowed: .*\bfolds\b"):
        preset_config("last_day", foldz=3)
    with pytest.raises(DataFormatError, match=r"unknown key 'factor' \(allowed: alpha, factors"):
        FAST.replace(als={"factor": 8})
    with pytest.raises(DataFormatError, match=r"sequence\.epochz"):
        validate_config(EvalConfig, {"sequence": {"epochz": 1}}, what="evaluation config")
    with pytest.raises(DataFormatError, match="unknown methods"):
        preset_config("last_day", methods=("magic",))
    with pytest.raises(ValueError, match="depth >= k"):
        EvalConfig(k=12, depth=5)
    assert FAST.replace(folds=2).folds == 2 and FAST.folds == 3


def test_audit_refuses_look_ahead(result: EvaluationResult) -> None:
    audit = replace(result.audits[-1], max_history_timestamp_minus_cutoff=0)
    with pytest.raises(RuntimeError, match="look-ahead"):
        audit.check()
    late = replace(result.audits[-1], max_train_timestamp=result.audits[-1].train_end)
    with pytest.raises(RuntimeError, match="look-ahead"):
        late.check()


def test_rule_sources_call_the_served_candidate_functions(retailer: Dataset) -> None:
    """The harness's repurchase, repeat and siblings sources are the per-customer functions of
    models/candidates.py applied to each customer's purchases before their cutoff."""
    with_codes = retailer.items.copy()
    with_codes[ItemCols.PRODUCT_CODE] = [f"p{i // 2}" for i in range(len(with_codes))]
    dataset = Dataset(
        items=with_codes,
        interactions=retailer.interactions,
        customers=retailer.customers,
        source="codes",
    )
    prepared = prepare(dataset)
    fold = last_day_folds(prepared, FAST)[-1]
    ctx = fold_context(prepared, fold.test, FAST, fold.index, "test")
    repurchase, repeat, siblings = (
        source_repurchase(ctx),
        source_repeat(ctx),
        source_siblings(ctx),
    )
    rates = repeat_rates(prepared, ctx.train)
    table = siblings_table(prepared, ctx.train, FAST)
    data = prepared.data
    checked = 0
    for r, (user, cutoff) in enumerate(zip(fold.test.users, fold.test.cutoffs, strict=True)):
        events = prepared.history(int(user), int(cutoff))
        if len(events) == 0:
            assert (repurchase[r] < 0).all() and (siblings[r] < 0).all()
            continue
        args = (data.item_idx[events], data.timestamps[events], data.weights[events], int(cutoff))
        expected, _ = repurchase_ranking(*args, half_life_days=FAST.repurchase_half_life_days)
        row = repurchase[r][repurchase[r] >= 0]
        assert row.tolist() == expected[: FAST.depth].tolist()
        expected, _ = repeat_ranking(*args, rates, half_life_days=FAST.repeat_half_life_days)
        assert repeat[r][repeat[r] >= 0].tolist() == expected[: FAST.depth].tolist()
        assert sorted(repeat[r][repeat[r] >= 0].tolist()) == sorted(row.tolist())
        proposed = siblings[r][siblings[r] >= 0]
        own = set(data.item_idx[events].tolist())
        allowed = {int(j) for i in own for j in table.neighbours(i)[0]}
        assert set(proposed.tolist()) <= allowed - own
        checked += 1
    assert checked > 10
    # two variants per product: somebody gets a sibling, and only items seen in training
    assert (siblings >= 0).any()
    seen = set(ctx.train.item_idx.tolist())
    assert set(siblings[siblings >= 0].tolist()) <= seen


def test_blend_fuses_every_served_source(result: EvaluationResult) -> None:
    from models.bundle import SOURCES

    assert set(BLEND_SOURCES) == set(SOURCES)
    fitted = [w for w in result.blend_weights if w.fitted]
    assert fitted and all(set(w.weights) == set(SOURCES) for w in fitted)
