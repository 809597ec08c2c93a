"""Soak: 150 req/s of mixed traffic with events (20 % ``POST /v1/events``, the rest list reads)
for 30 minutes (2 minutes in CI) against the service on Redis and the file log. Criteria: 0
errors, RSS growth under 10 % after the warm-up (the first fifth of the run), the p99 of every
minute reported; stable: after the warm-up, every minute's p99 within 5× the best minute's (or
250 ms) — loose, as the machine is shared."""

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
    private_redis,
    run_async,
    run_load,
    service_env,
    serving,
    stored_keys,
)

RATE = 150.0
MAX_GROWTH = 0.10
RSS_EVERY_S = 5.0


def run(ws: Workspace, size: Size) -> Row:
    duration = 1800.0 if size == "full" else 120.0
    return soak(ws, duration)


def soak(ws: Workspace, duration: float) -> Row:
    warmup = duration / 5
    row = Row(
        "soak", f"{RATE:g} req/s × {duration / 60:g} min, 20 % events (Redis, file log)", "none"
    )
    folder = ws.folder("soak")
    events_dir = folder / "events"
    with private_redis(folder) as redis:
        env = service_env(
            ws, redis_url=redis.url, redis_prefix="rel-soak:", event_log_dir=str(events_dir)
        )
        with serving(env, folder / "service.log") as service:
            rss: list[tuple[float, int]] = []

            async def scenario() -> Load:
                started = time.monotonic()
                load = asyncio.create_task(run_load(service.url, ws, rate=RATE, duration_s=duration,
                                                    event_share=0.2, events=EventMaker(ws, offset=700)))  # fmt: skip
                while not load.done():
                    rss.append((time.monotonic() - started, service.rss()))
                    await asyncio.wait({load}, timeout=RSS_EVERY_S)
                return await load

            load = run_async(scenario())
            rss.append((duration, service.rss()))
    after_warmup = [r for t, r in rss if t >= warmup]
    base, last = after_warmup[0], after_warmup[-1]
    minutes = int(duration // 60)
    p99s = [
        Load.p99([s for s in load.samples if 60 * m <= s.at < 60 * (m + 1)]) for m in range(minutes)
    ]
    windows = [
        (start, min(start + 60, duration)) for start in range(int(warmup), int(duration), 60)
    ]
    steady = [
        Load.p99([s for s in load.samples if a <= s.at < b]) for a, b in windows if b - a >= 30
    ]
    acked = {EventMaker.key(e) for e in load.acknowledged}
    found, skipped = stored_keys(events_dir)
    missing = len(acked - found)
    row.requests = len(load.samples)
    row.failures = len(Load.failed(load.samples))
    row.events = f"{len(acked)} / {len(acked) - missing}"
    row.rss_growth = growth(base, last)
    row.notes.append("p99 per minute (ms): " + ", ".join(f"{p:.0f}" for p in p99s)
                     + f"; achieved {load.achieved_rps():.0f} req/s; peak RSS {max(r for _, r in rss) >> 20} MiB")  # fmt: skip
    row.require(row.failures == 0, f"{row.failures} errors")
    row.require(len(load.samples) == round(RATE * duration), "not every request was answered")
    row.require(
        last <= base * (1 + MAX_GROWTH),
        f"RSS grew {100 * (last - base) / base:.1f} % after the warm-up",
    )
    row.require(
        bool(steady) and max(steady) <= max(5 * min(steady), 250.0),
        "p99 per minute after the warm-up not stable: " + ", ".join(f"{p:.0f}" for p in steady),
    )  # fmt: skip
    row.require(missing == 0 and skipped == 0, f"{missing} acknowledged events missing")
    return row
