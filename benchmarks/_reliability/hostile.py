"""Hostile input against the live service: request bodies of 10 MB and 100 MB (declared and
chunked), JSON nested 100,000 deep, batches over the limit, ids of 100,000 characters, NUL and
other control characters and astral-plane unicode in ids and query strings, ``k`` huge or
negative, NaN / infinite numbers, timestamps far in the past and the future. Criteria: each a
4xx with the JSON error body (``{"error": {"code", "message"}}``), large bodies refused before they
are read (the answer comes before the client has sent it all), server RSS flat (before / after)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx

from benchmarks._reliability.common import Row, Size, Workspace, growth, mib, service_env, serving

MB = 1 << 20
RSS_LIMIT = 64 * MB  # the most RSS may grow over the whole scenario


@dataclass(frozen=True)
class Case:
    name: str
    method: str
    path: str
    body: bytes | None = None
    streamed_mb: int = 0  # a body of this many MiB sent in chunks (no Content-Length if chunked)
    chunked: bool = False
    statuses: tuple[int, ...] = (400, 404, 413, 414, 422, 431)


def _event(**changes: Any) -> dict[str, Any]:
    event = {"customer_id": "C-hostile", "item_id": "I-hostile", "type": "view",
             "timestamp": "2026-01-01T00:00:00Z"}  # fmt: skip
    event.update(changes)
    return event


def cases(ws: Workspace) -> list[Case]:
    import orjson

    customer, item = ws.customers[0], ws.items[0]
    long_id = "C" * 100_000
    deep = b"[" * 100_000 + b"]" * 100_000
    weird = [
        "%00",
        "%01",
        "%1F",
        "%7F",
        "a%00b",
        "%F0%9F%98%80",
        "%F0%90%80%80",
        "%ED%A0%80",
        "%C0%AF",
        "%FF",
    ]
    found = [
        Case("body 10 MB, events (declared)", "POST", "/v1/events", streamed_mb=10),
        Case("body 100 MB, events (declared)", "POST", "/v1/events", streamed_mb=100),
        Case("body 100 MB, events (chunked)", "POST", "/v1/events", streamed_mb=100, chunked=True),
        Case("body 10 MB, complementary", "POST", "/v1/complementary", streamed_mb=10),
        Case(
            "body 100 MB, session (chunked)",
            "POST",
            "/v1/sessions/recommendations",
            streamed_mb=100,
            chunked=True,
        ),
        Case("body 10 MB, consent", "PUT", f"/v1/customers/{customer}/consent", streamed_mb=10),
        Case("JSON nested 100,000 deep, events", "POST", "/v1/events", deep),
        Case(
            "JSON nested 100,000 deep, complementary",
            "POST",
            "/v1/complementary",
            b'{"items": ' + deep + b"}",
        ),
        Case(
            "JSON nested 100,000 deep, session",
            "POST",
            "/v1/sessions/recommendations",
            b'{"items": ' + deep + b"}",
        ),
        Case(
            "JSON nested 100,000 deep, consent",
            "PUT",
            f"/v1/customers/{customer}/consent",
            b'{"personalization": ' + deep + b"}",
        ),
        Case("batch of 1,001 events", "POST", "/v1/events", orjson.dumps([_event()] * 1001)),
        Case(
            "batch of 100,000 events",
            "POST",
            "/v1/events",
            orjson.dumps({"events": [_event()] * 100_000}),
        ),
        Case(
            "customer id of 100,000 chars (path)", "GET", f"/v1/customers/{long_id}/recommendations"
        ),
        Case("item id of 100,000 chars (path)", "GET", f"/v1/items/{long_id}/similar"),
        Case(
            "customer id of 100,000 chars (query)",
            "GET",
            f"/v1/items/{item}/similar?customer_id={long_id}",
        ),
        Case(
            "customer id of 100,000 chars (event)",
            "POST",
            "/v1/events",
            orjson.dumps(_event(customer_id=long_id)),
        ),
        Case(
            "item id of 100,000 chars (complementary)",
            "POST",
            "/v1/complementary",
            orjson.dumps({"items": [long_id]}),
        ),
        Case("k = 10^30", "GET", f"/v1/customers/{customer}/recommendations?k={10**30}"),
        Case("k = -1", "GET", f"/v1/items/{item}/similar?k=-1"),
        Case("k = 0", "GET", f"/v1/items/{item}/complementary?k=0"),
        Case("k = 1e309", "GET", f"/v1/customers/{customer}/recommendations?k=1e309"),
        Case(
            "k = 10^30 (session body)",
            "POST",
            "/v1/sessions/recommendations",
            b'{"items": ["' + item.encode() + b'"], "k": 1000000000000000000000000000000}',
        ),
        Case(
            "k = -5 (complementary body)",
            "POST",
            "/v1/complementary",
            orjson.dumps({"items": [item], "k": -5}),
        ),
        Case("min_price = nan", "GET", f"/v1/customers/{customer}/recommendations?min_price=nan"),
        Case("max_price = inf", "GET", f"/v1/items/{item}/similar?max_price=inf"),
        Case("diversity = nan", "GET", f"/v1/customers/{customer}/recommendations?diversity=nan"),
        Case("diversity = -inf", "GET", "/v1/seasonal?diversity=-inf"),
        Case("min_churn_risk = nan", "GET", "/v1/segments/new/customers?min_churn_risk=nan"),
        Case(
            "price NaN (event, bare)",
            "POST",
            "/v1/events",
            b'{"customer_id": "C1", "item_id": "I1", "type": "purchase", "timestamp": "2026-01-01T00:00:00Z", "price": NaN}',
        ),
        Case(
            "price 1e999 (event)",
            "POST",
            "/v1/events",
            b'{"customer_id": "C1", "item_id": "I1", "type": "purchase", "timestamp": "2026-01-01T00:00:00Z", "price": 1e999}',
        ),
        Case(
            "price -1e999 (event)",
            "POST",
            "/v1/events",
            b'{"customer_id": "C1", "item_id": "I1", "type": "purchase", "timestamp": "2026-01-01T00:00:00Z", "price": -1e999}',
        ),
        Case(
            "position 1e30 (event)",
            "POST",
            "/v1/events",
            b'{"customer_id": "C1", "item_id": "I1", "type": "click", "timestamp": "2026-01-01T00:00:00Z", "recommendation_id": "r1", "position": 1000000000000000000000000000000}',
        ),
        Case(
            "timestamp year 1 (event)",
            "POST",
            "/v1/events",
            orjson.dumps(_event(timestamp="0001-01-01T00:00:00Z")),
        ),
        Case(
            "timestamp year 1970 (event)",
            "POST",
            "/v1/events",
            orjson.dumps(_event(timestamp="1970-01-01T00:00:00Z")),
        ),
        Case(
            "timestamp year 9999 (event)",
            "POST",
            "/v1/events",
            orjson.dumps(_event(timestamp="9999-12-31T23:59:59Z")),
        ),
        Case(
            "timestamp epoch 1e20 (event)",
            "POST",
            "/v1/events",
            orjson.dumps(_event(timestamp=10**18)),
        ),
        Case("seasonal date year 1", "GET", "/v1/seasonal?date=0001-01-01"),
        Case("seasonal date year 9999", "GET", "/v1/seasonal?date=9999-12-31"),
    ]
    for w in weird:
        found += [
            Case(f"customer id {w} (path)", "GET", f"/v1/customers/{w}/recommendations"),
            Case(f"item id {w} (path)", "GET", f"/v1/items/{w}/similar"),
            Case(f"customer id {w} (query)", "GET", f"/v1/items/{item}/similar?customer_id={w}"),
            Case(
                f"category {w} (query)",
                "GET",
                f"/v1/customers/{customer}/recommendations?category={w}",
            ),
            Case(f"customer id {w} (profile)", "GET", f"/v1/customers/{w}/profile"),
            Case(f"customer id {w} (erase)", "DELETE", f"/v1/customers/{w}"),
        ]
    for raw in (
        "\u0000",
        "\u0001",
        "\u001f",
        "\u007f",
        "a\u0000b",
        "\U0001f600",
        "\U00010000",
        "\ud800",
    ):
        found += [
            Case(
                f"customer id {raw!r} (event)",
                "POST",
                "/v1/events",
                orjson.dumps(_event(customer_id=raw), option=0)
                if raw != "\ud800"
                else b'{"customer_id": "\\ud800", "item_id": "I1", "type": "view", "timestamp": "2026-01-01T00:00:00Z"}',
            ),
            Case(
                f"item id {raw!r} (complementary)",
                "POST",
                "/v1/complementary",
                orjson.dumps({"items": [raw]}) if raw != "\ud800" else b'{"items": ["\\ud800"]}',
            ),
        ]
    return found


def _chunks(megabytes: int) -> Iterator[bytes]:
    block = b"[" + b'{"customer_id": "C1", "item_id": "I1", "type": "view"},' * 16_000
    sent = 0
    while sent < megabytes * MB:
        piece = block[: megabytes * MB - sent]
        sent += len(piece)
        yield piece


def send(client: httpx.Client, case: Case) -> tuple[int, dict[str, Any] | None, float]:
    """(status, JSON body or None, seconds) — status 0 when the server closed the connection
    without an answer."""
    headers = {"Content-Type": "application/json"}
    content: Any = case.body
    if case.streamed_mb:
        content = _chunks(case.streamed_mb)
        if not case.chunked:
            headers["Content-Length"] = str(case.streamed_mb * MB)
    started = time.monotonic()
    if len(case.path) > 60_000:  # httpx refuses such URLs: sent as they are, over http.client
        return _send_long(client, case, headers, started)
    try:
        response = client.request(case.method, case.path, content=content, headers=headers)
    except httpx.HTTPError:
        return 0, None, time.monotonic() - started
    try:
        body = response.json()
    except ValueError:
        body = None
    return response.status_code, body, time.monotonic() - started


def _send_long(
    client: httpx.Client, case: Case, headers: dict[str, str], started: float
) -> tuple[int, dict[str, Any] | None, float]:
    import http.client
    import json

    url = client.base_url
    conn = http.client.HTTPConnection(url.host, url.port, timeout=60)
    try:
        conn.request(
            case.method, case.path, body=case.body, headers={**headers, **dict(client.headers)}
        )
        response = conn.getresponse()
        raw = response.read()
        status = response.status
    except OSError:
        return 0, None, time.monotonic() - started
    finally:
        conn.close()
    try:
        body = json.loads(raw)
    except ValueError:
        body = None
    return status, body, time.monotonic() - started


def run(ws: Workspace, size: Size) -> Row:
    all_cases = cases(ws)
    rounds = 3 if size == "full" else 1
    row = Row("hostile_input", f"{len(all_cases)} hostile requests × {rounds}",
              "oversized bodies (10 / 100 MB), deep JSON, long ids, control chars, NaN/inf, "
              "huge k, far timestamps")  # fmt: skip
    folder = ws.folder("hostile")
    env = service_env(ws, event_log_dir=str(folder / "events"))
    with (
        serving(env, folder / "service.log") as service,
        httpx.Client(base_url=service.url, headers=ws.keys.header(), timeout=60) as client,
    ):
        for _ in range(3):  # warm up the paths before the first RSS reading
            send(client, Case("warm", "GET", f"/v1/items/{ws.items[0]}/similar"))
        rss_before = service.rss()
        slowest_big = 0.0
        for _ in range(rounds):
            for case in all_cases:
                status, body, seconds = send(client, case)
                row.requests += 1
                if case.streamed_mb >= 100:
                    slowest_big = max(slowest_big, seconds)
                error = body.get("error") if isinstance(body, dict) else None
                clear = isinstance(error, dict) and isinstance(error.get("code"), str)
                if status not in case.statuses or not clear:
                    row.failures += 1
                    row.problems.append(f"{case.name}: {status} {str(body)[:100]}")
        rss_after = service.rss()
        alive = client.get(f"/v1/items/{ws.items[0]}/similar").status_code == 200
    row.rss_growth = growth(rss_before, rss_after)
    row.notes.append(
        f"each 100 MB body answered within {slowest_big:.2f} s; RSS {mib(rss_before)} → {mib(rss_after)}"
    )
    row.require(rss_after - rss_before < RSS_LIMIT, f"RSS grew by {mib(rss_after - rss_before)}")
    row.require(alive, "the service no longer answers a plain read")
    return row
