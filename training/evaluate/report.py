"""The files of a run: ``report.md``, ``results.json`` and ``map_at_k.png`` (:func:`write_report`).

The plot needs matplotlib (the ``bench`` extra); without it the report says nothing of a plot.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from training.evaluate.results import EvaluationResult
from training.report import markdown_table

__all__ = ["plot_results", "write_report"]

logger = logging.getLogger("lookbook.training.evaluate")


def plot_results(results: Sequence[EvaluationResult], path: Path, metric: str = "map") -> bool:
    """A PNG of ``metric`` with its 95% CI per method, one panel per dataset. Returns False (and
    logs why) when matplotlib is not installed."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        logger.warning("matplotlib is not installed: no plot written (pip install matplotlib)")
        return False
    fig, axes = plt.subplots(1, len(results), figsize=(6.5 * len(results), 4.2), squeeze=False)
    for ax, result in zip(axes[0], results, strict=True):
        names = list(result.methods)
        means = [result.methods[n].metrics[metric][0] for n in names]
        lows = [
            result.methods[n].metrics[metric][0] - result.methods[n].metrics[metric][1]
            for n in names
        ]
        highs = [
            result.methods[n].metrics[metric][2] - result.methods[n].metrics[metric][0]
            for n in names
        ]
        colours = ["#c0392b" if n in ("lstm", "blend") else "#7f8c8d" for n in names]
        ax.bar(range(len(names)), means, yerr=[lows, highs], capsize=4, color=colours)
        ax.set_xticks(range(len(names)))
        ax.set_xticklabels(names, rotation=30, ha="right")
        ax.set_ylabel(f"{metric.upper()}@{result.config.k} (95% bootstrap CI)")
        ax.set_title(f"{result.dataset}: {result.protocol}, {len(result.users)} customers")
        ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def _methods_table(result: EvaluationResult) -> str:
    k = result.config.k
    headers = [
        "method",
        f"MAP@{k} [95% CI]",
        f"Recall@{k} [95% CI]",
        f"NDCG@{k} [95% CI]",
        "coverage",
        f"MAP@{k} warm",
    ]
    rows = []
    for name, m in result.methods.items():
        cis = [
            f"{m.metrics[key][0]:.4f} [{m.metrics[key][1]:.4f}, {m.metrics[key][2]:.4f}]"
            for key in ("map", "recall", "ndcg")
        ]
        warm = float(m.ap[result.warm].mean()) if result.warm.any() else float("nan")
        rows.append([name, *cis, f"{m.coverage:.4f}", f"{warm:.4f}"])
    return markdown_table(headers, rows, padded=False)


def write_report(
    results: Sequence[EvaluationResult], out: Path, *, command: str = ""
) -> dict[str, Path]:
    """``report.md``, ``results.json`` and ``map_at_k.png`` (when matplotlib is available) in
    ``out``; returns the paths written."""
    out.mkdir(parents=True, exist_ok=True)
    paths = {"markdown": out / "report.md", "json": out / "results.json"}
    lines = ["# Lookbook offline evaluation", ""]
    if command:
        lines += ["Command:", "", "```", command, "```", ""]
    lines += [f"Generated {pd.Timestamp.now(tz='UTC').isoformat(timespec='seconds')}.", ""]
    for result in results:
        lines += [
            f"## {result.dataset} — protocol `{result.protocol}`",
            "",
            f"{len(result.users)} customers evaluated ({int(result.warm.sum())} with history "
            f"before their cutoff), {result.n_items} items, k={result.config.k}, "
            f"{len(result.blend_weights)} fold(s), {result.config.n_boot} bootstrap resamples. "
            "Every list is topped up with popularity as of the customer's cutoff.",
            "",
            *_methods_table(result).splitlines(),
            "",
        ]
        if result.ratios:
            lines += ["Ratios of MAP@k (paired bootstrap over customers):", ""]
            for label, (mean, low, high) in result.ratios.items():
                if label == "ranker/blend":
                    lines.append(f"- `{label}` = {mean:.3f} [95% CI {low:.3f}, {high:.3f}]")
                    continue
                target = 1.3 if label.startswith(("blend/", "ranker/")) else 1.5
                verdict = "met" if mean >= target and low > 1.0 else "NOT met"
                lines.append(
                    f"- `{label}` = {mean:.3f} [95% CI {low:.3f}, {high:.3f}] — target ≥ {target} "
                    f"with CI above 1.0: **{verdict}**"
                )
            lines.append("")
        if result.skipped:
            lines += [f"- skipped `{n}`: {why}" for n, why in result.skipped.items()] + [""]
        pooled = " and every earlier fold's" if result.config.pool_validation else ""
        lines += [f"Blend weights per fold (fitted on the fold's{pooled} validation period):", ""]
        for f, w in enumerate(result.blend_weights):
            weights = ", ".join(f"{s}={v:g}" for s, v in sorted(w.weights.items()))
            lines.append(
                f"- fold {f}: {weights}, rrf_k={w.rrf_k:g}, fitted={w.fitted}, "
                f"validation customers={w.validation_customers}, validation MAP="
                f"{'n/a' if w.validation_map is None else f'{w.validation_map:.4f}'}"
            )
        if result.ranker_importances:
            lines += [
                "",
                "Learned ranker feature importances (share of total gain, mean over folds):",
                "",
            ]
            ranked = sorted(result.ranker_importances.items(), key=lambda kv: -kv[1])
            lines += [f"- `{name}`: {share:.3f}" for name, share in ranked]
        lines += [
            "",
            "Leak audit (every fold checked: training < train_end <= cutoffs; item prices and "
            "features recomputed from the events before train_end):",
            "",
        ]
        for a in result.audits:
            lines.append(
                f"- fold {a.fold} {a.kind}: train_end {pd.Timestamp(a.train_end, unit='s').date()}, "
                f"{a.train_events} training events, {a.customers} customers, cutoffs "
                f"{'-' if a.min_cutoff is None else pd.Timestamp(a.min_cutoff, unit='s').date()}"
                f"..{'-' if a.max_cutoff is None else pd.Timestamp(a.max_cutoff, unit='s').date()}"
            )
        timing = ", ".join(f"{k}={v:.1f}s" for k, v in result.timings.items())
        lines += ["", f"Timings: {timing}", ""]
    if plot_results(results, out / "map_at_k.png"):
        paths["plot"] = out / "map_at_k.png"
        lines += ["![MAP@k with 95% CI](map_at_k.png)", ""]
    paths["markdown"].write_text("\n".join(lines))
    paths["json"].write_text(
        json.dumps(
            {"command": command, "results": [r.summary() for r in results]},
            indent=2,
            default=_json_default,
        )
    )
    return paths


def _json_default(value: Any) -> Any:
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return float(value)
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"cannot serialise {type(value).__name__}")
