"""Latency of ``POST /v1/kiosk/outfits`` on the 100k-item synthetic retailer (target: p99 ≤ 50 ms
at 20 requests/s), with baselines measured in the same run.

1. Prepares (or reuses, in ``--work``; or ``--bundles`` given) a synthetic retailer with
   ``lookbook generate`` and a bundle with ``lookbook train`` — the real command line. The
   bundle is trained with a light config (ALS 32 factors, no LSTM): the kiosk serves from the
   complementary model, the stock table and the size advice, which that config fits as usual.
2. Starts the real service (``uvicorn app.main:create_app --factory --workers 1``, in-process
   stores) and the bare FastAPI app (``benchmarks/bare_app.py``) on free loopback ports.
3. Drives each open loop at a fixed rate from a separate process (``benchmarks/_loadgen.py``;
   latency from the scheduled send time), warm-up then a fixed duration, with seeded kiosk
   requests: one or two carried items (tops, bottoms, dresses, outerwear), a random physical
   store, a tried size and fit on a third of the items, an occasion on half the requests and a
   known customer on a third.
4. Prints one table: the kiosk, ``POST /v1/complementary`` of the same carried items (the
   complete-the-look endpoint it builds on) and the bare app's floor; then the target.

    .venv/bin/python benchmarks/kiosk_latency.py                  # 100k items, 30 s per scenario
    .venv/bin/python benchmarks/kiosk_latency.py --quick          # 5k items, 8 s
    .venv/bin/python benchmarks/kiosk_latency.py --bundles /tmp/x/bundles --data /tmp/x/data
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import sys
import time
from dataclasses import dataclass
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
import pandas as pd

from benchmarks._common import (
    DEFAULT_WORK,
    RetailerSpec,
    ensure_dataset,
    latest_bundle_dir,
    load_average,
    machine_info,
    now_iso,
    train_bundle,
)
from benchmarks._loadgen import LoadResult, LoadSpec, run_load
from benchmarks.serve_latency import Server, running, server_env
from feature_store.schema import ONLINE_STORE
from models.occasions import OCCASIONS
from training.report import markdown_table

TARGET_P99_MS = 50.0
TARGET_RATE = 20.0
MIN_ACHIEVED_FRACTION = 0.98
CARRIED_CATEGORIES = ("top", "bottom", "dress", "outerwear")
TRAIN_CONFIG = {"seed": 42, "als": {"factors": 32, "iterations": 8}, "sequence": {"enabled": False}}


@dataclass
class Outcome:
    title: str
    rate: float
    result: LoadResult | None
    error: str | None = None


def kiosk_bodies(data: Path, n: int, seed: int) -> tuple[list[bytes], list[bytes]]:
    """``n`` seeded kiosk request bodies and the matching ``/v1/complementary`` bodies."""
    rng = np.random.default_rng(seed)
    items = pd.read_parquet(data / "items.parquet", columns=["item_id", "category", "sizes"])
    stock = pd.read_parquet(data / "stock.parquet", columns=["store_id"])
    customers = pd.read_parquet(data / "customers.parquet", columns=["customer_id"])
    stores = sorted(set(stock["store_id"].astype(str)) - {ONLINE_STORE})
    pool = items[items["category"].isin(CARRIED_CATEGORIES)].reset_index(drop=True)
    occasions = list(OCCASIONS)
    kiosk: list[bytes] = []
    basket: list[bytes] = []
    for _ in range(n):
        picks = pool.iloc[rng.choice(len(pool), size=int(rng.integers(1, 3)), replace=False)]
        carried = []
        for row in picks.itertuples():
            entry: dict[str, object] = {"item_id": row.item_id}
            sizes = list(row.sizes)
            if len(sizes) > 1 and rng.random() < 1 / 3:
                entry["size"] = str(sizes[int(rng.integers(len(sizes)))])
                entry["fit"] = str(rng.choice(["too_small", "fits", "too_large"]))
            carried.append(entry)
        body: dict[str, object] = {"store_id": str(rng.choice(stores)), "items": carried}
        if rng.random() < 0.5:
            body["occasion"] = str(rng.choice(occasions))
        if rng.random() < 1 / 3:
            body["customer_id"] = str(customers["customer_id"].iloc[rng.integers(len(customers))])
        kiosk.append(json.dumps(body).encode())
        basket.append(json.dumps({"items": [c["item_id"] for c in carried]}).encode())
    return kiosk, basket


def measure(
    server: Server, title: str, path: str, bodies: list[bytes] | None, args: argparse.Namespace
) -> Outcome:
    spec = LoadSpec(
        port=server.port,
        paths=[path],
        rate=args.rate,
        warmup_s=args.warmup,
        duration_s=args.duration,
        bodies=bodies,
        max_connections=16,
    )
    print(
        f"[bench] {title}: {args.rate:g}/s for {args.warmup:g} s warm-up + {args.duration:g} s …",
        flush=True,
    )
    with mp.get_context("spawn").Pool(1) as pool:
        result = pool.apply(run_load, (spec,))
    return Outcome(title, args.rate, result)


def row(outcome: Outcome) -> list[object]:
    r = outcome.result
    if r is None:
        return [
            outcome.title,
            f"{outcome.rate:g}",
            f"not measured: {outcome.error}",
            "",
            "",
            "",
            "",
            "",
            "",
        ]
    lat = np.asarray(r.latencies_ms) if r.latencies_ms else np.asarray([np.nan])
    srv = np.asarray(r.server_ms) if r.server_ms else np.asarray([np.nan])
    errors = ", ".join(f"{k}={v}" for k, v in sorted(r.errors.items())) or "0"
    achieved = r.ok / r.window_s if r.window_s else 0.0
    return [
        outcome.title,
        f"{outcome.rate:g}",
        f"{achieved:.1f}",
        errors,
        f"{np.percentile(lat, 50):.2f}",
        f"{np.percentile(lat, 95):.2f}",
        f"{np.percentile(lat, 99):.2f}",
        f"{np.percentile(srv, 50):.2f}",
        f"{np.percentile(srv, 99):.2f}",
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--work", type=Path, default=DEFAULT_WORK, help="datasets and bundles")
    parser.add_argument("--data", type=Path, help="an existing synthetic retailer (with --bundles)")
    parser.add_argument("--bundles", type=Path, help="an existing bundles folder to serve")
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--rate", type=float, default=TARGET_RATE, help="requests per second")
    parser.add_argument("--warmup", type=float, default=5.0, help="seconds")
    parser.add_argument("--duration", type=float, default=30.0, help="recorded seconds")
    parser.add_argument("--requests", type=int, default=2000, help="distinct request bodies")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="5k customers × 5k items, 8 s runs")
    args = parser.parse_args(argv)
    if args.quick:
        args.customers, args.items, args.duration, args.warmup = 5000, 5000, 8.0, 2.0
    start = time.perf_counter()
    if (args.data is None) != (args.bundles is None):
        parser.error("give --data and --bundles together (or neither)")
    if args.bundles is not None:
        data, bundles = args.data, args.bundles
        print(f"[bench] reusing {data} and {bundles}", flush=True)
    else:
        spec = RetailerSpec(customers=args.customers, items=args.items, seed=42)
        data, _, reused = ensure_dataset(args.work, spec)
        print(
            f"[bench] retailer {spec.label}: {'reused' if reused else 'generated'} ({data})",
            flush=True,
        )
        bundles = args.work / "kiosk-bundles" / spec.name
        if latest_bundle_dir(bundles) is None:
            config = args.work / "kiosk-train.json"
            config.write_text(json.dumps(TRAIN_CONFIG))
            print("[bench] training the bundle (lookbook train) …", flush=True)
            train_bundle(
                data,
                bundles,
                log_path=args.work / "logs" / f"kiosk-train-{spec.name}.log",
                config=config,
            )
    bundle = latest_bundle_dir(bundles)
    assert bundle is not None, f"no bundle in {bundles}"
    kiosk, basket = kiosk_bodies(data, args.requests, args.seed)
    events = args.work / "kiosk-latency-events"
    lookbook = Server(
        "lookbook",
        "app.main:create_app",
        server_env({"LOOKBOOK_BUNDLE_DIR": str(bundles), "LOOKBOOK_EVENT_LOG_DIR": str(events)}),
        args.work / "logs" / "kiosk-latency-server.log",
    )
    bare = Server(
        "bare app",
        "benchmarks.bare_app:create_app",
        server_env({}),
        args.work / "logs" / "kiosk-latency-bare.log",
    )
    outcomes: list[Outcome] = []
    with running(bare, 60):
        outcomes.append(
            measure(bare, "baseline: bare FastAPI app (GET, fixed JSON)", "/bare", None, args)
        )
    with running(lookbook, 600):
        outcomes.append(
            measure(lookbook, "POST /v1/kiosk/outfits", "/v1/kiosk/outfits", kiosk, args)
        )
        outcomes.append(
            measure(
                lookbook,
                "baseline: POST /v1/complementary (same carried items)",
                "/v1/complementary",
                basket,
                args,
            )
        )
    items = len(pd.read_parquet(data / "items.parquet", columns=["item_id"]))
    print(f"\n## Kiosk latency ({items:,} items, bundle {bundle.name}, {now_iso()})\n")
    print(
        markdown_table(
            [
                "scenario",
                "offered/s",
                "achieved/s",
                "errors",
                "p50 ms",
                "p95 ms",
                "p99 ms",
                "server p50",
                "server p99",
            ],
            [row(o) for o in outcomes],
        )
    )
    kiosk_outcome = outcomes[1]
    r = kiosk_outcome.result
    if r is not None and r.latencies_ms:
        p99 = float(np.percentile(r.latencies_ms, 99))
        achieved = r.ok / r.window_s if r.window_s else 0.0
        ok = p99 <= TARGET_P99_MS and not r.errors and achieved >= MIN_ACHIEVED_FRACTION * args.rate
        print(
            f"\ntarget: p99 ≤ {TARGET_P99_MS:g} ms at {args.rate:g} req/s → p99 {p99:.1f} ms, "
            f"{'met' if ok else 'NOT met'}"
        )
    info = machine_info()
    print(
        f"\n{args.requests} distinct seeded requests (seed {args.seed}); one uvicorn worker, in-process "
        f"stores; machine: {info['cpu']}, {info['memory']}; load average "
        f"{load_average()}; {time.perf_counter() - start:.0f} s"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
