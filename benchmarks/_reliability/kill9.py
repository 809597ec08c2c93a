"""``kill -9`` during ingestion: several writers post batches of events as fast as the service
takes them while the whole service (every process of it) is SIGKILLed, three times (once in CI),
then started again. Variants: the file log and PostgreSQL, with one worker and with two
(``lookbook serve --workers 2``: Redis shared, each worker writing its own slot of the file log);
CI runs the file log with one worker and PostgreSQL with two. Criteria: 0 acknowledged events
missing, the log readable to the end (0 unreadable lines), the service ready again after every
kill."""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass
from typing import Any

import httpx

from benchmarks._reliability.common import (
    EventMaker,
    PrivatePostgres,
    Row,
    Service,
    Size,
    Workspace,
    private_postgres,
    private_redis,
    run_async,
    service_env,
    stored_keys,
)

WRITERS = 4
BATCH = 5


@dataclass(frozen=True)
class Variant:
    store: str  # "file" | "postgres"
    workers: int

    @property
    def name(self) -> str:
        return f"{self.store}, {self.workers} worker{'s' if self.workers > 1 else ''}"


def variants(size: Size) -> list[Variant]:
    """Every store × worker count at full size; in CI one of each store and worker count."""
    if size == "short":
        return [Variant("file", 1), Variant("postgres", 2)]
    return [Variant("file", 1), Variant("postgres", 1), Variant("file", 2), Variant("postgres", 2)]


def run(ws: Workspace, size: Size) -> Row:
    kills, run_s = (3, 3.0) if size == "full" else (1, 1.5)
    chosen = variants(size)
    row = Row("kill9", f"{WRITERS} writers × batches of {BATCH}, as fast as accepted",
              f"SIGKILL of the service × {kills} per variant ({'; '.join(v.name for v in chosen)})")  # fmt: skip
    acked_total = found_total = 0
    for variant in chosen:
        acked, found, skipped, requests, failures, readiness = _variant(ws, variant, kills, run_s)
        acked_total += acked
        found_total += found
        row.requests += requests
        row.notes.append(f"{variant.name}: {acked} acknowledged, {failures} requests failed while it was down, "
                         f"ready again after {', '.join(f'{s:.1f}' for s in readiness)} s")  # fmt: skip
        row.require(found == acked, f"{variant.name}: {acked - found} acknowledged events missing")
        row.require(skipped == 0, f"{variant.name}: {skipped} unreadable lines in the log")
        row.require(acked > 0, f"{variant.name}: no event was acknowledged")
    row.events = f"{acked_total} / {found_total}"
    return row


def _variant(
    ws: Workspace, variant: Variant, kills: int, run_s: float
) -> tuple[int, int, int, int, int, list[float]]:
    folder = ws.folder(f"kill9-{variant.store}-{variant.workers}")
    events_dir = folder / "events"
    with private_redis(folder) as redis:
        pg: PrivatePostgres | None = None
        stack = None
        if variant.store == "postgres":
            stack = private_postgres(folder)
            pg = stack.__enter__()
        try:
            settings: dict[str, str | None] = {
                "event_log_dir": str(events_dir),
                "redis_prefix": "rel:",
            }
            if variant.workers > 1 or variant.store == "postgres":
                settings["redis_url"] = redis.url
            if pg is not None:
                settings["database_url"] = pg.url
            service = Service(service_env(ws, **settings), folder / "service.log", variant.workers)
            try:
                service.start()
                acked, requests, failures, readiness = run_async(
                    _write_and_kill(service, ws, kills, run_s, variant))  # fmt: skip
            finally:
                service.stop()
            found, skipped = stored_keys(pg.url if pg is not None else events_dir)
        finally:
            if stack is not None:
                stack.__exit__(None, None, None)
    keys = {EventMaker.key(e) for e in acked}
    return len(keys), len(keys & found), skipped, requests, failures, readiness


async def _write_and_kill(service: Service, ws: Workspace, kills: int, run_s: float,
                          variant: Variant) -> tuple[list[dict[str, Any]], int, int, list[float]]:  # fmt: skip
    acked: list[dict[str, Any]] = []
    counts = {"requests": 0, "failures": 0}
    stop = asyncio.Event()
    makers = [EventMaker(ws, offset=100 + 10 * variant.workers + i + (50 if variant.store == "postgres" else 0))
              for i in range(WRITERS)]  # fmt: skip
    deadline = time.monotonic() + kills * (run_s + 120) + 60

    async def writer(maker: EventMaker) -> None:
        async with httpx.AsyncClient(
            base_url=service.url, headers=ws.keys.header(), timeout=10
        ) as client:
            while not stop.is_set() and time.monotonic() < deadline:
                batch = [maker.make() for _ in range(BATCH)]
                counts["requests"] += 1
                try:
                    response = await client.post("/v1/events", json=batch)
                except httpx.HTTPError:
                    counts["failures"] += 1
                    await asyncio.sleep(0.05)
                    continue
                if response.status_code == 200 and response.json().get("accepted") == BATCH:
                    acked.extend(batch)
                else:
                    counts["failures"] += 1
                    await asyncio.sleep(0.05)

    tasks = [asyncio.create_task(writer(m)) for m in makers]
    readiness = []
    rng = random.Random(variant.workers)
    for _ in range(kills):
        await asyncio.sleep(run_s * rng.uniform(0.7, 1.3))
        service.kill9()
        readiness.append(await asyncio.to_thread(service.start))
    await asyncio.sleep(run_s)  # writing on after the last restart
    stop.set()
    await asyncio.wait(tasks, timeout=30)
    return acked, counts["requests"], counts["failures"], readiness
