"""The online side of attribution: served-list records, attributed touches and the counters.

Three things, kept together so one showing costs one write (one Redis round trip):

* **served-list records** (:mod:`feature_store.served_lists`) under their ``recommendation_id``,
  each for ``served_ttl_seconds`` — long enough for the clicks and purchases that echo the id;
* **touches**: the last attributed click or add-to-cart of an item by a customer, with its credit
  (source, surface, variant) and event time, for ``touch_ttl_seconds`` (the attribution window),
  so a later purchase of the item without an echo is credited too;
* **counters** per credit (source × surface × variant): impressions, clicks, add-to-carts,
  purchases, revenue; and the echoes that could not be attributed, by reason.

Two implementations pass the same contract tests (``tests/test_attribution_store.py``):
:class:`InMemoryAttributionStore` (one process, bounded) and :class:`RedisAttributionStore`
(shared by replicas: counters are Redis hash increments, so replicas add up). Every Redis failure
surfaces as :class:`~feature_store.errors.StoreUnavailable`.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Final, Protocol, runtime_checkable

import orjson
import redis
from redis.exceptions import RedisError

from .circuit import breaker_for
from .errors import DataFormatError
from .online_store import _text, _unavailable, redis_client, redis_errors
from .redis_batch import Outcome, Pending, RedisBatch, ScriptCall
from .served_lists import ServedList

__all__ = [
    "COUNTS",
    "AttributionStore",
    "Credit",
    "InMemoryAttributionStore",
    "RedisAttributionStore",
    "Touch",
]

#: A credit: (source, surface, variant); variant None outside experiments.
Credit = tuple[str, str, str | None]

#: The counters kept per credit (revenue and the sum of its squares — for the variance of revenue
#: per impression in experiment reports — are float sums, the others whole counts).
COUNTS: Final = (
    "impressions",
    "clicks",
    "add_to_carts",
    "purchases",
    "revenue",
    "revenue_squares",
)
_FLOAT_COUNTS: Final = ("revenue", "revenue_squares")

_SEP: Final = "|"

# KEYS: record, counters hash[, the customer's record index]; ARGV: record, TTL ms, id,
# then (counter field, impressions) pairs.
_PUT_SERVED: Final = """
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
if #KEYS == 3 then
    redis.call('SADD', KEYS[3], ARGV[3])
    redis.call('PEXPIRE', KEYS[3], ARGV[2])
end
for i = 4, #ARGV, 2 do
    redis.call('HINCRBY', KEYS[2], ARGV[i], ARGV[i + 1])
end
return 1
"""


@dataclass(frozen=True, slots=True)
class Touch:
    """An attributed click or add-to-cart: who gets the credit, and when it happened (epoch s);
    ``arm`` is the (strategy surface, segment) of the bandit that ranked the list, None when the
    list was not bandit-ranked — so a purchase credited through the window rewards that arm."""

    source: str
    surface: str
    variant: str | None
    at: float
    arm: tuple[str, str] | None = None

    @property
    def credit(self) -> Credit:
        return (self.source, self.surface, self.variant)

    def to_json(self) -> bytes:
        fields: list[object] = [self.source, self.surface, self.variant, self.at]
        if self.arm is not None:
            fields.extend(self.arm)
        return orjson.dumps(fields)

    @classmethod
    def from_json(cls, raw: bytes | str) -> Touch:
        try:
            fields = orjson.loads(raw)
            source, surface, variant, at = fields[:4]
            arm = (str(fields[4]), str(fields[5])) if len(fields) == 6 else None
            variant = None if variant is None else str(variant)
            return cls(str(source), str(surface), variant, float(at), arm)
        except (orjson.JSONDecodeError, TypeError, ValueError, IndexError) as exc:
            raise DataFormatError(f"malformed attribution touch: {exc!r}") from exc


@runtime_checkable
class AttributionStore(Protocol):
    served_ttl_seconds: float
    touch_ttl_seconds: float

    def put_served(
        self,
        recommendation_id: str,
        record: bytes,
        impressions: Mapping[Credit, int],
        customer_id: str | None = None,
        *,
        batch: RedisBatch | None = None,
    ) -> Pending[None] | None:
        """Keep one showing's record (JSON from :func:`feature_store.served_lists.stamp`) and
        count its impressions (positions shown per credit); ``customer_id`` (the one the record
        names) lets :meth:`erase_customer` find it.

        With a ``batch`` on the store's Redis client the write is queued on it (one round trip
        with the other parts' commands): the returned result raises ``StoreUnavailable`` when it
        failed, and the record is kept once the batch has run. Otherwise (None returned) it is
        written now."""
        ...

    def get_served(self, recommendation_id: str) -> ServedList | None:
        """The record, or None when unknown or expired (a malformed one reads as None)."""
        ...

    def add(self, counts: Mapping[Credit, Mapping[str, float]]) -> None:
        """Add to the counters (names from :data:`COUNTS`)."""
        ...

    def count_unattributed(self, reason: str, n: int = 1) -> None:
        """Count echoes that could not be attributed (unknown or expired id, bad position, …)."""
        ...

    def remember_touch(self, customer_id: str, item_id: str, touch: Touch) -> None:
        """Remember an attributed click / add-to-cart for ``touch_ttl_seconds``."""
        ...

    def touch(self, customer_id: str, item_id: str) -> Touch | None:
        """The last remembered touch of the item by the customer, or None."""
        ...

    def counts(self) -> dict[Credit, dict[str, float]]:
        """Every counter, per credit (all of :data:`COUNTS`, zeros filled in)."""
        ...

    def unattributed(self) -> dict[str, int]:
        """Unattributed echoes by reason."""
        ...

    def erase_customer(self, customer_id: str) -> None:
        """Forget the customer's touches and the records that name them."""
        ...

    def ping(self) -> bool: ...


def _check_ttls(served_ttl_seconds: float, touch_ttl_seconds: float) -> None:
    if served_ttl_seconds <= 0 or touch_ttl_seconds <= 0:
        raise ValueError(
            f"TTLs must be > 0, got served={served_ttl_seconds}, touch={touch_ttl_seconds}"
        )


def _field(credit: Credit, name: str) -> str:
    source, surface, variant = credit
    return _SEP.join((source, surface, variant or "", name))


def _parse_field(raw: str) -> tuple[Credit, str] | None:
    parts = raw.split(_SEP)
    if len(parts) != 4 or parts[3] not in COUNTS:
        return None
    return (parts[0], parts[1], parts[2] or None), parts[3]


def _zeros() -> dict[str, float]:
    return dict.fromkeys(COUNTS, 0.0)


# --------------------------------------------------------------------------------------------------
# In-process implementation
# --------------------------------------------------------------------------------------------------


class InMemoryAttributionStore:
    """Attribution state inside one process, bounded: at most ``max_records`` records and
    ``max_touches`` touches (the oldest go first), each expiring after its TTL on ``clock``
    (monotonic seconds; tests pass their own)."""

    def __init__(
        self,
        *,
        served_ttl_seconds: float,
        touch_ttl_seconds: float,
        max_records: int = 100_000,
        max_touches: int = 100_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        _check_ttls(served_ttl_seconds, touch_ttl_seconds)
        if max_records < 1 or max_touches < 1:
            raise ValueError("max_records and max_touches must be >= 1")
        self.served_ttl_seconds = served_ttl_seconds
        self.touch_ttl_seconds = touch_ttl_seconds
        self.max_records = max_records
        self.max_touches = max_touches
        self._clock = clock
        self._lock = threading.Lock()
        # id -> (expiry, record, customer it names); one TTL for all, so oldest = first to expire
        self._served: OrderedDict[str, tuple[float, bytes, str | None]] = OrderedDict()
        self._by_customer: dict[str, set[str]] = {}
        self._touches: OrderedDict[tuple[str, str], tuple[float, Touch]] = OrderedDict()
        self._counts: dict[Credit, dict[str, float]] = {}
        self._unattributed: dict[str, int] = {}

    def put_served(
        self,
        recommendation_id: str,
        record: bytes,
        impressions: Mapping[Credit, int],
        customer_id: str | None = None,
        *,
        batch: RedisBatch | None = None,
    ) -> Pending[None] | None:
        now = self._clock()
        with self._lock:
            self._served[recommendation_id] = (
                now + self.served_ttl_seconds,
                bytes(record),
                customer_id,
            )
            self._served.move_to_end(recommendation_id)
            if customer_id is not None:
                self._by_customer.setdefault(customer_id, set()).add(recommendation_id)
            while self._served and (
                len(self._served) > self.max_records or next(iter(self._served.values()))[0] <= now
            ):
                self._drop_oldest()
            for credit, n in impressions.items():
                self._counts.setdefault(credit, _zeros())["impressions"] += n
        return None

    def _drop_oldest(self) -> None:
        dropped, (_, _, customer_id) = self._served.popitem(last=False)
        if customer_id is not None:
            ids = self._by_customer.get(customer_id)
            if ids is not None:
                ids.discard(dropped)
                if not ids:
                    del self._by_customer[customer_id]

    def get_served(self, recommendation_id: str) -> ServedList | None:
        with self._lock:
            entry = self._served.get(recommendation_id)
        if entry is None or entry[0] <= self._clock():
            return None
        try:
            return ServedList.from_json(entry[1])
        except DataFormatError:
            return None

    def add(self, counts: Mapping[Credit, Mapping[str, float]]) -> None:
        with self._lock:
            for credit, values in counts.items():
                row = self._counts.setdefault(credit, _zeros())
                for name, value in values.items():
                    if name not in row:
                        raise ValueError(f"unknown counter {name!r}; known: {COUNTS}")
                    row[name] += value

    def count_unattributed(self, reason: str, n: int = 1) -> None:
        with self._lock:
            self._unattributed[reason] = self._unattributed.get(reason, 0) + n

    def remember_touch(self, customer_id: str, item_id: str, touch: Touch) -> None:
        key = (customer_id, item_id)
        with self._lock:
            self._touches[key] = (self._clock() + self.touch_ttl_seconds, touch)
            self._touches.move_to_end(key)
            while len(self._touches) > self.max_touches:
                self._touches.popitem(last=False)

    def touch(self, customer_id: str, item_id: str) -> Touch | None:
        with self._lock:
            entry = self._touches.get((customer_id, item_id))
        if entry is None or entry[0] <= self._clock():
            return None
        return entry[1]

    def counts(self) -> dict[Credit, dict[str, float]]:
        with self._lock:
            return {credit: dict(row) for credit, row in self._counts.items()}

    def unattributed(self) -> dict[str, int]:
        with self._lock:
            return dict(self._unattributed)

    def erase_customer(self, customer_id: str) -> None:
        with self._lock:
            for key in [k for k in self._touches if k[0] == customer_id]:
                del self._touches[key]
            for recommendation_id in self._by_customer.pop(customer_id, set()):
                self._served.pop(recommendation_id, None)

    def ping(self) -> bool:
        return True


# --------------------------------------------------------------------------------------------------
# Redis implementation (shared by replicas)
# --------------------------------------------------------------------------------------------------


class RedisAttributionStore:
    """Attribution state in Redis, shared by every replica. Keys (under ``prefix``):

    * ``{prefix}served:{recommendation_id}``  the record's JSON, expiring after its TTL
    * ``{prefix}served_by:{customer_id}``     set of the ids of records naming the customer
      (for erasure), expiring with the newest of them
    * ``{prefix}touch:{customer_id}``         hash item id → touch JSON; the hash expires
      ``touch_ttl_seconds`` after the customer's last touch, and each touch's event time is
      checked against the window when it is used
    * ``{prefix}attribution:counts``          hash ``source|surface|variant|counter`` → number
      (HINCRBY / HINCRBYFLOAT: replicas add up)
    * ``{prefix}attribution:unattributed``    hash reason → count
    """

    def __init__(
        self,
        client: redis.Redis | None = None,
        *,
        url: str | None = None,
        prefix: str = "lb:",
        served_ttl_seconds: float,
        touch_ttl_seconds: float,
        socket_timeout: float = 0.25,
    ) -> None:
        _check_ttls(served_ttl_seconds, touch_ttl_seconds)
        self._owns_client = client is None
        self._client, self._where = redis_client(
            "RedisAttributionStore", client, url, socket_timeout
        )
        self.prefix = prefix
        self.served_ttl_seconds = served_ttl_seconds
        self.touch_ttl_seconds = touch_ttl_seconds
        self._put_served = self._client.register_script(_PUT_SERVED)
        self._counts_key = f"{prefix}attribution:counts"
        self._unattributed_key = f"{prefix}attribution:unattributed"

    @property
    def client(self) -> redis.Redis:
        """The Redis client (shared with the online store when built on its client)."""
        return self._client

    def _served_key(self, recommendation_id: str) -> str:
        return f"{self.prefix}served:{recommendation_id}"

    def _touch_key(self, customer_id: str) -> str:
        return f"{self.prefix}touch:{customer_id}"

    def _guard(self, operation: str) -> AbstractContextManager[None]:
        return redis_errors("attribution store", self._where, operation)

    @staticmethod
    def _ms(seconds: float) -> int:
        return max(1, round(seconds * 1000))

    def _by_customer_key(self, customer_id: str) -> str:
        return f"{self.prefix}served_by:{customer_id}"

    def put_served(
        self,
        recommendation_id: str,
        record: bytes,
        impressions: Mapping[Credit, int],
        customer_id: str | None = None,
        *,
        batch: RedisBatch | None = None,
    ) -> Pending[None] | None:
        # One EVALSHA: one round trip and about half the client CPU of a 5-command pipeline.
        keys = [self._served_key(recommendation_id), self._counts_key]
        if customer_id is not None:
            keys.append(self._by_customer_key(customer_id))
        args: list[bytes | str | int] = [
            record,
            self._ms(self.served_ttl_seconds),
            recommendation_id,
        ]
        for credit, n in impressions.items():
            args.append(_field(credit, "impressions"))
            args.append(n)
        breaker = breaker_for(self._where)
        if batch is not None and batch.client is self._client and not breaker.is_open:

            def written(outcome: Outcome) -> None:
                failed = outcome if isinstance(outcome, BaseException) else outcome[0]
                if isinstance(failed, BaseException):
                    raise _unavailable(
                        breaker, "attribution store", self._where, "put_served", failed
                    )

            return batch.add([ScriptCall(self._put_served, keys, args)], written)
        with self._guard("put_served"):
            self._put_served(keys=keys, args=args)
        return None

    def get_served(self, recommendation_id: str) -> ServedList | None:
        with self._guard("get_served"):
            raw = self._client.get(self._served_key(recommendation_id))
        if raw is None:
            return None
        try:
            return ServedList.from_json(raw)
        except DataFormatError:
            return None

    def add(self, counts: Mapping[Credit, Mapping[str, float]]) -> None:
        pipe = self._client.pipeline(transaction=False)
        for credit, values in counts.items():
            for name, value in values.items():
                if name not in COUNTS:
                    raise ValueError(f"unknown counter {name!r}; known: {COUNTS}")
                if name in _FLOAT_COUNTS:
                    pipe.hincrbyfloat(self._counts_key, _field(credit, name), float(value))
                else:
                    pipe.hincrby(self._counts_key, _field(credit, name), int(value))
        with self._guard("add"):
            pipe.execute()

    def count_unattributed(self, reason: str, n: int = 1) -> None:
        with self._guard("count_unattributed"):
            self._client.hincrby(self._unattributed_key, reason, n)

    def remember_touch(self, customer_id: str, item_id: str, touch: Touch) -> None:
        key = self._touch_key(customer_id)
        pipe = self._client.pipeline(transaction=True)
        pipe.hset(key, item_id, touch.to_json())
        pipe.pexpire(key, self._ms(self.touch_ttl_seconds))
        with self._guard("remember_touch"):
            pipe.execute()

    def touch(self, customer_id: str, item_id: str) -> Touch | None:
        with self._guard("touch"):
            raw = self._client.hget(self._touch_key(customer_id), item_id)
        if raw is None:
            return None
        try:
            return Touch.from_json(raw)
        except DataFormatError:
            return None

    def counts(self) -> dict[Credit, dict[str, float]]:
        with self._guard("counts"):
            raw = self._client.hgetall(self._counts_key)
        out: dict[Credit, dict[str, float]] = {}
        for field, value in raw.items():
            parsed = _parse_field(_text(field))
            if parsed is None:
                continue
            credit, name = parsed
            out.setdefault(credit, _zeros())[name] = float(_text(value))
        return out

    def unattributed(self) -> dict[str, int]:
        with self._guard("unattributed"):
            raw = self._client.hgetall(self._unattributed_key)
        return {_text(k): int(_text(v)) for k, v in raw.items()}

    def erase_customer(self, customer_id: str) -> None:
        index = self._by_customer_key(customer_id)
        with self._guard("erase_customer"):
            ids = [_text(m) for m in self._client.smembers(index)]
            keys = [self._served_key(i) for i in ids]
            self._client.delete(self._touch_key(customer_id), index, *keys)

    def ping(self) -> bool:
        try:
            return bool(self._client.ping())
        except RedisError:
            return False

    def close(self) -> None:
        if self._owns_client:
            self._client.close()
