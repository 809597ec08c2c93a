"""Precomputed candidate pools (issue 15): each training customer's ALS and LSTM index answers,
written by the trainer and read by the feed instead of searching, give the lists the searches give.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import orjson
import pytest
from fastapi.testclient import TestClient

from app.main import create_app
from app.pipeline import ALSSource, SequenceSource
from app.runtime import LoadedBundle
from app.settings import Settings
from feature_store.errors import BundleError
from models.bundle import (
    BundleLayout,
    CustomerPools,
    CustomerVectors,
    PoolFile,
    VectorFile,
    latest_bundle,
    read_manifest,
)
from models.index import BatchIndex, ItemIndex, answer_from_pool
from models.sequence import SequenceRecommender


def test_an_answer_from_a_pool_is_the_searched_answer_without_the_exclusions() -> None:
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(300, 8)).astype(np.float32)
    index = ItemIndex.build(vectors, kind="flat")
    queries = rng.normal(size=(20, 8)).astype(np.float32)
    pools = BatchIndex(vectors, exact=True).top_ids(queries, 40)
    assert pools.shape == (20, 40) and pools.dtype == np.int32
    for q, pool in zip(queries, pools, strict=True):
        blocked = rng.choice(300, size=30, replace=False)
        answer = answer_from_pool(pool, blocked, 12)
        searched, _ = index.search(q, 12, exclude=blocked)
        assert answer is not None
        assert answer.tolist() == searched.tolist()


def test_the_offline_inverted_file_is_seeded_and_close_to_the_exact_answers() -> None:
    rng = np.random.default_rng(1)
    centres = rng.normal(size=(200, 16))  # items (and tastes) cluster, as real ones do
    vectors = centres[rng.integers(0, 200, 20_000)] + 0.3 * rng.normal(size=(20_000, 16))
    vectors = vectors.astype(np.float32)
    queries = centres[rng.integers(0, 200, 300)] + 0.3 * rng.normal(size=(300, 16))
    queries = queries.astype(np.float32)
    approx = BatchIndex(vectors, exact=False, seed=3)
    assert not approx.exact  # min(4 * sqrt(20k), 20k / 39) = 512 lists, 16 scanned per query
    found = approx.top_ids(queries, 36)
    assert np.array_equal(found, BatchIndex(vectors, exact=False, seed=3).top_ids(queries, 36))
    truth = BatchIndex(vectors, exact=True).top_ids(queries, 36)
    recall = np.mean([len(set(f) & set(t)) / 36 for f, t in zip(found, truth, strict=True)])
    assert 0.6 < recall < 1.0, recall  # approximate, and not far off
    assert BatchIndex(vectors[:500], exact=False).exact  # too few items for the lists: exact
    # matched to a served HNSW graph: the fewest lists as close to the exact answers as it
    served = ItemIndex.build(vectors, kind="hnsw", ef_search=16, seed=0)
    mine, theirs = approx.match(served, queries[:100], 36)
    assert 0 < theirs <= mine < 1.0
    assert approx.nprobe is not None and approx.nprobe < 16  # cheaper than the default
    cheaper = approx.nprobe // 2
    if cheaper:
        approx._ivf.nprobe = cheaper  # type: ignore[union-attr]
        truth_100 = truth[:100]
        found_100 = approx.top_ids(queries[:100], 36)
        less = np.mean(
            [len(set(f) & set(t)) / 36 for f, t in zip(found_100, truth_100, strict=True)]
        )
        assert less < theirs  # the next cheaper scan falls short of the graph


def test_a_full_pool_too_short_after_the_exclusions_asks_for_a_search() -> None:
    pool = np.arange(10, dtype=np.int32)
    assert answer_from_pool(pool, np.array([0, 1, 2]), 7).tolist() == [3, 4, 5, 6, 7, 8, 9]
    assert answer_from_pool(pool, np.array([0, 1, 2, 3]), 7) is None  # more may lie beyond
    padded = np.array([4, 5, 6, -1, -1], dtype=np.int32)  # all the index had
    assert answer_from_pool(padded, np.array([5]), 7).tolist() == [4, 6]
    assert answer_from_pool(np.empty(0, np.int32), np.empty(0, np.int64), 3) is None


def test_pools_round_trip_a_row_at_a_time_and_refuse_a_bad_file(tmp_path: Path) -> None:
    ids = np.array([[3, 1, -1], [0, 2, 4]], dtype=np.int32)
    path = tmp_path / "pools" / "als.npy"
    CustomerPools(ids).save(path)
    loaded = PoolFile.load(path, n_customers=2, n_items=5)
    assert loaded is not None and loaded.size == 3
    assert loaded.row(1).tolist() == [0, 2, 4] and loaded.row(0).tolist() == [3, 1, -1]
    assert np.array_equal(loaded.rows(0, 2), ids)
    with pytest.raises(IndexError):
        loaded.row(2)
    loaded.close()
    assert PoolFile.load(tmp_path / "none.npy", 2, 5) is None
    with pytest.raises(BundleError, match="customer ids"):
        PoolFile.load(path, n_customers=3, n_items=5)
    with pytest.raises(BundleError, match="outside the catalog"):
        PoolFile.load(path, n_customers=2, n_items=4)
    path.write_bytes(path.read_bytes() + b"\0")
    with pytest.raises(BundleError, match="longer"):
        PoolFile.load(path, n_customers=2, n_items=5)
    path.write_bytes(path.read_bytes()[:-5])
    with pytest.raises(BundleError, match="truncated"):
        PoolFile.load(path, n_customers=2, n_items=5)


def test_session_vectors_round_trip_a_row_at_a_time_and_refuse_a_bad_file(tmp_path: Path) -> None:
    vectors = np.array([[0.5, -1.25, 1.0], [2.0, 0.0, 1.0]], dtype=np.float32)
    path = tmp_path / "pools" / "sequence_sessions.npy"
    CustomerVectors(vectors).save(path)
    loaded = VectorFile.load(path, n_customers=2, width=3)
    assert loaded is not None
    assert loaded.row(0).tolist() == [0.5, -1.25, 1.0] and loaded.row(1).dtype == np.float32
    with pytest.raises(IndexError):
        loaded.row(-1)
    loaded.close()
    assert VectorFile.load(tmp_path / "none.npy", 2, 3) is None
    with pytest.raises(BundleError, match="customer ids"):
        VectorFile.load(path, n_customers=2, width=4)  # another model's vectors
    vectors[1, 0] = np.nan
    CustomerVectors(vectors).save(path)
    with pytest.raises(BundleError, match="not finite"):
        VectorFile.load(path, n_customers=2, width=3)
    CustomerPools(np.zeros((2, 3), dtype=np.int32)).save(path)
    with pytest.raises(BundleError, match="customer ids"):
        VectorFile.load(path, n_customers=2, width=3)  # ids, not vectors


def test_the_trainer_writes_each_customers_index_answers(retailer: tuple[Path, Path]) -> None:
    info = latest_bundle(retailer[1])
    assert info is not None
    layout = BundleLayout(info.path)
    manifest = read_manifest(info.path)
    assert manifest.pools == {
        "als": "pools/als.npy",
        "sequence": "pools/sequence.npy",
        "sequence_sessions": "pools/sequence_sessions.npy",
    }
    bundle = LoadedBundle.load(info.path)
    assert bundle.als_pool is not None and bundle.sequence_pool is not None
    size = manifest.config["customer_pools"]
    assert (bundle.als_pool.n_customers, bundle.als_pool.size) == (len(bundle.customers), size)
    factors = bundle.als.user_factors[:50]
    assert bundle.index.kind == "flat"  # the small retailer: the pools are the exact answers
    exact = BatchIndex(bundle.als.item_factors, exact=True)
    assert np.array_equal(bundle.als_pool.rows(0, 50), exact.top_ids(factors, size))
    sequence = bundle.sequence
    pool = bundle.sequence_pool
    assert sequence is not None and (pool.n_customers, pool.size) == (sequence.n_users, size)
    assert layout.pool("sequence").stat().st_size > sequence.n_users * size * 4
    sessions = bundle.sequence_sessions
    assert sessions is not None and sessions.n_customers == sequence.n_users
    users = np.arange(min(50, sequence.n_users))
    stored = np.stack([sessions.row(int(u)) for u in users])
    assert np.array_equal(stored, sequence.user_sessions(users)), "the kept histories' sessions"


@pytest.fixture
def uncached_client(retailer: tuple[Path, Path], tmp_path: Path) -> Iterator[TestClient]:
    settings = Settings(
        bundle_dir=retailer[1],
        event_log_dir=tmp_path / "events",
        bundle_poll_seconds=0,
        redis_url=None,
        cache_ttl_seconds=0,
    )
    with TestClient(create_app(settings)) as client:
        yield client


@pytest.fixture
def uncached(uncached_client: TestClient) -> object:
    return uncached_client.app.state.service  # type: ignore[attr-defined]


def _known_customers(bundle: LoadedBundle, n: int) -> list[str]:
    """``n`` customers with a training history (and an ALS factor: an opted-out customer's is
    zero, which ties every item and leaves the order to the search's own tie-breaking)."""
    with_history = np.flatnonzero(
        (np.diff(bundle.user_items.indptr) > 0) & np.any(bundle.als.user_factors != 0, axis=1)
    )
    picked = np.random.default_rng(3).choice(with_history, size=n, replace=False)
    return [bundle.customers.id(int(c)) for c in picked]


def test_the_pools_give_the_lists_the_searches_give(
    uncached: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    """For customers with no events since training, every source list and the whole feed body
    are the same read from the pools as searched; and the pools are what answered."""
    service = uncached
    bundle = service.bundles.current  # type: ignore[attr-defined]
    plain = dataclasses.replace(bundle, als_pool=None, sequence_pool=None, sequence_sessions=None)
    customers = service.customers  # type: ignore[attr-defined]
    searched = with_sequence = encoded = 0
    original = ItemIndex.search
    original_encode = SequenceRecommender._encode

    def counting(self: ItemIndex, *args: object, **kwargs: object) -> object:
        nonlocal searched
        searched += 1
        return original(self, *args, **kwargs)  # type: ignore[arg-type]

    def encoding(self: SequenceRecommender, *args: object, **kwargs: object) -> object:
        nonlocal encoded
        encoded += 1
        return original_encode(self, *args, **kwargs)  # type: ignore[arg-type]

    for customer_id in _known_customers(bundle, 40):
        view = customers.read(bundle, customer_id)
        ctx = customers.context(bundle, view, k=12, category=None)
        assert ctx.trained_vector and ctx.sequence is not None
        if len(ctx.sequence):  # a history the LSTM kept at training, unchanged
            assert ctx.sequence.trained_customer == ctx.customer_index
            with_sequence += 1
        ctx_plain = customers.context(plain, view, k=12, category=None)
        for source in (ALSSource(), SequenceSource()):
            monkeypatch.setattr(ItemIndex, "search", counting)
            monkeypatch.setattr(SequenceRecommender, "_encode", encoding)
            pooled = [(c.item, c.reason) for c in source.candidates(ctx, 36)]
            monkeypatch.setattr(ItemIndex, "search", original)
            monkeypatch.setattr(SequenceRecommender, "_encode", original_encode)
            assert pooled == [(c.item, c.reason) for c in source.candidates(ctx_plain, 36)]
    assert searched == 0, "every answer came from a pool"
    assert encoded == 0, "every session vector was the one stored at training"
    assert with_sequence >= 20

    feeds = service.feeds  # type: ignore[attr-defined]
    for customer_id in _known_customers(bundle, 20):
        body = orjson.loads(feeds.personalized(customer_id, k=12, category=None,
                                               exclude_purchased=True))  # fmt: skip
        monkeypatch.setattr(type(service.bundles), "current", property(lambda _: plain))  # type: ignore[attr-defined]
        body_plain = orjson.loads(feeds.personalized(customer_id, k=12, category=None,
                                                     exclude_purchased=True))  # fmt: skip
        monkeypatch.undo()
        assert body["items"] == body_plain["items"]


def test_a_customer_with_events_since_training_is_searched(
    uncached_client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    service = uncached_client.app.state.service  # type: ignore[attr-defined]
    bundle = service.bundles.current
    customer_id = _known_customers(bundle, 1)[0]
    item_id = bundle.catalog.ids.id(int(bundle.popular_order[0]))
    event = {"customer_id": customer_id, "item_id": item_id, "type": "click"}
    assert uncached_client.post("/v1/events", json=event).json()["accepted"] == 1
    view = service.customers.read(bundle, customer_id)  # type: ignore[attr-defined]
    ctx = service.customers.context(bundle, view, k=12, category=None)  # type: ignore[attr-defined]
    assert not ctx.trained_vector
    assert ctx.sequence is not None and ctx.sequence.trained_customer is None
    searched: list[int] = []
    original = ItemIndex.search

    def counting(self: ItemIndex, *args: object, **kwargs: object) -> object:
        searched.append(1)
        return original(self, *args, **kwargs)  # type: ignore[arg-type]

    encoded: list[int] = []
    original_encode = SequenceRecommender._encode

    def encoding(self: SequenceRecommender, *args: object, **kwargs: object) -> object:
        encoded.append(1)
        return original_encode(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(ItemIndex, "search", counting)
    monkeypatch.setattr(SequenceRecommender, "_encode", encoding)
    ALSSource().candidates(ctx, 36)
    SequenceSource().candidates(ctx, 36)
    assert len(searched) == 2
    assert len(encoded) == 1, "the LSTM encodes the history that changed since training"
