"""Training at scale: wall time, CPU time and peak memory of ``lookbook train`` end to end (load →
split → fit → evaluate → refit → bundle) on synthetic retailers of 1M and 10M interactions, plus
the time ``lookbook generate`` took to make each.

Both commands run as child processes; peak memory is the kernel's high-water mark of the largest
process (``wait4`` rusage) and the largest sampled sum over the live process tree (``/proc``).
Generated data is reused from ``--work`` (its generation figures were recorded when it was made);
every run trains afresh, and the new bundle then replaces the one ``serve_latency.py`` reuses for
the same data (``<work>/bundles/<data>/``).

    .venv/bin/python benchmarks/train_scale.py                          # 1M and 10M interactions
    .venv/bin/python benchmarks/train_scale.py --sizes 2000x10 --items 500     # smoke test
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import sys
import time
from dataclasses import asdict
from pathlib import Path
from types import FrameType
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._common import (
    DEFAULT_WORK,
    BenchError,
    RetailerSpec,
    busy_processes,
    ensure_dataset,
    human_bytes,
    human_count,
    load_average,
    machine_info,
    now_iso,
    read_manifest,
    save_json,
    train_bundle,
)
from training.report import markdown_table

#: issue 15: 10M interactions within 8 minutes, H&M scale (30M+) within 20 minutes
TARGETS: tuple[tuple[int, float], ...] = ((9_000_000, 480.0), (25_000_000, 1200.0))
PHASES = (
    "load",
    "prepare",
    "fit_eval_models",
    "fit_eval_sequence",
    "evaluate",
    "blend",
    "refit_full",
    "refit_sequence",
    "write",
    "write_sequence",
    "total",
)


def parse_sizes(text: str) -> list[tuple[int, float]]:
    """``"100000x10,1000000x10"`` → [(customers, interactions per customer), ...]."""
    sizes = []
    for part in text.split(","):
        customers, _, per = part.strip().partition("x")
        sizes.append((int(customers), float(per or 10)))
    return sizes


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--work", type=Path, default=DEFAULT_WORK, help="cache of data and logs")
    parser.add_argument(
        "--sizes",
        default="100000x10,1000000x10",
        help="comma-separated CUSTOMERSxINTERACTIONS_PER_CUSTOMER",
    )
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--data-seed", type=int, default=42, help="seed of `lookbook generate`")
    parser.add_argument("--config", type=Path, default=None, help="`lookbook train --config` file")
    parser.add_argument("--regenerate", action="store_true", help="generate (and time) afresh")
    parser.add_argument("--quiet", action="store_true", help="do not echo generate/train output")
    args = parser.parse_args(argv)
    args.work = args.work.resolve()
    return args


def count_rows(path: Path) -> int | None:
    import pyarrow.parquet as pq

    try:
        return int(pq.ParquetFile(path).metadata.num_rows)
    except OSError:
        return None


def publish_for_serving(work: Path, spec: RetailerSpec, bundle: Path) -> Path:
    """Move the fresh bundle to where ``serve_latency.py`` reuses bundles from, replacing the
    older ones there (they are the benchmarks' own cache), so that it serves the current trainer."""
    serving = work / "bundles" / spec.name
    serving.mkdir(parents=True, exist_ok=True)
    for old in serving.iterdir():
        if old.is_dir() and old.name != bundle.name:
            shutil.rmtree(old, ignore_errors=True)
    target = serving / bundle.name
    os.replace(bundle, target)
    return target


def measure(args: argparse.Namespace, customers: int, per_customer: float) -> dict[str, Any]:
    spec = RetailerSpec(
        customers=customers,
        items=args.items,
        seed=args.data_seed,
        interactions_per_customer=per_customer,
    )
    data, record, reused = ensure_dataset(
        args.work, spec, force=args.regenerate, echo=not args.quiet
    )
    scratch = args.work / "train_scale" / spec.name
    shutil.rmtree(scratch, ignore_errors=True)  # only this script's own earlier bundles
    print(f"[bench] timing `lookbook train` on {spec.label} …", flush=True)
    bundle, stats = train_bundle(
        data,
        scratch / "bundles",
        log_path=args.work / "logs" / f"train_scale-{spec.name}.log",
        config=args.config,
        echo=not args.quiet,
    )
    manifest = read_manifest(bundle)
    bundle = publish_for_serving(args.work, spec, bundle)
    row = {
        "spec": asdict(spec),
        "label": spec.label,
        "interactions": manifest.get("data", {}).get("interactions")
        or count_rows(data / "interactions.parquet"),
        "generate": record["stats"],
        "generate_date": record["date"],
        "generate_reused": reused,
        "train": asdict(stats),
        "phases": manifest.get("timings_seconds", {}),
        "metrics": manifest.get("metrics", {}),
        "bundle": str(bundle),
    }
    print(
        f"[bench] {spec.label}: train {stats.wall_s:.1f} s, peak RSS "
        f"{human_bytes(stats.peak_rss_bytes)}",
        flush=True,
    )
    return row


def format_tables(rows: list[dict[str, Any]]) -> str:
    main_rows = []
    for r in rows:
        gen, tr = r["generate"], r["train"]
        gen_note = f" (cached, {r['generate_date'][:10]})" if r["generate_reused"] else ""
        main_rows.append(
            [
                r["label"],
                f"{r['interactions']:,}" if r["interactions"] else "?",
                f"{gen['wall_s']:.1f} s{gen_note}",
                human_bytes(gen["peak_rss_bytes"]),
                f"{tr['wall_s']:.1f} s",
                f"{tr['cpu_s']:.0f} s",
                human_bytes(tr["peak_rss_bytes"]),
                human_bytes(tr["peak_tree_rss_bytes"]),
                f"{gen['wall_s'] + tr['wall_s']:.1f} s",
            ]
        )
    out = markdown_table(
        [
            "data",
            "interactions",
            "generate wall",
            "generate peak RSS",
            "train wall",
            "train CPU",
            "train peak RSS",
            "train peak tree RSS",
            "generate + train",
        ],
        main_rows,
    )
    phases = [p for p in PHASES if any(p in r["phases"] for r in rows)]
    for r in rows:  # phases a newer trainer records, before the total
        phases[-1:-1] = [p for p in r["phases"] if p not in phases]
    phase_rows = [
        [r["label"], *(f"{r['phases'][p]:.1f}" if p in r["phases"] else "–" for p in phases)]
        for r in rows
    ]
    out += "\n\n`lookbook train` phases (seconds, from the bundle manifest):\n\n"
    out += markdown_table(["data", *phases], phase_rows)
    metric_rows = []
    for r in rows:
        for model, values in r["metrics"].items():
            metric_rows.append(
                [
                    r["label"],
                    model,
                    *(f"{values.get(m, float('nan')):.4f}" for m in ("recall@12", "map@12")),
                ]
            )
    if metric_rows:
        out += (
            "\n\nheld-out metrics printed by the trainer (synthetic data: a sanity check only):\n\n"
        )
        out += markdown_table(["data", "model", "recall@12", "map@12"], metric_rows)
    return out


def format_target(rows: list[dict[str, Any]]) -> str:
    """The issue-15 targets for the sizes measured: ≤ 8 min from 10M interactions, ≤ 20 min
    from 30M (H&M scale), peak memory within the machine (no swap)."""
    table = []
    for r in rows:
        n = r["interactions"] or 0
        limits = [limit for floor, limit in TARGETS if n >= floor]
        if not limits:
            continue
        limit = limits[-1]
        wall = r["train"]["wall_s"]
        table.append(
            [
                f"`lookbook train` on {human_count(n)} interactions, end to end",
                f"≤ {limit / 60:g} min",
                f"{wall / 60:.1f} min ({wall:.0f} s), peak RSS {human_bytes(r['train']['peak_rss_bytes'])}",
                "yes" if wall <= limit else "no",
            ]
        )
    if not table:
        return "targets (10M interactions ≤ 8 min, 30M ≤ 20 min): not measured at these sizes"
    return markdown_table(["target", "limit", "measured", "met"], table)


def _raise_interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _raise_interrupt)
    started = now_iso()
    load_before, busy_before = load_average(), busy_processes()
    rows: list[dict[str, Any]] = []
    try:
        for customers, per_customer in parse_sizes(args.sizes):
            rows.append(measure(args, customers, per_customer))
    except KeyboardInterrupt:
        print("\n[bench] interrupted; child processes stopped", file=sys.stderr)
        return 130
    except BenchError as exc:
        print(f"[bench] error: {exc}", file=sys.stderr)
        if not rows:
            return 2
    load_after, busy_after = load_average(), busy_processes()
    info = machine_info()
    print()
    print(f"## train_scale — {started}")
    print()
    print(
        f"machine: {info['cpu']}, {info['memory']}, Python {info['python']}; load average "
        f"(1/5/15 min) before {load_before}, after {load_after}"
    )
    for label, busy in (("before", busy_before), ("after", busy_after)):
        if busy:
            print(f"other busy processes {label}: " + "; ".join(busy))
    print(f"config: {args.config or 'defaults (training/train.py:TrainConfig)'}")
    print()
    print(format_tables(rows))
    print()
    print(format_target(rows))
    out = args.work / "results" / f"train_scale-{time.strftime('%Y%m%dT%H%M%S')}.json"
    save_json(
        out,
        {
            "started": started,
            "machine": info,
            "load_average": {"before": load_before, "after": load_after},
            "busy": {"before": busy_before, "after": busy_after},
            "args": {k: str(v) for k, v in vars(args).items()},
            "rows": rows,
        },
    )
    print(f"\nresults: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
