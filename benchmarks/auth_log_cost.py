"""What API-key checks and the JSON access log add to a request, in-process.

Builds one tiny FastAPI app twice around the same trivial route: bare (no scope, no middleware)
and guarded as the service guards it — the route's ``require_scope`` dependency,
``AuthMiddleware`` over a ring of ``--keys`` keys, ``RequestLogMiddleware`` with the access log
written as JSON lines (to a null stream) — and calls each straight through the ASGI interface with
a valid key. Process CPU per request, median of ``--repeat`` interleaved runs of ``--n`` requests;
the difference is what auth and logging add to every request of the real service.

    .venv/bin/python benchmarks/auth_log_cost.py
"""

from __future__ import annotations

import argparse
import asyncio
import io
import logging
import statistics
import sys
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fastapi import APIRouter, FastAPI
from starlette.types import ASGIApp

from app.auth import AuthMiddleware, KeyRing, Scope, new_key, require_scope
from app.metrics import Metrics
from app.request_log import ACCESS_LOGGER, JsonFormatter, RequestLogMiddleware


def _router() -> APIRouter:
    router = APIRouter()

    @router.get("/v1/items/{item_id}/similar")
    async def similar(item_id: str) -> dict[str, str]:
        return {"item_id": item_id}

    return router


def build(guarded: bool, n_keys: int) -> tuple[ASGIApp, str]:
    app = FastAPI()
    keys = [new_key(f"key-{i}", [Scope.READ]) for i in range(n_keys)]
    app.state.api_keys = KeyRing(entry for _, entry in keys)
    if not guarded:
        app.include_router(_router())
        return app, keys[0][0]
    app.include_router(_router(), dependencies=[require_scope(Scope.READ)])
    app.add_middleware(AuthMiddleware, keys=app.state.api_keys, routes=app.router)
    app.add_middleware(RequestLogMiddleware, metrics=Metrics(), model_version=lambda: "v1")
    return app, keys[-1][0]


async def run(app: ASGIApp, key: str, n: int) -> float:
    headers = [(b"authorization", f"Bearer {key}".encode()), (b"host", b"testserver")]

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Any) -> None:
        return None

    start = time.process_time()
    for i in range(n):
        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "GET",
            "scheme": "http",
            "path": f"/v1/items/I{i:06d}/similar",
            "raw_path": b"",
            "root_path": "",
            "query_string": b"",
            "headers": headers,
            "client": ("127.0.0.1", 1),
            "server": ("testserver", 80),
        }
        await app(scope, receive, send)  # type: ignore[arg-type]
    return (time.process_time() - start) / n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=5000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--keys", type=int, default=10, help="configured keys (all compared)")
    args = parser.parse_args()
    handler = logging.StreamHandler(io.StringIO())
    handler.setFormatter(JsonFormatter())
    access = logging.getLogger(ACCESS_LOGGER)
    access.addHandler(handler)
    access.setLevel(logging.INFO)
    access.propagate = False
    bare, bare_key = build(False, args.keys)
    guarded, key = build(True, args.keys)
    times: dict[str, list[float]] = {"bare": [], "guarded": []}
    for _ in range(args.repeat):
        for name, app, k in (("bare", bare, bare_key), ("guarded", guarded, key)):
            handler.stream = io.StringIO()
            times[name].append(asyncio.run(run(app, k, args.n)))
    bare_us = statistics.median(times["bare"]) * 1e6
    guarded_us = statistics.median(times["guarded"]) * 1e6
    print(f"requests: {args.n} x {args.repeat}, keys configured: {args.keys}")
    print(f"bare route:                        {bare_us:8.1f} us CPU / request")
    print(f"scope + auth middleware + JSON log: {guarded_us:8.1f} us CPU / request")
    print(f"added by auth and logging:          {guarded_us - bare_us:8.1f} us CPU / request")


if __name__ == "__main__":
    main()
