"""Occasions on real data: do occasion-aware suggestions hit what Rent the Runway customers rented
for that occasion more often than occasion-blind ones?

Rent the Runway (``renttherunway_clean``) says what each rental was for (``rented_for``: wedding,
formal affair, party, work, everyday, date, vacation, other), mapped onto the kiosk's occasions
by :data:`models.occasions.RENTED_FOR`. Time split: rentals reviewed before the cut-off (the
last ``--test-share`` of the review dates) are training, the later ones with an occasion the
test. Each test rental is looked up in three rankings of the catalog (5,850 items, RTR's
product type — dress, gown, sheath, … — as the attribute the occasion table reads):

* **occasion-blind**: training popularity (rentals before the cut-off, log-scaled);
* **occasion-aware (the kiosk's table)**: the same plus the occasion table's prior, exactly as
  the kiosk ranks (:func:`models.occasions.occasion_bonus`);
* **learned reference**: popularity among the training rentals *for that occasion* — what a
  model fitted on RTR's own labels could reach; the table is hand-written and never saw RTR.

Hit@k: the rented item is in the ranking's top k (``training/kiosk_eval.py``).

    .venv/bin/python benchmarks/kiosk_occasion_rtr.py [--data-root ../shared/data] [--quick]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
import pandas as pd

from feature_store.rent_the_runway import RTR_FILE, load_rtr
from feature_store.schema import ItemCols
from models.occasions import OCCASIONS, RENTED_FOR, all_occasion_scores
from training.kiosk_eval import occasion_hits
from training.report import markdown_table

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO.parent / "shared" / "data"
FOLDER = "renttherunway_clean"


def pct(x: float) -> str:
    return "–" if x != x else f"{100 * x:.1f} %"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data-root", type=Path, default=DEFAULT_DATA)
    parser.add_argument(
        "--test-share", type=float, default=0.1, help="latest share of rentals held out"
    )
    parser.add_argument("--seed", type=int, default=0, help="sampling of test rentals with --quick")
    parser.add_argument("--quick", action="store_true", help="5,000 test rentals")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    folder = args.data_root / FOLDER
    if not (folder / RTR_FILE).is_file():
        print(f"Rent the Runway not found at {folder}: skipped")
        return 0
    print(f"[bench] reading {folder / RTR_FILE} …", flush=True)
    dataset = load_rtr(folder)
    items = dataset.items.reset_index(drop=True)
    position = pd.Index(items[ItemCols.ID].astype(str))
    raw = pd.read_parquet(folder / RTR_FILE, columns=["item_id", "rented_for", "review_date"])
    raw = raw.dropna(subset=["item_id", "review_date"])
    raw["item"] = position.get_indexer(raw["item_id"].astype("int64").astype(str))
    raw["occasion"] = raw["rented_for"].astype(str).map(RENTED_FOR)
    cut = raw["review_date"].quantile(1 - args.test_share)
    train = raw[raw["review_date"] < cut]
    test = raw[(raw["review_date"] >= cut) & raw["occasion"].notna()]
    if args.quick and len(test) > 5000:
        test = test.sample(5000, random_state=args.seed)
    n = len(items)
    base = np.log1p(np.bincount(train["item"], minlength=n)).astype(np.float64)
    scores = all_occasion_scores(items)
    learned = {}
    labelled = train[train["occasion"].notna()]
    for occasion in OCCASIONS:
        mine = labelled[labelled["occasion"] == occasion]["item"]
        # per-occasion popularity, the blind popularity breaking ties
        learned[occasion] = np.log1p(np.bincount(mine, minlength=n)) + 1e-3 * base
    print(
        f"[bench] {len(train)} training rentals before {cut:%Y-%m-%d}, {len(test)} test rentals",
        flush=True,
    )
    result = occasion_hits(
        base,
        scores,
        learned,
        test["item"].to_numpy(np.int64),
        test["occasion"].tolist(),
        ks=(10, 50),
    )
    occasions = sorted(result.rentals, key=lambda o: -result.rentals[o])
    names = {
        "blind": "occasion-blind (training popularity)",
        "aware": "occasion-aware (popularity + the kiosk's occasion table)",
        "learned": "reference: popularity per occasion, learned from RTR's training rentals",
    }
    rows = []
    for key, title in names.items():
        rows.append(
            [
                title,
                pct(result.rate(key, None, 10)),
                pct(result.rate(key, None, 50)),
                *[pct(result.rate(key, o, 10)) for o in occasions],
            ]
        )
    table = markdown_table(
        [
            "ranking",
            "hit@10",
            "hit@50",
            *[f"{o} hit@10 (n={result.rentals[o]})" for o in occasions],
        ],
        rows,
    )
    matched = {o: int((s > 0).sum()) for o, s in scores.items()}
    print(f"\n## Occasions on Rent the Runway ({folder})\n\n{table}\n")
    print(
        f"Time split at {cut:%Y-%m-%d} (latest {100 * args.test_share:g} % of review dates held out); "
        f"'formal affair' counts as wedding; {n} items; items the table favours per occasion: "
        + ", ".join(f"{o} {m}" for o, m in matched.items())
        + f"; {time.perf_counter() - start:.0f} s"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
