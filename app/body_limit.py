"""Request bodies over a size limit are refused with 413 ``payload_too_large`` before they are
read into memory.

A declared ``Content-Length`` over the limit is refused without reading a byte; a body without
one (chunked) is counted while it streams in and refused as soon as it passes the limit. A body
within the limit is buffered (at most the limit) and replayed to the app.
"""

from __future__ import annotations

from collections.abc import Mapping

from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.errors import error_response


class BodyLimitMiddleware:
    """Pure ASGI middleware: ``limit`` bytes per request body, or ``limits_by_path[path]``."""

    def __init__(
        self, app: ASGIApp, limit: int, limits_by_path: Mapping[str, int] | None = None
    ) -> None:
        self.app = app
        self.limit = limit
        self.limits_by_path = dict(limits_by_path or {})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limits_by_path.get(scope["path"], self.limit)
        declared = _content_length(scope)
        if declared is not None and declared > limit:
            await _too_large(limit)(scope, receive, send)
            return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client went away before sending its body
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                await _too_large(limit)(scope, receive, send)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, send)


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


def _too_large(limit: int) -> Response:
    return error_response(
        413,
        "payload_too_large",
        f"request body larger than {limit} bytes",
        headers={"Connection": "close"},
    )
