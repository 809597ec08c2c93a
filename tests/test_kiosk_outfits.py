"""The kiosk's building blocks without the service: the occasion table (``models/occasions.py``),
slots and outfit composition (``models/outfit_builder.py``) and the evaluation helpers
(``training/kiosk_eval.py``)."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest

from models.complementary import ComplementaryModel
from models.occasions import (
    OCCASIONS,
    RENTED_FOR,
    all_occasion_scores,
    occasion_bonus,
    occasion_scores,
    parse_occasion,
)
from models.outfit_builder import compose, outfit_slots, popularity_bonus
from tests.test_complementary import ATTRIBUTES, make_catalog, make_outfits, small_model
from training.kiosk_eval import OutfitBaselines, kiosk_suggest, occasion_hits, outfit_completion


@pytest.fixture(scope="module")
def catalog() -> pd.DataFrame:
    return make_catalog()


@pytest.fixture(scope="module")
def model(catalog: pd.DataFrame) -> ComplementaryModel:
    return small_model().fit(catalog, make_outfits(catalog, 400, seed=1), attributes=ATTRIBUTES)


def test_occasion_table_scores_items_by_their_attributes() -> None:
    frame = pd.DataFrame(
        {
            "item_id": ["a", "b", "c", "d", "e", "f"],
            "category": ["dress", "top", "top", "shoes", "bottom", "swimwear"],
            "product_type": ["cocktail dress", "t-shirt", "shirt", "running shoes", None, "bikini"],
            "styles": [["party"], ["casual"], ["business"], ["sport"], [], ["boho"]],
        }
    )
    party = occasion_scores(frame, "party")
    work = occasion_scores(frame, "work")
    assert party[0] == pytest.approx(1.0)
    assert work[2] == pytest.approx(1.0) and work[1] == 0.0  # "shirt" is not "t-shirt"
    assert work[3] < 0 and occasion_scores(frame, "sport")[3] == pytest.approx(1.0)
    assert work[4] == 0.0  # nothing known: no signal either way
    assert occasion_scores(frame, "vacation")[5] > 0 and work[5] < 0
    table = all_occasion_scores(frame)
    assert set(table) == set(OCCASIONS)
    assert np.array_equal(table["party"], party)
    assert set(RENTED_FOR.values()) <= set(OCCASIONS)


def test_parse_occasion() -> None:
    assert parse_occasion(" Wedding ") == "wedding"
    assert parse_occasion(None) is None and parse_occasion("  ") is None
    with pytest.raises(ValueError, match="work"):
        parse_occasion("funeral")


def test_occasion_bonus_is_scale_free() -> None:
    scores = np.array([1.0, 2.0, 3.0, 4.0])
    occ = np.array([0.0, 1.0, -1.0, 0.5], dtype=np.float32)
    assert np.allclose(occasion_bonus(scores * 100, occ), 100 * occasion_bonus(scores, occ))
    assert occasion_bonus(scores, occ)[0] == 0.0


def test_slots_complete_the_carried_items(model: ComplementaryModel, catalog: pd.DataFrame) -> None:
    top = int(catalog.index[catalog["category"] == "top"][0])
    bottom = int(catalog.index[catalog["category"] == "bottom"][0])
    # the toy model knows no outerwear: a cold day's finishing piece is left out
    assert outfit_slots(model, [top], season="winter") == ["bottom", "shoes"]
    assert outfit_slots(model, [top], season="summer") == ["bottom", "shoes", "accessory"]
    assert outfit_slots(model, [top], weather="heatwave") == ["bottom", "shoes", "accessory"]
    assert outfit_slots(model, [bottom], season="summer")[0] == "top"
    assert outfit_slots(model, [top, bottom], season="summer") == ["shoes", "accessory"]
    unseasoned = outfit_slots(model, [top])
    assert unseasoned[:2] == ["bottom", "shoes"]


def test_compose_picks_different_coherent_outfits(
    model: ComplementaryModel, catalog: pd.DataFrame
) -> None:
    top = int(catalog.index[catalog["category"] == "top"][0])
    slots = ["bottom", "shoes", "accessory"]
    ranked = model.complete([top], k_per_slot=4, categories=slots)
    candidates = {s: ranked[s][0] for s in slots}
    outfits = compose(model, [top], candidates, n_outfits=3, per_slot=4)
    assert len(outfits) == 3
    for slot in slots:  # four candidates per slot: three outfits share no item
        picked = [o.items[slot] for o in outfits]
        assert len(set(picked)) == 3 and set(picked) <= set(candidates[slot].tolist())
    best = max(
        model.compatibility([top, *combo])
        for combo in itertools.product(*[candidates[s].tolist() for s in slots])
    )
    first = outfits[0]
    assert first.compatibility == pytest.approx(best, rel=1e-5, abs=1e-5)
    assert first.compatibility == pytest.approx(
        model.compatibility([top, *first.items.values()]), rel=1e-5, abs=1e-5
    )
    # a bonus on an item puts it in the first outfit
    favourite = int(candidates["shoes"][3])
    boosted = compose(model, [top], candidates, n_outfits=3, bonus={favourite: 1e6})
    assert boosted[0].items["shoes"] == favourite
    # one candidate per slot: one outfit (a second would repeat it)
    single = compose(model, [top], {s: candidates[s][:1] for s in slots}, n_outfits=3)
    assert len(single) == 1
    assert compose(model, [top], {s: np.empty(0, np.int64) for s in slots}) == []


def test_outfit_completion_counts_hits(model: ComplementaryModel, catalog: pd.DataFrame) -> None:
    train = make_outfits(catalog, 400, seed=1)
    test = make_outfits(catalog, 60, seed=9)
    baselines = OutfitBaselines(catalog, train, ["product_type", "colour"])
    result = outfit_completion(
        model,
        catalog,
        test,
        {
            "kiosk": kiosk_suggest(model),
            "popular": lambda c, slots: {s: baselines.popular(c, s) for s in slots},
        },
        seed=0,
        progress=False,
    )
    assert result.outfits == 60 and result.pieces_in_slots > 0
    kiosk, popular = result.methods["kiosk"], result.methods["popular"]
    assert sum(kiosk.pieces.values()) == result.pieces_in_slots
    # the toy outfits follow fixed looks the model learns: it beats popularity
    assert kiosk.rate() > popular.rate()


def test_occasion_hits_counts_the_rankings() -> None:
    base = np.linspace(10.0, 1.0, 30)  # item 0 most popular
    occ = np.zeros(30, dtype=np.float32)
    occ[25] = 1.0
    learned = {"party": np.where(np.arange(30) == 29, 100.0, base)}
    result = occasion_hits(
        base, {"party": occ * 50}, learned, np.array([25, 0, 29]), ["party"] * 3, ks=(1, 10)
    )
    assert result.rentals == {"party": 3}
    assert result.hits["blind"]["party"] == {1: 1, 10: 1}  # item 0 only
    assert result.hits["aware"]["party"][1] == 1 and result.hits["aware"]["party"][10] == 2
    assert result.hits["learned"]["party"][1] == 1  # item 29 first
    assert result.rate("aware", None, 10) == pytest.approx(2 / 3)


def test_popularity_bonus_is_scale_free_and_neutral_for_equals() -> None:
    scores = np.array([3.0, 2.0, 1.0, 0.5])
    sales = np.array([1.0, 10.0, 100.0, 0.0])
    bonus = popularity_bonus(scores, sales)
    assert bonus[2] > bonus[1] > bonus[0] > bonus[3]
    assert np.allclose(popularity_bonus(scores * 10, sales), 10 * bonus, rtol=1e-5)
    assert np.all(popularity_bonus(scores, np.full(4, 7.0)) == 0)
    assert np.all(popularity_bonus(scores, sales, strength=0.0) == 0)
