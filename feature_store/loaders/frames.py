"""Arrow columns to the pandas dtypes a Dataset documents."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from ..schema import (
    ItemCols,
)
from .columns import _decode
from .spec import _Col


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
