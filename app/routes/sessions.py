"""Anonymous sessions: what to show next from the items a shopper has looked at so far."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field, field_validator

from app.deps import FeedsDep, SettingsDep, check_k
from app.json_body import ThreadedJSONRoute
from app.list_options import ListOptionsBody
from app.schemas import ErrorResponse, RecommendationList
from feature_store.schema import ID_MAX_LENGTH, ID_PATTERN, Category, InteractionType

router = APIRouter(prefix="/v1/sessions", tags=["sessions"], route_class=ThreadedJSONRoute)

MAX_SESSION_ITEMS = 200
ItemId = Annotated[str, Field(min_length=1, max_length=ID_MAX_LENGTH, pattern=ID_PATTERN)]


class SessionStep(BaseModel):
    """One step of a session: the item, and optionally the size picked and what the shopper did."""

    model_config = ConfigDict(extra="forbid")
    item_id: ItemId
    size: Annotated[str, Field(min_length=1, max_length=32)] | None = None
    type: InteractionType = Field(
        InteractionType.VIEW, description="view (default), click, add_to_cart, wishlist, purchase"
    )

    @field_validator("type")
    @classmethod
    def _a_step(cls, value: InteractionType) -> InteractionType:
        if value in (InteractionType.IMPRESSION, InteractionType.RETURN):
            raise ValueError("impressions and returns are not steps of a session")
        return value


class SessionRequest(ListOptionsBody):
    model_config = ConfigDict(extra="forbid")
    items: list[ItemId | SessionStep] = Field(
        min_length=1,
        max_length=MAX_SESSION_ITEMS,
        description="the session's items in time order (oldest first): item ids, or objects "
        '{"item_id", "size", "type"}',
    )
    k: int | None = Field(None, ge=1, le=1000, description="list length")
    category: Category | None = Field(None, description="only items of this category")
    exclude_seen: bool = Field(True, description="leave out the session's own items")
    session_id: str | None = Field(
        None,
        min_length=1,
        max_length=ID_MAX_LENGTH,
        pattern=ID_PATTERN,
        description="a stable id of the session: assigns it to the experiment running on the "
        "session surface (sticky); without it the session is in no experiment",
    )

    def steps(self) -> list[SessionStep]:
        return [SessionStep(item_id=step) if isinstance(step, str) else step for step in self.items]


@router.post(
    "/recommendations",
    response_model=RecommendationList,
    responses={
        404: {"model": ErrorResponse},
        413: {"model": ErrorResponse},
        422: {"model": ErrorResponse},
    },
    summary="Recommendations for an anonymous session",
)
def session_recommendations(
    request: SessionRequest, feeds: FeedsDep, settings: SettingsDep
) -> Response:
    """The LSTM sequence model reads the session (item, size and event type of each step) and
    retrieves what tends to come next; best sellers fill in when the list comes up short. No
    customer id is needed and nothing is stored. An unknown item id is a 404 ``unknown_item``.
    With a ``session_id``, a session in the A/B experiment running on the ``session`` surface gets
    the variant's list and an ``experiment: {name, variant}`` field."""
    body = feeds.session(
        request.steps(),
        k=check_k(request.k, settings),
        category=request.category,
        exclude_seen=request.exclude_seen,
        options=request.list_options(settings.default_diversity),
        session_id=request.session_id,
    )
    return Response(body, media_type="application/json")
