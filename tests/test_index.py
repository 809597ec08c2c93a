"""ItemIndex: exact and HNSW search against brute force, exclusions, files, thread helper."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import faiss
import numpy as np
import pytest

import models.index as index_module
from feature_store.errors import BundleError
from models.index import ItemIndex, set_threads

N_ITEMS = 3000
DIM = 16
K = 10


@pytest.fixture(scope="module")
def vectors() -> np.ndarray:
    rng = np.random.default_rng(0)
    x = rng.standard_normal((N_ITEMS, DIM)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


@pytest.fixture(scope="module")
def queries(vectors: np.ndarray) -> np.ndarray:
    rng = np.random.default_rng(1)
    q = rng.standard_normal((50, DIM)).astype(np.float32)
    return q / np.linalg.norm(q, axis=1, keepdims=True)


@pytest.fixture(scope="module")
def hnsw(vectors: np.ndarray) -> ItemIndex:
    return ItemIndex.build(vectors, kind="hnsw", hnsw_m=16, ef_search=64, seed=3)


@pytest.fixture
def restore_threads() -> Iterator[None]:
    before = faiss.omp_get_max_threads()
    yield
    faiss.omp_set_num_threads(before)


def brute_force(vectors: np.ndarray, queries: np.ndarray, k: int) -> np.ndarray:
    scores = queries.astype(np.float64) @ vectors.T.astype(np.float64)
    return np.argsort(-scores, axis=1, kind="stable")[:, :k]


def test_flat_is_exact(vectors: np.ndarray, queries: np.ndarray) -> None:
    index = ItemIndex.build(vectors, kind="flat")
    assert (index.kind, index.dim, len(index)) == ("flat", DIM, N_ITEMS)
    ids, scores = index.search(queries, K)
    assert ids.shape == scores.shape == (len(queries), K)
    np.testing.assert_array_equal(ids, brute_force(vectors, queries, K))
    expected = np.take_along_axis(queries @ vectors.T, ids, axis=1)
    np.testing.assert_allclose(scores, expected, rtol=1e-5, atol=1e-6)


def test_hnsw_recall_against_brute_force(
    hnsw: ItemIndex, vectors: np.ndarray, queries: np.ndarray
) -> None:
    assert hnsw.kind == "hnsw"
    ids, _ = hnsw.search(queries, K)
    truth = brute_force(vectors, queries, K)
    recall = np.mean([len(set(a) & set(b)) / K for a, b in zip(ids, truth, strict=True)])
    assert recall >= 0.95


def test_auto_picks_flat_for_small_catalogs_and_hnsw_beyond(
    vectors: np.ndarray, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert ItemIndex.build(vectors[:100]).kind == "flat"
    monkeypatch.setattr(index_module, "AUTO_FLAT_MAX_ITEMS", 50)
    assert ItemIndex.build(vectors[:100], kind="auto").kind == "hnsw"


@pytest.mark.parametrize("kind", ["flat", "hnsw"])
def test_exclude_drops_items_and_keeps_k(
    kind: str, hnsw: ItemIndex, vectors: np.ndarray, queries: np.ndarray
) -> None:
    index = hnsw if kind == "hnsw" else ItemIndex.build(vectors, kind="flat")
    plain, _ = index.search(queries[:3], K)
    exclude = [plain[0, :4].tolist(), [], plain[2, ::2].tolist()]
    ids, scores = index.search(queries[:3], K, exclude=exclude)
    assert ids.shape == (3, K) and (ids >= 0).all()
    for row, banned in zip(ids, exclude, strict=True):
        assert not set(row.tolist()) & set(banned)
    np.testing.assert_array_equal(ids[1], plain[1])
    if kind == "flat":
        truth = brute_force(vectors, queries[:1], K + 4)[0]
        np.testing.assert_array_equal(ids[0], truth[4:])
    # one query: a flat list or a one-element list of lists, 1-d results
    single_flat, _ = index.search(queries[0], K, exclude=plain[0, :4].tolist())
    single_nested, _ = index.search(queries[0], K, exclude=[plain[0, :4]])
    np.testing.assert_array_equal(single_flat, ids[0])
    np.testing.assert_array_equal(single_nested, ids[0])
    assert single_flat.ndim == 1 and scores.dtype == np.float32


def test_missing_results_are_padded_or_dropped(vectors: np.ndarray) -> None:
    index = ItemIndex.build(vectors[:5], kind="flat")
    ids, _ = index.search(vectors[0], 8, exclude=[0])
    assert sorted(ids.tolist()) == [1, 2, 3, 4]
    batch_ids, batch_scores = index.search(vectors[:2], 8)
    assert batch_ids.shape == (2, 8)
    assert (batch_ids[:, 5:] == -1).all() and np.isneginf(batch_scores[:, 5:]).all()
    assert index.search(vectors[0], 0)[0].shape == (0,)


def test_bad_arguments_are_refused(vectors: np.ndarray) -> None:
    index = ItemIndex.build(vectors[:20], kind="flat")
    with pytest.raises(ValueError, match="queries must have shape"):
        index.search(np.zeros(DIM + 1, dtype=np.float32), 3)
    with pytest.raises(ValueError, match="lists for"):
        index.search(vectors[:2], 3, exclude=[[1]])
    with pytest.raises(ValueError, match="kind"):
        ItemIndex.build(vectors, kind="ivf")
    with pytest.raises(ValueError, match="NaN"):
        ItemIndex.build(np.full((3, 2), np.nan))


@pytest.mark.parametrize("kind", ["flat", "hnsw"])
def test_save_load_round_trip(
    kind: str, hnsw: ItemIndex, vectors: np.ndarray, queries: np.ndarray, tmp_path: Path
) -> None:
    index = hnsw if kind == "hnsw" else ItemIndex.build(vectors, kind="flat")
    path = tmp_path / "indexes" / "items.faiss"
    index.save(path)
    assert path.is_file() and (tmp_path / "indexes" / "items.faiss.json").is_file()
    loaded = ItemIndex.load(path)
    assert (loaded.kind, loaded.dim, len(loaded)) == (kind, DIM, N_ITEMS)
    assert loaded.ef_search == index.ef_search
    for result, expected in zip(
        loaded.search(queries, K, exclude=[[0]] * len(queries)),
        index.search(queries, K, exclude=[[0]] * len(queries)),
        strict=True,
    ):
        np.testing.assert_array_equal(result, expected)


def test_load_refuses_mismatched_files(vectors: np.ndarray, tmp_path: Path) -> None:
    path = tmp_path / "items.faiss"
    ItemIndex.build(vectors[:30], kind="flat").save(path)
    meta_path = tmp_path / "items.faiss.json"
    meta = json.loads(meta_path.read_text())
    meta_path.write_text(json.dumps({**meta, "n": 31}))
    with pytest.raises(BundleError, match="metadata says"):
        ItemIndex.load(path)
    meta_path.write_text(json.dumps({**meta, "kind": "hnsw"}))
    with pytest.raises(BundleError, match="metadata says"):
        ItemIndex.load(path)
    meta_path.unlink()
    with pytest.raises(BundleError, match="missing"):
        ItemIndex.load(path)


def test_hnsw_build_is_reproducible_under_the_seed(
    vectors: np.ndarray, queries: np.ndarray
) -> None:
    first = ItemIndex.build(vectors[:1000], kind="hnsw", hnsw_m=8, ef_search=16, seed=5)
    second = ItemIndex.build(vectors[:1000], kind="hnsw", hnsw_m=8, ef_search=16, seed=5)
    for a, b in zip(first.search(queries, K), second.search(queries, K), strict=True):
        np.testing.assert_array_equal(a, b)


def test_set_threads(restore_threads: None) -> None:
    set_threads(1)
    assert faiss.omp_get_max_threads() == 1
    ItemIndex.set_threads(2)
    assert faiss.omp_get_max_threads() == 2
    with pytest.raises(ValueError):
        set_threads(0)


def test_index_over_als_item_vectors_matches_similar_items() -> None:
    import scipy.sparse as sp

    from models.als import ALSRecommender
    from models.base import TrainingData

    rng = np.random.default_rng(4)
    matrix = sp.random(200, 60, density=0.1, random_state=rng, format="csr", dtype=np.float32)
    matrix.data[:] = 5.0
    coo = matrix.tocoo()
    events = len(coo.row)
    data = TrainingData(
        user_items=matrix,
        user_idx=coo.row.astype(np.int64),
        item_idx=coo.col.astype(np.int64),
        timestamps=np.zeros(events, dtype=np.int64),
        event_types=np.zeros(events, dtype=np.int8),
        weights=np.full(events, 5.0, dtype=np.float32),
        now=0,
    )
    als = ALSRecommender(factors=8, iterations=5, random_state=0).fit(data)
    index = ItemIndex.build(als.item_vectors(), kind="flat")
    for item in (0, 17, 59):
        expected_ids, expected_scores = als.similar_items(item, N=5)
        ids, scores = index.search(als.item_vectors()[item], 5, exclude=[item])
        np.testing.assert_array_equal(ids, expected_ids)
        np.testing.assert_allclose(scores, expected_scores, rtol=1e-5, atol=1e-6)


def test_all_neighbours_match_single_searches(vectors: np.ndarray) -> None:
    index = ItemIndex.build(vectors, kind="flat")
    ids, scores = index.all_neighbours(vectors, 7, batch=33)
    assert ids.shape == (len(vectors), 7)
    for item in (0, 5, len(vectors) - 1):
        expected_ids, expected_scores = index.search(vectors[item], 7, exclude=[item])
        np.testing.assert_array_equal(ids[item], expected_ids)
        np.testing.assert_allclose(scores[item], expected_scores, rtol=1e-5, atol=1e-6)
    assert not (ids == np.arange(len(vectors))[:, None]).any(), "an item is not its own neighbour"


def test_all_neighbours_on_fixed_threads_pad_and_restore(
    vectors: np.ndarray, restore_threads: None
) -> None:
    index = ItemIndex.build(vectors, kind="flat")
    faiss.omp_set_num_threads(2)
    ids, scores = index.all_neighbours(vectors, 7, batch=33, threads=1)
    assert faiss.omp_get_max_threads() == 2, "the caller's thread count is restored"
    again, again_scores = index.all_neighbours(vectors, 7, batch=50, threads=1)
    np.testing.assert_array_equal(ids, again)
    assert scores.tobytes() == again_scores.tobytes()
    # more neighbours asked for than there are other items: -1 / -inf padding after them
    few = ItemIndex.build(vectors[:4], kind="flat")
    ids, scores = few.all_neighbours(vectors[:4], 5)
    assert (ids[:, 3:] == -1).all() and np.isneginf(scores[:, 3:]).all()
    assert sorted(ids[0, :3].tolist()) == [1, 2, 3]


def test_search_threads_apply_in_every_thread(vectors: np.ndarray, restore_threads: None) -> None:
    import threading

    index = ItemIndex.build(vectors, kind="flat")
    set_threads(1)
    seen: list[int] = []

    def worker() -> None:
        faiss.omp_set_num_threads(2)  # a fresh pool thread may start with any count
        index.search(vectors[0], 3)
        seen.append(faiss.omp_get_max_threads())

    thread = threading.Thread(target=worker)
    thread.start()
    thread.join()
    assert seen == [1]
