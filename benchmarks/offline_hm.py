"""Offline accuracy on real data: H&M next basket (per-customer last day) and Rent the Runway.

Runs the evaluation harness (:mod:`training.evaluate`) on
``../shared/data/hm_neo4j_customer_sample`` (protocol ``last_day``, cutoff folds) and
``../shared/data/renttherunway_clean`` (protocol ``time_split``), measuring every method in the
same run: popularity, repurchase + popular, ALS, item kNN, rectools' SASRec (the peer; skipped with
a message when rectools is not installed), Lookbook's LSTM and Lookbook's blend. Prints the tables
and writes ``report.md``, ``results.json`` and ``map_at_k.png`` into the folder given.

    python benchmarks/offline_hm.py var/offline            # both datasets
    python benchmarks/offline_hm.py var/offline --only hm --folds 6

The peer (rectools 0.19, which needs numpy < 2) and the plot need their own environment, pinned in
``benchmarks/requirements-peer.txt``; run the script with that environment's python to measure
every method, the peer included, in one run::

    python3.11 -m venv /tmp/peervenv
    /tmp/peervenv/bin/pip install -r benchmarks/requirements-peer.txt
    /tmp/peervenv/bin/pip install -e . --no-deps
    /tmp/peervenv/bin/python benchmarks/offline_hm.py var/offline_hm --only hm

With the project's own ``.venv`` (no rectools) SASRec is skipped with a message.
"""

from __future__ import annotations

import argparse
import logging
import shlex
import sys
import time
import warnings
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from training.evaluate import (  # noqa: E402
    METHODS,
    EvalConfig,
    EvaluationResult,
    load_for_evaluation,
    preset_config,
    run_evaluation,
    write_report,
)

SHARED = REPO.parent / "shared" / "data"
DATASETS = {"hm": SHARED / "hm_neo4j_customer_sample", "rtr": SHARED / "renttherunway_clean"}


def config_for(name: str, n_interactions: int, args: argparse.Namespace) -> EvalConfig:
    """The harness's preset (:func:`training.evaluate.preset_config`) with the command's flags."""
    methods = tuple(args.methods.split(",")) if args.methods else None
    if name == "rtr":
        return preset_config(
            "time_split",
            n_interactions=n_interactions,
            seed=args.seed,
            test_days=args.rtr_test_days,
            max_customers=args.rtr_customers,
            methods=methods,
            n_boot=args.n_boot,
            lstm_epochs=args.rtr_lstm_epochs,
        )
    return preset_config(
        "last_day",
        n_interactions=n_interactions,
        seed=args.seed,
        folds=args.folds,
        methods=methods,
        n_boot=args.n_boot,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="folder for report.md, results.json, map_at_k.png")
    parser.add_argument("--only", choices=sorted(DATASETS), action="append")
    parser.add_argument("--folds", type=int, default=6)
    parser.add_argument("--methods", default="", help=f"comma-separated subset of {METHODS}")
    parser.add_argument("--n-boot", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--rtr-test-days", type=int, default=28)
    parser.add_argument("--rtr-customers", type=int, default=3000)
    parser.add_argument("--rtr-lstm-epochs", type=int, default=3)
    parser.add_argument("--verbose", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    for noisy in ("lookbook.models", "lookbook.data", "pytorch_lightning", "lightning"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", category=UserWarning)
    command = "python benchmarks/offline_hm.py " + " ".join(
        shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:])
    )
    results: list[EvaluationResult] = []
    for name in args.only or list(DATASETS):
        path = DATASETS[name]
        if not path.exists():
            print(f"skipping {name}: {path} not found")
            continue
        start = time.perf_counter()
        dataset, _ = load_for_evaluation(path)
        config = config_for(name, dataset.n_interactions, args)
        result = run_evaluation(dataset, config, name=path.name)
        print(result.table())
        print(f"({name}: {time.perf_counter() - start:.0f}s)\n", flush=True)
        results.append(result)
        write_report(results, args.out, command=command)  # after each dataset: partial results
    if not results:
        print("no dataset found")
        return 1
    paths = write_report(results, args.out, command=command)
    for label, path in paths.items():
        print(f"{label}: {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
