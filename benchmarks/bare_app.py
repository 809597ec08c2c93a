"""The baseline of ``serve_latency.py``: a bare FastAPI app with one GET endpoint returning a small
fixed JSON, served by uvicorn exactly like Lookbook.

Its route is a plain ``def`` like Lookbook's routes (so it pays the same thread-pool hop), and a
tiny pure-ASGI middleware adds the same ``server-timing: app;dur=<ms>`` header as
``app.main.LatencyMiddleware``, so client- and server-side figures compare like for like.

Run by hand: ``uvicorn benchmarks.bare_app:create_app --factory --port 8001``.
"""

from __future__ import annotations

import time

from fastapi import FastAPI
from starlette.types import ASGIApp, Message, Receive, Scope, Send

BODY: dict[str, object] = {"status": "ok", "items": [{"item_id": "I000001", "score": 1.0}]}


class ServerTiming:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()

        async def send_wrapper(message: Message) -> None:
            if message["type"] == "http.response.start":
                elapsed_ms = (time.perf_counter() - start) * 1000.0
                headers = [
                    *message.get("headers", []),
                    (b"server-timing", b"app;dur=%.3f" % elapsed_ms),
                ]
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_wrapper)


def create_app() -> FastAPI:
    app = FastAPI(title="bare baseline")

    @app.get("/bare")
    def bare() -> dict[str, object]:
        return BODY

    @app.get("/readyz")
    def readyz() -> dict[str, str]:
        return {"status": "ready"}

    app.add_middleware(ServerTiming)
    return app
