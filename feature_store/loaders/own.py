"""The project's own format: items, interactions, customers and stock, Parquet or CSV."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from ..dataset import Dataset
from ..schema import (
    PRICE_BANDS,
    CustomerCols,
    InteractionCols,
    ItemCols,
    StockCols,
)
from .columns import _ARROW_TYPES, _check_unique, _decode, _first, _parse, _parse_all
from .frames import _frame, _item_categorical, _pandas, _sorted_categorical
from .reading import _fail, _read, _Source
from .spec import (
    _CUSTOMER_SPEC,
    _INTERACTION_SPEC,
    _ITEM_OPTIONAL_SPEC,
    _ITEM_SPEC,
    _OPTIONAL_SPECS,
    _SPECS,
    _STOCK_SPEC,
    _Col,
)

logger = logging.getLogger("lookbook.data")


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
