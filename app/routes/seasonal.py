"""Seasonal picks: what sells in the coming weeks (or a season), with weather hints."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.responses import Response

from app.deps import ListOptionsDep, LookDep, SettingsDep, check_k
from app.schemas import ErrorResponse, SeasonalList
from feature_store.schema import ID_MAX_LENGTH, ID_PATTERN, Category

router = APIRouter(prefix="/v1", tags=["seasonal"])


@router.get(
    "/seasonal",
    response_model=SeasonalList,
    responses={422: {"model": ErrorResponse}, 503: {"model": ErrorResponse}},
    summary="Seasonal picks",
)
def seasonal(
    look: LookDep,
    settings: SettingsDep,
    options: ListOptionsDep,
    date: Annotated[
        str | None,
        Query(
            max_length=40,
            description="ISO date between 1900-01-01 and 2199-12-31; the 4 weeks from it "
            "(default today)",
        ),
    ] = None,
    season: Annotated[
        str | None, Query(max_length=16, description="spring, summer, autumn or winter")
    ] = None,
    weather: Annotated[
        str | None,
        Query(max_length=32, description="cold_snap, cold, mild, warm, heatwave or rain"),
    ] = None,
    category: Annotated[Category | None, Query(description="only this category")] = None,
    k: Annotated[int | None, Query(ge=1, le=1000, description="list length")] = None,
    customer_id: Annotated[
        str | None,
        Query(
            min_length=1,
            max_length=ID_MAX_LENGTH,
            pattern=ID_PATTERN,
            description="personalize to this customer",
        ),
    ] = None,
) -> Response:
    """Season-of-year and recency-aware demand (trending and evergreen items told apart), moved by a
    weather hint ("cold_snap" → outerwear and knitwear). With a known customer who consented: items
    in their style, nothing they bought, in stock in their size."""
    body = look.seasonal(
        k=check_k(k, settings),
        date=date,
        season=season,
        weather=weather,
        category=category.value if category is not None else None,
        customer_id=customer_id,
        options=options,
    )
    return Response(body, media_type="application/json")
