"""Blend weights for a model trained on all the data: :func:`fit_served_blend` runs the harness's
validation fit (:func:`training.evaluate.run_evaluation` per fold) on the data's last days."""

from __future__ import annotations

from feature_store.dataset import Dataset
from feature_store.timeutils import SECONDS_PER_DAY
from models.bundle import BlendWeights
from training.blend import fit_blend_weights
from training.evaluate.config import EvalConfig
from training.evaluate.context import fold_context
from training.evaluate.prepared import Prepared, prepare
from training.evaluate.protocols import validation_holdout
from training.evaluate.sources import BLEND_SOURCES, run_sources

__all__ = ["fit_served_blend"]


def fit_served_blend(
    dataset: Dataset | Prepared,
    config: EvalConfig | None = None,
    *,
    validation_days: int = 28,
) -> BlendWeights:
    """Blend weights for a bundle trained on all of ``dataset``: the validation period is the last
    ``validation_days`` days of the data, held out by the ``last_day`` protocol, with the sources
    fitted on the events before it (what :func:`run_evaluation` does per fold). The result goes in
    the bundle manifest for the service's personalized pipeline (and as the bandit's prior)."""
    config = config or EvalConfig()
    prepared = dataset if isinstance(dataset, Prepared) else prepare(dataset)
    end = (int(prepared.data.timestamps.max()) // SECONDS_PER_DAY + 1) * SECONDS_PER_DAY
    holdout = validation_holdout(prepared, end, validation_days)
    if holdout is None or not len(holdout):
        return BlendWeights()
    ctx = fold_context(prepared, holdout, config, 0, "validation")
    sources = run_sources(ctx, sorted(set(BLEND_SOURCES.values())), {})
    rankings = {b: sources[s] for b, s in BLEND_SOURCES.items() if s in sources}
    return fit_blend_weights(rankings, holdout.truths, k=config.k)
