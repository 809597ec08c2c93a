"""CustomerProfiles: the batch store of every customer's profile (read, erase, save, load)."""

from __future__ import annotations

import base64
import binascii
import json
import logging
import math
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

import numpy as np
import numpy.typing as npt
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from ..errors import BundleError, InvalidRequest
from ..schema import (
    Interaction,
)
from .config import ProfileConfig
from .events import _epoch_seconds, _iso
from .online import apply_event, new_state, render_state
from .scoring import RfmThresholds, _whole_days
from .vocabulary import FACETS, FORMAT, STAGES, STATE_VERSION, TIERS, Array

logger = logging.getLogger("lookbook.profiles")


# Per-customer columns of the store, and their dtypes.
_COLUMNS: Final[dict[str, type[np.generic]]] = {
    "first_purchase": np.float64,
    "last_purchase": np.float64,
    "last_seen": np.float64,
    "frequency": np.int32,
    "monetary": np.float64,
    "n_purchases": np.int32,
    "n_returns": np.int32,
    "r_score": np.int8,
    "f_score": np.int8,
    "m_score": np.int8,
    "tier": np.int8,
    "stage": np.int8,
    "churn_risk": np.float32,
    "ltv": np.float64,
    "consent": np.bool_,
    "decay_as_of": np.float64,
    **{f"aff_total_{facet}": np.float64 for facet in FACETS},
}


@dataclass(frozen=True)
class _Snapshot:
    """One immutable version of the store's arrays (replaced as a whole on erase)."""

    ids: npt.NDArray[np.object_]  # sorted
    cols: dict[str, Array]
    size_row: npt.NDArray[np.int32]  # sorted; rows of one customer are contiguous
    size_cat: npt.NDArray[np.int16]
    size_label: npt.NDArray[np.int32]
    size_vote: npt.NDArray[np.float64]
    aff_row: dict[str, npt.NDArray[np.int32]]
    aff_code: dict[str, npt.NDArray[np.int32]]
    aff_mass: dict[str, npt.NDArray[np.float64]]


class CustomerProfiles:
    """Batch profiles of every customer (columnar), plus the rules to read and update them.

    Read: :meth:`lookup` (JSON-ready profile), :meth:`state` (online-state seed),
    :meth:`render`, :meth:`counts`, :meth:`list_segment`. Update: :meth:`apply_event` (pure:
    returns a new state). Privacy: :meth:`erase`. Persistence: :meth:`save` / :meth:`load`.
    Reads are lock-free (they see one immutable snapshot); :meth:`erase` swaps the snapshot.
    """

    def __init__(
        self,
        *,
        as_of: datetime,
        config: ProfileConfig,
        thresholds: RfmThresholds,
        snapshot: _Snapshot,
        categories: Sequence[str],
        size_labels: Sequence[str],
        facet_values: Mapping[str, Sequence[str]],
        churn_horizon_days: int | None,
    ) -> None:
        self.as_of = as_of if as_of.tzinfo is not None else as_of.replace(tzinfo=UTC)
        self.as_of_s = _epoch_seconds(self.as_of)
        self.config = config
        self.thresholds = thresholds
        self.categories = tuple(categories)
        self.size_labels = tuple(size_labels)
        self.facet_values = {f: tuple(facet_values.get(f, ())) for f in FACETS}
        self.churn_horizon_days = churn_horizon_days
        self._snap = snapshot
        self._write_lock = threading.Lock()

    # -- reading ------------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._snap.ids)

    def __contains__(self, customer_id: object) -> bool:
        return isinstance(customer_id, str) and self._row(self._snap, customer_id) is not None

    @property
    def customer_ids(self) -> npt.NDArray[np.object_]:
        """Every customer id in the store, sorted (a read-only view)."""
        ids = self._snap.ids.view()
        ids.flags.writeable = False
        return ids

    def column(self, name: str) -> Array:
        """A per-customer column (aligned with :attr:`customer_ids`), read-only."""
        array = self._snap.cols[name].view()
        array.flags.writeable = False
        return array

    @staticmethod
    def _row(snap: _Snapshot, customer_id: str) -> int | None:
        ids = snap.ids
        at = int(np.searchsorted(ids, customer_id))
        if at < len(ids) and ids[at] == customer_id:
            return at
        return None

    def state(self, customer_id: str) -> dict[str, Any] | None:
        """The online state of a customer as the batch knows it (None when unknown)."""
        snap = self._snap
        row = self._row(snap, customer_id)
        if row is None:
            return None
        c = snap.cols

        def opt(name: str) -> float | None:
            value = float(c[name][row])
            return None if math.isnan(value) else value

        sizes: dict[str, dict[str, float]] = {}
        lo, hi = _span(snap.size_row, row)
        for k in range(int(lo), int(hi)):
            cat = self.categories[int(snap.size_cat[k])]
            sizes.setdefault(cat, {})[self.size_labels[int(snap.size_label[k])]] = float(
                snap.size_vote[k]
            )
        affinities: dict[str, dict[str, Any]] = {}
        for facet in FACETS:
            lo, hi = _span(snap.aff_row[facet], row)
            values = self.facet_values[facet]
            top = {
                values[int(snap.aff_code[facet][k])]: float(snap.aff_mass[facet][k])
                for k in range(int(lo), int(hi))
            }
            total = float(c[f"aff_total_{facet}"][row])
            if top or total > 0:
                affinities[facet] = {"total": total, "top": top}
        risk = float(c["churn_risk"][row])
        return {
            "version": STATE_VERSION,
            "customer_id": customer_id,
            "batch_as_of": self.as_of_s,
            "updated": None,
            "first_purchase": opt("first_purchase"),
            "last_purchase": opt("last_purchase"),
            "last_seen": opt("last_seen"),
            "frequency": int(c["frequency"][row]),
            "monetary": float(c["monetary"][row]),
            "n_purchases": int(c["n_purchases"][row]),
            "n_returns": int(c["n_returns"][row]),
            "churn_risk": None if math.isnan(risk) else risk,
            "churn_as_of": None if math.isnan(risk) else self.as_of_s,
            "consent": bool(c["consent"][row]),
            "decay_as_of": opt("decay_as_of"),
            "sizes": sizes,
            "affinities": affinities,
        }

    def lookup(self, customer_id: str, now: datetime | None = None) -> dict[str, Any] | None:
        """The JSON-ready profile of one customer at ``now`` (default: the batch date)."""
        state = self.state(customer_id)
        if state is None:
            return None
        return self.render(state, now if now is not None else self.as_of)

    def render(self, state: Mapping[str, Any], now: datetime) -> dict[str, Any]:
        """The JSON-ready profile of a state at ``now`` (scores with the batch thresholds)."""
        return render_state(
            state,
            now,
            config=self.config,
            thresholds=self.thresholds,
            churn_horizon_days=self.churn_horizon_days,
        )

    def apply_event(
        self,
        state: Mapping[str, Any] | None,
        event: Interaction,
        item_attrs: Mapping[str, Any] | None,
        now: datetime,
    ) -> dict[str, Any]:
        """A new state: ``state`` (None: a new customer) updated by ``event`` (see :func:`apply_event`)."""
        base = state if state is not None else new_state(event.customer_id, self.as_of_s)
        return apply_event(base, event, item_attrs, now, config=self.config)

    def size_table(self) -> pd.DataFrame:
        """Every customer's size per category at the batch date, one row per (customer,
        category): ``customer_id``, ``category``, ``size``, ``confidence`` (as in profiles)."""
        snap = self._snap
        columns = ["customer_id", "category", "size", "confidence"]
        if len(snap.size_row) == 0:
            return pd.DataFrame({c: pd.Series([], dtype=object) for c in columns})
        group = snap.size_row.astype(np.int64) * 1024 + snap.size_cat.astype(np.int64)
        total = pd.Series(snap.size_vote).groupby(group).transform("sum").to_numpy()
        labels = np.asarray(self.size_labels, dtype=object)[snap.size_label]
        frame = pd.DataFrame(
            {"group": group, "vote": snap.size_vote, "label": labels, "total": total}
        ).sort_values(["group", "vote", "label"], ascending=[True, False, True], kind="stable")
        best = frame.drop_duplicates("group", keep="first")
        rows = (best["group"].to_numpy() // 1024).astype(np.int64)
        cats = (best["group"].to_numpy() % 1024).astype(np.int64)
        share = best["vote"].to_numpy() / best["total"].to_numpy()
        scale = self.config.size_confidence_scale
        confidence = share * (1.0 - np.exp(-best["total"].to_numpy() / scale))
        return pd.DataFrame(
            {
                "customer_id": snap.ids[rows],
                "category": np.asarray(self.categories, dtype=object)[cats],
                "size": best["label"].to_numpy(),
                "confidence": np.round(confidence, 4),
            }
        ).reset_index(drop=True)

    def counts(self) -> dict[str, Any]:
        """Customers per tier and per stage (every name present, zeros included)."""
        snap = self._snap
        tiers = np.bincount(snap.cols["tier"].astype(np.int64), minlength=len(TIERS))
        stages = np.bincount(snap.cols["stage"].astype(np.int64), minlength=len(STAGES))
        return {
            "as_of": self.as_of.isoformat(),
            "customers": len(snap.ids),
            "tiers": {name: int(tiers[i]) for i, name in enumerate(TIERS)},
            "stages": {name: int(stages[i]) for i, name in enumerate(STAGES)},
        }

    def list_segment(
        self,
        name: str,
        *,
        cursor: str | None = None,
        limit: int = 100,
        min_churn_risk: float | None = None,
    ) -> dict[str, Any]:
        """One page of the customers of a tier or stage, in customer-id order.

        ``name`` is a tier (:data:`TIERS`) or a stage (:data:`STAGES`; ``prospect`` is both and
        means the same customers). ``min_churn_risk`` keeps customers whose churn risk is at
        least that (customers without a risk are left out then). The cursor is opaque; it holds
        the last customer id returned, so pages stay stable when customers are erased in
        between. Returns ``{"segment", "min_churn_risk", "customers": [...], "next_cursor"}``
        (``next_cursor`` None on the last page). Raises InvalidRequest for an unknown segment,
        a bad cursor or ``limit`` outside 1..1000.
        """
        if name in TIERS:
            column, code = "tier", TIERS.index(name)
        elif name in STAGES:
            column, code = "stage", STAGES.index(name)
        else:
            raise InvalidRequest(
                f"unknown segment {name!r}: expected a tier {list(TIERS)} or a stage {list(STAGES)}"
            )
        if not 1 <= limit <= 1000:
            raise InvalidRequest(f"limit must be in 1..1000, got {limit}")
        if min_churn_risk is not None and not 0.0 <= min_churn_risk <= 1.0:
            raise InvalidRequest(f"min_churn_risk must be in [0, 1], got {min_churn_risk}")
        after = _decode_cursor(cursor, name, min_churn_risk) if cursor else None
        snap = self._snap
        start = 0 if after is None else int(np.searchsorted(snap.ids, after, side="right"))
        mask = snap.cols[column][start:] == code
        if min_churn_risk is not None:
            with np.errstate(invalid="ignore"):
                mask &= snap.cols["churn_risk"][start:] >= min_churn_risk
        hits = np.flatnonzero(mask)[: limit + 1] + start
        more = len(hits) > limit
        rows = hits[:limit]
        customers = [self._summary(snap, int(r)) for r in rows]
        next_cursor = (
            _encode_cursor(name, min_churn_risk, str(snap.ids[rows[-1]]))
            if more and len(rows)
            else None
        )
        return {
            "segment": name,
            "min_churn_risk": min_churn_risk,
            "customers": customers,
            "next_cursor": next_cursor,
        }

    def _summary(self, snap: _Snapshot, row: int) -> dict[str, Any]:
        c = snap.cols
        last = float(c["last_purchase"][row])
        risk = float(c["churn_risk"][row])
        purchased = not math.isnan(last)
        return {
            "customer_id": str(snap.ids[row]),
            "tier": TIERS[int(c["tier"][row])],
            "stage": STAGES[int(c["stage"][row])],
            "r_score": int(c["r_score"][row]) if purchased else None,
            "f_score": int(c["f_score"][row]) if purchased else None,
            "m_score": int(c["m_score"][row]) if purchased else None,
            "recency_days": int(_whole_days(self.as_of_s - last)) if purchased else None,
            "frequency": int(c["frequency"][row]),
            "monetary": round(float(c["monetary"][row]), 2),
            "churn_risk": None if math.isnan(risk) else round(risk, 4),
            "lifetime_value": round(float(c["ltv"][row]), 2),
            "last_purchase": _iso(last),
        }

    # -- privacy ------------------------------------------------------------------------------

    def erase(self, customer_id: str) -> bool:
        """Remove the customer from every table of the store; True when they were there.

        Counts, segment listings, lookups and a later :meth:`save` no longer contain them.
        """
        with self._write_lock:
            snap = self._snap
            row = self._row(snap, customer_id)
            if row is None:
                return False

            # A customer's entries are one contiguous span of each row-sorted table: cut it out
            # (memcpy) and shift the later row numbers down by one.
            s_lo, s_hi = _span(snap.size_row, row)
            spans = {facet: _span(snap.aff_row[facet], row) for facet in FACETS}
            self._snap = _Snapshot(
                ids=_cut(snap.ids, row, row + 1),
                cols={k: _cut(v, row, row + 1) for k, v in snap.cols.items()},
                size_row=_cut_rows(snap.size_row, s_lo, s_hi),
                size_cat=_cut(snap.size_cat, s_lo, s_hi),
                size_label=_cut(snap.size_label, s_lo, s_hi),
                size_vote=_cut(snap.size_vote, s_lo, s_hi),
                aff_row={f: _cut_rows(snap.aff_row[f], *spans[f]) for f in FACETS},
                aff_code={f: _cut(snap.aff_code[f], *spans[f]) for f in FACETS},
                aff_mass={f: _cut(snap.aff_mass[f], *spans[f]) for f in FACETS},
            )
        logger.info("erased one customer from the profiles (%d remain)", len(self._snap.ids))
        return True

    def revoke_personalization(self, customer_id: str) -> bool:
        """Drop the customer's size profile and affinities, mark consent False (RFM stays)."""
        with self._write_lock:
            snap = self._snap
            row = self._row(snap, customer_id)
            if row is None:
                return False
            cols = dict(snap.cols)
            cols["consent"] = cols["consent"].copy()
            cols["consent"][row] = False
            for facet in FACETS:
                name = f"aff_total_{facet}"
                cols[name] = cols[name].copy()
                cols[name][row] = 0.0
            s_lo, s_hi = _span(snap.size_row, row)
            spans = {facet: _span(snap.aff_row[facet], row) for facet in FACETS}
            self._snap = replace(
                snap,
                cols=cols,
                size_row=_cut(snap.size_row, s_lo, s_hi),
                size_cat=_cut(snap.size_cat, s_lo, s_hi),
                size_label=_cut(snap.size_label, s_lo, s_hi),
                size_vote=_cut(snap.size_vote, s_lo, s_hi),
                aff_row={f: _cut(snap.aff_row[f], *spans[f]) for f in FACETS},
                aff_code={f: _cut(snap.aff_code[f], *spans[f]) for f in FACETS},
                aff_mass={f: _cut(snap.aff_mass[f], *spans[f]) for f in FACETS},
            )
        return True

    # -- persistence --------------------------------------------------------------------------

    def save(self, path: Path) -> None:
        """Write ``customers.parquet``, ``sizes.parquet``, ``affinities.parquet`` and
        ``profiles.json`` into the folder ``path`` (no pickle)."""
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        snap = self._snap
        customers = {"customer_id": pa.array(snap.ids.tolist(), type=pa.string())}
        customers.update({k: pa.array(v) for k, v in snap.cols.items()})
        pq.write_table(pa.table(customers), path / "customers.parquet", compression="zstd")
        sizes = pa.table(
            {
                "row": pa.array(snap.size_row),
                "category": pa.array(snap.size_cat),
                "label": pa.array(snap.size_label),
                "vote": pa.array(snap.size_vote),
            }
        )
        pq.write_table(sizes, path / "sizes.parquet", compression="zstd")
        facet_code = np.concatenate(
            [np.full(len(snap.aff_row[f]), i, dtype=np.int8) for i, f in enumerate(FACETS)]
        )
        affinities = pa.table(
            {
                "facet": pa.array(facet_code),
                "row": pa.array(np.concatenate([snap.aff_row[f] for f in FACETS])),
                "value": pa.array(np.concatenate([snap.aff_code[f] for f in FACETS])),
                "mass": pa.array(np.concatenate([snap.aff_mass[f] for f in FACETS])),
            }
        )
        pq.write_table(affinities, path / "affinities.parquet", compression="zstd")
        meta = {
            "format": FORMAT,
            "as_of": self.as_of.isoformat(),
            "config": self.config.to_dict(),
            "thresholds": self.thresholds.to_dict(),
            "categories": list(self.categories),
            "size_labels": list(self.size_labels),
            "facet_values": {f: list(v) for f, v in self.facet_values.items()},
            "churn_horizon_days": self.churn_horizon_days,
            "customers": len(snap.ids),
            "tiers": list(TIERS),
            "stages": list(STAGES),
        }
        (path / "profiles.json").write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")

    @classmethod
    def load(cls, path: Path) -> CustomerProfiles:
        """Read a folder written by :meth:`save` (BundleError when it is not one)."""
        path = Path(path)
        try:
            meta = json.loads((path / "profiles.json").read_text())
        except FileNotFoundError as exc:
            raise BundleError(f"{path} holds no customer profiles (no profiles.json)") from exc
        except json.JSONDecodeError as exc:
            raise BundleError(f"{path / 'profiles.json'} is not valid JSON: {exc}") from exc
        if meta.get("format") != FORMAT:
            raise BundleError(f"{path} holds {meta.get('format')!r}, not {FORMAT!r}")
        if tuple(meta.get("tiers", TIERS)) != TIERS or tuple(meta.get("stages", STAGES)) != STAGES:
            raise BundleError(f"{path}: tier or stage names differ from this version's")
        try:
            customers = pq.read_table(path / "customers.parquet")
            sizes = pq.read_table(path / "sizes.parquet")
            affinities = pq.read_table(path / "affinities.parquet")
        except (OSError, pa.ArrowException) as exc:
            raise BundleError(f"{path}: cannot read the profile tables ({exc})") from exc
        ids = np.asarray(customers.column("customer_id").to_pylist(), dtype=object)
        cols = {
            name: customers.column(name).to_numpy().astype(dtype, copy=False)
            for name, dtype in _COLUMNS.items()
        }
        facet = affinities.column("facet").to_numpy()
        a_row = affinities.column("row").to_numpy()
        a_val = affinities.column("value").to_numpy()
        a_mass = affinities.column("mass").to_numpy()
        snapshot = _Snapshot(
            ids=ids,
            cols=cols,
            size_row=sizes.column("row").to_numpy().astype(np.int32),
            size_cat=sizes.column("category").to_numpy().astype(np.int16),
            size_label=sizes.column("label").to_numpy().astype(np.int32),
            size_vote=sizes.column("vote").to_numpy().astype(np.float64),
            aff_row={f: a_row[facet == i].astype(np.int32) for i, f in enumerate(FACETS)},
            aff_code={f: a_val[facet == i].astype(np.int32) for i, f in enumerate(FACETS)},
            aff_mass={f: a_mass[facet == i].astype(np.float64) for i, f in enumerate(FACETS)},
        )
        return cls(
            as_of=datetime.fromisoformat(meta["as_of"]),
            config=ProfileConfig.from_dict(meta["config"]),
            thresholds=RfmThresholds.from_dict(meta["thresholds"]),
            snapshot=snapshot,
            categories=meta["categories"],
            size_labels=meta["size_labels"],
            facet_values=meta["facet_values"],
            churn_horizon_days=meta.get("churn_horizon_days"),
        )


def _span(rows: npt.NDArray[np.int32], row: int) -> tuple[int, int]:
    """``[lo, hi)`` of the entries of ``row`` in a sorted row array (the query keeps the array's
    dtype: a mismatched one would make numpy convert the whole array on every call)."""
    lo, hi = np.searchsorted(rows, np.array([row, row + 1], dtype=rows.dtype))
    return int(lo), int(hi)


def _cut(array: Array, lo: int, hi: int) -> Array:
    """``array`` without ``array[lo:hi]``."""
    return np.concatenate([array[:lo], array[hi:]])


def _cut_rows(rows: npt.NDArray[np.int32], lo: int, hi: int) -> npt.NDArray[np.int32]:
    """A row-number array without ``rows[lo:hi]`` (one customer), later rows shifted down."""
    return np.concatenate([rows[:lo], rows[hi:] - 1]).astype(np.int32, copy=False)


def _encode_cursor(segment: str, min_churn_risk: float | None, after: str) -> str:
    raw = json.dumps({"s": segment, "r": min_churn_risk, "a": after}, separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def _decode_cursor(cursor: str, segment: str, min_churn_risk: float | None) -> str:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        data = json.loads(base64.urlsafe_b64decode(padded.encode()))
        after = data["a"]
        ok = data["s"] == segment and data["r"] == min_churn_risk and isinstance(after, str)
    except (ValueError, KeyError, TypeError, binascii.Error) as exc:
        raise InvalidRequest("cursor is not valid") from exc
    if not ok:
        raise InvalidRequest("cursor belongs to another segment or filter")
    return str(after)
