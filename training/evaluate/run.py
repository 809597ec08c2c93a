"""Run the harness: :func:`run_evaluation` measures every method of a config on one dataset.

Per fold (:mod:`training.evaluate.protocols`), the blend's weights and the learned ranker
(:mod:`training.ranker`: LambdaRank over the union of the blend's sources, early-stopped on the
fold's own validation window) are first fitted on the fold's validation period, pooled with every
earlier fold's (all dated before the fold's training end; never on test customers), then every source is fitted on the events before the training end
and each method's list, topped up with popularity as of the cutoff, is scored: MAP@k, Recall@k,
NDCG@k and coverage with percentile-bootstrap CIs over customers, and the paired bootstrap ratios
``blend / best other`` and ``lstm / als``. ``rerankers`` add methods that rerank the blend's
lists (e.g. the diversity rerank, ``benchmarks/diversity_hm.py``), measured on the same customers.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping

import numpy as np
import pandas as pd

from feature_store.dataset import Dataset
from models.base import IntArray
from models.bundle import BlendWeights
from training.blend import fit_blend_weights, fuse
from training.evaluate.config import BASELINES, EvalConfig
from training.evaluate.context import FoldAudit, FoldContext, fold_context
from training.evaluate.prepared import Prepared, prepare
from training.evaluate.protocols import every_day_holdout, last_day_folds, time_split_folds
from training.evaluate.results import EvaluationResult, MethodResult
from training.evaluate.sources import (
    BLEND_SOURCES,
    METHOD_SOURCE,
    fill,
    ranker_examples,
    run_sources,
    source_popularity,
)
from training.metrics import (
    average_precision_at_k,
    bootstrap_ci,
    bootstrap_ratio_ci,
    catalog_coverage,
    user_ndcg_at_k,
    user_recall_at_k,
)
from training.ranker import fit_ranker, rank_examples

__all__ = ["run_evaluation"]

logger = logging.getLogger("lookbook.training.evaluate")


def run_evaluation(
    dataset: Dataset | Prepared,
    config: EvalConfig | None = None,
    *,
    name: str | None = None,
    progress: bool = False,
    rerankers: Mapping[str, Callable[[IntArray], IntArray]] | None = None,
) -> EvaluationResult:
    """Evaluate every method of ``config.methods`` on ``dataset`` under ``config.protocol``.

    Returns per-customer predictions and metrics with bootstrap CIs (the protocols:
    :mod:`training.evaluate.protocols`; why nothing dated on or after a customer's cutoff is used
    for them: :mod:`training.evaluate.context`).

    ``rerankers`` (needs ``"blend"`` in the methods) name functions from the blend's ranked rows
    (fused, topped up with popularity, ``config.depth`` wide) to ``(n, k)`` lists; each is
    measured as one more method under its name.
    """
    config = config or EvalConfig()
    t0 = time.perf_counter()
    prepared = dataset if isinstance(dataset, Prepared) else prepare(dataset, name)
    folds = (
        last_day_folds(prepared, config)
        if config.protocol == "last_day"
        else time_split_folds(prepared, config)
    )
    methods = list(config.methods)
    rerank = dict(rerankers or {})
    if rerank and "blend" not in methods:
        raise ValueError("rerankers rerank the blend: add 'blend' to the methods")
    clash = sorted(set(rerank) & set(methods))
    if clash:
        raise ValueError(f"reranker names {clash} are method names")
    fused_methods = {"blend", "ranker"} & set(methods)
    needed = sorted(
        {METHOD_SOURCE[m] for m in methods if m not in fused_methods}
        | (set(BLEND_SOURCES.values()) if fused_methods else set())
    )
    skipped: dict[str, str] = {}
    per_fold_predictions: dict[str, list[IntArray]] = {m: [] for m in [*methods, *rerank]}
    weights_used: list[BlendWeights] = []
    audits: list[FoldAudit] = []
    timings: dict[str, float] = {"prepare": time.perf_counter() - t0}
    k = config.k
    pooled: list[tuple[dict[str, IntArray], list[IntArray]]] = []
    windows: list[tuple[FoldContext, dict[str, IntArray], list[IntArray]]] = []
    importances: list[dict[str, float]] = []
    for fold in folds:
        tf = time.perf_counter()
        weights = BlendWeights()
        ranker = None
        if fused_methods and fold.validation is not None and len(fold.validation):
            # the ranker learns from every purchase day of the validation period (the blend's
            # rows, each customer's last day, are among them): one context, sources run once
            window = (
                every_day_holdout(prepared, fold.validation, fold.test.train_end)
                if "ranker" in methods and config.protocol == "last_day"
                else fold.validation
            )
            vctx = fold_context(prepared, window, config, fold.index, "validation")
            audits.append(vctx.audit)
            vsources = run_sources(vctx, sorted(set(BLEND_SOURCES.values())), skipped)
            window_rankings = {b: vsources[s] for b, s in BLEND_SOURCES.items() if s in vsources}
            row_of = {
                (int(u), int(c)): r
                for r, (u, c) in enumerate(zip(window.users, window.cutoffs, strict=True))
            }
            rows = np.asarray(
                [
                    row_of[(int(u), int(c))]
                    for u, c in zip(fold.validation.users, fold.validation.cutoffs, strict=True)
                ],
                dtype=np.int64,
            )
            rankings = {b: r[rows] for b, r in window_rankings.items()}
            # earlier folds' validation periods end before this fold's (folds are in cutoff
            # order), so pooling them reads nothing on or after this fold's training end
            pooled.append((rankings, list(fold.validation.truths)))
            used = pooled if config.pool_validation else pooled[-1:]
            if fused_methods:  # the ranker's blend_score feature reads the weights too
                names = set.intersection(*(set(r) for r, _ in used))
                weights = fit_blend_weights(
                    {b: np.concatenate([r[b] for r, _ in used]) for b in sorted(names)},
                    [t for _, truths in used for t in truths],
                    k=k,
                )
            if "ranker" in methods:
                start = time.perf_counter()
                windows.append((vctx, window_rankings, list(window.truths)))
                examples = [ranker_examples(c, r, t, weights) for c, r, t in windows]
                ranker = fit_ranker(examples, config.ranker)
                if ranker is not None:
                    importances.append(ranker.importances())
                timings["ranker_fit"] = timings.get("ranker_fit", 0.0) + (
                    time.perf_counter() - start
                )
            for key, value in vctx.timings.items():
                timings[f"validation_{key}"] = timings.get(f"validation_{key}", 0.0) + value
        ctx = fold_context(prepared, fold.test, config, fold.index, "test")
        audits.append(ctx.audit)
        sources = run_sources(ctx, needed, skipped)
        popular = sources["popularity"] if "popularity" in sources else source_popularity(ctx)
        for method in methods:
            if method == "blend":
                rankings = {b: sources[s] for b, s in BLEND_SOURCES.items() if s in sources}
                fused, _ = fuse(rankings, weights, config.depth)
                per_fold_predictions[method].append(fill(fused, popular, k))
                if rerank:
                    deep = fill(fused, popular, config.depth)
                    for label, rerank_fn in rerank.items():
                        per_fold_predictions[label].append(rerank_fn(deep))
            elif method == "ranker":
                rankings = {b: sources[s] for b, s in BLEND_SOURCES.items() if s in sources}
                if ranker is None:  # too few window customers: the equal-weight fusion
                    ranked, _ = fuse(rankings, BlendWeights(), config.depth)
                else:
                    start = time.perf_counter()
                    ranked = rank_examples(ranker, ranker_examples(ctx, rankings, blend=weights), k)
                    timings["ranker_rank"] = timings.get("ranker_rank", 0.0) + (
                        time.perf_counter() - start
                    )
                per_fold_predictions[method].append(fill(ranked, popular, k))
            elif METHOD_SOURCE[method] in sources:
                per_fold_predictions[method].append(
                    fill(sources[METHOD_SOURCE[method]], popular, k)
                )
        weights_used.append(weights)
        for key, value in ctx.timings.items():
            timings[key] = timings.get(key, 0.0) + value
            if key.endswith("_fit"):  # the slowest single fit (the largest training set)
                timings[f"{key}_max"] = max(timings.get(f"{key}_max", 0.0), value)
        logger.info(
            "fold %d/%d: %d customers, train before %s, cutoffs up to %s, %d training events (%.1fs)",
            fold.index + 1,
            len(folds),
            len(fold.test),
            pd.Timestamp(fold.test.train_end, unit="s").date(),
            pd.Timestamp(int(fold.test.cutoffs.max()), unit="s").date(),
            ctx.audit.train_events,
            time.perf_counter() - tf,
        )
    users = np.concatenate([f.test.users for f in folds]) if folds else np.empty(0, np.int64)
    cutoffs = np.concatenate([f.test.cutoffs for f in folds]) if folds else np.empty(0, np.int64)
    truths = [t for f in folds for t in f.test.truths]
    fold_of = (
        np.concatenate([np.full(len(f.test), f.index) for f in folds]).astype(np.int64)
        if folds
        else np.empty(0, np.int64)
    )
    warm = np.asarray(
        [len(prepared.history(int(u), int(c))) > 0 for u, c in zip(users, cutoffs, strict=True)],
        dtype=bool,
    )
    predictions = {
        m: np.concatenate(p) for m, p in per_fold_predictions.items() if p and m not in skipped
    }
    results: dict[str, MethodResult] = {}
    evaluated = np.asarray([len(t) > 0 for t in truths], dtype=bool)
    for i, (method, pred) in enumerate(predictions.items()):
        ap = np.asarray(
            [average_precision_at_k(t, p, k) for t, p in zip(truths, pred, strict=True)]
        )[evaluated]
        rec = np.asarray([user_recall_at_k(t, p, k) for t, p in zip(truths, pred, strict=True)])[
            evaluated
        ]
        ndcg = np.asarray([user_ndcg_at_k(t, p, k) for t, p in zip(truths, pred, strict=True)])[
            evaluated
        ]
        metrics = {
            key: bootstrap_ci(values, n_boot=config.n_boot, seed=config.seed + i)
            for key, values in (("map", ap), ("recall", rec), ("ndcg", ndcg))
        }
        results[method] = MethodResult(
            method, ap, rec, ndcg, catalog_coverage(pred, prepared.n_items, k), metrics
        )
    ratios: dict[str, tuple[float, float, float]] = {}
    if "blend" in results:
        others = [m for m in BASELINES if m in results]
        if others:
            best = max(others, key=lambda m: results[m].ap.mean())
            ratios[f"blend/{best}"] = bootstrap_ratio_ci(
                results["blend"].ap, results[best].ap, n_boot=config.n_boot, seed=config.seed
            )
    if "ranker" in results:
        others = [m for m in BASELINES if m in results]
        if others:
            best = max(others, key=lambda m: results[m].ap.mean())
            ratios[f"ranker/{best}"] = bootstrap_ratio_ci(
                results["ranker"].ap, results[best].ap, n_boot=config.n_boot, seed=config.seed
            )
        if "blend" in results:
            ratios["ranker/blend"] = bootstrap_ratio_ci(
                results["ranker"].ap, results["blend"].ap, n_boot=config.n_boot, seed=config.seed
            )
    if "lstm" in results and "als" in results:
        ratios["lstm/als"] = bootstrap_ratio_ci(
            results["lstm"].ap, results["als"].ap, n_boot=config.n_boot, seed=config.seed
        )
    timings["total"] = time.perf_counter() - t0
    keep = evaluated  # customers whose truth is empty (unknown items only) are not scored
    return EvaluationResult(
        dataset=prepared.name,
        protocol=config.protocol,
        config=config,
        users=users[keep],
        cutoffs=cutoffs[keep],
        truths=[t for t, kept in zip(truths, keep, strict=True) if kept],
        warm=warm[keep],
        fold_of=fold_of[keep],
        predictions={m: p[keep] for m, p in predictions.items()},
        methods=results,
        ratios=ratios,
        blend_weights=weights_used,
        audits=audits,
        skipped=skipped,
        timings=timings,
        n_items=prepared.n_items,
        ranker_importances=(
            {f: float(np.mean([i[f] for i in importances])) for f in importances[0]}
            if importances
            else {}
        ),
    )
