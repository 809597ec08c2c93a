"""PostgreSQL stopped under load: the service's (private) PostgreSQL cluster is stopped mid-run
under mixed reads and events, and started again 20 s later (4 s in CI). Criteria: every event
during the outage gets a 2xx only if it was stored, else a 503 with ``Retry-After`` and the JSON
error body; reads keep answering; events are accepted again after the restart; 0 acknowledged
events missing from the database."""

from __future__ import annotations

import asyncio
import time

from benchmarks._reliability.common import (
    EventMaker,
    Load,
    Row,
    Size,
    Workspace,
    growth,
    private_postgres,
    run_async,
    run_load,
    service_env,
    serving,
    stored_keys,
)

RATE = 100.0
SETTLE_S = 3.0  # after the restart, events must be accepted again within this long


def run(ws: Workspace, size: Size) -> Row:
    before_s, outage_s, after_s = (10.0, 20.0, 20.0) if size == "full" else (4.0, 4.0, 6.0)
    duration = before_s + outage_s + after_s
    row = Row("postgres_stopped", f"{RATE:g} req/s × {duration:g} s, 30 % events",
              f"private PostgreSQL stopped (pg_ctl -m fast) at {before_s:g} s, started "
              f"{outage_s:g} s later")  # fmt: skip
    folder = ws.folder("pg-stop")
    with private_postgres(folder) as pg:
        env = service_env(ws, database_url=pg.url, database_timeout_seconds="2",
                          event_log_dir=str(folder / "events"))  # fmt: skip
        with serving(env, folder / "service.log") as service:
            rss_before = service.rss()

            async def scenario() -> tuple[Load, float, float, float]:
                start = time.monotonic()
                load = asyncio.create_task(run_load(
                    service.url, ws, rate=RATE, duration_s=duration, event_share=0.3,
                    events=EventMaker(ws, offset=3)))  # fmt: skip
                await asyncio.sleep(before_s)
                stopping = time.monotonic() - start
                await asyncio.to_thread(pg.stop, "fast")
                await asyncio.sleep(outage_s)
                restarting = time.monotonic() - start
                await asyncio.to_thread(pg.start)
                up = time.monotonic() - start
                return await load, stopping, restarting, up

            load, stopping, _restarting, up = run_async(scenario())
            rss_after = service.rss()
        found, skipped = stored_keys(pg.url)
    acked = {EventMaker.key(e) for e in load.acknowledged}
    missing = len(acked - found)
    reads = load.of("read")
    # An event overlaps the outage when it was in flight at any moment of it.
    during = [s for s in load.of("event") if s.at < up and s.at + s.latency_ms / 1000 >= stopping]
    refused = [s for s in during if s.status == 503]
    unclear = [s for s in during if not (200 <= s.status < 300) and not (s.status == 503 and s.retry_after and s.json_error)]  # fmt: skip
    before = [s for s in load.of("event") if s.at + s.latency_ms / 1000 < stopping]
    after = load.of("event", up + SETTLE_S)
    row.requests = len(load.samples)
    row.failures = (
        len(Load.failed(reads)) + len(unclear) + len(Load.failed(before)) + len(Load.failed(after))
    )
    row.events = f"{len(acked)} / {len(acked) - missing}"
    row.rss_growth = growth(rss_before, rss_after)
    row.notes.append(f"{len(refused)} of {len(during)} events in the outage refused with 503 + "
                     f"Retry-After; reads p99 in the outage "
                     f"{Load.p99(load.of('read', stopping, up)):.0f} ms; achieved {load.achieved_rps():.0f} req/s")  # fmt: skip
    row.require(not Load.failed(reads), f"{len(Load.failed(reads))} failed reads")
    row.require(not unclear, f"{len(unclear)} outage events neither 2xx nor a clear 503 "
                + (f"(first: {unclear[0].status} {unclear[0].detail[:120]})" if unclear else ""))  # fmt: skip
    row.require(bool(refused), "no event was refused during the outage (was it one?)")
    row.require(
        not Load.failed(before), f"{len(Load.failed(before))} events failed before the outage"
    )
    row.require(bool(after) and not Load.failed(after),
                f"{len(Load.failed(after))} of {len(after)} events failed {SETTLE_S:g} s after the restart")  # fmt: skip
    row.require(
        missing == 0 and skipped == 0,
        f"{missing} acknowledged events missing, {skipped} unreadable",
    )
    return row
