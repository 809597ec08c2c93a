"""Off-policy evaluation: what click rate would another policy have had on a logged policy's
impressions? The standard estimators, each with a bootstrap interval over rounds.

An evaluation policy is given by its action distribution ``pi[i, a, k]``, the probability it
shows action ``a`` at position ``k`` in round ``i`` (shape ``(n_rounds, n_actions,
n_positions)``; anything with ``action_distribution(contexts)`` is a :class:`Policy`). Round
``i`` of the log showed action ``a_i`` at position ``k_i`` with the logger's probability
``p_i`` and got reward ``r_i``; ``w_i = pi[i, a_i, k_i] / p_i`` is its importance weight and
``q[i, a, k]`` a reward model's prediction (:mod:`training.ope_reward`). The value estimated is
the expected reward per impression at the logged positions:

* **IPW** (inverse propensity weighting): ``mean_i(w_i r_i)`` — unbiased when ``p`` is right;
* **SNIPW** (self-normalised IPW): ``sum_i(w_i r_i) / sum_i(w_i)`` — a ratio, slightly biased,
  lower variance; it equals the on-policy mean when ``pi`` is proportional to the logger;
* **DM** (direct method): ``mean_i(sum_a pi[i, a, k_i] q[i, a, k_i])`` — only as good as ``q``;
* **DR** (doubly robust): DM plus the IPW correction of its error,
  ``mean_i(sum_a pi[i, a, k_i] q[i, a, k_i] + w_i (r_i - q[i, a_i, k_i]))`` — unbiased when
  either ``p`` or ``q`` is right.

Intervals come from the one bootstrap (:func:`training.metrics.bootstrap_interval`): rounds are
resampled with replacement and the policy's distribution held fixed (it was learned elsewhere).
For DM and DR the reward model is either held fixed (predictions ``q``) or refitted on every
resample (``fit_q``); only the second counts the model's own uncertainty — with a context-free
model held fixed, the DM interval would shrink to almost a point.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

import numpy as np
import numpy.typing as npt
from pydantic import Field

from feature_store.config import StrictConfig
from feature_store.open_bandit import BanditLog
from training.metrics import bootstrap_interval, bootstrap_ratio_ci

__all__ = [
    "Estimator",
    "EstimatorConfig",
    "OffPolicyEstimate",
    "Policy",
    "RewardFit",
    "RewardModel",
    "check_action_distribution",
    "effective_sample_size",
    "estimate",
    "estimate_all",
    "importance_weights",
    "on_policy_value",
]

FloatArray = npt.NDArray[np.float64]
RewardFit = Callable[[BanditLog], FloatArray]  # fits a reward model on a log, predicts its rounds


class Estimator(StrEnum):
    IPW = "IPW"
    SNIPW = "SNIPW"
    DM = "DM"
    DR = "DR"


class Policy(Protocol):
    """Anything that says how likely it is to show each action at each position."""

    def action_distribution(self, contexts: FloatArray) -> FloatArray:
        """``(n_rounds, n_actions, n_positions)`` for ``contexts`` (one row per round); each
        position's probabilities over actions sum to 1."""
        ...


class RewardModel(Protocol):
    """A click model: the expected reward of every action at every position of every round."""

    def predict(self, contexts: FloatArray) -> FloatArray:
        """``(n_rounds, n_actions, n_positions)`` expected rewards for ``contexts``."""
        ...


class EstimatorConfig(StrictConfig):
    """The bootstrap behind every interval."""

    n_resamples: int = Field(default=1000, ge=1)
    confidence: float = Field(default=0.95, gt=0.0, lt=1.0)
    seed: int = 0


@dataclass(frozen=True)
class OffPolicyEstimate:
    """An estimate of a policy's value and its bootstrap interval over ``n_rounds`` rounds."""

    estimator: str
    value: float
    low: float
    high: float
    n_rounds: int

    def cell(self, digits: int = 4) -> str:
        """``value [low, high]`` for a table."""
        return f"{self.value:.{digits}f} [{self.low:.{digits}f}, {self.high:.{digits}f}]"


def check_action_distribution(log: BanditLog, pi: FloatArray) -> FloatArray:
    """``pi`` as float64, after checking its shape against ``log`` and that every position's
    probabilities are in [0, 1] and sum to 1."""
    array = np.asarray(pi, dtype=np.float64)
    expected = (len(log), log.n_actions, log.n_positions)
    if array.shape != expected:
        raise ValueError(f"action distribution has shape {array.shape}, expected {expected}")
    if (array < 0).any() or (array > 1 + 1e-9).any():
        raise ValueError("action probabilities must be in [0, 1]")
    if not np.allclose(array.sum(axis=1), 1.0, atol=1e-6):
        raise ValueError("each position's action probabilities must sum to 1")
    return array


def importance_weights(log: BanditLog, pi: FloatArray) -> FloatArray:
    """``w_i = pi[i, a_i, k_i] / p_i`` for every round of ``log``."""
    rounds = np.arange(len(log))
    return pi[rounds, log.actions, log.positions] / log.pscore


def effective_sample_size(log: BanditLog, pi: FloatArray) -> float:
    """Kish's effective sample size of the importance weights, ``sum(w)^2 / sum(w^2)``: about how
    many of the log's rounds an importance-weighted estimate of ``pi`` really rests on (all of
    them when ``pi`` is the logger, few when ``pi`` concentrates where the logger rarely went)."""
    weights = importance_weights(log, check_action_distribution(log, pi))
    total = float(weights.sum())
    squares = float(weights @ weights)
    return total * total / squares if squares > 0 else 0.0


def _per_round_terms(
    kind: Estimator, log: BanditLog, pi_k: FloatArray, weights: FloatArray, q: FloatArray | None
) -> FloatArray:
    """The per-round terms whose mean is the IPW, DM or DR estimate; ``pi_k`` is the policy's
    distribution over actions at each round's logged position, ``(n_rounds, n_actions)``."""
    if kind is Estimator.IPW:
        return np.asarray(weights * log.rewards, dtype=np.float64)
    rewards = _check_rewards(log, q, kind)
    rounds = np.arange(len(log))
    terms = (pi_k * rewards[rounds, :, log.positions]).sum(axis=1)
    if kind is Estimator.DR:
        residual = log.rewards - rewards[rounds, log.actions, log.positions]
        terms = terms + weights * residual
    return np.asarray(terms, dtype=np.float64)


def _check_rewards(log: BanditLog, q: FloatArray | None, estimator: Estimator) -> FloatArray:
    if q is None:
        raise ValueError(f"{estimator} needs a reward model's predictions")
    array = np.asarray(q, dtype=np.float64)
    expected = (len(log), log.n_actions, log.n_positions)
    if array.shape != expected:
        raise ValueError(f"reward predictions have shape {array.shape}, expected {expected}")
    return array


def estimate(
    estimator: Estimator | str,
    log: BanditLog,
    pi: FloatArray,
    q: FloatArray | None = None,
    config: EstimatorConfig | None = None,
    *,
    fit_q: RewardFit | None = None,
) -> OffPolicyEstimate:
    """One estimator's value of the policy ``pi`` on ``log`` with its bootstrap interval.

    DM and DR need the reward model's ``(n_rounds, n_actions, n_positions)`` predictions: either
    ``q``, held fixed while the bootstrap resamples rounds, or ``fit_q(log)``, a function that
    fits the model on a log and predicts its rounds (e.g. by :func:`training.ope_reward.cross_fit`)
    — then every resample refits it, so the interval includes the model's own uncertainty.
    """
    kind = Estimator(estimator)
    cfg = config or EstimatorConfig()
    if q is not None and fit_q is not None:
        raise ValueError("give the reward predictions q or a way to fit them, not both")
    dist = check_action_distribution(log, pi)
    rounds = np.arange(len(log))
    weights = dist[rounds, log.actions, log.positions] / log.pscore
    if kind is Estimator.SNIPW:
        if weights.sum() <= 0:
            raise ValueError("SNIPW is undefined: the policy never shows a logged action")
        value, low, high = bootstrap_ratio_ci(
            weights * log.rewards,
            weights,
            n_boot=cfg.n_resamples,
            alpha=1.0 - cfg.confidence,
            seed=cfg.seed,
        )
        return OffPolicyEstimate(kind.value, value, low, high, len(log))
    pi_k = dist[rounds, :, log.positions]
    if fit_q is None or kind is Estimator.IPW:
        terms = _per_round_terms(kind, log, pi_k, weights, q)
        low, high = bootstrap_interval(
            np.mean,
            terms,
            n_resamples=cfg.n_resamples,
            confidence=cfg.confidence,
            seed=cfg.seed,
        )
        return OffPolicyEstimate(kind.value, float(terms.mean()), low, high, len(log))

    def refitted(index: npt.NDArray[np.int64]) -> float:
        index = np.sort(index)  # keeps the rounds in time order for the model's folds
        part = log.rows(index)
        return float(_per_round_terms(kind, part, pi_k[index], weights[index], fit_q(part)).mean())

    value = float(_per_round_terms(kind, log, pi_k, weights, fit_q(log)).mean())
    low, high = bootstrap_interval(
        refitted,
        rounds,
        n_resamples=cfg.n_resamples,
        confidence=cfg.confidence,
        seed=cfg.seed,
        vectorized=False,
    )
    return OffPolicyEstimate(kind.value, value, low, high, len(log))


def estimate_all(
    log: BanditLog,
    pi: FloatArray,
    q: FloatArray | None = None,
    config: EstimatorConfig | None = None,
    *,
    fit_q: RewardFit | None = None,
) -> dict[Estimator, OffPolicyEstimate]:
    """IPW, SNIPW and, when ``q`` or ``fit_q`` is given, DM and DR of ``pi`` on ``log``."""
    kinds = [Estimator.IPW, Estimator.SNIPW]
    if q is not None or fit_q is not None:
        kinds += [Estimator.DM, Estimator.DR]
    return {kind: estimate(kind, log, pi, q, config, fit_q=fit_q) for kind in kinds}


def on_policy_value(log: BanditLog, config: EstimatorConfig | None = None) -> OffPolicyEstimate:
    """The logging policy's own value: the log's mean reward, with its bootstrap interval."""
    cfg = config or EstimatorConfig()
    rewards = log.rewards.astype(np.float64)
    low, high = bootstrap_interval(
        np.mean, rewards, n_resamples=cfg.n_resamples, confidence=cfg.confidence, seed=cfg.seed
    )
    return OffPolicyEstimate("on-policy", float(rewards.mean()), low, high, len(log))
