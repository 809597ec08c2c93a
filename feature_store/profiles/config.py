"""ProfileConfig: every day count, threshold and weight of the customer profiles.

A strict pydantic model (a misspelt key is an error): ``ProfileConfig(new_days=14)``, or
``ProfileConfig.from_dict(...)`` for the config stored with saved profiles.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
from pydantic import ConfigDict, Field, field_validator, model_validator

from ..config import StrictConfig
from .vocabulary import _KIND_CODE, _KINDS, DEFAULT_EVENT_WEIGHTS

__all__ = ["ProfileConfig"]

HalfLife = float | None


class ProfileConfig(StrictConfig):
    """Every day count, threshold and weight of the profiles (JSON round-trip: to/from_dict).

    Lifecycle stages: ``new_days`` ≤ ``active_days`` < ``sleeping_days`` < ``churned_days``.
    RFM: a score at or above ``r_high`` / ``f_high`` / ``m_high`` counts as high. Sizes and
    affinities decay with their half-lives in days (None: no decay); ``event_weights`` weigh each
    interaction type for the affinities. ``consent_policy``: what happens to customers who
    refused personalization (``rfm_only``, ``exclude`` or ``full``).
    """

    model_config = ConfigDict(frozen=True)

    new_days: int = Field(30, gt=0)
    active_days: int = 90
    sleeping_days: int = 180
    churned_days: int = 365
    r_high: int = Field(4, ge=1, le=5)
    f_high: int = Field(4, ge=1, le=5)
    m_high: int = Field(4, ge=1, le=5)
    affinity_half_life_days: HalfLife = Field(90.0, gt=0)
    size_half_life_days: HalfLife = Field(365.0, gt=0)
    size_return_weight: float = Field(1.0, ge=0)
    size_shift_weight: float = Field(1.0, ge=0)
    size_confidence_scale: float = Field(2.0, gt=0)
    size_keep: int = Field(3, ge=1)
    affinity_keep: int = Field(3, ge=1)
    top_affinities: int = Field(3, ge=1)
    event_weights: dict[str, float] = Field(default_factory=lambda: dict(DEFAULT_EVENT_WEIGHTS))
    ltv_min_tenure_days: float = Field(90.0, gt=0)
    ltv_max_lifetime_years: float = Field(5.0, gt=0)
    ltv_default_lifetime_years: float = Field(1.0, ge=0)
    consent_policy: Literal["rfm_only", "exclude", "full"] = "rfm_only"

    @field_validator("event_weights")
    @classmethod
    def _known_types(cls, weights: dict[str, float]) -> dict[str, float]:
        unknown = set(weights) - set(_KIND_CODE)
        if unknown:
            raise ValueError(f"event_weights has unknown interaction types {sorted(unknown)}")
        return weights

    @model_validator(mode="after")
    def _ordered_days(self) -> ProfileConfig:
        if not 0 < self.new_days <= self.active_days < self.sleeping_days < self.churned_days:
            raise ValueError(
                "need 0 < new_days <= active_days < sleeping_days < churned_days, got "
                f"{self.new_days}, {self.active_days}, {self.sleeping_days}, {self.churned_days}"
            )
        return self

    def kind_weights(self) -> npt.NDArray[np.float64]:
        """Affinity weight per interaction type code (declaration order of InteractionType)."""
        return np.array([float(self.event_weights.get(k.value, 0.0)) for k in _KINDS])

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump()

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ProfileConfig:
        """The config stored with saved profiles (keys this version does not know are ignored)."""
        return cls.model_validate({k: v for k, v in data.items() if k in cls.model_fields})
