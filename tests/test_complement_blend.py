"""The co-occurrence statistics (:mod:`models.cooccurrence`) and their blend inside the
complementary model: known counts and decay, the blend following co-purchases where the data has
them and attributes for items never sold, one merged list (``rank``), and the save / load round
trip."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from feature_store.outfits import Outfits
from models.complementary import ComplementaryModel
from models.cooccurrence import CoOccurrence

VARIANTS = 4


def make_catalog() -> pd.DataFrame:
    rows = []
    for category, ptype, colours in (
        ("top", "t-shirt", ("navy", "red")),
        ("bottom", "chinos", ("beige", "black")),
    ):
        for colour in colours:
            for v in range(VARIANTS):
                rows.append(
                    {
                        "item_id": f"{ptype}-{colour}-{v}",
                        "category": category,
                        "product_type": ptype,
                        "colour": colour,
                    }
                )
    return pd.DataFrame(rows)


def idx(catalog: pd.DataFrame, colour: str, variant: int) -> int:
    return int(catalog.index[catalog["item_id"].str.contains(f"-{colour}-{variant}")][0])


def look_sets(catalog: pd.DataFrame, n: int, seed: int) -> Outfits:
    """Navy tees go with beige chinos, red tees with black chinos (variant 3 never appears)."""
    rng = np.random.default_rng(seed)
    sets = []
    for _ in range(n):
        top, bottom = ("navy", "beige") if rng.random() < 0.5 else ("red", "black")
        sets.append(
            [idx(catalog, top, int(rng.integers(3))), idx(catalog, bottom, int(rng.integers(3)))]
        )
    return Outfits.from_lists(sets)


@pytest.fixture(scope="module")
def catalog() -> pd.DataFrame:
    return make_catalog()


@pytest.fixture(scope="module")
def stats(catalog: pd.DataFrame) -> CoOccurrence:
    # the shop's customers buy navy tee 0 with *black* chinos 0, against the looks
    tee, black = idx(catalog, "navy", 0), idx(catalog, "black", 0)
    return CoOccurrence(half_life_days=None, popularity_half_life_days=None).fit(
        len(catalog), [[tee, black]] * 6, events=[tee, black, black]
    )


@pytest.fixture(scope="module")
def fitted(catalog: pd.DataFrame, stats: CoOccurrence) -> ComplementaryModel:
    model = ComplementaryModel(
        dim=8, attr_dim=4, hidden=16, epochs=20, batch_size=32, negatives=4, lr=2e-2, seed=1,
        cooc_weight=5.0, popularity_weight=0.5,
    )  # fmt: skip
    return model.fit(
        catalog, look_sets(catalog, 200, seed=2), attributes=["product_type", "colour"],
        cooccurrence=stats,
    )  # fmt: skip


def test_cooccurrence_counts_decay_and_window() -> None:
    stats = CoOccurrence(half_life_days=10.0, popularity_half_life_days=7.0, window_days=30.0).fit(
        4,
        [[0, 1, 2], [1, 2], [2, 3]],
        set_ages_days=[0.0, 10.0, 40.0],
        set_weights=[1.0, 2.0, 1.0],
        events=[0, 0, 3],
        event_ages_days=[0.0, 7.0, 31.0],
    )
    dense = stats.matrix_.toarray()
    assert dense[0, 1] == pytest.approx(1.0)
    assert dense[1, 2] == pytest.approx(1.0 + 2.0 * 0.5)  # the second set is one half-life old
    assert dense[2, 3] == 0.0  # outside the window
    assert np.diag(dense).sum() == 0.0
    np.testing.assert_allclose(dense, dense.T)
    np.testing.assert_allclose(stats.popularity_, [1.5, 0.0, 0.0, 0.0])
    np.testing.assert_allclose(stats.scores([0, 1]), dense[0] + dense[1])
    assert stats.scores([]).sum() == 0.0


def test_cooccurrence_round_trip_and_bad_input() -> None:
    stats = CoOccurrence().fit(3, [[0, 1], [1, 2]], set_ages_days=[5.0, 50.0], events=[2])
    copy = CoOccurrence.from_arrays(stats.params(), stats.to_arrays("p__"), "p__")
    assert (copy.matrix_ != stats.matrix_).nnz == 0
    np.testing.assert_array_equal(copy.popularity_, stats.popularity_)
    with pytest.raises(ValueError, match="outside"):
        CoOccurrence().fit(2, [[0, 5]])
    with pytest.raises(ValueError, match="one entry per set"):
        CoOccurrence().fit(3, [[0, 1]], set_ages_days=[1.0, 2.0])


def test_blend_follows_co_purchases_where_the_data_has_them(
    fitted: ComplementaryModel, catalog: pd.DataFrame, stats: CoOccurrence
) -> None:
    tee, black = idx(catalog, "navy", 0), idx(catalog, "black", 0)
    ids, _ = fitted.complete([tee], k_per_slot=3)["bottom"]
    assert ids[0] == black  # bought together, against the attributes
    fitted.set_cooccurrence(None)
    try:
        plain, _ = fitted.complete([tee], k_per_slot=3)["bottom"]
    finally:
        fitted.set_cooccurrence(stats)
    assert set(catalog.loc[plain, "colour"]) == {"beige"}  # the look alone


def test_items_never_sold_are_scored_from_attributes(
    fitted: ComplementaryModel, catalog: pd.DataFrame, stats: CoOccurrence
) -> None:
    tee = idx(catalog, "navy", 3)  # in no outfit, no basket, no sale
    never = np.array([idx(catalog, "beige", 3), idx(catalog, "black", 3)])
    blended = fitted.score_candidates([tee], never)
    fitted.set_cooccurrence(None)
    try:
        plain = fitted.score_candidates([tee], never)
    finally:
        fitted.set_cooccurrence(stats)
    np.testing.assert_allclose(blended, plain, rtol=1e-6)  # the blend adds nothing for them
    assert blended[0] > blended[1]  # and the attributes still prefer beige with navy


def test_rank_merges_slots_best_first(fitted: ComplementaryModel, catalog: pd.DataFrame) -> None:
    tee = idx(catalog, "navy", 1)
    ids, scores = fitted.rank([tee], 5, categories=["top", "bottom"], exclude=[0])
    assert len(ids) == 5 and tee not in ids and 0 not in ids
    assert np.all(np.diff(scores) <= 0)
    full = fitted.score_candidates([tee], ids)
    np.testing.assert_allclose(scores, full, rtol=1e-5, atol=1e-5)


def test_save_load_keeps_the_blend(
    fitted: ComplementaryModel, catalog: pd.DataFrame, tmp_path: Path
) -> None:
    fitted.save(tmp_path / "m")
    loaded = ComplementaryModel.load(tmp_path / "m")
    assert loaded.blends and loaded.cooc_weight == fitted.cooc_weight
    seeds = [idx(catalog, "navy", 0), idx(catalog, "red", 2)]
    for a, b in zip(loaded.rank(seeds, 6), fitted.rank(seeds, 6), strict=True):
        np.testing.assert_array_equal(a, b)
    assert loaded.compatibility(seeds) == pytest.approx(fitted.compatibility(seeds))


def test_blend_is_deterministic(catalog: pd.DataFrame, stats: CoOccurrence) -> None:
    def fit() -> ComplementaryModel:
        return ComplementaryModel(
            dim=8, attr_dim=4, hidden=16, epochs=3, negatives=4, seed=7, cooc_weight=1.0
        ).fit(catalog, look_sets(catalog, 60, seed=3), cooccurrence=stats)

    a, b = fit(), fit()
    seeds = [idx(catalog, "red", 1)]
    np.testing.assert_array_equal(a.rank(seeds, 8)[0], b.rank(seeds, 8)[0])
    np.testing.assert_array_equal(a.rank(seeds, 8)[1], b.rank(seeds, 8)[1])
    with pytest.raises(ValueError, match="cover"):
        a.set_cooccurrence(CoOccurrence().fit(len(catalog) + 1, []))


def test_event_cooccurrence_weighs_purchases_carts_and_views() -> None:
    from feature_store.dataset import Dataset
    from training.data import build_id_maps
    from training.look import ComplementaryConfig, event_cooccurrence

    items = pd.DataFrame(
        {
            "item_id": [f"i{k}" for k in range(5)],
            "name": [f"item {k}" for k in range(5)],
            "category": ["top", "bottom", "shoes", "top", "bottom"],
            "price": [10.0] * 5,
        }
    )
    day = pd.Timestamp("2024-03-10 12:00", tz="UTC")
    rows = [  # (customer, item, type, days before the end)
        ("a", "i0", "purchase", 0), ("a", "i1", "purchase", 0),  # co-purchase
        ("b", "i0", "add_to_cart", 0), ("b", "i2", "add_to_cart", 0),  # co-cart
        ("c", "i3", "view", 0), ("c", "i4", "view", 0),  # co-view
        ("d", "i0", "purchase", 40), ("d", "i4", "purchase", 40),  # older than the window
        ("e", "i0", "purchase", 1), ("e", "i3", "purchase", 2),  # different days
    ]  # fmt: skip
    interactions = pd.DataFrame(
        {
            "customer_id": [r[0] for r in rows],
            "item_id": [r[1] for r in rows],
            "type": [r[2] for r in rows],
            "timestamp": [day - pd.Timedelta(days=r[3]) for r in rows],
        }
    )
    dataset = Dataset(items=items, interactions=interactions)
    config = ComplementaryConfig(basket_days=30, cart_weight=0.5, view_weight=0.1)
    stats, summary = event_cooccurrence(
        dataset, build_id_maps(dataset), config, now=day + pd.Timedelta(hours=1)
    )
    dense = stats.matrix_.toarray()
    assert dense[0, 1] == pytest.approx(1.0)
    assert dense[0, 2] == pytest.approx(0.5)
    assert dense[3, 4] == pytest.approx(0.1)
    assert dense[0, 4] == 0.0 and dense[0, 3] == 0.0
    assert summary["cooccurrence_sets"] == {"purchase": 1, "cart": 1, "view": 1}
    assert stats.popularity_[0] > stats.popularity_[3] > 0.0  # sales, recency-weighted
    assert stats.popularity_[2] == 0.0  # carted, never bought


def test_id_weight_scales_the_id_part_without_retraining(
    catalog: pd.DataFrame, tmp_path: Path
) -> None:
    model = ComplementaryModel(dim=8, attr_dim=4, hidden=16, epochs=3, negatives=4, seed=5).fit(
        catalog, look_sets(catalog, 60, seed=4)
    )
    seeds, candidates = [idx(catalog, "navy", 0)], np.arange(len(catalog))
    full = model.score_candidates(seeds, candidates)
    model.set_id_weight(0.0)
    attributes_only = model.score_candidates(seeds, candidates)
    assert np.abs(model.item_vectors_[:, model.dim :]).max() == 0.0
    model.set_id_weight(0.25)
    quarter = model.score_candidates(seeds, candidates)
    # pair scores are linear in the id weight: a quarter of the way from attributes to all
    np.testing.assert_allclose(
        quarter, attributes_only + 0.25 * (full - attributes_only), atol=1e-5
    )
    model.save(tmp_path / "m")
    loaded = ComplementaryModel.load(tmp_path / "m")
    assert loaded.id_weight == 0.25
    np.testing.assert_allclose(loaded.score_candidates(seeds, candidates), quarter, atol=1e-6)
    model.set_id_weight(1.0)
    np.testing.assert_allclose(model.score_candidates(seeds, candidates), full, atol=1e-6)
