"""A request's list options shared by every list endpoint: the price range and the diversity
rerank's strength.

:class:`ListOptions` is validated once where it is made (a negative, NaN or infinite price, a
``min_price`` above ``max_price`` or a diversity outside [0, 1] is a 422 ``validation_error``),
names its part of every cache key (:attr:`ListOptions.key`: empty for the defaults, so cached
lists without options keep their keys) and sets a pipeline context (:meth:`ListOptions.apply`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, Field

from app.pipeline import Context, price_mask
from feature_store.errors import InvalidRequest
from models.diversity import check_diversity


def _price(name: str, value: float | None) -> float | None:
    if value is None:
        return None
    price = float(value)
    if not math.isfinite(price) or price < 0:
        raise InvalidRequest(f"{name}: must be a finite price >= 0, got {value!r}")
    return price


@dataclass(frozen=True, slots=True)
class ListOptions:
    """Price range (inclusive, None: open) and diversity (0: none … 1: strong) of one request."""

    min_price: float | None = None
    max_price: float | None = None
    diversity: float = 0.0

    def __post_init__(self) -> None:
        low = _price("min_price", self.min_price)
        high = _price("max_price", self.max_price)
        if low is not None and high is not None and low > high:
            raise InvalidRequest(f"min_price ({low:g}) is above max_price ({high:g})")
        try:
            diversity = check_diversity(self.diversity)
        except (TypeError, ValueError) as exc:
            raise InvalidRequest(f"diversity: {exc}") from exc
        object.__setattr__(self, "min_price", low)
        object.__setattr__(self, "max_price", high)
        object.__setattr__(self, "diversity", diversity)

    @classmethod
    def of(
        cls,
        min_price: float | None,
        max_price: float | None,
        diversity: float | None,
        default_diversity: float,
    ) -> ListOptions:
        """The options of a request (``diversity`` None: the service's default)."""
        return cls(min_price, max_price, default_diversity if diversity is None else diversity)

    @property
    def price_filtered(self) -> bool:
        return self.min_price is not None or self.max_price is not None

    @property
    def key(self) -> str:
        """This request's part of a cache key's field: ``""`` with the defaults."""
        out = ""
        if self.price_filtered:
            low = "" if self.min_price is None else repr(self.min_price)
            high = "" if self.max_price is None else repr(self.max_price)
            out += f":p{low}-{high}"
        if self.diversity:
            out += f":d{self.diversity!r}"
        return out

    def apply(self, ctx: Context) -> Context:
        ctx.min_price = self.min_price
        ctx.max_price = self.max_price
        ctx.diversity = self.diversity
        return ctx

    def price_mask(self, prices: npt.NDArray[np.float64]) -> npt.NDArray[np.bool_] | None:
        """Per item of ``prices``: within the range (None when no range is asked)."""
        if not self.price_filtered:
            return None
        return price_mask(prices, self.min_price, self.max_price)


NO_OPTIONS = ListOptions()


PRICE = "items priced at least / at most this (inclusive)"
DIVERSITY = "0 (none, the default) … 1 (strong): fewer items alike in type, colour, style"


class ListOptionsBody(BaseModel):
    """The list options of a POST body (the GET endpoints take them as query parameters)."""

    min_price: float | None = Field(None, description=PRICE)
    max_price: float | None = Field(None, description=PRICE)
    diversity: float | None = Field(None, description=DIVERSITY)

    def list_options(self, default_diversity: float) -> ListOptions:
        return ListOptions.of(self.min_price, self.max_price, self.diversity, default_diversity)
