"""Known-answer, save/load, determinism and session tests of the LSTM sequence recommender."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from feature_store.schema import ItemCols
from models.base import TrainingData
from models.index import ItemIndex
from models.sequence import ItemFeatures, SequenceConfig, SequenceRecommender

DAY = 86_400
PURCHASE = 5  # index of InteractionType.PURCHASE in declaration order
TINY = SequenceConfig(
    id_dim=16,
    feature_dim=8,
    hidden_dim=32,
    output_dim=16,
    epochs=25,
    batch_size=32,
    learning_rate=1e-2,
    id_dropout=0.0,
    dropout=0.0,
    loss="full",
    num_threads=1,
    seed=3,
)


def training_data(
    sequences: list[list[int]], n_items: int, sizes: list[list[str | None]] | None = None
) -> tuple[TrainingData, list[str | None]]:
    """One customer per sequence, one purchase per day, in order."""
    users, items, ts, flat_sizes = [], [], [], []
    for u, seq in enumerate(sequences):
        for j, item in enumerate(seq):
            users.append(u)
            items.append(item)
            ts.append(1_600_000_000 + j * DAY + u)
            flat_sizes.append(None if sizes is None else sizes[u][j])
    order = np.argsort(np.asarray(ts), kind="stable")
    u_arr = np.asarray(users, dtype=np.int64)[order]
    i_arr = np.asarray(items, dtype=np.int64)[order]
    t_arr = np.asarray(ts, dtype=np.int64)[order]
    weights = np.full(len(u_arr), 5.0, dtype=np.float32)
    matrix = sp.csr_matrix((weights, (u_arr, i_arr)), shape=(len(sequences), n_items))
    data = TrainingData(
        user_items=matrix,
        user_idx=u_arr,
        item_idx=i_arr,
        timestamps=t_arr,
        event_types=np.full(len(u_arr), PURCHASE, dtype=np.int8),
        weights=weights,
        now=int(t_arr.max()),
    )
    return data, [flat_sizes[i] for i in order]


def chains(n_users: int = 240, n_chains: int = 8, seed: int = 0) -> list[list[int]]:
    """Chain ``c`` is items ``3c -> 3c+1 -> 3c+2`` (A -> B -> C)."""
    rng = np.random.default_rng(seed)
    return [[3 * c, 3 * c + 1, 3 * c + 2] for c in rng.integers(0, n_chains, size=n_users)]


@pytest.fixture(scope="module")
def chain_model() -> SequenceRecommender:
    data, sizes = training_data(chains(), 24)
    return SequenceRecommender(TINY).fit(data, sizes=sizes)


def test_learns_a_then_b_then_c(chain_model: SequenceRecommender) -> None:
    for c in range(8):
        a, b, nxt = 3 * c, 3 * c + 1, 3 * c + 2
        items, scores = chain_model.recommend_from_sequence([a, b], k=3)
        assert items[0] == nxt, (c, items)
        assert np.all(np.diff(scores) <= 0)
        items, _ = chain_model.recommend_from_sequence([a], k=1)
        assert items[0] == b


def test_exclude_and_k(chain_model: SequenceRecommender) -> None:
    items, _ = chain_model.recommend_from_sequence([0, 1], k=5, exclude=[2])
    assert 2 not in items and len(items) == 5
    assert len(chain_model.recommend_from_sequence([0], k=0)[0]) == 0


def test_batch_agrees_with_single(chain_model: SequenceRecommender) -> None:
    users = np.arange(12, dtype=np.int64)
    matrix = sp.csr_matrix((12, 24), dtype=np.float32)
    batch_items, batch_scores = chain_model.recommend(users, matrix, N=5)
    for r, u in enumerate(users):
        items, scores = chain_model.recommend(int(u), matrix, N=5)
        np.testing.assert_array_equal(batch_items[r], items)
        np.testing.assert_allclose(batch_scores[r], scores, rtol=1e-5, atol=1e-5)
    histories = [[0], [3, 4], [6, 7, 8], []]
    b_items, b_scores = chain_model.recommend_sequences(histories, k=4)
    for r, h in enumerate(histories):
        items, scores = chain_model.recommend_from_sequence(h, k=4)
        np.testing.assert_array_equal(b_items[r, : len(items)], items)
        np.testing.assert_allclose(b_scores[r, : len(scores)], scores, rtol=1e-5, atol=1e-5)


def test_numpy_inference_matches_torch(chain_model: SequenceRecommender) -> None:
    """One history (a request) is encoded in numpy; batches go through torch: same vectors."""
    rng = np.random.default_rng(3)
    histories = [
        chain_model._prepare(
            rng.integers(0, 24, size=length),
            [rng.choice(["S", "M", None]) for _ in range(length)],
            rng.integers(0, 6, size=length).tolist(),
            None,
        )
        for length in (0, 1, 5, TINY.max_len + 7)
    ]
    batch_vectors, batch_betas = chain_model._encode([*histories, histories[0]])
    for r, history in enumerate(histories):
        vector, betas = chain_model._encode([history])  # the numpy path
        np.testing.assert_allclose(vector[0], batch_vectors[r], rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(betas[0], batch_betas[r], rtol=1e-4, atol=1e-5)
    assert chain_model._numpy_net is not None


def test_recommend_filters_liked(chain_model: SequenceRecommender) -> None:
    data, _ = training_data(chains(), 24)
    items, _ = chain_model.recommend(0, data.user_items, N=24)
    assert not set(items) & set(data.user_items[0].indices)


def test_anonymous_session_with_sizes(chain_model: SequenceRecommender) -> None:
    items, scores = chain_model.recommend_from_sequence([0, 1], sizes=["M", None], k=3)
    assert len(items) == 3 and np.isfinite(scores).all()
    vector = chain_model.session_vector([0, 1], sizes=["never-seen", "M"])
    assert vector.shape == (TINY.output_dim + 1,) and vector[-1] == 1.0
    empty_items, _ = chain_model.recommend_from_sequence([], k=4)
    assert len(empty_items) == 4
    with pytest.raises(ValueError):
        chain_model.recommend_from_sequence([999], k=3)
    with pytest.raises(ValueError):
        chain_model.session_vector([0, 1], sizes=["M"])


def test_item_vectors_give_the_scores_and_faiss_agrees(chain_model: SequenceRecommender) -> None:
    vector = chain_model.session_vector([3, 4])
    items, scores = chain_model.recommend_from_sequence([3, 4], k=6)
    expected = chain_model.item_vectors()[items] @ vector
    rep_items, boost = chain_model.repeat_scores([3, 4])
    assert rep_items.tolist() == [3, 4] and (boost >= 0).all()
    for item, extra in zip(rep_items, boost, strict=True):
        expected[items == item] += extra
    np.testing.assert_allclose(expected, scores, rtol=1e-5)
    chain_model.use_index(ItemIndex.build(chain_model.item_vectors(), kind="flat"))
    try:
        faiss_items, faiss_scores = chain_model.recommend_from_sequence([3, 4], k=6)
    finally:
        chain_model.use_index(None)
    np.testing.assert_array_equal(faiss_items, items)
    np.testing.assert_allclose(faiss_scores, scores, rtol=1e-4, atol=1e-5)


def test_save_load_gives_identical_outputs(
    chain_model: SequenceRecommender, tmp_path: Path
) -> None:
    chain_model.save(tmp_path / "seq")
    assert not list((tmp_path / "seq").glob("*.pt"))
    loaded = SequenceRecommender.load(tmp_path / "seq")
    np.testing.assert_array_equal(loaded.item_vectors(), chain_model.item_vectors())
    for history in ([0, 1], [9], [12, 13, 14, 0]):
        a_items, a_scores = chain_model.recommend_from_sequence(history, sizes=None, k=8)
        b_items, b_scores = loaded.recommend_from_sequence(history, sizes=None, k=8)
        np.testing.assert_array_equal(a_items, b_items)
        np.testing.assert_array_equal(a_scores, b_scores)
    matrix = sp.csr_matrix((240, 24), dtype=np.float32)
    users = np.arange(20, dtype=np.int64)
    np.testing.assert_array_equal(
        chain_model.recommend(users, matrix, N=5)[1], loaded.recommend(users, matrix, N=5)[1]
    )


def test_history_of_round_trips_into_recommend(chain_model: SequenceRecommender) -> None:
    items, sizes, types, times = chain_model.history_of(5)
    assert len(items) == 3 and sizes == [None, None, None] and (np.diff(times) > 0).all()
    matrix = sp.csr_matrix((240, 24), dtype=np.float32)
    expected = chain_model.recommend(5, matrix, N=4, filter_already_liked_items=False)
    got = chain_model.recommend_from_sequence(
        items,
        sizes,
        k=4,
        event_types=types.tolist(),
        timestamps=times,
        now=chain_model.trained_until,
    )
    np.testing.assert_array_equal(expected[0], got[0])
    np.testing.assert_allclose(expected[1], got[1], rtol=1e-6)


def test_two_fits_are_bit_identical() -> None:
    config = SequenceConfig(
        id_dim=8, feature_dim=4, hidden_dim=16, output_dim=8, epochs=3, num_threads=2, seed=11
    )
    data, sizes = training_data(chains(80), 24, [["S", "M", None]] * 80)
    first = SequenceRecommender(config).fit(data, sizes=sizes)
    second = SequenceRecommender(config).fit(data, sizes=sizes)
    assert first.net is not None and second.net is not None
    for (name, a), (_, b) in zip(
        first.net.state_dict().items(), second.net.state_dict().items(), strict=True
    ):
        assert torch_equal(a, b), name
    assert first.loss_history == second.loss_history
    other = SequenceRecommender(SequenceConfig(**{**config.to_dict(), "seed": 12})).fit(
        data, sizes=sizes
    )
    assert other.net is not None
    assert not torch_equal(other.net.tower.weight, first.net.tower.weight)


def torch_equal(a: object, b: object) -> bool:
    import torch

    assert isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor)
    return bool(torch.equal(a, b))


def category_world(seed: int = 0) -> tuple[pd.DataFrame, list[list[int]], list[int]]:
    """Three categories of 12 items; after a top comes a bottom, then shoes, then a top. Items
    4*c+3 of each category never occur in training (cold items)."""
    categories = ["top", "bottom", "shoes"]
    items = pd.DataFrame(
        {
            ItemCols.ID: [str(i) for i in range(36)],
            ItemCols.NAME: [f"item {i}" for i in range(36)],
            ItemCols.CATEGORY: [categories[i // 12] for i in range(36)],
            ItemCols.COLOUR: ["black" if i % 2 else "white" for i in range(36)],
            ItemCols.PRICE: [10.0 + i for i in range(36)],
        }
    )
    cold = [i for i in range(36) if i % 4 == 3]
    warm = [[i for i in range(12 * c, 12 * c + 12) if i not in cold] for c in range(3)]
    rng = np.random.default_rng(seed)
    sequences = []
    for _ in range(300):
        start = int(rng.integers(0, 3))
        sequences.append([int(rng.choice(warm[(start + j) % 3])) for j in range(4)])
    return items, sequences, cold


def test_side_features_generalise_to_cold_items() -> None:
    items, sequences, cold = category_world()
    data, _ = training_data(sequences, 36)
    config = SequenceConfig(**{**TINY.to_dict(), "epochs": 20})
    with_features = SequenceRecommender(config, item_features=ItemFeatures.from_frame(items)).fit(
        data
    )
    ids_only = SequenceRecommender(config).fit(data)

    def next_category_hit_rate(model: SequenceRecommender) -> float:
        hits = 0
        total = 0
        for item in cold:
            expected = (item // 12 + 1) % 3
            found, _ = model.recommend_from_sequence([item], k=5, exclude=[item])
            hits += int(np.sum(found // 12 == expected))
            total += len(found)
        return hits / total

    featured = next_category_hit_rate(with_features)
    assert featured >= 0.75
    assert featured > next_category_hit_rate(ids_only)


def test_item_features_from_frame() -> None:
    items, _, _ = category_world()
    features = ItemFeatures.from_frame(items, [str(i) for i in (35, 0, 12)])
    assert features.n_items == 3
    category = features.codes[ItemCols.CATEGORY]
    assert [features.vocabs[ItemCols.CATEGORY][c] for c in category] == ["shoes", "top", "bottom"]
    assert features.vocabs[ItemCols.MATERIAL] == ["<unk>"]
    # price bands are derived from price quartiles when the column is absent
    everything = ItemFeatures.from_frame(items)
    bands = everything.codes[ItemCols.PRICE_BAND]
    vocab = everything.vocabs[ItemCols.PRICE_BAND]
    assert vocab[bands[0]] == "budget" and vocab[bands[35]] == "luxury"


def test_rejects_misaligned_inputs() -> None:
    data, _ = training_data(chains(10), 24)
    with pytest.raises(ValueError):
        SequenceRecommender(TINY).fit(data, sizes=["M"])
    items, _, _ = category_world()
    with pytest.raises(ValueError):
        SequenceRecommender(TINY, item_features=ItemFeatures.from_frame(items)).fit(data)
    with pytest.raises(ValueError):
        SequenceConfig(loss="other")  # type: ignore[arg-type]
    with pytest.raises(RuntimeError):
        SequenceRecommender(TINY).item_vectors()


# --------------------------------------------------------------------------- bounded training


def _state(model: SequenceRecommender) -> dict[str, np.ndarray]:
    assert model.net is not None
    return {k: v.detach().numpy().copy() for k, v in model.net.state_dict().items()}


BOUNDED = SequenceConfig(
    id_dim=8,
    feature_dim=4,
    hidden_dim=16,
    output_dim=8,
    epochs=3,
    batch_size=16,
    num_negatives=8,  # < 24 items: the sampled loss
    num_threads=1,
    seed=5,
)


def test_max_windows_caps_each_epoch_and_stays_deterministic(
    caplog: pytest.LogCaptureFixture,
) -> None:
    data, sizes = training_data(chains(200), 24)
    capped = BOUNDED.replace(max_windows=40)
    with caplog.at_level("INFO", logger="lookbook.models.sequence"):
        first = SequenceRecommender(capped).fit(data, sizes=sizes)
    # 3 epochs x 40 windows (one window per customer here), not 3 x 200
    assert "120 windows" in caplog.text
    second = SequenceRecommender(capped).fit(data, sizes=sizes)
    for name, value in _state(first).items():
        np.testing.assert_array_equal(value, _state(second)[name], err_msg=name)
    assert first.loss_history == second.loss_history and len(first.loss_history) == 3
    full = SequenceRecommender(BOUNDED).fit(data, sizes=sizes)
    assert full.loss_history != first.loss_history
    # every customer keeps their history for recommend(), sampled in training or not
    assert first.histories.indptr[-1] == full.histories.indptr[-1] == 600
    assert len(first.recommend(np.arange(200), data.user_items, N=3)[0]) == 200


def test_time_budget_ends_training_after_the_epoch(caplog: pytest.LogCaptureFixture) -> None:
    data, sizes = training_data(chains(60), 24)
    config = BOUNDED.replace(epochs=4, max_train_seconds=1e-6)
    with caplog.at_level("WARNING", logger="lookbook.models.sequence"):
        model = SequenceRecommender(config).fit(data, sizes=sizes)
    assert len(model.loss_history) == 1 and model.stopped_by_budget
    assert "wall-clock budget" in caplog.text and "after epoch 1/4" in caplog.text
    roomy = config.replace(max_train_seconds=3600.0)
    unhurried = SequenceRecommender(roomy).fit(data, sizes=sizes)
    assert len(unhurried.loss_history) == 4 and not unhurried.stopped_by_budget


def test_batch_item_table_trains_like_the_full_table() -> None:
    items, sequences, _ = category_world()
    data, _ = training_data(sequences, 36)
    features = ItemFeatures.from_frame(items)
    config = BOUNDED.replace(epochs=2, id_dropout=0.3)
    full = SequenceRecommender(config, item_features=features).fit(data)
    batch = SequenceRecommender(config.replace(table_rows="batch"), item_features=features).fit(
        data
    )
    # same random draws (id dropout, negatives, order): equal up to float rounding
    np.testing.assert_allclose(batch.loss_history, full.loss_history, rtol=1e-4)
    np.testing.assert_allclose(batch.item_vectors(), full.item_vectors(), rtol=1e-3, atol=1e-4)


def test_bounded_config_round_trips_and_is_validated(tmp_path: Path) -> None:
    data, sizes = training_data(chains(30), 24)
    config = BOUNDED.replace(max_windows=10, max_train_seconds=60.0, table_rows="batch")
    model = SequenceRecommender(config).fit(data, sizes=sizes, show_progress=True)
    model.save(tmp_path / "seq")
    loaded = SequenceRecommender.load(tmp_path / "seq")
    assert loaded.config == config and loaded.stopped_by_budget is False
    np.testing.assert_array_equal(loaded.item_vectors(), model.item_vectors())
    for bad in ({"max_windows": 0}, {"max_train_seconds": 0.0}, {"table_rows": "some"}):
        with pytest.raises(ValueError):
            SequenceConfig(**bad)  # type: ignore[arg-type]
        with pytest.raises(ValueError):
            config.replace(**bad)
    # a saved config with a key this version does not know still loads
    assert SequenceConfig.from_dict({**config.to_dict(), "retired_option": 1}) == config
