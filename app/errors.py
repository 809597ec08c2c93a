"""The API edge: domain errors and validation failures become JSON ``{"error": {code, message}}``.

Caller mistakes are 4xx with a stable ``code``; nothing a caller sends can produce a 5xx.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from feature_store.errors import (
    BundleError,
    DataFormatError,
    InvalidEvent,
    InvalidRequest,
    LookbookError,
    ModelNotLoaded,
    StoreUnavailable,
    UnknownCustomer,
    UnknownItem,
    UnsupportedOperation,
)

logger = logging.getLogger("lookbook.app")

#: ``Retry-After`` (seconds) of a 503 for a store that cannot be reached (its pool reconnects).
STORE_RETRY_AFTER_SECONDS = 5


class UnknownStore(LookbookError):
    code = "unknown_store"

    def __init__(self, store_id: str) -> None:
        self.store_id = store_id
        super().__init__(f"unknown store {store_id!r}")


class UnknownExperiment(LookbookError):
    code = "not_found"

    def __init__(self, name: str) -> None:
        self.name = name
        super().__init__(f"unknown experiment {name!r}")


class CustomerRequired(InvalidRequest):
    code = "customer_required"


STATUS: dict[type[LookbookError], int] = {
    UnknownStore: 404,
    UnknownExperiment: 404,
    UnknownItem: 404,
    UnknownCustomer: 404,
    InvalidEvent: 422,
    InvalidRequest: 422,
    DataFormatError: 422,
    UnsupportedOperation: 400,
    ModelNotLoaded: 503,
    BundleError: 503,
    StoreUnavailable: 503,
}

HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "validation_error",
    429: "too_many_requests",
}


# A FAISS exception's text ("Error in faiss::… at /project/faiss/…/io.cpp:67: …") to its end.
_LIBRARY_INTERNALS = re.compile(r":?\s*Error in \S*::.*$", re.DOTALL)
# An absolute POSIX path (not the tail of a relative id such as ``a/b``).
_ABSOLUTE_PATH = re.compile(r"(?<![\w.~/-])(?:/[^\s'\"/:,;()]+)+/?")


def public_message(message: str) -> str:
    """An error message fit for a caller: library internals cut off and absolute server paths
    reduced to their last component (the full text stays in the server's log)."""
    message = _LIBRARY_INTERNALS.sub("", message)
    return _ABSOLUTE_PATH.sub(lambda m: m.group(0).rstrip("/").rsplit("/", 1)[-1], message)


def error_response(
    status: int,
    code: str,
    message: str,
    details: list[dict[str, Any]] | None = None,
    headers: Mapping[str, str] | None = None,
) -> Response:
    body: dict[str, Any] = {"code": code, "message": public_message(message)}
    if details:
        body["details"] = details
    return Response(
        orjson.dumps({"error": body}),
        status_code=status,
        media_type="application/json",
        headers=headers,
    )


def _clean_validation_errors(errors: Any) -> list[dict[str, Any]]:
    out = []
    for err in errors:
        out.append(
            {
                "loc": [str(part) for part in err.get("loc", ())],
                "type": str(err.get("type", "")),
                "message": str(err.get("msg", "")),
            }
        )
    return out


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(LookbookError)
    async def _domain(request: Request, exc: LookbookError) -> Response:
        status = next((s for cls, s in STATUS.items() if isinstance(exc, cls)), 400)
        if status >= 500:
            logger.warning("%s %s: %s", request.method, request.url.path, exc)
        headers = (
            {"Retry-After": str(STORE_RETRY_AFTER_SECONDS)}
            if isinstance(exc, StoreUnavailable)
            else None
        )
        return error_response(status, exc.code, str(exc), headers=headers)

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> Response:
        errors = exc.errors()
        undecodable = next((err for err in errors if err.get("type") == "json_invalid"), None)
        if undecodable is not None:
            reason = str((undecodable.get("ctx") or {}).get("error", "undecodable"))
            return error_response(422, "invalid_json", f"request body is not valid JSON: {reason}")
        details = _clean_validation_errors(errors)
        where = ".".join(details[0]["loc"]) if details else ""
        message = str(details[0]["message"]) if details else "invalid request"
        return error_response(
            422, "validation_error", f"{where}: {message}" if where else message, details
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> Response:
        code = HTTP_CODES.get(exc.status_code, "http_error")
        return error_response(exc.status_code, code, str(exc.detail), headers=exc.headers)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> Response:
        logger.exception("unhandled error on %s %s", request.method, request.url.path)
        return error_response(500, "internal_error", "internal error; it has been logged")
