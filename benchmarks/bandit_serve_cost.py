"""What the bandit's reranking stage adds to a personalized feed, in-process.

Builds (or reuses, in ``--work``) a small synthetic retailer and a bundle trained on it, then
builds the real service twice — bandit off (the fixed fusion) and bandit on (Thompson sampling at
exploration 0.5, 256 draws, a per-request seed) — with the response cache off, and calls
:meth:`app.feeds.Feeds.personalized` directly for the same customers (gathering the customer,
sources, filters, ranking, rendering and the served-list record, which with the bandit on also
counts its impressions in the bandit's state). Process CPU per request, median of ``--repeat``
interleaved runs of ``--n`` requests each; the difference is the stage's added server CPU. With
``--redis-url`` the bandit's state is in Redis (the posterior read is cached for a second, the
impressions are one ``MULTI`` per showing).

    .venv/bin/python benchmarks/bandit_serve_cost.py
    .venv/bin/python benchmarks/bandit_serve_cost.py --redis-url redis://127.0.0.1:6379/15
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import uuid
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import pandas as pd
import redis
from fastapi.testclient import TestClient

from app.main import create_app
from app.settings import Settings
from benchmarks._common import small_retailer
from models.bandit import BanditConfig


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--work", type=Path, default=Path("/tmp/lookbook-bench/bandit-serve"))
    parser.add_argument("--customers", type=int, default=800)
    parser.add_argument("--items", type=int, default=400)
    parser.add_argument("--k", type=int, default=12)
    parser.add_argument("--n", type=int, default=400, help="requests per run")
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--redis-url", default=None)
    args = parser.parse_args(argv)

    data, bundles = small_retailer(args.work, args.customers, args.items)
    frame = pd.read_parquet(data / "interactions.parquet")
    bought = frame[frame["type"] == "purchase"]["customer_id"].astype(str).unique().tolist()
    customers = [bought[i % len(bought)] for i in range(args.n)]
    prefix = f"lbbench:{uuid.uuid4().hex[:8]}:"

    def settings(name: str, bandit: BanditConfig) -> Settings:
        return Settings(
            bundle_dir=bundles,
            event_log_dir=args.work / "events" / name,
            bundle_poll_seconds=0,
            cache_ttl_seconds=0,
            redis_url=args.redis_url,
            redis_prefix=prefix,
            bandit=bandit,
            bandit_seed=1,
        )

    apps = {
        "off": create_app(settings("off", BanditConfig())),
        "on": create_app(settings("on", BanditConfig(enabled=True))),
    }
    results: dict[str, list[float]] = {name: [] for name in apps}
    try:
        with TestClient(apps["off"]), TestClient(apps["on"]):  # lifespans: bundles loaded
            feeds = {name: app.state.service.feeds for name, app in apps.items()}

            def run(name: str) -> float:
                personalized = feeds[name].personalized
                start = time.process_time()
                for customer in customers:
                    personalized(customer, k=args.k, category=None, exclude_purchased=True)
                return (time.process_time() - start) / len(customers) * 1e6

            for name in apps:  # warm-up
                run(name)
            for _ in range(args.repeat):
                for name in apps:
                    results[name].append(run(name))
    finally:
        if args.redis_url:
            client = redis.Redis.from_url(args.redis_url)
            keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
            if keys:
                client.delete(*keys)

    off, on = (statistics.median(results[name]) for name in ("off", "on"))
    state = "Redis" if args.redis_url else "in-process"
    print(f"personalized feed, k={args.k}, {len(bought)} customers with purchases, state {state}")
    print(f"  bandit off (fixed fusion): {off:8.1f} µs CPU per request")
    print(f"  bandit on  (TS, 0.5):      {on:8.1f} µs CPU per request")
    print(f"  added by the bandit stage: {on - off:8.1f} µs (target ≤ 300 µs)")
    print("  runs (µs):", {name: [round(v) for v in values] for name, values in results.items()})


if __name__ == "__main__":
    main()
