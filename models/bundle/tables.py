"""The bundle's array tables (``.npz``, no pickle): how each is written and read back, checked
against the bundle's item and customer counts."""

from __future__ import annotations

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
    ``ids``, ``n_customers x m`` item indices, best first, padded with ``-1``.

    A request for a customer with no events since training reads its row instead of searching
    the index (:func:`models.index.answer_from_pool`). Saved as a plain ``.npy`` and
    memory-mapped when read: a replica pages in only the rows of the customers it serves, and
    replicas on one machine share those pages."""

    ids: npt.NDArray[np.int32]

    @property
    def size(self) -> int:
        """Candidates per customer (``m``)."""
        return int(self.ids.shape[1])

    def row(self, customer: int) -> npt.NDArray[np.int32]:
        return np.asarray(self.ids[customer])

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("wb") as handle:
            np.save(handle, np.ascontiguousarray(self.ids, dtype=np.int32), allow_pickle=False)

    @classmethod
    def load(cls, path: Path, n_customers: int, n_items: int) -> CustomerPools | None:
        """The pools memory-mapped, or None when the bundle has none (no file). The shape and
        every id are checked against the bundle's counts by reading the file in chunks, not
        through the map (so loading does not make every page resident)."""
        if not path.exists():
            return None
        _check_pool_file(path, n_customers, n_items)
        ids = np.load(path, mmap_mode="r", allow_pickle=False)
        return cls(ids=ids)


def _check_pool_file(path: Path, n_customers: int, n_items: int) -> None:
    with path.open("rb") as handle:
        version = np.lib.format.read_magic(handle)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(handle)
        else:
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(handle)
        if dtype != np.dtype(np.int32) or fortran or len(shape) != 2 or shape[0] != n_customers:
            raise BundleError(f"{path} does not match the customer ids")
        row_bytes = shape[1] * 4
        rows_per_chunk = max(1, (1 << 24) // max(row_bytes, 1))
        left = shape[0]
        while left > 0 and row_bytes:
            take = min(left, rows_per_chunk)
            chunk = np.frombuffer(handle.read(take * row_bytes), dtype=np.int32)
            if len(chunk) != take * shape[1]:
                raise BundleError(f"{path} is truncated")
            if len(chunk) and (chunk.min() < -1 or chunk.max() >= n_items):
                raise BundleError(f"{path} names items outside the catalog")
            left -= take
