"""Reward models for off-policy evaluation (the ``q`` of the direct method and doubly robust) and
for the contextual policy of :mod:`training.ope_policies`.

* :class:`ClickRateModel` — context-free: each (action, position)'s click rate with additive
  smoothing toward its position's click rate,
  ``q[a, k] = (clicks[a, k] + s * rate[k]) / (shows[a, k] + s)``; ``s`` is the smoothing
  strength in pseudo-impressions. With a few dozen clicks in a log, most cells have none, and
  the smoothing keeps their prediction at the position's rate instead of 0.
* :class:`LogisticRewardModel` — contextual: an L2-regularised logistic regression,
  ``logit q[i, a, k] = b0 + b[a] + c[k] + g * affinity[i, a] + u_i' W f_a`` with ``u_i`` the
  round's one-hot user features, ``f_a`` the item's features and ``affinity`` the log's
  user-item affinity; fitted by L-BFGS (scipy) on the summed log-loss plus
  ``l2 / 2 * |params|^2`` (the intercept ``b0`` unpenalised). :func:`choose_l2` picks ``l2``
  from a grid by the log-loss on the last part of the training log (by time).

:func:`cross_fit` gives every round a prediction from a model fitted on the other folds
(contiguous blocks of time), so a DR estimate on the whole log never uses a model fitted on
the round it corrects.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any

import numpy as np
import numpy.typing as npt
from pydantic import Field
from scipy import optimize, special

from feature_store.config import StrictConfig
from feature_store.open_bandit import BanditLog

__all__ = [
    "ClickRateConfig",
    "ClickRateModel",
    "LogisticConfig",
    "LogisticRewardModel",
    "choose_l2",
    "cross_fit",
]

FloatArray = npt.NDArray[np.float64]


class ClickRateConfig(StrictConfig):
    smoothing: float = Field(default=100.0, ge=0.0)


class ClickRateModel:
    """Per (action, position) click rate, smoothed toward the position's click rate."""

    def __init__(self, config: ClickRateConfig | None = None) -> None:
        self.config = config or ClickRateConfig()
        self.rates: FloatArray | None = None

    def fit(self, log: BanditLog) -> ClickRateModel:
        cells = log.actions * log.n_positions + log.positions
        size = log.n_actions * log.n_positions
        shape = (log.n_actions, log.n_positions)
        shows = np.bincount(cells, minlength=size).reshape(shape).astype(np.float64)
        clicks = np.bincount(cells, weights=log.rewards, minlength=size).reshape(shape)
        position_shows = shows.sum(axis=0)
        position_rate = np.divide(
            clicks.sum(axis=0),
            position_shows,
            out=np.full(log.n_positions, log.rewards.mean()),
            where=position_shows > 0,
        )
        s = self.config.smoothing
        denominator = shows + s
        self.rates = np.divide(
            clicks + s * position_rate[None, :],
            denominator,
            out=np.broadcast_to(position_rate, shape).copy(),
            where=denominator > 0,
        )
        return self

    def predict(self, contexts: FloatArray) -> FloatArray:
        if self.rates is None:
            raise RuntimeError("ClickRateModel.predict before fit")
        n = np.asarray(contexts).shape[0]
        return np.broadcast_to(self.rates, (n, *self.rates.shape))


class LogisticConfig(StrictConfig):
    l2: float = Field(default=1.0, gt=0.0)
    max_iter: int = Field(default=500, ge=1)


class LogisticRewardModel:
    """L2-regularised logistic click model over item, position, affinity and user × item
    features (see the module docstring)."""

    def __init__(self, config: LogisticConfig | None = None) -> None:
        self.config = config or LogisticConfig()
        self.params: FloatArray | None = None
        self._shape: tuple[int, int, int, int] = (0, 0, 0, 0)  # actions, positions, users, items
        self._items: FloatArray | None = None

    def _split(self, theta: FloatArray) -> tuple[float, FloatArray, FloatArray, float, FloatArray]:
        n_actions, n_positions, n_user, n_item = self._shape
        b0 = float(theta[0])
        b = theta[1 : 1 + n_actions]
        c = theta[1 + n_actions : 1 + n_actions + n_positions]
        g = float(theta[1 + n_actions + n_positions])
        w = theta[2 + n_actions + n_positions :].reshape(n_user, n_item)
        return b0, b, c, g, w

    def fit(self, log: BanditLog) -> LogisticRewardModel:
        n_user = log.contexts.shape[1] - log.n_actions
        items = log.item_features
        self._items = items
        self._shape = (log.n_actions, log.n_positions, n_user, items.shape[1])
        users = np.ascontiguousarray(log.contexts[:, :n_user])
        rounds = np.arange(len(log))
        affinity = log.affinity[rounds, log.actions]
        shown = items[log.actions]
        rewards = log.rewards
        l2 = self.config.l2

        def loss(theta: FloatArray) -> tuple[float, FloatArray]:
            b0, b, c, g, w = self._split(theta)
            z = b0 + b[log.actions] + c[log.positions] + g * affinity
            z = z + ((users @ w) * shown).sum(axis=1)
            nll = float(np.sum(np.logaddexp(0.0, z) - rewards * z))
            err = special.expit(z) - rewards
            grad = np.concatenate(
                [
                    [err.sum()],
                    np.bincount(log.actions, weights=err, minlength=log.n_actions),
                    np.bincount(log.positions, weights=err, minlength=log.n_positions),
                    [float(err @ affinity)],
                    ((users * err[:, None]).T @ shown).reshape(-1),
                ]
            )
            penalised = theta.copy()
            penalised[0] = 0.0
            return nll + 0.5 * l2 * float(penalised @ penalised), grad + l2 * penalised

        size = 2 + log.n_actions + log.n_positions + n_user * items.shape[1]
        start = np.zeros(size)
        mean = float(np.clip(rewards.mean(), 1e-6, 1 - 1e-6))
        start[0] = float(special.logit(mean))
        result = optimize.minimize(
            loss,
            start,
            jac=True,
            method="L-BFGS-B",
            options={"maxiter": self.config.max_iter},
        )
        self.params = np.asarray(result.x, dtype=np.float64)
        return self

    def logits(self, contexts: FloatArray) -> FloatArray:
        """``(n_rounds, n_actions, n_positions)`` logits of the click probability."""
        if self.params is None or self._items is None:
            raise RuntimeError("LogisticRewardModel.predict before fit")
        n_actions, _, n_user, _ = self._shape
        b0, b, c, g, w = self._split(self.params)
        contexts = np.asarray(contexts, dtype=np.float64)
        users, affinity = contexts[:, :n_user], contexts[:, n_user : n_user + n_actions]
        per_action = b0 + b[None, :] + g * affinity + users @ w @ self._items.T
        return np.asarray(per_action[:, :, None] + c[None, None, :], dtype=np.float64)

    def predict(self, contexts: FloatArray) -> FloatArray:
        return np.asarray(special.expit(self.logits(contexts)), dtype=np.float64)


def choose_l2(log: BanditLog, grid: tuple[float, ...], share: float = 0.75) -> float:
    """The ``l2`` of ``grid`` whose :class:`LogisticRewardModel`, fitted on the first ``share`` of
    ``log`` by time, has the smallest log-loss on the rest (the smallest ``l2`` on a tie)."""
    if not grid:
        raise ValueError("choose_l2 needs at least one l2 value")
    fit_part, check = log.split(share)
    rounds = np.arange(len(check))
    losses = []
    for l2 in grid:
        model = LogisticRewardModel(LogisticConfig(l2=l2)).fit(fit_part)
        z = model.logits(check.contexts)[rounds, check.actions, check.positions]
        losses.append(float(np.mean(np.logaddexp(0.0, z) - check.rewards * z)))
    best = min(range(len(grid)), key=lambda i: (losses[i], grid[i]))
    return float(grid[best])


def cross_fit(make_model: Callable[[], Any], log: BanditLog, n_folds: int = 2) -> FloatArray:
    """``(n_rounds, n_actions, n_positions)`` predictions for every round of ``log``, each from
    a model (``make_model()``, with ``fit(log)`` and ``predict(contexts)``) fitted on the other
    ``n_folds - 1`` contiguous blocks of rounds."""
    if not 2 <= n_folds <= len(log):
        raise ValueError(f"n_folds must be in 2..{len(log)}, got {n_folds}")
    bounds = np.linspace(0, len(log), n_folds + 1).round().astype(int)
    out = np.empty((len(log), log.n_actions, log.n_positions), dtype=np.float64)
    for start, stop in itertools.pairwise(bounds):
        held_out = np.zeros(len(log), dtype=bool)
        held_out[start:stop] = True
        model = make_model().fit(log.rows(~held_out))
        out[start:stop] = model.predict(log.contexts[start:stop])
    return out
