"""The model contract, run against every model on synthetic data whose right answer is known.

The block matrix: customers come in blocks; each customer likes every item of their block except
one ("held out", different for neighbours), and nothing outside it. A collaborative model must
then recommend exactly the held-out item first once liked items are filtered, and call items of the
same block similar. Each customer bought their items one a day in the block's cyclic order,
starting after the held-out item, so the held-out item is also what a sequence model must predict
next. Popularity gets its own known-answer data (counts and a recency burst).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

from feature_store.errors import BundleError
from feature_store.schema import INTERACTION_WEIGHTS, InteractionType
from models.als import ALSRecommender
from models.base import (
    Recommender,
    SimilarItems,
    TrainingData,
    exclude_liked,
    top_n,
    top_n_batch,
    user_rows,
)
from models.popularity import PopularityRecommender
from models.sequence import SequenceConfig, SequenceRecommender

N_BLOCKS = 4
BLOCK_USERS = 12
BLOCK_ITEMS = 10
N_USERS = N_BLOCKS * BLOCK_USERS
N_ITEMS = N_BLOCKS * BLOCK_ITEMS
DAY = 86_400
NOW = 1_700_000_000
PURCHASE = list(InteractionType).index(InteractionType.PURCHASE)
PURCHASE_WEIGHT = INTERACTION_WEIGHTS[InteractionType.PURCHASE]


def block_of_user(user: int) -> int:
    return user // BLOCK_USERS


def block_items(block: int) -> set[int]:
    return set(range(block * BLOCK_ITEMS, (block + 1) * BLOCK_ITEMS))


def held_out(user: int) -> int:
    return block_of_user(user) * BLOCK_ITEMS + (user % BLOCK_USERS) % BLOCK_ITEMS


def training_data(
    users: list[int], items: list[int], ages_days: list[float], *, n_users: int, n_items: int
) -> TrainingData:
    """Purchase events -> TrainingData, the way the trainer builds it (summed weights)."""
    user_idx = np.asarray(users, dtype=np.int64)
    item_idx = np.asarray(items, dtype=np.int64)
    timestamps = (NOW - np.asarray(ages_days, dtype=np.float64) * DAY).astype(np.int64)
    order = np.argsort(timestamps, kind="stable")
    user_idx, item_idx, timestamps = user_idx[order], item_idx[order], timestamps[order]
    weights = np.full(len(user_idx), PURCHASE_WEIGHT, dtype=np.float32)
    matrix = sp.csr_matrix(
        (weights, (user_idx, item_idx)), shape=(n_users, n_items), dtype=np.float32
    )
    matrix.sum_duplicates()
    return TrainingData(
        user_items=matrix,
        user_idx=user_idx,
        item_idx=item_idx,
        timestamps=timestamps,
        event_types=np.full(len(user_idx), PURCHASE, dtype=np.int8),
        weights=weights,
        now=NOW,
    )


def block_data() -> TrainingData:
    users, items, ages = [], [], []
    for user in range(N_USERS):
        held = held_out(user)
        for item in sorted(block_items(block_of_user(user)) - {held}):
            step = (item - held) % BLOCK_ITEMS  # 1 .. BLOCK_ITEMS - 1 after the held-out item
            users.append(user)
            items.append(item)
            ages.append(float(BLOCK_ITEMS - step))
    return training_data(users, items, ages, n_users=N_USERS, n_items=N_ITEMS)


def make_als(seed: int = 42) -> ALSRecommender:
    # more factors than blocks, with enough regularisation that the spare ones stay quiet
    # (recovers the blocks for every seed tried, 0..9)
    return ALSRecommender(
        factors=8, regularization=1.0, iterations=10, random_state=seed, num_threads=1
    )


def make_popularity(seed: int = 42) -> PopularityRecommender:
    return PopularityRecommender(half_life_days=14.0)


def make_sequence(seed: int = 42) -> SequenceRecommender:
    # learns the block's cycle (held-out item first for every customer) for every seed tried, 0..9
    return SequenceRecommender(
        SequenceConfig(
            id_dim=8,
            feature_dim=4,
            hidden_dim=16,
            output_dim=8,
            epochs=30,
            batch_size=16,
            learning_rate=2e-2,
            loss="full",
            dropout=0.0,
            id_dropout=0.0,
            num_threads=1,
            seed=seed,
        )
    )


FACTORIES: dict[str, Callable[[int], Recommender]] = {
    "als": make_als,
    "popularity": make_popularity,
    "sequence": make_sequence,
}


@pytest.fixture(scope="module")
def data() -> TrainingData:
    return block_data()


@pytest.fixture(scope="module", params=sorted(FACTORIES))
def fitted(request: pytest.FixtureRequest, data: TrainingData) -> Recommender:
    return FACTORIES[request.param](42).fit(data)


@pytest.fixture(scope="module")
def als(data: TrainingData) -> ALSRecommender:
    return make_als().fit(data)


def liked(data: TrainingData, user: int) -> set[int]:
    return set(data.user_items[user].indices.tolist())


ALL_USERS = np.arange(N_USERS, dtype=np.int64)


# ------------------------------------------------------------------------------------ contract


#: Relative score tolerance between a single answer and a batch's row (0: bit-identical). The LSTM
#: runs one history through a numpy LSTM and a batch through torch: the same arithmetic, summed in
#: another order, so the scores agree to float32 rounding (and the ranking exactly).
SINGLE_VS_BATCH_RTOL: dict[str, float] = {"als": 0.0, "popularity": 0.0, "sequence": 1e-5}


def test_single_and_batch_agree(fitted: Recommender, data: TrainingData) -> None:
    ids, scores = fitted.recommend(ALL_USERS, data.user_items[ALL_USERS], N=7)
    assert ids.shape == scores.shape == (N_USERS, 7)
    rtol = SINGLE_VS_BATCH_RTOL[fitted.name]
    for user in range(N_USERS):
        one_ids, one_scores = fitted.recommend(user, data.user_items[user], N=7)
        np.testing.assert_array_equal(one_ids, ids[user])
        np.testing.assert_allclose(one_scores, scores[user], rtol=rtol, atol=0.0)


def test_user_items_as_rows_or_full_matrix(fitted: Recommender, data: TrainingData) -> None:
    users = np.array([5, 0, 31, 5], dtype=np.int64)
    by_rows = fitted.recommend(users, data.user_items[users], N=6)
    by_full = fitted.recommend(users, data.user_items, N=6)
    np.testing.assert_array_equal(by_rows[0], by_full[0])
    np.testing.assert_array_equal(by_rows[1], by_full[1])
    one_row = fitted.recommend(7, data.user_items[7], N=6)
    one_full = fitted.recommend(7, data.user_items, N=6)
    np.testing.assert_array_equal(one_row[0], one_full[0])


def test_n_is_respected(fitted: Recommender, data: TrainingData) -> None:
    ids, scores = fitted.recommend(3, data.user_items[3], N=5)
    assert ids.shape == scores.shape == (5,)
    ids, _ = fitted.recommend(3, data.user_items[3], N=0)
    assert ids.shape == (0,)
    # more than can qualify: a single answer is shorter, a batch is padded with -1 / -inf
    available = N_ITEMS - len(liked(data, 3))
    ids, scores = fitted.recommend(3, data.user_items[3], N=N_ITEMS + 5)
    assert len(ids) == available
    batch_ids, batch_scores = fitted.recommend(
        np.array([3, 4]), data.user_items[[3, 4]], N=N_ITEMS + 5
    )
    assert batch_ids.shape == (2, N_ITEMS + 5)
    np.testing.assert_array_equal(batch_ids[0, :available], ids)
    assert (batch_ids[0, available:] == -1).all()
    assert np.isneginf(batch_scores[0, available:]).all()


def test_already_liked_items_filtered_only_when_asked(
    fitted: Recommender, data: TrainingData
) -> None:
    for user in range(N_USERS):
        ids, _ = fitted.recommend(user, data.user_items[user], N=N_ITEMS)
        assert not set(ids.tolist()) & liked(data, user)
        unfiltered, _ = fitted.recommend(
            user, data.user_items[user], N=N_ITEMS, filter_already_liked_items=False
        )
        assert set(unfiltered.tolist()) == set(range(N_ITEMS))


def test_filter_items_respected(fitted: Recommender, data: TrainingData) -> None:
    banned = np.array([held_out(u) for u in range(0, N_USERS, 5)] + [0, 1, 2], dtype=np.int64)
    ids, _ = fitted.recommend(ALL_USERS, data.user_items, N=N_ITEMS, filter_items=banned)
    assert not set(ids.ravel().tolist()) & set(banned.tolist())
    one, _ = fitted.recommend(
        9, data.user_items[9], N=5, filter_already_liked_items=False, filter_items=banned
    )
    assert len(one) == 5 and not set(one.tolist()) & set(banned.tolist())


def test_ids_in_range_unique_and_sorted(fitted: Recommender, data: TrainingData) -> None:
    ids, scores = fitted.recommend(ALL_USERS, data.user_items, N=N_ITEMS)
    for row_ids, row_scores in zip(ids, scores, strict=True):
        valid = row_ids >= 0
        assert ((row_ids[valid] >= 0) & (row_ids[valid] < N_ITEMS)).all()
        assert len(set(row_ids[valid].tolist())) == valid.sum()
        assert np.isfinite(row_scores[valid]).all()
        assert (np.diff(row_scores[valid]) <= 0).all()
    assert ids.dtype == np.int64 and scores.dtype == np.float32


def test_save_load_gives_identical_outputs(
    fitted: Recommender, data: TrainingData, tmp_path: Path
) -> None:
    fitted.save(tmp_path / "model")
    loaded = type(fitted).load(tmp_path / "model")
    for filtered in (True, False):
        expected = fitted.recommend(
            ALL_USERS, data.user_items, N=9, filter_already_liked_items=filtered
        )
        actual = loaded.recommend(
            ALL_USERS, data.user_items, N=9, filter_already_liked_items=filtered
        )
        np.testing.assert_array_equal(actual[0], expected[0])
        np.testing.assert_array_equal(actual[1], expected[1])
    single = fitted.recommend(11, data.user_items[11], N=4)
    np.testing.assert_array_equal(loaded.recommend(11, data.user_items[11], N=4)[1], single[1])
    with np.load(tmp_path / "model" / "arrays.npz", allow_pickle=False) as arrays:
        assert all(arrays[key].dtype != object for key in arrays.files)


def test_fit_is_deterministic_under_the_seed(fitted: Recommender, data: TrainingData) -> None:
    again = FACTORIES[fitted.name](42).fit(data)
    for model in (fitted, again):
        assert model.name == fitted.name
    first = fitted.recommend(
        ALL_USERS, data.user_items, N=N_ITEMS, filter_already_liked_items=False
    )
    second = again.recommend(
        ALL_USERS, data.user_items, N=N_ITEMS, filter_already_liked_items=False
    )
    np.testing.assert_array_equal(first[0], second[0])
    np.testing.assert_array_equal(first[1], second[1])


def test_load_refuses_another_models_folder(fitted: Recommender, tmp_path: Path) -> None:
    fitted.save(tmp_path / "model")
    other = PopularityRecommender if isinstance(fitted, ALSRecommender) else ALSRecommender
    with pytest.raises(BundleError, match="holds model"):
        other.load(tmp_path / "model")
    with pytest.raises(BundleError, match=r"no config\.json"):
        type(fitted).load(tmp_path / "absent")


def test_unfitted_model_says_so(fitted: Recommender, data: TrainingData) -> None:
    with pytest.raises(RuntimeError, match="not fitted"):
        FACTORIES[fitted.name](0).recommend(0, data.user_items[0])


def test_user_items_of_the_wrong_shape_are_refused(fitted: Recommender) -> None:
    wrong_columns = sp.csr_matrix((1, N_ITEMS + 1), dtype=np.float32)
    with pytest.raises(ValueError, match="columns"):
        fitted.recommend(0, wrong_columns)
    too_few_rows = sp.csr_matrix((3, N_ITEMS), dtype=np.float32)
    with pytest.raises(ValueError, match="rows"):
        fitted.recommend(np.array([0, 10]), too_few_rows)


# ---------------------------------------------------------------------------- ALS known answers


def test_als_recommends_the_held_out_item_of_the_block(
    als: ALSRecommender, data: TrainingData
) -> None:
    ids, _ = als.recommend(ALL_USERS, data.user_items, N=1)
    np.testing.assert_array_equal(ids[:, 0], [held_out(u) for u in range(N_USERS)])
    unfiltered, _ = als.recommend(
        ALL_USERS, data.user_items, N=BLOCK_ITEMS, filter_already_liked_items=False
    )
    for user in range(N_USERS):
        assert set(unfiltered[user].tolist()) == block_items(block_of_user(user))


def test_als_similar_items_come_from_the_block(als: ALSRecommender) -> None:
    assert isinstance(als, SimilarItems)
    for item in range(N_ITEMS):
        ids, scores = als.similar_items(item, N=BLOCK_ITEMS - 1)
        assert item not in ids.tolist()
        assert set(ids.tolist()) == block_items(item // BLOCK_ITEMS) - {item}
        assert (np.diff(scores) <= 0).all() and scores.max() <= 1.0 + 1e-5
    ids, _ = als.similar_items(3, N=5, filter_items=np.array([0, 1, 2]))
    assert not {0, 1, 2, 3} & set(ids.tolist())
    with pytest.raises(ValueError, match="not in the model"):
        als.similar_items(N_ITEMS)


def test_als_item_vectors_are_unit_norm(als: ALSRecommender) -> None:
    vectors = als.item_vectors()
    assert vectors.shape == (N_ITEMS, 8) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, rtol=1e-5)
    assert vectors.flags.c_contiguous and not vectors.flags.writeable


def test_als_fold_in_is_the_exact_least_squares_solve(
    als: ALSRecommender, data: TrainingData
) -> None:
    from implicit.cpu.als import AlternatingLeastSquares

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        reference = AlternatingLeastSquares(
            factors=als.factors, regularization=als.regularization, alpha=als.alpha
        )
    reference.item_factors = als.item_factors.copy()
    reference.user_factors = als.user_factors.copy()
    for user in (0, 13, 47):
        row = data.user_items[user]
        expected = reference.recalculate_user(user, row)
        folded = als.user_vector(row.indices, row.data)
        np.testing.assert_allclose(folded, expected, rtol=1e-4, atol=1e-5)
        # the converged training factor is (nearly) the fixed point of the same solve
        np.testing.assert_allclose(folded, als.user_factors[user], atol=0.05)
    # repeated items sum their weights; non-positive totals are dropped
    row = data.user_items[5]
    items = np.concatenate([row.indices, row.indices, [held_out(5)]])
    weights = np.concatenate([row.data / 2, row.data / 2, [-1.0]])
    np.testing.assert_allclose(
        als.user_vector(items, weights), als.user_vector(row.indices, row.data), atol=1e-5
    )
    assert not als.user_vector(np.array([], dtype=np.int64)).any()


def test_als_fold_in_recommends_from_the_block(als: ALSRecommender, data: TrainingData) -> None:
    for user in range(0, N_USERS, 5):
        row = data.user_items[user]
        ids, _ = als.recommend_from_items(row.indices, row.data, N=1)
        assert ids.tolist() == [held_out(user)]
    # a brand-new customer who bought three items of block 2 gets the rest of block 2
    fresh, _ = als.recommend_from_items(np.array([20, 21, 22]), N=5)
    assert set(fresh.tolist()) <= block_items(2) - {20, 21, 22}
    kept, _ = als.recommend_from_items(
        np.array([20, 21, 22]), N=3, filter_already_liked_items=False
    )
    assert set(kept.tolist()) <= block_items(2)


def test_als_recalculate_user_folds_in_unknown_customers(
    als: ALSRecommender, data: TrainingData
) -> None:
    with pytest.raises(ValueError, match="not in the model"):
        als.recommend(N_USERS, data.user_items[0], N=3)
    rows = data.user_items[[2, 30]]
    ids, _ = als.recommend(np.array([N_USERS, N_USERS + 1]), rows, N=1, recalculate_user=True)
    assert ids[:, 0].tolist() == [held_out(2), held_out(30)]
    np.testing.assert_allclose(als.fold_in(rows)[0], als.user_vector(rows[0].indices, rows[0].data))


def test_als_fit_twice_gives_identical_factors(data: TrainingData) -> None:
    for threads in (1, 0):
        first = ALSRecommender(factors=8, iterations=5, random_state=7, num_threads=threads)
        second = ALSRecommender(factors=8, iterations=5, random_state=7, num_threads=threads)
        first.fit(data)
        second.fit(data)
        np.testing.assert_array_equal(first.user_factors, second.user_factors)
        np.testing.assert_array_equal(first.item_factors, second.item_factors)
    other = ALSRecommender(factors=8, iterations=5, random_state=8).fit(data)
    assert not np.array_equal(other.item_factors, first.item_factors)


def test_als_loaded_model_folds_in_identically(
    als: ALSRecommender, data: TrainingData, tmp_path: Path
) -> None:
    als.save(tmp_path / "als")
    loaded = ALSRecommender.load(tmp_path / "als")
    np.testing.assert_array_equal(loaded.user_factors, als.user_factors)
    np.testing.assert_array_equal(loaded.item_factors, als.item_factors)
    row = data.user_items[17]
    np.testing.assert_array_equal(
        loaded.user_vector(row.indices, row.data), als.user_vector(row.indices, row.data)
    )
    np.testing.assert_array_equal(loaded.similar_items(4)[1], als.similar_items(4)[1])
    np.testing.assert_array_equal(loaded.item_vectors(), als.item_vectors())


def test_als_rejects_bad_inputs(als: ALSRecommender) -> None:
    with pytest.raises(ValueError, match="not in the model"):
        als.user_vector(np.array([0, N_ITEMS]))
    with pytest.raises(ValueError, match="weights"):
        als.user_vector(np.array([0, 1]), np.array([1.0]))
    with pytest.raises(ValueError, match="shape"):
        als.user_query(np.zeros(3))
    with pytest.raises(ValueError, match="factors"):
        ALSRecommender(factors=0)
    assert als.user_query(als.user_factors[0]).dtype == np.float32


# ------------------------------------------------------------------------ LSTM known answers


@pytest.fixture(scope="module")
def lstm(data: TrainingData) -> SequenceRecommender:
    return make_sequence().fit(data)


def test_lstm_recommends_the_held_out_item_next(
    lstm: SequenceRecommender, data: TrainingData
) -> None:
    ids, _ = lstm.recommend(ALL_USERS, data.user_items, N=1)
    np.testing.assert_array_equal(ids[:, 0], [held_out(u) for u in range(N_USERS)])
    # a next-basket model: what comes next is the held-out item, bought items filtered or not
    unfiltered, _ = lstm.recommend(
        ALL_USERS, data.user_items, N=1, filter_already_liked_items=False
    )
    np.testing.assert_array_equal(unfiltered[:, 0], ids[:, 0])


def test_lstm_continues_a_session_along_the_cycle(lstm: SequenceRecommender) -> None:
    # an anonymous session that bought items 2, 3 and 4 of block 2 in that order
    ids, _ = lstm.recommend_from_sequence([22, 23, 24], k=1, exclude=[22, 23, 24])
    assert ids.tolist() == [25]
    items, _, _, times = lstm.history_of(7)
    assert items.tolist() == [*range(8, BLOCK_ITEMS), *range(0, 7)]  # held out: item 7
    assert (np.diff(times) > 0).all()


# --------------------------------------------------------------------- popularity known answers


def test_popularity_ranks_by_count_with_ties_by_index() -> None:
    counts = {3: 5, 0: 4, 4: 4, 1: 1}  # items 2 and 5 never bought
    users, items = [], []
    for item, count in counts.items():
        users += list(range(count))
        items += [item] * count
    data = training_data(users, items, [0.0] * len(users), n_users=6, n_items=6)
    model = PopularityRecommender().fit(data)
    np.testing.assert_allclose(model.scores, [20, 5, 0, 25, 20, 0])
    ids, _ = model.recommend(5, data.user_items[5], N=6)
    assert ids.tolist() == [3, 0, 4, 1, 2, 5]
    assert model.ranking().tolist() == [3, 0, 4, 1, 2, 5]
    ids, _ = model.recommend(0, data.user_items[0], N=3)  # customer 0 bought 3, 0, 4 and 1
    assert ids.tolist() == [2, 5]


def test_popularity_decay_makes_a_recent_burst_beat_an_old_one() -> None:
    # item 0: ten purchases sixty days ago; item 1: four purchases yesterday
    users = list(range(10)) + list(range(4))
    items = [0] * 10 + [1] * 4
    ages = [60.0] * 10 + [1.0] * 4
    data = training_data(users, items, ages, n_users=10, n_items=2)
    decayed = PopularityRecommender(half_life_days=14.0).fit(data)
    np.testing.assert_allclose(
        decayed.scores, [50 * 0.5 ** (60 / 14), 20 * 0.5 ** (1 / 14)], rtol=1e-6
    )
    assert decayed.recommend(0, data.user_items, N=2, filter_already_liked_items=False)[
        0
    ].tolist() == [1, 0]
    plain = PopularityRecommender(half_life_days=None).fit(data)
    np.testing.assert_allclose(plain.scores, [50, 20])
    windowed = PopularityRecommender(half_life_days=None, window_days=30).fit(data)
    np.testing.assert_allclose(windowed.scores, [0, 20])


def test_popularity_ignores_non_positive_events() -> None:
    data = training_data([0, 1, 2], [0, 1, 1], [0.0, 0.0, 0.0], n_users=3, n_items=2)
    weights = np.array([5.0, -4.0, 0.0], dtype=np.float32)  # a purchase, a return, an impression
    data = TrainingData(
        user_items=data.user_items,
        user_idx=data.user_idx,
        item_idx=data.item_idx,
        timestamps=data.timestamps,
        event_types=data.event_types,
        weights=weights,
        now=data.now,
    )
    model = PopularityRecommender().fit(data)
    np.testing.assert_allclose(model.scores, [5, 0])


def test_popularity_serves_unknown_customers(data: TrainingData) -> None:
    model = PopularityRecommender().fit(data)
    empty = sp.csr_matrix((1, N_ITEMS), dtype=np.float32)
    ids, _ = model.recommend(10_000, empty, N=4)
    assert ids.tolist() == model.ranking()[:4].tolist()


# ------------------------------------------------------------------------- base-contract helpers


def test_top_n_breaks_ties_by_lower_index_at_the_cutoff() -> None:
    scores = np.array([1.0, 3.0, 2.0, 2.0, 2.0, 2.0, 0.0], dtype=np.float32)
    for n in range(1, 8):
        ids, _ = top_n(scores, n)
        assert ids.tolist() == [1, 2, 3, 4, 5, 0, 6][:n]
    ties = np.zeros(1000, dtype=np.float32)
    assert top_n(ties, 5)[0].tolist() == [0, 1, 2, 3, 4]


def test_top_n_handles_nan_inf_and_padding() -> None:
    scores = np.array([np.nan, 1.0, -np.inf, np.inf, 0.5], dtype=np.float32)
    ids, values = top_n(scores, 5, exclude=np.array([-1, 4, 99]))
    assert ids.tolist() == [3, 1]
    assert values[0] == np.inf
    batch_ids, batch_values = top_n_batch(np.vstack([scores, scores]), 4)
    assert batch_ids.tolist() == [[3, 1, 4, -1]] * 2
    assert np.isneginf(batch_values[:, 3]).all()


@pytest.mark.parametrize("seed", range(4))
def test_top_n_batch_is_top_n_of_every_row(seed: int) -> None:
    """The batched ranking (a sampled floor, then the rows' candidates) gives each row exactly
    top_n's answer: ties at the cut-off, NaN, +-inf, -0.0, rows of few finite scores, catalogs
    wide enough to be sampled."""
    rng = np.random.default_rng(seed)
    for trial in range(300):
        n, n_items = int(rng.integers(0, 12)), int(rng.integers(1, 3000 if trial % 2 else 60))
        N = int(rng.integers(0, 8 if trial % 3 else 70))
        if trial % 4 == 0:
            scores = rng.standard_normal((n, n_items))
        else:
            scores = rng.integers(-2, 3, size=(n, n_items)).astype(np.float32)
            for value, share in ((-np.inf, 0.2), (np.nan, 0.05), (np.inf, 0.02), (-0.0, 0.1)):
                scores[rng.random(scores.shape) < share] = value
        ids, values = top_n_batch(scores, N)
        assert ids.shape == values.shape == (n, N)
        for r in range(n):
            row_ids, row_values = top_n(scores[r], N)
            assert ids[r].tolist() == [*row_ids.tolist(), *[-1] * (N - len(row_ids))]
            padded = np.full(N, -np.inf, dtype=np.float32)
            padded[: len(row_values)] = row_values
            assert values[r].tobytes() == padded.tobytes()


def test_user_rows_and_exclude_liked() -> None:
    full = sp.csr_matrix(np.array([[1, 0, 0], [0, 1, 1], [1, 1, 0]], dtype=np.float32))
    picked = user_rows(full, np.array([2, 0]), 3)
    np.testing.assert_array_equal(picked.toarray(), full[[2, 0]].toarray())
    assert user_rows(full[[1]], np.array([7]), 3).shape == (1, 3)
    scores = np.zeros((2, 3), dtype=np.float32)
    exclude_liked(scores, picked, np.array([2, -1]))
    assert np.isneginf(scores).tolist() == [[True, True, True], [True, False, True]]
