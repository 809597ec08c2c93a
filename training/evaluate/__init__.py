"""The offline evaluation harness: every method on one split, in one run, with bootstrap CIs.

    from training.evaluate import load_for_evaluation, preset_config, run_evaluation, write_report

    dataset, protocol = load_for_evaluation(path)
    result = run_evaluation(dataset, preset_config(protocol, n_interactions=dataset.n_interactions))
    print(result.table()); write_report([result], out)

Modules: :mod:`~training.evaluate.config` (what a run can be told), ``prepared`` (the dataset
encoded once), ``protocols`` (``last_day`` / ``time_split`` folds), ``context`` (what a holdout
may see, with its leak audit), ``sources`` and ``peer`` (the ranked lists), ``run`` (the
measurement), ``results``, ``report`` (report.md, results.json, plot), ``command`` (``lookbook
evaluate``) and ``served`` (the blend fit on all the data).
"""

from feature_store.rent_the_runway import RTR_FILE, load_rtr
from training.evaluate.command import evaluate_command, load_for_evaluation
from training.evaluate.config import (
    BASELINES,
    METHODS,
    PROTOCOLS,
    ALSParams,
    EvalConfig,
    PeerParams,
    preset_config,
)
from training.evaluate.context import FoldAudit, FoldContext, fold_context
from training.evaluate.peer import PeerUnavailable
from training.evaluate.prepared import (
    Prepared,
    catalog_groups,
    event_prices,
    event_sizes,
    prepare,
    product_codes,
    subset,
)
from training.evaluate.protocols import (
    Fold,
    last_day_folds,
    time_split_folds,
    validation_holdout,
    window_holdout,
)
from training.evaluate.report import plot_results, write_report
from training.evaluate.results import EvaluationResult, MethodResult
from training.evaluate.run import run_evaluation
from training.evaluate.served import fit_served_blend
from training.evaluate.sources import (
    BLEND_SOURCES,
    METHOD_SOURCE,
    SOURCE_FUNCTIONS,
    SourceFn,
    fill,
    repeat_rates,
    run_sources,
    siblings_table,
    source_als,
    source_item_knn,
    source_lstm,
    source_popularity,
    source_repeat,
    source_repurchase,
    source_sasrec,
    source_siblings,
)
from training.metrics import bootstrap_ratio_ci

__all__ = [
    "BASELINES",
    "BLEND_SOURCES",
    "METHODS",
    "METHOD_SOURCE",
    "PROTOCOLS",
    "RTR_FILE",
    "SOURCE_FUNCTIONS",
    "ALSParams",
    "EvalConfig",
    "EvaluationResult",
    "Fold",
    "FoldAudit",
    "FoldContext",
    "MethodResult",
    "PeerParams",
    "PeerUnavailable",
    "Prepared",
    "SourceFn",
    "bootstrap_ratio_ci",
    "catalog_groups",
    "evaluate_command",
    "event_prices",
    "event_sizes",
    "fill",
    "fit_served_blend",
    "fold_context",
    "last_day_folds",
    "load_for_evaluation",
    "load_rtr",
    "plot_results",
    "prepare",
    "preset_config",
    "product_codes",
    "repeat_rates",
    "run_evaluation",
    "run_sources",
    "siblings_table",
    "source_als",
    "source_item_knn",
    "source_lstm",
    "source_popularity",
    "source_repeat",
    "source_repurchase",
    "source_sasrec",
    "source_siblings",
    "subset",
    "time_split_folds",
    "validation_holdout",
    "window_holdout",
    "write_report",
]
