"""What the learned ranker adds to a personalized feed, in-process.

Builds (or reuses, in ``--work``) a small synthetic retailer and a bundle trained on it (which
carries a learned ranker, :mod:`models.ranker`), then builds the real service twice — the ranker
off (``learned_ranker=False``: the fixed fusion) and on (the ranker as the fusion stage) — with
the response cache off, and calls :meth:`app.feeds.Feeds.personalized` directly for the same
customers (gathering the customer, sources, filters, ranking, rendering and the served-list
record). Process CPU per request, median of ``--repeat`` interleaved runs of ``--n`` requests
each; the difference is the stage's added server CPU (the candidate union's features and one
LightGBM prediction over it).

    .venv/bin/python benchmarks/ranker_serve_cost.py
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import pandas as pd
from fastapi.testclient import TestClient

from app.main import create_app
from app.settings import Settings
from benchmarks._common import small_retailer


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--work", type=Path, default=Path("/tmp/lookbook-bench/ranker-serve"))
    parser.add_argument("--customers", type=int, default=800)
    parser.add_argument("--items", type=int, default=400)
    parser.add_argument("--k", type=int, default=12)
    parser.add_argument("--n", type=int, default=300, help="requests per run")
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args(argv)

    data, bundles = small_retailer(args.work, args.customers, args.items)
    frame = pd.read_parquet(data / "interactions.parquet")
    bought = frame[frame["type"] == "purchase"]["customer_id"].astype(str).unique().tolist()
    customers = [bought[i % len(bought)] for i in range(args.n)]

    def settings(name: str, ranker: bool) -> Settings:
        return Settings(
            bundle_dir=bundles,
            event_log_dir=args.work / "events" / name,
            bundle_poll_seconds=0,
            cache_ttl_seconds=0,
            redis_url=None,
            learned_ranker=ranker,
        )

    apps = {"off": create_app(settings("off", False)), "on": create_app(settings("on", True))}
    results: dict[str, list[float]] = {name: [] for name in apps}
    with TestClient(apps["off"]), TestClient(apps["on"]):  # lifespans: bundles loaded
        feeds = {name: app.state.service.feeds for name, app in apps.items()}
        bundle = feeds["on"].bundles.current
        if bundle.ranker is None:
            raise SystemExit(f"the bundle in {bundles} has no learned ranker: retrain it")

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

    off, on = (statistics.median(results[name]) for name in ("off", "on"))
    print(f"personalized feed, k={args.k}, {len(bought)} customers with purchases")
    print(f"  ranker off (fixed fusion):  {off:8.1f} µs CPU per request")
    print(f"  ranker on  (LambdaRank):    {on:8.1f} µs CPU per request")
    print(f"  added by the learned ranker: {on - off:8.1f} µs")
    print("  runs (µs):", {name: [round(v) for v in values] for name, values in results.items()})


if __name__ == "__main__":
    main()
