"""Batched durable ingestion: events per second into the file log and into PostgreSQL, in one run.

For each store and batch size, ``--events`` prebuilt, valid events go in through
``EventStore.append`` (the call ``POST /v1/events`` makes): each batch is durable when the call
returns (file log: one write + fsync; PostgreSQL: one ``INSERT … SELECT FROM unnest`` committed,
synchronous_commit as the server is configured). ``--writers`` threads append at once, each with
its own store instance (PostgreSQL: its own pool). Then the trainer's read (``read_frame``: the
file log's JSON lines, PostgreSQL's ``COPY … TO STDOUT``) is timed over what was written.

PostgreSQL: ``--database-url`` to use a given (migrated) database; by default a temporary one is
created on the local server (``--admin-url``), migrated, and dropped at the end.

    .venv/bin/python benchmarks/event_ingest.py                       # 20,000 events, 100 & 1000
    .venv/bin/python benchmarks/event_ingest.py --events 5000 --batch-sizes 100
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tqdm.auto import tqdm

from benchmarks._common import load_average, machine_info, now_iso, save_json
from feature_store.event_store import EventStore, describe_location, open_event_store
from feature_store.schema import Interaction
from training.report import markdown_table

TARGET_EVENTS_PER_SECOND = 5_000
DEFAULT_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"


def make_events(count: int, seed: int = 0) -> list[Interaction]:
    """``count`` valid events of 1,000 customers over 5,000 items (deterministic)."""
    start = datetime(2026, 1, 1, tzinfo=UTC)
    kinds = ("view", "click", "add_to_cart", "purchase")
    return [
        Interaction(
            customer_id=f"C{(i * 7919 + seed) % 1000:06d}",
            item_id=f"I{(i * 104729 + seed) % 5000:06d}",
            type=kinds[i % 4],
            timestamp=start + timedelta(seconds=i),
            price=19.99 if i % 4 == 3 else None,
            size="M" if i % 3 == 0 else None,
            position=i % 12 if i % 2 == 0 else None,
        )
        for i in range(count)
    ]


@contextlib.contextmanager
def temporary_database(admin_url: str) -> Iterator[str]:
    """A migrated database of this run's own, dropped afterwards."""
    import psycopg
    from psycopg import sql

    from feature_store.schema_migrations import upgrade

    name = f"lookbook_bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(admin_url, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        url = f"{admin_url.rsplit('/', 1)[0]}/{name}"
        upgrade(url)
        yield url
    finally:
        with psycopg.connect(admin_url, autocommit=True) as admin:
            admin.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


def clear(location: str | Path) -> None:
    """Empty the store at ``location`` between runs."""
    if isinstance(location, Path):
        for path in location.glob("*"):
            if path.is_file():
                path.unlink()
        return
    import psycopg

    with psycopg.connect(location, autocommit=True) as conn:
        conn.execute("TRUNCATE events, consents, erasures RESTART IDENTITY")


def measure(
    location: str | Path, events: list[Interaction], batch_size: int, writers: int, label: str
) -> dict[str, Any]:
    """Append ``events`` in batches of ``batch_size`` from ``writers`` threads; time it all."""
    clear(location)
    stores: list[EventStore] = [open_event_store(location) for _ in range(writers)]
    batches = [events[i : i + batch_size] for i in range(0, len(events), batch_size)]
    latencies: list[float] = []
    lock = threading.Lock()
    progress = tqdm(total=len(events), desc=f"{label} batch {batch_size}", unit="ev", leave=False)

    def write(store: EventStore, share: list[list[Interaction]]) -> None:
        for batch in share:
            start = time.perf_counter()
            store.append(batch)
            elapsed = time.perf_counter() - start
            with lock:
                latencies.append(elapsed)
                progress.update(len(batch))

    threads = [
        threading.Thread(target=write, args=(store, batches[n::writers]))
        for n, store in enumerate(stores)
    ]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - started
    progress.close()
    for store in stores:
        store.close()
    with contextlib.closing(open_event_store(location, read_only=True)) as reader:
        read_start = time.perf_counter()
        frame = reader.read_frame()
        read_seconds = time.perf_counter() - read_start
    if len(frame) != len(events):
        raise RuntimeError(f"{label}: {len(frame)} events read back, {len(events)} written")
    latencies.sort()
    return {
        "store": label,
        "batch_size": batch_size,
        "writers": writers,
        "events": len(events),
        "seconds": round(wall, 3),
        "events_per_second": round(len(events) / wall),
        "batch_p50_ms": round(statistics.median(latencies) * 1000, 2),
        "batch_p95_ms": round(latencies[int(0.95 * (len(latencies) - 1))] * 1000, 2),
        "read_frame_events_per_second": round(len(frame) / read_seconds),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=20_000, help="events per measurement")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[100, 1000])
    parser.add_argument("--writers", type=int, default=1, help="threads appending at once")
    parser.add_argument("--database-url", help="a migrated database (default: a temporary one)")
    parser.add_argument("--admin-url", default=DEFAULT_ADMIN_URL)
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()

    events = make_events(args.events)
    rows: list[dict[str, Any]] = []
    with contextlib.ExitStack() as stack:
        directory = Path(stack.enter_context(tempfile.TemporaryDirectory())) / "events"
        directory.mkdir()
        url = args.database_url or stack.enter_context(temporary_database(args.admin_url))
        for batch_size in args.batch_sizes:
            for label, location in (("file log", directory), ("postgresql", url)):
                rows.append(measure(location, events, batch_size, args.writers, label))
    print(f"# Event ingestion ({now_iso()}, load {load_average()})")
    print(f"machine: {machine_info()}; PostgreSQL: {describe_location(url)}")
    print()
    print(
        markdown_table(
            [
                "store",
                "batch",
                "writers",
                "events",
                "events/s",
                "batch p50 ms",
                "batch p95 ms",
                "read_frame events/s",
            ],
            [
                [
                    r["store"],
                    r["batch_size"],
                    r["writers"],
                    r["events"],
                    f"{r['events_per_second']:,}",
                    r["batch_p50_ms"],
                    r["batch_p95_ms"],
                    f"{r['read_frame_events_per_second']:,}",
                ]
                for r in rows
            ],
        )
    )
    below = [r for r in rows if r["events_per_second"] < TARGET_EVENTS_PER_SECOND]
    print()
    print(
        f"target ≥ {TARGET_EVENTS_PER_SECOND:,} events/s: "
        + ("met by every run" if not below else f"missed by {len(below)} run(s)")
    )
    if args.json:
        save_json(args.json, {"machine": machine_info(), "runs": rows})


if __name__ == "__main__":
    main()
