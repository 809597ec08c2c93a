"""Known-answer tests of the complementary ("complete the look") model on synthetic outfits.

Three looks decide which attributes go together (a navy t-shirt with beige chinos, white sneakers
and a navy cap; a white shirt with black trousers, black boots and a black belt; a red blouse with a
black skirt, red heels and a red bag). Every (product type, colour) exists in several items, and
distractors (white boots, black sneakers, ...) exist too, so only the attribute *combinations*
separate right from wrong. Some items of every look never appear in an outfit: the model must score
them from their attributes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
import pytest

from feature_store.errors import InvalidRequest
from feature_store.outfits import Outfits
from models.complementary import ComplementaryModel

LOOKS: list[dict[str, tuple[str, str]]] = [
    {
        "top": ("t-shirt", "navy"),
        "bottom": ("chinos", "beige"),
        "shoes": ("sneakers", "white"),
        "accessory": ("cap", "navy"),
    },
    {
        "top": ("shirt", "white"),
        "bottom": ("trousers", "black"),
        "shoes": ("boots", "black"),
        "accessory": ("belt", "black"),
    },
    {
        "top": ("blouse", "red"),
        "bottom": ("skirt", "black"),
        "shoes": ("heels", "red"),
        "accessory": ("bag", "red"),
    },
]
COLOURS = ("navy", "white", "black", "red", "beige")
VARIANTS = 4  # items per (product type, colour)
UNSEEN = 1  # of which never in any outfit (the last ones)


def make_catalog() -> pd.DataFrame:
    rows = []
    for category in ("top", "bottom", "shoes", "accessory"):
        types = sorted({look[category][0] for look in LOOKS})
        for ptype in types:
            for colour in COLOURS:
                for v in range(VARIANTS):
                    rows.append(
                        {
                            "item_id": f"{ptype}-{colour}-{v}",
                            "category": category,
                            "product_type": ptype,
                            "colour": colour,
                            "material": ["cotton", "wool", "linen", "leather"][v % 4],
                            "styles": ["casual"] if v % 2 else ["casual", "smart"],
                            "variant": v,
                        }
                    )
    return pd.DataFrame(rows)


def make_outfits(items: pd.DataFrame, n: int, seed: int) -> Outfits:
    rng = np.random.default_rng(seed)
    seen = items[items["variant"] < VARIANTS - UNSEEN]
    sets = []
    for _ in range(n):
        look = LOOKS[int(rng.integers(len(LOOKS)))]
        members = []
        for category, (ptype, colour) in look.items():
            if category == "accessory" and rng.random() < 0.3:
                continue
            pool = seen[(seen["product_type"] == ptype) & (seen["colour"] == colour)].index
            members.append(int(rng.choice(pool.to_numpy())))
        sets.append(members)
    return Outfits.from_lists(sets)


def small_model(seed: int = 3) -> ComplementaryModel:
    return ComplementaryModel(
        dim=16, attr_dim=8, hidden=32, epochs=25, batch_size=64, negatives=16, lr=1e-2, seed=seed
    )


ATTRIBUTES = ["product_type", "colour", "material", "styles"]


@pytest.fixture(scope="module")
def catalog() -> pd.DataFrame:
    return make_catalog()


@pytest.fixture(scope="module")
def fitted(catalog: pd.DataFrame) -> ComplementaryModel:
    return small_model().fit(catalog, make_outfits(catalog, 400, seed=1), attributes=ATTRIBUTES)


def item(catalog: pd.DataFrame, ptype: str, colour: str, variant: int) -> int:
    row = catalog[
        (catalog["product_type"] == ptype)
        & (catalog["colour"] == colour)
        & (catalog["variant"] == variant)
    ]
    return int(row.index[0])


def attrs(catalog: pd.DataFrame, indices: np.ndarray) -> list[tuple[str, str]]:
    return [(catalog.loc[i, "product_type"], catalog.loc[i, "colour"]) for i in indices]


def test_learns_attribute_rules_for_items_never_in_an_outfit(
    fitted: ComplementaryModel, catalog: pd.DataFrame
) -> None:
    unseen = VARIANTS - 1
    for look in LOOKS:
        ptype, colour = look["top"]
        query = item(catalog, ptype, colour, unseen)
        assert not fitted.history_[query]
        slots = fitted.complete([query], k_per_slot=3)
        for category in ("bottom", "shoes"):
            ids, _ = slots[category]
            assert attrs(catalog, ids) == [look[category]] * 3, (look["top"], category)


def test_new_collection_scored_from_attributes(
    fitted: ComplementaryModel, catalog: pd.DataFrame, tmp_path: Path
) -> None:
    fitted.save(tmp_path / "model")
    model = ComplementaryModel.load(tmp_path / "model")  # a copy: add_items changes the model
    new = pd.DataFrame(
        [
            {"item_id": "new-tee", "category": "top", "product_type": "t-shirt",
             "colour": "navy", "material": "bamboo", "styles": ["casual"]},
            {"item_id": "new-sneaker", "category": "shoes", "product_type": "sneakers",
             "colour": "white", "material": "recycled", "styles": []},
        ]
    )  # fmt: skip
    added = model.add_items(new)
    assert added.tolist() == [len(catalog), len(catalog) + 1]
    shoes, _ = model.complete([int(added[0])], k_per_slot=3, categories=["shoes"])["shoes"]
    assert attrs(catalog, shoes) == [("sneakers", "white")] * 3
    # the new sneaker is retrievable and ranks high for the new tee among all shoes
    all_shoes = np.flatnonzero(model.item_category_ == model.categories_.index("shoes"))
    scores = model.score_candidates([int(added[0])], all_shoes)
    rank = int((scores > scores[all_shoes == added[1]][0]).sum())
    assert rank < VARIANTS + 1
    with pytest.raises(InvalidRequest):
        model.add_items(pd.DataFrame([{"item_id": "x", "category": "hosiery"}]))


def test_slots_are_other_categories_unless_asked(
    fitted: ComplementaryModel, catalog: pd.DataFrame
) -> None:
    query = item(catalog, "t-shirt", "navy", 0)
    slots = fitted.complete([query], k_per_slot=5)
    assert "top" not in slots
    assert set(slots) == {"bottom", "shoes", "accessory"}
    for category, (ids, scores) in slots.items():
        assert len(ids) == 5
        assert (catalog.loc[ids, "category"] == category).all()
        assert np.all(np.diff(scores) <= 1e-6)
    asked = fitted.complete([query], k_per_slot=5, categories=["top", "shoes"])
    assert list(asked) == ["top", "shoes"]
    assert query not in asked["top"][0]
    best_shoe = int(slots["shoes"][0][0])
    excluded = fitted.complete([query], k_per_slot=5, categories=["shoes"], exclude=[best_shoe])
    assert best_shoe not in excluded["shoes"][0]
    with pytest.raises(InvalidRequest):
        fitted.complete([query], categories=["hosiery"])
    with pytest.raises(InvalidRequest):
        fitted.complete([len(catalog) + 10])


def test_allowed_and_prior_restrict_and_rerank(
    fitted: ComplementaryModel, catalog: pd.DataFrame
) -> None:
    query = item(catalog, "t-shirt", "navy", 0)
    shoes = np.flatnonzero(catalog["category"] == "shoes")
    allowed = shoes[catalog.loc[shoes, "product_type"] == "boots"]
    ids, _ = fitted.complete([query], 3, ["shoes"], allowed=allowed)["shoes"]
    assert set(ids) <= set(allowed)
    prior = np.zeros(len(catalog), dtype=np.float32)
    favourite = int(allowed[-1])
    prior[favourite] = 1e3
    ids, _ = fitted.complete([query], 3, ["shoes"], prior=prior)["shoes"]
    assert ids[0] == favourite


def test_set_completion_uses_every_item(fitted: ComplementaryModel, catalog: pd.DataFrame) -> None:
    tee = item(catalog, "t-shirt", "navy", 0)
    chinos = item(catalog, "chinos", "beige", 0)
    trousers = item(catalog, "trousers", "black", 0)
    shoes = np.flatnonzero(catalog["category"] == "shoes")
    for basket in ([tee, chinos], [tee, trousers]):
        ids, scores = fitted.complete(basket, k_per_slot=4, categories=["shoes"])["shoes"]
        expected = fitted.pair_scores(basket, ids).mean(axis=0)
        np.testing.assert_allclose(scores, expected, rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose(
            fitted.score_candidates(basket, shoes), fitted.pair_scores(basket, shoes).mean(0)
        )
    # the second item changes the answer: a mixed basket is pulled towards black boots
    alone = fitted.score_candidates([tee], shoes)
    mixed = fitted.score_candidates([tee, trousers], shoes)
    boots = shoes[
        (catalog.loc[shoes, "product_type"] == "boots") & (catalog.loc[shoes, "colour"] == "black")
    ]
    assert mixed[np.isin(shoes, boots)].mean() - mixed.mean() > (
        alone[np.isin(shoes, boots)].mean() - alone.mean()
    )
    # whole-set compatibility: the real look beats the same look with one item swapped
    look = [tee, chinos, item(catalog, "sneakers", "white", 0), item(catalog, "cap", "navy", 0)]
    swapped = [*look[:2], item(catalog, "heels", "red", 0), look[3]]
    aggregates: tuple[Literal["mean", "min"], ...] = ("mean", "min")
    for aggregate in aggregates:
        fitted.set_aggregate = aggregate
        assert fitted.compatibility(look) > fitted.compatibility(swapped)
    fitted.set_aggregate = "mean"
    with pytest.raises(InvalidRequest):
        fitted.compatibility([tee])


def test_fill_in_the_blank_on_held_out_outfits(
    fitted: ComplementaryModel, catalog: pd.DataFrame
) -> None:
    held_out = make_outfits(catalog, 60, seed=99)
    rng = np.random.default_rng(0)
    right = 0
    for outfit in held_out:
        blank = int(rng.integers(len(outfit)))
        answer = int(outfit[blank])
        same = np.flatnonzero(catalog["category"] == catalog.loc[answer, "category"])
        pool = same[~np.isin(same, outfit)]
        negatives = rng.choice(pool, size=3, replace=False)
        scores = fitted.score_candidates(np.delete(outfit, blank), [answer, *negatives])
        right += int(np.argmax(scores) == 0)
    assert right / len(held_out) >= 0.8


def test_save_load_gives_identical_outputs(
    fitted: ComplementaryModel, catalog: pd.DataFrame, tmp_path: Path
) -> None:
    fitted.save(tmp_path / "complementary")
    files = sorted(p.name for p in (tmp_path / "complementary").iterdir())
    assert files == ["arrays.npz", "config.json"]
    loaded = ComplementaryModel.load(tmp_path / "complementary")
    basket = [item(catalog, "shirt", "white", 0), item(catalog, "trousers", "black", 1)]
    before, after = fitted.complete(basket, 5), loaded.complete(basket, 5)
    assert list(before) == list(after)
    for category in before:
        np.testing.assert_array_equal(before[category][0], after[category][0])
        np.testing.assert_array_equal(before[category][1], after[category][1])
    assert fitted.compatibility(basket) == loaded.compatibility(basket)
    # the torch weights came back too: a new item encodes identically in both
    new = pd.DataFrame([{"item_id": "n", "category": "shoes", "product_type": "boots",
                         "colour": "black", "material": "wool", "styles": ["smart"]}])  # fmt: skip
    a = ComplementaryModel.load(tmp_path / "complementary")
    b = ComplementaryModel.load(tmp_path / "complementary")
    added_a, added_b = a.add_items(new), b.add_items(new)
    np.testing.assert_array_equal(a.item_vectors_[added_a], b.item_vectors_[added_b])


def test_deterministic_under_a_seed(catalog: pd.DataFrame) -> None:
    outfits = make_outfits(catalog, 120, seed=5)

    def fit(seed: int) -> ComplementaryModel:
        model = ComplementaryModel(dim=8, attr_dim=4, hidden=16, epochs=3, batch_size=32, seed=seed)
        return model.fit(catalog, outfits, attributes=ATTRIBUTES)

    first, second, other = fit(11), fit(11), fit(12)
    np.testing.assert_array_equal(first.item_vectors_, second.item_vectors_)
    np.testing.assert_array_equal(first.masks_, second.masks_)
    assert first.loss_history_ == second.loss_history_
    assert not np.array_equal(first.item_vectors_, other.item_vectors_)


def test_rejects_bad_input(catalog: pd.DataFrame) -> None:
    with pytest.raises(ValueError, match="two or more"):
        small_model().fit(catalog, [[0], [1]], attributes=ATTRIBUTES)
    with pytest.raises(ValueError, match="outside"):
        small_model().fit(catalog, [[0, len(catalog)]], attributes=ATTRIBUTES)
    with pytest.raises(ValueError, match="attribute columns"):
        small_model().fit(catalog, [[0, 1]], attributes=["fabric"])


def test_default_slots_fall_back_for_a_category_never_in_an_outfit(catalog: pd.DataFrame) -> None:
    tops_and_bottoms = [
        [item(catalog, "t-shirt", "navy", v), item(catalog, "chinos", "beige", v)] for v in range(3)
    ]
    model = ComplementaryModel(dim=8, attr_dim=4, hidden=16, epochs=1, batch_size=8, seed=0)
    model.fit(catalog, tops_and_bottoms, attributes=ATTRIBUTES)
    assert model.slots([item(catalog, "t-shirt", "navy", 0)]) == ["bottom"]
    shoe = item(catalog, "sneakers", "white", 0)
    assert sorted(model.slots([shoe])) == ["bottom", "top"]
    assert set(model.complete([shoe], 2)) == {"bottom", "top"}
