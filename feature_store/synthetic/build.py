"""generate: write a synthetic retailer in the own format into a folder."""

from __future__ import annotations

import json
import logging
import os
import time
from datetime import date
from pathlib import Path
from typing import Any, Final

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from tqdm import tqdm

from ..schema import (
    InteractionCols,
)
from .behaviour import _generate_block, _Params
from .catalog import _make_catalog, items_truth
from .common import _day
from .pools import _make_pools
from .rates import _KINDS
from .stock import _make_stock
from .traffic import _make_calendar
from .vocabulary import BLOCK_CUSTOMERS, CATEGORIES, LATENT_FILE, LATENT_ITEMS_FILE, REPORT_FILE

logger = logging.getLogger("lookbook.data")


_FILES: Final = (
    "items.parquet",
    "stock.parquet",
    "customers.parquet",
    LATENT_FILE,
    LATENT_ITEMS_FILE,
    "interactions.parquet",
)


def _write_table(table: pa.Table, path: Path) -> None:
    pq.write_table(table, path, compression="zstd", row_group_size=1_000_000)


def generate(
    out_dir: Path,
    *,
    customers: int,
    items: int,
    seed: int = 42,
    stores: int = 8,
    interactions_per_customer: float = 10.0,
    end_date: date = date(2026, 10, 31),
    days: int = 730,
    show_progress: bool = False,
) -> dict[str, Any]:
    """Write a synthetic retailer in the own format into ``out_dir`` and return a small report.

    ``customers`` are ``C0000001`` .., ``items`` are ``I000001`` ..; ``stores`` physical stores
    (``store-001`` ..) besides ``online``; interactions fall in the ``days`` days ending on
    ``end_date`` (inclusive), about ``interactions_per_customer`` per customer on average
    (heavy-tailed). The same arguments always give byte-identical Parquet files.

    The report (also written to ``out_dir/synthetic.json`` with the parameters) holds the row
    counts of each table, interactions per type and the wall time in ``seconds``.
    """
    if customers < 1:
        raise ValueError(f"customers must be >= 1, got {customers}")
    if items < len(CATEGORIES):
        raise ValueError(f"items must be >= {len(CATEGORIES)}, got {items}")
    if stores < 0:
        raise ValueError(f"stores must be >= 0, got {stores}")
    if days < 1:
        raise ValueError(f"days must be >= 1, got {days}")
    if not interactions_per_customer > 0:
        raise ValueError(f"interactions_per_customer must be > 0, got {interactions_per_customer}")

    started = time.perf_counter()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    end_day = _day(end_date)
    start_day = end_day - days + 1

    cat = _make_catalog(items, seed, start_day, end_day)
    pools = _make_pools(cat, end_day)
    cal = _make_calendar(start_day, end_day)
    params = _Params(
        seed=seed,
        stores=stores,
        interactions_per_customer=float(interactions_per_customer),
        id_width=max(7, len(str(customers))),
    )

    tmp = {name: out_dir / f".{name}.tmp" for name in _FILES}
    _write_table(cat.table, tmp["items.parquet"])
    _write_table(items_truth(cat), tmp[LATENT_ITEMS_FILE])
    stock = _make_stock(cat, stores, seed, end_day)
    n_stock = stock.num_rows
    _write_table(stock, tmp["stock.parquet"])
    del stock

    type_counts = np.zeros(len(_KINDS), dtype=np.int64)
    kind_names = [k.value for k in _KINDS]
    n_interactions = 0
    writers: dict[str, pq.ParquetWriter] = {}
    progress = tqdm(
        total=customers, unit="customer", disable=not show_progress, desc="synthetic retailer"
    )
    try:
        for block, first in enumerate(range(0, customers, BLOCK_CUSTOMERS)):
            n = min(BLOCK_CUSTOMERS, customers - first)
            tables = _generate_block(block, first, n, cat, pools, cal, params)
            for name, table in zip(
                ("customers.parquet", LATENT_FILE, "interactions.parquet"), tables, strict=True
            ):
                if name not in writers:
                    writers[name] = pq.ParquetWriter(tmp[name], table.schema, compression="zstd")
                writers[name].write_table(table, row_group_size=max(table.num_rows, 1))
            inter = tables[2]
            n_interactions += inter.num_rows
            counts = pc.value_counts(inter.column(InteractionCols.TYPE))
            for entry in counts.to_pylist():
                type_counts[kind_names.index(entry["values"])] += entry["counts"]
            progress.update(n)
    finally:
        progress.close()
        for w in writers.values():
            w.close()
    for name, path in tmp.items():
        os.replace(path, out_dir / name)

    report: dict[str, Any] = {
        "items": items,
        "customers": customers,
        "interactions": n_interactions,
        "stock_rows": n_stock,
        "interactions_by_type": {
            k.value: int(type_counts[i]) for i, k in enumerate(_KINDS) if type_counts[i]
        },
        "seconds": round(time.perf_counter() - started, 3),
    }
    meta = {
        "generator": "feature_store.synthetic",
        "parameters": {
            "customers": customers,
            "items": items,
            "seed": seed,
            "stores": stores,
            "interactions_per_customer": interactions_per_customer,
            "end_date": end_date.isoformat(),
            "days": days,
        },
        "report": report,
    }
    (out_dir / REPORT_FILE).write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
    logger.info(
        "synthetic retailer: %d items, %d customers, %d interactions, %d stock rows in %.1f s",
        items,
        customers,
        n_interactions,
        n_stock,
        report["seconds"],
    )
    return report
