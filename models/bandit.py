"""Thompson sampling over a feed's candidate sources: which source fills each slot of a list.

Per (surface, segment) every candidate source (``repeat``, ``als``, ``complementary``,
``new_arrivals`` …) is an arm with a posterior over its reward per impression. For one request,
:func:`rerank` takes the sources' ranked candidate lists (after the filters) and fills the ``k``
positions one at a time: among the sources that still have an unused candidate it picks one with
the probability that its posterior sample is the largest — Thompson sampling per slot — and takes
that source's next candidate not already taken (an item listed by several sources is shown once).
Each position comes back with its source and that probability, the *propensity* off-policy
evaluation needs. ``docs/bandit.md`` is the design note (why per-slot choice, reward, prior, decay,
exploration, propensities, state, cost).

* **Reward** (:class:`BanditConfig.reward`): a click, add-to-cart or purchase per impression
  (Beta–Bernoulli), or revenue per impression (Gamma on the rate of ``revenue_unit``-sized units).
* **Prior** (:func:`prior`): the strategy's blend weights (for the fitted blend the trainer's
  :class:`~models.bundle.BlendWeights`), each source's prior mean proportional to its weight
  (``prior_rate`` on average), worth ``prior_strength`` pseudo-impressions — a fresh deployment
  ranks the sources in the fitted weights' order.
* **Evidence** (:class:`Bandit`): the decayed sums of :mod:`feature_store.bandit_state` (half-life
  ``half_life_days``), in-process or shared through Redis.
* **Exploration** (0 … 1, per surface): 0 takes the best posterior mean (deterministic,
  propensity 1), 0.5 is plain Thompson sampling, above it the posterior is widened, 1 picks
  uniformly among the sources left. A share of slots can be reserved for a new-items source.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final, Literal

import numpy as np
import numpy.typing as npt
from pydantic import Field, field_validator
from scipy import stats as sps

from feature_store.bandit_state import ArmStats, BanditState
from feature_store.config import StrictConfig
from feature_store.redis_batch import Pending, RedisBatch
from feature_store.schema import InteractionType
from feature_store.timeutils import SECONDS_PER_DAY
from models.bundle.fusion import rrf_fuse_row

__all__ = [
    "REWARDS",
    "ArmSummary",
    "Bandit",
    "BanditConfig",
    "Posterior",
    "Reranked",
    "concentration",
    "fixed_rerank",
    "posterior",
    "prior",
    "rerank",
    "slot_probabilities",
]

FloatArray = npt.NDArray[np.float64]
Reward = Literal["click", "add_to_cart", "purchase", "revenue"]
#: The rewards a bandit can learn from, and the :class:`ArmStats` field each counts.
REWARDS: Final[dict[str, str]] = {
    "click": "clicks",
    "add_to_cart": "add_to_carts",
    "purchase": "purchases",
    "revenue": "revenue",
}
#: Event types that add evidence, and the :class:`ArmStats` field they increment.
EVENT_STATS: Final[dict[InteractionType, str]] = {
    InteractionType.CLICK: "clicks",
    InteractionType.ADD_TO_CART: "add_to_carts",
    InteractionType.PURCHASE: "purchases",
}
#: Smallest posterior parameter a widened (exploration > 0.5) posterior is sampled with.
MIN_SAMPLED_PARAMETER: Final = 0.1


class BanditConfig(StrictConfig):
    """How the bandit learns and how much it explores."""

    enabled: bool = False
    reward: Reward = "click"
    #: Worth of the prior, in impressions per source.
    prior_strength: float = Field(200.0, gt=0)
    #: Prior reward per impression averaged over a strategy's sources (a rate for click,
    #: add-to-cart and purchase; currency for revenue); each source's prior mean is this times its
    #: blend weight over the strategy's mean weight.
    prior_rate: float = Field(0.02, gt=0, lt=1)
    prior_revenue: float = Field(1.0, gt=0)
    #: Revenue is modelled as a count of units of this size (Gamma–Poisson).
    revenue_unit: float = Field(10.0, gt=0)
    half_life_days: float | None = Field(14.0, gt=0)
    #: 0 = exploit (best posterior mean), 0.5 = Thompson sampling, 1 = uniform over sources.
    exploration: float = Field(0.5, ge=0, le=1)
    exploration_by_surface: dict[str, float] = Field(default_factory=dict)
    #: The source name of the service's new-items list (items younger than ``new_item_days``)
    #: and the share of each position's probability reserved for it while it has candidates.
    new_items_source: str = "new_arrivals"
    new_items_share: float = Field(0.0, ge=0, le=0.5)
    new_item_days: int = Field(14, ge=1)
    #: Posterior draws per request from which each slot's choice probabilities are counted.
    draws: int = Field(256, ge=16, le=65_536)

    @field_validator("exploration_by_surface")
    @classmethod
    def _in_unit_interval(cls, value: dict[str, float]) -> dict[str, float]:
        for surface, level in value.items():
            if not 0.0 <= level <= 1.0:
                raise ValueError(f"exploration of surface {surface!r} must be in [0, 1]")
        return value

    def exploration_for(self, surface: str) -> float:
        return float(self.exploration_by_surface.get(surface, self.exploration))

    @property
    def half_life_seconds(self) -> float | None:
        return None if self.half_life_days is None else self.half_life_days * SECONDS_PER_DAY


@dataclass(frozen=True)
class Posterior:
    """Per source, Beta(``a``, ``b``) of a success rate (``kind="beta"``), or Gamma(shape ``a``,
    rate ``b``) of the rate of ``unit``-sized revenue units per impression (``kind="gamma"``)."""

    sources: tuple[str, ...]
    a: FloatArray
    b: FloatArray
    kind: Literal["beta", "gamma"] = "beta"
    unit: float = 1.0

    def mean(self) -> FloatArray:
        """Expected reward per impression (revenue in currency for ``gamma``)."""
        if self.kind == "beta":
            return self.a / (self.a + self.b)
        return self.unit * self.a / self.b

    def interval(self, level: float = 0.95) -> tuple[FloatArray, FloatArray]:
        """The equal-tailed credible interval of each source's reward per impression."""
        tails = np.array([(1 - level) / 2, (1 + level) / 2])
        if self.kind == "beta":
            q = sps.beta.ppf(tails[:, None], self.a, self.b)
        else:
            q = self.unit * sps.gamma.ppf(tails[:, None], self.a, scale=1.0 / self.b)
        return np.asarray(q[0], dtype=np.float64), np.asarray(q[1], dtype=np.float64)

    def sample(self, rng: np.random.Generator, n: int, scale: float = 1.0) -> FloatArray:
        """``(n, S)`` draws from the posterior with its concentration times ``scale`` (same
        mean; variance about ``1 / scale`` times as large)."""
        a = np.maximum(self.a * scale, MIN_SAMPLED_PARAMETER)
        b = np.maximum(self.b * scale, MIN_SAMPLED_PARAMETER)
        if self.kind == "beta":
            return rng.beta(a, b, size=(n, len(self.sources)))
        return rng.gamma(a, 1.0 / b, size=(n, len(self.sources)))


def _relative_weights(sources: Sequence[str], weights: Mapping[str, float]) -> FloatArray:
    """Each source's weight over the mean positive weight (a source without a weight gets the
    mean; a weight <= 0 gets a thousandth of it)."""
    given = np.array([float(weights[s]) for s in sources if s in weights], dtype=np.float64)
    positive = given[given > 0]
    mean = float(positive.mean()) if len(positive) else 1.0
    rel = np.array([float(weights.get(s, mean)) / mean for s in sources], dtype=np.float64)
    return np.maximum(rel, 1e-3)


def prior(sources: Sequence[str], weights: Mapping[str, float], config: BanditConfig) -> Posterior:
    """The posterior before any evidence: each source's mean reward is proportional to its blend
    weight (``prior_rate`` or ``prior_revenue`` at the mean weight), worth ``prior_strength``
    impressions, so the sources' order is the weights' order."""
    rel = _relative_weights(sources, weights)
    n = config.prior_strength
    if config.reward == "revenue":
        mean = config.prior_revenue * rel
        return Posterior(
            tuple(sources),
            n * mean / config.revenue_unit,
            np.full(len(sources), n),
            kind="gamma",
            unit=config.revenue_unit,
        )
    mean = np.clip(config.prior_rate * rel, 1e-4, 0.5)
    return Posterior(tuple(sources), n * mean, n * (1.0 - mean))


def posterior(
    sources: Sequence[str],
    weights: Mapping[str, float],
    evidence: Mapping[str, ArmStats],
    config: BanditConfig,
) -> Posterior:
    """:func:`prior` updated with each source's decayed ``evidence`` (missing: none)."""
    start = prior(sources, weights, config)
    empty = ArmStats()
    seen = [evidence.get(s, empty) for s in sources]
    shown = np.array([e.impressions for e in seen], dtype=np.float64)
    stat = REWARDS[config.reward]
    gained = np.array([getattr(e, stat) for e in seen], dtype=np.float64)
    if start.kind == "gamma":
        return Posterior(
            start.sources, start.a + gained / start.unit, start.b + shown, "gamma", start.unit
        )
    return Posterior(start.sources, start.a + gained, start.b + np.maximum(shown - gained, 0.0))


def concentration(exploration: float) -> float:
    """The factor on the posterior's concentration at an exploration level in (0, 1):
    ``((1 − e) / e) ** 2`` — 1 at 0.5 (plain Thompson sampling), growing to infinity towards 0
    (the mean: greedy) and falling to 0 towards 1 (flat: uniform)."""
    if not 0.0 < exploration < 1.0:
        raise ValueError(f"concentration is defined for exploration in (0, 1), got {exploration}")
    return ((1.0 - exploration) / exploration) ** 2


def slot_probabilities(samples: FloatArray, available: npt.NDArray[np.bool_]) -> FloatArray:
    """The share of posterior ``samples`` (``(n, S)``) in which each available source has the
    largest draw among the available ones (ties to the lower index): the probabilities one
    slot's choice is drawn with."""
    masked = np.where(available, samples, -np.inf)
    wins = np.bincount(np.argmax(masked, axis=1), minlength=samples.shape[1])
    return wins / float(samples.shape[0])


@dataclass(frozen=True)
class Reranked:
    """The final list: per position the item, the index of its source (into the lists given)
    and the probability with which that source was chosen for the position; ``distributions``
    holds each position's whole choice distribution over the sources (read-only arrays, shared
    between positions with the same sources left; empty for :func:`fixed_rerank`)."""

    items: list[int]
    sources: list[int]
    propensities: list[float]
    distributions: list[FloatArray] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.items)

    def impressions(self, names: Sequence[str]) -> dict[str, ArmStats]:
        """Slots per source name: the impressions this list adds to the bandit's evidence."""
        counts = np.bincount(np.asarray(self.sources, dtype=np.int64), minlength=len(names))
        return {names[s]: ArmStats(impressions=float(c)) for s, c in enumerate(counts) if c}


def rerank(
    lists: Sequence[Sequence[int]],
    belief: Posterior,
    k: int,
    exploration: float,
    rng: np.random.Generator,
    *,
    draws: int = 256,
    reserved: int | None = None,
    reserved_share: float = 0.0,
) -> Reranked:
    """The top ``k`` of one request's candidate ``lists`` (``lists[s]`` is source
    ``belief.sources[s]``'s items, best first, after the filters), one slot at a time.

    At each position the sources that still have an unused candidate compete: with exploration 0
    the one with the largest posterior mean wins (ties to the lower index; propensity 1); with 1
    each wins with the same probability; in between each wins with the probability that its
    sample is the largest, counted over one batch of ``draws`` posterior samples per request
    (concentration scaled by :func:`concentration`). With ``reserved`` (the index of a new-items
    source) that source gets ``reserved_share`` of every position's probability on top, while it
    has candidates. The winner is drawn with these probabilities and contributes its next
    candidate not yet in the list; the propensity is exactly the probability it was drawn with.
    """
    n_sources = len(belief.sources)
    if len(lists) != n_sources:
        raise ValueError(f"{len(lists)} candidate lists for {n_sources} sources")
    if not 0.0 <= exploration <= 1.0:
        raise ValueError(f"exploration must be in [0, 1], got {exploration}")
    if not 0.0 <= reserved_share <= 1.0:
        raise ValueError(f"reserved_share must be in [0, 1], got {reserved_share}")
    if reserved is not None and not 0 <= reserved < n_sources:
        raise ValueError(f"reserved source {reserved} is not one of the {n_sources} sources")
    k = int(k)
    greedy = exploration == 0.0 and (reserved is None or reserved_share == 0.0)
    samples: FloatArray | None = None
    if 0.0 < exploration < 1.0:
        samples = belief.sample(rng, draws, concentration(exploration))
    uniforms: list[float] = [] if greedy else rng.random(k).tolist()
    order: list[int] = []
    if exploration == 0.0:  # greedy preference: best mean, then lower index
        order = np.argsort(-belief.mean(), kind="stable").tolist()
    cursor = [0] * n_sources
    taken: set[int] = set()
    # per set of sources left (a bit mask): the choice distribution, as an array and as floats,
    # and its running sum for the draw
    cache: dict[int, tuple[FloatArray, list[float], list[float]]] = {}
    items: list[int] = []
    chosen: list[int] = []
    propensities: list[float] = []
    distributions: list[FloatArray] = []
    for position in range(k):
        mask = 0
        for s in range(n_sources):  # advance each source past items already taken
            candidates, c = lists[s], cursor[s]
            while c < len(candidates) and (candidates[c] in taken or candidates[c] < 0):
                c += 1
            cursor[s] = c
            if c < len(candidates):
                mask |= 1 << s
        if not mask:
            break
        entry = cache.get(mask)
        if entry is None:
            available = np.array([(mask >> s) & 1 for s in range(n_sources)], dtype=bool)
            if samples is not None:
                probs = slot_probabilities(samples, available)
            elif exploration == 0.0:
                probs = np.zeros(n_sources)
                probs[next(s for s in order if available[s])] = 1.0
            else:
                probs = available / float(available.sum())
            if reserved is not None and reserved_share > 0 and available[reserved]:
                probs = (1.0 - reserved_share) * probs
                probs[reserved] += reserved_share
            probs.flags.writeable = False
            entry = cache[mask] = (probs, probs.tolist(), np.cumsum(probs).tolist())
        probs, weights, cumulative = entry
        if greedy:
            s = weights.index(1.0)
        else:
            # the first source whose running sum exceeds the uniform (zero-probability sources
            # share their predecessor's running sum, so they are never drawn)
            s = min(bisect_right(cumulative, uniforms[position] * cumulative[-1]), n_sources - 1)
        item = int(lists[s][cursor[s]])
        taken.add(item)
        cursor[s] += 1
        items.append(item)
        chosen.append(s)
        propensities.append(weights[s])
        distributions.append(probs)
    return Reranked(items, chosen, propensities, distributions)


def fixed_rerank(
    lists: Sequence[Sequence[int]], weights: Sequence[float], rrf_k: float, k: int
) -> Reranked:
    """The fixed-weights fallback (bandit off): :func:`~models.bundle.rrf_fuse_row` of the lists,
    each item credited to the source that ranked it best, every propensity 1 (a deterministic
    policy)."""
    fused = rrf_fuse_row(lists, weights, rrf_k, k)
    return Reranked([item for item, _, _ in fused], [s for _, _, s in fused], [1.0] * len(fused))


@dataclass(frozen=True)
class ArmSummary:
    """One arm for the admin view and the metrics."""

    surface: str
    segment: str
    source: str
    mean: float  # posterior mean reward per impression
    low: float  # 95 % credible interval
    high: float
    impressions: float  # decayed
    rewards: float  # decayed successes (or revenue)
    traffic_share: float  # its share of the (surface, segment)'s decayed impressions


class Bandit:
    """The bandit of a service: its configuration and its state (evidence per arm)."""

    def __init__(self, config: BanditConfig, state: BanditState) -> None:
        if state.half_life != config.half_life_seconds:
            raise ValueError(
                f"the state decays with half-life {state.half_life} s, the config says "
                f"{config.half_life_seconds} s"
            )
        self.config = config
        self.state = state

    def posterior(
        self,
        surface: str,
        segment: str,
        sources: Sequence[str],
        weights: Mapping[str, float],
        at: float,
    ) -> Posterior:
        """The (surface, segment)'s posterior over ``sources``, prior from ``weights``."""
        evidence = self.state.read(surface, segment, at)
        return posterior(sources, weights, evidence, self.config)

    def rerank(
        self,
        surface: str,
        segment: str,
        sources: Sequence[str],
        lists: Sequence[Sequence[int]],
        weights: Mapping[str, float],
        k: int,
        rng: np.random.Generator,
        at: float,
        *,
        exploration: float | None = None,
        belief: Posterior | None = None,
    ) -> Reranked:
        """One request's list: reads the posterior (one state read; none when ``belief`` is
        given, e.g. a cached one) and reranks ``lists`` (``lists[s]`` from ``sources[s]``) with
        ``exploration`` (None: the surface's configured level) and, when one of ``sources`` is
        the new-items source, its reserved share."""
        if belief is None:
            belief = self.posterior(surface, segment, sources, weights, at)
        elif belief.sources != tuple(sources):
            raise ValueError(f"the posterior is over {belief.sources}, the lists over {sources}")
        config = self.config
        reserved = (
            list(sources).index(config.new_items_source)
            if config.new_items_source in sources
            else None
        )
        return rerank(
            lists,
            belief,
            k,
            config.exploration_for(surface) if exploration is None else exploration,
            rng,
            draws=config.draws,
            reserved=reserved,
            reserved_share=config.new_items_share,
        )

    def record_shown(
        self, surface: str, segment: str, sources: Sequence[str], shown: Reranked, at: float
    ) -> None:
        """Count a served list's slots as impressions of their sources."""
        updates = shown.impressions(sources)
        if updates:
            self.state.add(surface, segment, updates, at)

    def record_impressions(
        self,
        surface: str,
        segment: str,
        shown: Mapping[str, float],
        at: float,
        batch: RedisBatch | None = None,
    ) -> Pending[None] | None:
        """Count ``shown`` (source → positions) as impressions: a served list known only by its
        record (a cached list shown again). With a ``batch`` the state may queue the write on it
        (:meth:`BanditState.add`): the returned result tells whether it was kept."""
        updates = {source: ArmStats(impressions=float(n)) for source, n in shown.items() if n}
        if updates:
            return self.state.add(surface, segment, updates, at, batch)
        return None

    def record_event(
        self,
        surface: str,
        segment: str,
        source: str,
        event: InteractionType,
        at: float,
        revenue: float = 0.0,
    ) -> bool:
        """Credit an attributed event to its source (a purchase also adds ``revenue``); False for
        an event type that is no reward."""
        stat = EVENT_STATS.get(event)
        if stat is None:
            return False
        values = {stat: 1.0}
        if event is InteractionType.PURCHASE:
            values["revenue"] = float(revenue)
        self.state.add(surface, segment, {source: ArmStats(**values)}, at)
        return True

    def report(
        self,
        at: float,
        weights: Mapping[tuple[str, str], Mapping[str, float]] | None = None,
    ) -> list[ArmSummary]:
        """Every arm with evidence or a prior weight: posterior mean and 95 % interval (prior
        from ``weights`` of its (surface, segment) — the strategy's weights, as
        :meth:`posterior` is given them — else equal weights), decayed impressions and rewards,
        and its share of the (surface, segment)'s recent impressions."""
        out: list[ArmSummary] = []
        stat = REWARDS[self.config.reward]
        table = self.state.arms(at)
        for pair in weights or {}:
            table.setdefault(pair, {})
        for (surface, segment), evidence in sorted(table.items()):
            prior_weights = (weights or {}).get((surface, segment), {})
            sources = sorted(set(evidence) | set(prior_weights))
            belief = posterior(sources, prior_weights, evidence, self.config)
            low, high = belief.interval()
            means = belief.mean()
            total = sum(e.impressions for e in evidence.values())
            for s, source in enumerate(sources):
                arm = evidence.get(source, ArmStats())
                out.append(
                    ArmSummary(
                        surface=surface,
                        segment=segment,
                        source=source,
                        mean=float(means[s]),
                        low=float(low[s]),
                        high=float(high[s]),
                        impressions=arm.impressions,
                        rewards=float(getattr(arm, stat)),
                        traffic_share=arm.impressions / total if total > 0 else 0.0,
                    )
                )
        return out
