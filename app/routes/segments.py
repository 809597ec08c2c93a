"""Segments for CRM: counts per tier and stage, paged customer lists."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query

from app.customers import Customers
from app.deps import CustomersDep
from app.schemas import ErrorResponse, SegmentCounts, SegmentPage
from feature_store.errors import BundleError
from feature_store.profiles import LiveProfiles

router = APIRouter(prefix="/v1/segments", tags=["segments"])


def _live(customers: Customers) -> LiveProfiles:
    live = customers.profiles()
    if live is None:
        raise BundleError("the served bundle has no customer profiles; retrain to add them")
    return live


@router.get(
    "",
    responses={200: {"model": SegmentCounts}},
    summary="Customers per tier and per lifecycle stage",
)
def counts(customers: CustomersDep) -> dict[str, Any]:
    """Counts of the served bundle's batch profiles (as of its data's last day), erasures applied."""
    result: dict[str, Any] = _live(customers).batch.counts()
    return result


@router.get(
    "/{name}/customers",
    responses={200: {"model": SegmentPage}, 422: {"model": ErrorResponse}},
    summary="One page of the customers of a tier or stage",
)
def customers(
    name: Annotated[str, Path(min_length=1, max_length=64)],
    customers: CustomersDep,
    cursor: Annotated[
        str | None, Query(max_length=512, description="next_cursor of a page")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    min_churn_risk: Annotated[float | None, Query(ge=0.0, le=1.0)] = None,
) -> dict[str, Any]:
    """Customers of a tier (``high_value``, ``sleeping_high_value`` ...) or a stage (``new``,
    ``sleeping`` ...), in customer-id order; ``min_churn_risk`` keeps the likely churners (for
    example sleeping high-value customers with churn risk ≥ 0.7). Unknown segment or bad
    cursor → 422."""
    result: dict[str, Any] = _live(customers).batch.list_segment(
        name, cursor=cursor, limit=limit, min_churn_risk=min_churn_risk
    )
    return result
