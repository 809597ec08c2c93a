from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Request
from fastapi.responses import Response
from pydantic import Field

from app.deps import check_k, list_route
from app.query_params import StoreListQuery
from app.schemas import ErrorResponse, PersonalizedList
from feature_store.schema import ID_MAX_LENGTH, ID_PATTERN, Category

router = APIRouter(prefix="/v1/customers", tags=["customers"])

CustomerId = Annotated[str, Path(min_length=1, max_length=ID_MAX_LENGTH, pattern=ID_PATTERN)]


class FeedQuery(StoreListQuery):
    """The query of ``GET /v1/customers/{customer_id}/recommendations``."""

    category: Category | None = Field(None, description="only this category")
    exclude_purchased: bool = Field(True, description="leave out items already bought")
    surface: str = Field(
        "home", pattern="^[a-z_]{1,32}$", description="strategy surface: home, email"
    )
    in_stock_in_my_size: bool = Field(
        False, description="only items in stock in the customer's size for their category"
    )


@router.get(
    "/{customer_id}/recommendations",
    response_model=PersonalizedList,
    responses={
        404: {"model": ErrorResponse, "description": "unknown_store: no such store_id"},
        422: {"model": ErrorResponse},
        503: {"model": ErrorResponse},
    },
    summary="Personalized feed for a customer",
    openapi_extra=FeedQuery.openapi(),
)
async def recommendations(customer_id: CustomerId, request: Request) -> Response:
    """Collaborative filtering over the customer's history (including events that arrived since
    the last training), blended with what is popular now and with the strategy of the customer's
    segment (new, high value, active low-spend, sleeping). Unknown customers get popular items;
    customers without personalization consent get popular items only. Each item carries the
    customer's ``size`` for it when known. A customer (with consent) in an A/B experiment running
    on the surface gets the variant's list and an ``experiment: {name, variant}`` field."""
    query = FeedQuery.of(request)  # the query in one pass (app.query_params)
    feeds, settings = list_route(request)
    # on the event loop (in process, or with every part on the cache's Redis client: awaited);
    # otherwise in the thread pool (ResponseCache.respond)
    key, compute = feeds.personalized_request(
        customer_id,
        k=check_k(query.k, settings),
        category=query.category,
        exclude_purchased=query.exclude_purchased,
        surface=query.surface,
        in_stock_in_my_size=query.in_stock_in_my_size,
        store_id=query.store_id,
        options=query.options(settings),
    )
    body = await feeds.responses.respond(key, compute)
    return Response(body, media_type="application/json")
