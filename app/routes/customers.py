from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query
from fastapi.responses import Response

from app.deps import FeedsDep, ListOptionsDep, SettingsDep, check_k
from app.schemas import ErrorResponse, PersonalizedList
from feature_store.schema import ID_MAX_LENGTH, ID_PATTERN, Category

router = APIRouter(prefix="/v1/customers", tags=["customers"])

CustomerId = Annotated[str, Path(min_length=1, max_length=ID_MAX_LENGTH, pattern=ID_PATTERN)]


@router.get(
    "/{customer_id}/recommendations",
    response_model=PersonalizedList,
    responses={
        404: {"model": ErrorResponse, "description": "unknown_store: no such store_id"},
        422: {"model": ErrorResponse},
        503: {"model": ErrorResponse},
    },
    summary="Personalized feed for a customer",
)
async def recommendations(
    customer_id: CustomerId,
    feeds: FeedsDep,
    settings: SettingsDep,
    options: ListOptionsDep,
    k: Annotated[int | None, Query(ge=1, le=1000, description="list length")] = None,
    category: Annotated[Category | None, Query(description="only this category")] = None,
    exclude_purchased: Annotated[bool, Query(description="leave out items already bought")] = True,
    surface: Annotated[
        str, Query(pattern="^[a-z_]{1,32}$", description="strategy surface: home, email")
    ] = "home",
    in_stock_in_my_size: Annotated[
        bool, Query(description="only items in stock in the customer's size for their category")
    ] = False,
    store_id: Annotated[
        str | None,
        Query(
            min_length=1, max_length=64, pattern=ID_PATTERN, description="stock of this store only"
        ),
    ] = None,
) -> Response:
    """Collaborative filtering over the customer's history (including events that arrived since
    the last training), blended with what is popular now and with the strategy of the customer's
    segment (new, high value, active low-spend, sleeping). Unknown customers get popular items;
    customers without personalization consent get popular items only. Each item carries the
    customer's ``size`` for it when known. A customer (with consent) in an A/B experiment running
    on the surface gets the variant's list and an ``experiment: {name, variant}`` field."""
    # on the event loop (in process, or with every part on the cache's Redis client: awaited);
    # otherwise in the thread pool (ResponseCache.respond)
    key, compute = feeds.personalized_request(
        customer_id,
        k=check_k(k, settings),
        category=category,
        exclude_purchased=exclude_purchased,
        surface=surface,
        in_stock_in_my_size=in_stock_in_my_size,
        store_id=store_id,
        options=options,
    )
    body = await feeds.responses.respond(key, compute)
    return Response(body, media_type="application/json")
