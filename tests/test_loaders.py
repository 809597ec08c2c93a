"""Loaders: the own format (Parquet and CSV), the H&M adapters, and clear errors on bad input."""

from __future__ import annotations

import csv
import logging
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import shared_dataset

from feature_store.dataset import Dataset
from feature_store.errors import DataFormatError
from feature_store.loaders import detect_format, load_dataset, write_dataset
from feature_store.schema import (
    PRICE_BANDS,
    Category,
    CustomerCols,
    InteractionCols,
    InteractionType,
    ItemCols,
    StockCols,
)
from feature_store.synthetic import generate

TABLES = ("items", "interactions", "customers", "stock")

ITEM_ROWS: list[dict[str, str]] = [
    {"item_id": "I1", "name": "Navy linen shirt", "category": "top", "price": "39.99",
     "styles": "casual|business", "seasons": "spring|summer", "sizes": "S|M|L"},
    {"item_id": "I2", "name": "Blue jeans", "category": "bottom", "price": "59",
     "styles": "", "seasons": "", "sizes": "28|30|32"},
    {"item_id": "I3", "name": "White sneakers", "category": "shoes", "price": "79.5",
     "styles": "sport", "seasons": "", "sizes": "40|41"},
]  # fmt: skip
INTERACTION_ROWS: list[dict[str, str]] = [
    {"customer_id": "C1", "item_id": "I1", "type": "view",
     "timestamp": "2026-01-05T10:00:00Z", "channel": "online", "size": "", "price": ""},
    {"customer_id": "C1", "item_id": "I1", "type": "purchase",
     "timestamp": "2026-01-05 10:05:00", "channel": "online", "size": "M", "price": "39.99"},
    {"customer_id": "C2", "item_id": "I2", "type": "purchase",
     "timestamp": "2026-01-06T11:00:00+01:00", "channel": "store", "size": "30", "price": "59"},
    {"customer_id": "C2", "item_id": "I3", "type": "add_to_cart",
     "timestamp": "2026-01-07", "channel": "app", "size": "41", "price": "79.5"},
]  # fmt: skip


def write_csv(path: Path, rows: Sequence[dict[str, str]], columns: Sequence[str] = ()) -> Path:
    names = list(columns) or list(rows[0])
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=names, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    return path


def own_csv(
    folder: Path,
    items: Sequence[dict[str, str]] = ITEM_ROWS,
    interactions: Sequence[dict[str, str]] = INTERACTION_ROWS,
) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    write_csv(folder / "items.csv", items)
    write_csv(folder / "interactions.csv", interactions)
    return folder


def changed(rows: Sequence[dict[str, str]], index: int, **values: str) -> list[dict[str, str]]:
    out = [dict(r) for r in rows]
    out[index].update(values)
    return out


def assert_error(
    exc: pytest.ExceptionInfo[DataFormatError], file: str, row: int | None, column: str | None
) -> None:
    err = exc.value
    assert err.file is not None and Path(err.file).name == file, err
    assert err.row == row, err
    assert err.column == column, err
    message = str(err)
    assert file in message
    if row is not None:
        assert f"row {row}" in message
    if column is not None:
        assert repr(column) in message


def assert_same(a: Dataset, b: Dataset) -> None:
    for name in TABLES:
        pd.testing.assert_frame_equal(getattr(a, name), getattr(b, name), obj=name)


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("loaders") / "synthetic"
    generate(out, customers=300, items=200, seed=3)
    return out


# --------------------------------------------------------------------------------------------
# Own format
# --------------------------------------------------------------------------------------------


def test_own_csv_is_parsed_into_the_dataset_conventions(tmp_path: Path) -> None:
    ds = load_dataset(own_csv(tmp_path / "shop"))
    items, inter = ds.items, ds.interactions
    assert list(items.columns) == list(ItemCols.ALL)  # no optional extra column in the file
    assert list(inter.columns) == list(InteractionCols.ALL)
    assert items[ItemCols.STYLES].tolist() == [["casual", "business"], [], ["sport"]]
    assert items[ItemCols.SIZES].tolist()[0] == ["S", "M", "L"]
    assert items[ItemCols.PRICE].tolist() == [39.99, 59.0, 79.5]
    assert set(items[ItemCols.PRICE_BAND]) <= set(PRICE_BANDS)  # filled from quartiles
    assert items[ItemCols.MATERIAL].isna().all()  # optional column absent → null
    assert str(inter[InteractionCols.TIMESTAMP].dtype) == "datetime64[ns, UTC]"
    assert inter[InteractionCols.TIMESTAMP].tolist() == [
        pd.Timestamp("2026-01-05 10:00:00", tz="UTC"),
        pd.Timestamp("2026-01-05 10:05:00", tz="UTC"),  # naive = UTC
        pd.Timestamp("2026-01-06 10:00:00", tz="UTC"),  # offset converted
        pd.Timestamp("2026-01-07 00:00:00", tz="UTC"),  # a date is midnight UTC
    ]
    assert isinstance(inter[InteractionCols.ITEM_ID].dtype, pd.CategoricalDtype)
    assert list(inter[InteractionCols.ITEM_ID].cat.categories) == ["I1", "I2", "I3"]
    assert inter[InteractionCols.ITEM_ID].tolist() == ["I1", "I1", "I2", "I3"]
    assert inter[InteractionCols.CUSTOMER_ID].tolist() == ["C1", "C1", "C2", "C2"]
    assert pd.isna(inter[InteractionCols.SIZE].iloc[0])  # blank optional → null
    assert inter[InteractionCols.POSITION].isna().all()
    assert str(inter[InteractionCols.POSITION].dtype) == "Int64"
    assert len(ds.customers) == 0 and len(ds.stock) == 0
    assert list(ds.customers.columns) == list(CustomerCols.ALL)
    assert list(ds.stock.columns) == list(StockCols.ALL)
    assert detect_format(tmp_path / "shop") == "own"


@pytest.mark.parametrize("fmt", ["parquet", "csv"])
def test_own_format_round_trip(synthetic: Path, tmp_path: Path, fmt: str) -> None:
    first = load_dataset(synthetic)
    assert len(first.stock) > 0 and len(first.customers) == 300
    write_dataset(first, tmp_path / "copy", fmt)
    assert (tmp_path / "copy" / f"interactions.{fmt}").is_file()
    second = load_dataset(tmp_path / "copy")
    assert_same(first, second)
    write_dataset(second, tmp_path / "copy2", fmt)
    assert_same(second, load_dataset(tmp_path / "copy2"))


def test_csv_round_trip_keeps_sub_second_timestamps_and_odd_text(tmp_path: Path) -> None:
    rows = changed(INTERACTION_ROWS, 0, timestamp="2026-01-05T10:00:00.123456Z")
    items = changed(ITEM_ROWS, 1, name='Jeans, "the" classic')
    first = load_dataset(own_csv(tmp_path / "a", items, rows))
    write_dataset(first, tmp_path / "b", "csv")
    assert_same(first, load_dataset(tmp_path / "b"))
    assert first.items[ItemCols.NAME].iloc[1] == 'Jeans, "the" classic'


def test_write_rejects_unknown_format(synthetic: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="fmt"):
        write_dataset(load_dataset(synthetic), tmp_path, "xlsx")


# --------------------------------------------------------------------------------------------
# Bad input: the error names the file, the row (header = row 1 in CSV) and the column
# --------------------------------------------------------------------------------------------


def test_missing_required_column(tmp_path: Path) -> None:
    folder = own_csv(tmp_path)
    write_csv(folder / "items.csv", ITEM_ROWS, ["item_id", "name", "category"])
    with pytest.raises(DataFormatError, match="missing required column") as exc:
        load_dataset(folder)
    assert_error(exc, "items.csv", None, "price")


def test_empty_required_value(tmp_path: Path) -> None:
    folder = own_csv(tmp_path, interactions=changed(INTERACTION_ROWS, 2, customer_id="  "))
    with pytest.raises(DataFormatError, match="empty") as exc:
        load_dataset(folder)
    assert_error(exc, "interactions.csv", 4, "customer_id")


@pytest.mark.parametrize("value", ["yesterday", "2026-13-01T00:00:00", "2026-01-05T25:00"])
def test_unparseable_timestamp(tmp_path: Path, value: str) -> None:
    folder = own_csv(tmp_path, interactions=changed(INTERACTION_ROWS, 1, timestamp=value))
    with pytest.raises(DataFormatError, match="ISO-8601") as exc:
        load_dataset(folder)
    assert_error(exc, "interactions.csv", 3, "timestamp")
    assert value in str(exc.value)


def test_unknown_interaction_type(tmp_path: Path) -> None:
    folder = own_csv(tmp_path, interactions=changed(INTERACTION_ROWS, 3, type="like"))
    with pytest.raises(DataFormatError, match="unknown type 'like'") as exc:
        load_dataset(folder)
    assert_error(exc, "interactions.csv", 5, "type")


def test_enum_values_are_case_insensitive(tmp_path: Path) -> None:
    folder = own_csv(tmp_path, interactions=changed(INTERACTION_ROWS, 3, type=" Purchase"))
    assert load_dataset(folder).interactions[InteractionCols.TYPE].iloc[3] == "purchase"


def test_unknown_category(tmp_path: Path) -> None:
    folder = own_csv(tmp_path, items=changed(ITEM_ROWS, 1, category="hat"))
    with pytest.raises(DataFormatError, match="unknown category 'hat'") as exc:
        load_dataset(folder)
    assert_error(exc, "items.csv", 3, "category")


def test_unknown_season(tmp_path: Path) -> None:
    folder = own_csv(tmp_path, items=changed(ITEM_ROWS, 2, seasons="summer|monsoon"))
    with pytest.raises(DataFormatError, match="monsoon") as exc:
        load_dataset(folder)
    assert_error(exc, "items.csv", 4, "seasons")


def test_negative_price(tmp_path: Path) -> None:
    folder = own_csv(tmp_path, items=changed(ITEM_ROWS, 2, price="-5"))
    with pytest.raises(DataFormatError, match="negative") as exc:
        load_dataset(folder)
    assert_error(exc, "items.csv", 4, "price")


@pytest.mark.parametrize("value", ["abc", "12,99", "nan"])
def test_non_numeric_price(tmp_path: Path, value: str) -> None:
    folder = own_csv(tmp_path, interactions=changed(INTERACTION_ROWS, 1, price=value))
    with pytest.raises(DataFormatError, match="not a number") as exc:
        load_dataset(folder)
    assert_error(exc, "interactions.csv", 3, "price")


def test_duplicate_item_id(tmp_path: Path) -> None:
    folder = own_csv(tmp_path, items=changed(ITEM_ROWS, 2, item_id="I1"))
    with pytest.raises(DataFormatError, match=r"duplicate item_id 'I1' \(first in row 2\)") as exc:
        load_dataset(folder)
    assert_error(exc, "items.csv", 4, "item_id")


def test_bad_boolean(tmp_path: Path) -> None:
    folder = own_csv(tmp_path)
    write_csv(
        folder / "customers.csv",
        [
            {"customer_id": "C1", "consent_personalization": "true"},
            {"customer_id": "C2", "consent_personalization": "maybe"},
        ],
    )
    with pytest.raises(DataFormatError, match="not a boolean") as exc:
        load_dataset(folder)
    assert_error(exc, "customers.csv", 3, "consent_personalization")


def test_corrupt_parquet(tmp_path: Path) -> None:
    folder = own_csv(tmp_path)
    (folder / "items.csv").unlink()
    (folder / "items.parquet").write_bytes(b"PAR1 this is not really parquet PAR1")
    with pytest.raises(DataFormatError, match="not a readable Parquet file") as exc:
        load_dataset(folder)
    assert_error(exc, "items.parquet", None, None)


def test_empty_file(tmp_path: Path) -> None:
    folder = own_csv(tmp_path)
    (folder / "interactions.csv").write_bytes(b"")
    with pytest.raises(DataFormatError, match="empty") as exc:
        load_dataset(folder)
    assert_error(exc, "interactions.csv", None, None)


def test_header_without_rows(tmp_path: Path) -> None:
    folder = own_csv(tmp_path)
    (folder / "items.csv").write_text("item_id,name,category,price\n")
    with pytest.raises(DataFormatError, match="no data rows") as exc:
        load_dataset(folder)
    assert_error(exc, "items.csv", None, None)
    # no interactions yet is allowed (a catalog before its first sale)
    folder = own_csv(tmp_path / "new")
    (folder / "interactions.csv").write_text("customer_id,item_id,type,timestamp\n")
    ds = load_dataset(folder)
    assert len(ds.interactions) == 0
    assert list(ds.interactions.columns) == list(InteractionCols.ALL)
    assert str(ds.interactions[InteractionCols.TIMESTAMP].dtype) == "datetime64[ns, UTC]"


def test_record_with_wrong_number_of_fields(tmp_path: Path) -> None:
    folder = own_csv(tmp_path)
    with (folder / "interactions.csv").open("a") as handle:
        handle.write("C3,I1,view,2026-01-08T00:00:00Z,online,,,surplus\n")
    with pytest.raises(DataFormatError, match="8 fields where the header has 7") as exc:
        load_dataset(folder)
    assert_error(exc, "interactions.csv", 6, None)


def test_parquet_rows_count_from_one(tmp_path: Path) -> None:
    folder = own_csv(tmp_path)
    frame = pd.read_csv(folder / "interactions.csv", dtype=str, keep_default_na=False)
    frame["price"] = [None, 39.99, -1.0, 79.5]
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), folder / "x.parquet")
    (folder / "interactions.csv").unlink()
    (folder / "x.parquet").rename(folder / "interactions.parquet")
    with pytest.raises(DataFormatError, match="negative") as exc:
        load_dataset(folder)
    assert_error(exc, "interactions.parquet", 3, "price")


def test_orphans_raise_by_default(tmp_path: Path) -> None:
    folder = own_csv(tmp_path, interactions=changed(INTERACTION_ROWS, 2, item_id="I404"))
    with pytest.raises(DataFormatError, match="'I404' is not in the items table") as exc:
        load_dataset(folder)
    assert_error(exc, "interactions.csv", 4, "item_id")


def test_orphans_can_be_dropped_and_are_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    rows = changed(changed(INTERACTION_ROWS, 2, item_id="I404"), 0, item_id="I405")
    folder = own_csv(tmp_path, interactions=rows)
    with caplog.at_level(logging.WARNING, logger="lookbook.data"):
        ds = load_dataset(folder, on_orphans="drop")
    assert len(ds.interactions) == 2
    assert ds.interactions[InteractionCols.ITEM_ID].tolist() == ["I1", "I3"]
    assert ds.interactions[InteractionCols.CUSTOMER_ID].tolist() == ["C1", "C2"]
    messages = [r.getMessage() for r in caplog.records if r.name == "lookbook.data"]
    assert any("dropped 2 of 4 interactions" in m for m in messages), messages


def test_bad_arguments(tmp_path: Path) -> None:
    folder = own_csv(tmp_path)
    with pytest.raises(ValueError, match="on_orphans"):
        load_dataset(folder, on_orphans="ignore")
    with pytest.raises(ValueError, match="format"):
        load_dataset(folder, format="excel")


def test_unrecognised_folder(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(DataFormatError, match="unrecognised data folder"):
        load_dataset(tmp_path)
    with pytest.raises(DataFormatError, match="not found"):
        load_dataset(tmp_path / "missing")


# --------------------------------------------------------------------------------------------
# H&M layouts, hand-made (no shared data needed)
# --------------------------------------------------------------------------------------------

KAGGLE_ARTICLES = [
    {"": "0", "article_id": "0108775015", "prod_name": "Strap top", "product_type_name": "Vest top",
     "product_group_name": "Garment Upper body", "graphical_appearance_name": "Solid",
     "colour_group_name": "Black", "garment_group_name": "Jersey Basic", "detail_desc": "A top."},
    {"": "1", "article_id": "0200000001", "prod_name": "Parka", "product_type_name": "Jacket",
     "product_group_name": "Garment Upper body", "graphical_appearance_name": "Solid",
     "colour_group_name": "Khaki green", "garment_group_name": "Outdoor", "detail_desc": ""},
    {"": "2", "article_id": "0300000001", "prod_name": "Cap", "product_type_name": "Unknown",
     "product_group_name": "Accessories", "graphical_appearance_name": "Solid",
     "colour_group_name": "Blue", "garment_group_name": "Accessories", "detail_desc": "Cap."},
]  # fmt: skip
KAGGLE_TRANSACTIONS = [
    {"t_dat": "2018-09-20", "customer_id": "aa", "article_id": "0108775015", "price": "0.05",
     "sales_channel_id": "2"},
    {"t_dat": "2018-09-20", "customer_id": "aa", "article_id": "0108775015", "price": "0.05",
     "sales_channel_id": "2"},
    {"t_dat": "2018-09-21", "customer_id": "bb", "article_id": "200000001", "price": "0.20",
     "sales_channel_id": "1"},
]  # fmt: skip


def kaggle_folder(
    folder: Path, transactions: Sequence[dict[str, str]] = KAGGLE_TRANSACTIONS
) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    write_csv(folder / "articles.csv", KAGGLE_ARTICLES)
    write_csv(folder / "transactions_train.csv", transactions)
    write_csv(
        folder / "customers.csv",
        [{"customer_id": "aa", "age": "23.0"}, {"customer_id": "cc", "age": ""}],
    )
    return folder


def test_hand_made_kaggle_layout(tmp_path: Path) -> None:
    folder = kaggle_folder(tmp_path / "kaggle")
    assert detect_format(folder) == "hm_kaggle"
    ds = load_dataset(folder)
    items = ds.items.set_index(ItemCols.ID)
    assert list(items.index) == ["108775015", "200000001", "300000001"]  # no leading zeros
    assert items[ItemCols.CATEGORY].tolist() == ["top", "outerwear", "accessory"]
    assert items.loc["300000001", ItemCols.PRODUCT_TYPE] == "Accessories"  # Unknown → garment
    assert items.loc["108775015", ItemCols.PRICE] == 0.05
    assert items.loc["300000001", ItemCols.PRICE] > 0  # unsold: a category/overall median
    inter = ds.interactions
    assert len(inter) == 3  # the duplicate row is a genuine second unit
    assert inter[InteractionCols.TYPE].eq(InteractionType.PURCHASE.value).all()
    assert inter[InteractionCols.CHANNEL].tolist() == ["online", "online", "store"]
    assert inter[InteractionCols.STORE_ID].tolist()[:2] == ["online", "online"]
    assert pd.isna(inter[InteractionCols.STORE_ID].iloc[2])
    assert inter[InteractionCols.TIMESTAMP].iloc[2] == pd.Timestamp("2018-09-21", tz="UTC")
    assert ds.customers[CustomerCols.AGE_BAND].tolist()[0] == "18-24"
    assert pd.isna(ds.customers[CustomerCols.AGE_BAND].iloc[1])
    assert ds.customers[CustomerCols.CONSENT_PERSONALIZATION].all()


def test_kaggle_bad_date_names_the_transactions_file(tmp_path: Path) -> None:
    rows = changed(KAGGLE_TRANSACTIONS, 1, t_dat="20/09/2018")
    with pytest.raises(DataFormatError, match="20/09/2018") as exc:
        load_dataset(kaggle_folder(tmp_path, rows))
    assert_error(exc, "transactions_train.csv", 3, "t_dat")


def test_kaggle_unknown_channel_and_orphan_article(tmp_path: Path) -> None:
    rows = changed(KAGGLE_TRANSACTIONS, 0, sales_channel_id="7")
    with pytest.raises(DataFormatError, match="sales channel '7'") as exc:
        load_dataset(kaggle_folder(tmp_path / "a", rows))
    assert_error(exc, "transactions_train.csv", 2, "sales_channel_id")
    rows = changed(KAGGLE_TRANSACTIONS, 2, article_id="999")
    with pytest.raises(DataFormatError, match="'999' is not in the items table") as exc:
        load_dataset(kaggle_folder(tmp_path / "b", rows))
    assert_error(exc, "transactions_train.csv", 4, "article_id")


def test_neo4j_article_without_product(tmp_path: Path) -> None:
    folder = tmp_path / "neo"
    folder.mkdir()
    write_csv(
        folder / "articles.csv",
        [
            {"articleId": "1001", "productCode": "1", "prodName": "Top"},
            {"articleId": "2001", "productCode": "2", "prodName": "Skirt"},
        ],
    )
    write_csv(
        folder / "products.csv",
        [{"productCode": "1", "productTypeName": "Top", "productGroupName": "Garment Upper body"}],
    )
    write_csv(
        folder / "order-details.csv",
        [{"tDat": "2019-01-01", "customerId": "x", "articleId": "1001", "price": "0.1"}],
    )
    with pytest.raises(DataFormatError, match="product code '2'") as exc:
        load_dataset(folder)
    assert_error(exc, "articles.csv", 3, "productCode")


# --------------------------------------------------------------------------------------------
# The real H&M data in ../shared/data (skips cleanly when absent)
# --------------------------------------------------------------------------------------------


@pytest.mark.realdata
def test_hm_kaggle_first_rows() -> None:
    ds = load_dataset(shared_dataset("hm_kaggle_first_rows"))
    assert ds.source.startswith("hm_kaggle")
    assert len(ds.items) == 4_903
    assert len(ds.interactions) == 10_000
    assert len(ds.customers) == 10_000
    inter = ds.interactions
    assert inter[InteractionCols.CUSTOMER_ID].nunique() == 2_954
    assert inter[InteractionCols.CHANNEL].value_counts().to_dict() == {
        "online": 7_313,
        "store": 2_687,
    }
    assert (inter[InteractionCols.TIMESTAMP] == pd.Timestamp("2018-09-20", tz="UTC")).all()
    assert inter.groupby(InteractionCols.CUSTOMER_ID, observed=True).size().max() == 39
    items = ds.items
    assert items[ItemCols.ID].str.fullmatch(r"[1-9]\d+").all()
    assert set(items[ItemCols.CATEGORY]) <= {c.value for c in Category}
    assert {"top", "bottom", "dress", "outerwear", "shoes", "accessory"} <= set(
        items[ItemCols.CATEGORY]
    )
    assert set(items[ItemCols.PRICE_BAND]) == set(PRICE_BANDS)
    assert items[ItemCols.DESCRIPTION].isna().sum() == 57


@pytest.mark.realdata
def test_hm_neo4j_customer_sample() -> None:
    folder = shared_dataset("hm_neo4j_customer_sample")
    assert detect_format(folder) == "hm_neo4j"
    ds = load_dataset(folder)
    inter = ds.interactions
    assert len(inter) == 23_199
    assert len(ds.customers) == 1_000
    assert len(ds.items) == 13_351
    assert inter[InteractionCols.CUSTOMER_ID].nunique() == 1_000
    assert inter[InteractionCols.ITEM_ID].nunique() == 13_351
    assert inter[InteractionCols.CHANNEL].value_counts().to_dict() == {
        "online": 16_187,
        "store": 7_012,
    }
    ts = inter[InteractionCols.TIMESTAMP]
    assert ts.min() == pd.Timestamp("2018-09-20", tz="UTC")
    assert ts.max() == pd.Timestamp("2020-09-22", tz="UTC")
    key = [InteractionCols.CUSTOMER_ID, InteractionCols.TIMESTAMP, InteractionCols.ITEM_ID]
    assert inter.duplicated(key).sum() == 2_160  # multi-unit purchases are kept
    categories = ds.items[ItemCols.CATEGORY].value_counts()
    assert categories["outerwear"] > 200 and categories["swimwear"] > 100
    # the optional product code: 8,044 products for 13,351 articles (products.csv)
    codes = ds.items.set_index(ItemCols.ID)[ItemCols.PRODUCT_CODE]
    assert codes.notna().all() and codes.nunique() == 8_044
    assert codes["108775015"] == codes["108775044"] == "108775"
    assert ds.customers[CustomerCols.AGE_BAND].notna().sum() == 988


@pytest.mark.realdata
def test_hm_variants_give_the_same_ids() -> None:
    """``txId`` in the Neo4j sample is the Kaggle row: both loaders must agree on its ids."""
    neo_folder = shared_dataset("hm_neo4j_customer_sample")
    kaggle = load_dataset(shared_dataset("hm_kaggle_first_rows")).interactions
    neo = load_dataset(neo_folder).interactions
    raw = pd.read_csv(neo_folder / "order-details.csv", usecols=["txId"])
    shared = raw.index[raw["txId"] < len(kaggle)].to_numpy()
    assert len(shared) == 16
    tx = raw.loc[shared, "txId"].to_numpy()
    for col in (InteractionCols.CUSTOMER_ID, InteractionCols.ITEM_ID):
        assert (
            neo[col].iloc[shared].astype(str).tolist() == kaggle[col].iloc[tx].astype(str).tolist()
        )


@pytest.mark.realdata
def test_hm_ragrec_sample() -> None:
    folder = shared_dataset("hm_ragrec_sample")
    assert detect_format(folder) == "hm_ragrec"
    ds = load_dataset(folder)
    assert len(ds.items) == 1_000
    assert len(ds.interactions) == 5_000
    assert len(ds.customers) == 4_946
    assert ds.interactions[InteractionCols.ITEM_ID].nunique() == 606
    assert ds.interactions[InteractionCols.CHANNEL].isna().all()  # no sales_channel_id
    assert ds.items[ItemCols.PRICE].notna().all()  # unsold articles get a typical price


@pytest.mark.realdata
@pytest.mark.parametrize("fmt", ["parquet", "csv"])
def test_hm_round_trips_through_the_own_format(tmp_path: Path, fmt: str) -> None:
    first = load_dataset(shared_dataset("hm_neo4j_customer_sample"))
    write_dataset(first, tmp_path, fmt)
    assert_same(first, load_dataset(tmp_path))


@pytest.mark.parametrize("fmt", ["parquet", "csv"])
def test_optional_product_code_round_trips(tmp_path: Path, fmt: str) -> None:
    first = load_dataset(own_csv(tmp_path / "shop"))
    items = first.items.copy()
    items[ItemCols.PRODUCT_CODE] = pd.Series(["P1", None, "P1"], dtype="str")
    with_code = replace(first, items=items)
    write_dataset(with_code, tmp_path / "out", fmt)
    again = load_dataset(tmp_path / "out")
    assert list(again.items.columns) == [*ItemCols.ALL, ItemCols.PRODUCT_CODE]
    assert again.items[ItemCols.PRODUCT_CODE].tolist()[0] == "P1"
    assert pd.isna(again.items[ItemCols.PRODUCT_CODE].tolist()[1])
    assert_same(with_code, again)
    # without the column nothing is written or read back
    write_dataset(first, tmp_path / "plain", fmt)
    assert ItemCols.PRODUCT_CODE not in load_dataset(tmp_path / "plain").items.columns


def test_hm_item_price_is_the_last_price_paid_and_events_keep_their_own(tmp_path: Path) -> None:
    """No whole-history summary in the catalog's price (issue 13's look-ahead): the item's price
    is the one last paid, each event keeps the price it was bought at."""
    later = [
        {"t_dat": "2019-01-05", "customer_id": "cc", "article_id": "0108775015", "price": "0.02",
         "sales_channel_id": "2"},
        {"t_dat": "2018-12-01", "customer_id": "bb", "article_id": "0108775015", "price": "0.09",
         "sales_channel_id": "1"},
    ]  # fmt: skip
    ds = load_dataset(kaggle_folder(tmp_path / "k", [*KAGGLE_TRANSACTIONS, *later]))
    items = ds.items.set_index(ItemCols.ID)
    assert items.loc["108775015", ItemCols.PRICE] == 0.02  # the latest sale, not the median 0.05
    paid = ds.interactions[ds.interactions[InteractionCols.ITEM_ID] == "108775015"]
    assert sorted(paid[InteractionCols.PRICE].tolist()) == [0.02, 0.05, 0.05, 0.09]
