"""What every reliability scenario shares: the row it returns, the retailer and keys it serves,
the real service in a subprocess (``lookbook serve`` on a free loopback port), private Redis and
PostgreSQL servers to kill, an open-loop mixed load of reads and events, and the checks that every
acknowledged event is in the store.

Everything is bounded: every wait has a deadline, every load a request count and a duration, and
every process started here is stopped by the context manager that started it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

import httpx
import numpy as np
import pandas as pd

from benchmarks._common import (
    SMALL_CONFIG,
    BenchError,
    child_env,
    log_tail,
    lookbook_cmd,
    stop_process_group,
    tree_rss_bytes,
)

Size = Literal["full", "short"]
HOST = "127.0.0.1"
SEED = 14


@dataclass
class Row:
    """One line of the reliability table. ``ok`` says whether every criterion of the scenario held;
    ``problems`` says which did not."""

    scenario: str
    load: str
    faults: str
    requests: int = 0
    failures: int = 0
    events: str = "–"  # acknowledged / found
    rss_growth: str = "–"
    notes: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.problems

    def require(self, condition: bool, problem: str) -> None:
        if not condition:
            self.problems.append(problem)


HEADERS = ("scenario", "load", "faults injected", "requests", "failures", "events ack / found",
           "RSS growth", "result", "s")  # fmt: skip


def row_cells(row: Row) -> list[str]:
    verdict = "ok" if row.ok else "FAIL: " + "; ".join(row.problems)
    if row.notes:
        verdict += " (" + "; ".join(row.notes) + ")"
    return [row.scenario, row.load, row.faults, str(row.requests), str(row.failures), row.events,
            row.rss_growth, verdict, f"{row.seconds:.0f}"]  # fmt: skip


# -- the retailer, keys and a workspace --------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def build_retailer(root: Path, customers: int = 800, items: int = 400) -> tuple[Path, Path]:
    """(data, bundles) of a small synthetic retailer with one trained bundle (the tests' retailer)."""
    from feature_store.synthetic import generate
    from training.train import train

    data, bundles = root / "data", root / "bundles"
    generate(data, customers=customers, items=items, seed=7)
    train(data, bundles, config=SMALL_CONFIG, progress=False)
    return data, bundles


SCOPES = ("read", "events", "kiosk", "customers", "admin")


@dataclass(frozen=True)
class Keys:
    """One key per scope and one with every scope (deterministic: derived from the seed)."""

    by_scope: dict[str, str]
    everything: str
    wrong: str = "rel-this-key-is-not-configured-0000000000000"

    @classmethod
    def make(cls, seed: int = SEED) -> Keys:
        rng = random.Random(seed)
        token = lambda: "rel-" + "".join(rng.choices("abcdefghijkmnpqrstuvwxyz23456789", k=40))  # noqa: E731
        return cls({scope: token() for scope in SCOPES}, token())

    def config(self) -> str:
        """``LOOKBOOK_API_KEYS``: inline JSON of ``{name, sha256, scopes}``."""
        from app.auth import hash_key

        entries = [{"name": f"rel-{s}", "sha256": hash_key(k), "scopes": [s]}
                   for s, k in self.by_scope.items()]  # fmt: skip
        entries.append(
            {"name": "rel-all", "sha256": hash_key(self.everything), "scopes": list(SCOPES)}
        )
        return json.dumps(entries)

    def header(self, key: str | None = None) -> dict[str, str]:
        return {"Authorization": f"Bearer {key or self.everything}"}


@dataclass
class Workspace:
    """Where a run keeps its retailer, private servers' data and logs."""

    root: Path
    data: Path
    bundles: Path
    keys: Keys = field(default_factory=Keys.make)

    @property
    def customers(self) -> list[str]:
        return _ids(self.data, "customers", "customer_id")

    @property
    def items(self) -> list[str]:
        return _ids(self.data, "items", "item_id")

    def folder(self, name: str) -> Path:
        path = Path(tempfile.mkdtemp(prefix=f"{name}-", dir=self.root))
        path.chmod(0o755)
        return path

    def own_bundles(self, name: str) -> Path:
        """A copy of the retailer's bundles (a scenario that publishes or trains works on it)."""
        target = self.folder(name) / "bundles"
        shutil.copytree(self.bundles, target)
        return target


_ID_CACHE: dict[tuple[Path, str], list[str]] = {}


def _ids(data: Path, table: str, column: str) -> list[str]:
    key = (data, table)
    if key not in _ID_CACHE:
        files = sorted(data.glob(f"{table}*.parquet")) or sorted(data.glob(f"**/{table}*.parquet"))
        if not files:
            raise BenchError(f"no {table} table in {data}")
        _ID_CACHE[key] = sorted(pd.read_parquet(files[0], columns=[column])[column].astype(str))
    return _ID_CACHE[key]


# -- the service ---------------------------------------------------------------------------------------


@dataclass
class Service:
    """``lookbook serve`` on a free loopback port, in its own process group."""

    env: dict[str, str]
    log: Path
    workers: int = 1
    port: int = 0
    proc: subprocess.Popen[bytes] | None = None
    starts: int = 0

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def start(self, timeout_s: float = 90.0) -> float:
        """Start (or restart, on the same port) and wait until ``/readyz`` answers 200; seconds."""
        if not self.port:
            self.port = free_port()
        cmd = [*lookbook_cmd(), "serve", "--host", HOST, "--port", str(self.port),
               "--workers", str(self.workers), "--log-format", "text"]  # fmt: skip
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log, "ab") as log:
            log.write(f"\n$ {' '.join(cmd)}\n".encode())
            log.flush()
            self.proc = subprocess.Popen(cmd, env=self.env, stdout=log, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, start_new_session=True)  # fmt: skip
        self.starts += 1
        return self.wait_ready(timeout_s)

    def wait_ready(self, timeout_s: float) -> float:
        start = time.monotonic()
        while True:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise BenchError(f"the service exited ({self.proc.returncode}); log {self.log}\n"
                                 + log_tail(self.log))  # fmt: skip
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.url}/readyz", timeout=2).status_code == 200:
                    return time.monotonic() - start
            if time.monotonic() - start > timeout_s:
                raise BenchError(f"the service was not ready after {timeout_s:.0f} s; log {self.log}\n"
                                 + log_tail(self.log))  # fmt: skip
            time.sleep(0.2)

    def readyz(self) -> dict[str, Any]:
        try:
            response = httpx.get(f"{self.url}/readyz", timeout=5)
        except httpx.HTTPError:
            return {}
        body: dict[str, Any] = response.json() if response.status_code == 200 else {}
        return body

    def kill9(self) -> None:
        """SIGKILL the whole process group at once (the server and its workers)."""
        assert self.proc is not None
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=30)

    def rss(self) -> int:
        """Resident memory of the server's process tree (every worker), bytes."""
        assert self.proc is not None
        return tree_rss_bytes(self.proc.pid)

    def stop(self) -> None:
        if self.proc is not None:
            stop_process_group(self.proc)


def service_env(
    ws: Workspace, bundles: Path | None = None, **settings: str | None
) -> dict[str, str]:
    """The environment of a service over ``bundles`` (default: the retailer's): nothing inherited
    that would change its settings, hot reload off unless asked, API keys on; ``settings`` as
    ``LOOKBOOK_<NAME>`` (``redis_url`` as ``REDIS_URL``); ``None`` leaves one out."""
    env = {k: v for k, v in child_env().items()
           if not k.startswith("LOOKBOOK_") and k != "REDIS_URL"}  # fmt: skip
    env.update({
        "OPENBLAS_NUM_THREADS": "1",
        "LOOKBOOK_BUNDLE_DIR": str(bundles or ws.bundles),
        "LOOKBOOK_DATA_DIR": str(ws.data),
        "LOOKBOOK_BUNDLE_POLL_SECONDS": "0",
        "LOOKBOOK_API_KEYS": ws.keys.config(),
    })  # fmt: skip
    for name, value in settings.items():
        key = "REDIS_URL" if name == "redis_url" else f"LOOKBOOK_{name.upper()}"
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    return env


@contextlib.contextmanager
def serving(env: dict[str, str], log: Path, workers: int = 1) -> Iterator[Service]:
    service = Service(env, log, workers)
    try:
        service.start()
        yield service
    finally:
        service.stop()


# -- private Redis and PostgreSQL ------------------------------------------------------------------------


class PrivateRedis:
    """A ``redis-server`` of our own (no persistence) on a free port: the one we kill."""

    def __init__(self, folder: Path) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise BenchError("redis-server is not installed")
        self.binary, self.folder, self.port = binary, folder, free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://{HOST}:{self.port}/0"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [
                self.binary,
                "--port",
                str(self.port),
                "--bind",
                HOST,
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.folder),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        import redis

        client = redis.Redis(host=HOST, port=self.port, socket_timeout=0.5)
        deadline = time.monotonic() + 10
        while True:
            with contextlib.suppress(redis.RedisError):
                if client.ping():
                    break
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise BenchError(f"private redis-server on port {self.port} did not start")
            time.sleep(0.05)
        client.close()

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait(timeout=10)

    def client(self) -> Any:
        import redis

        return redis.Redis(host=HOST, port=self.port, socket_timeout=5)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)


@contextlib.contextmanager
def private_redis(folder: Path) -> Iterator[PrivateRedis]:
    server = PrivateRedis(folder)
    try:
        server.start()
        yield server
    finally:
        server.stop()


class PrivatePostgres:
    """A PostgreSQL cluster of our own (``initdb`` in a temporary folder, run as the ``postgres``
    OS user when we are root) on a free port, listening on loopback only: the one we stop."""

    def __init__(self, folder: Path) -> None:
        found = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"))
        pg_ctl = found[-1] if found else shutil.which("pg_ctl")
        if pg_ctl is None:
            raise BenchError("PostgreSQL (pg_ctl, initdb) is not installed")
        self.bin = Path(pg_ctl).parent
        # A folder of its own under the system's temporary directory: the ``postgres`` user must
        # reach it (pytest's tmp_path sits under a folder only root may enter).
        self.folder, self.port = Path(tempfile.mkdtemp(prefix="lookbook-pg-")), free_port()
        self.log_copy = folder / "postgres.log"
        self.data = self.folder / "pgdata"

    @property
    def url(self) -> str:
        return f"postgresql://postgres@{HOST}:{self.port}/postgres"

    def _run(self, *args: str, timeout: float = 60) -> None:
        cmd = list(args)
        if os.geteuid() == 0:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        done = subprocess.run(cmd, capture_output=True, timeout=timeout, check=False)
        if done.returncode != 0:
            raise BenchError(
                f"{' '.join(args[:2])} failed: {done.stderr.decode(errors='replace')[-800:]}"
            )

    def init(self) -> None:
        if os.geteuid() == 0:
            shutil.chown(self.folder, "postgres")
        self._run(str(self.bin / "initdb"), "-D", str(self.data), "-A", "trust", "-U", "postgres",
                  "--no-sync", "-E", "UTF8")  # fmt: skip

    def start(self) -> None:
        options = (f"-c port={self.port} -c listen_addresses={HOST} "
                   f"-c unix_socket_directories={self.folder} -c max_connections=50")  # fmt: skip
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-o", options, "-l",
                  str(self.folder / "postgres.log"), "-w", "-t", "60", "start")  # fmt: skip

    def stop(self, mode: str = "fast") -> None:
        self._run(
            str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "-t", "60", "stop"
        )

    def running(self) -> bool:
        return (self.data / "postmaster.pid").exists()

    def upgrade(self) -> None:
        """``lookbook db upgrade`` on it (the real command line)."""
        done = subprocess.run([*lookbook_cmd(), "db", "upgrade", "--database-url", self.url],
                              env=child_env(), capture_output=True, timeout=120, check=False)  # fmt: skip
        if done.returncode != 0:
            raise BenchError(f"lookbook db upgrade failed: {done.stdout!r} {done.stderr!r}")


@contextlib.contextmanager
def private_postgres(folder: Path) -> Iterator[PrivatePostgres]:
    server = PrivatePostgres(folder)
    server.init()
    try:
        server.start()
        server.upgrade()
        yield server
    finally:
        if server.running():
            with contextlib.suppress(BenchError, subprocess.TimeoutExpired):
                server.stop("immediate")
        with contextlib.suppress(OSError):
            shutil.copyfile(server.folder / "postgres.log", server.log_copy)
        shutil.rmtree(server.folder, ignore_errors=True)


# -- events and their acknowledgement -----------------------------------------------------------------------

EventKey = tuple[str, str, str]  # customer, item, timestamp (ms, ISO)


class EventMaker:
    """Valid events with distinct timestamps (one millisecond apart, starting two hours ago plus
    ``offset`` × 7 s, so that makers of different offsets hardly overlap), so that each can be
    found again in the store by (customer, item, time)."""

    TYPES = ("view", "click", "add_to_cart", "purchase")

    def __init__(self, ws: Workspace, seed: int = SEED, offset: int = 0) -> None:
        self.rng = random.Random(seed + offset)
        self.customers, self.items = ws.customers, ws.items
        self.start = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=2)
        self.start += timedelta(seconds=7 * offset)
        self.n = 0

    def make(self, customer: str | None = None) -> dict[str, Any]:
        self.n += 1
        when = self.start + timedelta(milliseconds=self.n)
        return {
            "customer_id": customer or self.rng.choice(self.customers),
            "item_id": self.rng.choice(self.items),
            "type": self.rng.choice(self.TYPES),
            "channel": "online",
            "timestamp": when.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        }

    @staticmethod
    def key(event: dict[str, Any]) -> EventKey:
        stamp = pd.Timestamp(event["timestamp"]).tz_convert("UTC")
        return (
            str(event["customer_id"]),
            str(event["item_id"]),
            stamp.isoformat(timespec="milliseconds"),
        )


def stored_keys(location: str | Path) -> tuple[set[EventKey], int]:
    """Every event readable in the store at ``location`` (a log folder or a database URL) as keys,
    and the count of unreadable lines (the log is readable when it opens and reads to the end)."""
    from feature_store.event_store import open_event_store

    store = open_event_store(location, read_only=True)
    try:
        frame = store.read_frame()
    finally:
        store.close()
    stamps = pd.to_datetime(frame["timestamp"], utc=True)
    keys = {
        (str(c), str(i), t.isoformat(timespec="milliseconds"))
        for c, i, t in zip(frame["customer_id"], frame["item_id"], stamps, strict=True)
    }
    return keys, int(frame.attrs.get("skipped_lines", 0))


# -- an open-loop mixed load ---------------------------------------------------------------------------------


@dataclass
class Sample:
    at: float  # scheduled, seconds since the load started
    kind: str  # "read" | "event"
    status: int  # 0: no answer (connection error or timeout)
    latency_ms: float
    retry_after: bool = False
    json_error: bool = False
    detail: str = ""


@dataclass
class Load:
    """Every request of a load run and every event acknowledged (2xx)."""

    samples: list[Sample] = field(default_factory=list)
    acknowledged: list[dict[str, Any]] = field(default_factory=list)
    elapsed_s: float = 0.0

    def of(self, kind: str, start: float = 0.0, end: float = float("inf")) -> list[Sample]:
        return [s for s in self.samples if s.kind == kind and start <= s.at < end]

    @staticmethod
    def failed(samples: Sequence[Sample]) -> list[Sample]:
        return [s for s in samples if not 200 <= s.status < 300]

    @staticmethod
    def p99(samples: Sequence[Sample]) -> float:
        values = [s.latency_ms for s in samples if s.status]
        return float(np.percentile(values, 99)) if values else float("nan")

    def achieved_rps(self) -> float:
        return len(self.samples) / self.elapsed_s if self.elapsed_s else 0.0


def read_paths(ws: Workspace, rng: random.Random) -> list[str]:
    customers, items = ws.customers, ws.items
    paths = []
    for _ in range(400):
        c, i = rng.choice(customers), rng.choice(items)
        paths.append(rng.choice([f"/v1/customers/{c}/recommendations?k=12",
                                 f"/v1/items/{i}/similar?k=12",
                                 f"/v1/customers/{c}/recommendations?k=6&surface=email",
                                 f"/v1/items/{i}/complementary?k=6"]))  # fmt: skip
    return paths


class RawClient:
    """A lean HTTP/1.1 client for the loads (httpx costs a few ms of CPU per request, which on a
    busy 2-core machine throttles the load itself): keep-alive connections, at most
    ``max_connections`` in flight, one request per connection at a time, bodies read by
    ``Content-Length`` or chunks (``benchmarks/_loadgen.py``'s reader). Loopback only."""

    def __init__(self, port: int, headers: dict[str, str], max_connections: int = 64) -> None:
        self.port = port
        self.head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        self.slots = asyncio.Semaphore(max_connections)
        self.idle: list[Any] = []

    async def request(
        self, method: str, path: str, body: bytes | None = None
    ) -> tuple[int, dict[bytes, bytes], bytes]:
        from benchmarks._loadgen import MAX_IDLE_S, _Conn, _read_response

        extra = (
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
            if body is not None
            else ""
        )
        raw = (
            f"{method} {path} HTTP/1.1\r\nHost: {HOST}:{self.port}\r\n{self.head}{extra}\r\n"
        ).encode()
        if body is not None:
            raw += body
        async with self.slots:
            for attempt in (1, 2):
                conn = None
                while self.idle and conn is None:
                    conn = self.idle.pop()
                    if time.perf_counter() - conn.last_used > MAX_IDLE_S:
                        conn.close()
                        conn = None
                reused = conn is not None
                if conn is None:
                    reader, writer = await asyncio.open_connection(HOST, self.port)
                    conn = _Conn(reader, writer)
                try:
                    conn.writer.write(raw)
                    status, headers, answer = await _read_response(conn.reader)
                except (ConnectionError, asyncio.IncompleteReadError) as exc:
                    conn.close()
                    if reused and attempt == 1 and not getattr(exc, "partial", b""):
                        continue  # a kept-alive connection the server had closed: once more
                    raise
                except BaseException:  # timeout / cancelled mid-request: the connection is unusable
                    conn.close()
                    raise
                if headers.get(b"connection", b"").lower() == b"close":
                    conn.close()
                else:
                    conn.last_used = time.perf_counter()
                    self.idle.append(conn)
                return status, headers, answer
        raise AssertionError("unreachable")

    def close(self) -> None:
        for conn in self.idle:
            conn.close()
        self.idle.clear()


def run_async(coro: Any) -> Any:
    """Run ``coro`` on uvloop when available (a cheaper event loop for the loads)."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvicorn[standard] brings it
        return asyncio.run(coro)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(coro)


async def run_load(
    base_url: str,
    ws: Workspace,
    *,
    rate: float,
    duration_s: float,
    event_share: float,
    events: EventMaker,
    timeout_s: float = 10.0,
    batch: int = 1,
    seed: int = SEED,
) -> Load:
    """``rate`` requests per second for ``duration_s`` (open loop: request ``i`` is sent at
    ``i / rate`` whatever happened before; latency from that time), ``event_share`` of them
    ``POST /v1/events`` of ``batch`` events, the rest list reads. At most ``rate * duration_s``
    requests, each bounded by ``timeout_s``; returns when the last has answered or timed out."""
    import orjson

    from benchmarks._loadgen import HttpError

    rng = random.Random(seed)
    paths = read_paths(ws, rng)
    load = Load()
    total = round(rate * duration_s)
    client = RawClient(int(base_url.rsplit(":", 1)[1]), ws.keys.header())
    loop = asyncio.get_running_loop()
    t0 = loop.time() + 0.05

    async def one(at: float, kind: str, path: str, body: list[dict[str, Any]] | None) -> None:
        scheduled = t0 + at
        retry = json_error = False
        try:
            async with asyncio.timeout(timeout_s):
                if body is None:
                    status, headers, answer = await client.request("GET", path)
                else:
                    status, headers, answer = await client.request(
                        "POST", "/v1/events", orjson.dumps(body)
                    )
            detail = "" if status < 300 else answer[:200].decode(errors="replace")
            retry = b"retry-after" in headers
            json_error = _is_error_bytes(answer)
        except (
            OSError,
            TimeoutError,
            HttpError,
            asyncio.IncompleteReadError,
            asyncio.LimitOverrunError,
        ) as exc:
            status, detail = 0, type(exc).__name__
        latency = (loop.time() - scheduled) * 1000.0
        load.samples.append(Sample(at, kind, status, latency, retry, json_error, detail))
        if body is not None and 200 <= status < 300:
            load.acknowledged.extend(body)

    tasks: set[asyncio.Task[None]] = set()  # the pending ones (a long soak sends 10^5+)
    for n in range(total):
        at = n / rate
        delay = t0 + at - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        if rng.random() < event_share:
            request = one(at, "event", "", [events.make() for _ in range(batch)])
        else:
            request = one(at, "read", rng.choice(paths), None)
        task = asyncio.create_task(request)
        tasks.add(task)
        task.add_done_callback(tasks.discard)
    if tasks:
        await asyncio.wait(set(tasks), timeout=timeout_s + 5)
    for task in list(tasks):  # bounded: what has not answered by now is a failure
        task.cancel()
    client.close()
    load.elapsed_s = loop.time() - t0
    return load


def _is_error_bytes(raw: bytes) -> bool:
    import orjson

    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return False
    error = body.get("error") if isinstance(body, dict) else None
    return (
        isinstance(error, dict)
        and isinstance(error.get("code"), str)
        and isinstance(error.get("message"), str)
    )


def _is_error_body(response: httpx.Response) -> bool:
    try:
        body = response.json()
    except ValueError:
        return False
    error = body.get("error") if isinstance(body, dict) else None
    return (
        isinstance(error, dict)
        and isinstance(error.get("code"), str)
        and isinstance(error.get("message"), str)
    )


def mib(n: float) -> str:
    return f"{n / (1 << 20):.0f} MiB"


def growth(before: int, after: int) -> str:
    return (
        f"{(after - before) / before * 100:+.1f} % ({mib(before)} → {mib(after)})"
        if before
        else "–"
    )
