"""Complete the look: complementary items per slot (category) for one item or a basket."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query
from fastapi.responses import Response
from pydantic import ConfigDict, Field

from app.deps import ListOptionsDep, LookDep, SettingsDep
from app.json_body import ThreadedJSONRoute
from app.list_options import ListOptionsBody
from app.look import MAX_BASKET, parse_categories
from app.schemas import ComplementaryList, ErrorResponse
from app.settings import Settings
from feature_store.errors import InvalidRequest
from feature_store.schema import ID_MAX_LENGTH, ID_PATTERN

router = APIRouter(tags=["complete the look"], route_class=ThreadedJSONRoute)

ItemId = Annotated[str, Path(min_length=1, max_length=ID_MAX_LENGTH, pattern=ID_PATTERN)]
DEFAULT_PER_SLOT = 4


class BasketRequest(ListOptionsBody):
    model_config = ConfigDict(extra="forbid")
    items: list[
        Annotated[str, Field(min_length=1, max_length=ID_MAX_LENGTH, pattern=ID_PATTERN)]
    ] = Field(
        min_length=1, max_length=MAX_BASKET, description="item ids of the basket / outfit so far"
    )
    k: int | None = Field(None, ge=1, le=1000, description="items per slot")
    categories: list[str] | None = Field(
        None, description="slots to fill (default: the categories that complete the basket)"
    )
    customer_id: str | None = Field(
        None, min_length=1, max_length=ID_MAX_LENGTH, pattern=ID_PATTERN
    )


def per_slot(k: int | None, settings: Settings) -> int:
    if k is None:
        return min(DEFAULT_PER_SLOT, settings.max_k)
    if k > settings.max_k:
        raise InvalidRequest(f"k: must be at most {settings.max_k}")
    return k


RESPONSES: dict[int | str, dict[str, object]] = {
    404: {"model": ErrorResponse},
    422: {"model": ErrorResponse},
    503: {"model": ErrorResponse},
}


@router.get(
    "/v1/items/{item_id}/complementary",
    response_model=ComplementaryList,
    responses=RESPONSES,
    summary="Complete the look of an item",
)
def item_complementary(
    item_id: ItemId,
    look: LookDep,
    settings: SettingsDep,
    options: ListOptionsDep,
    k: Annotated[int | None, Query(ge=1, le=1000, description="items per slot")] = None,
    categories: Annotated[
        str | None, Query(max_length=200, description="comma-separated slots, e.g. bottom,shoes")
    ] = None,
    customer_id: Annotated[
        str | None,
        Query(
            min_length=1,
            max_length=ID_MAX_LENGTH,
            pattern=ID_PATTERN,
            description="personalize (sizes, bought)",
        ),
    ] = None,
) -> Response:
    """Items of other categories that go with the item, grouped by slot (category): bottoms, shoes,
    outerwear, accessories for a top. Each carries a reason naming the item it pairs with. Items
    never seen in an outfit or basket are scored from their attributes."""
    body = look.complementary(
        [item_id],
        k=per_slot(k, settings),
        categories=parse_categories(categories),
        customer_id=customer_id,
        single=True,
        options=options,
    )
    return Response(body, media_type="application/json")


@router.post(
    "/v1/complementary",
    response_model=ComplementaryList,
    responses={413: {"model": ErrorResponse}, **RESPONSES},
    summary="Complete the look of a basket",
)
def basket_complementary(request: BasketRequest, look: LookDep, settings: SettingsDep) -> Response:
    """Per slot, the items that go best with *all* the basket's items (mean compatibility with the
    whole set); with ``customer_id``: nothing they bought, in stock in their size."""
    body = look.complementary(
        request.items,
        k=per_slot(request.k, settings),
        categories=parse_categories(request.categories),
        customer_id=request.customer_id,
        options=request.list_options(settings.default_diversity),
    )
    return Response(body, media_type="application/json")
