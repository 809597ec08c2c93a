"""Customer intelligence per customer: profile, consent, erasure."""

from __future__ import annotations

from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Path
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field, StrictBool
from starlette.concurrency import run_in_threadpool

from app.deps import CustomersDep, PrivacyDep
from app.json_body import ThreadedJSONRoute
from app.schemas import CustomerProfile, ErrorResponse
from feature_store.schema import ID_MAX_LENGTH, ID_PATTERN

router = APIRouter(prefix="/v1/customers", tags=["customers"], route_class=ThreadedJSONRoute)

CustomerId = Annotated[str, Path(min_length=1, max_length=ID_MAX_LENGTH, pattern=ID_PATTERN)]


class ConsentBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    personalization: StrictBool = Field(
        description="may the customer's data personalize their lists"
    )


@router.get(
    "/{customer_id}/profile",
    response_model=CustomerProfile,
    responses={404: {"model": ErrorResponse}, 503: {"model": ErrorResponse}},
    summary="Tier, RFM scores, stage, sizes, affinities, churn risk and lifetime value",
)
def profile(customer_id: CustomerId, customers: CustomersDep) -> Response:
    """The customer's profile as of now: batch profile of the served bundle updated by every
    event since. Unknown customers → 404 ``unknown_customer``."""
    body: dict[str, Any] = customers.profile_body(customer_id)
    return Response(orjson.dumps(body), media_type="application/json")


@router.put(
    "/{customer_id}/consent",
    responses={413: {"model": ErrorResponse}, 422: {"model": ErrorResponse}},
    summary="Record personalization consent",
)
def consent(customer_id: CustomerId, body: ConsentBody, privacy: PrivacyDep) -> dict[str, Any]:
    """Without consent the customer gets only non-personalized lists and their events are not
    used for personalization (no fold-in, no size or style learning); RFM stays for CRM."""
    return privacy.set_consent(customer_id, body.personalization)


@router.delete(
    "/{customer_id}",
    responses={422: {"model": ErrorResponse}},
    summary="Erase a customer everywhere",
)
async def erase(customer_id: CustomerId, privacy: PrivacyDep) -> dict[str, Any]:
    """Erasure: a durable tombstone in the event log (their events are never read again and are
    removed from disk at the next compaction or training), then the online store, profiles,
    segments and caches. Idempotent."""
    result: dict[str, Any] = await run_in_threadpool(privacy.erase, customer_id)  # fsync
    return result
