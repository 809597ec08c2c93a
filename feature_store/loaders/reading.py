"""Reading one CSV or Parquet file into Arrow columns, with errors naming file, row and column."""

from __future__ import annotations

import csv
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import NoReturn

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from ..errors import DataFormatError


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
