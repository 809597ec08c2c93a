"""The bandit's shared state: decayed evidence per (surface, segment, source), in-process or in Redis.

Per arm — a (surface, segment, source) — the store keeps the decayed sums of what it was shown and
what followed: impressions, clicks, add-to-carts, purchases and revenue (:class:`ArmStats`). The
posterior they feed is :mod:`models.bandit`'s business; this module only adds and reads sums.

**Decay with a shared reference time.** An increment ``Δ`` that happens at time ``t`` is stored
scaled up, as ``Δ · 2 ** ((t − t0) / h)`` = ``Δ / decay(t − t0, h)``, where ``h`` is the
half-life and ``t0`` the start of the *epoch* holding ``t`` (epochs are :data:`EPOCH_HALF_LIVES`
half-lives long, so the scale stays below ``2 ** 64``). Reading at time ``τ`` multiplies each
epoch's sum by ``decay(τ − t0, h)``, which gives ``Σ Δ_i · decay(τ − t_i, h)``: every event decayed
from its own time, late and out-of-order events included, with no read-modify-write. So an update is
a plain ``HINCRBYFLOAT`` per field — atomic in Redis, and increments from any number of replicas
add up exactly. A read sums the epochs before, at and after ``τ`` (the one after catches a replica
whose clock runs ahead); anything older than the previous epoch weighs less than ``2 ** -64`` and
is dropped (Redis expires a key three epochs after its last write). The decay factor is :func:`feature_store.timeutils.decay`,
computed in Python for both implementations, which therefore agree to the last bits
(``tests/test_bandit.py`` runs one contract suite on both, against a real Redis). Without a
half-life (``None``) there is one epoch and the scale is 1.

Redis layout (under ``prefix``): one hash per (surface, segment, epoch),
``{prefix}bandit:{half_life_tag}:{surface}:{segment}:{epoch}``, fields ``{source}:{stat}``; the
half-life is part of the key because the stored scale depends on it (changing the half-life starts
a fresh state).
"""

from __future__ import annotations

import math
import threading
from collections.abc import Iterable, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass, fields
from typing import Final, Protocol, runtime_checkable

import redis
from redis.exceptions import RedisError

from .circuit import breaker_for
from .online_store import _unavailable, redis_client, redis_errors
from .redis_batch import Outcome, Pending, RedisBatch, ScriptCall
from .timeutils import decay

__all__ = [
    "EPOCH_HALF_LIVES",
    "STATS",
    "ArmStats",
    "BanditState",
    "InMemoryBanditState",
    "RedisBanditState",
]

#: Adds increments to one hash and renews its expiry, atomically: KEYS[1] the hash; ARGV[1] the
#: expiry in seconds (0: none), then field, increment, field, increment, …
_ADD_SCRIPT: Final = """
for i = 2, #ARGV, 2 do
  redis.call('HINCRBYFLOAT', KEYS[1], ARGV[i], ARGV[i + 1])
end
local ttl = tonumber(ARGV[1])
if ttl > 0 then
  redis.call('EXPIRE', KEYS[1], ttl)
end
return 1
"""

#: Length of one epoch in half-lives: the largest stored scale is ``2 ** EPOCH_HALF_LIVES``.
EPOCH_HALF_LIVES: Final = 64


@dataclass(frozen=True, slots=True)
class ArmStats:
    """Decayed sums of one arm (or the increments of one update)."""

    impressions: float = 0.0
    clicks: float = 0.0
    add_to_carts: float = 0.0
    purchases: float = 0.0
    revenue: float = 0.0

    def __add__(self, other: ArmStats) -> ArmStats:
        return ArmStats(*(getattr(self, s) + getattr(other, s) for s in STATS))

    def scaled(self, factor: float) -> ArmStats:
        return ArmStats(*(getattr(self, s) * factor for s in STATS))


#: The statistics kept per arm, in :class:`ArmStats` field order.
STATS: Final[tuple[str, ...]] = tuple(f.name for f in fields(ArmStats))

#: (surface, segment) → source → decayed sums.
ArmTable = dict[tuple[str, str], dict[str, ArmStats]]


@runtime_checkable
class BanditState(Protocol):
    """Decayed evidence per (surface, segment, source), shared by every replica that uses it."""

    half_life: float | None  # seconds; None: no decay

    def add(
        self,
        surface: str,
        segment: str,
        updates: Mapping[str, ArmStats],
        at: float,
        batch: RedisBatch | None = None,
    ) -> Pending[None] | None:
        """Add ``updates`` (source → increments) that happened at ``at`` (epoch seconds), in
        one atomic step: queued on ``batch`` when it is on this state's Redis client (the
        returned result tells whether it was kept), else now (None returned)."""
        ...

    def read(self, surface: str, segment: str, at: float) -> dict[str, ArmStats]:
        """Every source's sums of one (surface, segment), decayed to ``at``."""
        ...

    def arms(self, at: float) -> ArmTable:
        """Every arm's sums, decayed to ``at`` (for the admin view)."""
        ...

    def ping(self) -> bool: ...


class _DecayedSums:
    """The arithmetic both implementations share: which epoch an update goes to, its scale, and
    how epochs' sums are decayed to a read time."""

    def __init__(self, half_life: float | None) -> None:
        if half_life is not None and not half_life > 0:
            raise ValueError(f"half_life must be > 0 seconds or None, got {half_life}")
        self.half_life = None if half_life is None else float(half_life)

    @property
    def epoch_seconds(self) -> float | None:
        return None if self.half_life is None else EPOCH_HALF_LIVES * self.half_life

    def epoch(self, at: float) -> int:
        length = self.epoch_seconds
        return 0 if length is None else math.floor(at / length)

    def start(self, epoch: int) -> float:
        length = self.epoch_seconds
        return 0.0 if length is None else epoch * length

    def weight(self, epoch: int, at: float) -> float:
        """What one stored unit of ``epoch`` is worth at time ``at``: ``decay(at − t0, h)``."""
        return float(decay(at - self.start(epoch), self.half_life))

    def scaled_update(self, update: ArmStats, at: float) -> tuple[int, ArmStats]:
        epoch = self.epoch(at)
        return epoch, update.scaled(1.0 / self.weight(epoch, at))

    def read_epochs(self, at: float) -> tuple[int, ...]:
        if self.half_life is None:
            return (0,)
        now = self.epoch(at)
        return (now - 1, now, now + 1)

    def ttl(self) -> int | None:
        """Seconds an epoch's key lives after its last write: three epochs, longer than any read
        reaches back (reads need an epoch until two epochs after its start)."""
        length = self.epoch_seconds
        return None if length is None else math.ceil(3 * length)

    @staticmethod
    def check_names(surface: str, segment: str, sources: Mapping[str, object]) -> None:
        for kind, name in (("surface", surface), ("segment", segment)):
            if not name or ":" in name:
                raise ValueError(
                    f"a bandit {kind} name must be non-empty without ':', got {name!r}"
                )
        for source in sources:
            if not source or ":" in source:
                raise ValueError(
                    f"a bandit source name must be non-empty without ':', got {source!r}"
                )


# --------------------------------------------------------------------------------------------------
# In-process implementation
# --------------------------------------------------------------------------------------------------


class InMemoryBanditState(_DecayedSums):
    """The bandit's state inside one process: scaled sums per (surface, segment, epoch) behind a
    lock, with exactly the arithmetic of :class:`RedisBanditState`."""

    def __init__(self, half_life: float | None) -> None:
        super().__init__(half_life)
        self._lock = threading.Lock()
        self._sums: dict[tuple[str, str, int], dict[str, ArmStats]] = {}

    def add(
        self,
        surface: str,
        segment: str,
        updates: Mapping[str, ArmStats],
        at: float,
        batch: RedisBatch | None = None,
    ) -> Pending[None] | None:
        self.check_names(surface, segment, updates)
        epoch, _ = self.scaled_update(ArmStats(), at)
        scaled = {source: self.scaled_update(u, at)[1] for source, u in updates.items()}
        with self._lock:
            sums = self._sums.setdefault((surface, segment, epoch), {})
            for source, update in scaled.items():
                sums[source] = sums.get(source, ArmStats()) + update
            # epochs no read reaches any more (older than the one before this update's)
            for key in [k for k in self._sums if k[2] < epoch - 1]:
                del self._sums[key]
        return None

    def read(self, surface: str, segment: str, at: float) -> dict[str, ArmStats]:
        out: dict[str, ArmStats] = {}
        with self._lock:
            found = [
                (e, dict(self._sums.get((surface, segment, e), {}))) for e in self.read_epochs(at)
            ]
        for epoch, sums in found:
            w = self.weight(epoch, at)
            for source, stats in sums.items():
                out[source] = out.get(source, ArmStats()) + stats.scaled(w)
        return out

    def arms(self, at: float) -> ArmTable:
        with self._lock:
            pairs = sorted({(surface, segment) for surface, segment, _ in self._sums})
        table = {pair: self.read(*pair, at) for pair in pairs}
        return {pair: sums for pair, sums in table.items() if sums}

    def ping(self) -> bool:
        return True


# --------------------------------------------------------------------------------------------------
# Redis implementation (shared by replicas)
# --------------------------------------------------------------------------------------------------


class RedisBanditState(_DecayedSums):
    """The bandit's state in Redis: one hash per (surface, segment, epoch), updated with
    ``HINCRBYFLOAT`` inside one script run per call, so concurrent replicas add up. Every Redis
    failure surfaces as :class:`~feature_store.errors.StoreUnavailable`."""

    def __init__(
        self,
        half_life: float | None,
        client: redis.Redis | None = None,
        *,
        url: str | None = None,
        prefix: str = "lb:",
        socket_timeout: float = 0.25,
    ) -> None:
        super().__init__(half_life)
        self._owns_client = client is None
        self._client, self._where = redis_client("RedisBanditState", client, url, socket_timeout)
        tag = "none" if self.half_life is None else f"{self.half_life:.6g}"
        self._base = f"{prefix}bandit:{tag}:"
        self._add_script = self._client.register_script(_ADD_SCRIPT)

    @property
    def client(self) -> redis.Redis:
        """The Redis client (shared with the online store when built on its client)."""
        return self._client

    def _key(self, surface: str, segment: str, epoch: int) -> str:
        return f"{self._base}{surface}:{segment}:{epoch}"

    def _guard(self, operation: str) -> AbstractContextManager[None]:
        return redis_errors("bandit state", self._where, operation)

    def add(
        self,
        surface: str,
        segment: str,
        updates: Mapping[str, ArmStats],
        at: float,
        batch: RedisBatch | None = None,
    ) -> Pending[None] | None:
        """One script run (atomic) adds every non-zero increment and renews the key's expiry.
        With a ``batch`` on this state's client it is queued there, to go with the request's
        other writes in one round trip; the returned result then raises
        :class:`~feature_store.errors.StoreUnavailable` if it failed. Otherwise it runs now
        (None returned)."""
        self.check_names(surface, segment, updates)
        args: list[str | float | int] = [self.ttl() or 0]
        for source, update in updates.items():
            _, scaled = self.scaled_update(update, at)
            for stat in STATS:
                value = getattr(scaled, stat)
                if value != 0.0:
                    args.extend((f"{source}:{stat}", value))
        if len(args) == 1:
            return None
        keys = [self._key(surface, segment, self.epoch(at))]
        breaker = breaker_for(self._where)
        if batch is not None and batch.client is self._client and not breaker.is_open:

            def added(outcome: Outcome) -> None:
                failed = outcome if isinstance(outcome, BaseException) else outcome[0]
                if isinstance(failed, BaseException):
                    raise _unavailable(breaker, "bandit state", self._where, "add", failed)

            return batch.add([ScriptCall(self._add_script, keys, args)], added)
        with self._guard("add"):
            self._add_script(keys=keys, args=args)
        return None

    @staticmethod
    def _parse(raw: Mapping[bytes, bytes]) -> dict[str, dict[str, float]]:
        out: dict[str, dict[str, float]] = {}
        for field, value in raw.items():
            source, _, stat = field.decode().rpartition(":")
            out.setdefault(source, {})[stat] = float(value)
        return out

    def read(self, surface: str, segment: str, at: float) -> dict[str, ArmStats]:
        epochs = self.read_epochs(at)
        pipe = self._client.pipeline(transaction=False)
        for epoch in epochs:
            pipe.hgetall(self._key(surface, segment, epoch))
        with self._guard("read"):
            found = pipe.execute()
        return self._combine(zip(epochs, found, strict=True), at)

    def _combine(
        self, found: Iterable[tuple[int, Mapping[bytes, bytes]]], at: float
    ) -> dict[str, ArmStats]:
        out: dict[str, ArmStats] = {}
        for epoch, raw in found:
            w = self.weight(epoch, at)
            for source, values in self._parse(raw).items():
                stats = ArmStats(*(values.get(s, 0.0) * w for s in STATS))
                out[source] = out.get(source, ArmStats()) + stats
        return out

    def arms(self, at: float) -> ArmTable:
        with self._guard("arms"):
            keys = sorted(
                k.decode() for k in self._client.scan_iter(match=f"{self._base}*", count=500)
            )
        pairs = sorted(
            {tuple(k[len(self._base) :].split(":")[:2]) for k in keys if k.count(":") >= 2}
        )
        table: ArmTable = {}
        for surface, segment in pairs:
            sums = self.read(surface, segment, at)
            if sums:
                table[(surface, segment)] = sums
        return table

    def ping(self) -> bool:
        try:
            return bool(self._client.ping())
        except (RedisError, OSError):
            return False

    def close(self) -> None:
        if self._owns_client:
            self._client.close()
