"""Commands of several Redis-backed parts sent together: one round trip instead of one each.

A request that reads the response cache and the customer's online state, or writes a list to the
cache and its served-list record, would make one round trip per part. When the parts share one
Redis client they can queue their commands on one :class:`RedisBatch` instead: the caller that
made the batch executes it once, and each part then learns its own outcome — a :class:`Pending`
for a reply someone reads (decoded, with the part's own error handling, when read), and
:meth:`RedisBatch.after` for bookkeeping that must run whatever happens (circuit breakers, error
counters). A part that does not share the batch's client makes its own call, as without a batch.

A batch runs blocking (:meth:`RedisBatch.execute`, from a worker thread) or awaited on the event
loop (:meth:`RedisBatch.execute_async`, through :func:`async_twin` of its client): the same
commands, replies and outcomes either way.

Scripts are queued as ``EVALSHA``; a reply of ``NOSCRIPT`` (a restarted or flushed Redis) loads the
script and runs those calls again — no ``SCRIPT EXISTS`` round trip before each batch, which is
what redis-py's pipelines do for registered scripts.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final, Generic, TypeVar

import hiredis
import redis
from redis.asyncio import BlockingConnectionPool as AsyncBlockingConnectionPool
from redis.asyncio import Redis as AsyncRedis
from redis.asyncio.connection import AbstractConnection as AsyncAbstractConnection
from redis.asyncio.connection import Connection as AsyncConnection
from redis.asyncio.connection import SSLConnection as AsyncSSLConnection
from redis.asyncio.connection import UnixDomainSocketConnection as AsyncUnixConnection
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import NoBackoff
from redis.commands.core import Script
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, ResponseError

T = TypeVar("T")

#: One part's replies, in the order queued (a command Redis refused is its exception), or the
#: exception of the round trip when it failed.
Outcome = Sequence[Any] | BaseException


@dataclass(frozen=True, slots=True)
class ScriptCall:
    """A registered script run with its keys and arguments (queued as ``EVALSHA``)."""

    script: Script
    keys: Sequence[Any]
    args: Sequence[Any]


#: A command: the arguments of ``execute_command`` (``("HGET", key, field)``) or a script call.
Command = tuple[Any, ...] | ScriptCall

_UNSENT = object()


class Pending(Generic[T]):
    """A part's result once its batch has run: :meth:`result` decodes its outcome (once)."""

    def __init__(self, decode: Callable[[Outcome], T]) -> None:
        self._decode = decode
        self._outcome: Outcome | None = None
        self._value: object = _UNSENT
        self._error: BaseException | None = None

    @classmethod
    def done(cls, value: T) -> Pending[T]:
        """A result already known (a part that did not need the batch)."""
        pending: Pending[T] = cls(lambda _: value)
        pending._value = value
        return pending

    def _resolve(self, outcome: Outcome) -> None:
        self._outcome = outcome

    def result(self) -> T:
        """The decoded result, or the part's own exception (e.g. ``StoreUnavailable``)."""
        if self._value is _UNSENT and self._error is None:
            if self._outcome is None:
                raise RuntimeError("the batch of this result has not been executed")
            try:
                self._value = self._decode(self._outcome)
            except Exception as exc:
                self._error = exc
        if self._error is not None:
            raise self._error
        return self._value  # type: ignore[return-value]


class RedisBatch:
    """Commands queued by several parts on one client, sent by :meth:`execute` in one round trip
    (``transaction``: inside ``MULTI`` / ``EXEC``, one consistent snapshot)."""

    def __init__(self, client: redis.Redis, *, transaction: bool = False) -> None:
        self.client = client
        self.transaction = transaction
        self._commands: list[Command] = []
        self._parts: list[tuple[int, int, Pending[Any]]] = []
        self._after: list[Callable[[], None]] = []
        self.executed = False

    def __len__(self) -> int:
        return len(self._commands)

    def add(self, commands: Sequence[Command], decode: Callable[[Outcome], T]) -> Pending[T]:
        """Queue one part's commands; its result is ``decode(outcome)`` once the batch has run."""
        if self.executed:
            raise RuntimeError("this batch has been executed already")
        start = len(self._commands)
        self._commands.extend(commands)
        pending: Pending[T] = Pending(decode)
        self._parts.append((start, len(self._commands), pending))
        return pending

    def after(self, callback: Callable[[], None]) -> None:
        """Run ``callback`` once the batch has run (its parts' bookkeeping); it must not raise."""
        self._after.append(callback)

    def execute(self) -> None:
        """Send every queued command in one round trip and hand each part its outcome; never
        raises (a failed round trip is every part's outcome), then runs the ``after`` callbacks."""
        self._start()
        outcome: list[Any] | BaseException
        try:
            outcome = self._send(self._commands) if self._commands else []
            retry = self._noscript(outcome)
            if retry:  # Redis lost its scripts (restarted, flushed): load them, run again
                for script in _scripts(self._commands, retry):
                    script.sha = self.client.script_load(script.script)
                again = self._send([self._commands[i] for i in retry], transaction=False)
                for i, reply in zip(retry, again, strict=True):
                    outcome[i] = reply
        except Exception as exc:  # the parts decide what it means
            outcome = exc
        self._finish(outcome)

    async def execute_async(self, client: AsyncRedis) -> None:
        """:meth:`execute` through ``client``, the asyncio twin of this batch's client
        (:func:`async_twin`): the same commands in one round trip, awaited on the event loop
        instead of blocking a thread."""
        self._start()
        outcome: list[Any] | BaseException
        try:
            outcome = await self._send_async(client, self._commands) if self._commands else []
            retry = self._noscript(outcome)
            if retry:
                for script in _scripts(self._commands, retry):
                    script.sha = await client.script_load(script.script)
                again = await self._send_async(
                    client, [self._commands[i] for i in retry], transaction=False
                )
                for i, reply in zip(retry, again, strict=True):
                    outcome[i] = reply
        except Exception as exc:
            outcome = exc
        self._finish(outcome)

    def _start(self) -> None:
        if self.executed:
            raise RuntimeError("this batch has been executed already")
        self.executed = True

    def _noscript(self, outcome: list[Any]) -> list[int]:
        """Where a script call was refused because Redis does not hold the script."""
        return [
            i
            for i, command in enumerate(self._commands)
            if isinstance(command, ScriptCall) and isinstance(outcome[i], NoScriptError)
        ]

    def _finish(self, outcome: list[Any] | BaseException) -> None:
        for start, stop, pending in self._parts:
            pending._resolve(outcome if isinstance(outcome, BaseException) else outcome[start:stop])
        for callback in self._after:
            callback()

    def _send(self, commands: Sequence[Command], transaction: bool | None = None) -> list[Any]:
        transaction = self.transaction if transaction is None else transaction
        if len(commands) == 1 and not transaction:  # one command: no pipeline to build
            try:
                return [self.client.execute_command(*_arguments(commands[0]))]
            except ResponseError as exc:  # refused (e.g. NOSCRIPT): the part's reply, as below
                return [exc]
        pipe = self.client.pipeline(transaction=transaction)
        for command in commands:
            pipe.execute_command(*_arguments(command))
        return list(pipe.execute(raise_on_error=False))

    async def _send_async(
        self, client: AsyncRedis, commands: Sequence[Command], transaction: bool | None = None
    ) -> list[Any]:
        transaction = self.transaction if transaction is None else transaction
        if transaction:  # MULTI / EXEC: redis-py's pipeline
            pipe = client.pipeline(transaction=True)
            for command in commands:
                pipe.execute_command(*_arguments(command))
            return list(await pipe.execute(raise_on_error=False))
        return await _round_trip(client, [_arguments(command) for command in commands])


#: Argument types :func:`hiredis.pack_command` writes exactly as redis-py's encoder does (``bool``
#: and numpy scalars are not among them: redis-py refuses the one and formats the others).
_PLAIN: Final = frozenset({str, bytes, int, float})


async def _round_trip(client: AsyncRedis, calls: list[tuple[Any, ...]]) -> list[Any]:
    """``calls`` sent on one pooled connection of ``client`` and their replies read back, each
    as redis-py's pipeline gives it (its response callback applied; a refused command is its
    :class:`ResponseError`) — without the pipeline object: the commands are packed by hiredis in
    one call each and the replies read straight off the connection, which halves the client's
    CPU per round trip (``benchmarks/serve_latency.py``'s Redis scenario). A connection error
    on a pooled connection (Redis restarted since it was opened) is retried once on a fresh one,
    as the client's ``Retry`` would; any other failure is raised, the connection dropped."""
    if all(type(arg) in _PLAIN for call in calls for arg in call):
        packed: bytes | list[bytes] = b"".join(hiredis.pack_command(call) for call in calls)
    else:
        packed = []  # packed by the connection's own encoder, below
    pool = client.connection_pool
    for attempt in (0, 1):
        connection = await pool.get_connection()
        try:
            await connection.send_packed_command(
                packed or connection.pack_commands(calls), check_health=False
            )
            replies: list[Any] = []
            for call in calls:
                try:
                    reply = await connection.read_response()
                except ResponseError as exc:
                    replies.append(exc)
                    continue
                callback = client.response_callbacks.get(str(call[0]).upper())
                replies.append(reply if callback is None else callback(reply))
            return replies
        except RedisConnectionError:
            await connection.disconnect()
            if attempt:
                raise
        except BaseException:
            await connection.disconnect()
            raise
        finally:
            await pool.release(connection)
    raise AssertionError("unreachable")


def _arguments(command: Command) -> tuple[Any, ...]:
    """The arguments of ``execute_command`` for a queued command (a script call is EVALSHA)."""
    if isinstance(command, ScriptCall):
        return ("EVALSHA", command.script.sha, len(command.keys), *command.keys, *command.args)
    return command


def _scripts(commands: Sequence[Command], indices: Sequence[int]) -> list[Script]:
    """The distinct scripts called at ``indices``."""
    found = {id(c.script): c.script for i in indices if isinstance(c := commands[i], ScriptCall)}
    return list(found.values())


#: Connections of an asyncio twin at most. Each round trip holds one for well under a millisecond;
#: when the event loop falls behind, requests wait for one instead of opening dozens, whose
#: set-up costs the loop more CPU and deepens the backlog (seen as 61 connections in a run of
#: ``benchmarks/serve_latency.py`` that fell behind).
TWIN_CONNECTIONS: Final = 8

#: The connection settings an asyncio twin takes over from its blocking client (the rest of a
#: pool's connection arguments are objects of the blocking implementation).
_TWIN_SETTINGS: Final = frozenset(
    {
        "host",
        "port",
        "path",
        "db",
        "username",
        "password",
        "credential_provider",
        "socket_timeout",
        "socket_connect_timeout",
        "socket_keepalive",
        "socket_keepalive_options",
        "client_name",
        "protocol",
        "encoding",
        "encoding_errors",
        "decode_responses",
        "health_check_interval",
    }
)


def async_twin(client: redis.Redis) -> AsyncRedis:
    """A new asyncio client to the server of the blocking ``client``, with its settings: address,
    database, credentials, TLS, timeouts and its number of retries — after a connection error
    only, as :func:`feature_store.online_store.redis_client` sets them (a hung Redis costs one
    timeout). Its connections belong to the event loop that opens them; close it there
    (``await twin.aclose()``)."""
    pool = client.connection_pool
    given = pool.connection_kwargs
    settings = {
        name: value
        for name, value in given.items()
        if name in _TWIN_SETTINGS or name.startswith("ssl_")
    }
    kind = pool.connection_class
    connection_class: type[AsyncAbstractConnection]
    if issubclass(kind, redis.UnixDomainSocketConnection):
        connection_class = AsyncUnixConnection
    elif issubclass(kind, redis.SSLConnection):
        connection_class = AsyncSSLConnection
    else:
        connection_class = AsyncConnection
    retry = given.get("retry")
    retries = retry.get_retries() if retry is not None else 0
    return AsyncRedis(
        connection_pool=AsyncBlockingConnectionPool(
            max_connections=TWIN_CONNECTIONS,
            timeout=None,  # a request waits for a connection: a round trip frees one promptly
            connection_class=connection_class,
            retry=AsyncRetry(NoBackoff(), retries, supported_errors=(RedisConnectionError,)),
            **settings,
        )
    )
