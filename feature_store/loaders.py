"""Loaders: the project's own format (Parquet or CSV) and adapters for the H&M datasets.

:func:`load_dataset` reads a folder and returns a :class:`~feature_store.dataset.Dataset`;
:func:`write_dataset` writes one in the own format, so that ``load → write → load`` gives identical
tables. The own format is documented in ``docs/data-format.md``.

Layouts recognised by ``format="auto"`` (:func:`detect_format`):

``own``        ``items.(parquet|csv)`` + ``interactions.(parquet|csv)``, optional ``customers.*`` and
               ``stock.*`` (Parquet is preferred when both exist).
``hm_kaggle``  Kaggle "H&M Personalized Fashion Recommendations": ``articles.csv`` +
               ``transactions_train.csv`` [+ ``customers.csv``].
``hm_neo4j``   the camelCase Neo4j sample: ``articles.csv`` + ``products.csv`` (joined on
               ``productCode``) + ``order-details.csv`` [+ ``customers.csv``].
``hm_ragrec``  the Parquet sample: ``articles_sample.parquet`` + ``transactions_sample.parquet``
               [+ ``customers_sample.parquet``].

Everything is read with pyarrow and validated with vectorised compute kernels. A bad file raises
:class:`~feature_store.errors.DataFormatError` naming the file, the row and the column. Rows count
as in the file: in CSV the header is row 1 and the first data row is row 2 (the record number; it is
the line number unless a quoted value spans lines); in Parquet the first record is row 1.

The tables come back in the form :class:`~feature_store.dataset.Dataset` documents, with every
column of :mod:`.schema` present (optional ones absent from the file are null):

* ids and text are pandas ``str`` (Arrow-backed); ``interactions.customer_id`` and
  ``interactions.item_id`` are ``category``: ``item_id``'s categories are exactly ``items.item_id``
  in catalog order (so a code is the item's row in ``items``), ``customer_id``'s are the customer
  ids that occur, sorted;
* ``interactions.timestamp`` is ``datetime64[ns, UTC]``; ``launch_date`` / ``signup_date`` are
  ``datetime64[ns]`` (midnight, no time zone);
* prices are ``float64``, ``stock.quantity`` ``int64``, ``interactions.position`` ``Int64``,
  ``consent_personalization`` ``boolean``; list columns hold Python lists of strings (never null);
* rows keep the order of the file.
"""

from __future__ import annotations

import csv
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final, NoReturn

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from .dataset import Dataset
from .errors import DataFormatError
from .schema import (
    ONLINE_STORE,
    PRICE_BANDS,
    SEASONS,
    Category,
    Channel,
    CustomerCols,
    InteractionCols,
    InteractionType,
    ItemCols,
    ReturnReason,
    StockCols,
)

logger = logging.getLogger("lookbook.data")

FORMATS: Final = ("own", "hm_kaggle", "hm_neo4j", "hm_ragrec")
ORPHAN_POLICIES: Final = ("error", "drop")
WRITE_FORMATS: Final = ("parquet", "csv")
LIST_SEPARATOR: Final = "|"
AGE_BANDS: Final = ("under 18", "18-24", "25-34", "35-44", "45-54", "55-64", "65+")
_AGE_EDGES: Final = (18, 25, 35, 45, 55, 65)

_NUMBER_RE: Final = r"^[-+]?(\d+(\.\d*)?|\.\d+)([eE][-+]?\d+)?$"
_INTEGER_RE: Final = r"^[-+]?\d+(\.0*)?$"
_ZONE_RE: Final = r"([Zz]|[+-]\d{2}(:?\d{2})?)$"
_TRUE: Final = ("true", "t", "yes", "y", "1")
_FALSE: Final = ("false", "f", "no", "n", "0")
# Inside the range of pandas' datetime64[ns] (1677-09-21 .. 2262-04-11), with a day to spare.
_TS_MIN: Final = datetime(1677, 9, 23, tzinfo=UTC)
_TS_MAX: Final = datetime(2262, 4, 10, tzinfo=UTC)


# --------------------------------------------------------------------------------------------
# Column specifications of the own format
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Col:
    """How one column is validated and converted."""

    name: str
    kind: str  # id | text | enum | list | float | int | bool | date | timestamp
    required: bool = False
    values: tuple[str, ...] = ()  # allowed values of an enum, or of a list's elements
    minimum: float | None = None


_ITEM_SPEC: Final = (
    _Col(ItemCols.ID, "id", required=True),
    _Col(ItemCols.NAME, "text", required=True),
    _Col(ItemCols.CATEGORY, "enum", required=True, values=tuple(c.value for c in Category)),
    _Col(ItemCols.PRODUCT_TYPE, "text"),
    _Col(ItemCols.STYLES, "list"),
    _Col(ItemCols.COLOUR, "text"),
    _Col(ItemCols.MATERIAL, "text"),
    _Col(ItemCols.PATTERN, "text"),
    _Col(ItemCols.SEASONS, "list", values=SEASONS),
    _Col(ItemCols.PRICE, "float", required=True, minimum=0.0),
    _Col(ItemCols.PRICE_BAND, "enum", values=PRICE_BANDS),
    _Col(ItemCols.LAUNCH_DATE, "date"),
    _Col(ItemCols.SIZES, "list"),
    _Col(ItemCols.DESCRIPTION, "text"),
)
_STOCK_SPEC: Final = (
    _Col(StockCols.ITEM_ID, "id", required=True),
    _Col(StockCols.STORE_ID, "id", required=True),
    _Col(StockCols.SIZE, "id", required=True),
    _Col(StockCols.QUANTITY, "int", required=True, minimum=0),
)
_CUSTOMER_SPEC: Final = (
    _Col(CustomerCols.ID, "id", required=True),
    _Col(CustomerCols.AGE_BAND, "text"),
    _Col(CustomerCols.CONSENT_PERSONALIZATION, "bool"),
    _Col(CustomerCols.SIGNUP_DATE, "date"),
)
_INTERACTION_SPEC: Final = (
    _Col(InteractionCols.CUSTOMER_ID, "id", required=True),
    _Col(InteractionCols.ITEM_ID, "id", required=True),
    _Col(
        InteractionCols.TYPE, "enum", required=True, values=tuple(t.value for t in InteractionType)
    ),
    _Col(InteractionCols.TIMESTAMP, "timestamp", required=True),
    _Col(InteractionCols.CHANNEL, "enum", values=tuple(c.value for c in Channel)),
    _Col(InteractionCols.SIZE, "text"),
    _Col(InteractionCols.PRICE, "float", minimum=0.0),
    _Col(InteractionCols.STORE_ID, "text"),
    _Col(InteractionCols.RETURN_REASON, "enum", values=tuple(r.value for r in ReturnReason)),
    _Col(InteractionCols.RECOMMENDATION_ID, "text"),
    _Col(InteractionCols.POSITION, "int", minimum=0),
)
#: Optional item columns: in the frame (and written back) only when the source has them.
_ITEM_OPTIONAL_SPEC: Final = (_Col(ItemCols.PRODUCT_CODE, "text"),)
_OPTIONAL_SPECS: Final[dict[str, tuple[_Col, ...]]] = {"items": _ITEM_OPTIONAL_SPEC}
_SPECS: Final = {
    "items": _ITEM_SPEC,
    "stock": _STOCK_SPEC,
    "customers": _CUSTOMER_SPEC,
    "interactions": _INTERACTION_SPEC,
}


# --------------------------------------------------------------------------------------------
# Reading files
# --------------------------------------------------------------------------------------------


@dataclass
class _Source:
    """One file's raw columns and how to name its rows in errors.

    A CSV file is parsed whole into ``table``; a Parquet file is read one column at a time (and
    each column released once converted), which keeps the peak memory of big files low.
    """

    path: Path
    row_base: int  # row number of the first record: 2 for CSV (header is row 1), 1 for Parquet
    table: pa.Table | None = None
    parquet: pq.ParquetFile | None = None
    present: tuple[str, ...] = ()  # Parquet: the wanted columns the file has
    n: int = field(init=False)
    _cache: dict[str, pa.ChunkedArray] = field(init=False, default_factory=dict)

    def __post_init__(self) -> None:
        if self.table is not None:
            self.n = int(self.table.num_rows)
        else:
            assert self.parquet is not None
            self.n = int(self.parquet.metadata.num_rows)

    def has(self, column: str) -> bool:
        if self.table is not None:
            return column in self.table.column_names
        return column in self.present

    def column(self, column: str) -> pa.ChunkedArray:
        if self.table is not None:
            return self.table.column(column)
        if column not in self._cache:
            assert self.parquet is not None
            try:
                read = self.parquet.read(columns=[column], use_threads=True)
            except (pa.ArrowException, OSError, ValueError) as exc:
                self.fail(f"cannot be read ({str(exc).splitlines()[0]})", column=column)
            self._cache[column] = read.column(0)
        return self._cache[column]

    def release(self, column: str) -> None:
        """Forget a raw column once it has been converted."""
        if self.table is not None and column in self.table.column_names:
            self.table = self.table.drop_columns([column])
        self._cache.pop(column, None)

    def fail(self, message: str, column: str | None = None, index: int | None = None) -> NoReturn:
        row = None if index is None else self.row_base + index
        raise DataFormatError(message, file=str(self.path), row=row, column=column)


def _fail(path: Path, message: str, column: str | None = None) -> NoReturn:
    raise DataFormatError(message, file=str(path), column=column)


def _csv_header(path: Path) -> list[str]:
    try:
        with path.open(encoding="utf-8-sig", newline="") as handle:
            first = next(csv.reader(handle), None)
    except UnicodeDecodeError:
        _fail(path, "is not UTF-8 text")
    except (OSError, csv.Error) as exc:
        _fail(path, f"cannot be read ({exc})")
    if first is None or not any(name.strip() for name in first):
        _fail(path, "file is empty (no header row)")
    return [name.strip() for name in first]


def _csv_bad_record(path: Path, n_fields: int) -> tuple[int, int] | None:
    """(row, field count) of the first record whose field count differs from the header's."""
    with path.open(encoding="utf-8-sig", newline="") as handle:
        for number, record in enumerate(csv.reader(handle), start=1):
            if record and len(record) != n_fields:
                return number, len(record)
    return None


def _read_csv(path: Path, wanted: Sequence[str], dictionary: Iterable[str]) -> _Source:
    header = _csv_header(path)
    duplicates = sorted({h for h in header if h and header.count(h) > 1})
    if duplicates:
        _fail(path, "column appears more than once in the header", column=duplicates[0])
    present = [c for c in wanted if c in header]
    names = [h or f"__unnamed_{i}" for i, h in enumerate(header)]  # e.g. Kaggle's index column
    dict_cols = set(dictionary)
    types = {
        c: pa.dictionary(pa.int32(), pa.string()) if c in dict_cols else pa.string()
        for c in present
    }
    try:
        table = pacsv.read_csv(
            path,
            read_options=pacsv.ReadOptions(
                use_threads=True, block_size=1 << 24, column_names=names, skip_rows=1
            ),
            parse_options=pacsv.ParseOptions(newlines_in_values=True),
            convert_options=pacsv.ConvertOptions(
                column_types=types,
                include_columns=present,
                strings_can_be_null=False,
                quoted_strings_can_be_null=False,
            ),
        )
    except (pa.ArrowInvalid, pa.ArrowException) as exc:
        message = str(exc)
        if "UTF8" in message or "utf8" in message.lower():
            _fail(path, "is not valid UTF-8 text")
        try:
            bad = _csv_bad_record(path, len(header))
        except (UnicodeDecodeError, csv.Error):
            bad = None
        if bad is not None:
            raise DataFormatError(
                f"has {bad[1]} fields where the header has {len(header)}",
                file=str(path),
                row=bad[0],
            ) from None
        _fail(path, f"cannot be parsed as CSV ({message.splitlines()[0]})")
    except OSError as exc:
        _fail(path, f"cannot be read ({exc})")
    return _Source(path, row_base=2, table=table)


def _read_parquet(path: Path, wanted: Sequence[str], dictionary: Iterable[str]) -> _Source:
    try:
        schema = pq.read_schema(path)
        present = tuple(c for c in wanted if c in schema.names)
        read_dict = [
            c
            for c in dictionary
            if c in present
            and (
                pa.types.is_string(schema.field(c).type)
                or pa.types.is_large_string(schema.field(c).type)
            )
        ]
        handle = pq.ParquetFile(path, read_dictionary=read_dict or None)
    except (pa.ArrowException, OSError, ValueError) as exc:
        _fail(path, f"is not a readable Parquet file ({str(exc).splitlines()[0]})")
    return _Source(path, row_base=1, parquet=handle, present=present)


def _read(
    path: Path,
    wanted: Sequence[str],
    required: Sequence[str],
    *,
    dictionary: Iterable[str] = (),
    allow_empty: bool = True,
) -> _Source:
    if not path.is_file():
        _fail(path, "file not found")
    if path.stat().st_size == 0:
        _fail(path, "file is empty")
    if path.suffix.lower() == ".parquet":
        src = _read_parquet(path, wanted, dictionary)
    else:
        src = _read_csv(path, wanted, dictionary)
    for col in required:
        if not src.has(col):
            src.fail("missing required column", column=col)
    if not allow_empty and src.n == 0:
        src.fail("has no data rows")
    return src


# --------------------------------------------------------------------------------------------
# Vectorised column helpers
# --------------------------------------------------------------------------------------------


def _first(mask: pa.Array | pa.ChunkedArray) -> int | None:
    """Index of the first True (nulls count as False), or None."""
    found = pc.index(pc.fill_null(mask, False), True).as_py()
    return None if found is None or found < 0 else int(found)


def _dict(src: _Source, name: str) -> pa.DictionaryArray:
    """A column as one DictionaryArray of strings (values trimmed, blanks → null)."""
    col = src.column(name)
    typ = col.type
    if pa.types.is_dictionary(typ):
        arr = col.combine_chunks() if col.num_chunks != 1 else col.chunk(0)
        if not pa.types.is_string(typ.value_type):
            try:
                arr = pa.DictionaryArray.from_arrays(arr.indices, arr.dictionary.cast(pa.string()))
            except pa.ArrowException:
                src.fail(f"expected text, found {typ}", column=name)
    elif pa.types.is_string(typ) or pa.types.is_large_string(typ) or pa.types.is_integer(typ):
        arr = pc.dictionary_encode(col.cast(pa.string())).combine_chunks()
    elif pa.types.is_null(typ):
        arr = pa.DictionaryArray.from_arrays(
            pa.nulls(len(col), pa.int32()), pa.array([], pa.string())
        )
    else:
        src.fail(f"expected text, found {typ}", column=name)
    if isinstance(arr, pa.ChunkedArray):  # zero chunks
        arr = pa.DictionaryArray.from_arrays(pa.array([], pa.int32()), pa.array([], pa.string()))
    trimmed = pc.utf8_trim_whitespace(arr.dictionary)
    blank = pc.equal(trimmed, "")
    unchanged = pc.all(pc.equal(trimmed, arr.dictionary)).as_py() is not False
    if arr.dictionary.null_count == 0 and not pc.any(blank).as_py() and unchanged:
        return arr  # the common case: nothing to clean
    return _remap(arr, pc.if_else(blank, pa.scalar(None, pa.string()), trimmed))


def _remap(arr: pa.DictionaryArray, values: pa.Array) -> pa.DictionaryArray:
    """``arr`` with its dictionary replaced by ``values`` (same length; may repeat or be null)."""
    if values.null_count == 0 and len(pc.unique(values)) == len(values):
        return pa.DictionaryArray.from_arrays(arr.indices, values)
    encoded = pc.dictionary_encode(values)
    if isinstance(encoded, pa.ChunkedArray):
        encoded = encoded.combine_chunks()
    indices = pc.take(encoded.indices, arr.indices)
    return pa.DictionaryArray.from_arrays(indices, encoded.dictionary)


def _row_mask(arr: pa.DictionaryArray, value_mask: pa.Array) -> pa.Array:
    """Per-row mask from a mask over the dictionary values (null rows → False)."""
    return pc.fill_null(pc.take(value_mask, arr.indices), False)


def _decode(arr: pa.DictionaryArray) -> pa.Array:
    """The plain values of a dictionary column (``large_string``: what pandas ``str`` wraps)."""
    return pc.take(arr.dictionary.cast(pa.large_string()), arr.indices)


def _require(src: _Source, col: str, valid: pa.Array | pa.ChunkedArray) -> None:
    """Fail on the first row where ``valid`` is False or null."""
    bad = _first(pc.invert(pc.fill_null(valid, False)))
    if bad is not None:
        src.fail("required value is empty", column=col, index=bad)


def _parse_id(src: _Source, col: _Col) -> pa.DictionaryArray:
    arr = _dict(src, col.name)
    if col.required:
        _require(src, col.name, pc.is_valid(arr.indices))
    return arr


def _parse_enum(src: _Source, col: _Col) -> pa.DictionaryArray:
    arr = _dict(src, col.name)
    lowered = pc.utf8_lower(arr.dictionary)
    unknown = pc.invert(pc.is_in(lowered, value_set=pa.array(col.values, pa.string())))
    bad = _first(_row_mask(arr, unknown))
    if bad is not None:
        value = _decode(arr)[bad].as_py()
        src.fail(
            f"unknown {col.name} {value!r}; allowed: {', '.join(col.values)}",
            column=col.name,
            index=bad,
        )
    if col.required:
        _require(src, col.name, pc.is_valid(arr.indices))
    return _remap(arr, lowered)


def _parse_bool(src: _Source, col: _Col) -> pa.Array:
    raw = src.column(col.name)
    if pa.types.is_boolean(raw.type):
        out = raw.combine_chunks() if raw.num_chunks else pa.array([], pa.bool_())
    else:
        arr = _dict(src, col.name)
        lowered = pc.utf8_lower(arr.dictionary)
        truth = pc.is_in(lowered, value_set=pa.array(_TRUE))
        known = pc.or_(truth, pc.is_in(lowered, value_set=pa.array(_FALSE)))
        bad = _first(_row_mask(arr, pc.invert(known)))
        if bad is not None:
            value = _decode(arr)[bad].as_py()
            src.fail(f"{value!r} is not a boolean (true/false)", column=col.name, index=bad)
        out = pc.take(truth, arr.indices)
    if col.required:
        _require(src, col.name, pc.is_valid(out))
    return out


def _column_array(src: _Source, name: str) -> tuple[pa.Array, pa.DataType]:
    """Column ``name`` as one array and its type; dictionary-encoded text comes back decoded."""
    raw = src.column(name)
    if pa.types.is_dictionary(raw.type):
        return _decode(_dict(src, name)), pa.string()
    return (raw.combine_chunks() if raw.num_chunks else pa.array([], raw.type)), raw.type


def _parse_number(src: _Source, col: _Col, integer: bool) -> pa.Array:
    arr, typ = _column_array(src, col.name)
    if pa.types.is_string(typ) or pa.types.is_large_string(typ):
        text = pc.utf8_trim_whitespace(arr.cast(pa.string()))
        blank = pc.or_(pc.is_null(text), pc.equal(text, ""))
        pattern = _INTEGER_RE if integer else _NUMBER_RE
        bad = _first(pc.and_(pc.invert(blank), pc.invert(pc.match_substring_regex(text, pattern))))
        if bad is not None:
            kind = "an integer" if integer else "a number"
            src.fail(f"{text[bad].as_py()!r} is not {kind}", column=col.name, index=bad)
        values = pc.cast(pc.if_else(blank, pa.scalar(None, pa.string()), text), pa.float64())
    elif pa.types.is_integer(typ) or pa.types.is_floating(typ) or pa.types.is_decimal(typ):
        values = pc.cast(arr, pa.float64())
        values = pc.if_else(pc.is_nan(values), pa.scalar(None, pa.float64()), values)
    elif pa.types.is_null(typ):
        values = pa.nulls(len(arr), pa.float64())
    else:
        src.fail(f"expected numbers, found {typ}", column=col.name)
    if col.required:
        _require(src, col.name, pc.is_valid(values))
    bad = _first(pc.is_inf(values))
    if bad is not None:
        src.fail("value is not finite", column=col.name, index=bad)
    if col.minimum is not None:
        bad = _first(pc.less(values, col.minimum))
        if bad is not None:
            what = "negative" if col.minimum == 0 else f"below {col.minimum}"
            src.fail(f"{values[bad].as_py()!r} is {what}", column=col.name, index=bad)
    if integer:
        bad = _first(pc.not_equal(values, pc.floor(values)))
        if bad is not None:
            src.fail(f"{values[bad].as_py()!r} is not an integer", column=col.name, index=bad)
        return pc.cast(values, pa.int64())
    return values


def _parse_timestamp(src: _Source, col: _Col) -> pa.Array:
    """Timestamps as ``timestamp[ns, UTC]``; naive values are UTC."""
    arr, typ = _column_array(src, col.name)
    if pa.types.is_timestamp(typ):
        values = arr.cast(pa.timestamp(typ.unit, "UTC"))
    elif pa.types.is_date(typ):
        values = arr.cast(pa.timestamp("s")).cast(pa.timestamp("s", "UTC"))
    elif pa.types.is_string(typ) or pa.types.is_large_string(typ):
        values = _parse_timestamp_text(src, col.name, arr.cast(pa.string()))
    elif pa.types.is_null(typ):
        values = pa.nulls(len(arr), pa.timestamp("ns", "UTC"))
    else:
        src.fail(f"expected timestamps, found {typ}", column=col.name)
    if col.required:
        _require(src, col.name, pc.is_valid(values))
    out_of_range = pc.or_(
        pc.less(values, pa.scalar(_TS_MIN, values.type)),
        pc.greater(values, pa.scalar(_TS_MAX, values.type)),
    )
    bad = _first(out_of_range)
    if bad is not None:
        src.fail("timestamp is out of range (1677..2262)", column=col.name, index=bad)
    return values.cast(pa.timestamp("ns", "UTC"))


def _parse_timestamp_text(src: _Source, name: str, arr: pa.Array) -> pa.Array:
    text = pc.utf8_trim_whitespace(arr)
    blank = pc.or_(pc.is_null(text), pc.equal(text, ""))
    text = pc.if_else(blank, pa.scalar(None, pa.string()), text)
    zoned = pc.fill_null(pc.match_substring_regex(text, _ZONE_RE), False)
    none = pa.scalar(None, pa.string())
    try:
        aware = pc.cast(pc.if_else(zoned, text, none), pa.timestamp("us", "UTC"))
        naive = pc.cast(pc.if_else(zoned, none, text), pa.timestamp("us"))
        return pc.coalesce(aware, naive.cast(pa.timestamp("us", "UTC")))
    except pa.ArrowException:
        pass
    # Slow path, only for unusual but valid ISO-8601 spellings — or to find the bad row.
    series = pd.Series(text.to_pylist(), dtype=object)
    parsed = pd.to_datetime(series, format="ISO8601", utc=True, errors="coerce")
    bad = np.flatnonzero(series.notna().to_numpy() & parsed.isna().to_numpy())
    if len(bad):
        i = int(bad[0])
        src.fail(f"{series[i]!r} is not an ISO-8601 timestamp", column=name, index=i)
    return pa.array(parsed.dt.as_unit("us"), type=pa.timestamp("us", "UTC"))


def _parse_date(src: _Source, col: _Col) -> pa.Array:
    """Calendar dates as naive ``timestamp[ns]`` at midnight."""
    arr, typ = _column_array(src, col.name)
    if pa.types.is_date(typ):
        days = arr.cast(pa.date32())
    elif pa.types.is_timestamp(typ):
        days = (arr.cast(pa.timestamp(typ.unit, "UTC")) if typ.tz else arr).cast(pa.date32())
    elif pa.types.is_string(typ) or pa.types.is_large_string(typ):
        text = pc.utf8_trim_whitespace(arr.cast(pa.string()))
        blank = pc.or_(pc.is_null(text), pc.equal(text, ""))
        parsed = pc.strptime(text, format="%Y-%m-%d", unit="s", error_is_null=True)
        failed = pc.and_(pc.invert(blank), pc.is_null(parsed))
        if _first(failed) is not None:  # maybe full timestamps: take their UTC date
            as_ts = _parse_timestamp_text(src, col.name, text)
            parsed = pc.if_else(failed, as_ts.cast(pa.timestamp("s")), parsed)
        days = parsed.cast(pa.date32())
    elif pa.types.is_null(typ):
        days = pa.nulls(len(arr), pa.date32())
    else:
        src.fail(f"expected dates, found {typ}", column=col.name)
    if col.required:
        _require(src, col.name, pc.is_valid(days))
    lo, hi = pa.scalar(_TS_MIN.date()), pa.scalar(_TS_MAX.date())
    bad = _first(pc.or_(pc.less(days, lo), pc.greater(days, hi)))
    if bad is not None:
        src.fail("date is out of range (1677..2262)", column=col.name, index=bad)
    return days.cast(pa.timestamp("ns"))


def _parse_list(src: _Source, col: _Col) -> pa.Array:
    """A list<string> column without nulls or blank elements (CSV: ``|``-separated)."""
    raw = src.column(col.name)
    typ = raw.type
    n = src.n
    if pa.types.is_list(typ) or pa.types.is_large_list(typ):
        arr = raw.combine_chunks() if raw.num_chunks else pa.array([], typ)
        try:
            arr = arr.cast(pa.list_(pa.string()))
        except pa.ArrowException:
            src.fail(f"expected a list of text, found {typ}", column=col.name)
    elif pa.types.is_dictionary(typ) or pa.types.is_string(typ) or pa.types.is_large_string(typ):
        text = _decode(_dict(src, col.name))
        arr = pc.split_pattern(text, LIST_SEPARATOR)
    elif pa.types.is_null(typ):
        arr = pa.nulls(n, pa.list_(pa.string()))
    else:
        src.fail(f"expected a list of text, found {typ}", column=col.name)
    parents = pc.list_parent_indices(arr)
    elements = pc.utf8_trim_whitespace(pc.list_flatten(arr))
    keep = pc.fill_null(pc.not_equal(elements, ""), False)
    elements, parents = elements.filter(keep), parents.filter(keep)
    if col.values:
        elements = pc.utf8_lower(elements)
        bad = _first(pc.invert(pc.is_in(elements, value_set=pa.array(col.values))))
        if bad is not None:
            src.fail(
                f"unknown value {elements[bad].as_py()!r}; allowed: {', '.join(col.values)}",
                column=col.name,
                index=int(parents[bad].as_py()),
            )
    counts = np.bincount(parents.to_numpy(zero_copy_only=False), minlength=n)
    offsets = np.zeros(n + 1, dtype=np.int32)
    np.cumsum(counts, out=offsets[1:])
    return pa.ListArray.from_arrays(pa.array(offsets), elements)


def _parse_all(src: _Source, spec: Sequence[_Col]) -> dict[str, pa.Array]:
    """Every column of ``spec``, releasing each raw column once it is converted."""
    out: dict[str, pa.Array] = {}
    for col in spec:
        out[col.name] = _parse(src, col)
        src.release(col.name)
    return out


def _parse(src: _Source, col: _Col) -> pa.Array:
    """One column in its canonical Arrow form (absent columns → all null / empty lists)."""
    n = src.n
    if not src.has(col.name):
        if col.kind == "list":
            return pa.ListArray.from_arrays(
                pa.array(np.zeros(n + 1, np.int32)), pa.array([], pa.string())
            )
        return pa.nulls(n, _ARROW_TYPES[col.kind])
    if col.kind in ("id", "text"):
        return _parse_id(src, col)
    if col.kind == "enum":
        return _parse_enum(src, col)
    if col.kind == "bool":
        return _parse_bool(src, col)
    if col.kind in ("float", "int"):
        return _parse_number(src, col, integer=col.kind == "int")
    if col.kind == "date":
        return _parse_date(src, col)
    if col.kind == "timestamp":
        return _parse_timestamp(src, col)
    return _parse_list(src, col)


_ARROW_TYPES: Final[dict[str, pa.DataType]] = {
    "id": pa.string(),
    "text": pa.string(),
    "enum": pa.string(),
    "bool": pa.bool_(),
    "float": pa.float64(),
    "int": pa.int64(),
    "date": pa.timestamp("ns"),
    "timestamp": pa.timestamp("ns", "UTC"),
    "list": pa.list_(pa.string()),
}


def _first_duplicate(codes: np.ndarray[Any, Any]) -> tuple[int, int] | None:
    """(row index of the first repeated value, row index of its first occurrence)."""
    if len(codes) == 0:
        return None
    _, first, inverse = np.unique(codes, return_index=True, return_inverse=True)
    if len(first) == len(codes):
        return None
    repeated = np.flatnonzero(first[inverse] != np.arange(len(codes)))
    i = int(repeated[0])
    return i, int(first[inverse[i]])


def _check_unique(src: _Source, name: str, arr: pa.DictionaryArray, what: str) -> None:
    dup = _first_duplicate(arr.indices.to_numpy(zero_copy_only=False))
    if dup is not None:
        value = arr.dictionary[arr.indices[dup[0]].as_py()].as_py()
        src.fail(
            f"duplicate {what} {value!r} (first in row {src.row_base + dup[1]})",
            column=name,
            index=dup[0],
        )


# --------------------------------------------------------------------------------------------
# Arrow → pandas
# --------------------------------------------------------------------------------------------


def _pandas(arr: pa.Array, kind: str) -> Any:
    if isinstance(arr, pa.DictionaryArray):
        arr = _decode(arr)
    if kind == "list":
        return pd.Series(arr.to_pylist(), dtype=object)
    if kind == "bool":
        return pd.Series(arr.to_pandas(types_mapper={pa.bool_(): pd.BooleanDtype()}.get))
    if kind == "int":
        return pd.Series(arr.to_pandas(types_mapper={pa.int64(): pd.Int64Dtype()}.get))
    if kind in ("id", "text", "enum"):
        return pd.Series(arr.cast(pa.large_string()).to_pandas(), dtype="str")
    return pd.Series(arr.to_pandas())


def _sorted_categorical(arr: pa.DictionaryArray) -> pd.Categorical:
    """A categorical with the used values as categories, sorted."""
    codes = arr.indices.to_numpy(zero_copy_only=False).astype(np.int64)
    k = len(arr.dictionary)
    used = np.bincount(codes, minlength=k) > 0
    values = arr.dictionary.filter(pa.array(used))
    order = pc.sort_indices(values).to_numpy()
    rank = np.empty(k, dtype=np.int64)
    rank[np.flatnonzero(used)[order]] = np.arange(len(order))
    categories = pd.Index(values.take(pa.array(order)).to_pandas(), dtype="str")
    return pd.Categorical.from_codes(rank[codes] if len(codes) else codes, categories=categories)


def _item_categorical(positions: np.ndarray[Any, Any], items: pd.DataFrame) -> pd.Categorical:
    categories = pd.Index(items[ItemCols.ID], dtype="str")
    return pd.Categorical.from_codes(positions.astype(np.int64), categories=categories)


def _frame(arrays: dict[str, pa.Array], spec: Sequence[_Col], n: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for col in spec:
        arr = arrays.pop(col.name)  # release the Arrow form as soon as pandas has it
        if col.kind == "int" and col.required:
            out[col.name] = pd.Series(arr.to_numpy(zero_copy_only=False), dtype="int64")
        else:
            out[col.name] = _pandas(arr, col.kind)
        if len(out[col.name]) != n:  # pragma: no cover - internal invariant
            raise AssertionError(f"column {col.name} has {len(out[col.name])} rows, not {n}")
    return out


# --------------------------------------------------------------------------------------------
# Own format
# --------------------------------------------------------------------------------------------


def _own_file(folder: Path, table: str) -> Path | None:
    parquet, csv_ = folder / f"{table}.parquet", folder / f"{table}.csv"
    if parquet.is_file():
        if csv_.is_file():
            logger.warning(
                "%s: both %s and %s exist; reading the Parquet file",
                folder,
                parquet.name,
                csv_.name,
            )
        return parquet
    if csv_.is_file():
        return csv_
    return None


_DICT_COLUMNS: Final = {
    # Repetitive text columns, read straight into dictionaries (faster, smaller).
    "items": (ItemCols.CATEGORY, ItemCols.PRICE_BAND),
    "stock": (StockCols.ITEM_ID, StockCols.STORE_ID, StockCols.SIZE),
    "customers": (CustomerCols.AGE_BAND,),
    "interactions": (
        InteractionCols.CUSTOMER_ID,
        InteractionCols.ITEM_ID,
        InteractionCols.TYPE,
        InteractionCols.CHANNEL,
        InteractionCols.SIZE,
        InteractionCols.STORE_ID,
        InteractionCols.RETURN_REASON,
    ),
}


def _read_own(path: Path, table: str, *, required_file: bool) -> _Source | None:
    spec = _SPECS[table]
    file = _own_file(path, table)
    if file is None:
        if required_file:
            _fail(path / f"{table}.parquet", f"{table} table not found (neither .parquet nor .csv)")
        return None
    src = _read(
        file,
        [c.name for c in (*spec, *_OPTIONAL_SPECS.get(table, ()))],
        [c.name for c in spec if c.required],
        dictionary=_DICT_COLUMNS[table],
        allow_empty=table != "items",  # a catalog without items is no catalog
    )
    if src.n == 0 and table == "interactions":
        logger.warning("%s: no interactions (header only)", file)
    return src


def _fill_price_bands(items: pd.DataFrame) -> None:
    """Price bands from within-category price quartiles, where missing."""
    missing = items[ItemCols.PRICE_BAND].isna()
    if not missing.any():
        return
    groups = items.groupby(ItemCols.CATEGORY, sort=False)[ItemCols.PRICE]
    rank = groups.rank(method="average").to_numpy(dtype=np.float64)  # 1..n, ties share
    size = groups.transform("size").to_numpy(dtype=np.float64)
    band = np.clip(np.floor((rank - 0.5) / size * 4), 0, 3).astype(np.int64)  # mid-rank quartile
    bands = pd.Series(np.asarray(PRICE_BANDS, dtype=object)[band], index=items.index, dtype="str")
    items[ItemCols.PRICE_BAND] = items[ItemCols.PRICE_BAND].where(~missing, bands)


def _orphans(
    src: _Source,
    column: str,
    item_ids: pa.DictionaryArray,
    catalog: pa.Array,
    on_orphans: str,
    what: str,
) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any] | None]:
    """Row positions in the catalog of each item id, and the keep mask (None: keep all)."""
    lookup = pc.index_in(item_ids.dictionary, value_set=catalog)
    positions = pc.take(lookup, item_ids.indices)
    orphan = pc.is_null(positions)
    first = _first(orphan)
    if first is None:
        return positions.to_numpy(zero_copy_only=False).astype(np.int64), None
    if on_orphans == "error":
        value = item_ids.dictionary[item_ids.indices[first].as_py()].as_py()
        src.fail(
            f"item_id {value!r} is not in the items table ({what}; "
            "load with on_orphans='drop' to drop such rows)",
            column=column,
            index=first,
        )
    keep = pc.invert(orphan).to_numpy(zero_copy_only=False)
    dropped = int(len(keep) - keep.sum())
    logger.warning(
        "%s: dropped %d of %d %s whose item_id is not in the items table (first: row %d)",
        src.path,
        dropped,
        len(keep),
        what,
        src.row_base + first,
    )
    return positions.filter(pa.array(keep)).to_numpy(zero_copy_only=False).astype(np.int64), keep


def _filter(arrays: dict[str, pa.Array], keep: np.ndarray[Any, Any] | None) -> dict[str, pa.Array]:
    if keep is None:
        return arrays
    mask = pa.array(keep)
    return {name: arr.filter(mask) for name, arr in arrays.items()}


def _load_own(path: Path, on_orphans: str) -> Dataset:
    items_src = _read_own(path, "items", required_file=True)
    if _own_file(path, "interactions") is None:
        _read_own(path, "interactions", required_file=True)  # raises: not found
    assert items_src is not None
    item_arrays = _parse_all(items_src, _ITEM_SPEC)
    item_ids = item_arrays[ItemCols.ID]
    _check_unique(items_src, ItemCols.ID, item_ids, "item_id")
    catalog = _decode(item_ids)
    items = pd.DataFrame(_frame(item_arrays, _ITEM_SPEC, items_src.n))
    for col in _ITEM_OPTIONAL_SPEC:
        if items_src.has(col.name):
            items[col.name] = _pandas(_parse(items_src, col), col.kind)
            items_src.release(col.name)
    _fill_price_bands(items)

    inter_src = _read_own(path, "interactions", required_file=True)
    assert inter_src is not None
    inter_arrays = _parse_all(inter_src, _INTERACTION_SPEC)
    positions, keep = _orphans(
        inter_src,
        InteractionCols.ITEM_ID,
        inter_arrays[InteractionCols.ITEM_ID],
        catalog,
        on_orphans,
        "interactions",
    )
    inter_arrays = _filter(inter_arrays, keep)
    n_inter = len(positions)
    customer_ids = _sorted_categorical(inter_arrays.pop(InteractionCols.CUSTOMER_ID))
    del inter_arrays[InteractionCols.ITEM_ID]
    columns = _frame(
        inter_arrays, [c for c in _INTERACTION_SPEC if c.name not in _CATEGORICAL], n_inter
    )
    columns[InteractionCols.CUSTOMER_ID] = customer_ids
    columns[InteractionCols.ITEM_ID] = _item_categorical(positions, items)
    interactions = pd.DataFrame({c: columns[c] for c in InteractionCols.ALL})

    del inter_arrays
    customers_src = _read_own(path, "customers", required_file=False)
    if customers_src is not None:
        cust_arrays = _parse_all(customers_src, _CUSTOMER_SPEC)
        _check_unique(customers_src, CustomerCols.ID, cust_arrays[CustomerCols.ID], "customer_id")
        customers = pd.DataFrame(_frame(cust_arrays, _CUSTOMER_SPEC, customers_src.n))
    else:
        customers = _empty_frame(_CUSTOMER_SPEC)

    stock_src = _read_own(path, "stock", required_file=False)
    if stock_src is not None:
        stock_arrays = _parse_all(stock_src, _STOCK_SPEC)
        _, stock_keep = _orphans(
            stock_src,
            StockCols.ITEM_ID,
            stock_arrays[StockCols.ITEM_ID],
            catalog,
            on_orphans,
            "stock rows",
        )
        _check_stock_unique(stock_src, stock_arrays)
        stock_arrays = _filter(stock_arrays, stock_keep)
        n_stock = len(stock_arrays[StockCols.ITEM_ID])
        stock = pd.DataFrame(_frame(stock_arrays, _STOCK_SPEC, n_stock))
    else:
        stock = _empty_frame(_STOCK_SPEC)

    ds = Dataset(
        items=items,
        interactions=interactions,
        customers=customers,
        stock=stock,
        source=f"own:{path}",
    )
    _log_loaded(ds)
    return ds


_CATEGORICAL: Final = (InteractionCols.CUSTOMER_ID, InteractionCols.ITEM_ID)


def _check_stock_unique(src: _Source, arrays: dict[str, pa.Array]) -> None:
    keys = np.stack(
        [
            arrays[c].indices.to_numpy(zero_copy_only=False).astype(np.int64)
            for c in (StockCols.ITEM_ID, StockCols.STORE_ID, StockCols.SIZE)
        ],
        axis=1,
    )
    if len(keys) == 0:
        return
    dup = pd.DataFrame(keys).duplicated().to_numpy()
    first = _first(pa.array(dup))
    if first is not None:
        src.fail("duplicate (item_id, store_id, size) row", column=StockCols.SIZE, index=first)


def _empty_frame(spec: Sequence[_Col]) -> pd.DataFrame:
    arrays = {c.name: pa.nulls(0, _ARROW_TYPES[c.kind]) for c in spec}
    return pd.DataFrame(_frame(arrays, spec, 0))


def _log_loaded(ds: Dataset) -> None:
    logger.info(
        "loaded %s: %d items, %d interactions, %d customers, %d stock rows",
        ds.source,
        len(ds.items),
        len(ds.interactions),
        len(ds.customers),
        len(ds.stock),
    )


# --------------------------------------------------------------------------------------------
# H&M adapters
# --------------------------------------------------------------------------------------------

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
    items: pd.DataFrame, positions: np.ndarray[Any, Any], prices: np.ndarray[Any, Any]
) -> None:
    """Item price = median price paid; unsold items take their product type's (or category's,
    or the overall) median; price bands from within-category quartiles."""
    median = pd.Series(prices).groupby(positions).median()
    by_item = np.full(len(items), np.nan)
    by_item[median.index.to_numpy(dtype=np.int64)] = median.to_numpy(dtype=np.float64)
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
    _hm_prices(items, positions, price_np)
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


# --------------------------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------------------------


def detect_format(path: Path) -> str:
    """The layout of a data folder: one of :data:`FORMATS`; DataFormatError when none fits."""
    path = Path(path)
    if not path.is_dir():
        _fail(path, "is not a folder" if path.exists() else "folder not found")
    if _own_file(path, "items") and _own_file(path, "interactions"):
        return "own"
    for name, layout in _LAYOUTS.items():
        files = [layout.articles, layout.transactions]
        if layout.products is not None:
            files.append(layout.products)
        if all((path / f).is_file() for f in files):
            return name
    _fail(
        path,
        "unrecognised data folder: expected items + interactions (.parquet or .csv), "
        "H&M Kaggle (articles.csv + transactions_train.csv), H&M Neo4j (articles.csv + "
        "products.csv + order-details.csv) or H&M ragrec (articles_sample.parquet + "
        "transactions_sample.parquet)",
    )


def load_dataset(path: Path, *, format: str = "auto", on_orphans: str = "error") -> Dataset:
    """Load a data folder into a :class:`Dataset`.

    ``format`` is ``"auto"`` (see :func:`detect_format`) or one of :data:`FORMATS`.
    ``on_orphans`` says what to do with interactions (and stock rows) whose ``item_id`` is not in
    the items table: ``"error"`` raises :class:`DataFormatError` naming the first such row,
    ``"drop"`` drops them and logs how many on the ``lookbook.data`` logger.
    """
    path = Path(path)
    if on_orphans not in ORPHAN_POLICIES:
        raise ValueError(f"on_orphans must be one of {ORPHAN_POLICIES}, got {on_orphans!r}")
    if format == "auto":
        format = detect_format(path)
    elif format not in FORMATS:
        raise ValueError(f"format must be 'auto' or one of {FORMATS}, got {format!r}")
    elif not path.is_dir():
        _fail(path, "folder not found")
    if format == "own":
        return _load_own(path, on_orphans)
    return _load_hm(path, _LAYOUTS[format], on_orphans)


# --------------------------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------------------------


def _arrow_column(frame: pd.DataFrame, col: _Col, table: str) -> pa.Array:
    """One column of a Dataset table in the file's Arrow type."""
    n = len(frame)
    if col.name not in frame.columns:
        if col.kind == "list":
            return pa.ListArray.from_arrays(
                pa.array(np.zeros(n + 1, np.int32)), pa.array([], pa.string())
            )
        return pa.nulls(n, _FILE_TYPES[col.kind])
    series = frame[col.name]
    try:
        if col.kind == "list":
            values = [
                [] if v is None or (isinstance(v, float) and np.isnan(v)) else [str(x) for x in v]
                for v in series.tolist()
            ]
            return pa.array(values, type=pa.list_(pa.string()))
        if col.kind in ("id", "text", "enum"):
            if isinstance(series.dtype, pd.CategoricalDtype):  # decode in Arrow: much faster
                codes = series.cat.codes.to_numpy(dtype=np.int64)
                categories = pa.array(series.cat.categories.astype("str"), type=pa.string())
                return pc.take(categories, pa.array(codes, mask=codes < 0))
            return pa.array(series.astype("str"), type=pa.string(), from_pandas=True)
        if col.kind == "bool":
            return pa.array(series.astype("boolean"), type=pa.bool_(), from_pandas=True)
        if col.kind == "float":
            return pa.array(series.astype("float64"), type=pa.float64(), from_pandas=True)
        if col.kind == "int":
            return pa.array(series.astype("Int64"), type=pa.int64(), from_pandas=True)
        if col.kind == "date":
            dates = pd.to_datetime(series)
            if isinstance(dates.dtype, pd.DatetimeTZDtype):
                dates = dates.dt.tz_convert("UTC").dt.tz_localize(None)
            return pa.array(dates.dt.normalize(), from_pandas=True).cast(pa.date32())
        # timestamp
        ts = pd.to_datetime(series, utc=True)
        return pa.array(ts, from_pandas=True).cast(pa.timestamp("us", "UTC"))
    except (TypeError, ValueError, AttributeError, pa.ArrowException) as exc:
        raise DataFormatError(f"cannot write column: {exc}", file=table, column=col.name) from exc


_FILE_TYPES: Final[dict[str, pa.DataType]] = {
    **_ARROW_TYPES,
    "date": pa.date32(),
    "timestamp": pa.timestamp("us", "UTC"),
}


def _csv_text(arr: pa.Array, col: _Col, table: str) -> pa.Array:
    """A column as CSV text (nulls stay null and are written as empty fields)."""
    if col.kind == "list":
        elements = pc.list_flatten(arr)
        bad = _first(pc.match_substring(elements, LIST_SEPARATOR))
        if bad is not None:
            raise DataFormatError(
                f"list value {elements[bad].as_py()!r} contains the separator {LIST_SEPARATOR!r}",
                file=table,
                column=col.name,
            )
        return pc.binary_join(arr, LIST_SEPARATOR)
    if col.kind == "bool":
        return pc.if_else(arr, "true", "false")
    if col.kind == "date":
        return pc.strftime(arr, format="%Y-%m-%d")
    if col.kind == "timestamp":
        seconds = arr.cast(pa.timestamp("s", "UTC"), safe=False)
        whole = pc.all(pc.equal(seconds.cast(pa.timestamp("us", "UTC")), arr)).as_py()
        if whole is None or whole:
            return pc.strftime(seconds, format="%Y-%m-%dT%H:%M:%SZ")
        return pc.strftime(arr, format="%Y-%m-%dT%H:%M:%SZ")
    if col.kind in ("float", "int"):
        return arr.cast(pa.string())
    return arr


def write_dataset(ds: Dataset, path: Path, fmt: str = "parquet") -> None:
    """Write ``ds`` into folder ``path`` in the own format (``fmt`` is ``parquet`` or ``csv``):
    ``items``, ``interactions``, ``customers`` and ``stock``, with every column of the schema.
    Loading the folder again gives the same tables. Timestamps are stored to the microsecond."""
    if fmt not in WRITE_FORMATS:
        raise ValueError(f"fmt must be one of {WRITE_FORMATS}, got {fmt!r}")
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    frames = {
        "items": ds.items,
        "stock": ds.stock,
        "customers": ds.customers,
        "interactions": ds.interactions,
    }
    for table, frame in frames.items():
        optional = [c for c in _OPTIONAL_SPECS.get(table, ()) if c.name in frame.columns]
        spec = (*_SPECS[table], *optional)
        arrays = {c.name: _arrow_column(frame, c, table) for c in spec}
        if fmt == "parquet":
            pq.write_table(pa.table(arrays), path / f"{table}.parquet", compression="zstd")
            continue
        text = pa.table({c.name: _csv_text(arrays[c.name], c, table) for c in spec})
        pacsv.write_csv(
            text,
            path / f"{table}.csv",
            write_options=pacsv.WriteOptions(quoting_style="needed"),
        )
        other = path / f"{table}.parquet"
        if other.exists():
            logger.warning("%s exists and takes precedence over the CSV just written", other)


__all__ = [
    "AGE_BANDS",
    "FORMATS",
    "LIST_SEPARATOR",
    "ORPHAN_POLICIES",
    "WRITE_FORMATS",
    "detect_format",
    "load_dataset",
    "write_dataset",
]
