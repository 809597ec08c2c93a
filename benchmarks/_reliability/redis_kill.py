"""Redis killed under load: SIGKILL of the service's (private) Redis mid-run at 100 req/s of
mixed reads and events, restarted 20 s later (4 s in CI). Criteria: 0 failed reads, every event
acknowledged and durable (in the event log), the service back on Redis once it returns (``/readyz``
says so and new state lands in the restarted, empty server); the p99 during the outage reported."""

from __future__ import annotations

import asyncio
import time

import httpx

from benchmarks._reliability.common import (
    EventMaker,
    Load,
    Row,
    Size,
    Workspace,
    growth,
    private_redis,
    run_async,
    run_load,
    service_env,
    serving,
    stored_keys,
)

RATE = 100.0


def run(ws: Workspace, size: Size) -> Row:
    before_s, outage_s, after_s = (10.0, 20.0, 20.0) if size == "full" else (4.0, 4.0, 4.0)
    duration = before_s + outage_s + after_s
    row = Row("redis_killed", f"{RATE:g} req/s × {duration:g} s, 30 % events",
              f"redis SIGKILL at {before_s:g} s, restarted {outage_s:g} s later")  # fmt: skip
    folder = ws.folder("redis-kill")
    events_dir = folder / "events"
    with private_redis(folder) as redis:
        env = service_env(
            ws, redis_url=redis.url, redis_prefix="rel:", event_log_dir=str(events_dir)
        )
        with serving(env, folder / "service.log") as service:
            rss_before = service.rss()

            async def scenario() -> tuple[Load, float, float]:
                load = asyncio.create_task(run_load(
                    service.url, ws, rate=RATE, duration_s=duration, event_share=0.3,
                    events=EventMaker(ws, offset=1)))  # fmt: skip
                await asyncio.sleep(before_s)
                killed = time.monotonic()
                redis.kill()
                await asyncio.sleep(outage_s)
                await asyncio.to_thread(redis.start)
                back = time.monotonic()
                return await load, killed, back

            started = time.monotonic()
            load, killed, back = run_async(scenario())
            kill_at, back_at = killed - started, back - started
            # Back on Redis: readiness says the cache answers, and state written now lands in the
            # restarted (empty) server.
            deadline, on_redis = time.monotonic() + 15, False
            while time.monotonic() < deadline and not on_redis:
                customer = ws.customers[0]
                httpx.post(f"{service.url}/v1/events", headers=ws.keys.header(), timeout=10,
                           json=[EventMaker(ws, offset=2).make(customer)])  # fmt: skip
                httpx.get(f"{service.url}/v1/customers/{customer}/recommendations",
                          headers=ws.keys.header(), timeout=10)  # fmt: skip
                client = redis.client()
                keys = client.dbsize()
                client.close()
                on_redis = bool(service.readyz().get("cache_available")) and keys > 0
                if not on_redis:
                    time.sleep(0.5)
            rss_after = service.rss()
    reads, events = load.of("read"), load.of("event")
    outage = [s for s in load.samples if kill_at <= s.at < back_at]
    found, skipped = stored_keys(events_dir)
    acked = {EventMaker.key(e) for e in load.acknowledged}
    missing = len(acked - found)
    row.requests = len(load.samples)
    row.failures = len(Load.failed(load.samples))
    row.events = f"{len(acked)} / {len(acked) - missing}"
    row.rss_growth = growth(rss_before, rss_after)
    row.notes.append(f"p99 {Load.p99(load.samples):.0f} ms overall, {Load.p99(outage):.0f} ms during "
                     f"the outage; achieved {load.achieved_rps():.0f} req/s")  # fmt: skip
    row.require(not Load.failed(reads), f"{len(Load.failed(reads))} failed reads {_first(reads)}")
    row.require(
        not Load.failed(events), f"{len(Load.failed(events))} events not accepted {_first(events)}"
    )
    row.require(
        missing == 0 and skipped == 0, f"{missing} acknowledged events missing, {skipped} bad lines"
    )
    row.require(on_redis, "the service did not get back on Redis after it returned")
    return row


def _first(samples: list) -> str:  # type: ignore[type-arg]
    bad = Load.failed(samples)
    return f"(first: {bad[0].status} {bad[0].detail[:120]})" if bad else ""
