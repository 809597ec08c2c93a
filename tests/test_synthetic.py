"""The synthetic retailer: deterministic, in the own format, and realistic where it matters."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from feature_store.loaders import load_dataset
from feature_store.schema import (
    PRICE_BANDS,
    SEASONS,
    SIZE_RETURN_REASONS,
    Category,
    Channel,
    CustomerCols,
    InteractionCols,
    InteractionType,
    ItemCols,
    ReturnReason,
    StockCols,
)
from feature_store.synthetic import LATENT_FILE, LATENT_ITEMS_FILE, REPORT_FILE, generate

CUSTOMERS = 2_000
ITEMS = 500
END = date(2026, 10, 31)
DATA_FILES = ("items", "stock", "customers", "interactions")
LATENT_SIZE_BY_SCALE = {
    # (category, product types or None) -> latent column holding the customer's true size
    ("top", None): "size_top",
    ("outerwear", None): "size_outerwear",
    ("dress", None): "size_dress",
    ("underwear", None): "size_underwear",
    ("swimwear", None): "size_swimwear",
    ("shoes", None): "size_shoes",
    ("accessory", None): "size_accessory",
    ("bottom", ("jeans", "chinos")): "size_bottom_waist",
    ("bottom", ("joggers", "leggings")): "size_bottom_letter",
    ("bottom", ("trousers", "skirt", "shorts")): "size_bottom_eu",
}


@pytest.fixture(scope="module")
def retailer(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("synthetic") / "retailer"
    generate(out, customers=CUSTOMERS, items=ITEMS, seed=42, end_date=END)
    return out


@pytest.fixture(scope="module")
def tables(retailer: Path) -> dict[str, pd.DataFrame]:
    frames = {name: pd.read_parquet(retailer / f"{name}.parquet") for name in DATA_FILES}
    frames["latent"] = pd.read_parquet(retailer / LATENT_FILE)
    frames["latent_items"] = pd.read_parquet(retailer / LATENT_ITEMS_FILE)
    return frames


@pytest.fixture(scope="module")
def purchases(tables: dict[str, pd.DataFrame]) -> pd.DataFrame:
    inter = tables["interactions"]
    items = tables["items"][
        [ItemCols.ID, ItemCols.CATEGORY, ItemCols.PRODUCT_TYPE, ItemCols.MATERIAL]
    ]
    bought = inter[inter[InteractionCols.TYPE] == InteractionType.PURCHASE.value]
    return bought.merge(items, on=ItemCols.ID, how="left", validate="many_to_one")


# --------------------------------------------------------------------------------------------
# Determinism and the report
# --------------------------------------------------------------------------------------------


def test_same_seed_gives_byte_identical_files(retailer: Path, tmp_path: Path) -> None:
    again = tmp_path / "again"
    generate(again, customers=CUSTOMERS, items=ITEMS, seed=42, end_date=END)
    for name in (*DATA_FILES, "latent_customers", "latent_items"):
        first = (retailer / f"{name}.parquet").read_bytes()
        second = (again / f"{name}.parquet").read_bytes()
        assert first == second, f"{name}.parquet differs between two runs with the same seed"


def test_different_seed_gives_different_data(
    tables: dict[str, pd.DataFrame], tmp_path: Path
) -> None:
    other = tmp_path / "other"
    generate(other, customers=CUSTOMERS, items=ITEMS, seed=43, end_date=END)
    for name in ("items", "interactions"):
        mine, theirs = tables[name], pd.read_parquet(other / f"{name}.parquet")
        assert list(mine.columns) == list(theirs.columns)
        assert not mine.equals(theirs), f"{name} identical for seeds 42 and 43"


def test_report_counts_match_the_files(retailer: Path, tables: dict[str, pd.DataFrame]) -> None:
    meta = json.loads((retailer / REPORT_FILE).read_text())
    report = meta["report"]
    assert meta["parameters"] == {
        "customers": CUSTOMERS,
        "items": ITEMS,
        "seed": 42,
        "stores": 8,
        "interactions_per_customer": 10.0,
        "end_date": END.isoformat(),
        "days": 730,
    }
    assert report["items"] == len(tables["items"]) == ITEMS
    assert report["customers"] == len(tables["customers"]) == CUSTOMERS
    assert report["interactions"] == len(tables["interactions"])
    assert report["stock_rows"] == len(tables["stock"])
    assert sum(report["interactions_by_type"].values()) == report["interactions"]
    assert report["seconds"] > 0


def test_rejects_bad_arguments(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="customers"):
        generate(tmp_path, customers=0, items=100)
    with pytest.raises(ValueError, match="items"):
        generate(tmp_path, customers=10, items=3)
    with pytest.raises(ValueError, match="days"):
        generate(tmp_path, customers=10, items=100, days=0)


# --------------------------------------------------------------------------------------------
# Schema conformance
# --------------------------------------------------------------------------------------------


def test_files_have_exactly_the_schema_columns_and_types(retailer: Path) -> None:
    expected = {
        "items": ItemCols.ALL,
        "stock": StockCols.ALL,
        "customers": CustomerCols.ALL,
        "interactions": InteractionCols.ALL,
    }
    schemas = {name: pq.read_schema(retailer / f"{name}.parquet") for name in DATA_FILES}
    for name, columns in expected.items():
        assert tuple(schemas[name].names) == columns, name
    items = schemas["items"]
    for col in ItemCols.LIST_COLUMNS:
        assert items.field(col).type == pa.list_(pa.string()), col
    assert items.field(ItemCols.PRICE).type == pa.float64()
    assert items.field(ItemCols.LAUNCH_DATE).type == pa.date32()
    ts = schemas["interactions"].field(InteractionCols.TIMESTAMP).type
    assert ts == pa.timestamp("us", tz="UTC")
    assert schemas["stock"].field(StockCols.QUANTITY).type == pa.int64()
    assert schemas["customers"].field(CustomerCols.CONSENT_PERSONALIZATION).type == pa.bool_()
    for name in DATA_FILES:
        for col in ("item_id", "customer_id", "store_id"):
            if col in schemas[name].names:
                assert schemas[name].field(col).type == pa.string(), (name, col)


def test_values_are_in_the_schema_enums(tables: dict[str, pd.DataFrame]) -> None:
    items, inter = tables["items"], tables["interactions"]
    assert set(items[ItemCols.CATEGORY]) <= {c.value for c in Category}
    assert set(items[ItemCols.PRICE_BAND]) <= set(PRICE_BANDS)
    assert {s for row in items[ItemCols.SEASONS] for s in row} <= set(SEASONS)
    assert items[ItemCols.ID].str.fullmatch(r"I\d{6}").all()
    assert items[ItemCols.ID].is_unique
    assert tables["customers"][CustomerCols.ID].str.fullmatch(r"C\d{7}").all()
    assert set(inter[InteractionCols.TYPE]) == {t.value for t in InteractionType}
    assert set(inter[InteractionCols.CHANNEL]) <= {c.value for c in Channel}
    reasons = inter[InteractionCols.RETURN_REASON].dropna()
    assert set(reasons) <= {r.value for r in ReturnReason}
    returns = inter[InteractionCols.TYPE] == InteractionType.RETURN.value
    assert inter.loc[returns, InteractionCols.RETURN_REASON].notna().all()
    assert inter.loc[~returns, InteractionCols.RETURN_REASON].isna().all()
    assert (items[ItemCols.PRICE] > 0).all()
    assert (inter[InteractionCols.POSITION].dropna() >= 0).all()
    assert set(inter[InteractionCols.ITEM_ID]) <= set(items[ItemCols.ID])
    assert set(inter[InteractionCols.CUSTOMER_ID]) <= set(tables["customers"][CustomerCols.ID])


def test_loads_through_the_own_format_loader(retailer: Path) -> None:
    ds = load_dataset(retailer)
    assert len(ds.items) == ITEMS
    assert len(ds.customers) == CUSTOMERS
    assert str(ds.interactions[InteractionCols.TIMESTAMP].dtype) == "datetime64[ns, UTC]"


def test_interactions_sorted_by_time_within_a_block(tables: dict[str, pd.DataFrame]) -> None:
    ts = tables["interactions"][InteractionCols.TIMESTAMP]
    assert ts.is_monotonic_increasing  # one block at this size
    start = pd.Timestamp(END, tz="UTC") - pd.Timedelta(days=729)
    assert ts.min() >= start
    assert ts.max() < pd.Timestamp(END, tz="UTC") + pd.Timedelta(days=1)


def test_readable_names_and_descriptions(tables: dict[str, pd.DataFrame]) -> None:
    items = tables["items"]
    for row in items.head(50).itertuples():
        name = row.name.lower()
        assert row.colour in name and row.product_type in name, row.name
        assert row.product_type in row.description and row.material in row.description


# --------------------------------------------------------------------------------------------
# Realism, measured from the data
# --------------------------------------------------------------------------------------------


def test_interactions_per_customer_heavy_tailed_around_the_mean(
    tables: dict[str, pd.DataFrame],
) -> None:
    per_customer = tables["interactions"].groupby(InteractionCols.CUSTOMER_ID).size()
    assert len(per_customer) == CUSTOMERS  # everyone did something
    assert 8.0 <= per_customer.mean() <= 12.0
    assert per_customer.max() > 6 * per_customer.mean()
    assert per_customer.median() < per_customer.mean()


def test_baskets_form_outfits_across_categories(purchases: pd.DataFrame) -> None:
    baskets = purchases.groupby([InteractionCols.CUSTOMER_ID, InteractionCols.TIMESTAMP])
    categories = baskets[ItemCols.CATEGORY].agg(lambda c: frozenset(c))
    multi = categories[categories.map(len) >= 2]
    assert len(multi) / len(categories) > 0.35
    outfit = {"top", "bottom", "shoes"}
    assert (multi.map(lambda c: outfit <= c)).sum() > 0.05 * len(multi)
    dress_look = multi.map(lambda c: "dress" in c and ("shoes" in c or "accessory" in c))
    assert dress_look.sum() > 0


def test_winter_sells_more_outerwear_and_knitwear_summer_more_linen_and_swim(
    purchases: pd.DataFrame,
) -> None:
    month = purchases[InteractionCols.TIMESTAMP].dt.month
    winter = purchases[month.isin([12, 1, 2])]
    summer = purchases[month.isin([6, 7, 8])]
    assert len(winter) > 300 and len(summer) > 300

    def share(frame: pd.DataFrame, mask: pd.Series) -> float:
        return float(mask.sum()) / len(frame)

    outer_w = share(winter, winter[ItemCols.CATEGORY] == "outerwear")
    outer_s = share(summer, summer[ItemCols.CATEGORY] == "outerwear")
    assert outer_w > 3 * outer_s
    knit = ("sweater", "cardigan", "knit dress")
    assert share(winter, winter[ItemCols.PRODUCT_TYPE].isin(knit)) > 3 * share(
        summer, summer[ItemCols.PRODUCT_TYPE].isin(knit)
    )
    assert share(summer, summer[ItemCols.MATERIAL] == "linen") > 3 * share(
        winter, winter[ItemCols.MATERIAL] == "linen"
    )
    assert share(summer, summer[ItemCols.CATEGORY] == "swimwear") > 3 * share(
        winter, winter[ItemCols.CATEGORY] == "swimwear"
    )


def test_no_interaction_before_the_item_launch(tables: dict[str, pd.DataFrame]) -> None:
    inter = tables["interactions"].merge(
        tables["items"][[ItemCols.ID, ItemCols.LAUNCH_DATE]], on=ItemCols.ID
    )
    day = inter[InteractionCols.TIMESTAMP].dt.tz_convert("UTC").dt.date
    assert (day >= inter[ItemCols.LAUNCH_DATE]).all()
    launch = pd.to_datetime(tables["items"][ItemCols.LAUNCH_DATE])
    start = pd.Timestamp(END) - pd.Timedelta(days=729)
    assert (launch < start).mean() > 0.1  # a back catalogue …
    assert (launch > start + pd.Timedelta(days=365)).mean() > 0.2  # … and launches throughout


def test_every_size_sold_or_stocked_is_offered_by_the_item(
    tables: dict[str, pd.DataFrame],
) -> None:
    offered = {
        (row.item_id, size)
        for row in tables["items"][[ItemCols.ID, ItemCols.SIZES]].itertuples()
        for size in row.sizes
    }
    inter = tables["interactions"]
    sized = inter[inter[InteractionCols.SIZE].notna()]
    pairs = set(zip(sized[InteractionCols.ITEM_ID], sized[InteractionCols.SIZE], strict=True))
    assert pairs <= offered
    stock = tables["stock"]
    assert set(zip(stock[StockCols.ITEM_ID], stock[StockCols.SIZE], strict=True)) <= offered
    bought = inter[InteractionCols.TYPE].isin(
        [InteractionType.PURCHASE.value, InteractionType.RETURN.value]
    )
    assert inter.loc[bought, InteractionCols.SIZE].notna().all()
    assert inter.loc[bought, InteractionCols.PRICE].gt(0).all()
    assert inter.loc[bought, InteractionCols.STORE_ID].notna().all()


def test_size_scales_by_category(tables: dict[str, pd.DataFrame]) -> None:
    items = tables["items"].set_index(ItemCols.ID)
    first_sizes = items[ItemCols.SIZES].map(lambda s: s[0])
    letter = {"XS", "S", "M"}
    for cat in ("top", "outerwear", "dress"):
        assert first_sizes[items[ItemCols.CATEGORY] == cat].isin(letter).all(), cat
    shoes = items[items[ItemCols.CATEGORY] == "shoes"][ItemCols.SIZES]
    assert shoes.map(lambda s: all(36 <= int(x) <= 46 for x in s)).all()
    jeans = items[items[ItemCols.PRODUCT_TYPE] == "jeans"][ItemCols.SIZES]
    assert jeans.map(lambda s: all(26 <= int(x) <= 38 for x in s)).all()
    accessories = items[items[ItemCols.CATEGORY] == "accessory"][ItemCols.SIZES]
    assert accessories.map(lambda s: list(s) == ["ONE SIZE"]).mean() > 0.6


def test_stock_has_rows_per_store_and_size(tables: dict[str, pd.DataFrame]) -> None:
    stock, items = tables["stock"], tables["items"]
    assert not stock.duplicated([StockCols.ITEM_ID, StockCols.STORE_ID, StockCols.SIZE]).any()
    online = stock[stock[StockCols.STORE_ID] == "online"]
    assert set(online[StockCols.ITEM_ID]) == set(items[ItemCols.ID])
    stores = set(stock[StockCols.STORE_ID])
    assert {f"store-{i:03d}" for i in range(1, 9)} <= stores
    n_sizes = items.set_index(ItemCols.ID)[ItemCols.SIZES].map(len)
    rows = stock.groupby([StockCols.ITEM_ID, StockCols.STORE_ID]).size()
    assert (rows.to_numpy() == n_sizes.loc[rows.index.get_level_values(0)].to_numpy()).all()
    zero = stock[StockCols.QUANTITY] == 0
    assert 0.02 < zero.mean() < 0.7  # some sizes are out of stock somewhere, most are not
    assert (stock[StockCols.QUANTITY] >= 0).all()
    per_store = stock[stock[StockCols.STORE_ID] != "online"].groupby(StockCols.STORE_ID)
    assert (per_store[StockCols.ITEM_ID].nunique() < len(items)).all()  # stores carry a subset


def test_wrong_sizes_come_back_with_size_reasons(
    tables: dict[str, pd.DataFrame], purchases: pd.DataFrame
) -> None:
    latent = tables["latent"].set_index(CustomerCols.ID)
    sized = purchases[purchases[InteractionCols.SIZE] != "ONE SIZE"]
    true = pd.Series(index=sized.index, dtype="object")
    for (cat, types), column in LATENT_SIZE_BY_SCALE.items():
        mask = sized[ItemCols.CATEGORY] == cat
        if types is not None:
            mask &= sized[ItemCols.PRODUCT_TYPE].isin(types)
        true[mask] = latent.loc[sized.loc[mask, InteractionCols.CUSTOMER_ID], column].to_numpy()
    assert true.notna().all()
    wrong = sized[InteractionCols.SIZE].to_numpy() != true.to_numpy()
    assert 0.1 < wrong.mean() < 0.45  # usually the true size, sometimes not

    inter = tables["interactions"]
    size_returns = inter[
        (inter[InteractionCols.TYPE] == InteractionType.RETURN.value)
        & inter[InteractionCols.RETURN_REASON].isin([r.value for r in SIZE_RETURN_REASONS])
    ]
    returned = set(
        zip(
            size_returns[InteractionCols.CUSTOMER_ID],
            size_returns[InteractionCols.ITEM_ID],
            strict=True,
        )
    )
    keys = zip(sized[InteractionCols.CUSTOMER_ID], sized[InteractionCols.ITEM_ID], strict=True)
    was_returned = np.array([k in returned for k in keys])
    rate_wrong = was_returned[wrong].mean()
    rate_right = was_returned[~wrong].mean()
    assert rate_wrong > 0.3
    assert rate_wrong > 5 * rate_right


def test_items_that_run_small_or_large(tables: dict[str, pd.DataFrame]) -> None:
    """A minority of sized items run one size small / large; their size returns lean that way."""
    truth = tables["latent_items"].set_index(ItemCols.ID)["fit_offset"]
    items = tables["items"].set_index(ItemCols.ID)
    assert list(truth.index) == list(items.index)
    assert set(truth.unique()) == {-1, 0, 1}
    off = truth != 0
    assert 0.05 < off.mean() < 0.25  # a minority
    assert (items.loc[off, ItemCols.SIZES].map(len) >= 3).all()
    inter = tables["interactions"]
    returns = inter[
        inter[InteractionCols.RETURN_REASON].isin([r.value for r in SIZE_RETURN_REASONS])
    ]
    offset = returns[InteractionCols.ITEM_ID].map(truth)
    small = returns[InteractionCols.RETURN_REASON] == ReturnReason.TOO_SMALL.value
    assert small[offset == 1].mean() > 0.75  # bought in the usual size: too small
    assert small[offset == -1].mean() < 0.25
    assert 0.3 < small[offset == 0].mean() < 0.7
    bought = inter[inter[InteractionCols.TYPE] == InteractionType.PURCHASE.value]
    rate = (
        returns.groupby(offset).size()
        / bought.groupby(bought[InteractionCols.ITEM_ID].map(truth)).size()
    )
    assert rate[1] > 2 * rate[0] and rate[-1] > 2 * rate[0]


def test_returns_follow_purchases_by_days(tables: dict[str, pd.DataFrame]) -> None:
    inter = tables["interactions"]
    key = [InteractionCols.CUSTOMER_ID, InteractionCols.ITEM_ID]
    bought = inter[inter[InteractionCols.TYPE] == InteractionType.PURCHASE.value]
    first_buy = bought.groupby(key)[InteractionCols.TIMESTAMP].min().rename("bought")
    returns = inter[inter[InteractionCols.TYPE] == InteractionType.RETURN.value].join(
        first_buy, on=key
    )
    assert returns["bought"].notna().all()
    gap = returns[InteractionCols.TIMESTAMP] - returns["bought"]
    assert (gap > pd.Timedelta(hours=12)).all()
    assert gap.median() < pd.Timedelta(days=20)
    too_small = returns[InteractionCols.RETURN_REASON] == ReturnReason.TOO_SMALL.value
    too_large = returns[InteractionCols.RETURN_REASON] == ReturnReason.TOO_LARGE.value
    assert too_small.sum() > 0 and too_large.sum() > 0
    assert (too_small | too_large).mean() > 0.5  # most returns are about fit


def test_online_purchases_are_preceded_by_views_and_carts(tables: dict[str, pd.DataFrame]) -> None:
    inter = tables["interactions"]
    online = inter[inter[InteractionCols.CHANNEL] != Channel.STORE.value]
    key = [InteractionCols.CUSTOMER_ID, InteractionCols.ITEM_ID]
    first = online.groupby([*key, InteractionCols.TYPE])[InteractionCols.TIMESTAMP].min()
    first = first.unstack(InteractionCols.TYPE)
    bought = first[first[InteractionType.PURCHASE.value].notna()]
    carted_before = (
        bought[InteractionType.ADD_TO_CART.value] <= bought[InteractionType.PURCHASE.value]
    )
    viewed_before = bought[InteractionType.VIEW.value] <= bought[InteractionType.PURCHASE.value]
    assert carted_before.mean() > 0.75
    assert viewed_before.mean() > 0.7
    # and browsing outnumbers buying
    counts = online[InteractionCols.TYPE].value_counts()
    assert counts[InteractionType.VIEW.value] > counts[InteractionType.PURCHASE.value]
    recs = online[online[InteractionCols.RECOMMENDATION_ID].notna()]
    assert set(recs[InteractionCols.TYPE]) >= {
        InteractionType.IMPRESSION.value,
        InteractionType.CLICK.value,
    }


def test_store_purchases_name_a_store_and_online_ones_the_web_shop(
    tables: dict[str, pd.DataFrame],
) -> None:
    inter = tables["interactions"]
    bought = inter[inter[InteractionCols.TYPE] == InteractionType.PURCHASE.value]
    in_store = bought[bought[InteractionCols.CHANNEL] == Channel.STORE.value]
    assert in_store[InteractionCols.STORE_ID].str.startswith("store-").all()
    web = bought[bought[InteractionCols.CHANNEL] != Channel.STORE.value]
    assert (web[InteractionCols.STORE_ID] == "online").all()
    assert 0.1 < len(in_store) / len(bought) < 0.6


def test_popularity_is_long_tailed(purchases: pd.DataFrame) -> None:
    counts = purchases[InteractionCols.ITEM_ID].value_counts()
    top_decile = counts.head(max(1, ITEMS // 10)).sum() / counts.sum()
    assert top_decile > 0.25


def test_customers_mostly_consent_and_have_age_bands(tables: dict[str, pd.DataFrame]) -> None:
    customers = tables["customers"]
    consent = customers[CustomerCols.CONSENT_PERSONALIZATION]
    assert 0.8 < consent.mean() < 0.97
    assert customers[CustomerCols.AGE_BAND].nunique() >= 5
    first_seen = (
        tables["interactions"]
        .groupby(InteractionCols.CUSTOMER_ID)[InteractionCols.TIMESTAMP]
        .min()
        .dt.date
    )
    signup = customers.set_index(CustomerCols.ID)[CustomerCols.SIGNUP_DATE]
    assert (first_seen >= signup.loc[first_seen.index]).all()
