"""Online store: what the service needs to know about customers and items between two trainings.

Two implementations pass the same contract tests (``tests/test_online_store.py``):
:class:`InMemoryOnlineStore` (the embedded default) and :class:`RedisOnlineStore` (shared by
replicas). Each also holds the customers' online profile states (``store.profile_states``), so a
request reads everything it needs about a customer in one call, :meth:`OnlineStore.customer_state`.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections import OrderedDict, deque
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from itertools import islice
from typing import Any, Final, Protocol, runtime_checkable

import orjson
import redis
from pydantic import ValidationError
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.retry import Retry

from .circuit import Admission, CircuitBreaker, breaker_for
from .errors import DataFormatError, InvalidEvent, StoreUnavailable
from .profiles import InMemoryProfileStates, ProfileStateStore
from .redis_batch import Outcome, Pending, RedisBatch, ScriptCall
from .schema import Interaction, InteractionType


@dataclass(frozen=True, slots=True)
class CustomerState:
    """Everything the online store knows about one customer, read at once."""

    customer_id: str
    consent: bool | None  # the flag set through the API; None when never set
    profile_state: dict[str, Any] | None  # the online profile state (None: none written yet)
    recent: tuple[Interaction, ...]  # newest first
    purchased: frozenset[str]  # item ids bought online and not returned
    erased_at: datetime | None = None  # the customer's latest erasure, by any replica


@runtime_checkable
class OnlineStore(Protocol):
    """Recent interactions per customer, purchased set, consent, profile states, item lookups."""

    @property
    def profile_states(self) -> ProfileStateStore:
        """The customers' online profile states, kept in the same backend."""
        ...

    def customer_state(self, customer_id: str, n_recent: int = 50) -> CustomerState:
        """Consent, profile state, the ``n_recent`` most recent interactions and the purchased
        set of one customer, in one read (one round trip for Redis)."""
        ...

    def queue_customer_state(
        self, batch: RedisBatch, customer_id: str, n_recent: int = 50
    ) -> Pending[CustomerState] | None:
        """:meth:`customer_state` queued on ``batch`` (another part's round trip, e.g. the
        response cache's lookup) when the store shares its Redis client and Redis is not known
        to be down; its result raises what :meth:`customer_state` would. None when it cannot
        join (in process, another client, Redis down): call :meth:`customer_state`."""
        ...

    def record(self, events: Sequence[Interaction]) -> None:
        """Apply accepted events: append to the customer's recent list (newest first, capped),
        add purchases to (and remove returns from) the purchased set."""
        ...

    def recent(self, customer_id: str, n: int = 50) -> list[Interaction]:
        """The customer's ``n`` most recent interactions, newest first."""
        ...

    def purchased(self, customer_id: str) -> set[str]:
        """Item ids the customer bought (online, since the store was filled) and did not return."""
        ...

    def put_items(self, items: Iterable[dict[str, Any]]) -> None:
        """Insert or replace item records (each has ``item_id``)."""
        ...

    def get_item(self, item_id: str) -> dict[str, Any] | None: ...

    def get_items(self, item_ids: Sequence[str]) -> list[dict[str, Any] | None]: ...

    def set_consent(self, customer_id: str, personalization: bool) -> None:
        """Record the customer's personalization consent (seen by every replica)."""
        ...

    def consent(self, customer_id: str) -> bool | None:
        """The consent recorded online, or None when the customer never set one."""
        ...

    def erase_customer(self, customer_id: str, erased_at: datetime | None = None) -> None:
        """Remove everything the store holds about the customer (consent flag included) and,
        with ``erased_at``, remember that the customer was erased then (every replica reads it
        in :meth:`customer_state` and :meth:`erased_at`, so none serves its copy of older data)."""
        ...

    def erased_at(self, customer_id: str) -> datetime | None:
        """When the customer was last erased (through any replica), or None."""
        ...

    def ping(self) -> bool:
        """True when the backend answers."""
        ...


# --------------------------------------------------------------------------------------------------
# Shared helpers
# --------------------------------------------------------------------------------------------------

_log = logging.getLogger("lookbook.online_store")

_JSON_OPTIONS: Final = orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS


def _json_default(value: object) -> object:
    """Serialise what orjson does not know natively (pandas timestamps, numpy scalars, sets)."""
    if isinstance(value, set | frozenset):
        return sorted(value, key=str)
    if type(value).__name__ in ("NAType", "NaTType"):  # pandas missing values
        return None
    isoformat = getattr(value, "isoformat", None)
    if callable(isoformat):
        return isoformat()
    for method in ("tolist", "item"):  # numpy arrays of any dtype, numpy / pandas scalars
        convert = getattr(value, method, None)
        if callable(convert):
            return convert()
    raise TypeError(f"cannot serialise {type(value).__name__} to JSON")


def _item_json(item: Mapping[str, Any]) -> tuple[str, bytes]:
    """``(item_id, JSON bytes)`` of one item record; rejects records without an ``item_id``."""
    raw_id = item.get("item_id")
    if raw_id is None or str(raw_id).strip() == "":
        raise DataFormatError("item record has no item_id", column="item_id")
    item_id = str(raw_id)
    try:
        payload = orjson.dumps(
            {**item, "item_id": item_id}, default=_json_default, option=_JSON_OPTIONS
        )
    except TypeError as exc:
        raise DataFormatError(
            f"item {item_id!r} cannot be stored as JSON: {exc}", column="item_id"
        ) from exc
    return item_id, payload


def _check_events(events: Sequence[Interaction]) -> None:
    for position, event in enumerate(events):
        if not isinstance(event, Interaction):
            raise InvalidEvent(
                f"event {position} of the batch is a {type(event).__name__}, not an Interaction"
            )


# --------------------------------------------------------------------------------------------------
# In-process implementation (the embedded default)
# --------------------------------------------------------------------------------------------------


class InMemoryOnlineStore:
    """The online store inside one process: dicts behind a lock.

    "Newest first" means most recently *recorded* first (within a batch, later events are newer),
    exactly like :class:`RedisOnlineStore`. Items are kept as JSON bytes, so what comes back from
    :meth:`get_item` is a fresh copy with the same types the Redis store returns.

    Bounded: the recent interactions and purchased sets of at most ``max_customers`` customers
    are kept, the least recently used (recorded or read) dropped first, and the profile states
    made here hold as many. Consent flags are never dropped (an opt-out must not expire); items
    are the catalog's.
    """

    def __init__(
        self,
        max_recent: int = 100,
        *,
        profile_states: InMemoryProfileStates | None = None,
        max_customers: int = 100_000,
    ) -> None:
        if max_recent < 1:
            raise ValueError(f"max_recent must be >= 1, got {max_recent}")
        if max_customers < 1:
            raise ValueError(f"max_customers must be >= 1, got {max_customers}")
        self.max_recent = max_recent
        self.max_customers = max_customers
        self._lock = threading.Lock()
        # customer -> recent interactions; order = LRU order (a customer's purchased set lives
        # and goes with it)
        self._recent: OrderedDict[str, deque[Interaction]] = OrderedDict()
        self._purchased: dict[str, set[str]] = {}
        self._items: dict[str, bytes] = {}
        self._consent: dict[str, bool] = {}
        self._erased: dict[str, datetime] = {}
        self._profile_states = (
            profile_states
            if profile_states is not None
            else InMemoryProfileStates(max_customers=max_customers)
        )

    @property
    def profile_states(self) -> InMemoryProfileStates:
        return self._profile_states

    def customer_state(self, customer_id: str, n_recent: int = 50) -> CustomerState:
        with self._lock:
            recent = self._recent.get(customer_id)
            if recent is not None:
                self._recent.move_to_end(customer_id)
            events = tuple(islice(recent, max(n_recent, 0))) if recent is not None else ()
            purchased = frozenset(self._purchased.get(customer_id, ()))
            consent = self._consent.get(customer_id)
            erased_at = self._erased.get(customer_id)
        return CustomerState(
            customer_id=customer_id,
            consent=consent,
            profile_state=self._profile_states.get(customer_id),
            recent=events,
            purchased=purchased,
            erased_at=erased_at,
        )

    def queue_customer_state(
        self, batch: RedisBatch, customer_id: str, n_recent: int = 50
    ) -> Pending[CustomerState] | None:
        return None  # nothing to share: in process, a read costs no round trip

    def record(self, events: Sequence[Interaction]) -> None:
        _check_events(events)
        with self._lock:
            for event in events:
                recent = self._recent.get(event.customer_id)
                if recent is None:
                    recent = self._recent[event.customer_id] = deque(maxlen=self.max_recent)
                else:
                    self._recent.move_to_end(event.customer_id)
                recent.appendleft(event)
                if event.type is InteractionType.PURCHASE:
                    self._purchased.setdefault(event.customer_id, set()).add(event.item_id)
                elif event.type is InteractionType.RETURN:
                    bought = self._purchased.get(event.customer_id)
                    if bought is not None:
                        bought.discard(event.item_id)
                        if not bought:
                            del self._purchased[event.customer_id]
            while len(self._recent) > self.max_customers:
                evicted, _ = self._recent.popitem(last=False)
                self._purchased.pop(evicted, None)

    def __len__(self) -> int:
        """Customers whose recent interactions are held."""
        with self._lock:
            return len(self._recent)

    def recent(self, customer_id: str, n: int = 50) -> list[Interaction]:
        if n <= 0:
            return []
        with self._lock:
            recent = self._recent.get(customer_id)
            return list(islice(recent, n)) if recent is not None else []

    def purchased(self, customer_id: str) -> set[str]:
        with self._lock:
            return set(self._purchased.get(customer_id, ()))

    def put_items(self, items: Iterable[Mapping[str, Any]]) -> None:
        encoded = [_item_json(item) for item in items]
        with self._lock:
            self._items.update(encoded)

    def get_item(self, item_id: str) -> dict[str, Any] | None:
        with self._lock:
            payload = self._items.get(item_id)
        return orjson.loads(payload) if payload is not None else None

    def get_items(self, item_ids: Sequence[str]) -> list[dict[str, Any] | None]:
        with self._lock:
            payloads = [self._items.get(item_id) for item_id in item_ids]
        return [orjson.loads(p) if p is not None else None for p in payloads]

    def set_consent(self, customer_id: str, personalization: bool) -> None:
        with self._lock:
            self._consent[customer_id] = bool(personalization)

    def consent(self, customer_id: str) -> bool | None:
        with self._lock:
            return self._consent.get(customer_id)

    def erase_customer(self, customer_id: str, erased_at: datetime | None = None) -> None:
        with self._lock:
            self._recent.pop(customer_id, None)
            self._purchased.pop(customer_id, None)
            self._consent.pop(customer_id, None)
            if erased_at is not None:
                known = self._erased.get(customer_id)
                self._erased[customer_id] = erased_at if known is None else max(known, erased_at)

    def erased_at(self, customer_id: str) -> datetime | None:
        with self._lock:
            return self._erased.get(customer_id)

    def customer_keys(self) -> set[str]:
        """Customer ids the store holds anything about (for erasure audits and tests)."""
        with self._lock:
            return set(self._recent) | set(self._purchased) | set(self._consent)

    def ping(self) -> bool:
        return True


# --------------------------------------------------------------------------------------------------
# Redis implementation (shared by replicas)
# --------------------------------------------------------------------------------------------------

# customer_state's reads as one script (atomic, like its MULTI; one reply to parse instead of seven
# in a batch). KEYS: consent, profile state, recent, purchased, erased hash; ARGV: the LRANGE
# range and the erasure digest. A missing value (false) is a nil reply.
_STATE_SCRIPT: Final = """
return {
    redis.call('GET', KEYS[1]),
    redis.call('GET', KEYS[2]),
    redis.call('LRANGE', KEYS[3], ARGV[1], ARGV[2]),
    redis.call('SMEMBERS', KEYS[4]),
    redis.call('HGET', KEYS[5], ARGV[3]),
}
"""


class RedisOnlineStore:
    """The online store in Redis, shared by every replica.

    Keys (all under ``prefix``):

    * ``{prefix}recent:{customer_id}``    list of interaction JSON, newest first (LPUSH + LTRIM)
    * ``{prefix}purchased:{customer_id}`` set of item ids bought and not returned
    * ``{prefix}item:{item_id}``          item record as a JSON string
    * ``{prefix}consent:{customer_id}``   ``"1"`` / ``"0"``: personalization consent
    * ``{prefix}erased``                  hash: a digest of each erased customer's id → when
      (ISO 8601); the digest, so that no key or field names an erased customer

    Every Redis failure surfaces as :class:`~feature_store.errors.StoreUnavailable`; socket timeouts
    are short (``socket_timeout``) so a sick Redis costs a request milliseconds, not seconds.
    """

    #: Items written per pipeline round trip by :meth:`put_items`.
    ITEM_CHUNK: Final = 1_000

    def __init__(
        self,
        client: redis.Redis | None = None,
        *,
        url: str | None = None,
        prefix: str = "lb:",
        max_recent: int = 100,
        socket_timeout: float = 0.25,
    ) -> None:
        if max_recent < 1:
            raise ValueError(f"max_recent must be >= 1, got {max_recent}")
        self._owns_client = client is None
        self._client, self._where = redis_client("RedisOnlineStore", client, url, socket_timeout)
        self.prefix = prefix
        self.max_recent = max_recent
        self._profile_states = RedisProfileStates(self._client, prefix=prefix)
        self._state_script = self._client.register_script(_STATE_SCRIPT)

    @property
    def client(self) -> redis.Redis:
        """The Redis client (siblings such as the bandit's state share it)."""
        return self._client

    @property
    def profile_states(self) -> RedisProfileStates:
        """The profile states on the same client and prefix (``{prefix}profile:{customer_id}``)."""
        return self._profile_states

    # -- keys ----------------------------------------------------------------------------------

    def _recent_key(self, customer_id: str) -> str:
        return f"{self.prefix}recent:{customer_id}"

    def _purchased_key(self, customer_id: str) -> str:
        return f"{self.prefix}purchased:{customer_id}"

    def _item_key(self, item_id: str) -> str:
        return f"{self.prefix}item:{item_id}"

    def _consent_key(self, customer_id: str) -> str:
        return f"{self.prefix}consent:{customer_id}"

    @property
    def _erased_key(self) -> str:
        return f"{self.prefix}erased"

    def _guard(self, operation: str) -> AbstractContextManager[None]:
        return redis_errors("online store", self._where, operation)

    # -- protocol ------------------------------------------------------------------------------

    def record(self, events: Sequence[Interaction]) -> None:
        _check_events(events)
        if not events:
            return
        pipe = self._client.pipeline(transaction=True)
        touched: dict[str, None] = {}
        for event in events:
            recent_key = self._recent_key(event.customer_id)
            pipe.lpush(recent_key, orjson.dumps(event.to_record()))
            touched[recent_key] = None
            if event.type is InteractionType.PURCHASE:
                pipe.sadd(self._purchased_key(event.customer_id), event.item_id)
            elif event.type is InteractionType.RETURN:
                pipe.srem(self._purchased_key(event.customer_id), event.item_id)
        for recent_key in touched:
            pipe.ltrim(recent_key, 0, self.max_recent - 1)
        with self._guard(f"record of {len(events)} events"):
            pipe.execute()

    def customer_state(self, customer_id: str, n_recent: int = 50) -> CustomerState:
        pipe = self._client.pipeline(transaction=True)  # one round trip, one consistent snapshot
        for command in self._state_commands(customer_id, n_recent):
            pipe.execute_command(*command)
        with self._guard("customer_state"):
            replies = pipe.execute()
        return self._decode_customer_state(customer_id, replies)

    def queue_customer_state(
        self, batch: RedisBatch, customer_id: str, n_recent: int = 50
    ) -> Pending[CustomerState] | None:
        breaker = breaker_for(self._where)
        if batch.client is not self._client or breaker.is_open:
            return None  # its own call (through the breaker, probing when it is time)

        def decode(outcome: Outcome) -> CustomerState:
            if isinstance(outcome, BaseException):
                raise _unavailable(breaker, "online store", self._where, "customer_state", outcome)
            (replies,) = outcome
            if isinstance(replies, BaseException):
                raise _unavailable(breaker, "online store", self._where, "customer_state", replies)
            _recovered(breaker.succeeded(), self._where)
            return self._decode_customer_state(customer_id, replies)

        keys = [
            self._consent_key(customer_id),
            self._profile_states.key(customer_id),
            self._recent_key(customer_id),
            self._purchased_key(customer_id),
            self._erased_key,
        ]
        start, stop = self._recent_range(n_recent)
        args = [start, stop, erasure_digest(customer_id)]
        return batch.add([ScriptCall(self._state_script, keys, args)], decode)

    def _recent_range(self, n_recent: int) -> tuple[int, int]:
        """The LRANGE bounds of the ``n_recent`` newest events (an empty range reads nothing)."""
        n = max(min(n_recent, self.max_recent), 0)
        return (0, n - 1) if n else (1, 0)

    def _state_commands(self, customer_id: str, n_recent: int) -> list[tuple[Any, ...]]:
        """The commands of :meth:`customer_state` (to run inside ``MULTI``; batched, the same
        reads are one script: :data:`_STATE_SCRIPT`)."""
        start, stop = self._recent_range(n_recent)
        return [
            ("GET", self._consent_key(customer_id)),
            ("GET", self._profile_states.key(customer_id)),
            ("LRANGE", self._recent_key(customer_id), start, stop),
            ("SMEMBERS", self._purchased_key(customer_id)),
            ("HGET", self._erased_key, erasure_digest(customer_id)),
        ]

    def _decode_customer_state(self, customer_id: str, replies: Sequence[Any]) -> CustomerState:
        consent, profile, recent, purchased, erased = replies
        return CustomerState(
            customer_id=customer_id,
            consent=None if consent is None else _text(consent) == "1",
            profile_state=_decode_state(profile, self._profile_states.key(customer_id)),
            recent=tuple(self._events(customer_id, recent)),
            purchased=frozenset(_text(m) for m in purchased),
            erased_at=_decode_time(erased, self._erased_key),
        )

    def recent(self, customer_id: str, n: int = 50) -> list[Interaction]:
        n = min(n, self.max_recent)
        if n <= 0:
            return []
        with self._guard("recent"):
            raw = self._client.lrange(self._recent_key(customer_id), 0, n - 1)
        return self._events(customer_id, raw)

    def _events(self, customer_id: str, raw: Iterable[bytes | str]) -> list[Interaction]:
        events: list[Interaction] = []
        for payload in raw:
            try:
                events.append(Interaction.model_validate_json(payload))
            except ValidationError as exc:
                _log.warning(
                    "skipping a malformed interaction in %s: %s",
                    self._recent_key(customer_id),
                    exc.errors(include_url=False)[:1],
                )
        return events

    def purchased(self, customer_id: str) -> set[str]:
        with self._guard("purchased"):
            members = self._client.smembers(self._purchased_key(customer_id))
        return {_text(m) for m in members}

    def put_items(self, items: Iterable[Mapping[str, Any]]) -> None:
        chunk: list[tuple[str, bytes]] = []
        for item in items:
            chunk.append(_item_json(item))
            if len(chunk) >= self.ITEM_CHUNK:
                self._write_items(chunk)
                chunk = []
        if chunk:
            self._write_items(chunk)

    def _write_items(self, chunk: list[tuple[str, bytes]]) -> None:
        with self._guard(f"put_items ({len(chunk)} items)"):
            self._client.mset({self._item_key(item_id): payload for item_id, payload in chunk})

    def get_item(self, item_id: str) -> dict[str, Any] | None:
        with self._guard("get_item"):
            payload = self._client.get(self._item_key(item_id))
        return orjson.loads(payload) if payload is not None else None

    def get_items(self, item_ids: Sequence[str]) -> list[dict[str, Any] | None]:
        if not item_ids:
            return []
        with self._guard(f"get_items ({len(item_ids)} ids)"):
            payloads = self._client.mget([self._item_key(item_id) for item_id in item_ids])
        return [orjson.loads(p) if p is not None else None for p in payloads]

    def set_consent(self, customer_id: str, personalization: bool) -> None:
        with self._guard("set_consent"):
            self._client.set(self._consent_key(customer_id), b"1" if personalization else b"0")

    def consent(self, customer_id: str) -> bool | None:
        with self._guard("consent"):
            raw = self._client.get(self._consent_key(customer_id))
        return None if raw is None else _text(raw) == "1"

    def erase_customer(self, customer_id: str, erased_at: datetime | None = None) -> None:
        pipe = self._client.pipeline(transaction=True)
        pipe.delete(
            self._recent_key(customer_id),
            self._purchased_key(customer_id),
            self._consent_key(customer_id),
        )
        if erased_at is not None:
            pipe.hset(self._erased_key, erasure_digest(customer_id), erased_at.isoformat())
        with self._guard("erase_customer"):
            pipe.execute()

    def erased_at(self, customer_id: str) -> datetime | None:
        with self._guard("erased_at"):
            raw = self._client.hget(self._erased_key, erasure_digest(customer_id))
        return _decode_time(raw, self._erased_key)

    def ping(self) -> bool:
        try:
            return bool(self._client.ping())
        except RedisError as exc:
            _log.debug("Redis online store at %s does not answer: %s", self._where, exc)
            return False

    def close(self) -> None:
        """Release the connections (only those of a client this store created from a url)."""
        if self._owns_client:
            self._client.close()


class RedisProfileStates:
    """Online customer-profile states in Redis (a :class:`feature_store.profiles.ProfileStateStore`):
    one JSON document per customer at ``{prefix}profile:{customer_id}``, shared by replicas.

    Every Redis failure surfaces as :class:`~feature_store.errors.StoreUnavailable`.
    """

    def __init__(
        self,
        client: redis.Redis | None = None,
        *,
        url: str | None = None,
        prefix: str = "lb:",
        socket_timeout: float = 0.25,
    ) -> None:
        self._owns_client = client is None
        self._client, self._where = redis_client("RedisProfileStates", client, url, socket_timeout)
        self.prefix = prefix

    def key(self, customer_id: str) -> str:
        """The Redis key of a customer's state."""
        return f"{self.prefix}profile:{customer_id}"

    def _guard(self, operation: str) -> AbstractContextManager[None]:
        return redis_errors("profile states", self._where, operation)

    def get(self, customer_id: str) -> dict[str, Any] | None:
        with self._guard("get"):
            raw = self._client.get(self.key(customer_id))
        return _decode_state(raw, self.key(customer_id))

    def put(self, customer_id: str, state: Mapping[str, Any]) -> None:
        payload = orjson.dumps(dict(state), default=_json_default, option=_JSON_OPTIONS)
        with self._guard("put"):
            self._client.set(self.key(customer_id), payload)

    def delete(self, customer_id: str) -> None:
        with self._guard("delete"):
            self._client.delete(self.key(customer_id))

    def close(self) -> None:
        if self._owns_client:
            self._client.close()


def erasure_digest(customer_id: str) -> str:
    """The name an erased customer is recorded under in a shared store (SHA-256, hex)."""
    return hashlib.sha256(customer_id.encode()).hexdigest()


def _decode_time(raw: bytes | str | None, key: str) -> datetime | None:
    if raw is None:
        return None
    try:
        moment = datetime.fromisoformat(_text(raw))
    except ValueError:
        _log.warning("ignoring a malformed time in %s: %r", key, raw)
        return None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment


def _decode_state(raw: bytes | str | None, key: str) -> dict[str, Any] | None:
    """A stored profile state, or None when absent or malformed (logged)."""
    if raw is None:
        return None
    try:
        state = orjson.loads(raw)
    except orjson.JSONDecodeError:
        _log.warning("ignoring a malformed profile state at %s", key)
        return None
    return state if isinstance(state, dict) else None


def _text(value: bytes | str) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else value


def redis_client(
    owner: str, client: redis.Redis | None, url: str | None, socket_timeout: float
) -> tuple[redis.Redis, str]:
    """The client to use (the given one, or one made from ``url`` with short timeouts and one
    immediate retry after a connection error, so a pooled connection broken by a Redis restart
    heals — none after a timeout: a hung Redis costs one ``socket_timeout``, then the circuit
    breaker of :func:`redis_errors` bypasses it) and a description of where it points, for
    messages."""
    if (client is None) == (url is None):
        raise ValueError(f"give {owner} a redis client or a url (one of them)")
    if client is None:
        assert url is not None
        made = redis.Redis.from_url(
            url,
            socket_timeout=socket_timeout,
            socket_connect_timeout=socket_timeout,
            retry=Retry(NoBackoff(), 1, supported_errors=(RedisConnectionError,)),
        )
        return made, url
    return client, _describe(client)


#: Errors that mean "Redis cannot be reached now" (as opposed to a rejected command); a connection
#: closed mid-command surfaces as ValueError / AttributeError inside redis-py.
UNREACHABLE: Final = (RedisConnectionError, RedisTimeoutError, OSError, ValueError, AttributeError)


@contextmanager
def redis_errors(what: str, where: str, operation: str) -> Iterator[None]:
    """Turn a failed Redis call into :class:`StoreUnavailable` naming ``what`` (e.g. "online
    store"), ``where`` and the ``operation`` — for every Redis-backed store.

    Behind a circuit breaker shared by every store on the same Redis (:func:`breaker_for`): once
    Redis was unreachable, calls fail at once with :class:`StoreUnavailable` (no waiting for a
    timeout) until one call, ``STORE_RETRY_INTERVAL`` later, finds it back. One warning per
    outage and one line when it ends (with the number of calls bypassed)."""
    breaker = breaker_for(where)
    if breaker.admit() is Admission.OPEN:
        raise StoreUnavailable(
            f"Redis {what} at {where}: {operation} failed: Redis unreachable, retrying every "
            f"{breaker.retry_interval:g}s"
        )
    try:
        yield
    except (RedisError, *UNREACHABLE) as exc:
        raise _unavailable(breaker, what, where, operation, exc) from exc
    _recovered(breaker.succeeded(), where)


def _unavailable(
    breaker: CircuitBreaker, what: str, where: str, operation: str, exc: BaseException
) -> StoreUnavailable:
    """The :class:`StoreUnavailable` of a failed Redis call, the breaker told: unreachable opens
    it (one warning per outage), a refused command means Redis answered."""
    if isinstance(exc, UNREACHABLE):
        if breaker.failed():
            _log.warning(
                "Redis at %s unreachable (%s during %s: %s); its stores fail fast, retrying "
                "every %gs",
                where,
                type(exc).__name__,
                operation,
                exc,
                breaker.retry_interval,
            )
    else:  # Redis answered (and refused the command): it is reachable
        _recovered(breaker.succeeded(), where)
    error = StoreUnavailable(
        f"Redis {what} at {where}: {operation} failed: {type(exc).__name__}: {exc}"
    )
    error.__cause__ = exc
    return error


def _recovered(bypassed: int | None, where: str) -> None:
    if bypassed is not None:
        _log.warning("Redis at %s is back (%d calls bypassed during the outage)", where, bypassed)


def _describe(client: redis.Redis) -> str:
    kwargs = client.connection_pool.connection_kwargs
    if "path" in kwargs:
        return f"unix://{kwargs['path']}"
    return f"redis://{kwargs.get('host', '?')}:{kwargs.get('port', '?')}/{kwargs.get('db', 0)}"
