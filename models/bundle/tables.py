"""The bundle's array tables (``.npz``, no pickle): how each is written and read back, checked
against the bundle's item and customer counts."""

from __future__ import annotations

import os
import weakref
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp

from feature_store.errors import BundleError
from models.candidates import NeighbourTable

#: Arrays of ``purchase_history.npz``: CSR-style ``indptr`` over customers, then per purchase
#: (each customer's oldest first) ``items``, ``timestamps`` (epoch seconds) and ``weights``.
PURCHASE_HISTORY_KEYS = ("indptr", "items", "timestamps", "weights")

PurchaseLog = dict[str, npt.NDArray[Any]]

#: Arrays of ``returns.npz``: CSR-style ``indptr`` over customers, then per return (each
#: customer's oldest first) ``items``, ``timestamps`` (epoch seconds), ``sizes`` and ``reasons``
#: (strings, "" when unknown).
RETURN_KEYS = ("indptr", "items", "timestamps", "sizes", "reasons")

ReturnLog = dict[str, npt.NDArray[Any]]


def save_csr(path: Path, matrix: sp.csr_matrix) -> None:
    np.savez(
        path,
        indptr=matrix.indptr,
        indices=matrix.indices,
        data=matrix.data,
        shape=np.asarray(matrix.shape, dtype=np.int64),
    )


def load_csr(path: Path) -> sp.csr_matrix:
    with np.load(path, allow_pickle=False) as arrays:
        shape = tuple(int(v) for v in arrays["shape"])
        return sp.csr_matrix((arrays["data"], arrays["indices"], arrays["indptr"]), shape=shape)


def save_purchase_history(path: Path, log: Mapping[str, npt.NDArray[Any]]) -> None:
    arrays: dict[str, Any] = {name: log[name] for name in PURCHASE_HISTORY_KEYS}
    np.savez(path, **arrays)


def load_purchase_history(path: Path, n_customers: int) -> PurchaseLog | None:
    """The purchase log, or None for a bundle written before it (no file)."""
    if not path.exists():
        return None
    with np.load(path, allow_pickle=False) as table:
        log = {name: table[name] for name in PURCHASE_HISTORY_KEYS}
    if len(log["indptr"]) != n_customers + 1 or not (
        len(log["items"]) == len(log["timestamps"]) == len(log["weights"]) == int(log["indptr"][-1])
    ):
        raise BundleError(f"{path} does not match the customer ids")
    return log


def save_returns(path: Path, log: Mapping[str, npt.NDArray[Any]]) -> None:
    arrays: dict[str, Any] = {name: log[name] for name in RETURN_KEYS}
    arrays["sizes"] = np.asarray(arrays["sizes"], dtype=np.str_)
    arrays["reasons"] = np.asarray(arrays["reasons"], dtype=np.str_)
    np.savez(path, **arrays)


def load_returns(path: Path, n_customers: int) -> ReturnLog | None:
    """The returns log, or None for a bundle written before it (no file)."""
    if not path.exists():
        return None
    with np.load(path, allow_pickle=False) as table:
        log = {name: table[name] for name in RETURN_KEYS}
    n = int(log["indptr"][-1]) if len(log["indptr"]) else -1
    if len(log["indptr"]) != n_customers + 1 or any(
        len(log[name]) != n for name in RETURN_KEYS[1:]
    ):
        raise BundleError(f"{path} does not match the customer ids")
    return log


@dataclass(frozen=True)
class CandidateTables:
    """The per-bundle tables of the rule-based blend sources (:mod:`models.candidates`): each
    item's product-type rebuy rate (``repeat``) and each item's product siblings (``siblings``:
    other colours / variants with a training event)."""

    repeat_rates: npt.NDArray[np.float64]
    siblings: NeighbourTable

    def save(self, path: Path) -> None:
        arrays: dict[str, Any] = {"repeat_rates": self.repeat_rates}
        arrays.update({f"siblings_{k}": v for k, v in self.siblings.to_arrays().items()})
        np.savez(path, **arrays)

    @classmethod
    def load(cls, path: Path, n_items: int) -> CandidateTables | None:
        """The tables, or None for a bundle written before them (no file)."""
        if not path.exists():
            return None
        with np.load(path, allow_pickle=False) as table:
            rates = np.asarray(table["repeat_rates"], dtype=np.float64)
            siblings = NeighbourTable.from_arrays(
                {k: table[f"siblings_{k}"] for k in ("indptr", "indices", "scores")}
            )
        if len(rates) != n_items or siblings.n_items != n_items:
            raise BundleError(f"{path} does not match the item ids")
        return cls(repeat_rates=rates, siblings=siblings)


@dataclass(frozen=True)
class SimilarItems:
    """Each item's precomputed nearest items by cosine of the ALS vectors: ``ids`` and ``scores``
    of shape ``n_items x m``, best first, padded with ``-1`` / ``-inf``."""

    ids: npt.NDArray[np.int32]
    scores: npt.NDArray[np.float32]

    def save(self, path: Path) -> None:
        np.savez(path, ids=self.ids, scores=self.scores)

    @classmethod
    def load(cls, path: Path, n_items: int) -> SimilarItems:
        with np.load(path, allow_pickle=False) as table:
            ids, scores = table["ids"], table["scores"]
        if ids.ndim != 2 or ids.shape != scores.shape or len(ids) != n_items:
            raise BundleError(f"{path} does not match the item ids")
        return cls(ids=ids, scores=scores)


@dataclass(frozen=True)
class CustomerPools:
    """Each training customer's candidates from one source's index, computed by the trainer with
    the customer's trained query (the ALS factor, the LSTM session of the kept history):
    ``ids``, ``n_customers x m`` item indices, best first, padded with ``-1``, saved as a plain
    ``.npy``. The service reads them back as a :class:`PoolFile`."""

    ids: npt.NDArray[np.int32]

    def save(self, path: Path) -> None:
        _save_rows(path, np.ascontiguousarray(self.ids, dtype=np.int32))


@dataclass(frozen=True)
class CustomerVectors:
    """Each training customer's query vector, computed by the trainer: the LSTM's session vector
    ``[u, 1]`` of the history kept at training, ``n_customers x (d + 1)`` float32, saved as a
    plain ``.npy``. The service reads them back as a :class:`VectorFile`, so the LSTM runs per
    request only for customers with events since training."""

    vectors: npt.NDArray[np.float32]

    def save(self, path: Path) -> None:
        _save_rows(path, np.ascontiguousarray(self.vectors, dtype=np.float32))


def _save_rows(path: Path, rows: npt.NDArray[Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as handle:
        np.save(handle, rows, allow_pickle=False)


class _RowFile:
    """A saved 2-d ``.npy`` of one row per training customer, read one row per request with one
    ``pread``: nothing of it held in the process. The rows read stay in the page cache, which the
    replicas on one machine share and the kernel can reclaim; unlike a memory map, reading them
    adds nothing to a process's resident memory (a map faults in whole runs of neighbouring
    pages)."""

    dtype: np.dtype[Any]

    def __init__(self, path: Path, n_customers: int, width: int | None = None) -> None:
        """Open ``path``, checking its dtype and shape against the bundle (``width``: the row
        length it must have, None: any) and every row by reading it once in chunks
        (:meth:`_check`); :class:`BundleError` otherwise."""
        self.path = path
        self._offset, self.n_customers, self.size = _check_rows(
            path, n_customers, width, self.dtype, self._check
        )
        self._row_bytes = self.size * self.dtype.itemsize
        self._fd = os.open(path, os.O_RDONLY)
        self._closer = weakref.finalize(self, os.close, self._fd)

    def _check(self, chunk: npt.NDArray[Any]) -> str | None:
        """What is wrong with a chunk of rows, or None."""
        return None

    def _read(self, customer: int) -> npt.NDArray[Any]:
        if not 0 <= customer < self.n_customers:
            raise IndexError(f"customer {customer} is not in {self.path} ({self.n_customers})")
        data = os.pread(self._fd, self._row_bytes, self._offset + customer * self._row_bytes)
        if len(data) != self._row_bytes:
            raise BundleError(f"{self.path} is truncated")
        return np.frombuffer(data, dtype=self.dtype)

    def close(self) -> None:
        self._closer()


class PoolFile(_RowFile):
    """A saved :class:`CustomerPools` as the service reads it (:meth:`row`). A request for a
    customer with no events since training reads its row instead of searching the index
    (:func:`models.index.answer_from_pool`)."""

    dtype = np.dtype(np.int32)

    def __init__(self, path: Path, n_customers: int, n_items: int) -> None:
        """Open ``path`` (a bundle's ``pools/<source>.npy``), checking its shape against the
        bundle's counts and every id against the catalog; :class:`BundleError` otherwise."""
        self._n_items = n_items
        super().__init__(path, n_customers)

    @classmethod
    def load(cls, path: Path, n_customers: int, n_items: int) -> PoolFile | None:
        """The pools of ``path``, or None when the bundle has none (no file)."""
        return cls(path, n_customers, n_items) if path.exists() else None

    def _check(self, chunk: npt.NDArray[Any]) -> str | None:
        if len(chunk) and (chunk.min() < -1 or chunk.max() >= self._n_items):
            return "names items outside the catalog"
        return None

    def row(self, customer: int) -> npt.NDArray[np.int32]:
        """Customer ``customer``'s candidates, best first, ``-1`` padded."""
        return self._read(customer)

    def rows(self, start: int, stop: int) -> npt.NDArray[np.int32]:
        """Customers ``start`` … ``stop - 1``'s candidates (``(stop - start) x size``)."""
        return np.stack([self.row(c) for c in range(start, stop)])


class VectorFile(_RowFile):
    """A saved :class:`CustomerVectors` as the service reads it (:meth:`row`)."""

    dtype = np.dtype(np.float32)

    @classmethod
    def load(cls, path: Path, n_customers: int, width: int) -> VectorFile | None:
        """The vectors of ``path`` (rows of ``width``), or None when the bundle has none."""
        return cls(path, n_customers, width) if path.exists() else None

    def _check(self, chunk: npt.NDArray[Any]) -> str | None:
        return None if np.isfinite(chunk).all() else "holds a value that is not finite"

    def row(self, customer: int) -> npt.NDArray[np.float32]:
        """Customer ``customer``'s vector."""
        return self._read(customer)


def _check_rows(
    path: Path,
    n_customers: int,
    width: int | None,
    dtype: np.dtype[Any],
    check: Any,
) -> tuple[int, int, int]:
    """``(offset of the data, rows, columns)`` of a row file, checked."""
    with path.open("rb") as handle:
        version = np.lib.format.read_magic(handle)
        if version == (1, 0):
            shape, fortran, found = np.lib.format.read_array_header_1_0(handle)
        else:
            shape, fortran, found = np.lib.format.read_array_header_2_0(handle)
        if (
            found != dtype
            or fortran
            or len(shape) != 2
            or shape[0] != n_customers
            or (width is not None and shape[1] != width)
        ):
            raise BundleError(f"{path} does not match the customer ids")
        offset = handle.tell()
        row_bytes = shape[1] * dtype.itemsize
        rows_per_chunk = max(1, (1 << 24) // max(row_bytes, 1))
        left = shape[0]
        while left > 0 and row_bytes:
            take = min(left, rows_per_chunk)
            chunk = np.frombuffer(handle.read(take * row_bytes), dtype=dtype)
            if len(chunk) != take * shape[1]:
                raise BundleError(f"{path} is truncated")
            wrong = check(chunk)
            if wrong is not None:
                raise BundleError(f"{path} {wrong}")
            left -= take
        if handle.read(1):
            raise BundleError(f"{path} is longer than its rows")
    return offset, int(shape[0]), int(shape[1])
