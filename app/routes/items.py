from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query
from fastapi.responses import Response

from app.deps import ServiceDep, SettingsDep, check_k
from app.schemas import ErrorResponse, RecommendationList

router = APIRouter(prefix="/v1/items", tags=["items"])

ItemId = Annotated[str, Path(min_length=1, max_length=128)]


@router.get(
    "/{item_id}/similar",
    response_model=RecommendationList,
    responses={404: {"model": ErrorResponse}, 422: {"model": ErrorResponse}},
    summary="Items similar to an item",
)
def similar(
    item_id: ItemId,
    service: ServiceDep,
    settings: SettingsDep,
    k: Annotated[int | None, Query(ge=1, le=1000, description="list length")] = None,
) -> Response:
    """Nearest items in the collaborative-filtering space (bought by the same shoppers)."""
    body = service.similar(item_id, k=check_k(k, settings))
    return Response(body, media_type="application/json")
