"""A/B experiments: a file of experiments, sticky assignment, and the per-variant report.

The experiments file (``LOOKBOOK_EXPERIMENTS_FILE``, JSON, or YAML when it ends in ``.yaml`` /
``.yml``; format in ``docs/experiments.md``) lists experiments, each on one *surface* — a feed
surface of the strategies (``home``, ``email``, …) or ``session`` — with a time window and
variants. A variant may override the strategy (a segment → sources block in the strategies
file's format), the blend (source weights, the fusion constant ``rrf_k``), the bandit
(``enabled``, ``exploration``) and the learned ranker (``ranker``: true / false, the fusion stage
of a bundle that has one); exactly one variant is the control, and the shares sum to 1. It
is validated at start-up (:class:`ExperimentsFile` on :class:`~feature_store.config.StrictConfig`
plus the cross-checks of :class:`Experiments`): a bad key, shares, an unknown source or surface,
or two experiments on the same surface with overlapping windows is a
:class:`~feature_store.errors.DataFormatError` naming the key.

Assignment (:meth:`Experiments.assign`) is sticky and deterministic: SHA-256 of
``"<experiment>\\x00<unit>"`` (the customer id, or a session's ``session_id``), its first 64 bits
as a number in [0, 1), against the variants' cumulative shares in file order. Outside the window
nobody is assigned. The assigned variant's *label* ``"<experiment>:<variant>"`` is what the
served-list record, the attribution counters and the pipeline's ``Context.variant`` carry;
the body says ``"experiment": {"name", "variant"}``.

:meth:`Experiments.report` turns the attribution counters of each variant (summed over sources)
into rates and revenue per 1,000 impressions with intervals and the differences to control
(:mod:`models.experiment_stats`).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import UnionType
from typing import Any, Final, Union, get_args, get_origin

import yaml
from pydantic import BaseModel, Field, ValidationError, field_validator, model_validator

from app.errors import UnknownExperiment
from app.pipeline import CandidateSource, Context
from app.strategies import FITTED, SEGMENTS, StrategyEntry, SurfaceStrategies
from feature_store.attribution_store import COUNTS as _COUNTERS
from feature_store.attribution_store import Credit
from feature_store.config import StrictConfig, config_error
from feature_store.errors import DataFormatError
from models import experiment_stats as st

#: The surface of anonymous sessions (``POST /v1/sessions/recommendations`` with ``session_id``).
SESSION_SURFACE: Final = "session"
NAME_PATTERN: Final = r"^[A-Za-z0-9_.-]{1,64}$"
#: The rates reported per variant: the counter over impressions.
RATES: Final = {
    "click_through_rate": "clicks",
    "add_to_cart_rate": "add_to_carts",
    "conversion_rate": "purchases",
}
_SHARE_TOLERANCE: Final = 1e-6
_TWO_64: Final = float(2**64)


class BlendOverride(StrictConfig):
    """A variant's fusion: source weights replacing the strategy's, and the fusion constant."""

    weights: dict[str, float] | None = None
    rrf_k: float | None = Field(None, gt=0)

    @field_validator("weights")
    @classmethod
    def _non_negative(cls, value: dict[str, float] | None) -> dict[str, float] | None:
        for source, weight in (value or {}).items():
            if weight < 0:
                raise ValueError(f"weight of {source!r} must not be negative, got {weight}")
        return value


class BanditOverride(StrictConfig):
    """A variant's bandit: on or off, and its exploration (0: exploit … 1: explore widely)."""

    enabled: bool | None = None
    exploration: float | None = Field(None, ge=0.0, le=1.0)


class VariantSpec(StrictConfig):
    name: str = Field(pattern=NAME_PATTERN)
    share: float = Field(ge=0.0, le=1.0)
    control: bool = False
    strategy: SurfaceStrategies | None = None
    blend: BlendOverride | None = None
    bandit: BanditOverride | None = None
    #: the learned ranker as the fusion stage on / off (None: the service's setting)
    ranker: bool | None = None


class ExperimentSpec(StrictConfig):
    name: str = Field(pattern=NAME_PATTERN)
    surface: str = Field(pattern=r"^[a-z_]{1,32}$")
    start: datetime
    end: datetime
    variants: list[VariantSpec] = Field(min_length=2)
    description: str | None = None

    @field_validator("start", "end")
    @classmethod
    def _aware(cls, value: datetime) -> datetime:
        return value if value.tzinfo is not None else value.replace(tzinfo=UTC)

    @model_validator(mode="after")
    def _window(self) -> ExperimentSpec:
        if self.end <= self.start:
            raise ValueError(f"end ({self.end.isoformat()}) must be after start")
        return self


class ExperimentsFile(StrictConfig):
    """The experiments file (``LOOKBOOK_EXPERIMENTS_FILE``)."""

    experiments: list[ExperimentSpec] = Field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Variant:
    """A validated variant, its strategy resolved to sources (None: the surface's own)."""

    name: str
    share: float
    control: bool
    label: str  # "<experiment>:<variant>": the served-list record's and the counters' variant
    strategy: Mapping[str, list[tuple[CandidateSource, float | None]]] | None
    weights: Mapping[str, float] | None
    rrf_k: float | None
    bandit_enabled: bool | None
    exploration: float | None
    ranker_enabled: bool | None = None


@dataclass(frozen=True, slots=True)
class Assignment:
    """One request's experiment and variant."""

    experiment: str
    variant: Variant

    @property
    def label(self) -> str:
        return self.variant.label

    def body(self) -> dict[str, str]:
        """The response body's ``experiment`` field."""
        return {"name": self.experiment, "variant": self.variant.name}

    def apply(self, ctx: Context) -> Context:
        """Set the pipeline context's variant and the variant's bandit overrides."""
        ctx.variant = self.label
        ctx.bandit_enabled = self.variant.bandit_enabled
        ctx.exploration = self.variant.exploration
        ctx.ranker_enabled = self.variant.ranker_enabled
        return ctx

    def strategy(
        self, segment: str, default: list[tuple[CandidateSource, float | None]]
    ) -> list[tuple[CandidateSource, float | None]]:
        """The variant's strategy for ``segment`` (``default``, the surface's own, when the
        variant overrides neither this segment nor its ``default``)."""
        if self.variant.strategy is None:
            return default
        return self.variant.strategy.get(segment, default)

    def reweighted(
        self, resolved: list[tuple[CandidateSource, float]], rrf_k: float
    ) -> tuple[list[tuple[CandidateSource, float]], float]:
        """Resolved ``(source, weight)`` pairs and fusion constant with the variant's blend
        overrides applied (a weight for a source the strategy does not use is ignored)."""
        weights = self.variant.weights or {}
        out = [(source, weights.get(source.name, weight)) for source, weight in resolved]
        return out, self.variant.rrf_k if self.variant.rrf_k is not None else rrf_k


@dataclass(frozen=True, slots=True)
class Experiment:
    name: str
    surface: str
    start: datetime
    end: datetime
    variants: tuple[Variant, ...]
    description: str | None

    @property
    def control(self) -> Variant:
        return next(v for v in self.variants if v.control)

    def running(self, now: datetime) -> bool:
        return self.start <= now < self.end

    def variant_for(self, unit_id: str) -> Variant:
        """The variant ``unit_id`` falls in (sticky: the same for every call and replica)."""
        point = bucket(self.name, unit_id)
        cumulative = 0.0
        for variant in self.variants:
            cumulative += variant.share
            if point < cumulative:
                return variant
        return self.variants[-1]  # shares sum to 1 within rounding: the last takes the rest


def bucket(experiment: str, unit_id: str) -> float:
    """``unit_id``'s point in [0, 1) for ``experiment``: the first 64 bits of SHA-256."""
    digest = hashlib.sha256(f"{experiment}\x00{unit_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / _TWO_64


def read_experiments_file(path: Path) -> dict[str, Any]:
    """The raw document of an experiments file (YAML for ``.yaml`` / ``.yml``, else JSON)."""
    try:
        text = Path(path).read_text()
        if Path(path).suffix.lower() in (".yaml", ".yml"):
            raw = yaml.safe_load(text)
        else:
            raw = json.loads(text)
    except (OSError, json.JSONDecodeError, yaml.YAMLError) as exc:
        raise DataFormatError(f"cannot read experiments file: {exc}", file=str(path)) from exc
    if not isinstance(raw, dict):
        raise DataFormatError("experiments file must be a mapping", file=str(path))
    return raw


class Experiments:
    """The validated experiments; assigns requests and reports per variant."""

    def __init__(
        self,
        raw: Mapping[str, Any],
        sources: Mapping[str, CandidateSource],
        surfaces: set[str],
        *,
        file: str | None = None,
    ) -> None:
        try:
            parsed = ExperimentsFile.model_validate(dict(raw))
        except ValidationError as exc:
            error = config_error(exc, ExperimentsFile, what="experiments file", file=file)
            first = exc.errors()[0]
            allowed = _allowed_keys(tuple(first.get("loc", ())))
            if first.get("type") == "extra_forbidden" and allowed and "allowed" not in str(error):
                raise DataFormatError(
                    f"{error.args[0].split(': ', 1)[-1]} (allowed: {', '.join(allowed)})",
                    file=file,
                    column=error.column,
                ) from exc
            raise error from exc
        self.file = file
        self.experiments: dict[str, Experiment] = {}
        for i, spec in enumerate(parsed.experiments):
            experiment = self._build(spec, f"experiments.{i}", sources, surfaces)
            if spec.name in self.experiments:
                raise self._error(f"experiments.{i}.name", f"duplicate experiment {spec.name!r}")
            for other in self.experiments.values():
                if (
                    other.surface == experiment.surface
                    and experiment.start < other.end
                    and other.start < experiment.end
                ):
                    raise self._error(
                        f"experiments.{i}.start",
                        f"experiment {spec.name!r} overlaps {other.name!r} on surface "
                        f"{spec.surface!r} (a request can be in one experiment per surface)",
                    )
            self.experiments[spec.name] = experiment

    @classmethod
    def from_file(
        cls, path: Path | None, sources: Mapping[str, CandidateSource], surfaces: set[str]
    ) -> Experiments:
        if path is None:
            return cls({}, sources, surfaces)
        return cls(read_experiments_file(path), sources, surfaces, file=str(path))

    def _error(self, key: str, message: str) -> DataFormatError:
        return DataFormatError(f"invalid experiments file: {message}", file=self.file, column=key)

    def _build(
        self,
        spec: ExperimentSpec,
        at: str,
        sources: Mapping[str, CandidateSource],
        surfaces: set[str],
    ) -> Experiment:
        if spec.surface not in surfaces:
            raise self._error(
                f"{at}.surface", f"unknown surface {spec.surface!r}; known: {sorted(surfaces)}"
            )
        total = sum(v.share for v in spec.variants)
        if abs(total - 1.0) > _SHARE_TOLERANCE:
            raise self._error(f"{at}.variants", f"shares must sum to 1, got {total:g}")
        controls = [v.name for v in spec.variants if v.control]
        if len(controls) != 1:
            raise self._error(
                f"{at}.variants", f"exactly one variant must be control, got {len(controls)}"
            )
        names = [v.name for v in spec.variants]
        if len(set(names)) != len(names):
            raise self._error(f"{at}.variants", f"duplicate variant names in {names}")
        variants = []
        for j, v in enumerate(spec.variants):
            where = f"{at}.variants.{j}"
            variants.append(self._variant(spec.name, v, where, sources))
        return Experiment(
            spec.name, spec.surface, spec.start, spec.end, tuple(variants), spec.description
        )

    def _variant(
        self,
        experiment: str,
        spec: VariantSpec,
        where: str,
        sources: Mapping[str, CandidateSource],
    ) -> Variant:
        strategy: dict[str, list[tuple[CandidateSource, float | None]]] | None = None
        if spec.strategy is not None:
            for segment in SEGMENTS:
                entries: list[StrategyEntry] = getattr(spec.strategy, segment) or []
                for k, entry in enumerate(entries):
                    if entry.source not in sources:
                        raise self._error(
                            f"{where}.strategy.{segment}.{k}.source",
                            f"unknown source {entry.source!r}; known: {sorted(sources)}",
                        )
            strategy = {}
            for segment in SEGMENTS:
                chosen = getattr(spec.strategy, segment) or spec.strategy.default
                if chosen is not None:
                    strategy[segment] = [
                        (sources[e.source], None if e.weight == FITTED else float(e.weight))
                        for e in chosen
                    ]
        weights = spec.blend.weights if spec.blend is not None else None
        for source in weights or {}:
            if source not in sources:
                raise self._error(
                    f"{where}.blend.weights.{source}",
                    f"unknown source {source!r}; known: {sorted(sources)}",
                )
        return Variant(
            name=spec.name,
            share=spec.share,
            control=spec.control,
            label=f"{experiment}:{spec.name}",
            strategy=strategy,
            weights=weights,
            rrf_k=spec.blend.rrf_k if spec.blend is not None else None,
            bandit_enabled=spec.bandit.enabled if spec.bandit is not None else None,
            exploration=spec.bandit.exploration if spec.bandit is not None else None,
            ranker_enabled=spec.ranker,
        )

    # -- assignment ------------------------------------------------------------------------------

    def assign(self, surface: str, unit_id: str | None, now: datetime) -> Assignment | None:
        """The experiment running on ``surface`` at ``now`` and ``unit_id``'s variant in it
        (None: no unit, or no experiment running there)."""
        if unit_id is None or not self.experiments:
            return None
        for experiment in self.experiments.values():
            if experiment.surface == surface and experiment.running(now):
                return Assignment(experiment.name, experiment.variant_for(unit_id))
        return None

    # -- reporting -------------------------------------------------------------------------------

    def listing(self, now: datetime) -> list[dict[str, Any]]:
        """Every experiment with its window, whether it is running, and its variants."""
        return [self._describe(e, now) for e in self.experiments.values()]

    @staticmethod
    def _describe(experiment: Experiment, now: datetime) -> dict[str, Any]:
        return {
            "name": experiment.name,
            "surface": experiment.surface,
            "description": experiment.description,
            "start": experiment.start.isoformat(),
            "end": experiment.end.isoformat(),
            "running": experiment.running(now),
            "variants": [
                {
                    "name": v.name,
                    "share": v.share,
                    "control": v.control,
                    "label": v.label,
                    "strategy_override": v.strategy is not None,
                    "weights": dict(v.weights) if v.weights is not None else None,
                    "rrf_k": v.rrf_k,
                    "bandit_enabled": v.bandit_enabled,
                    "exploration": v.exploration,
                }
                for v in experiment.variants
            ],
        }

    def report(
        self, name: str, counts: Mapping[Credit, Mapping[str, float]], now: datetime
    ) -> dict[str, Any]:
        """Per variant: counts, rates and revenue per 1,000 impressions with 95 % intervals,
        and each treatment's difference to control (interval, p-value); raises
        :class:`UnknownExperiment`."""
        experiment = self.experiments.get(name)
        if experiment is None:
            raise UnknownExperiment(name)
        totals = {v.label: dict.fromkeys(_COUNTERS, 0.0) for v in experiment.variants}
        for (_, _, variant), values in counts.items():
            row = totals.get(variant) if variant is not None else None
            if row is not None:
                for counter in _COUNTERS:
                    row[counter] += float(values.get(counter, 0.0))
        control = totals[experiment.control.label]
        out = self._describe(experiment, now)
        out["variants"] = [
            self._variant_report(v, totals[v.label], None if v.control else control)
            for v in experiment.variants
        ]
        return out

    @staticmethod
    def _variant_report(
        variant: Variant, row: Mapping[str, float], control: Mapping[str, float] | None
    ) -> dict[str, Any]:
        n = int(row["impressions"])
        report: dict[str, Any] = {
            "name": variant.name,
            "control": variant.control,
            "share": variant.share,
            "impressions": n,
            "clicks": int(row["clicks"]),
            "add_to_carts": int(row["add_to_carts"]),
            "purchases": int(row["purchases"]),
            "revenue": round(row["revenue"], 2),
        }
        for rate, counter in RATES.items():
            # a purchase can follow one shown item twice; a rate stays a proportion (capped)
            successes = min(int(row[counter]), n)
            report[rate] = _estimate(st.wilson_interval(successes, n))
            report[rate]["vs_control"] = None
            if control is not None:
                n0 = int(control["impressions"])
                report[rate]["vs_control"] = _comparison(
                    st.compare_proportions(successes, n, min(int(control[counter]), n0), n0)
                )
        report["revenue_per_1000"] = _estimate(
            st.mean_interval(row["revenue"], row["revenue_squares"], n, scale=1000.0)
        )
        report["revenue_per_1000"]["vs_control"] = None
        if control is not None:
            report["revenue_per_1000"]["vs_control"] = _comparison(
                st.compare_means(
                    row["revenue"],
                    row["revenue_squares"],
                    n,
                    control["revenue"],
                    control["revenue_squares"],
                    int(control["impressions"]),
                    scale=1000.0,
                )
            )
        return report


def _allowed_keys(loc: tuple[int | str, ...]) -> list[str] | None:
    """The keys allowed where the key at ``loc`` sits (list indices and dict keys walked)."""
    current: Any = ExperimentsFile
    for part in loc[:-1]:
        if isinstance(current, type) and issubclass(current, BaseModel):
            field = current.model_fields.get(str(part))
            if field is None:
                return None
            current = field.annotation
        else:  # a list element or a dict value: the element type
            current = get_args(current)[-1] if get_args(current) else None
        while get_origin(current) in (Union, UnionType):  # X | None
            current = next(a for a in get_args(current) if a is not type(None))
    if isinstance(current, type) and issubclass(current, BaseModel):
        return sorted(current.model_fields)
    return None


def _estimate(e: st.Estimate) -> dict[str, Any]:
    return {"value": e.value, "low": e.low, "high": e.high}


def _comparison(c: st.Comparison) -> dict[str, Any]:
    return {"difference": c.difference, "low": c.low, "high": c.high, "p_value": c.p_value}


def experiments_now(clock: Callable[[], datetime]) -> datetime:
    """``clock()`` as an aware datetime (naive: UTC)."""
    now = clock()
    return now if now.tzinfo is not None else now.replace(tzinfo=UTC)
