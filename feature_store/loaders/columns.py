"""Vectorised column parsers shared by every format: ids, enums, numbers, timestamps, lists."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from .reading import _Source
from .spec import (
    _FALSE,
    _INTEGER_RE,
    _NUMBER_RE,
    _TRUE,
    _TS_MAX,
    _TS_MIN,
    _ZONE_RE,
    LIST_SEPARATOR,
    _Col,
)


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
