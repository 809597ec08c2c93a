"""Size fit on Rent the Runway: small / fit / large of a rental, and the size to recommend.

Average one-vs-rest AUC over the three verdicts on the random 80/10/10 split of Misra, Wan &
McAuley (RecSys 2018; their K-LF-ML 0.719, 1-LV-LR 0.61) and on a time split by review date, for
the customer's-usual-size and item-only baselines, the latent-size model (``models/size_fit.py``),
gradient boosting and their blend — all measured in the same run (``training/size_fit_eval.py``);
then how often each recommended size is the size the customer rented and kept.

    python -m benchmarks.size_fit_rtr            # the whole dataset (a few minutes)
    python -m benchmarks.size_fit_rtr --quick    # 30 000 rentals, for a smoke run

Reads ``../shared/data/renttherunway_clean`` (or ``--data``); seeded (``--seed``).
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

import numpy as np

from feature_store.rent_the_runway import FitCols, load_rtr_fit
from training.size_fit_eval import (
    SizeFitEvalConfig,
    evaluate_split,
    random_split,
    table,
    time_split,
)

REPO = Path(__file__).resolve().parent.parent
DEFAULT_DATA = REPO.parent / "shared" / "data" / "renttherunway_clean"
QUICK_ROWS = 20_000


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help=f"{QUICK_ROWS} rentals only")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    log = logging.getLogger("size_fit_rtr")
    started = time.perf_counter()
    frame = load_rtr_fit(args.data)
    if args.quick:
        rows = np.random.default_rng(args.seed).choice(len(frame), QUICK_ROWS, replace=False)
        frame = frame.iloc[np.sort(rows)].reset_index(drop=True)
    log.info(
        "%d rentals, %d customers, %d items",
        len(frame),
        frame[FitCols.CUSTOMER_ID].nunique(),
        frame[FitCols.ITEM_ID].nunique(),
    )
    config = SizeFitEvalConfig(seed=args.seed)
    results = [
        evaluate_split(frame, random_split(len(frame), args.seed), "random", config, log.info),
        evaluate_split(frame, time_split(frame[FitCols.DATE]), "time", config, log.info),
    ]
    print()
    print(table(results))
    print()
    for result in results:
        print(f"{result.name}: rows {result.rows}, {result.extra}")
    print(f"seconds: {time.perf_counter() - started:.0f}")
    if args.json is not None:
        args.json.write_text(
            json.dumps(
                [
                    {
                        "split": r.name,
                        "rows": r.rows,
                        "auc": r.auc,
                        "recommend": r.recommend,
                        "recommend_rows": r.recommend_rows,
                        "extra": r.extra,
                    }
                    for r in results
                ],
                indent=2,
            )
        )


if __name__ == "__main__":
    main()
