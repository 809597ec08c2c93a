"""Adapters for the H&M datasets: the Kaggle competition, the camelCase Neo4j sample, the ragrec sample."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from ..dataset import Dataset
from ..schema import (
    ONLINE_STORE,
    Category,
    Channel,
    CustomerCols,
    InteractionCols,
    InteractionType,
    ItemCols,
)
from .columns import (
    _check_unique,
    _decode,
    _dict,
    _first,
    _parse_date,
    _parse_id,
    _parse_number,
    _remap,
    _require,
    _row_mask,
)
from .frames import _item_categorical, _sorted_categorical
from .own import _empty_frame, _fill_price_bands, _filter, _log_loaded, _orphans
from .reading import _read, _Source
from .spec import _AGE_EDGES, _CUSTOMER_SPEC, _STOCK_SPEC, AGE_BANDS, _Col

_HM_GROUP_CATEGORY: Final = {
    "Garment Upper body": Category.TOP,
    "Garment Lower body": Category.BOTTOM,
    "Garment Full body": Category.DRESS,
    "Shoes": Category.SHOES,
    "Accessories": Category.ACCESSORY,
    "Bags": Category.ACCESSORY,
    "Items": Category.ACCESSORY,
    "Underwear": Category.UNDERWEAR,
    "Socks & Tights": Category.UNDERWEAR,
    "Nightwear": Category.UNDERWEAR,
    "Underwear/nightwear": Category.UNDERWEAR,
    "Swimwear": Category.SWIMWEAR,
}
_HM_OUTERWEAR_TYPES: Final = frozenset({"jacket", "coat", "blazer"})
_HM_CHANNELS: Final = {"1": Channel.STORE.value, "2": Channel.ONLINE.value}


@dataclass(frozen=True)
class _HmLayout:
    source: str
    articles: str
    transactions: str
    customers: str
    products: str | None
    # logical name → column name in the files
    cols: dict[str, str] = field(default_factory=dict)


_KAGGLE_COLS: Final = {
    "article_id": "article_id",
    "product_code": "product_code",
    "name": "prod_name",
    "product_type": "product_type_name",
    "product_group": "product_group_name",
    "pattern": "graphical_appearance_name",
    "colour": "colour_group_name",
    "garment_group": "garment_group_name",
    "description": "detail_desc",
    "date": "t_dat",
    "customer_id": "customer_id",
    "price": "price",
    "channel": "sales_channel_id",
    "age": "age",
}
_NEO4J_COLS: Final = {
    "article_id": "articleId",
    "product_code": "productCode",
    "name": "prodName",
    "product_type": "productTypeName",
    "product_group": "productGroupName",
    "pattern": "graphicalAppearanceName",
    "colour": "colourGroupName",
    "garment_group": "garmentGroupName",
    "description": "detailDesc",
    "date": "tDat",
    "customer_id": "customerId",
    "price": "price",
    "channel": "salesChannelId",
    "age": "age",
}
_LAYOUTS: Final = {
    "hm_kaggle": _HmLayout(
        "hm_kaggle", "articles.csv", "transactions_train.csv", "customers.csv", None, _KAGGLE_COLS
    ),
    "hm_neo4j": _HmLayout(
        "hm_neo4j",
        "articles.csv",
        "order-details.csv",
        "customers.csv",
        "products.csv",
        _NEO4J_COLS,
    ),
    "hm_ragrec": _HmLayout(
        "hm_ragrec",
        "articles_sample.parquet",
        "transactions_sample.parquet",
        "customers_sample.parquet",
        None,
        _KAGGLE_COLS,
    ),
}


def _hm_article_ids(src: _Source, name: str) -> pa.DictionaryArray:
    """Article ids as strings without leading zeros (Kaggle's CSV has them, the samples not)."""
    arr = _dict(src, name)
    _require(src, name, pc.is_valid(arr.indices))
    stripped = pc.replace_substring_regex(arr.dictionary, pattern=r"^0+(\d)", replacement=r"\1")
    return _remap(arr, stripped)


def _hm_text(src: _Source | None, name: str, n: int) -> pa.Array:
    if src is None or not src.has(name):
        return pa.nulls(n, pa.string())
    return _decode(_dict(src, name))


def _hm_category(group: pd.Series, ptype: pd.Series) -> pd.Series:
    category = group.map(lambda g: _HM_GROUP_CATEGORY.get(g, Category.OTHER).value)
    lowered = ptype.fillna("").str.lower()
    outer = lowered.isin(_HM_OUTERWEAR_TYPES) | lowered.str.startswith("outdoor")
    return category.where(~outer, Category.OUTERWEAR.value).astype("str")


def _hm_items(layout: _HmLayout, folder: Path) -> tuple[_Source, pa.DictionaryArray, pd.DataFrame]:
    c = layout.cols
    if layout.products is None:
        required = [c["article_id"], c["name"], c["product_group"]]
    else:
        required = [c["article_id"], c["product_code"], c["name"]]
    wanted = [
        c[k]
        for k in (
            "article_id",
            "product_code",
            "name",
            "product_type",
            "product_group",
            "pattern",
            "colour",
            "garment_group",
            "description",
        )
    ]
    src = _read(
        folder / layout.articles, wanted, required, dictionary=(c["article_id"],), allow_empty=False
    )
    n = src.n
    ids = _hm_article_ids(src, c["article_id"])
    _check_unique(src, c["article_id"], ids, "article id")
    name = _hm_text(src, c["name"], n)
    _require(src, c["name"], pc.is_valid(name))
    ptype = _hm_text(src, c["product_type"], n)
    if layout.products is None:
        group = _hm_text(src, c["product_group"], n)
        garment = _hm_text(src, c["garment_group"], n)
        description = _hm_text(src, c["description"], n)
    else:
        prod_wanted = [
            c[k]
            for k in (
                "product_code",
                "product_type",
                "product_group",
                "garment_group",
                "description",
            )
        ]
        prod = _read(
            folder / layout.products,
            prod_wanted,
            [c["product_code"], c["product_group"]],
            allow_empty=False,
        )
        codes = _dict(prod, c["product_code"])
        _require(prod, c["product_code"], pc.is_valid(codes.indices))
        _check_unique(prod, c["product_code"], codes, "product code")
        article_codes = _dict(src, c["product_code"])
        _require(src, c["product_code"], pc.is_valid(article_codes.indices))
        where = pc.take(
            pc.index_in(article_codes.dictionary, value_set=_decode(codes)), article_codes.indices
        )
        missing = _first(pc.is_null(where))
        if missing is not None:
            value = _decode(article_codes)[missing].as_py()
            src.fail(
                f"product code {value!r} is not in {layout.products}",
                column=c["product_code"],
                index=missing,
            )
        group = pc.take(_hm_text(prod, c["product_group"], prod.n), where)
        garment = pc.take(_hm_text(prod, c["garment_group"], prod.n), where)
        description = pc.take(_hm_text(prod, c["description"], prod.n), where)
        ptype = pc.coalesce(ptype, pc.take(_hm_text(prod, c["product_type"], prod.n), where))
    ptype_s = pd.Series(ptype.to_pandas(), dtype="str")
    garment_s = pd.Series(garment.to_pandas(), dtype="str")
    unknown_type = ptype_s.isna() | (ptype_s == "Unknown")
    garment_s = garment_s.where(garment_s != "Unknown")
    product_type = ptype_s.where(~unknown_type, garment_s)
    items = pd.DataFrame(
        {
            ItemCols.ID: pd.Series(_decode(ids).to_pandas(), dtype="str"),
            ItemCols.NAME: pd.Series(name.to_pandas(), dtype="str"),
            ItemCols.CATEGORY: _hm_category(pd.Series(group.to_pandas(), dtype="str"), ptype_s),
            ItemCols.PRODUCT_TYPE: product_type.astype("str"),
            ItemCols.STYLES: pd.Series([[] for _ in range(n)], dtype=object),
            ItemCols.COLOUR: pd.Series(_hm_text(src, c["colour"], n).to_pandas(), dtype="str"),
            ItemCols.MATERIAL: pd.Series(pa.nulls(n, pa.string()).to_pandas(), dtype="str"),
            ItemCols.PATTERN: pd.Series(_hm_text(src, c["pattern"], n).to_pandas(), dtype="str"),
            ItemCols.SEASONS: pd.Series([[] for _ in range(n)], dtype=object),
            ItemCols.PRICE: np.full(n, np.nan),
            ItemCols.PRICE_BAND: pd.Series(pa.nulls(n, pa.string()).to_pandas(), dtype="str"),
            ItemCols.LAUNCH_DATE: pd.Series(pd.NaT, index=range(n), dtype="datetime64[ns]"),
            ItemCols.SIZES: pd.Series([[] for _ in range(n)], dtype=object),
            ItemCols.DESCRIPTION: pd.Series(description.to_pandas(), dtype="str"),
        }
    )
    if src.has(c["product_code"]):
        codes_text = _decode(_dict(src, c["product_code"]))
        items[ItemCols.PRODUCT_CODE] = pd.Series(codes_text.to_pandas(), dtype="str")
    return src, ids, items


def _hm_prices(
    items: pd.DataFrame,
    positions: np.ndarray[Any, Any],
    prices: np.ndarray[Any, Any],
    days: np.ndarray[Any, Any],
) -> None:
    """Item price = the price last paid (the catalog's price as of the data's end, what a
    retailer's export shows — never a summary over the whole history, which would hand a past
    event later prices); unsold items take their product type's (or category's, or the overall)
    median; price bands from within-category quartiles. Each event keeps its own price paid
    (``interactions.price``): the evaluation harness prices items as of each cutoff from those
    (:mod:`training.evaluate.context`) and never reads this column."""
    order = np.lexsort((np.arange(len(positions)), days, positions))
    pos, paid = np.asarray(positions)[order], np.asarray(prices, dtype=np.float64)[order]
    last = np.r_[pos[1:] != pos[:-1], True] if len(pos) else np.empty(0, bool)
    by_item = np.full(len(items), np.nan)
    by_item[pos[last].astype(np.int64)] = paid[last]
    price = pd.Series(by_item, index=items.index)
    for key in (ItemCols.PRODUCT_TYPE, ItemCols.CATEGORY):
        fill = price.groupby(items[key].fillna("")).transform("median")
        price = price.fillna(fill)
    overall = float(np.nanmedian(price)) if price.notna().any() else 0.0
    items[ItemCols.PRICE] = price.fillna(overall).astype("float64")
    _fill_price_bands(items)


def _age_band(age: np.ndarray[Any, Any]) -> pd.Series:
    bands = np.asarray(AGE_BANDS, dtype=object)[
        np.searchsorted(_AGE_EDGES, np.nan_to_num(age), side="right")
    ]
    return pd.Series(np.where(np.isnan(age), None, bands), dtype="str")


def _load_hm(folder: Path, layout: _HmLayout, on_orphans: str) -> Dataset:
    c = layout.cols
    articles_src, article_ids, items = _hm_items(layout, folder)
    del articles_src

    wanted = [c["date"], c["customer_id"], c["article_id"], c["price"], c["channel"]]
    required = wanted[:4]
    tx = _read(
        folder / layout.transactions,
        wanted,
        required,
        dictionary=(c["customer_id"], c["article_id"], c["channel"]),
        allow_empty=False,
    )
    dates = _parse_date(tx, _Col(c["date"], "date", required=True))
    customer = _parse_id(tx, _Col(c["customer_id"], "id", required=True))
    article = _hm_article_ids(tx, c["article_id"])
    price = _parse_number(tx, _Col(c["price"], "float", required=True, minimum=0.0), integer=False)
    if tx.has(c["channel"]):
        channel_raw = _dict(tx, c["channel"])
        channel_values = pc.replace_substring_regex(channel_raw.dictionary, r"\.0+$", "")
        known = pc.is_in(channel_values, value_set=pa.array(list(_HM_CHANNELS)))
        bad = _first(_row_mask(channel_raw, pc.invert(known)))
        if bad is not None:
            tx.fail(
                f"unknown sales channel {_decode(channel_raw)[bad].as_py()!r} (expected 1 or 2)",
                column=c["channel"],
                index=bad,
            )
        mapped = pc.take(
            pa.array(list(_HM_CHANNELS.values())),
            pc.index_in(channel_values, value_set=pa.array(list(_HM_CHANNELS))),
        )
        channel = pc.take(mapped, channel_raw.indices)
    else:
        channel = pa.nulls(tx.n, pa.string())
    arrays = {"date": dates, "customer": customer, "price": price, "channel": channel}
    positions, keep = _orphans(
        tx, c["article_id"], article, _decode(article_ids), on_orphans, "transactions"
    )
    arrays = _filter(arrays, keep)
    n = len(positions)
    channel_s = pd.Series(arrays["channel"].to_pandas(), dtype="str")
    store = channel_s.where(channel_s == Channel.ONLINE.value)
    store = store.where(store.isna(), ONLINE_STORE)
    nulls = pd.Series(pa.nulls(n, pa.string()).to_pandas(), dtype="str")
    price_np = arrays["price"].to_numpy(zero_copy_only=False)
    days = arrays["date"].cast(pa.timestamp("s")).cast(pa.int64()).to_numpy(zero_copy_only=False)
    _hm_prices(items, positions, price_np, days)
    interactions = pd.DataFrame(
        {
            InteractionCols.CUSTOMER_ID: _sorted_categorical(arrays["customer"]),
            InteractionCols.ITEM_ID: _item_categorical(positions, items),
            InteractionCols.TYPE: pd.Series(
                np.full(n, InteractionType.PURCHASE.value, dtype=object), dtype="str"
            ),
            InteractionCols.TIMESTAMP: pd.Series(
                arrays["date"].cast(pa.timestamp("ns", "UTC")).to_pandas()
            ),
            InteractionCols.CHANNEL: channel_s,
            InteractionCols.SIZE: nulls,
            InteractionCols.PRICE: pd.Series(price_np, dtype="float64"),
            InteractionCols.STORE_ID: store.astype("str"),
            InteractionCols.RETURN_REASON: nulls.copy(),
            InteractionCols.RECOMMENDATION_ID: nulls.copy(),
            InteractionCols.POSITION: pd.Series(pd.array([pd.NA] * n, dtype="Int64")),
        }
    )

    customers_path = folder / layout.customers
    if customers_path.is_file():
        cs = _read(
            customers_path,
            [c["customer_id"], c["age"]],
            [c["customer_id"]],
            dictionary=(c["customer_id"],),
        )
        ids = _parse_id(cs, _Col(c["customer_id"], "id", required=True))
        _check_unique(cs, c["customer_id"], ids, "customer id")
        if cs.has(c["age"]):
            age = _parse_number(cs, _Col(c["age"], "float", minimum=0.0), integer=False)
            age_np = age.to_numpy(zero_copy_only=False).astype(np.float64)
        else:
            age_np = np.full(cs.n, np.nan)
        customers = pd.DataFrame(
            {
                CustomerCols.ID: pd.Series(_decode(ids).to_pandas(), dtype="str"),
                CustomerCols.AGE_BAND: _age_band(age_np),
                CustomerCols.CONSENT_PERSONALIZATION: pd.Series(
                    pd.array(np.ones(cs.n, dtype=bool), dtype="boolean")
                ),
                CustomerCols.SIGNUP_DATE: pd.Series(
                    pd.NaT, index=range(cs.n), dtype="datetime64[ns]"
                ),
            }
        )
    else:
        customers = _empty_frame(_CUSTOMER_SPEC)
    ds = Dataset(
        items=items,
        interactions=interactions,
        customers=customers,
        stock=_empty_frame(_STOCK_SPEC),
        source=f"{layout.source}:{folder}",
    )
    _log_loaded(ds)
    return ds
