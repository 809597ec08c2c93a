"""What a run measured: :class:`EvaluationResult` (per-customer predictions, metrics with CIs,
ratios, blend weights, leak audits) and its terminal table and JSON summary."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from models.base import IntArray
from models.bundle import BlendWeights
from training.evaluate.config import EvalConfig
from training.evaluate.context import FoldAudit

__all__ = ["EvaluationResult", "MethodResult"]


@dataclass
class MethodResult:
    """One method's per-customer AP, recall and NDCG, coverage, and (mean, low, high) CIs."""

    name: str
    ap: npt.NDArray[np.float64]  # per evaluated customer
    recall: npt.NDArray[np.float64]
    ndcg: npt.NDArray[np.float64]
    coverage: float
    metrics: dict[str, tuple[float, float, float]]  # metric -> (mean, low, high)


@dataclass
class EvaluationResult:
    """Everything one run measured; ``predictions[method]`` is ``(n_customers, k)`` aligned with
    ``users`` (customer indices) and ``cutoffs``."""

    dataset: str
    protocol: str
    config: EvalConfig
    users: IntArray
    cutoffs: npt.NDArray[np.int64]
    truths: list[IntArray]
    warm: npt.NDArray[np.bool_]  # customer had history before their cutoff
    fold_of: IntArray
    predictions: dict[str, IntArray]
    methods: dict[str, MethodResult]
    ratios: dict[str, tuple[float, float, float]]
    blend_weights: list[BlendWeights]
    audits: list[FoldAudit]
    skipped: dict[str, str]
    timings: dict[str, float]
    n_items: int
    #: the learned ranker's feature importances (share of total gain, mean over folds)
    ranker_importances: dict[str, float] = field(default_factory=dict)

    def table(self) -> str:
        """A fixed-width table of the metrics with their 95% CIs."""
        k = self.config.k
        head = f"{'method':<12}{'MAP@' + str(k):>26}{'Recall@' + str(k):>26}{'NDCG@' + str(k):>26}{'coverage':>10}{'MAP warm':>10}"
        lines = [
            f"{self.dataset} ({self.protocol}, {len(self.users)} customers)",
            head,
            "-" * len(head),
        ]
        for name, m in self.methods.items():
            cells = "".join(
                f"{m.metrics[key][0]:>10.4f} [{m.metrics[key][1]:.4f},{m.metrics[key][2]:.4f}]"
                for key in ("map", "recall", "ndcg")
            )
            warm = float(m.ap[self.warm].mean()) if self.warm.any() else float("nan")
            lines.append(f"{name:<12}{cells}{m.coverage:>10.4f}{warm:>10.4f}")
        for label, (mean, low, high) in self.ratios.items():
            lines.append(f"ratio {label}: {mean:.3f} [{low:.3f}, {high:.3f}]")
        if self.ranker_importances:
            top = sorted(self.ranker_importances.items(), key=lambda kv: -kv[1])[:8]
            lines.append(
                "ranker importances (gain share): " + ", ".join(f"{n} {v:.3f}" for n, v in top)
            )
        for name, reason in self.skipped.items():
            lines.append(f"skipped {name}: {reason}")
        return "\n".join(lines)

    def summary(self) -> dict[str, Any]:
        return {
            "dataset": self.dataset,
            "protocol": self.protocol,
            "customers": len(self.users),
            "warm_customers": int(self.warm.sum()),
            "k": self.config.k,
            "folds": int(self.fold_of.max()) + 1 if len(self.fold_of) else 0,
            "methods": {
                name: {
                    **{key: list(v) for key, v in m.metrics.items()},
                    "coverage": m.coverage,
                    "map_warm": float(m.ap[self.warm].mean()) if self.warm.any() else None,
                }
                for name, m in self.methods.items()
            },
            "ratios": {key: list(v) for key, v in self.ratios.items()},
            "blend_weights": [w.to_dict() for w in self.blend_weights],
            "ranker_importances": self.ranker_importances,
            "audits": [a.__dict__ for a in self.audits],
            "skipped": self.skipped,
            "timings_seconds": {k: round(v, 2) for k, v in self.timings.items()},
        }
