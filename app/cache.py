"""Response cache: serialized response bodies grouped per customer.

A *group* is everything cached for one customer (its feeds, lists, pages); a *key* names one
response inside the group. One event for the customer drops the whole group with
:meth:`Cache.invalidate`. Group and key names come from the typed keys of
:mod:`app.response_cache`; the cache only stores bytes.

Two implementations:

* :class:`InProcessCache` — the embedded default: an LRU over groups, per-entry expiry.
* :class:`RedisCache` — shared by replicas: one Redis hash per group. A Redis outage is handled
  here: the cache answers "miss" and skips writes without waiting on Redis until ``retry_interval``
  has passed, then tries again and recovers by itself. It never raises to the caller. Groups whose
  invalidation could not reach Redis are remembered and dropped first when Redis answers again, so
  no list that an event made stale survives the outage.

A response computed *before* an event must not be stored *after* that event's invalidation: a
caller reads the group's :meth:`Cache.generation` before computing and passes it to
:meth:`Cache.set`, which stores only when no invalidation of the group happened since (compare on
store). In memory the generation is a global invalidation counter, each invalidated group
remembering when it last was (bounded: forgotten groups count as invalidated at the newest forgotten
one, which can only refuse a store); in Redis it is a per-group key (named by a hash of the group,
so no key names an erased customer) set from a global counter by the invalidation, compared inside
the storing script.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import struct
import threading
import time
from collections import OrderedDict
from collections.abc import Iterable
from typing import Final, Protocol, TypeAlias, runtime_checkable

import redis
from redis.backoff import NoBackoff
from redis.exceptions import RedisError
from redis.retry import Retry

from feature_store.circuit import Admission, CircuitBreaker
from feature_store.online_store import UNREACHABLE
from feature_store.redis_batch import Outcome, Pending, RedisBatch, ScriptCall

logger = logging.getLogger("lookbook.cache")

#: Errors that mean "Redis cannot be reached now" (as opposed to a rejected command).
_UNREACHABLE: Final = UNREACHABLE

# Stored value = 8-byte big-endian expiry (unix ms) + body: entries expire one by one even though
# Redis expires only whole hashes (HEXPIRE needs Redis 7.4).
_EXPIRY: Final = struct.Struct(">Q")

#: A group's generation, read before computing a value and compared when storing it (``None``:
#: unknown, so the value is not stored).
Generation: TypeAlias = object

#: What :meth:`Cache.lookup` finds: the cached value (None: a miss) and the group's generation.
Found: TypeAlias = tuple[bytes | None, Generation]

# Unless ARGV[4] is empty, store only if the group's generation and the cache's epoch (KEYS[2],
# KEYS[3]) still read ARGV[4] and ARGV[5]. HSET the entry, then make the hash live at least as long
# as that entry (never shorten it).
_SET_SCRIPT: Final = """
if ARGV[4] ~= '' then
    if (redis.call('GET', KEYS[2]) or '0') ~= ARGV[4] or (redis.call('GET', KEYS[3]) or '0') ~= ARGV[5] then
        return 0
    end
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
local ttl = redis.call('PTTL', KEYS[1])
local wanted = tonumber(ARGV[3])
if ttl < wanted then
    redis.call('PEXPIRE', KEYS[1], wanted)
end
return 1
"""

# The value of ARGV[1] in a group's hash (KEYS[1]), the group's generation and the epoch (KEYS[2],
# KEYS[3]): one reply to parse (a missing value is a nil).
_LOOKUP_SCRIPT: Final = """
return {
    redis.call('HGET', KEYS[1], ARGV[1]),
    redis.call('GET', KEYS[2]) or '0',
    redis.call('GET', KEYS[3]) or '0',
}
"""

# Drop a group (KEYS[1]) and move its generation (KEYS[2]) to a fresh value of the global counter
# (KEYS[3]): values never repeat, so a generation read before cannot match again.
_INVALIDATE_SCRIPT: Final = """
redis.call('DEL', KEYS[1])
local seq = redis.call('INCR', KEYS[3])
redis.call('SET', KEYS[2], seq, 'PX', tonumber(ARGV[1]))
return seq
"""


@runtime_checkable
class Cache(Protocol):
    """Bytes cached per (group, key), invalidated per group."""

    backend: str  # "memory" or "redis"

    def get(self, group: str, key: str) -> bytes | None:
        """The cached value, or ``None`` (missing, expired, or the backend is unavailable)."""
        ...

    def generation(self, group: str) -> Generation:
        """The group's generation now: read it before computing a value to :meth:`set`."""
        ...

    def batch(self, *, transaction: bool = False) -> RedisBatch | None:
        """A batch on the cache's Redis client, for :meth:`lookup` or :meth:`set` and the other
        stores on the same client to share one round trip (the caller executes it); None when
        there is nothing to share (in process, or Redis is down)."""
        ...

    def lookup(self, group: str, key: str, batch: RedisBatch | None = None) -> Pending[Found]:
        """:meth:`get` and :meth:`generation` at once (one round trip in Redis; the generation is
        of use on a miss). With a ``batch`` from :meth:`batch` the reads are queued on it and the
        result is known once it has run; without, at once."""
        ...

    def set(
        self,
        group: str,
        key: str,
        value: bytes,
        ttl_seconds: float,
        *,
        generation: Generation = None,
        check: bool = False,
        batch: RedisBatch | None = None,
    ) -> None:
        """Cache ``value`` for ``ttl_seconds`` (``<= 0`` removes the entry). With ``check``, only
        if the group was not invalidated since ``generation`` was read. With a ``batch`` from
        :meth:`batch` the write is queued on it (done when the caller executes it). Never
        raises."""
        ...

    def invalidate(self, group: str) -> None:
        """Drop every entry of the group. Never raises."""
        ...

    def stats(self) -> dict[str, int]:
        """Counters since start: ``hits``, ``misses`` (every ``None`` from get) and ``errors``
        (backend operations that failed)."""
        ...

    def available(self) -> bool:
        """True when the backend is usable now."""
        ...

    def close(self) -> None:
        """Release the backend's resources."""
        ...


# --------------------------------------------------------------------------------------------------
# In-process cache
# --------------------------------------------------------------------------------------------------


class InProcessCache:
    """Thread-safe LRU over groups (at most ``max_groups``), each entry with its own expiry.

    A group holds at most ``max_entries_per_group`` entries (the oldest written goes first).
    Expired entries are reclaimed without being read: once as many writes as there were groups
    after the last sweep (at least ``SWEEP_MIN_WRITES``) have been made, the write sweeps every
    group — amortised O(1) per write.
    """

    SWEEP_MIN_WRITES: Final = 1_000

    backend: str = "memory"

    def __init__(self, max_groups: int = 100_000, *, max_entries_per_group: int = 256) -> None:
        if max_groups < 1:
            raise ValueError(f"max_groups must be >= 1, got {max_groups}")
        if max_entries_per_group < 1:
            raise ValueError(f"max_entries_per_group must be >= 1, got {max_entries_per_group}")
        self.max_groups = max_groups
        self.max_entries_per_group = max_entries_per_group
        self._lock = threading.Lock()
        # group -> key -> (expiry on the monotonic clock, value); group order = LRU order
        self._groups: OrderedDict[str, dict[str, tuple[float, bytes]]] = OrderedDict()
        # invalidation counter; group -> its value at the group's last invalidation (LRU-bounded
        # by max_groups); a forgotten group counts as invalidated at ``_forgotten``
        self._invalidations = 0
        self._invalidated: OrderedDict[str, int] = OrderedDict()
        self._forgotten = 0
        self._writes_since_sweep = 0
        self._groups_after_sweep = 0
        self._hits = 0
        self._misses = 0

    def get(self, group: str, key: str) -> bytes | None:
        found = self.peek(group, key)
        if found is None:
            with self._lock:
                self._misses += 1
        return found

    def peek(self, group: str, key: str) -> bytes | None:
        """:meth:`get` that counts a hit but not a miss (a caller that will :meth:`get` or
        :meth:`lookup` the key again when it is missing)."""
        now = time.monotonic()
        with self._lock:
            entries = self._groups.get(group)
            entry = entries.get(key) if entries is not None else None
            if entry is None or entry[0] <= now:
                if entry is not None and entries is not None:
                    del entries[key]
                    if not entries:
                        del self._groups[group]
                return None
            self._groups.move_to_end(group)
            self._hits += 1
            return entry[1]

    def generation(self, group: str) -> Generation:
        with self._lock:
            return self._invalidations

    def batch(self, *, transaction: bool = False) -> RedisBatch | None:
        return None

    def lookup(self, group: str, key: str, batch: RedisBatch | None = None) -> Pending[Found]:
        generation = self.generation(group)  # before the value: never newer than what it guards
        return Pending.done((self.get(group, key), generation))

    def set(
        self,
        group: str,
        key: str,
        value: bytes,
        ttl_seconds: float,
        *,
        generation: Generation = None,
        check: bool = False,
        batch: RedisBatch | None = None,
    ) -> None:
        now = time.monotonic()
        with self._lock:
            if check and ttl_seconds > 0:
                last = self._invalidated.get(group, self._forgotten)
                if not isinstance(generation, int) or last > generation:
                    return  # invalidated since the value was computed
            entries = self._groups.get(group)
            if ttl_seconds <= 0:
                if entries is not None:
                    entries.pop(key, None)
                    if not entries:
                        del self._groups[group]
                return
            if entries is None:
                entries = self._groups[group] = {}
            else:
                self._groups.move_to_end(group)
                for stale in [k for k, (expiry, _) in entries.items() if expiry <= now]:
                    del entries[stale]
                entries.pop(key, None)  # re-insert: newest last
            entries[key] = (now + ttl_seconds, bytes(value))
            self._writes_since_sweep += 1
            if self._writes_since_sweep >= max(self.SWEEP_MIN_WRITES, self._groups_after_sweep):
                self._sweep_locked(now)
            while len(entries) > self.max_entries_per_group:
                del entries[next(iter(entries))]
            while len(self._groups) > self.max_groups:
                self._groups.popitem(last=False)

    def _sweep_locked(self, now: float) -> None:
        """Drop every expired entry, and every group left empty."""
        self._writes_since_sweep = 0
        for group in list(self._groups):
            entries = self._groups[group]
            for stale in [k for k, (expiry, _) in entries.items() if expiry <= now]:
                del entries[stale]
            if not entries:
                del self._groups[group]
        self._groups_after_sweep = len(self._groups)

    def entries(self) -> int:
        """Number of entries held (expired ones not yet reclaimed included)."""
        with self._lock:
            return sum(len(entries) for entries in self._groups.values())

    def invalidate(self, group: str) -> None:
        with self._lock:
            self._groups.pop(group, None)
            self._invalidations += 1
            self._invalidated[group] = self._invalidations
            self._invalidated.move_to_end(group)
            while len(self._invalidated) > self.max_groups:
                _, seq = self._invalidated.popitem(last=False)
                self._forgotten = max(self._forgotten, seq)

    def stats(self) -> dict[str, int]:
        with self._lock:
            return {"hits": self._hits, "misses": self._misses, "errors": 0}

    def available(self) -> bool:
        return True

    def close(self) -> None:
        with self._lock:
            self._groups.clear()

    def __len__(self) -> int:
        """Number of groups held (expired entries are dropped when read or swept)."""
        with self._lock:
            return len(self._groups)


# --------------------------------------------------------------------------------------------------
# Redis cache
# --------------------------------------------------------------------------------------------------


class RedisCache:
    """One Redis hash per group (``{prefix}{group}``), fields = keys; survives Redis outages.

    While Redis is down (a connection error or a timeout after ``socket_timeout``), every call
    returns at once: ``get`` misses, ``set`` is skipped, ``invalidate`` is remembered. After
    ``retry_interval`` seconds one caller probes Redis again — first deleting the remembered groups —
    and on success the cache is back. Nothing here raises to the caller.
    """

    backend: str = "redis"

    #: Remembered invalidations beyond this many are replaced by dropping every group on recovery.
    MAX_PENDING_INVALIDATIONS: Final = 100_000
    _DELETE_CHUNK: Final = 1_000

    def __init__(
        self,
        url: str | None = None,
        *,
        client: redis.Redis | None = None,
        prefix: str = "lb:cache:",
        socket_timeout: float = 0.05,
        retry_interval: float = 1.0,
        generation_ttl_seconds: float = 3600.0,
    ) -> None:
        if socket_timeout <= 0:
            raise ValueError(f"socket_timeout must be > 0, got {socket_timeout}")
        if retry_interval < 0:
            raise ValueError(f"retry_interval must be >= 0, got {retry_interval}")
        if (client is None) == (url is None):
            raise ValueError("give RedisCache a url or a redis client (one of them)")
        self.prefix = prefix
        self.retry_interval = retry_interval
        self._owns_client = client is None
        if client is None:
            assert url is not None
            self._url = url
            self._client = redis.Redis.from_url(
                url,
                socket_timeout=socket_timeout,
                socket_connect_timeout=socket_timeout,
                retry=Retry(NoBackoff(), 0),  # outage handling is ours: fail fast, never stall
            )
        else:  # shared with the online store: one round trip can carry both (RedisBatch)
            self._client = client
            self._url = _describe(client)
        self._set_script = self._client.register_script(_SET_SCRIPT)
        self._lookup_script = self._client.register_script(_LOOKUP_SCRIPT)
        self._invalidate_script = self._client.register_script(_INVALIDATE_SCRIPT)
        # a group's generation outlives any computation in flight; once expired it reads "0",
        # which no later invalidation gives back
        self._generation_ttl_ms = max(1, round(generation_ttl_seconds * 1000))
        self._seq_key = f"{prefix}~seq"
        self._epoch_key = f"{prefix}~epoch"
        self._lock = threading.Lock()
        self._breaker = CircuitBreaker(retry_interval)
        self._pending: set[str] = set()  # groups whose invalidation has not reached Redis
        self._flush_all = False  # too many pending groups: drop every group on recovery
        self._hits = 0
        self._misses = 0
        self._errors = 0

    def _key(self, group: str) -> str:
        return f"{self.prefix}{group}"

    def _generation_key(self, group: str) -> str:
        # hashed: an erasure invalidates the customer's group, and no key may name them after it
        digest = hashlib.blake2b(group.encode(), digest_size=16).hexdigest()
        return f"{self.prefix}~gen:{digest}"

    # -- public API ----------------------------------------------------------------------------

    @property
    def client(self) -> redis.Redis:
        """The Redis client (shared with the online store when built on its client)."""
        return self._client

    def get(self, group: str, key: str) -> bytes | None:
        if self._usable():
            try:
                raw = self._client.hget(self._key(group), key)
            except _UNREACHABLE as exc:
                self._mark_down(exc)
            except RedisError as exc:
                self._count_error("get", exc)
            else:
                value = _decode(raw)
                if value is not None:
                    with self._lock:
                        self._hits += 1
                    return value
        with self._lock:
            self._misses += 1
        return None

    def generation(self, group: str) -> Generation:
        """``(group generation, epoch)`` as stored, or ``None`` when Redis cannot say."""
        if not self._usable():
            return None
        try:
            found = self._client.mget([self._generation_key(group), self._epoch_key])
        except _UNREACHABLE as exc:
            self._mark_down(exc)
            return None
        except RedisError as exc:
            self._count_error("generation", exc)
            return None
        return tuple(_text(v) for v in found)

    def batch(self, *, transaction: bool = False) -> RedisBatch | None:
        if not self._usable():
            return None
        return RedisBatch(self._client, transaction=transaction)

    def lookup(self, group: str, key: str, batch: RedisBatch | None = None) -> Pending[Found]:
        own = batch is None or batch.client is not self._client
        if own:
            batch = self.batch()
            if batch is None:
                with self._lock:
                    self._misses += 1
                return Pending.done((None, None))
        assert batch is not None

        def found(outcome: Outcome) -> Found:
            replies = outcome if isinstance(outcome, BaseException) else outcome[0]
            if isinstance(replies, BaseException):
                self._failed("lookup", replies)
                with self._lock:
                    self._misses += 1
                return None, None
            raw, *generation = replies
            value = _decode(raw)
            with self._lock:
                if value is None:
                    self._misses += 1
                else:
                    self._hits += 1
            return value, tuple(_text(v) for v in generation)

        keys = [self._key(group), self._generation_key(group), self._epoch_key]
        pending = batch.add([ScriptCall(self._lookup_script, keys, [key])], found)
        if own:
            batch.execute()
        return pending

    def set(
        self,
        group: str,
        key: str,
        value: bytes,
        ttl_seconds: float,
        *,
        generation: Generation = None,
        check: bool = False,
        batch: RedisBatch | None = None,
    ) -> None:
        if (
            check
            and ttl_seconds > 0
            and not (isinstance(generation, tuple) and len(generation) == 2)
        ):
            return  # generation unknown: the value may be stale
        if batch is not None and batch.client is self._client:
            self._queue_set(batch, group, key, value, ttl_seconds, generation, check)
            return
        if not self._usable():
            return
        try:
            if ttl_seconds <= 0:
                self._client.hdel(self._key(group), key)
                return
            keys, args = self._set_call(group, key, value, ttl_seconds, generation, check)
            self._set_script(keys=keys, args=args)
        except _UNREACHABLE as exc:
            self._mark_down(exc)
        except RedisError as exc:
            self._count_error("set", exc)

    def _set_call(
        self,
        group: str,
        key: str,
        value: bytes,
        ttl_seconds: float,
        generation: Generation,
        check: bool,
    ) -> tuple[list[str], list[bytes | str | int]]:
        """The keys and arguments of the storing script."""
        ttl_ms = max(1, round(ttl_seconds * 1000))
        expires_ms = int(time.time() * 1000) + ttl_ms
        expected = generation if check and isinstance(generation, tuple) else ("", "")
        return (
            [self._key(group), self._generation_key(group), self._epoch_key],
            [key, _EXPIRY.pack(expires_ms) + value, ttl_ms, *expected],
        )

    def _queue_set(
        self,
        batch: RedisBatch,
        group: str,
        key: str,
        value: bytes,
        ttl_seconds: float,
        generation: Generation,
        check: bool,
    ) -> None:
        """:meth:`set` queued on ``batch``; its outcome counted once the batch has run."""
        command: tuple[object, ...] | ScriptCall
        if ttl_seconds <= 0:
            command = ("HDEL", self._key(group), key)
        else:
            keys, args = self._set_call(group, key, value, ttl_seconds, generation, check)
            command = ScriptCall(self._set_script, keys, args)

        def stored(outcome: Outcome) -> None:
            failed = outcome if isinstance(outcome, BaseException) else outcome[0]
            if isinstance(failed, BaseException):
                self._failed("set", failed)

        pending = batch.add([command], stored)
        batch.after(pending.result)

    def invalidate(self, group: str) -> None:
        if not self._usable(pending_group=group):
            return
        try:
            self._invalidate_one(group)
        except _UNREACHABLE as exc:
            self._remember([group])
            self._mark_down(exc)
        except RedisError as exc:
            self._remember([group])
            self._count_error("invalidate", exc)

    def stats(self) -> dict[str, int]:
        with self._lock:
            return {"hits": self._hits, "misses": self._misses, "errors": self._errors}

    def available(self) -> bool:
        if not self._usable():
            return False
        try:
            self._client.ping()
        except (RedisError, *_UNREACHABLE) as exc:
            self._mark_down(exc)
            return False
        return True

    @property
    def is_down(self) -> bool:
        """True while the cache bypasses Redis after a failure."""
        return self._breaker.is_open

    def close(self) -> None:
        if self._owns_client:  # a shared client is closed by its owner
            self._client.close()

    # -- outage handling -----------------------------------------------------------------------

    def _usable(self, pending_group: str | None = None) -> bool:
        """May this call use Redis now? Probes after ``retry_interval`` and flushes remembered
        invalidations before anything else; when Redis may not be used, ``pending_group`` is
        remembered (in the same critical section as the decision)."""
        with self._lock:
            admission = self._breaker.admit()
            if admission is Admission.OPEN:
                if pending_group is not None:
                    self._remember_locked([pending_group])
                return False
            # A probing caller goes on; the others keep bypassing Redis until it is done.
            probing = admission is Admission.PROBE
            pending = set(self._pending)
            flush_all = self._flush_all
        if pending or flush_all or probing:
            try:
                if flush_all:
                    self._delete_all_groups()
                self._delete_groups(pending)
                if probing and not (pending or flush_all):
                    self._client.ping()
            except (RedisError, *_UNREACHABLE) as exc:
                if pending_group is not None:
                    self._remember([pending_group])
                self._mark_down(exc)
                return False
            with self._lock:
                self._pending -= pending
                if flush_all:
                    self._flush_all = False
                if probing:
                    self._breaker.succeeded()
            if probing:
                logger.info(
                    "Redis cache at %s is back (%d remembered invalidations applied)",
                    self._url,
                    len(pending),
                )
        return True

    def _invalidate_one(self, group: str) -> None:
        self._invalidate_script(
            keys=[self._key(group), self._generation_key(group), self._seq_key],
            args=[self._generation_ttl_ms],
        )

    def _delete_groups(self, groups: Iterable[str]) -> None:
        groups = list(groups)
        for start in range(0, len(groups), self._DELETE_CHUNK):
            pipe = self._client.pipeline(transaction=False)
            for group in groups[start : start + self._DELETE_CHUNK]:
                self._invalidate_script(
                    keys=[self._key(group), self._generation_key(group), self._seq_key],
                    args=[self._generation_ttl_ms],
                    client=pipe,
                )
            pipe.execute()

    def _delete_all_groups(self) -> None:
        # a new epoch first: no value computed before this flush can be stored after it
        self._client.incr(self._epoch_key)
        batch: list[bytes | str] = []
        epoch_key = self._epoch_key.encode()
        for key in self._client.scan_iter(match=_glob_escape(self.prefix) + "*", count=1_000):
            if key == epoch_key:
                continue
            batch.append(key)
            if len(batch) >= self._DELETE_CHUNK:
                self._client.delete(*batch)
                batch = []
        if batch:
            self._client.delete(*batch)
        logger.warning("Redis cache at %s: dropped every cached group after an outage", self._url)

    def _remember(self, groups: Iterable[str]) -> None:
        with self._lock:
            self._remember_locked(groups)

    def _remember_locked(self, groups: Iterable[str]) -> None:
        if self._flush_all:
            return
        self._pending.update(groups)
        if len(self._pending) > self.MAX_PENDING_INVALIDATIONS:
            self._pending.clear()
            self._flush_all = True

    def _mark_down(self, exc: BaseException) -> None:
        with self._lock:
            self._errors += 1
        if self._breaker.failed():
            logger.warning(
                "Redis cache at %s unreachable (%s: %s); serving uncached, retrying every %.2fs",
                self._url,
                type(exc).__name__,
                exc,
                self.retry_interval,
            )
        # Drop every pooled connection: after a Redis restart they are all dead, and the probe
        # must not trip over one of them.
        # Connections other threads are using are left to them (closing those under their feet
        # breaks their commands); they are dropped when they fail or are returned.
        with contextlib.suppress(RedisError, OSError):
            self._client.connection_pool.disconnect(inuse_connections=False)

    def _failed(self, operation: str, exc: BaseException) -> None:
        """A batched call's failure: Redis unreachable, or a command it refused."""
        if isinstance(exc, _UNREACHABLE):
            self._mark_down(exc)
        else:
            self._count_error(operation, exc)

    def _count_error(self, operation: str, exc: BaseException) -> None:
        with self._lock:
            self._errors += 1
        logger.warning("Redis cache at %s: %s failed: %s", self._url, operation, exc)


def _decode(raw: bytes | str | None) -> bytes | None:
    """The body of a stored value, or None when absent, expired or not ours."""
    if raw is None or isinstance(raw, str) or len(raw) < _EXPIRY.size:
        return None
    (expires_ms,) = _EXPIRY.unpack_from(raw)
    if expires_ms <= time.time() * 1000:
        return None
    return raw[_EXPIRY.size :]


def _text(raw: bytes | str | None) -> str:
    if raw is None:
        return "0"
    return raw.decode() if isinstance(raw, bytes) else str(raw)


def _describe(client: redis.Redis) -> str:
    kwargs = client.connection_pool.connection_kwargs
    if "path" in kwargs:
        return f"unix://{kwargs['path']}"
    return f"redis://{kwargs.get('host', '?')}:{kwargs.get('port', '?')}/{kwargs.get('db', 0)}"


def _glob_escape(text: str) -> str:
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)
