"""The query parameters of the busiest list routes, validated in one pass and documented from the
same model.

FastAPI validates every declared query parameter, and solves every dependency, one at a time in
Python on each request. For the personalized feed — ten query parameters and three dependencies —
that was about 0.1 ms of CPU per request, a third of what a cached list costs inside the app (an
app with the same declarations took 130 µs a call, 43 µs validating them as one model; the
served figures are ``benchmarks/serve_latency.py``'s cached scenarios). A route that
declares its query as a :class:`QueryModel` instead reads ``request.query_params`` once and
validates them in one pass of pydantic-core:

* the same rules (the field types and constraints FastAPI would have applied: ``k`` within
  1‥1000, patterns, enums, booleans as FastAPI parses them; unknown parameters ignored; of a
  repeated parameter the last value);
* the same 422 body: a :class:`~fastapi.exceptions.RequestValidationError` whose errors are
  located at ``("query", name)``, rendered by :mod:`app.errors` as ``validation_error``;
* the same documentation: :meth:`QueryModel.openapi` lists the fields as OpenAPI query
  parameters, for the route's ``openapi_extra``.

Only routes whose per-request cost is measured use it (``app/routes/customers.py``,
``app/routes/items.py``); the others keep FastAPI's declarations.
"""

from __future__ import annotations

from typing import Any, Self

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from app.list_options import DIVERSITY, PRICE, ListOptions
from app.settings import Settings
from feature_store.schema import ID_PATTERN


class QueryModel(BaseModel):
    """A route's query parameters as one model (unknown parameters ignored)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    @classmethod
    def of(cls, request: Request) -> Self:
        """The request's query parameters, validated (422 ``validation_error`` otherwise)."""
        try:
            return cls.model_validate(dict(request.query_params))
        except ValidationError as exc:
            raise RequestValidationError(
                [{**err, "loc": ("query", *err["loc"])} for err in exc.errors(include_url=False)]
            ) from None

    @classmethod
    def openapi(cls) -> dict[str, Any]:
        """The fields as OpenAPI query parameters (for a route's ``openapi_extra``)."""
        schema = cls.model_json_schema()
        definitions = schema.get("$defs", {})
        parameters = []
        for name, field in schema["properties"].items():
            parameter: dict[str, Any] = {
                "name": name,
                "in": "query",
                "required": name in schema.get("required", ()),
                "schema": _inline(field, definitions),
            }
            if "description" in field:
                parameter["description"] = field["description"]
            parameters.append(parameter)
        return {"parameters": parameters}


def _inline(node: Any, definitions: dict[str, Any]) -> Any:
    """``node`` with every ``$ref`` to the model's own definitions replaced by the definition."""
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/$defs/"):
            return _inline(definitions[ref.removeprefix("#/$defs/")], definitions)
        return {key: _inline(value, definitions) for key, value in node.items()}
    if isinstance(node, list):
        return [_inline(value, definitions) for value in node]
    return node


class ListQuery(QueryModel):
    """What every GET list takes: its length and its options (price range, diversity)."""

    k: int | None = Field(None, ge=1, le=1000, description="list length")
    min_price: float | None = Field(None, description=PRICE)
    max_price: float | None = Field(None, description=PRICE)
    diversity: float | None = Field(None, description=DIVERSITY)

    def options(self, settings: Settings) -> ListOptions:
        """The price range and diversity, validated (422 ``validation_error``)."""
        return ListOptions.of(
            self.min_price, self.max_price, self.diversity, settings.default_diversity
        )


class StoreListQuery(ListQuery):
    """A list that can be limited to one store's stock."""

    store_id: str | None = Field(
        None,
        min_length=1,
        max_length=64,
        pattern=ID_PATTERN,
        description="stock of this store only",
    )
