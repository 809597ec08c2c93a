"""Erasure leaves no trace: a customer of the retailer (in its training data too) gets events,
consent, profile state, cached lists, served-list records and bandit credit (the bandit on, a
click echoing a served list); then ``DELETE /v1/customers/{id}``. Every store is then scanned for
the customer id: every Redis key and value under the service's prefix, the event log's segment
files and consent file (or every PostgreSQL row, cast to text), the impression log, the service's
own log, and the bundle the next ``lookbook train`` writes. Criteria: 0 matches — apart from the
erasure record itself (the file log's tombstone line, the ``erasures`` row), which is what keeps
the customer's late events out and what training drops them by (``app/erasure.py``); those are
counted separately. Run on the file log and on PostgreSQL."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path
from typing import Any

import httpx

from benchmarks._common import child_env, lookbook_cmd
from benchmarks._reliability.common import (
    EventMaker,
    PrivatePostgres,
    Row,
    Size,
    Workspace,
    private_postgres,
    private_redis,
    service_env,
    serving,
)
from models.bundle import latest_bundle

PREFIX = "rel-erase:"


def scan_redis(client: Any, needle: bytes) -> list[str]:
    """Keys under :data:`PREFIX` whose name or value holds ``needle``."""
    found = []
    for key in client.scan_iter(match=f"{PREFIX}*".encode(), count=1000):
        kind = client.type(key).decode()
        if kind == "string":
            values = [client.get(key) or b""]
        elif kind == "hash":
            values = [b for pair in client.hgetall(key).items() for b in pair]
        elif kind == "list":
            values = client.lrange(key, 0, -1)
        elif kind == "set":
            values = list(client.smembers(key))
        elif kind == "zset":
            values = [member for member, _ in client.zrange(key, 0, -1, withscores=True)]
        elif kind == "stream":
            values = [
                b for _, fields in client.xrange(key) for pair in fields.items() for b in pair
            ]
        else:
            values = []
        if needle in key or any(needle in v for v in values):
            found.append(f"redis {key.decode(errors='replace')} ({kind})")
    return found


def scan_files(root: Path, needle: bytes, label: str) -> tuple[list[str], int]:
    """Files under ``root`` holding ``needle`` (paths), and the tombstone lines naming it."""
    found, tombstones = [], 0
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        data = path.read_bytes()
        if needle not in data:
            continue
        lines = [line for line in data.split(b"\n") if needle in line]
        erasure_lines = [line for line in lines if line.startswith(b'{"tombstone"')]
        tombstones += len(erasure_lines)
        if len(erasure_lines) < len(lines) or not lines:
            found.append(f"{label} {path.relative_to(root)}")
    return found, tombstones


def scan_postgres(url: str, needle: str) -> tuple[list[str], int]:
    """Tables whose rows (cast to text) hold ``needle``, and the rows of ``erasures`` naming it."""
    import psycopg

    found, erasures = [], 0
    with psycopg.connect(url) as conn:
        tables = [r[0] for r in conn.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public'").fetchall()]  # fmt: skip
        for table in tables:
            count = conn.execute(
                f'SELECT count(*) FROM "{table}" t WHERE strpos(t::text, %s) > 0', [needle]
            ).fetchone()[0]  # type: ignore[index]
            if table == "erasures":
                erasures += count
            elif count:
                found.append(f"postgres {table}: {count} rows")
    return found, erasures


def run(ws: Workspace, size: Size) -> Row:
    victims = 3 if size == "full" else 1
    row = Row("erasure", f"{victims} customer(s) × (events, consent, profile, cached lists, served "
              "lists, bandit credit), file log and PostgreSQL", "DELETE /v1/customers/{id}, then every store scanned")  # fmt: skip
    for store in ("file", "postgres"):
        for n in range(victims):
            customer = ws.customers[10 + 7 * n + (100 if store == "postgres" else 0)]
            matches, records, requests, seen = _erase_and_scan(ws, store, customer)
            row.requests += requests
            row.notes.append(f"{store}: {customer} in {seen} places before, "
                             f"{records} erasure record(s) after")  # fmt: skip
            row.require(
                seen >= 3,
                f"{store}: the scan saw {customer} in only {seen} places before the erasure",
            )
            row.failures += len(matches)
            for match in matches:
                row.problems.append(f"{store}: {customer} found in {match}")
    row.events = "–"
    return row


def _erase_and_scan(ws: Workspace, store: str, customer: str) -> tuple[list[str], int, int, int]:
    folder = ws.folder(f"erasure-{store}")
    events_dir = folder / "events"
    bundles = ws.own_bundles(f"erasure-{store}")
    needle = customer.encode()
    with private_redis(folder) as redis:
        pg: PrivatePostgres | None = None
        stack = private_postgres(folder) if store == "postgres" else None
        if stack is not None:
            pg = stack.__enter__()
        try:
            settings: dict[str, str | None] = {
                "redis_url": redis.url, "redis_prefix": PREFIX, "event_log_dir": str(events_dir),
                "bandit__enabled": "true", "bandit_seed": "14", "compaction_seconds": "1",
                "impression_log_flush_seconds": "0.2",
                "database_url": pg.url if pg is not None else None,
            }  # fmt: skip
            requests = 0
            with serving(service_env(ws, bundles, **settings), folder / "service.log") as service, \
                    httpx.Client(base_url=service.url, headers=ws.keys.header(), timeout=30) as client:  # fmt: skip

                def call(method: str, path: str, **kwargs: Any) -> httpx.Response:
                    nonlocal requests
                    requests += 1
                    response = client.request(method, path, **kwargs)
                    if response.status_code >= 300:
                        raise RuntimeError(
                            f"{method} {path}: {response.status_code} {response.text[:200]}"
                        )
                    return response

                call("PUT", f"/v1/customers/{customer}/consent", json={"personalization": True})
                maker = EventMaker(ws, offset=400)
                call("POST", "/v1/events", json=[maker.make(customer) for _ in range(8)])
                shown = call("GET", f"/v1/customers/{customer}/recommendations?k=6").json()
                call("GET", f"/v1/customers/{customer}/recommendations?k=6")  # cached
                call("GET", f"/v1/items/{ws.items[3]}/similar?customer_id={customer}")
                click = maker.make(customer) | {"item_id": shown["items"][0]["item_id"], "type": "click",
                                                "recommendation_id": shown["recommendation_id"], "position": 0}  # fmt: skip
                call("POST", "/v1/events", json=[click])
                call("GET", f"/v1/customers/{customer}/profile")
                time.sleep(0.5)  # the impression log writes every 0.2 s
                rclient = redis.client()
                seen = scan_redis(rclient, needle) + scan_files(events_dir, needle, "event log")[0]
                rclient.close()
                if pg is not None:
                    seen += scan_postgres(pg.url, customer)[0]
                call("DELETE", f"/v1/customers/{customer}")
                time.sleep(3.0)  # compaction every second; the impression log written
                rclient = redis.client()
                matches = scan_redis(rclient, needle)
                rclient.close()
            # stopped: the impression log's last records written, the files closed
            found, records = scan_files(events_dir, needle, "event log")
            matches += found
            if pg is not None:
                found, erasures = scan_postgres(pg.url, customer)
                matches += found
                records += erasures
            log_found, _ = scan_files(folder, needle, "file")
            matches += [m for m in log_found if "service.log" in m]
            train = [*lookbook_cmd(), "train", "--data", str(ws.data), "--out", str(bundles)]
            train += ["--database-url", pg.url] if pg is not None else ["--events", str(events_dir)]
            done = subprocess.run(train, env=child_env({"OPENBLAS_NUM_THREADS": "1"}), capture_output=True,
                                  timeout=900, check=False)  # fmt: skip
            if done.returncode != 0:
                matches.append(
                    f"`lookbook train` failed: {done.stderr.decode(errors='replace')[-300:]}"
                )
            else:
                info = latest_bundle(bundles)
                assert info is not None
                found, _ = scan_files(info.path, needle, f"bundle {info.version}")
                matches += found
        finally:
            if stack is not None:
                stack.__exit__(None, None, None)
    return matches, records, requests, len(seen)
