"""What recording a showing adds to a list response, in-process.

Times :meth:`app.served_lists.ServedLists.show` (fresh id, record stamped from its template, kept
in the attribution store, queued for the impression log, impressions counted in Prometheus)
against the bare id splice every response had before, for a 12-position list from three sources,
with the in-process store and — when a Redis answers at ``--redis-url`` — the Redis store (one
pipelined round trip on the loopback). Prints microseconds per showing (median of ``--repeat``
runs of ``--n`` showings each).

    .venv/bin/python benchmarks/served_list_cost.py
    .venv/bin/python benchmarks/served_list_cost.py --redis-url redis://127.0.0.1:6379/15
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import redis

from app.metrics import Metrics
from app.rendering import new_recommendation_id, with_recommendation_id
from app.served_lists import Served, ServedLists, pack, unpack
from feature_store.attribution_store import InMemoryAttributionStore, RedisAttributionStore
from feature_store.impression_log import ImpressionLog
from feature_store.served_lists import template

SOURCES = ("als", "sequence", "popular")


def per_call_us(fn: Callable[[], object], n: int, repeat: int) -> float:
    runs = []
    for _ in range(repeat):
        start = time.perf_counter()
        for _ in range(n):
            fn()
        runs.append((time.perf_counter() - start) / n * 1e6)
    return statistics.median(runs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/15")
    args = parser.parse_args()

    body = (
        b'{"model_version":"v1","surface":"personalized","items":['
        + b",".join(
            b'{"item_id":"I%06d","score":0.5,"source":"als","reason":"Because you liked it",'
            b'"name":"Black T-shirt","category":"top","price":19.99,"size":"M"}' % i
            for i in range(12)
        )
        + b"]}"
    )
    record = template(
        surface="personalized",
        model_version="v1",
        positions=[(f"I{i:06d}", SOURCES[i % 3], 1.0) for i in range(12)],
        segment="loyal",
        customer_id="C0000001",
        strategy_surface="home",
    )
    served = Served(body, record)
    cached = pack(served)
    rows: list[tuple[str, float]] = []
    rows.append(
        (
            "id splice only (before)",
            per_call_us(
                lambda: with_recommendation_id(body, new_recommendation_id()), args.n, args.repeat
            ),
        )
    )
    with tempfile.TemporaryDirectory() as tmp:
        log = ImpressionLog(Path(tmp) / "impressions", flush_seconds=0.5, max_pending=10**7)
        memory = ServedLists(
            InMemoryAttributionStore(
                served_ttl_seconds=3600, touch_ttl_seconds=3600, max_records=100_000
            ),
            log,
            Metrics(),
        )
        rows.append(
            (
                "show: memory store + log",
                per_call_us(lambda: memory.show(served), args.n, args.repeat),
            )
        )
        rows.append(
            (
                "show from cache bytes (unpack)",
                per_call_us(lambda: memory.show(unpack(cached)), args.n, args.repeat),
            )
        )
        try:
            redis.Redis.from_url(args.redis_url, socket_connect_timeout=1).ping()
        except redis.RedisError as exc:
            print(f"(no Redis at {args.redis_url}: {exc}; Redis row skipped)")
        else:
            prefix = f"lbbench:{uuid.uuid4().hex[:8]}:"
            store = RedisAttributionStore(
                url=args.redis_url, prefix=prefix, served_ttl_seconds=60, touch_ttl_seconds=60
            )
            on_redis = ServedLists(store, log, Metrics())
            n = max(args.n // 10, 100)
            rows.append(
                ("show: Redis store + log", per_call_us(lambda: on_redis.show(served), n, 3))
            )
            client = redis.Redis.from_url(args.redis_url)
            keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
            for start in range(0, len(keys), 1000):
                client.delete(*keys[start : start + 1000])
        log.close()
        print(f"impression log: {log.written} records written, {log.dropped} dropped")
    base = rows[0][1]
    print(f"{'what (12 positions, 3 sources)':36s} {'µs/showing':>11s} {'added':>9s}")
    for name, us in rows:
        print(f"{name:36s} {us:11.1f} {us - base:9.1f}")


if __name__ == "__main__":
    main()
