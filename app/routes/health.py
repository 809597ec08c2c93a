from __future__ import annotations

import orjson
from fastapi import APIRouter
from fastapi.responses import PlainTextResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from app.deps import ApiKeysDep, BundlesDep, ServiceDep
from app.errors import error_response
from app.schemas import ErrorResponse, Readiness

router = APIRouter(tags=["operations"])
# Apart so app/main.py can give it the admin scope (LOOKBOOK_METRICS_REQUIRE_KEY); open otherwise.
metrics_router = APIRouter(tags=["operations"])


@router.get("/healthz", summary="Liveness: the process answers")
def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get(
    "/readyz",
    response_model=Readiness,
    responses={503: {"model": ErrorResponse}},
    summary="Readiness: a model bundle is loaded",
)
def readyz(bundles: BundlesDep, service: ServiceDep, keys: ApiKeysDep) -> Response:
    if not bundles.loaded:
        return error_response(503, "model_not_loaded", "no model bundle loaded yet")
    body = {
        "status": "ready",
        "model_version": bundles.current.version,
        "cache": service.cache.backend,
        "cache_available": service.cache.available(),
        "auth": keys.describe(),
    }
    return Response(orjson.dumps(body), media_type="application/json")


@metrics_router.get(
    "/metrics",
    summary="Prometheus metrics",
    response_class=PlainTextResponse,
    responses={
        200: {
            "description": "Prometheus text exposition format",
            "content": {CONTENT_TYPE_LATEST: {"schema": {"type": "string"}}},
        }
    },
)
def metrics(service: ServiceDep) -> Response:
    service.metrics.cache_errors.set(service.cache.stats().get("errors", 0))
    return Response(generate_latest(service.metrics.registry), media_type=CONTENT_TYPE_LATEST)
