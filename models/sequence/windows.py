"""Data preparation: customers' event sequences, the histories kept for ``recommend`` and the
padded training windows with their (window, position, target) loss pairs.

``UserEvents.build(data, size_codes)`` groups the input events by customer in time order;
:func:`keep_histories` keeps each customer's last ``max_len`` of them and
:func:`training_windows` cuts the sequences into the windows an epoch trains on.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from models.base import IntArray, TrainingData

from .config import SequenceConfig
from .encoding import NO_INPUT_TYPES


@dataclass
class EventSequence:
    """One customer's input events in time order: item indices, size codes, type codes, seconds."""

    items: IntArray
    sizes: IntArray
    types: IntArray
    times: npt.NDArray[np.int64]


@dataclass
class Histories:
    """Each training customer's last ``max_len`` input events (CSR layout)."""

    indptr: IntArray = field(default_factory=lambda: np.zeros(1, dtype=np.int64))
    items: IntArray = field(default_factory=lambda: np.empty(0, dtype=np.int64))
    sizes: IntArray = field(default_factory=lambda: np.empty(0, dtype=np.int64))
    types: IntArray = field(default_factory=lambda: np.empty(0, dtype=np.int64))
    times: npt.NDArray[np.int64] = field(default_factory=lambda: np.empty(0, dtype=np.int64))

    def row(self, user: int) -> Coded:
        a, b = int(self.indptr[user]), int(self.indptr[user + 1])
        return Coded(self.items[a:b], self.sizes[a:b], self.types[a:b], self.times[a:b])


@dataclass
class Coded:
    """One history ready for the network: item indices, size codes, type codes, timestamps
    (``None``: unknown, every event counts as recent)."""

    items: IntArray
    sizes: IntArray
    types: IntArray
    times: npt.NDArray[np.int64] | None


@dataclass
class UserEvents:
    """Every customer's input events (not impressions or returns) in one CSR layout: customer
    ``users[k]``'s events in time order are ``[starts[k], ends[k])`` of the event arrays."""

    users: IntArray  # customers with at least one input event, ascending
    starts: IntArray
    ends: IntArray
    items: IntArray
    sizes: IntArray
    types: IntArray
    times: npt.NDArray[np.int64]

    @classmethod
    def build(cls, data: TrainingData, size_codes: IntArray) -> UserEvents:
        types = np.asarray(data.event_types, dtype=np.int64)
        keep = ~np.isin(types, list(NO_INPUT_TYPES))
        users = data.user_idx[keep]
        order = np.lexsort((np.arange(len(users)), data.timestamps[keep], users))
        users = users[order]
        bounds = np.flatnonzero(np.diff(users)) + 1
        starts = np.concatenate([[0], bounds]).astype(np.int64)
        ends = np.concatenate([bounds, [len(users)]]).astype(np.int64)
        if len(users) == 0:
            starts = ends = np.empty(0, dtype=np.int64)
        return cls(
            users=np.asarray(users[starts], dtype=np.int64),
            starts=starts,
            ends=ends,
            items=np.asarray(data.item_idx[keep][order], dtype=np.int64),
            sizes=size_codes[keep][order],
            types=types[keep][order],
            times=np.asarray(data.timestamps, dtype=np.int64)[keep][order],
        )

    def __len__(self) -> int:
        return len(self.users)

    def sequence(self, k: int) -> EventSequence:
        """The ``k``-th customer's events (views, not copies)."""
        a, b = int(self.starts[k]), int(self.ends[k])
        return EventSequence(self.items[a:b], self.sizes[a:b], self.types[a:b], self.times[a:b])


def keep_histories(events: UserEvents, n_users: int, max_len: int) -> Histories:
    """Each customer's last ``max_len`` input events, by customer index (CSR)."""
    lengths = events.ends - events.starts
    counts = np.zeros(n_users, dtype=np.int64)
    counts[events.users] = np.minimum(lengths, max_len)
    indptr = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    # event j of customer k is kept when it is among the customer's last max_len events
    owner_end = np.repeat(events.ends, lengths)
    kept = (owner_end - np.arange(len(events.items))) <= max_len
    return Histories(
        indptr=indptr,
        items=events.items[kept].copy(),
        sizes=events.sizes[kept].copy(),
        types=events.types[kept].copy(),
        times=events.times[kept].copy(),
    )


@dataclass
class Windows:
    """Padded training windows and the (window, position, target item) pairs of the loss."""

    items: IntArray  # (W, max_len) item index + 1
    sizes: IntArray
    types: IntArray  # type code + 1
    times: npt.NDArray[np.int64]  # (W, max_len) seconds
    lengths: IntArray
    pair_window: IntArray
    pair_pos: IntArray
    pair_target: IntArray
    pair_time: npt.NDArray[np.int64]  # when the target happened (the repeat term's "now")
    pair_start: IntArray  # (W + 1,) CSR offsets of each window's pairs (pairs sorted by window)


def _targets(seq: EventSequence, target_codes: IntArray, mode: str) -> list[tuple[int, int, int]]:
    """``(position, target item, target time)`` triples of one customer's sequence."""
    n = len(seq.items)
    is_target = np.isin(seq.types, target_codes)
    pairs: list[tuple[int, int, int]] = []
    if mode == "next_item":
        nxt = -1
        for p in range(n - 1, -1, -1):
            if nxt >= 0:
                pairs.append((p, int(seq.items[nxt]), int(seq.times[nxt])))
            if is_target[p]:
                nxt = p
        return pairs
    # next_basket: baskets are runs of equal timestamps; the state after a basket's last event
    # predicts the target items of the next basket that has any.
    change = np.flatnonzero(np.diff(seq.times)) + 1
    starts = np.concatenate([[0], change]).astype(np.int64)
    ends = np.concatenate([change, [n]]).astype(np.int64)
    upcoming: list[int] = []
    upcoming_time = 0
    for a, b in zip(starts[::-1], ends[::-1], strict=True):
        if upcoming:
            pairs.extend((int(b - 1), item, upcoming_time) for item in upcoming)
        basket = [int(seq.items[j]) for j in range(a, b) if is_target[j]]
        if basket:
            upcoming = basket
            upcoming_time = int(seq.times[a])
    return pairs


def training_windows(
    sequences: Iterable[EventSequence],
    target_codes: IntArray,
    config: SequenceConfig,
    limit: int | None = None,
) -> Windows:
    """Cut sequences into windows of ``max_len`` steps overlapping by a quarter, each loss pair
    assigned to exactly one window (where it has the most context). With ``limit``, stop once
    that many windows are cut (the sequences are read lazily, so the cost is bounded too)."""
    L = config.max_len
    overlap = L // 4 if L >= 4 else 0
    step = L - overlap
    rows: list[tuple[EventSequence, int, int]] = []
    pw: list[int] = []
    pp: list[int] = []
    pt: list[int] = []
    ptime: list[int] = []
    for seq in sequences:
        if limit is not None and len(rows) >= limit:
            break
        pairs = _targets(seq, target_codes, config.target)
        if not pairs:
            continue
        pairs.sort()
        positions = np.asarray([p for p, _, _ in pairs], dtype=np.int64)
        targets = np.asarray([t for _, t, _ in pairs], dtype=np.int64)
        when = np.asarray([t for _, _, t in pairs], dtype=np.int64)
        n = len(seq.items)
        start = 0
        while limit is None or len(rows) < limit:
            stop = min(start + L, n)
            lo = start if start == 0 else start + overlap
            mask = (positions >= lo) & (positions < stop)
            if mask.any():
                w = len(rows)
                rows.append((seq, start, stop))
                pw.extend([w] * int(mask.sum()))
                pp.extend((positions[mask] - start).tolist())
                pt.extend(targets[mask].tolist())
                ptime.extend(when[mask].tolist())
            if stop >= n:
                break
            start += step
    W = len(rows)
    items = np.zeros((W, L), dtype=np.int64)
    sizes = np.zeros((W, L), dtype=np.int64)
    types = np.zeros((W, L), dtype=np.int64)
    times = np.zeros((W, L), dtype=np.int64)
    lengths = np.zeros(W, dtype=np.int64)
    for w, (seq, a, b) in enumerate(rows):
        n = b - a
        items[w, :n] = seq.items[a:b] + 1
        sizes[w, :n] = seq.sizes[a:b]
        types[w, :n] = seq.types[a:b] + 1
        times[w, :n] = seq.times[a:b]
        lengths[w] = n
    pair_window = np.asarray(pw, dtype=np.int64)
    pair_start = np.searchsorted(pair_window, np.arange(W + 1)).astype(np.int64)
    return Windows(
        items=items,
        sizes=sizes,
        types=types,
        times=times,
        lengths=lengths,
        pair_window=pair_window,
        pair_pos=np.asarray(pp, dtype=np.int64),
        pair_target=np.asarray(pt, dtype=np.int64),
        pair_time=np.asarray(ptime, dtype=np.int64),
        pair_start=pair_start,
    )
