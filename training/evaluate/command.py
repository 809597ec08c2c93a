"""What ``lookbook evaluate`` and ``benchmarks/offline_hm.py`` run: read a data folder with its
default protocol (:func:`load_for_evaluation`), evaluate it and write the report
(:func:`evaluate_command`)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

from feature_store.dataset import Dataset
from feature_store.rent_the_runway import is_rent_the_runway, load_rtr
from training.evaluate.config import preset_config
from training.evaluate.report import write_report
from training.evaluate.results import EvaluationResult
from training.evaluate.run import run_evaluation

__all__ = ["evaluate_command", "load_for_evaluation"]

logger = logging.getLogger("lookbook.training.evaluate")


def load_for_evaluation(path: Path) -> tuple[Dataset, str]:
    """``(dataset, default protocol)``: Rent the Runway (``time_split``) or anything
    :func:`feature_store.loaders.load_dataset` reads (``last_day``)."""
    from feature_store.loaders import load_dataset

    if is_rent_the_runway(path):
        return load_rtr(path), "time_split"
    return load_dataset(path), "last_day"


def evaluate_command(
    data: Sequence[Path],
    out: Path,
    *,
    protocol: str | None = None,
    folds: int = 6,
    methods: Sequence[str] | None = None,
    k: int = 12,
    test_days: int = 28,
    max_customers: int | None = None,
    n_boot: int = 1000,
    seed: int = 42,
    lstm_epochs: int | None = None,
    command: str = "",
) -> list[EvaluationResult]:
    """What ``lookbook evaluate`` runs: evaluate each data folder (H&M-style folders with the
    ``last_day`` protocol, Rent the Runway with ``time_split`` unless ``protocol`` says otherwise;
    :func:`preset_config`), log the tables, and write ``report.md``, ``results.json`` and
    ``map_at_k.png`` into ``out``. Returns the results (the caller prints ``result.table()``)."""
    results = []
    for path in data:
        dataset, default_protocol = load_for_evaluation(Path(path))
        config = preset_config(
            protocol or default_protocol,
            n_interactions=dataset.n_interactions,
            seed=seed,
            folds=folds,
            methods=tuple(methods) if methods else None,
            k=k,
            test_days=test_days,
            max_customers=max_customers,
            n_boot=n_boot,
            lstm_epochs=lstm_epochs,
        )
        result = run_evaluation(dataset, config, name=Path(path).name)
        logger.info("\n%s", result.table())
        results.append(result)
    write_report(results, out, command=command)
    return results
