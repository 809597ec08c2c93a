from __future__ import annotations

import dataclasses
from typing import Annotated, Literal

import orjson
from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import Response
from pydantic import Field

from app.deps import SizeAdviceDep, check_k, list_route
from app.query_params import StoreListQuery
from app.schemas import ErrorResponse, RecommendationList, SizeAdvice
from app.size_advice import TriedSize
from feature_store.errors import InvalidRequest
from feature_store.schema import ID_MAX_LENGTH, ID_PATTERN

router = APIRouter(prefix="/v1/items", tags=["items"])

ItemId = Annotated[str, Path(min_length=1, max_length=ID_MAX_LENGTH, pattern=ID_PATTERN)]


class SimilarQuery(StoreListQuery):
    """The query of ``GET /v1/items/{item_id}/similar``."""

    customer_id: str | None = Field(
        None,
        min_length=1,
        max_length=ID_MAX_LENGTH,
        pattern=ID_PATTERN,
        description="whose size to show / filter",
    )
    in_stock_in_my_size: bool = Field(
        False, description="only items in stock in the customer's size (needs customer_id)"
    )


@router.get(
    "/{item_id}/similar",
    response_model=RecommendationList,
    responses={404: {"model": ErrorResponse}, 422: {"model": ErrorResponse}},
    summary="Items similar to an item",
    openapi_extra=SimilarQuery.openapi(),
)
async def similar(item_id: ItemId, request: Request) -> Response:
    """Nearest items in the collaborative-filtering space (bought by the same shoppers)."""
    query = SimilarQuery.of(request)  # the query in one pass (app.query_params)
    feeds, settings = list_route(request)
    # on the event loop (in process, or with every part on the cache's Redis client: awaited);
    # otherwise in the thread pool (ResponseCache.respond)
    key, compute = feeds.similar_request(
        item_id,
        k=check_k(query.k, settings),
        customer_id=query.customer_id,
        in_stock_in_my_size=query.in_stock_in_my_size,
        store_id=query.store_id,
        options=query.options(settings),
    )
    body = await feeds.responses.respond(key, compute)
    return Response(body, media_type="application/json")


@router.get(
    "/{item_id}/size-advice",
    response_model=SizeAdvice,
    responses={404: {"model": ErrorResponse}, 422: {"model": ErrorResponse}},
    summary="Which size of an item to take",
)
def size_advice(
    item_id: ItemId,
    advisor: SizeAdviceDep,
    customer_id: Annotated[
        str | None,
        Query(
            min_length=1,
            max_length=ID_MAX_LENGTH,
            pattern=ID_PATTERN,
            description="whose size (personal advice only with their consent)",
        ),
    ] = None,
    store_id: Annotated[
        str | None,
        Query(min_length=1, max_length=64, pattern=ID_PATTERN, description="stock of this store"),
    ] = None,
    tried_size: Annotated[
        str | None,
        Query(min_length=1, max_length=32, description="a size tried on (with tried_fit)"),
    ] = None,
    tried_fit: Annotated[
        Literal["too_small", "fits", "too_large"] | None,
        Query(description="how the tried size fitted (with tried_size)"),
    ] = None,
) -> Response:
    """The size to take with its fit probability, every offered size's probabilities of being
    too small / fitting / too large with its stock, whether the item runs small or large (and the
    evidence), the neighbouring size to bring along and the reason in words. Without a customer
    (or without their consent): the item's fit note over its size distribution."""
    if (tried_size is None) != (tried_fit is None):
        raise InvalidRequest("tried_size and tried_fit: give both or neither")
    tried = (
        TriedSize(tried_size, tried_fit)
        if tried_size is not None and tried_fit is not None
        else None
    )
    advice = advisor.advise(item_id, customer_id=customer_id, store_id=store_id, tried=tried)
    return Response(orjson.dumps(dataclasses.asdict(advice)), media_type="application/json")
