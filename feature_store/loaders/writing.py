"""write_dataset: a Dataset in the own format, so that load → write → load is the identity."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Final

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from ..dataset import Dataset
from ..errors import DataFormatError
from .columns import _ARROW_TYPES, _first
from .spec import _OPTIONAL_SPECS, _SPECS, LIST_SEPARATOR, WRITE_FORMATS, _Col

logger = logging.getLogger("lookbook.data")


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
