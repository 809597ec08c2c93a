"""Segment strategies: which candidate sources a customer's feed blends, by segment and surface.

A customer's *segment* comes from their live profile (:func:`segment_of`):

=================  ==========================================================================
segment            who
=================  ==========================================================================
``new``            lifecycle stage ``new`` (first purchase within ``new_days``)
``high_value``     tier ``high_value``
``active_low_spend`` tier ``active_low_spend``
``sleeping``       tier ``sleeping_high_value``, or stage ``sleeping`` / ``churned``
``default``        everyone else, unknown customers and customers without consent
=================  ==========================================================================

Each segment of each *surface* (``home``, ``email``; ``?surface=`` on the feed) names sources with
weights; the pipeline fuses them (weighted reciprocal-rank fusion) and every item's ``reason``
says which strategy put it there. Defaults are :data:`DEFAULT_STRATEGIES`; a JSON file
``{"surfaces": {surface: {segment: [{"source", "weight"}]}}}`` (``LOOKBOOK_STRATEGIES_FILE``,
validated by :class:`StrategiesFile`) replaces them.

The sources a strategy can name are listed in :mod:`app.strategy_sources`.

The ``default`` segment's feed is :data:`FITTED_BLEND`: repurchase, repeat, siblings, ALS, LSTM and
popularity at the weights (and fusion constant) the trainer fitted on a validation period.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Final, Literal

from pydantic import Field, ValidationError, field_validator

from app.pipeline import CandidateSource
from feature_store.config import StrictConfig, config_error
from feature_store.errors import DataFormatError, InvalidRequest
from models.bundle import DEFAULT_RRF_K as RRF_K
from models.bundle import BlendWeights

SEGMENTS: Final = ("new", "high_value", "active_low_spend", "sleeping", "default")

#: Where a strategy says ``"weight": "fitted"``, the weight is the bundle's blend weight for that
#: source, fitted by the trainer on a validation period (``manifest.json`` → ``blend``); a
#: strategy with a fitted weight also uses the blend's fitted fusion constant ``rrf_k``.
FITTED: Final = "fitted"
#: Strategy source name → the source's name in the blend weights (:data:`models.bundle.SOURCES`).
BLEND_NAMES: Final[dict[str, str]] = {"popular": "popularity"}
#: The default feed: the sources the trainer's blend was fitted over, at the fitted weights.
FITTED_BLEND: Final[list[dict[str, Any]]] = [
    {"source": "repurchase", "weight": FITTED},
    {"source": "repeat", "weight": FITTED},
    {"source": "siblings", "weight": FITTED},
    {"source": "als", "weight": FITTED},
    {"source": "sequence", "weight": FITTED},
    {"source": "popular", "weight": FITTED},
]

DEFAULT_STRATEGIES: Final[dict[str, dict[str, list[dict[str, Any]]]]] = {
    # Reciprocal-rank fusion with k=60 is flat: a weight of 0.95 against 1.0 already places the
    # strategy's first item around the other source's fourth, so weights stay close to 1.
    "home": {
        "new": [
            {"source": "starter", "weight": 1.0},
            {"source": "als", "weight": 0.9},
            {"source": "sequence", "weight": 0.8},
            {"source": "popular", "weight": 0.2},
        ],
        "high_value": [
            {"source": "als", "weight": 1.0},
            {"source": "sequence", "weight": 0.9},
            {"source": "complementary", "weight": 0.95},
            {"source": "new_in_style", "weight": 0.95},
            {"source": "popular", "weight": 0.1},
        ],
        "active_low_spend": [
            {"source": "als", "weight": 1.0},
            {"source": "sequence", "weight": 0.9},
            {"source": "step_up", "weight": 0.95},
            {"source": "bundles", "weight": 0.95},
            {"source": "popular", "weight": 0.1},
        ],
        "sleeping": [
            {"source": "win_back", "weight": 1.0},
            {"source": "als", "weight": 0.95},
            {"source": "sequence", "weight": 0.9},
            {"source": "popular", "weight": 0.2},
        ],
        "default": FITTED_BLEND,
    },
    "email": {
        "new": [{"source": "starter", "weight": 1.0}, {"source": "als", "weight": 0.8}],
        "high_value": [
            {"source": "new_in_style", "weight": 1.0},
            {"source": "complementary", "weight": 1.0},
            {"source": "als", "weight": 0.8},
        ],
        "active_low_spend": [
            {"source": "step_up", "weight": 1.0},
            {"source": "bundles", "weight": 1.0},
            {"source": "als", "weight": 0.8},
        ],
        "sleeping": [{"source": "win_back", "weight": 1.0}, {"source": "als", "weight": 0.8}],
        "default": FITTED_BLEND,
    },
}


def segment_of(profile: Mapping[str, Any] | None) -> str:
    """The strategy segment of a rendered profile (``default`` when None)."""
    if profile is None:
        return "default"
    tier, stage = profile.get("tier"), profile.get("stage")
    if stage == "new":
        return "new"
    if tier in ("high_value", "active_low_spend"):
        return str(tier)
    if tier == "sleeping_high_value" or stage in ("sleeping", "churned"):
        return "sleeping"
    return "default"


class StrategyEntry(StrictConfig):
    """One source of a segment's strategy and its weight (a number >= 0, or ``"fitted"``)."""

    source: str
    weight: float | Literal["fitted"] = 1.0

    @field_validator("weight", mode="before")
    @classmethod
    def _number_or_fitted(cls, value: object) -> float | str:
        if value == FITTED:
            return FITTED
        try:
            weight = float(value)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            raise ValueError(f"must be a number or {FITTED!r}, got {value!r}") from None
        if weight < 0:
            raise ValueError(f"must not be negative, got {weight}")
        return weight


class SurfaceStrategies(StrictConfig):
    """A surface's strategy per segment; a segment left out gets the ``default`` one."""

    new: list[StrategyEntry] | None = None
    high_value: list[StrategyEntry] | None = None
    active_low_spend: list[StrategyEntry] | None = None
    sleeping: list[StrategyEntry] | None = None
    default: list[StrategyEntry] | None = None


class StrategiesFile(StrictConfig):
    """The strategies file (``LOOKBOOK_STRATEGIES_FILE``): surface → segment → sources."""

    surfaces: dict[str, SurfaceStrategies] = Field(min_length=1)


#: Which model holds a key at a given depth of the file (for naming the allowed keys).
_OWNER_AT_DEPTH: Final[dict[int, type[StrictConfig]]] = {
    1: StrategiesFile,
    3: SurfaceStrategies,
    5: StrategyEntry,
}


def parse_strategies(raw: Mapping[str, Any], *, file: str | None = None) -> StrategiesFile:
    """The validated strategies of ``{"surfaces": {...}}`` (or of the bare ``{...}``); a bad or
    misspelt key is a :class:`DataFormatError` naming it and the keys allowed there."""
    document = dict(raw) if "surfaces" in raw else {"surfaces": dict(raw)}
    try:
        return StrategiesFile.model_validate(document)
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = tuple(first.get("loc", ()))
        owner = _OWNER_AT_DEPTH.get(len(loc))
        if first.get("type") == "extra_forbidden" and owner is not None:
            where = ".".join(str(part) for part in loc)
            raise DataFormatError(
                f"invalid strategies file: unknown key {str(loc[-1])!r} at {where} "
                f"(allowed: {', '.join(owner.model_fields)})",
                file=file,
                column=where,
            ) from exc
        raise config_error(exc, StrategiesFile, what="strategies file", file=file) from exc


class StrategyConfig:
    """Validated strategies: surface → segment → [(source, weight)] (``None``: fitted)."""

    def __init__(
        self,
        raw: Mapping[str, Any],
        sources: Mapping[str, CandidateSource],
        *,
        file: str | None = None,
    ) -> None:
        parsed = parse_strategies(raw, file=file)
        self.surfaces: dict[str, dict[str, list[tuple[CandidateSource, float | None]]]] = {}
        for surface, segments in parsed.surfaces.items():
            table: dict[str, list[tuple[CandidateSource, float | None]]] = {}
            for segment in SEGMENTS:
                entries = getattr(segments, segment)
                if entries is None:
                    entries = segments.default or []
                chosen: list[tuple[CandidateSource, float | None]] = []
                for entry in entries:
                    if entry.source not in sources:
                        raise DataFormatError(
                            f"invalid strategies file: unknown source {entry.source!r} in "
                            f"{surface}/{segment}; known: {sorted(sources)}",
                            file=file,
                        )
                    weight = None if entry.weight == FITTED else float(entry.weight)
                    chosen.append((sources[entry.source], weight))
                table[segment] = chosen
            self.surfaces[surface] = table

    @classmethod
    def from_file(cls, path: Path | None, sources: Mapping[str, CandidateSource]) -> StrategyConfig:
        if path is None:
            return cls(DEFAULT_STRATEGIES, sources)
        try:
            raw = json.loads(Path(path).read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise DataFormatError(f"cannot read strategies file: {exc}", file=str(path)) from exc
        if not isinstance(raw, dict):
            raise DataFormatError("strategies file must be a JSON object", file=str(path))
        return cls(raw, sources, file=str(path))

    def for_segment(self, surface: str, segment: str) -> list[tuple[CandidateSource, float | None]]:
        table = self.surfaces.get(surface)
        if table is None:
            raise InvalidRequest(
                f"surface: unknown surface {surface!r}; configured: {sorted(self.surfaces)}"
            )
        return table[segment]


def resolve_weights(
    strategy: Sequence[tuple[CandidateSource, float | None]], blend: BlendWeights
) -> tuple[list[tuple[CandidateSource, float]], float]:
    """A strategy's ``(source, weight)`` pairs with fitted weights (``None``) taken from the
    bundle's blend, and the fusion constant: the blend's ``rrf_k`` when any weight is fitted, the
    pipeline's default otherwise. A source the blend has no weight for gets 0 (left out)."""
    fitted = any(weight is None for _, weight in strategy)
    resolved = [
        (
            source,
            float(blend.weights.get(BLEND_NAMES.get(source.name, source.name), 0.0))
            if weight is None
            else weight,
        )
        for source, weight in strategy
    ]
    return resolved, (blend.rrf_k if fitted else RRF_K)
