"""Mapping between external string ids and dense integer indices — the only place it is made."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.parquet as pq


class IdMap:
    """A bijection ``external id (str) <-> dense index (0..n-1)`` in insertion order.

    Lookups of single ids go through a dict (O(1), ~100 ns); batches through :meth:`indices`.
    """

    __slots__ = ("_ids", "_index")

    def __init__(self, ids: Iterable[str]) -> None:
        self._ids: list[str] = [str(i) for i in ids]
        self._index: dict[str, int] = {value: idx for idx, value in enumerate(self._ids)}
        if len(self._index) != len(self._ids):
            seen: set[str] = set()
            dup = next(v for v in self._ids if v in seen or seen.add(v))  # type: ignore[func-returns-value]
            raise ValueError(f"duplicate id {dup!r} in id map")

    def __len__(self) -> int:
        return len(self._ids)

    def __contains__(self, external_id: object) -> bool:
        return external_id in self._index

    def index(self, external_id: str) -> int | None:
        """Dense index of ``external_id``, or ``None`` when unknown."""
        return self._index.get(external_id)

    def indices(self, external_ids: Sequence[str], missing: int = -1) -> npt.NDArray[np.int64]:
        """Dense indices of many ids; unknown ids map to ``missing``."""
        get = self._index.get
        return np.fromiter(
            (get(v, missing) for v in external_ids), dtype=np.int64, count=len(external_ids)
        )

    def id(self, index: int) -> str:
        return self._ids[index]

    def ids(self, indices: Iterable[int] | None = None) -> list[str]:
        if indices is None:
            return list(self._ids)
        return [self._ids[int(i)] for i in indices]

    def save(self, path: Path) -> None:
        pq.write_table(pa.table({"id": pa.array(self._ids, type=pa.string())}), path)

    @classmethod
    def load(cls, path: Path) -> IdMap:
        return cls(pq.read_table(path, columns=["id"]).column("id").to_pylist())
