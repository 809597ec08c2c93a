"""Outfit and basket adapters: the ragged set form, splits, same-day baskets, and the counts of the
real Mango, Polyvore and H&M files against their READMEs."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from conftest import SHARED_DATA, shared_dataset

from feature_store.dataset import Dataset
from feature_store.outfits import (
    POLYVORE_CATEGORIES,
    Outfits,
    baskets_from_dataset,
    load_mango_outfits,
    load_polyvore_nondisjoint,
    split_outfits,
)


def test_outfits_ragged_form() -> None:
    sets = Outfits.from_lists([[3, 1], [2], [4, 5, 6]], ids=["a", "b", "c"])
    assert len(sets) == 3
    assert sets[2].tolist() == [4, 5, 6]
    assert sets.sizes().tolist() == [2, 1, 3]
    assert [s.tolist() for s in sets.subset([2, 0])] == [[4, 5, 6], [3, 1]]
    assert sets.subset([2, 0]).ids == ("c", "a")
    both = sets.concat(Outfits.from_lists([[7, 8]], ids=["d"]))
    assert [s.tolist() for s in both] == [[3, 1], [2], [4, 5, 6], [7, 8]]
    assert both.min_size(2).ids == ("a", "c", "d")
    assert len(Outfits.empty()) == 0
    with pytest.raises(ValueError):
        Outfits(indptr=np.array([0, 3]), indices=np.array([1, 2]), ids=("x",))


def test_split_outfits_is_a_seeded_partition() -> None:
    sets = Outfits.from_lists([[i, i + 1] for i in range(100)])
    parts = split_outfits(sets, {"train": 0.8, "test": 0.2}, seed=3)
    assert (len(parts["train"]), len(parts["test"])) == (80, 20)
    assert set(parts["train"].ids) | set(parts["test"].ids) == set(sets.ids)
    assert not set(parts["train"].ids) & set(parts["test"].ids)
    again = split_outfits(sets, {"train": 0.8, "test": 0.2}, seed=3)
    assert again["test"].ids == parts["test"].ids
    assert split_outfits(sets, {"train": 0.8, "test": 0.2}, seed=4)["test"].ids != parts["test"].ids
    with pytest.raises(ValueError):
        split_outfits(sets, {"a": 0.5, "b": 0.2}, seed=0)


def _shop() -> Dataset:
    items = pd.DataFrame(
        {
            "item_id": ["top", "jeans", "shoes", "tee", "coat"],
            "name": ["Top", "Jeans", "Shoes", "Tee", "Coat"],
            "category": ["top", "bottom", "shoes", "top", "outerwear"],
            "price": [10.0, 20.0, 30.0, 5.0, 50.0],
        }
    )
    rows = [
        ("ann", "top", "purchase", "2020-01-01 10:00"),
        ("ann", "jeans", "purchase", "2020-01-01 18:00"),
        ("ann", "jeans", "purchase", "2020-01-01 18:00"),  # a second unit
        ("ann", "shoes", "purchase", "2020-01-02 09:00"),  # next day: another basket
        ("bob", "top", "purchase", "2020-01-01 11:00"),
        ("bob", "tee", "purchase", "2020-01-01 11:05"),  # two tops: same category only
        ("cat", "coat", "purchase", "2020-01-03 12:00"),
        ("cat", "shoes", "purchase", "2020-01-03 12:00"),
        ("cat", "shoes", "return", "2020-01-05 12:00"),  # returned: not part of the look
        ("cat", "jeans", "purchase", "2020-01-03 13:00"),
        ("dan", "coat", "view", "2020-01-03 12:00"),
        ("dan", "shoes", "purchase", "2020-01-03 12:00"),
    ]
    interactions = pd.DataFrame(rows, columns=["customer_id", "item_id", "type", "timestamp"])
    interactions["timestamp"] = pd.to_datetime(interactions["timestamp"], utc=True)
    return Dataset(items=items, interactions=interactions, source="test")


def test_same_day_baskets_from_a_dataset() -> None:
    shop = _shop()
    baskets = baskets_from_dataset(shop)
    as_ids = {
        key: sorted(shop.items["item_id"][b].tolist())
        for key, b in zip(baskets.ids, baskets, strict=True)
    }
    assert as_ids == {
        "ann@2020-01-01": ["jeans", "top"],
        "bob@2020-01-01": ["tee", "top"],
        "cat@2020-01-03": ["coat", "jeans"],
    }
    assert list(baskets.ids) == ["ann@2020-01-01", "bob@2020-01-01", "cat@2020-01-03"]
    cross = baskets_from_dataset(shop, cross_category_only=True)
    assert set(cross.ids) == {"ann@2020-01-01", "cat@2020-01-03"}
    singles = baskets_from_dataset(shop, min_items=1)
    assert len(singles) == 5  # ann x2, bob, cat, dan
    window = baskets_from_dataset(
        shop, start=pd.Timestamp("2020-01-02", tz="UTC"), end=pd.Timestamp("2020-01-04", tz="UTC")
    )
    assert list(window.ids) == ["cat@2020-01-03"]
    empty = baskets_from_dataset(shop, end=pd.Timestamp("2019-01-01", tz="UTC"))
    assert len(empty) == 0


@pytest.mark.realdata
def test_mango_counts_match_the_readme() -> None:
    data = load_mango_outfits(shared_dataset("mango_outfits_datathon2023"))
    outfits = data.splits["all"]
    assert data.n_items == 9_222
    assert len(outfits) == 7_842
    assert len(outfits.indices) == 43_582
    sizes = outfits.sizes()
    assert (sizes.min(), sizes.max()) == (2, 15)
    assert round(float(sizes.mean()), 2) == 5.56
    assert int(np.median(sizes)) == 5
    per_item = np.bincount(outfits.indices, minlength=data.n_items)
    assert per_item.max() == 637
    assert data.items["item_id"].is_unique
    colours = data.items["colour"].nunique()
    assert colours == 10
    assert data.items["material"].nunique() == 7
    assert data.items["product_type"].nunique() == 123
    counts = data.items["category"].value_counts()
    # README: Tops 2,768; Bottoms 1,631; Dresses 1,374; Outerwear 725; accessories 2,633 split
    # into shoes (footwear 494), underwear (133 + 2 intimate), swimwear (45) and accessories
    assert counts["top"] == 2_768
    assert counts["bottom"] == 1_631
    assert counts["dress"] == 1_374
    assert counts["outerwear"] == 725
    assert counts["shoes"] == 494
    assert counts["accessory"] + counts["shoes"] + counts["underwear"] + counts["swimwear"] == (
        2_633 + 11
    )  # + the 11 Home items of family "Intimate" (README: Home / Swim and intimate)
    assert set(data.items["collection"].dropna()) == {
        "2019",
        "2020",
        "2021",
        "2022",
        "2023",
        "2024",
    }


@pytest.mark.realdata
def test_polyvore_nondisjoint_counts_match_the_readme() -> None:
    data = load_polyvore_nondisjoint(shared_dataset("polyvore_outfits_lzcn_processed"))
    assert data.n_items == 251_008
    per_category = data.items["product_type"].value_counts()
    assert per_category.to_dict() == {
        "accessories": 6_973,
        "all-body": 18_478,
        "bags": 40_717,
        "bottoms": 27_670,
        "hats": 6_071,
        "jewellery": 41_414,
        "outerwear": 17_065,
        "scarves": 4_898,
        "shoes": 44_850,
        "sunglasses": 9_874,
        "tops": 32_998,
    }
    assert set(per_category.index) == set(POLYVORE_CATEGORIES)
    assert len(data.splits["valid"]) == 5_000
    assert len(data.splits["test"]) == 10_000
    sizes = np.concatenate([data.splits["valid"].sizes(), data.splits["test"].sizes()])
    assert (sizes.min(), sizes.max()) == (2, 17)
    fitb = data.fitb["test"]
    assert len(fitb) == 10_000
    assert fitb.candidates.shape == (10_000, 4)
    assert (fitb.answer == 0).all()
    # the answer completes the test outfit: context + answer == the outfit of the same row
    for q in (0, 1, 9_999):
        outfit = sorted(data.splits["test"][q].tolist())
        assert sorted([*fitb.context[q].tolist(), int(fitb.candidates[q, 0])]) == outfit
    for split, n in (("valid", 5_000), ("test", 10_000)):
        questions = data.compatibility[split]
        assert len(questions) == 2 * n
        assert int(questions.labels.sum()) == n
    # the rebuilt training outfits never repeat a valid or test outfit
    held_out = {frozenset(o.tolist()) for o in data.splits["test"]} | {
        frozenset(o.tolist()) for o in data.splits["valid"]
    }
    assert not any(frozenset(o.tolist()) in held_out for o in data.splits["train"])
    assert len(data.splits["train"]) > 25_000
    # fine categories from the Vasileva subset: 80.0 % of the items
    if (SHARED_DATA / "polyvore_outfits_vasileva_subset").exists():
        assert round(float(data.items["fine_type"].notna().mean()), 3) == 0.800


@pytest.mark.realdata
def test_hm_baskets_match_the_readme_orders() -> None:
    from feature_store.loaders import load_dataset

    dataset = load_dataset(shared_dataset("hm_neo4j_customer_sample"))
    orders = baskets_from_dataset(dataset, min_items=1)
    assert len(orders) == 6_529  # README: one orderId per customer + date pair
    multi = baskets_from_dataset(dataset)
    assert 0 < len(multi) < len(orders)
    assert (multi.sizes() >= 2).all()
    assert multi.sizes().max() <= 48
