"""The fitting-room kiosk: ``POST /v1/kiosk/outfits``, ``POST /v1/kiosk/cart`` and the page
itself, ``GET /kiosk`` (plain HTML, CSS and JavaScript from ``app/static/``; nothing else is
served there and nothing is loaded from outside the service)."""

from __future__ import annotations

from pathlib import Path
from typing import Final

import orjson
from fastapi import APIRouter
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from app.deps import KioskDep
from app.errors import error_response
from app.json_body import ThreadedJSONRoute
from app.kiosk import CarriedItem, CartLine
from app.look import parse_weather
from app.schemas import (
    ErrorResponse,
    KioskCartAccepted,
    KioskCartRequest,
    KioskOutfits,
    KioskOutfitsRequest,
)
from feature_store.errors import InvalidRequest
from models.occasions import parse_occasion

router = APIRouter(tags=["kiosk"], route_class=ThreadedJSONRoute)
#: The page and its two files: open (static, no data), unlike the API under ``router``.
page_router = APIRouter(tags=["kiosk"])

STATIC: Final = Path(__file__).resolve().parents[1] / "static"
#: The page's files: name → media type (the only files ``/kiosk/...`` serves).
PAGE_FILES: Final = {
    "kiosk.html": "text/html; charset=utf-8",
    "kiosk.css": "text/css; charset=utf-8",
    "kiosk.js": "text/javascript; charset=utf-8",
}
#: The page may load only from the service itself.
PAGE_HEADERS: Final = {
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
        "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}

RESPONSES: dict[int | str, dict[str, object]] = {
    404: {"model": ErrorResponse, "description": "unknown_item: a carried item id is unknown"},
    413: {"model": ErrorResponse},
    422: {"model": ErrorResponse},
    503: {"model": ErrorResponse},
}


@router.post(
    "/v1/kiosk/outfits",
    response_model=KioskOutfits,
    responses=RESPONSES,
    summary="Outfits around the items carried into a fitting room",
)
async def kiosk_outfits(request: KioskOutfitsRequest, kiosk: KioskDep) -> Response:
    """Up to three different outfits completing the carried items from this store's shelves,
    each item in the shopper's advised size (their size with a scanned loyalty card and consent;
    the tried size moved by how it fitted), with the neighbouring size to bring along and the
    stock of both; the best matches that are not here in that size under ``elsewhere`` with where
    they are; the size advice of every carried item. An unknown carried item is a 404
    ``unknown_item`` naming it; an unknown store a 422 ``unknown_store``."""
    try:
        occasion = parse_occasion(request.occasion)
    except ValueError as exc:
        raise InvalidRequest(str(exc)) from exc
    weather = parse_weather(request.weather)
    carried = [CarriedItem(c.item_id, c.size, c.fit) for c in request.items]
    body = await run_in_threadpool(
        kiosk.outfits,
        request.store_id,
        carried,
        customer_id=request.customer_id,
        occasion=occasion,
        weather=weather,
    )
    return Response(body, media_type="application/json")


@router.post(
    "/v1/kiosk/cart",
    response_model=KioskCartAccepted,
    responses=RESPONSES,
    summary="Send items chosen at the kiosk to the customer's online cart",
)
async def kiosk_cart(request: KioskCartRequest, kiosk: KioskDep) -> Response:
    """Each item becomes an ``add_to_cart`` event on the ``kiosk`` channel (with the store, the
    size and the catalog price; with the kiosk list's ``recommendation_id`` and the item's
    ``position`` when given), recorded like ``POST /v1/events``: validated, durable before this
    answer, the customer's consent rules applied."""
    lines = [CartLine(i.item_id, i.size, i.position) for i in request.items]
    result = await run_in_threadpool(
        kiosk.cart, request.customer_id, request.store_id, lines, request.recommendation_id
    )
    return Response(orjson.dumps(result), media_type="application/json")


def _page_file(name: str) -> Response:
    media_type = PAGE_FILES.get(name)
    if media_type is None:
        return error_response(404, "not_found", f"no such kiosk file {name!r}")
    return Response((STATIC / name).read_bytes(), media_type=media_type, headers=PAGE_HEADERS)


@page_router.get("/kiosk", include_in_schema=False)
def kiosk_page() -> Response:
    """The kiosk page (``/kiosk?store=store-003``; an API key in the fragment: ``#key=...``)."""
    return _page_file("kiosk.html")


@page_router.get("/kiosk/{name}", include_in_schema=False)
def kiosk_asset(name: str) -> Response:
    """The page's stylesheet and script."""
    return _page_file(name)
