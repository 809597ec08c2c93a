"""Response shapes (for the OpenAPI docs and tests; bodies are serialised with orjson directly)."""

from __future__ import annotations

from pydantic import BaseModel, Field


class RecommendedItem(BaseModel):
    item_id: str
    score: float
    source: str = Field(description="which candidate source put the item here (als, popular, ...)")
    reason: str = Field(description="human-readable explanation")
    name: str
    category: str
    price: float
    size: str | None = Field(None, description="the customer's size for this item, when known")


class RecommendationList(BaseModel):
    recommendation_id: str = Field(description="echo it (with the position) in events")
    model_version: str
    surface: str
    customer_id: str | None = None
    item_id: str | None = None
    fallback: bool = Field(description="true when popular items filled a list that came up short")
    items: list[RecommendedItem]


class RejectedEvent(BaseModel):
    index: int
    code: str
    message: str


class EventsAccepted(BaseModel):
    accepted: int
    rejected: list[RejectedEvent]


class ErrorBody(BaseModel):
    code: str
    message: str


class ErrorResponse(BaseModel):
    error: ErrorBody
