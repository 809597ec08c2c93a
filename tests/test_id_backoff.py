"""The id backoff of the complementary model (:mod:`models.id_backoff`): shrinkage of the learned id
part by training-set count, and items without history borrowing from their product group or their
attribute neighbours."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from feature_store.outfits import Outfits
from models.complementary import ComplementaryModel
from models.id_backoff import NO_GROUP, group_codes, id_parts

# ---------------------------------------------------------------------------------- id_parts


def _inputs() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    learned = rng.normal(size=(7, 4)).astype(np.float32)  # 3-d vector + bias
    history = np.array([True, True, True, False, False, False, False])
    learned[~history] = 0.0
    attributes = np.eye(7, 5, dtype=np.float32)
    attributes[5] = attributes[2]  # item 5 looks like item 2
    attributes[6, 4] = 1.0  # item 6 looks like nothing
    return {
        "learned": learned,
        "counts": np.array([1, 3, 9, 0, 0, 0, 0], dtype=np.int64),
        "history": history,
        "groups": np.array([0, 0, 1, 0, 1, 2, NO_GROUP], dtype=np.int64),
        "attributes": attributes,
        "categories": np.array([0, 0, 0, 0, 0, 0, 1], dtype=np.int64),
    }


def test_off_by_default_returns_the_learned_parts() -> None:
    x = _inputs()
    out = id_parts(
        x["learned"], x["counts"], x["history"], groups=None, attributes=x["attributes"],
        categories=x["categories"], shrinkage=0.0, neighbours=0,
    )  # fmt: skip
    np.testing.assert_array_equal(out, x["learned"])
    assert not out[3:].any()


def test_shrinkage_weighs_vector_by_root_and_bias_by_count_share() -> None:
    x = _inputs()
    out = id_parts(
        x["learned"], x["counts"], x["history"], groups=None, attributes=x["attributes"],
        categories=x["categories"], shrinkage=3.0, neighbours=0,
    )  # fmt: skip
    share = np.array([1 / 4, 3 / 6, 9 / 12])
    np.testing.assert_allclose(out[:3, :-1], x["learned"][:3, :-1] * np.sqrt(share)[:, None], 1e-6)
    np.testing.assert_allclose(out[:3, -1], x["learned"][:3, -1] * share, rtol=1e-6)
    assert not out[3:].any()


def test_unseen_items_borrow_from_their_group_then_their_neighbours() -> None:
    x = _inputs()
    out = id_parts(
        x["learned"], x["counts"], x["history"], groups=x["groups"], attributes=x["attributes"],
        categories=x["categories"], shrinkage=10.0, neighbours=1,
    )  # fmt: skip
    learned = x["learned"]
    # group 0 has seen items 0 and 1: their mean learned part, unshrunk
    np.testing.assert_allclose(out[3], learned[[0, 1]].mean(axis=0), rtol=1e-6)
    # group 1's only seen item is 2
    np.testing.assert_allclose(out[4], learned[2], rtol=1e-6)
    # group 2 has no seen item: the nearest seen item of the category by attributes (item 2)
    np.testing.assert_allclose(out[5], learned[2], rtol=1e-6)
    # no group, and no seen item in its category: nothing to borrow
    assert not out[6].any()
    # without neighbours, item 5 has nothing either
    out = id_parts(
        x["learned"], x["counts"], x["history"], groups=x["groups"], attributes=x["attributes"],
        categories=x["categories"], shrinkage=0.0, neighbours=0,
    )  # fmt: skip
    assert not out[5].any()
    np.testing.assert_array_equal(out[:3], learned[:3])


def test_neighbours_average_the_k_most_similar_seen_items_of_the_category() -> None:
    learned = np.array([[1, 0], [3, 0], [5, 0], [0, 0]], dtype=np.float32)
    history = np.array([True, True, True, False])
    attributes = np.array([[1, 0], [0.8, 0.6], [0, 1], [1, 0]], dtype=np.float32)
    out = id_parts(
        learned, np.ones(4, dtype=np.int64), history, groups=None, attributes=attributes,
        categories=np.zeros(4, dtype=np.int64), shrinkage=0.0, neighbours=2,
    )  # fmt: skip
    np.testing.assert_allclose(out[3], [2.0, 0.0])  # items 0 and 1, not 2


def test_group_codes_skip_missing_labels_and_unknown_ones_given_a_vocabulary() -> None:
    codes, vocab = group_codes(["b", None, "a", float("nan"), " b ", ""])
    assert vocab == ["a", "b"]
    assert codes.tolist() == [1, NO_GROUP, 0, NO_GROUP, 1, NO_GROUP]
    codes, _ = group_codes(["a", "c", pd.NA], vocab)
    assert codes.tolist() == [0, NO_GROUP, NO_GROUP]


def test_rejects_negative_settings() -> None:
    with pytest.raises(ValueError):
        ComplementaryModel(id_shrinkage=-1.0)
    with pytest.raises(ValueError):
        ComplementaryModel(id_neighbours=-1)


# ------------------------------------------------------------------------------ in the model

COLOURS = ("navy", "white", "black", "red")
LOOKS = [
    {"top": ("t-shirt", "navy"), "bottom": ("chinos", "white")},
    {"top": ("shirt", "white"), "bottom": ("trousers", "black")},
    {"top": ("blouse", "red"), "bottom": ("skirt", "black")},
]


def make_catalog() -> pd.DataFrame:
    """Product ``<type>-<v>`` comes in every colour; variant 3 of a type is never in an outfit,
    and neither is any product in ``"red"`` except the look's own red blouse."""
    rows = []
    for category, types in (("top", ("t-shirt", "shirt", "blouse")), ("bottom", ("chinos",
                            "trousers", "skirt"))):  # fmt: skip
        for ptype in types:
            for v in range(4):
                for colour in COLOURS:
                    rows.append(
                        {
                            "item_id": f"{ptype}-{v}-{colour}",
                            "category": category,
                            "product_type": ptype,
                            "colour": colour,
                            "product_code": f"{ptype}-{v}",
                            "variant": v,
                        }
                    )
    return pd.DataFrame(rows)


def make_outfits(items: pd.DataFrame, n: int, seed: int) -> Outfits:
    rng = np.random.default_rng(seed)
    sets = []
    for _ in range(n):
        look = LOOKS[int(rng.integers(len(LOOKS)))]
        members = []
        for ptype, colour in look.values():
            pool = items[
                (items["product_type"] == ptype)
                & (items["colour"] == colour)
                & (items["variant"] < 3)
            ].index
            members.append(int(rng.choice(pool.to_numpy())))
        sets.append(members)
    return Outfits.from_lists(sets)


def fit(items: pd.DataFrame, **params: object) -> ComplementaryModel:
    model = ComplementaryModel(
        dim=8, attr_dim=4, hidden=16, epochs=4, batch_size=32, negatives=8, seed=1,
        **params,  # type: ignore[arg-type]
    )  # fmt: skip
    return model.fit(items, make_outfits(items, 150, seed=2), attributes=["product_type", "colour"])


@pytest.fixture(scope="module")
def catalog() -> pd.DataFrame:
    return make_catalog()


@pytest.fixture(scope="module")
def grouped(catalog: pd.DataFrame) -> ComplementaryModel:
    return fit(catalog, group_column="product_code")


def _row(catalog: pd.DataFrame, item_id: str) -> int:
    return int(np.flatnonzero(catalog["item_id"] == item_id)[0])


def test_a_new_colour_borrows_the_id_part_of_its_product(
    grouped: ComplementaryModel, catalog: pd.DataFrame
) -> None:
    d = grouped.dim
    unseen = _row(catalog, "t-shirt-0-red")
    sibling = _row(catalog, "t-shirt-0-navy")  # the only colour of t-shirt-0 in outfits
    assert not grouped.history_[unseen] and grouped.history_[sibling]
    np.testing.assert_allclose(
        grouped.item_vectors_[unseen, d:], grouped.item_vectors_[sibling, d:], rtol=1e-6
    )
    assert np.abs(grouped.item_vectors_[unseen, d:]).max() > 0
    # a product never in an outfit has nothing to borrow without neighbours
    never = _row(catalog, "t-shirt-3-navy")
    assert not grouped.item_vectors_[never, d:].any()
    # the attribute part is the model's own, whatever the backoff
    plain = fit(catalog)
    np.testing.assert_array_equal(plain.item_vectors_[:, :d], grouped.item_vectors_[:, :d])
    assert not plain.item_vectors_[unseen, d:].any()


def test_backoff_is_off_without_the_group_column(catalog: pd.DataFrame) -> None:
    """A catalog without the column fits and scores exactly as a model without groups."""
    without = fit(catalog.drop(columns=["product_code"]), group_column="product_code")
    plain = fit(catalog.drop(columns=["product_code"]))
    np.testing.assert_array_equal(without.item_vectors_, plain.item_vectors_)
    np.testing.assert_array_equal(without.item_bias_, plain.item_bias_)


def test_set_id_backoff_shrinks_and_borrows_without_retraining(
    catalog: pd.DataFrame,
) -> None:
    model = fit(catalog, group_column="product_code")
    d = model.dim
    before_vectors, before_bias = model.item_vectors_.copy(), model.item_bias_.copy()
    never = _row(catalog, "t-shirt-3-navy")
    model.set_id_backoff(5.0, 3)
    counts = model.set_counts_
    seen = np.flatnonzero(model.history_)
    share = counts[seen] / (counts[seen] + 5.0)
    np.testing.assert_allclose(
        model.item_vectors_[seen, d:], before_vectors[seen, d:] * np.sqrt(share)[:, None],
        rtol=1e-5, atol=1e-7,
    )  # fmt: skip
    np.testing.assert_array_equal(model.item_vectors_[:, :d], before_vectors[:, :d])
    assert np.abs(model.item_vectors_[never, d:]).max() > 0  # borrowed from neighbours
    model.set_id_backoff(0.0, 0)
    np.testing.assert_allclose(model.item_vectors_, before_vectors, atol=1e-6)
    np.testing.assert_allclose(model.item_bias_, before_bias, atol=1e-6)


def test_added_items_borrow_from_a_known_product(
    grouped: ComplementaryModel, catalog: pd.DataFrame, tmp_path: Path
) -> None:
    grouped.save(tmp_path / "m")
    model = ComplementaryModel.load(tmp_path / "m")
    d = model.dim
    new = pd.DataFrame(
        [
            {"item_id": "shirt-0-beige", "category": "top", "product_type": "shirt",
             "colour": "beige", "product_code": "shirt-0"},
            {"item_id": "shirt-9-white", "category": "top", "product_type": "shirt",
             "colour": "white", "product_code": "shirt-9"},
        ]
    )  # fmt: skip
    added = model.add_items(new)
    seen_siblings = [
        i for i in np.flatnonzero(catalog["product_code"] == "shirt-0") if model.history_[i]
    ]
    np.testing.assert_allclose(
        model.item_vectors_[added[0], d:],
        model.item_vectors_[seen_siblings, d:].mean(axis=0),
        rtol=1e-5,
    )
    assert not model.item_vectors_[added[1], d:].any()  # an unknown product
    # the fitted items are unchanged by the addition
    np.testing.assert_allclose(
        model.item_vectors_[: len(catalog)], grouped.item_vectors_, atol=1e-6
    )


def test_save_load_keeps_the_backoff(
    catalog: pd.DataFrame, grouped: ComplementaryModel, tmp_path: Path
) -> None:
    model = fit(catalog, group_column="product_code", id_dropout=0.25)
    model.set_id_backoff(10.0, 5)
    model.save(tmp_path / "m")
    loaded = ComplementaryModel.load(tmp_path / "m")
    assert (loaded.id_shrinkage, loaded.id_neighbours, loaded.group_column) == (
        10.0, 5, "product_code",
    )  # fmt: skip
    np.testing.assert_array_equal(loaded.item_vectors_, model.item_vectors_)
    np.testing.assert_array_equal(loaded.item_bias_, model.item_bias_)
    np.testing.assert_array_equal(loaded.set_counts_, model.set_counts_)
    loaded.set_id_backoff(0.0, 0)
    model.set_id_backoff(0.0, 0)
    np.testing.assert_array_equal(loaded.item_vectors_, model.item_vectors_)


def test_loads_a_bundle_written_before_the_backoff(catalog: pd.DataFrame, tmp_path: Path) -> None:
    model = fit(catalog)
    model.save(tmp_path / "m")
    # strip what this change added, as a bundle of the earlier version
    config = json.loads((tmp_path / "m" / "config.json").read_text())
    for key in ("id_shrinkage", "id_neighbours", "group_column"):
        del config["params"][key]
    del config["group_vocab"]
    (tmp_path / "m" / "config.json").write_text(json.dumps(config))
    with np.load(tmp_path / "m" / "arrays.npz") as npz:
        arrays = {k: npz[k] for k in npz.files if k not in ("set_counts", "item_group")}
    np.savez(tmp_path / "m" / "arrays.npz", **arrays)
    loaded = ComplementaryModel.load(tmp_path / "m")
    np.testing.assert_array_equal(loaded.item_vectors_, model.item_vectors_)
    np.testing.assert_array_equal(loaded.set_counts_, model.history_.astype(np.int64))
    assert (loaded.item_group_ == -1).all()
    loaded.set_id_weight(0.5)  # refreshing works on the old bundle
    assert np.isfinite(loaded.item_vectors_).all()
