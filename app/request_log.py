"""Request ids and the service's log: one JSON object per line.

:class:`RequestLogMiddleware` gives every response an ``X-Request-ID`` (the caller's own when it
is sane — at most 128 characters of ``A-Z a-z 0-9 . _ : -`` — else a fresh uuid4 hex) and writes
one access record per request to the ``lookbook.access`` logger: request id, route template (never
the raw path: paths hold customer ids), method, status, duration in ms, the API key's name and the
served model version; it also counts requests per key name (never the key). :class:`JsonFormatter`
writes any record as one JSON line, with the request id of the request it was logged in;
:func:`log_config` is the logging set-up of ``lookbook serve`` (uvicorn's own access log off).
"""

from __future__ import annotations

import logging
import re
import time
import uuid
from collections.abc import Callable, Iterable
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any, Literal

import orjson
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.auth import caller_of
from app.metrics import Metrics

ACCESS_LOGGER = "lookbook.access"
ACCESS_MESSAGE = "%s %s %d %.1fms key=%s"  # method, route template, status, duration, key name
REQUEST_ID_HEADER = b"x-request-id"
_SANE_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")

request_id: ContextVar[str | None] = ContextVar("lookbook_request_id", default=None)
access_log = logging.getLogger(ACCESS_LOGGER)


def request_id_of(headers: Iterable[tuple[bytes, bytes]]) -> str:
    """The caller's ``X-Request-ID`` when it is sane, else a fresh one."""
    for name, value in headers:
        if name == REQUEST_ID_HEADER:
            given = value.decode("latin-1")
            if _SANE_REQUEST_ID.fullmatch(given):
                return given
            break
    return uuid.uuid4().hex


class RequestLogMiddleware:
    """Pure ASGI middleware: the ``X-Request-ID`` header, one access record and one count per
    request. Put it outside the auth and body-limit middlewares so their refusals are logged."""

    def __init__(
        self, app: ASGIApp, metrics: Metrics, model_version: Callable[[], str | None]
    ) -> None:
        self.app = app
        self.metrics = metrics
        self.model_version = model_version

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        rid = request_id_of(scope.get("headers", ()))
        token = request_id.set(rid)
        status = 500
        header = (REQUEST_ID_HEADER, rid.encode("latin-1"))

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
                message = {**message, "headers": [*message.get("headers", ()), header]}
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            try:
                self._record(scope, rid, status, time.perf_counter() - start)
            finally:
                request_id.reset(token)

    def _record(self, scope: Scope, rid: str, status: int, seconds: float) -> None:
        route = getattr(scope.get("route"), "path", None) or "unmatched"
        method = scope.get("method", "")
        caller = caller_of(scope)
        self.metrics.requests_by_key.labels(
            key=caller.key, scope=caller.scope, status=f"{status // 100}xx"
        ).inc()
        if not access_log.isEnabledFor(logging.INFO):
            return
        duration_ms = round(seconds * 1000.0, 3)
        fields = {
            "request_id": rid,
            "route": route,
            "method": method,
            "status": status,
            "duration_ms": duration_ms,
            "key": caller.key,
            "model_version": self.model_version(),
        }
        args = (method, route, status, duration_ms, caller.key)
        # makeRecord + handle is logger.info without looking up the caller's frame (a third of
        # the cost of a record); the record is the same.
        access_log.handle(
            access_log.makeRecord(
                ACCESS_LOGGER, logging.INFO, __file__, 0, ACCESS_MESSAGE, args, None, extra=fields
            )
        )


# Attributes every LogRecord has; anything else on a record came from ``extra=``.
_RECORD_ATTRIBUTES = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message",
    "asctime",
    "color_message",
    "taskName",
}


class JsonFormatter(logging.Formatter):
    """A log record as one JSON object: ``time`` (UTC), ``level``, ``logger``, ``message``, the
    ``request_id`` of the request it was logged in, the record's ``extra`` fields, and
    ``exc_info`` (the formatted traceback) when there is one."""

    def __init__(self) -> None:
        super().__init__()
        self._second = -1
        self._second_text = ""

    def _time(self, created: float) -> str:
        second = int(created)
        if second != self._second:  # the date and time of day once per second
            self._second_text = datetime.fromtimestamp(second, UTC).strftime("%Y-%m-%dT%H:%M:%S")
            self._second = second
        return f"{self._second_text}.{int((created - second) * 1000):03d}Z"

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "time": self._time(record.created),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        current = request_id.get()
        if current is not None:
            out["request_id"] = current
        fields = vars(record)
        for name in sorted(fields.keys() - _RECORD_ATTRIBUTES):  # the record's ``extra``
            if not name.startswith("_"):
                out[name] = fields[name]
        if record.exc_info:
            out["exc_info"] = self.formatException(record.exc_info)
        if record.stack_info:
            out["stack_info"] = self.formatStack(record.stack_info)
        return orjson.dumps(out, default=str).decode()


TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def log_config(level: str = "INFO", fmt: Literal["json", "text"] = "json") -> dict[str, Any]:
    """A ``logging.config.dictConfig`` (and uvicorn ``log_config``): every logger to stderr as
    JSON lines (or text), uvicorn's access log off — :class:`RequestLogMiddleware` writes it."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {
            "json": {"()": f"{__name__}.JsonFormatter"},
            "text": {"format": TEXT_FORMAT},
        },
        "handlers": {
            "default": {
                "class": "logging.StreamHandler",
                "formatter": fmt,
                "stream": "ext://sys.stderr",
            }
        },
        "root": {"handlers": ["default"], "level": level},
        "loggers": {
            "uvicorn": {"handlers": [], "level": level, "propagate": True},
            "uvicorn.error": {"handlers": [], "level": level, "propagate": True},
            "uvicorn.access": {"handlers": [], "level": "WARNING", "propagate": False},
        },
    }
