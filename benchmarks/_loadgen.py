"""An open-loop HTTP/1.1 load generator, run in its own process by ``serve_latency.py``.

Request ``i`` is *scheduled* at ``t0 + i / rate`` whatever happened to the earlier ones, and its
latency is measured from that scheduled time, not from when it was actually sent: if the server
stalls, requests queue (for a free keep-alive connection, or in the server) and the wait shows up
in the figures instead of silently lowering the offered rate (no coordinated omission).

The client is a minimal asyncio HTTP/1.1 client (keep-alive, a bounded pool of connections, one
request in flight per connection, ``content-length`` and chunked bodies) on uvloop when available,
so that its own overhead per request is a few tens of microseconds. Loopback only.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import resource
import time
from collections import Counter
from dataclasses import dataclass, field

FALLBACK_MARKER = b'"fallback":true'


@dataclass(frozen=True)
class LoadSpec:
    port: int
    paths: list[str]  # request i asks for paths[i % len(paths)]
    rate: float  # requests per second, fixed
    warmup_s: float  # requests scheduled in the first warmup_s are sent but not recorded
    duration_s: float  # then this long is recorded
    host: str = "127.0.0.1"
    max_connections: int = 64  # in-flight bound; more requests wait (and that wait is measured)
    timeout_s: float = 5.0  # per request, from its scheduled time
    cpu: int | None = None  # pin the load generator to this CPU
    nice: int = 0  # scheduling priority of the load generator
    # With bodies, request i is a JSON ``POST`` of bodies[i % len(bodies)] to paths[i % len(paths)].
    bodies: list[bytes] | None = None


@dataclass
class LoadResult:
    scheduled: int = 0  # recorded requests (after warm-up)
    ok: int = 0  # 2xx among them
    latencies_ms: list[float] = field(default_factory=list)  # client side, from scheduled time
    server_ms: list[float] = field(default_factory=list)  # server-timing app;dur
    errors: dict[str, int] = field(default_factory=dict)  # kind -> count
    fallbacks: int = 0  # 2xx bodies that say "fallback": true
    window_s: float = 0.0  # first recorded scheduled time -> last recorded completion
    max_dispatch_lag_ms: float = 0.0  # how late the client itself sent (client health)
    connections_opened: int = 0
    retries: int = 0  # requests resent once because a kept-alive connection had been closed
    warmup_errors: int = 0
    client_cpu_s: float = 0.0  # CPU the load-generator process used in all


# uvicorn closes keep-alive connections idle for 5 s (--timeout-keep-alive); reusing one just as
# it does so fails. Connections idle for longer than this are closed instead of reused.
MAX_IDLE_S = 2.0


class _Conn:
    __slots__ = ("last_used", "reader", "writer")

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.last_used = time.perf_counter()

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.writer.close()


class HttpError(Exception):
    pass


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, dict[bytes, bytes], bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head[:-4].split(b"\r\n")
    status_line = lines[0].split(b" ", 2)
    if len(status_line) < 2 or not status_line[0].startswith(b"HTTP/1."):
        raise HttpError(f"bad status line {lines[0]!r}")
    status = int(status_line[1])
    headers: dict[bytes, bytes] = {}
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        headers[name.strip().lower()] = value.strip()
    if b"content-length" in headers:
        body = await reader.readexactly(int(headers[b"content-length"]))
    elif headers.get(b"transfer-encoding", b"").lower() == b"chunked":
        parts = []
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            if size == 0:
                await reader.readuntil(b"\r\n")
                break
            parts.append(await reader.readexactly(size))
            await reader.readexactly(2)
        body = b"".join(parts)
    else:
        body = b""
    return status, headers, body


def _server_ms(headers: dict[bytes, bytes]) -> float | None:
    value = headers.get(b"server-timing")
    if value is None:
        return None
    for metric in value.split(b","):
        for param in metric.split(b";"):
            key, _, number = param.strip().partition(b"=")
            if key == b"dur":
                with contextlib.suppress(ValueError):
                    return float(number)
    return None


async def _run(spec: LoadSpec) -> LoadResult:
    result = LoadResult()
    errors: Counter[str] = Counter()
    idle: list[_Conn] = []
    slots = asyncio.Semaphore(spec.max_connections)
    requests = [
        f"GET {p} HTTP/1.1\r\nHost: {spec.host}:{spec.port}\r\n"
        "User-Agent: lookbook-bench\r\nAccept: application/json\r\n\r\n".encode()
        for p in spec.paths
    ]
    if spec.bodies:
        n = max(len(spec.paths), len(spec.bodies))
        requests = [
            f"POST {spec.paths[i % len(spec.paths)]} HTTP/1.1\r\nHost: {spec.host}:{spec.port}\r\n"
            "User-Agent: lookbook-bench\r\nAccept: application/json\r\n"
            "Content-Type: application/json\r\n"
            f"Content-Length: {len(spec.bodies[i % len(spec.bodies)])}\r\n\r\n".encode()
            + spec.bodies[i % len(spec.bodies)]
            for i in range(n)
        ]
    n_warm = round(spec.warmup_s * spec.rate)
    n_total = n_warm + round(spec.duration_s * spec.rate)
    clock = time.perf_counter
    t0 = clock() + 0.05
    last_done = 0.0

    async def one(i: int, scheduled: float) -> None:
        nonlocal last_done
        record = i >= n_warm
        conn: _Conn | None = None
        try:
            async with asyncio.timeout(spec.timeout_s - (clock() - scheduled)):
                async with slots:
                    for attempt in (1, 2):
                        conn = None
                        while idle and conn is None:
                            conn = idle.pop()  # most recently used first: keeps few conns hot
                            if clock() - conn.last_used > MAX_IDLE_S:
                                conn.close()
                                conn = None
                        reused = conn is not None
                        if conn is None:
                            reader, writer = await asyncio.open_connection(spec.host, spec.port)
                            conn = _Conn(reader, writer)
                            result.connections_opened += 1
                        try:
                            conn.writer.write(requests[i % len(requests)])
                            status, headers, body = await _read_response(conn.reader)
                        except (ConnectionError, asyncio.IncompleteReadError) as exc:
                            # A kept-alive connection the server closed before answering: retry
                            # once on a fresh one, as HTTP clients do. Anything else is an error.
                            partial = getattr(exc, "partial", b"")
                            if not (reused and attempt == 1 and not partial):
                                raise
                            conn.close()
                            result.retries += 1
                            continue
                        break
                    assert conn is not None
                    done = clock()
                    if headers.get(b"connection", b"").lower() == b"close":
                        conn.close()
                    else:
                        conn.last_used = done
                        idle.append(conn)
                    conn = None
        except TimeoutError:
            if record:
                errors["timeout"] += 1
            else:
                result.warmup_errors += 1
            return
        except (OSError, HttpError, asyncio.IncompleteReadError, asyncio.LimitOverrunError) as exc:
            if record:
                errors[type(exc).__name__] += 1
            else:
                result.warmup_errors += 1
            return
        finally:
            if conn is not None:
                conn.close()
        if not record:
            if not 200 <= status < 300:
                result.warmup_errors += 1
            return
        if 200 <= status < 300:
            result.ok += 1
            result.latencies_ms.append((done - scheduled) * 1000.0)
            server = _server_ms(headers)
            if server is not None:
                result.server_ms.append(server)
            if FALLBACK_MARKER in body:
                result.fallbacks += 1
        else:
            errors[f"http_{status}"] += 1
        last_done = max(last_done, done)

    tasks: set[asyncio.Task[None]] = set()
    max_lag = 0.0
    for i in range(n_total):
        scheduled = t0 + i / spec.rate
        delay = scheduled - clock()
        if delay > 0:
            await asyncio.sleep(delay)
        elif i >= n_warm:
            max_lag = max(max_lag, -delay)
        task = asyncio.create_task(one(i, scheduled))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
    if tasks:
        await asyncio.wait(set(tasks), timeout=spec.timeout_s + 1.0)
    for task in list(tasks):  # cannot happen with the per-request timeout, but stay bounded
        task.cancel()
        errors["unfinished"] += 1
    for conn in idle:
        conn.close()
    result.scheduled = n_total - n_warm
    result.errors = dict(errors)
    first_recorded = t0 + n_warm / spec.rate
    result.window_s = max(last_done - first_recorded, 0.0)
    result.max_dispatch_lag_ms = max_lag * 1000.0
    return result


def run_load(spec: LoadSpec) -> LoadResult:
    """Entry point of the load-generator process."""
    if spec.cpu is not None:
        with contextlib.suppress(OSError):
            os.sched_setaffinity(0, {spec.cpu})
    if spec.nice:
        with contextlib.suppress(OSError):
            os.setpriority(os.PRIO_PROCESS, 0, spec.nice)
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvicorn[standard] brings it
        result = asyncio.run(_run(spec))
    else:
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            result = runner.run(_run(spec))
    usage = resource.getrusage(resource.RUSAGE_SELF)
    result.client_cpu_s = usage.ru_utime + usage.ru_stime
    return result
