from __future__ import annotations

from typing import Any

import orjson
from fastapi import APIRouter, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from app.deps import IngestDep, SettingsDep
from app.errors import error_response
from app.schemas import ErrorResponse, EventsAccepted
from feature_store.schema import Interaction

router = APIRouter(prefix="/v1", tags=["events"])


EVENT_REF = {"$ref": "#/components/schemas/Interaction"}


def events_body_schema() -> dict[str, Any]:
    """The request body of ``POST /v1/events``: one event, a list of events, or
    ``{"events": [...]}`` — each event as ``feature_store.schema.Interaction`` validates it (the
    component is added to the document by :func:`add_event_schemas`)."""
    events = {"type": "array", "items": EVENT_REF, "minItems": 1}
    return {
        "oneOf": [
            EVENT_REF,
            {**events, "title": "EventList"},
            {
                "title": "EventBatch",
                "type": "object",
                "properties": {"events": events},
                "required": ["events"],
                "additionalProperties": False,
            },
        ]
    }


def add_event_schemas(spec: dict[str, Any]) -> dict[str, Any]:
    """Adds ``Interaction`` (and the enums it uses) to the OpenAPI document's components."""
    event = Interaction.model_json_schema(ref_template="#/components/schemas/{model}")
    schemas = spec.setdefault("components", {}).setdefault("schemas", {})
    for name, definition in event.pop("$defs", {}).items():
        schemas.setdefault(name, definition)
    schemas["Interaction"] = event
    return spec


EXAMPLE = {
    "customer_id": "C0000001",
    "item_id": "I000001",
    "type": "purchase",
    "channel": "online",
    "size": "M",
    "recommendation_id": "9f1c0d0e6b1d4a3f8a2f2c1b7e6d5a4c",
    "position": 0,
}


@router.post(
    "/events",
    response_model=EventsAccepted,
    responses={413: {"model": ErrorResponse}, 422: {"model": ErrorResponse}},
    summary='Record interaction events (one, a list, or {"events": [...]})',
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": events_body_schema(), "example": EXAMPLE}},
        }
    },
)
async def post_events(request: Request, ingest: IngestDep, settings: SettingsDep) -> Response:
    """Valid events are appended to the durable log before the answer is sent, then update the
    online store and invalidate the customer's cached lists. In a batch, valid events are kept
    and each invalid one is reported by index; if none is valid the answer is a 422."""
    raw = await request.body()  # at most settings.max_events_body_bytes (app/body_limit.py)
    try:
        payload: Any = await run_in_threadpool(orjson.loads, raw)  # off the event loop
    except orjson.JSONDecodeError as exc:
        return error_response(422, "invalid_json", f"request body is not valid JSON: {exc}")
    if isinstance(payload, dict) and "events" in payload and len(payload) == 1:
        payload = payload["events"]
    events = payload if isinstance(payload, list) else [payload]
    if not events:
        return error_response(422, "invalid_event", "no events in the request")
    if len(events) > settings.max_batch_events:
        return error_response(
            413,
            "batch_too_large",
            f"{len(events)} events in one request; at most {settings.max_batch_events}",
        )
    accepted, rejected = await run_in_threadpool(ingest.ingest, events)  # fsync off the loop
    if accepted == 0:
        return error_response(
            422, "invalid_event", f"no valid event: {rejected[0]['message']}", rejected
        )
    return Response(
        orjson.dumps({"accepted": accepted, "rejected": rejected}),
        media_type="application/json",
    )
