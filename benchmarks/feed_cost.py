"""Server CPU of one uncached list, in-process, and where it goes.

Builds the real service on a bundle (by default the full-size one ``serve_latency.py`` trains in
``--work``: 1M customers, 100k items) with the response cache off, and calls the feeds directly —
:meth:`app.feeds.Feeds.personalized` for distinct customers with a training history, and
:meth:`app.feeds.Feeds.similar` for distinct items — so every call gathers the customer, runs
every source, filter and ranking step, renders the body and makes the served-list record, as a
request does, without HTTP. Process CPU per call, median of ``--repeat`` runs of ``--n`` calls.

With ``--stages`` it prints the CPU per request of each stage (each candidate source, the
fusion, reading the customer, rendering). With ``--profile`` it also runs the calls under :mod:`cProfile` and prints the functions that
take the most time (own and cumulative): the "which step dominates" of the cost-growth table.
With ``--redis-url`` the online store, cache and bandit state are in that Redis (a key prefix of
the run's own, deleted afterwards) and the Redis round trips per call are counted.

The response cache is off by default (``--cache-ttl 0``: every call a miss that stores nothing).
With ``--cache-ttl SECONDS`` each miss stores its list, as in production, and every run is followed
by a second pass over the same calls, each a cache hit (reported as ``cached``).

    .venv/bin/python benchmarks/feed_cost.py                          # the full-size bundle
    .venv/bin/python benchmarks/feed_cost.py --bundle DIR --profile   # any bundle, with a profile
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import os
import pstats
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np
from fastapi.testclient import TestClient

from app.main import create_app
from app.settings import Settings
from benchmarks._common import DEFAULT_WORK, latest_bundle_dir


def default_bundle(work: Path) -> Path | None:
    """The newest bundle of the full-size retailer in ``work`` (``serve_latency.py``'s)."""
    return latest_bundle_dir(work / "bundles" / "c1000000-i100000-ipc10-st8-s42")


def count_redis_calls() -> Callable[[], int]:
    """Count commands sent to Redis from now on (a pipeline is one round trip); the counter."""
    import redis

    sent = [0]
    original_execute = redis.Redis.execute_command
    original_pipeline = redis.client.Pipeline.execute
    original_immediate = redis.client.Pipeline.immediate_execute_command

    def execute_command(self: Any, *args: Any, **kwargs: Any) -> Any:
        sent[0] += 1
        return original_execute(self, *args, **kwargs)

    def pipeline_execute(self: Any, *args: Any, **kwargs: Any) -> Any:
        sent[0] += 1
        return original_pipeline(self, *args, **kwargs)

    def immediate_execute(self: Any, *args: Any, **kwargs: Any) -> Any:
        # a pipeline's own round trip before it is sent (e.g. SCRIPT EXISTS for its scripts)
        sent[0] += 1
        return original_immediate(self, *args, **kwargs)

    redis.Redis.execute_command = execute_command  # type: ignore[method-assign]
    redis.client.Pipeline.execute = pipeline_execute  # type: ignore[method-assign]
    redis.client.Pipeline.immediate_execute_command = immediate_execute  # type: ignore[method-assign]
    return lambda: sent[0]


class StageClock:
    """Process CPU spent in each stage of a feed: every candidate source of every strategy
    (and the look sources and the fallback), the fusion, reading the customer and building the
    request's context, and rendering — by wrapping those methods on the live service."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self.calls: dict[str, int] = {}

    def wrap(self, owner: Any, method: str, label: str) -> None:
        inner = getattr(owner, method)

        def timed(*args: Any, **kwargs: Any) -> Any:
            start = time.process_time()
            try:
                return inner(*args, **kwargs)
            finally:
                self.seconds[label] = self.seconds.get(label, 0.0) + time.process_time() - start
                self.calls[label] = self.calls.get(label, 0) + 1

        setattr(owner, method, timed)

    def attach(self, feeds: Any) -> None:
        from app.pipeline import Pipeline

        sources: dict[str, Any] = {}
        for table in feeds.strategies.surfaces.values():
            for strategy in table.values():
                for source, _ in strategy:
                    sources[source.name] = source
        for source in [*feeds.look_sources.values(), feeds.popular, feeds.similar_source,
                       feeds.attribute_source]:  # fmt: skip
            sources[source.name] = source
        for name, source in sources.items():
            self.wrap(source, "candidates", f"source {name}")
        self.wrap(Pipeline, "_fuse", "fusion")
        self.wrap(feeds.customers, "read", "read the customer")
        self.wrap(feeds.customers, "context", "the request's context")
        self.wrap(feeds.renderer, "ranked_list", "render")

    def report(self, requests: int) -> list[tuple[str, float, int]]:
        """(stage, ms per request, calls), the costliest first."""
        rows = [(k, v / requests * 1e3, self.calls[k]) for k, v in self.seconds.items()]
        return sorted(rows, key=lambda row: -row[1])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--work", type=Path, default=DEFAULT_WORK)
    parser.add_argument("--bundle", type=Path, default=None, help="a bundle folder")
    parser.add_argument("--n", type=int, default=500, help="calls per run")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--k", type=int, default=12)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--only", default="personalized,similar")
    parser.add_argument("--redis-url", default=None, help="online store and cache in this Redis")
    parser.add_argument(
        "--cache-ttl",
        type=float,
        default=0.0,
        help="response cache TTL in seconds (0: off, every call a miss that stores nothing); "
        "above 0 each run is followed by a pass of cache hits over the same calls",
    )
    parser.add_argument("--profile", action="store_true", help="print a cProfile of each feed")
    parser.add_argument(
        "--stages", action="store_true", help="print the CPU of each stage (sources, fusion, …)"
    )
    parser.add_argument("--top", type=int, default=30, help="functions listed per profile")
    parser.add_argument("--json", type=Path, default=None, help="write the figures here")
    args = parser.parse_args(argv)

    bundle_dir = args.bundle or default_bundle(args.work)
    if bundle_dir is None:
        raise SystemExit("no bundle: pass --bundle, or run benchmarks/serve_latency.py first")
    bundles = bundle_dir.parent
    from benchmarks.serve_latency import known_ids

    customers, with_history, items = known_ids(bundle_dir)
    rng = np.random.default_rng(args.seed)
    total = args.n * (args.repeat + 1)
    picked_c = rng.choice(with_history, size=min(total, len(with_history)), replace=False)
    picked_i = rng.choice(len(items), size=min(total, len(items)), replace=False)
    calls = {
        "personalized": [customers[i] for i in np.resize(picked_c, total)],
        "similar": [items[i] for i in np.resize(picked_i, total)],
    }
    wanted = [name.strip() for name in args.only.split(",") if name.strip()]

    counter = count_redis_calls() if args.redis_url else None
    prefix = f"lookbook-feedcost-{uuid.uuid4().hex[:8]}:"
    with tempfile.TemporaryDirectory(prefix="lookbook-feedcost-") as tmp:
        settings = Settings(
            bundle_dir=bundles,
            event_log_dir=Path(tmp) / "events",
            bundle_poll_seconds=0,
            cache_ttl_seconds=args.cache_ttl,
            redis_url=args.redis_url,
            redis_prefix=prefix,
        )
        started = time.perf_counter()
        app = create_app(settings)
        results: dict[str, Any] = {
            "bundle": str(bundle_dir),
            "redis": bool(args.redis_url),
            "cache_ttl": args.cache_ttl,
        }
        with TestClient(app):
            load_s = time.perf_counter() - started
            feeds = app.state.service.feeds
            print(
                f"bundle {bundle_dir} loaded in {load_s:.1f} s; {len(customers):,} customers, "
                f"{len(items):,} items"
            )

            def call(name: str, key: str) -> bytes:
                if name == "personalized":
                    return feeds.personalized(key, k=args.k, category=None, exclude_purchased=True)
                return feeds.similar(key, k=args.k)

            for name in wanted:
                keys = calls[name]
                for key in keys[: args.n]:  # warm-up
                    call(name, key)
                runs: list[float] = []
                hit_runs: list[float] = []
                sent_misses = sent_hits = 0
                for r in range(args.repeat):
                    chunk = keys[(r + 1) * args.n : (r + 2) * args.n]
                    sent_before = counter() if counter else 0
                    start = time.process_time()
                    for key in chunk:
                        call(name, key)
                    runs.append((time.process_time() - start) / len(chunk) * 1e3)
                    sent_after = counter() if counter else 0
                    sent_misses += sent_after - sent_before
                    if args.cache_ttl > 0:  # the same calls again: each a cache hit
                        start = time.process_time()
                        for key in chunk:
                            call(name, key)
                        hit_runs.append((time.process_time() - start) / len(chunk) * 1e3)
                        sent_hits += (counter() if counter else 0) - sent_after
                median = statistics.median(runs)
                line = f"{name:>13}: {median:6.3f} ms CPU per call (runs {[round(v, 3) for v in runs]})"
                entry: dict[str, Any] = {"cpu_ms": median, "runs": runs}
                if counter:
                    trips = sent_misses / (args.repeat * args.n)
                    entry["redis_round_trips"] = trips
                    line += f", {trips:.2f} Redis round trips per call"
                print(line, flush=True)
                if hit_runs:
                    hit_median = statistics.median(hit_runs)
                    entry["cached"] = {"cpu_ms": hit_median, "runs": hit_runs}
                    line = (
                        f"{'cached':>13}: {hit_median:6.3f} ms CPU per call "
                        f"(runs {[round(v, 3) for v in hit_runs]})"
                    )
                    if counter:
                        hit_trips = sent_hits / (args.repeat * args.n)
                        entry["cached"]["redis_round_trips"] = hit_trips
                        line += f", {hit_trips:.2f} Redis round trips per call"
                    print(line, flush=True)
                results[name] = entry
                if args.stages:
                    clock = StageClock()
                    clock.attach(feeds)
                    for key in keys[: args.n]:
                        call(name, key)
                    rows = clock.report(args.n)
                    entry["stages"] = {stage: ms for stage, ms, _ in rows}
                    print(f"--- {name}: CPU per request by stage ({args.n} calls) ---")
                    for stage, ms, n in rows:
                        print(f"  {stage:<28} {ms:7.3f} ms  ({n} calls)")
                if args.profile:
                    profiler = cProfile.Profile()
                    profiler.enable()
                    for key in keys[: args.n]:
                        call(name, key)
                    profiler.disable()
                    for order in ("tottime", "cumulative"):
                        out = io.StringIO()
                        stats = pstats.Stats(profiler, stream=out).strip_dirs()
                        stats.sort_stats(order).print_stats(args.top)
                        print(f"--- {name}: by {order} ({args.n} calls) ---")
                        print("\n".join(out.getvalue().splitlines()[4:]))
        if args.redis_url:
            import redis

            client = redis.Redis.from_url(args.redis_url)
            doomed = list(client.scan_iter(match=prefix + "*", count=1000))
            for at in range(0, len(doomed), 1000):
                client.delete(*doomed[at : at + 1000])
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
