"""Known-answer tests of the seasonal / trending model on a synthetic two-year retailer.

Coats and sweaters sell in winter, swimwear and shorts in summer, basic t-shirts all year round.
One t-shirt takes off in the last four weeks (trending). Everything is drawn with a fixed seed.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import shared_dataset

from feature_store.dataset import Dataset
from feature_store.errors import InvalidRequest
from models.seasonal import SeasonalModel, season_of, weather_hint

START, END = pd.Timestamp("2019-01-01", tz="UTC"), pd.Timestamp("2020-12-31", tz="UTC")
GROUPS = {
    # name: (category, product_type, material, peak day of year or None, items)
    "coat": ("outerwear", "Coat", "wool", 15, 8),
    "sweater": ("top", "Sweater", "knit", 15, 8),
    "swimsuit": ("swimwear", "Swimsuit", "lycra", 196, 8),
    "shorts": ("bottom", "Shorts", "cotton", 196, 8),
    "tee": ("top", "T-shirt", "cotton", None, 8),
}
TRENDING = "tee-7"


def make_dataset(seed: int = 0) -> Dataset:
    rng = np.random.default_rng(seed)
    items = []
    for name, (category, ptype, material, _, n) in GROUPS.items():
        for v in range(n):
            items.append(
                {
                    "item_id": f"{name}-{v}",
                    "name": f"{ptype} {v}",
                    "category": category,
                    "product_type": ptype,
                    "material": material,
                    "colour": ["black", "white"][v % 2],
                    "styles": ["casual"] if name != "coat" else ["classic"],
                    "price": 20.0,
                }
            )
    days = pd.date_range(START, END, freq="D")
    rows = []
    for day in days:
        doy = day.day_of_year
        for name, (_, _, _, peak, n) in GROUPS.items():
            if peak is None:
                rate = 1.5
            else:
                distance = min(abs(doy - peak), 365 - abs(doy - peak))
                rate = 0.1 + 4.0 * np.exp(-0.5 * (distance / 30.0) ** 2)
            for v in range(n):
                item_rate = rate / n * (1.0 + 0.3 * (v % 3))
                if f"{name}-{v}" == TRENDING:
                    item_rate = 0.05 if day < END - pd.Timedelta(days=27) else 0.5
                for _ in range(rng.poisson(item_rate)):
                    rows.append((f"c{rng.integers(500)}", f"{name}-{v}", day))
    interactions = pd.DataFrame(rows, columns=["customer_id", "item_id", "timestamp"])
    interactions["type"] = "purchase"
    return Dataset(items=pd.DataFrame(items), interactions=interactions, source="synthetic")


@pytest.fixture(scope="module")
def dataset() -> Dataset:
    return make_dataset()


@pytest.fixture(scope="module")
def model(dataset: Dataset) -> SeasonalModel:
    return SeasonalModel().fit(dataset)


def groups_of(dataset: Dataset, items: np.ndarray) -> list[str]:
    return [str(dataset.items.loc[int(i), "item_id"]).split("-")[0] for i in items]


def test_winter_items_first_in_january_summer_items_in_july(
    model: SeasonalModel, dataset: Dataset
) -> None:
    january = model.recommend(date="2021-01-10", k=10)
    assert set(groups_of(dataset, january.items[:8])) <= {"coat", "sweater"}
    assert "Winter staple" in january.reasons
    # the same model (fitted in December) knows last summer: July brings swimwear and shorts
    july = model.recommend(date="2021-07-01", k=10)
    assert set(groups_of(dataset, july.items[:8])) <= {"swimsuit", "shorts"}
    assert "Summer staple" in july.reasons
    trending = dataset.items["item_id"].tolist().index(TRENDING)  # hot all year: left out here
    summer = model.recommend(season="summer", k=8, exclude=[trending])
    assert set(groups_of(dataset, summer.items)) <= {"swimsuit", "shorts"}
    # the profile itself: coats peak in winter, at least twice their summer share
    coat = model.item_group_[0]
    assert model.profiles_[coat, :4].mean() > 2 * model.profiles_[coat, 26:30].mean()


def test_trending_separated_from_evergreen(model: SeasonalModel, dataset: Dataset) -> None:
    ids = dataset.items["item_id"].tolist()
    trending = ids.index(TRENDING)
    kinds = dict(zip(ids, model.kind(np.arange(len(ids))), strict=True))
    assert kinds[TRENDING] == "trending"
    assert [kinds[f"tee-{v}"] for v in range(6)] == ["evergreen"] * 6
    assert {kinds[f"coat-{v}"] for v in range(8)} == {"seasonal"}
    assert {kinds[f"swimsuit-{v}"] for v in range(8)} == {"seasonal"}
    assert np.flatnonzero(model.trending_).tolist() == [trending]
    assert model.trend_[trending] > 2 * np.median(model.trend_)
    tops = model.recommend(date="2021-01-01", category="top", k=20)
    reasons = dict(zip(tops.items.tolist(), tops.reasons, strict=True))
    assert reasons[trending] == "Trending now"
    assert "Evergreen favourite" in reasons.values() or "Winter staple" in reasons.values()


def test_weather_hint_moves_outerwear_up(dataset: Dataset) -> None:
    april = SeasonalModel().fit(dataset, now=pd.Timestamp("2020-04-14", tz="UTC"))
    coats = [
        i for i, g in enumerate(groups_of(dataset, np.arange(len(dataset.items)))) if g == "coat"
    ]

    def best_coat_rank(**kwargs: object) -> int:
        picks = april.recommend(date="2020-04-15", k=len(dataset.items), **kwargs)  # type: ignore[arg-type]
        return int(np.flatnonzero(np.isin(picks.items, coats))[0])

    plain, cold = best_coat_rank(), best_coat_rank(weather="cold_snap")
    assert cold < plain
    assert cold == 0
    cold_picks = april.recommend(date="2020-04-15", weather="cold_snap", k=5)
    assert cold_picks.reasons[0] == "For the cold snap"
    assert set(groups_of(dataset, cold_picks.items)) <= {"coat", "sweater"}
    # a temperature band gives the same as its hint
    by_temp = april.recommend(date="2020-04-15", temperature_c=-4.0, k=5)
    np.testing.assert_array_equal(by_temp.items, cold_picks.items)
    hot = april.recommend(date="2020-04-15", weather="heatwave", k=5)
    assert set(groups_of(dataset, hot.items)) <= {"swimsuit", "shorts", "tee"}
    with pytest.raises(InvalidRequest):
        april.recommend(weather="monsoon")


def test_filters_and_customer_affinity(model: SeasonalModel, dataset: Dataset) -> None:
    n = len(dataset.items)
    plain = model.recommend(date="2021-01-10", k=5)
    stock = np.ones(n, dtype=bool)
    stock[plain.items[0]] = False
    assert plain.items[0] not in model.recommend(date="2021-01-10", k=5, in_stock=stock).items
    swim = model.recommend(date="2021-01-10", k=3, category="swimwear")
    assert set(groups_of(dataset, swim.items)) == {"swimsuit"}
    # style preferences: a customer who loves casual white clothes gets no coats first
    liked = model.recommend(date="2021-01-10", k=3, customer_affinity={"casual": 5.0})
    assert "coat" not in groups_of(dataset, liked.items)
    vector = np.zeros(n)
    vector[[3, 30]] = 1.0
    only = model.recommend(date="2021-01-10", k=5, customer_affinity=vector)
    assert set(only.items.tolist()) <= {3, 30}
    shorts = [i for i, g in enumerate(groups_of(dataset, np.arange(n))) if g == "shorts"]
    weights = model.affinity_from_items(shorts[:3])
    assert weights[shorts].min() > weights[0]  # shorts > coats for a shorts buyer
    with pytest.raises(InvalidRequest):
        model.recommend(category="hosiery")
    with pytest.raises(InvalidRequest):
        model.recommend(in_stock=np.ones(3, dtype=bool))


def test_save_load_identical_and_deterministic(
    model: SeasonalModel, dataset: Dataset, tmp_path: Path
) -> None:
    model.save(tmp_path / "seasonal")
    loaded = SeasonalModel.load(tmp_path / "seasonal")
    for kwargs in ({"date": "2021-01-10"}, {"season": "summer", "weather": "rain"}):
        a, b = model.recommend(k=10, **kwargs), loaded.recommend(k=10, **kwargs)  # type: ignore[arg-type]
        np.testing.assert_array_equal(a.items, b.items)
        np.testing.assert_array_equal(a.scores, b.scores)
        assert a.reasons == b.reasons
    again = SeasonalModel().fit(make_dataset())
    np.testing.assert_array_equal(again.level_, model.level_)
    np.testing.assert_array_equal(again.profiles_, model.profiles_)


def test_season_and_weather_helpers() -> None:
    assert season_of(pd.Timestamp("2020-01-15")) == "winter"
    assert season_of(pd.Timestamp("2020-10-01")) == "autumn"
    assert season_of(pd.Timestamp("2020-01-15"), hemisphere="south") == "summer"
    assert weather_hint(-5) == "cold_snap"
    assert weather_hint(31) == "heatwave"
    assert weather_hint(14) == "mild"


@pytest.mark.realdata
def test_hm_sample_shows_the_yearly_cycle() -> None:
    from feature_store.loaders import load_dataset

    dataset = load_dataset(shared_dataset("hm_neo4j_customer_sample"))
    model = SeasonalModel().fit(dataset, now=pd.Timestamp("2020-09-01", tz="UTC"))
    types = dataset.items["product_type"].astype(str).to_numpy()
    winter = model.seasonal_factor(season="winter")
    summer = model.seasonal_factor(season="summer")
    for knit in ("Sweater", "Coat", "Jacket"):
        rows = types == knit
        assert winter[rows].mean() > summer[rows].mean(), knit
    for light in ("Shorts", "Bikini top", "Swimwear bottom"):
        rows = types == light
        assert summer[rows].mean() > winter[rows].mean(), light
    picks = model.recommend(date="2020-09-01", weather="cold_snap", k=12)
    assert len(picks.items) == 12
    assert picks.reasons.count("For the cold snap") >= 6


def test_sales_level_keeps_proven_sellers_ahead_of_lucky_newcomers(tmp_path: Path) -> None:
    """Tees of one (flat) group: one sold daily for a year, one every third day, one launched
    three days ago with three sales. The sales level counts what each sold (recency-weighted):
    the proven sellers come first, in order."""
    items = pd.DataFrame(
        {
            "item_id": ["steady", "newcomer", "other"],
            "name": ["Tee", "Tee", "Tee"],
            "category": ["top"] * 3,
            "product_type": ["T-shirt"] * 3,
            "price": [10.0] * 3,
        }
    )
    end = pd.Timestamp("2021-01-01", tz="UTC")
    stamps = [end - pd.Timedelta(days=d) for d in range(1, 366)]
    rows = [("c", "steady", t) for t in stamps] + [("c", "other", t) for t in stamps[::3]]
    rows += [("c", "newcomer", end - pd.Timedelta(days=d)) for d in (1, 2, 3)]
    interactions = pd.DataFrame(rows, columns=["customer_id", "item_id", "timestamp"])
    interactions["type"] = "purchase"
    data = Dataset(items=items, interactions=interactions)
    sales = SeasonalModel(level_mode="sales").fit(data, now=end)
    assert sales.recommend(k=3).items.tolist() == [0, 2, 1]
    sales.save(tmp_path / "m")
    loaded = SeasonalModel.load(tmp_path / "m")
    assert loaded.level_mode == "sales"
    np.testing.assert_array_equal(loaded.scores(), sales.scores())
    with pytest.raises(ValueError, match="level_mode"):
        SeasonalModel(level_mode="volume")
