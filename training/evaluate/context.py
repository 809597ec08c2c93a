"""What one holdout may see: :func:`fold_context` builds it, :class:`FoldAudit` proves it.

For a holdout with training end ``T``, every model that learns across customers is fitted on the
events dated strictly before ``T``; each customer is represented by their *own* events before
their cutoff (which may lie after ``T``, as events arriving after training do in the service),
and popularity is counted as of each cutoff day. Nothing dated on or after a customer's cutoff,
of theirs or of anyone, reaches what is used for them; :meth:`FoldAudit.check` raises when it
would.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from models.base import IntArray, TrainingData
from models.popularity import PopularityRecommender
from training.blend import Holdout
from training.evaluate.config import EvalConfig
from training.evaluate.prepared import Prepared, subset

__all__ = ["FoldAudit", "FoldContext", "fold_context"]


@dataclass
class FoldAudit:
    """What one holdout's models and features saw (checked to be before every cutoff)."""

    fold: int
    kind: str  # "test" or "validation"
    train_end: int
    max_train_timestamp: int | None
    min_cutoff: int | None
    max_cutoff: int | None
    max_history_timestamp_minus_cutoff: int | None  # < 0 when no history reaches a cutoff
    max_popularity_timestamp_minus_cutoff: int | None
    customers: int
    train_events: int

    def check(self) -> None:
        """Raise ``RuntimeError`` if anything dated on/after a cutoff was used."""
        trained, first = self.max_train_timestamp, self.min_cutoff
        if trained is not None and first is not None and not trained < self.train_end <= first:
            raise RuntimeError(f"look-ahead: training events reach a cutoff: {self}")
        for gap in (
            self.max_history_timestamp_minus_cutoff,
            self.max_popularity_timestamp_minus_cutoff,
        ):
            if gap is not None and gap >= 0:
                raise RuntimeError(f"look-ahead: history or popularity reach a cutoff: {self}")


@dataclass
class FoldContext:
    """A holdout with what its sources may read: training events, histories, popularity."""

    prepared: Prepared
    holdout: Holdout
    config: EvalConfig
    histories: list[IntArray]  # event indices per holdout customer, before their cutoff
    train: TrainingData
    popularity: dict[int, IntArray]  # cutoff -> top ``depth`` items as of that day
    audit: FoldAudit
    timings: dict[str, float]
    cache: dict[str, Any] = field(default_factory=dict)


def _popularity_asof(
    prepared: Prepared, cutoffs: npt.NDArray[np.int64], config: EvalConfig
) -> tuple[dict[int, IntArray], int | None]:
    """Top ``depth`` popular items as of each distinct cutoff (events strictly before it)."""
    data = prepared.data
    out: dict[int, IntArray] = {}
    worst: int | None = None
    for cutoff in np.unique(cutoffs):
        mask = data.timestamps < cutoff
        snapshot = subset(data, mask, int(cutoff))
        model = PopularityRecommender(half_life_days=config.popularity_half_life_days)
        model.fit(snapshot)
        ranking = model.ranking()
        ranking = ranking[model.scores[ranking] > 0][: config.depth]
        out[int(cutoff)] = ranking
        if mask.any():
            gap = int(data.timestamps[mask].max()) - int(cutoff)
            worst = gap if worst is None else max(worst, gap)
    return out, worst


def fold_context(
    prepared: Prepared, holdout: Holdout, config: EvalConfig, fold: int, kind: str
) -> FoldContext:
    """The context of ``holdout`` (fold ``fold``, ``kind`` "test" or "validation"), audited."""
    data = prepared.data
    mask = data.timestamps < holdout.train_end
    train = subset(data, mask, holdout.train_end)
    histories = [
        prepared.history(int(u), int(c))
        for u, c in zip(holdout.users, holdout.cutoffs, strict=True)
    ]
    gaps = [
        int(data.timestamps[h].max()) - int(c)
        for h, c in zip(histories, holdout.cutoffs, strict=True)
        if len(h)
    ]
    popularity, pop_gap = _popularity_asof(prepared, holdout.cutoffs, config)
    audit = FoldAudit(
        fold=fold,
        kind=kind,
        train_end=holdout.train_end,
        max_train_timestamp=int(train.timestamps.max()) if len(train.timestamps) else None,
        min_cutoff=int(holdout.cutoffs.min()) if len(holdout) else None,
        max_cutoff=int(holdout.cutoffs.max()) if len(holdout) else None,
        max_history_timestamp_minus_cutoff=max(gaps) if gaps else None,
        max_popularity_timestamp_minus_cutoff=pop_gap,
        customers=len(holdout),
        train_events=int(mask.sum()),
    )
    audit.check()
    return FoldContext(prepared, holdout, config, histories, train, popularity, audit, {})
