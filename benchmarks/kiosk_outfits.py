"""The fitting-room kiosk's outfits, measured: outfit completion on real outfits (Mango) against
baselines in the same run, and the store-stock constraint on the synthetic retailer.

* **Mango** (``mango_outfits_datathon2023``): the complementary model is trained on 80 % of the
  outfits (seeded; the hyper-parameters of ``benchmarks/complete_the_look.py``). For each
  held-out outfit one item a shopper would carry into a fitting room (top, bottom, dress,
  outerwear) is carried in; the kiosk fills its slots (a bottom for a top, shoes, outerwear or an
  accessory) with three outfits; a held-out piece of a slot's category is a hit when one of the
  three outfits holds it (hit@3 per category; ``training/kiosk_eval.py``). Baselines, three
  items per slot: popular in the category, attribute match with the carried item,
  co-occurrence with it in training outfits, and the model's own top three per slot.
* **Store stock** (the synthetic retailer, built in a temporary folder): seeded kiosk requests
  (``POST /v1/kiosk/outfits`` on the real app) across every store, occasions and tried sizes;
  the share of suggested outfit items in stock in that store in the advised size (must be
  100 %), and of the ``elsewhere`` items actually available where they say.

    .venv/bin/python benchmarks/kiosk_outfits.py [--data-root ../shared/data] [--seed 0] [--quick]
        [--tune]

``--tune`` instead searches the popularity prior's weight (``POPULARITY_STRENGTH`` in
``models/outfit_builder.py``) on a validation split carved from the training outfits.
Prints one Markdown table and the stock line; writes nothing outside a temporary folder.
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
import pandas as pd

from benchmarks.complete_the_look import DEFAULT_DATA, MANGO_PARAMS
from feature_store.outfits import MANGO_FOLDER, load_mango_outfits, split_outfits
from feature_store.schema import ItemCols
from models.complementary import ComplementaryModel
from models.occasions import OCCASIONS
from training.kiosk_eval import (
    OutfitBaselines,
    kiosk_suggest,
    model_top,
    outfit_completion,
    per_slot,
)
from training.report import markdown_table

MANGO_COLUMNS = [
    ItemCols.PRODUCT_TYPE,
    ItemCols.COLOUR,
    "colour_detail",
    ItemCols.MATERIAL,
    "line",
    "collection",
]
CATEGORY_ORDER = ("top", "bottom", "dress", "outerwear", "shoes", "accessory")


def pct(x: float) -> str:
    return "–" if x != x else f"{100 * x:.1f} %"


def run_mango(root: Path, seed: int, quick: bool) -> str:
    t0 = time.perf_counter()
    data = load_mango_outfits(root)
    parts = split_outfits(data.splits["all"], {"train": 0.8, "test": 0.2}, seed=seed)
    train, test = parts["train"], parts["test"]
    if quick:
        test = test.subset(np.arange(min(len(test), 400)))
    params = {**MANGO_PARAMS, "epochs": 4 if quick else MANGO_PARAMS["epochs"]}
    print(
        f"[bench] Mango: training the complementary model on {len(train)} outfits ({params['epochs']} epochs) …",
        flush=True,
    )
    model = ComplementaryModel(**params, seed=seed, threads=1).fit(
        data.items,
        train,
        attributes=data.attributes,
        negative_group=data.negative_group,
        show_progress=True,
    )
    fit_s = time.perf_counter() - t0
    baselines = OutfitBaselines(data.items, train, MANGO_COLUMNS)
    popularity = baselines.popularity
    methods = {
        "kiosk: three composed outfits (set compatibility + popularity prior)": kiosk_suggest(
            model, popularity=popularity
        ),
        "kiosk without the popularity prior": kiosk_suggest(model),
        "complementary model, top 3 per slot (no composition)": model_top(model),
        "baseline: popular in the category": per_slot(baselines.popular),
        "baseline: attribute match with the carried item": per_slot(baselines.attribute_match),
        "baseline: co-occurrence with the carried item": per_slot(baselines.cooccurrence),
    }
    seen = np.zeros(data.n_items, dtype=bool)
    seen[train.indices] = True
    result = outfit_completion(model, data.items, test, methods, seed=seed + 7, seen=seen)
    present = [c for c in CATEGORY_ORDER if any(h.pieces.get(c) for h in result.methods.values())]
    first = next(iter(result.methods.values()))
    rows = [
        [name, pct(h.rate()), *[pct(h.rate(c)) for c in present], pct(result.unseen[name].rate())]
        for name, h in result.methods.items()
    ]
    n_unseen = sum(next(iter(result.unseen.values())).pieces.values())
    table = markdown_table(
        [
            "method (3 suggestions per slot)",
            "hit@3 all",
            *[f"{c} (n={first.pieces.get(c, 0)})" for c in present],
            f"carried item in no training outfit (n={n_unseen})",
        ],
        rows,
    )
    share = result.pieces_in_slots / max(result.pieces_in_slots + result.pieces_outside_slots, 1)
    return (
        f"## Kiosk outfit completion, Mango ({root / MANGO_FOLDER})\n\n{table}\n\n"
        f"{result.outfits} held-out outfits (20 %, seed {seed}), one carried item each; "
        f"{result.pieces_in_slots} held-out pieces in the kiosk's slots ({100 * share:.0f} % of "
        f"the pieces; the others are in categories the kiosk does not fill for that item, e.g. a "
        f"second accessory); model fit {fit_s:.0f} s"
    )


def tune_popularity(root: Path, seed: int, quick: bool) -> str:
    """The popularity prior's weight on a validation split carved from the training outfits (the
    test outfits are never used): hit@3 of the kiosk for each weight."""
    data = load_mango_outfits(root)
    parts = split_outfits(data.splits["all"], {"train": 0.8, "test": 0.2}, seed=seed)
    inner = split_outfits(parts["train"], {"train": 0.8, "valid": 0.2}, seed=seed + 1)
    params = {**MANGO_PARAMS, "epochs": 4 if quick else MANGO_PARAMS["epochs"]}
    model = ComplementaryModel(**params, seed=seed, threads=1).fit(
        data.items, inner["train"], attributes=data.attributes, negative_group=data.negative_group
    )
    popularity = OutfitBaselines(data.items, inner["train"], MANGO_COLUMNS).popularity
    weights = (0.0, 0.25, 0.5, 1.0, 2.0)
    methods = {f"{w:g}": kiosk_suggest(model, popularity=popularity, strength=w) for w in weights}
    result = outfit_completion(model, data.items, inner["valid"], methods, seed=seed + 7)
    rows = [[w, pct(result.methods[w].rate())] for w in methods]
    return "## Popularity prior weight, Mango validation split\n\n" + markdown_table(
        ["POPULARITY_STRENGTH", "hit@3 (validation)"], rows
    )


def run_stock(seed: int, quick: bool) -> str:
    """Every kiosk suggestion checked against the synthetic retailer's stock table."""
    from fastapi.testclient import TestClient

    from app.main import create_app
    from app.settings import Settings
    from benchmarks._common import SMALL_CONFIG
    from feature_store.synthetic import generate
    from training.train import train

    with tempfile.TemporaryDirectory(prefix="lookbook-kiosk-stock-") as tmp:
        root = Path(tmp)
        customers, n_items = (800, 400) if quick else (3000, 2000)
        print(
            f"[bench] stock: synthetic retailer {customers} customers × {n_items} items …",
            flush=True,
        )
        generate(root / "data", customers=customers, items=n_items, seed=seed + 11)
        train(root / "data", root / "bundles", config=SMALL_CONFIG, progress=False)
        items = pd.read_parquet(root / "data" / "items.parquet")
        stock = pd.read_parquet(root / "data" / "stock.parquet")
        units = (
            stock.groupby(["item_id", "store_id", "size"], observed=True)["quantity"]
            .sum()
            .to_dict()
        )
        stores = sorted(set(stock["store_id"]) - {"online"})
        carriable = items[
            items["category"].isin(["top", "bottom", "dress", "outerwear"])
        ].reset_index(drop=True)
        rng = np.random.default_rng(seed)
        settings = Settings(
            bundle_dir=root / "bundles",
            event_log_dir=root / "events",
            bundle_poll_seconds=0,
            redis_url=None,
        )
        shown = in_size = elsewhere = elsewhere_ok = requests = 0
        n_requests = 60 if quick else 400
        with TestClient(create_app(settings)) as client:
            for _ in range(n_requests):
                row = carriable.iloc[int(rng.integers(len(carriable)))]
                carried: dict[str, object] = {"item_id": row["item_id"]}
                sizes = list(row["sizes"])
                if len(sizes) > 1 and rng.random() < 0.4:
                    carried["size"] = str(sizes[int(rng.integers(len(sizes)))])
                    carried["fit"] = str(rng.choice(["too_small", "fits", "too_large"]))
                body: dict[str, object] = {"store_id": str(rng.choice(stores)), "items": [carried]}
                if rng.random() < 0.5:
                    body["occasion"] = str(rng.choice(list(OCCASIONS)))
                response = client.post("/v1/kiosk/outfits", json=body)
                assert response.status_code == 200, response.text
                payload = response.json()
                requests += 1
                for outfit in payload["outfits"]:
                    for entry in outfit["items"]:
                        shown += 1
                        in_size += int(
                            units.get((entry["item_id"], body["store_id"], entry["size"]), 0) > 0
                        )
                for entry in payload["elsewhere"]:
                    elsewhere += 1
                    here = units.get((entry["item_id"], body["store_id"], entry["size"]), 0)
                    there = all(
                        units.get((entry["item_id"], place["store_id"], entry["size"]), 0)
                        == place["stock"]
                        > 0
                        for place in entry["locations"]
                    )
                    elsewhere_ok += int(here == 0 and bool(entry["locations"]) and there)
    return (
        f"Store stock (synthetic retailer, {customers} customers × {n_items} items, {len(stores)} stores, "
        f"{requests} seeded kiosk requests): {in_size} of {shown} outfit items in stock in that store "
        f"in the advised size ({pct(in_size / max(shown, 1))}; must be 100 %); {elsewhere_ok} of "
        f"{elsewhere} 'elsewhere' items not in that store in their size and in stock where they say"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data-root", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--quick", action="store_true", help="4 epochs, 400 test outfits, a small retailer"
    )
    parser.add_argument(
        "--tune", action="store_true", help="only the popularity prior's weight search"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    start = time.perf_counter()
    if args.tune:
        print("\n" + tune_popularity(args.data_root, args.seed, args.quick))
        return 0
    stock = run_stock(args.seed, args.quick)
    if (args.data_root / MANGO_FOLDER).is_dir():
        print("\n" + run_mango(args.data_root, args.seed, args.quick))
    else:
        print(
            f"\nMango outfits not found at {args.data_root / MANGO_FOLDER}: outfit completion skipped"
        )
    print("\n" + stock)
    print(f"\n{time.perf_counter() - start:.0f} s in all")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
