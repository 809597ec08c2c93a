"""JSON request bodies are decoded in a worker thread, never on the event loop.

Routers with a request-body model use ``route_class=ThreadedJSONRoute``: a large or deeply nested
body then costs a pool thread, not the latency of every other request. A body nested too deeply
or not UTF-8 fails like any other undecodable body, with a ``JSONDecodeError`` that FastAPI turns
into a 422 (``invalid_json`` in app/errors.py). NaN and Infinity decode as before, and the
models refuse them as a 422 ``validation_error``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi.routing import APIRoute
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response


def decode_json(body: bytes) -> Any:
    try:
        return json.loads(body)
    except RecursionError as exc:
        raise json.JSONDecodeError("nested too deeply", "", 0) from exc
    except UnicodeDecodeError as exc:
        raise json.JSONDecodeError("not valid UTF-8", "", exc.start) from exc


class ThreadedJSONRequest(Request):
    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            body = await self.body()
            self._json = await run_in_threadpool(decode_json, body)
        return self._json


class ThreadedJSONRoute(APIRoute):
    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def threaded_json_handler(request: Request) -> Response:
            return await handler(ThreadedJSONRequest(request.scope, request.receive))

        return threaded_json_handler
