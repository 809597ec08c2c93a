"""Policies to evaluate off-policy, each a :class:`training.ope.Policy`
(``action_distribution(contexts) -> (n_rounds, n_actions, n_positions)``).

* :class:`UniformPolicy` — every action equally likely at every position (the ``random`` logger
  of the Open Bandit Dataset: a uniformly random slate has marginal ``1 / n_actions`` per slot).
* :class:`ContextFreePolicy` — one distribution for every round; :func:`beta_top_k_distribution`
  builds it for a Thompson-sampling policy that draws one Beta sample per action and shows the
  ``n_positions`` largest in order, estimated from ``n_draws`` seeded simulated impressions.
  :func:`bts_policy` is the Open Bandit Dataset's logged Bernoulli-TS policy from its prior
  (``prior_bts.yaml``); :func:`fit_thompson` is Lookbook's own, a Beta posterior per item from a
  log's clicks (pooled over positions) under a weak prior centred on the log's click rate.
* :class:`EpsilonGreedyPolicy` — contextual: ranks the actions by a reward model's predicted
  click rate for the round and shows the best ``n_positions`` in order with probability
  ``1 - epsilon``, a uniformly random slate otherwise; its distribution is exact,
  ``pi[i, a, k] = epsilon / n_actions + (1 - epsilon) * [a is round i's k-th best]``.

A serving bandit (Thompson sampling over sources) is evaluated the same way once it offers
``action_distribution``.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from pydantic import Field

from feature_store.config import StrictConfig
from feature_store.open_bandit import BanditLog, BetaPrior
from training.ope_reward import LogisticRewardModel

__all__ = [
    "ContextFreePolicy",
    "EpsilonGreedyConfig",
    "EpsilonGreedyPolicy",
    "ThompsonConfig",
    "UniformPolicy",
    "beta_top_k_distribution",
    "bts_policy",
    "fit_thompson",
]

FloatArray = npt.NDArray[np.float64]
_BATCH = 10_000


class UniformPolicy:
    """Every action equally likely at every position."""

    def __init__(self, n_actions: int, n_positions: int) -> None:
        self.n_actions = n_actions
        self.n_positions = n_positions

    def action_distribution(self, contexts: FloatArray) -> FloatArray:
        n = np.asarray(contexts).shape[0]
        return np.full((n, self.n_actions, self.n_positions), 1.0 / self.n_actions)


class ContextFreePolicy:
    """The same ``(n_actions, n_positions)`` distribution in every round."""

    def __init__(self, distribution: FloatArray) -> None:
        self.distribution = np.asarray(distribution, dtype=np.float64)

    def action_distribution(self, contexts: FloatArray) -> FloatArray:
        n = np.asarray(contexts).shape[0]
        return np.broadcast_to(self.distribution, (n, *self.distribution.shape))


def beta_top_k_distribution(
    alpha: FloatArray, beta: FloatArray, n_positions: int, n_draws: int, seed: int
) -> FloatArray:
    """``(n_actions, n_positions)``: the share of ``n_draws`` simulated impressions (one Beta
    sample per action, the ``n_positions`` largest shown in order) that show action ``a`` at
    position ``k``. Seeded: the same arguments give the same array."""
    alpha = np.asarray(alpha, dtype=np.float64)
    beta = np.asarray(beta, dtype=np.float64)
    n_actions = alpha.shape[0]
    if beta.shape != alpha.shape or not 1 <= n_positions <= n_actions:
        raise ValueError("alpha and beta need one value per action, n_positions <= n_actions")
    if n_draws < 1:
        raise ValueError(f"n_draws must be >= 1, got {n_draws}")
    rng = np.random.default_rng(seed)
    counts = np.zeros(n_actions * n_positions, dtype=np.int64)
    slots = np.arange(n_positions)
    for start in range(0, n_draws, _BATCH):
        size = min(_BATCH, n_draws - start)
        samples = rng.beta(alpha, beta, size=(size, n_actions))
        top = np.argpartition(-samples, n_positions - 1, axis=1)[:, :n_positions]
        order = np.argsort(-np.take_along_axis(samples, top, axis=1), axis=1, kind="stable")
        shown = np.take_along_axis(top, order, axis=1)
        counts += np.bincount(
            (shown * n_positions + slots[None, :]).reshape(-1),
            minlength=n_actions * n_positions,
        )
    return counts.reshape(n_actions, n_positions) / n_draws


def bts_policy(prior: BetaPrior, n_positions: int, n_draws: int, seed: int) -> ContextFreePolicy:
    """The Open Bandit Dataset's logged Bernoulli-TS policy: Beta(alpha, beta) per item from its
    prior, top ``n_positions`` draws shown; the distribution from ``n_draws`` simulations."""
    return ContextFreePolicy(
        beta_top_k_distribution(prior.alpha, prior.beta, n_positions, n_draws, seed)
    )


class ThompsonConfig(StrictConfig):
    """Lookbook's context-free Thompson sampling: Beta(s * rate + clicks, s * (1 - rate) +
    shows - clicks) per item, ``rate`` the training log's click rate, ``s`` the prior's
    strength in pseudo-impressions."""

    prior_strength: float = Field(default=10.0, gt=0.0)
    n_draws: int = Field(default=100_000, ge=1)
    seed: int = 0


def fit_thompson(log: BanditLog, config: ThompsonConfig | None = None) -> ContextFreePolicy:
    """Context-free Beta-Bernoulli Thompson sampling over the items of ``log``, its posterior
    from the log's clicks per item (positions pooled)."""
    cfg = config or ThompsonConfig()
    shows = np.bincount(log.actions, minlength=log.n_actions).astype(np.float64)
    clicks = np.bincount(log.actions, weights=log.rewards, minlength=log.n_actions).astype(
        np.float64
    )
    rate = float(np.clip(log.rewards.mean(), 1e-6, 1 - 1e-6))
    alpha = cfg.prior_strength * rate + clicks
    beta = cfg.prior_strength * (1.0 - rate) + shows - clicks
    return ContextFreePolicy(
        beta_top_k_distribution(alpha, beta, log.n_positions, cfg.n_draws, cfg.seed)
    )


class EpsilonGreedyConfig(StrictConfig):
    epsilon: float = Field(default=0.1, ge=0.0, le=1.0)


class EpsilonGreedyPolicy:
    """The reward model's best actions for the round in order, a uniform slate with
    probability ``epsilon`` (exact distribution; see the module docstring)."""

    def __init__(
        self,
        model: LogisticRewardModel,
        n_actions: int,
        n_positions: int,
        config: EpsilonGreedyConfig | None = None,
    ) -> None:
        self.model = model
        self.n_actions = n_actions
        self.n_positions = n_positions
        self.config = config or EpsilonGreedyConfig()

    def action_distribution(self, contexts: FloatArray) -> FloatArray:
        scores = self.model.logits(contexts).mean(axis=2)  # (n, n_actions)
        n = scores.shape[0]
        # best first, ties broken by the lower action id
        ranked = np.lexsort((np.broadcast_to(np.arange(self.n_actions), scores.shape), -scores))
        best = ranked[:, : self.n_positions]
        eps = self.config.epsilon
        dist = np.full((n, self.n_actions, self.n_positions), eps / self.n_actions)
        rounds = np.arange(n)[:, None]
        dist[rounds, best, np.arange(self.n_positions)[None, :]] += 1.0 - eps
        return dist
