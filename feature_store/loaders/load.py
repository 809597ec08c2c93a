"""load_dataset and detect_format: read a data folder of any supported layout."""

from __future__ import annotations

import logging
from pathlib import Path

from ..dataset import Dataset
from .hm import _LAYOUTS, _load_hm
from .own import _load_own, _own_file
from .reading import _fail
from .spec import FORMATS, ORPHAN_POLICIES

logger = logging.getLogger("lookbook.data")


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
