"""Event ingestion through ``lookbook serve --workers N``: accepted events per second over HTTP,
for each worker count, with every worker writing its own slot of the shared file log (or
PostgreSQL with ``--database-url``) and sharing Redis.

1. Prepares (or reuses, in ``--work``) a small synthetic retailer and a bundle trained on it with
   the real command line (``lookbook generate`` / ``lookbook train`` in subprocesses).
2. For each ``--workers`` value starts ``lookbook serve --workers N`` on a free loopback port
   (``REDIS_URL`` with a fresh key prefix, a fresh event log directory, no bundle polling) and
   waits until every worker has started.
3. ``--connections`` threads, each with its own keep-alive connection, post ``--events`` events in
   requests of ``--batch`` events (closed loop: each thread sends its next request when the last
   one answered), after a warm-up of a tenth as many. Prints events/s, requests/s, p50/p99 request
   latency and non-2xx answers, then counts the run's events in the event store (warm-up
   included) against those posted; the exit code is 1 when any was refused or is missing.

Figures depend heavily on what else runs on the machine; the load average is printed with them.

    .venv/bin/python benchmarks/serve_workers.py                           # workers 1 and 2
    .venv/bin/python benchmarks/serve_workers.py --events 2000 --batch 1 --workers 1 2
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import httpx
import redis

from benchmarks._common import (
    BenchError,
    RetailerSpec,
    child_env,
    ensure_dataset,
    latest_bundle_dir,
    load_average,
    log_tail,
    lookbook_cmd,
    machine_info,
    stop_process_group,
    train_bundle,
)
from feature_store.event_store import open_event_store

SPEC = RetailerSpec(customers=2_000, items=500)


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_service(
    workers: int, env: dict[str, str], log: Path, timeout: float = 180.0
) -> tuple[subprocess.Popen[bytes], str]:
    """``lookbook serve --workers N``, ready (every worker started, a bundle loaded)."""
    port = free_port()
    cmd = [*lookbook_cmd(), "serve", "--port", str(port), "--workers", str(workers)]
    with log.open("wb") as out:
        proc = subprocess.Popen(
            cmd, env=child_env(env), stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + timeout
    with httpx.Client(base_url=url, timeout=2.0) as http:
        while True:
            if proc.poll() is not None:
                raise BenchError(f"the service exited:\n{log_tail(log)}")
            if time.monotonic() > deadline:
                stop_process_group(proc)
                raise BenchError(f"the service was not ready in {timeout:g} s:\n{log_tail(log)}")
            started = log.read_text(errors="replace").count("Application startup complete.")
            try:
                if started >= workers and http.get("/readyz").status_code == 200:
                    return proc, url
            except httpx.TransportError:
                pass
            time.sleep(0.2)


def make_requests(events: int, batch: int, run: str) -> list[list[dict[str, Any]]]:
    start = datetime.now(UTC) - timedelta(hours=1)
    kinds = ("view", "click", "add_to_cart", "purchase")
    flat = [
        {
            "customer_id": f"{run}-{i % 500:04d}",
            "item_id": f"I{(i * 7) % SPEC.items:06d}",
            "type": kinds[i % 4],
            "timestamp": (start + timedelta(milliseconds=i)).isoformat(),
        }
        for i in range(events)
    ]
    return [flat[k : k + batch] for k in range(0, len(flat), batch)]


def drive(url: str, requests: list[list[dict[str, Any]]], connections: int) -> dict[str, Any]:
    latencies: list[float] = []
    failures: list[int] = []
    lock = threading.Lock()

    def worker(chunk: list[list[dict[str, Any]]]) -> None:
        with httpx.Client(base_url=url, timeout=60.0) as http:
            for body in chunk:
                sent = time.perf_counter()
                answer = http.post("/v1/events", json={"events": body})
                elapsed = time.perf_counter() - sent
                with lock:
                    latencies.append(elapsed)
                    if not 200 <= answer.status_code < 300:
                        failures.append(answer.status_code)

    chunks = [requests[k::connections] for k in range(connections)]
    start = time.perf_counter()
    with ThreadPoolExecutor(connections) as pool:
        list(pool.map(worker, chunks))
    wall = time.perf_counter() - start
    events = sum(len(r) for r in requests)
    ordered = sorted(latencies)
    return {
        "wall_s": wall,
        "events_per_s": events / wall,
        "requests_per_s": len(requests) / wall,
        "p50_ms": statistics.median(ordered) * 1000,
        "p99_ms": ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))] * 1000,
        "non_2xx": len(failures),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "lb-workers")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--events", type=int, default=4_000, help="events per measurement")
    parser.add_argument("--batch", type=int, default=10, help="events per request")
    parser.add_argument("--connections", type=int, default=16, help="concurrent connections")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/14")
    parser.add_argument("--database-url", help="a migrated PostgreSQL event store (default: file)")
    args = parser.parse_args()

    args.work.mkdir(parents=True, exist_ok=True)
    data, _, _ = ensure_dataset(args.work, SPEC, echo=False)
    bundles = args.work / "bundles" / SPEC.name
    if latest_bundle_dir(bundles) is None:
        train_bundle(data, bundles, log_path=args.work / "logs" / "train.log", echo=False)
    info = machine_info()
    print(f"machine: {info}")
    store = "PostgreSQL" if args.database_url else "file log (a slot per worker)"
    print(
        f"{args.events} events, {args.batch} per request, {args.connections} connections, "
        f"event store: {store}"
    )
    rows = []
    for workers in args.workers:
        run = f"r{uuid.uuid4().hex[:6]}"
        prefix = f"lbbench:{run}:"
        events_dir = args.work / "runs" / run / "events"
        env = {
            "REDIS_URL": args.redis_url,
            "LOOKBOOK_REDIS_PREFIX": prefix,
            "LOOKBOOK_BUNDLE_DIR": str(bundles),
            "LOOKBOOK_EVENT_LOG_DIR": str(events_dir),
            "LOOKBOOK_BUNDLE_POLL_SECONDS": "0",
            "LOOKBOOK_COMPACTION_SECONDS": "0",
            "OPENBLAS_NUM_THREADS": "1",
        }
        if args.database_url:
            env["LOOKBOOK_DATABASE_URL"] = args.database_url
        log = args.work / "runs" / run / "serve.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        proc, url = start_service(workers, env, log)
        try:
            requests = make_requests(args.events, args.batch, run)
            drive(url, requests[: max(1, len(requests) // 10)], args.connections)  # warm-up
            load_before = load_average()
            figures = drive(url, requests, args.connections)
        finally:
            stop_process_group(proc)
            client = redis.Redis.from_url(args.redis_url)
            keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
            if keys:
                client.delete(*keys)
        reader = open_event_store(args.database_url or events_dir, read_only=True)
        stored = sum(1 for e in reader.iter_events() if e.customer_id.startswith(run))
        reader.close()
        expected = args.events + sum(len(r) for r in requests[: max(1, len(requests) // 10)])
        figures.update(workers=workers, stored=stored, expected=expected, load=load_before)
        rows.append(figures)
        print(
            f"workers={workers}: {figures['events_per_s']:.0f} events/s "
            f"({figures['requests_per_s']:.0f} requests/s), p50 {figures['p50_ms']:.1f} ms, "
            f"p99 {figures['p99_ms']:.1f} ms, non-2xx {figures['non_2xx']}, "
            f"stored {stored}/{expected}, load average {load_before}",
            flush=True,
        )
    return 0 if all(r["non_2xx"] == 0 and r["stored"] == r["expected"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
