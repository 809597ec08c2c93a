from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query
from fastapi.responses import Response

from app.deps import FeedsDep, ListOptionsDep, SettingsDep, check_k
from app.schemas import ErrorResponse, RecommendationList
from feature_store.schema import ID_MAX_LENGTH, ID_PATTERN

router = APIRouter(prefix="/v1/items", tags=["items"])

ItemId = Annotated[str, Path(min_length=1, max_length=ID_MAX_LENGTH, pattern=ID_PATTERN)]


@router.get(
    "/{item_id}/similar",
    response_model=RecommendationList,
    responses={404: {"model": ErrorResponse}, 422: {"model": ErrorResponse}},
    summary="Items similar to an item",
)
def similar(
    item_id: ItemId,
    feeds: FeedsDep,
    settings: SettingsDep,
    options: ListOptionsDep,
    k: Annotated[int | None, Query(ge=1, le=1000, description="list length")] = None,
    customer_id: Annotated[
        str | None,
        Query(
            min_length=1,
            max_length=ID_MAX_LENGTH,
            pattern=ID_PATTERN,
            description="whose size to show / filter",
        ),
    ] = None,
    in_stock_in_my_size: Annotated[
        bool, Query(description="only items in stock in the customer's size (needs customer_id)")
    ] = False,
    store_id: Annotated[
        str | None,
        Query(
            min_length=1, max_length=64, pattern=ID_PATTERN, description="stock of this store only"
        ),
    ] = None,
) -> Response:
    """Nearest items in the collaborative-filtering space (bought by the same shoppers)."""
    body = feeds.similar(
        item_id,
        k=check_k(k, settings),
        customer_id=customer_id,
        in_stock_in_my_size=in_stock_in_my_size,
        store_id=store_id,
        options=options,
    )
    return Response(body, media_type="application/json")
