"""The bandit as the service's reranking stage: which source fills each slot of a feed.

:class:`BanditStage` wraps one :class:`models.bandit.Bandit` (its config from the settings, its
state in-process or in Redis, :mod:`feature_store.bandit_state`) for the parts of the service:

* :meth:`rerank` — the personalized feed's :class:`~app.pipeline.Pipeline` calls it instead of the
  fixed fusion when the bandit is on for the request (:meth:`active`: ``Context.bandit_enabled``
  when an experiment variant set it, else ``BanditConfig.enabled``). Arms are (strategy surface,
  segment, source); the prior is the strategy's resolved weights; the exploration is
  ``Context.exploration`` when set, else the surface's configured level. The posterior of each
  (surface, segment, sources, weights) is cached for :data:`POSTERIOR_SECONDS` (a Redis read costs
  about 160 µs; one request per second and pair pays it), and the Prometheus gauge
  ``lookbook_bandit_weight`` is set whenever a posterior is computed.
* :meth:`extra_sources` — with ``new_items_share`` > 0, a feed it ranks also gets the new-arrivals
  list (:class:`~app.strategy_sources.NewArrivalsSource` under the name ``new_items_source``)
  unless its strategy names that source; the reranker reserves that share of every slot for it.
* Random numbers: with a ``seed`` (``LOOKBOOK_BANDIT_SEED``, for tests and simulations) each
  request's generator is seeded from the seed and the request's recommendation context (customer,
  surface, segment, k, category, price range, exploration), so the same request ranks the same
  way; without one (production) from fresh OS entropy per request.
* :meth:`shown` — every showing of a list the bandit ranked (record ``policy: "bandit"``), a
  cached one shown again too, counts its positions as impressions of their sources
  (:mod:`app.served_lists`).
* :meth:`reward` — an attributed click, add-to-cart or purchase echoing a position of such a list
  credits that position's source (:mod:`app.attribution`).
* :meth:`report` — ``GET /v1/admin/bandit``: every arm's posterior and share of recent traffic.

A failing state (Redis down) never fails a request: a read falls back to the prior, a write is
dropped; both are logged and counted (``lookbook_bandit_errors_total``).
"""

from __future__ import annotations

import logging
import threading
import time
import zlib
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final

import numpy as np
import orjson

from app.metrics import Metrics
from app.outage_log import OutageWarning
from app.pipeline import CandidateSource, Context
from app.strategy_sources import NewArrivalsSource
from feature_store.errors import StoreUnavailable
from feature_store.redis_batch import Pending, RedisBatch
from feature_store.schema import InteractionType
from feature_store.served_lists import ServedList
from models.bandit import Bandit, BanditConfig, Posterior, Reranked, posterior

logger = logging.getLogger("lookbook.app")
_store_down = OutageWarning(logger)

#: How long a computed posterior is reused (seconds).
POSTERIOR_SECONDS: Final = 1.0
#: The ``policy`` a served-list record of a bandit-ranked list carries.
POLICY: Final = "bandit"
_MEMO: Final = 4096  # templates (and posteriors) remembered; cleared when full

PosteriorKey = tuple[str, str, tuple[str, ...], tuple[float, ...]]


class BanditStage:
    """The service's bandit: reranking, learning from showings and events, reporting."""

    def __init__(
        self,
        bandit: Bandit,
        metrics: Metrics,
        *,
        seed: int | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.bandit = bandit
        self.metrics = metrics
        self.seed = seed
        self._clock = clock
        self._lock = threading.Lock()
        self._posteriors: dict[PosteriorKey, tuple[float, Posterior]] = {}
        # per record template: (surface, segment, positions per source), None when not learned from
        self._templates: dict[bytes, tuple[str, str, dict[str, float]] | None] = {}
        config = bandit.config
        # the new-items source, offered with its reserved share when the strategy has none
        self.new_arrivals: CandidateSource | None = (
            NewArrivalsSource(config.new_item_days, config.new_items_source)
            if config.new_items_share > 0
            else None
        )

    @property
    def config(self) -> BanditConfig:
        return self.bandit.config

    def active(self, ctx: Context) -> bool:
        """The bandit ranks this request: the variant's setting, else the configured default."""
        return ctx.bandit_enabled if ctx.bandit_enabled is not None else self.config.enabled

    # -- reranking -------------------------------------------------------------------------------

    def extra_sources(self, ctx: Context, names: Sequence[str]) -> Sequence[CandidateSource]:
        """The new-arrivals list (:class:`~app.strategy_sources.NewArrivalsSource`, items
        launched within ``new_item_days``, in stock) under the name ``new_items_source``, when
        ``new_items_share`` > 0 and the strategy does not name that source already: the
        reranker reserves that share of every slot for it (:meth:`models.bandit.Bandit.rerank`),
        and its slots are credited like any arm's."""
        source = self.new_arrivals
        if source is None or self.config.new_items_source in names:
            return ()
        return (source,)

    def rerank(
        self,
        ctx: Context,
        sources: Sequence[str],
        lists: Sequence[Sequence[int]],
        weights: Mapping[str, float],
        k: int,
    ) -> Reranked:
        """The top ``k`` of the sources' kept ``lists``, one slot at a time (Thompson sampling),
        for the request's (surface, segment)."""
        surface, segment = ctx.surface or "home", ctx.segment or "default"
        belief = self._posterior(surface, segment, sources, weights)
        exploration = self.config.exploration_for(surface)
        if ctx.exploration is not None:
            exploration = ctx.exploration
        return self.bandit.rerank(
            surface,
            segment,
            sources,
            lists,
            weights,
            k,
            self._rng(ctx, surface, segment),
            self._clock(),
            exploration=exploration,
            belief=belief,
        )

    def _rng(self, ctx: Context, surface: str, segment: str) -> np.random.Generator:
        if self.seed is None:
            return np.random.default_rng()
        where = (
            f"{ctx.customer_id}|{surface}|{segment}|{ctx.k}|{ctx.category}|{ctx.min_price}|"
            f"{ctx.max_price}|{ctx.exploration}|{ctx.variant}"
        )
        return np.random.default_rng([self.seed, zlib.crc32(where.encode())])

    def _posterior(
        self, surface: str, segment: str, sources: Sequence[str], weights: Mapping[str, float]
    ) -> Posterior:
        key = (surface, segment, tuple(sources), tuple(float(weights[s]) for s in sources))
        now = self._clock()
        found = self._posteriors.get(key)
        if found is not None and now - found[0] < POSTERIOR_SECONDS:
            return found[1]
        try:
            evidence = self.bandit.state.read(surface, segment, now)
        except StoreUnavailable as exc:
            self._failed("read", exc)
            evidence = {}
        belief = posterior(sources, weights, evidence, self.config)
        with self._lock:
            if len(self._posteriors) >= _MEMO:
                self._posteriors.clear()
            self._posteriors[key] = (now, belief)
        for source, mean in zip(sources, belief.mean().tolist(), strict=True):
            self.metrics.bandit_weight.labels(surface=surface, segment=segment, source=source).set(
                mean
            )
        return belief

    # -- learning --------------------------------------------------------------------------------

    def shown(self, template: bytes, batch: RedisBatch | None = None) -> None:
        """Count one showing of a recorded list as impressions, if the bandit ranked it (with a
        ``batch``, queued on it when the state shares its client: counted once the caller has
        executed it)."""
        found = self._templates.get(template)
        if found is None and template not in self._templates:
            found = _learned_from(template)
            with self._lock:
                if len(self._templates) >= _MEMO:
                    self._templates.clear()
                self._templates[template] = found
        if found is None:
            return
        surface, segment, counts = found
        try:
            queued = self.bandit.record_impressions(surface, segment, counts, self._clock(), batch)
        except StoreUnavailable as exc:
            self._failed("impressions", exc)
            return
        if queued is not None and batch is not None:
            batch.after(lambda: self._check_counted(queued))

    def _check_counted(self, queued: Pending[None]) -> None:
        try:
            queued.result()
        except StoreUnavailable as exc:
            self._failed("impressions", exc)

    @staticmethod
    def arm_of(record: ServedList) -> tuple[str, str] | None:
        """The (strategy surface, segment) whose bandit ranked ``record``'s list, or None."""
        if record.policy != POLICY or record.strategy_surface is None or record.segment is None:
            return None
        return record.strategy_surface, record.segment

    def reward_arm(
        self,
        arm: tuple[str, str],
        source: str,
        event: InteractionType,
        at: float,
        revenue: float = 0.0,
    ) -> bool:
        """Credit an attributed event to ``source`` of the bandit of ``arm``; True when it was."""
        try:
            return self.bandit.record_event(arm[0], arm[1], source, event, at, revenue=revenue)
        except StoreUnavailable as exc:
            self._failed("event", exc)
            return False

    def _failed(self, where: str, exc: Exception) -> None:
        self.metrics.bandit_errors.labels(where=where).inc()
        _store_down.warn("bandit state %s failed: %s", where, exc)

    # -- reporting -------------------------------------------------------------------------------

    def report(self, weights: Mapping[tuple[str, str], Mapping[str, float]]) -> dict[str, Any]:
        """Every arm (with evidence, or in a strategy: ``weights`` per (surface, segment)): its
        posterior mean, 95 % interval, decayed impressions and rewards, and its share of the
        (surface, segment)'s recent impressions; the gauge is set to each mean."""
        config = self.config
        arms = self.bandit.report(self._clock(), weights)
        for arm in arms:
            self.metrics.bandit_weight.labels(
                surface=arm.surface, segment=arm.segment, source=arm.source
            ).set(arm.mean)
        return {
            "enabled": config.enabled,
            "reward": config.reward,
            "exploration": config.exploration,
            "exploration_by_surface": dict(config.exploration_by_surface),
            "half_life_days": config.half_life_days,
            "prior_strength": config.prior_strength,
            "arms": [
                {
                    "surface": arm.surface,
                    "segment": arm.segment,
                    "source": arm.source,
                    "mean": arm.mean,
                    "low": arm.low,
                    "high": arm.high,
                    "impressions": arm.impressions,
                    "rewards": arm.rewards,
                    "traffic_share": arm.traffic_share,
                }
                for arm in arms
            ],
        }


def _learned_from(template: bytes) -> tuple[str, str, dict[str, float]] | None:
    """(strategy surface, segment, positions per source) of a record template the bandit ranked,
    else None."""
    data = orjson.loads(template)
    surface, segment = data.get("strategy_surface"), data.get("segment")
    if data.get("policy") != POLICY or surface is None or segment is None:
        return None
    counts: dict[str, float] = {}
    for position in data["items"]:
        counts[position["source"]] = counts.get(position["source"], 0.0) + 1.0
    return str(surface), str(segment), counts
