"""The learned ranker: its contract (fit, save, load, determinism), its features, the harness's
ranker windows and the leak audit of item prices."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from test_evaluate import FAST, synthetic_retailer

from feature_store.dataset import Dataset
from feature_store.errors import DataFormatError
from feature_store.schema import InteractionCols, ItemCols
from feature_store.timeutils import SECONDS_PER_DAY
from models.ranker import LearnedRanker, RankerConfig
from models.ranker_features import (
    FEATURE_NAMES,
    RANKER_SOURCES,
    ItemStats,
    candidate_union,
    item_stats,
    ranker_features,
)
from training.evaluate import fold_context, last_day_folds, prepare
from training.evaluate.context import check_item_prices, fold_item_stats
from training.ranker import RankingExamples, fit_ranker, rank_examples

DAY = SECONDS_PER_DAY


def _stats(n: int = 6) -> ItemStats:
    return item_stats(
        [0, 1, 1, 2, 3, 5],
        [1 * DAY, 2 * DAY, 9 * DAY, 9 * DAY, 9 * DAY, 30 * DAY],
        np.ones(6),
        [1.0, 2.0, 4.0, 3.0, np.nan, 99.0],
        as_of=10 * DAY,
        groups=[0, 0, 1, 1, 2, 2],
        products=[0, 0, 1, -1, 2, 2],
        rebuy=np.linspace(0.1, 0.6, n),
    )


def test_item_stats_read_only_the_past() -> None:
    stats = _stats()
    # item 5's only sale (price 99) is after as_of: unsold, unpriced
    assert stats.first_sale.tolist() == [DAY, 2 * DAY, 9 * DAY, 9 * DAY, -1, -1]
    np.testing.assert_allclose(stats.price[:3], [1.0, 3.0, 3.0])
    assert np.isnan(stats.price[3]) and np.isnan(stats.price[5])
    assert stats.pop_7d.tolist() == [0, 1, 1, 1, 0, 0]
    assert stats.pop_28d.tolist() == [1, 2, 1, 1, 0, 0]
    again = ItemStats.from_arrays(stats.to_arrays())
    for name, value in stats.to_arrays().items():
        np.testing.assert_array_equal(again.to_arrays()[name], value)


def test_candidate_union_and_features() -> None:
    lists = {"repurchase": np.array([3, 1, -1]), "als": np.array([1, 4, 3]), "other": [5]}
    items, ranks = candidate_union(lists, depth=3)
    assert items.tolist() == [3, 1, 4]  # first appearance, sources in RANKER_SOURCES order
    rep, als = RANKER_SOURCES.index("repurchase"), RANKER_SOURCES.index("als")
    np.testing.assert_array_equal(ranks[:, rep], [1, 2, np.nan])
    np.testing.assert_array_equal(ranks[:, als], [3, 1, 2])
    x = ranker_features(
        items, ranks, [1, 1, 2, 4], [3 * DAY, 8 * DAY, 9 * DAY, 20 * DAY], 10 * DAY, _stats()
    )
    assert x.shape == (3, len(FEATURE_NAMES)) and x.dtype == np.float32
    row = dict(zip(FEATURE_NAMES, x[1], strict=True))  # item 1: bought twice, last 2 days ago
    assert row["days_since_item"] == 2 and row["item_count"] == 2
    assert row["n_purchases"] == 3  # the purchase dated after now is ignored
    assert row["days_since_group"] == 2 and row["group_count"] == 2  # group 0: item 1 twice
    first = dict(zip(FEATURE_NAMES, x[0], strict=True))  # item 3: never bought, group 1 once
    assert np.isnan(first["days_since_item"]) and first["item_count"] == 0
    assert first["days_since_group"] == 1 and first["group_count"] == 1
    assert first["rank_repurchase"] == 1 and first["rank_als"] == 3 and first["n_sources"] == 2


def _toy_examples(seed: int, n: int = 120) -> RankingExamples:
    """Customers whose bought candidate is mostly the one ranked first by ``repeat``."""
    rng = np.random.default_rng(seed)
    stats = _stats()
    parts = []
    for _ in range(n):
        order = rng.permutation(6)
        items, ranks = candidate_union({"repeat": order, "als": rng.permutation(6)}, depth=6)
        x = ranker_features(items, ranks, [order[0]], [DAY], 10 * DAY, stats)
        y = np.zeros(len(items), np.int64)
        y[int(np.flatnonzero(items == order[0 if rng.random() < 0.8 else 3])[0])] = 1
        parts.append(RankingExamples([items], x, y, np.array([len(items)])))
    return RankingExamples.concat(parts)


def test_ranker_learns_saves_loads_and_is_deterministic(tmp_path: Path) -> None:
    windows = [_toy_examples(0), _toy_examples(1)]
    config = RankerConfig(max_rounds=40, early_stopping_rounds=10, min_data_in_leaf=5)
    ranker = fit_ranker(windows, config)
    assert ranker is not None and 1 <= ranker.best_iteration <= 40
    test = _toy_examples(2)
    top = rank_examples(ranker, test, 1)[:, 0]
    truth = np.asarray([c[y.argmax()] for c, y in _split(test)])
    assert (top == truth).mean() > 0.6  # learnt that the repeat source's first item is bought
    ranker.save(tmp_path / "r")
    loaded = LearnedRanker.load(tmp_path / "r")
    np.testing.assert_array_equal(loaded.score(test.x), ranker.score(test.x))
    again = fit_ranker(windows, config)
    assert again is not None
    np.testing.assert_array_equal(again.score(test.x), ranker.score(test.x))
    assert abs(sum(ranker.importances().values()) - 1.0) < 1e-9
    assert max(ranker.importances(), key=ranker.importances().__getitem__).startswith(
        ("rank_repeat", "rrf", "days_since_item", "item_count", "product_count")
    )
    meta = tmp_path / "r" / "ranker.json"
    meta.write_text(meta.read_text().replace('"rrf"', '"rrf_old"'))
    with pytest.raises(DataFormatError, match="other features"):
        LearnedRanker.load(tmp_path / "r")


def _split(ex: RankingExamples) -> list[tuple[np.ndarray, np.ndarray]]:
    off = ex.offsets
    return [(c, ex.y[off[r] : off[r + 1]]) for r, c in enumerate(ex.candidates)]


def test_too_few_customers_fit_no_ranker() -> None:
    assert fit_ranker([_toy_examples(0, n=10)]) is None


def _priced_retailer() -> Dataset:
    ds = synthetic_retailer()
    inter = ds.interactions.copy()
    item = inter[InteractionCols.ITEM_ID].str[1:].astype(float)
    day = (inter[InteractionCols.TIMESTAMP] - inter[InteractionCols.TIMESTAMP].min()).dt.days
    inter[InteractionCols.PRICE] = 5.0 + item + day / 100.0  # prices drift over time
    return Dataset(items=ds.items, interactions=inter, customers=ds.customers, source="priced")


def test_fold_prices_are_as_of_the_training_end_and_the_audit_catches_a_future_price() -> None:
    ds = _priced_retailer()
    prepared = prepare(ds)
    fold = last_day_folds(prepared, FAST)[1]
    ctx = fold_context(prepared, fold.test, FAST, fold.index, "test")
    assert ctx.audit.features_as_of == fold.test.train_end
    assert ctx.audit.max_price_timestamp_minus_cutoff is not None
    assert ctx.audit.max_price_timestamp_minus_cutoff < 0
    prices = ctx.item_stats.price
    check_item_prices(prepared, prices, fold.test.train_end)  # the fold's own prices pass
    _ = ctx.item_features  # audited when built

    # plant a price dated after the training end: the fold's prices do not move …
    inter = ds.interactions.copy()
    late = inter[InteractionCols.TIMESTAMP] >= pd.Timestamp(fold.test.train_end, unit="s", tz="UTC")
    assert late.any()
    inter.loc[late, InteractionCols.PRICE] = 1000.0
    planted = prepare(Dataset(items=ds.items, interactions=inter, customers=ds.customers))
    replanted = fold_item_stats(planted, ctx.train, fold.test.train_end)
    np.testing.assert_array_equal(replanted.price, prices)
    # … and a whole-history price (what the H&M loader's catalog price was) is refused
    whole = (
        pd.Series(inter[InteractionCols.PRICE].to_numpy())
        .groupby(inter[InteractionCols.ITEM_ID].to_numpy())
        .median()
    )
    catalog = whole.reindex(planted.maps.items.ids()).to_numpy()
    with pytest.raises(RuntimeError, match="look-ahead"):
        check_item_prices(planted, catalog, fold.test.train_end)
    # the catalog's own price column is not what the harness reads
    assert ItemCols.PRICE in planted.items.columns
    ctx2 = fold_context(planted, fold.test, FAST, fold.index, "test")
    np.testing.assert_array_equal(ctx2.item_stats.price, prices)


def test_the_feed_ranks_with_the_bundles_ranker_on_the_features_computed_offline(
    retailer: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``lookbook train`` puts a ranker in the bundle; the personalized feed ranks with it, and
    the feature rows the service computes for a customer are those the trainer's functions
    compute from the training data for the same candidates."""
    from fastapi.testclient import TestClient

    import app.pipeline as pipeline
    from app.main import create_app
    from app.runtime import LoadedBundle
    from app.settings import Settings
    from feature_store.loaders import load_dataset
    from models.bundle import latest_bundle
    from training.data import build_id_maps, purchase_log, to_training_data
    from training.ranker import build_examples

    data, bundles = retailer
    info = latest_bundle(bundles)
    assert info is not None
    bundle = LoadedBundle.load(info.path)
    assert bundle.ranker is not None and bundle.ranker.stats is not None
    assert bundle.ranker.n_items == len(bundle.catalog.ids)

    seen: list[tuple[tuple[object, ...], np.ndarray]] = []
    real = pipeline.ranker_features

    def spy(*args: object) -> np.ndarray:
        out = real(*args)  # type: ignore[arg-type]
        seen.append((args, out))
        return out

    monkeypatch.setattr(pipeline, "ranker_features", spy)
    dataset = load_dataset(data)
    inter = dataset.interactions
    bought = inter[inter[InteractionCols.TYPE] == "purchase"]
    customer = str(bought[InteractionCols.CUSTOMER_ID].value_counts().index[3])

    def feed(ranker_on: bool) -> list[str]:
        settings = Settings(
            bundle_dir=bundles,
            event_log_dir=tmp_path / f"events{ranker_on}",
            bundle_poll_seconds=0,
            redis_url=None,
            learned_ranker=ranker_on,
        )
        with TestClient(create_app(settings)) as client:
            response = client.get(f"/v1/customers/{customer}/recommendations?k=12")
        assert response.status_code == 200, response.text
        return [it["item_id"] for it in response.json()["items"]]

    assert feed(False) and not seen  # turned off: the fixed fusion
    served = feed(True)
    assert len(seen) == 1 and len(served) == 12
    (items, ranks, _, _, now, stats, blend, blend_rrf_k), online = seen[0]
    assert blend == bundle.ranker.blend_weights and blend  # the trainer's fitted blend weights
    assert blend_rrf_k == bundle.ranker.blend_rrf_k
    assert isinstance(stats, ItemStats)
    for name, value in bundle.ranker.stats.to_arrays().items():  # the bundle's statistics
        np.testing.assert_array_equal(stats.to_arrays()[name], value)

    # offline: the customer's purchases from the training data, the trainer's example builder
    maps = build_id_maps(dataset)
    full = to_training_data(inter, maps, now=pd.Timestamp(inter[InteractionCols.TIMESTAMP].max()))
    log = purchase_log(full)
    u = maps.customers.index(customer)
    assert u is not None
    a, b = int(log["indptr"][u]), int(log["indptr"][u + 1])
    source_ranks = np.asarray(ranks)
    lists = {}  # each source's list, rebuilt from its ranks, as one row
    for s, col in zip(RANKER_SOURCES, source_ranks.T, strict=True):
        order = np.argsort(np.where(np.isnan(col), np.inf, col), kind="stable")
        lists[s] = np.asarray(items)[order][: int((~np.isnan(col)).sum())][None, :]
    offline = build_examples(
        lists,
        [(log["items"][a:b], log["timestamps"][a:b])],
        [int(now)],  # type: ignore[call-overload]
        bundle.ranker.stats,
        depth=len(items),  # type: ignore[arg-type]
        blend=bundle.ranker.blend_weights,
        blend_rrf_k=bundle.ranker.blend_rrf_k,
    )
    np.testing.assert_array_equal(offline.candidates[0], items)
    np.testing.assert_array_equal(offline.x, online)
    # the served list is the ranker's order of those candidates (the filters keep all of them)
    top, _ = bundle.ranker.rank(np.asarray(items), online, 12)
    assert served == [bundle.catalog.ids.ids()[i] for i in top.tolist()][: len(served)]
