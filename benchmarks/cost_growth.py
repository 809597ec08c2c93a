"""How cost grows: server CPU per request against the catalogue size, and training time and memory
against the number of interactions — a table and a PNG plot.

This script orchestrates the existing benchmarks and measures nothing itself:

- serving: for each ``--items-sizes`` value M it runs ``benchmarks/serve_latency.py --only
  personalized_uncached,similar_uncached --no-redis --rate R --customers N --items M`` (N =
  ``--customers``, 10 interactions per customer; R low enough not to saturate the server) and
  reads the result it writes (``WORK/results/serve_latency-*.json``): server CPU ms per request
  and server p50 of both scenarios;
- training: for each ``--train-sizes`` value CUSTOMERSxINTERACTIONS_PER_CUSTOMER it runs
  ``benchmarks/train_scale.py --sizes CxI --items I`` (I = ``--train-items``) and reads its result
  (``WORK/results/train_scale-*.json``): wall time, CPU time, peak memory and the time of each
  ``lookbook train`` phase (the dominating one is named in the table).

Each run writes its own JSON into ``WORK/results`` as usual, so heavy sizes can be run one at a
time (by this script with one size, or by the two benchmarks directly) and the table assembled
afterwards with ``--from-results``, which runs nothing and takes, for every size asked for, the
newest result of that size found in ``WORK/results``.

Output: a Markdown table (printed), ``WORK/results/cost_growth-<stamp>.json`` and a PNG (``--png``,
default ``WORK/results/cost_growth.png``; matplotlib, from the ``bench`` extra) with two panels:
server CPU ms per request against items (log x) for the personalized and similar-items lists,
and training wall minutes and peak GiB against interactions (log x).

    .venv/bin/python benchmarks/cost_growth.py                       # full sizes: hours
    .venv/bin/python benchmarks/cost_growth.py --skip-train --items-sizes 500000
    .venv/bin/python benchmarks/cost_growth.py --from-results        # table and plot only
    .venv/bin/python benchmarks/cost_growth.py --items-sizes 500,800 --customers 2000 \\
        --train-sizes 2000x5 --train-items 500 --duration 3 --warmup 1   # smoke test
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import time
from collections.abc import Callable, Collection
from functools import partial
from pathlib import Path
from types import FrameType
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._common import (
    DEFAULT_WORK,
    BenchError,
    RetailerSpec,
    human_bytes,
    human_count,
    load_average,
    log_tail,
    machine_info,
    now_iso,
    run_measured,
    save_json,
)
from benchmarks.train_scale import PHASES, parse_sizes
from training.report import markdown_table

HERE = Path(__file__).resolve().parent
SERVE_SCENARIOS = ("personalized_uncached", "similar_uncached")
SERVE_INTERACTIONS_PER_CUSTOMER = 10.0
GIB = float(1 << 30)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--work", type=Path, default=DEFAULT_WORK, help="cache of data, results")
    parser.add_argument(
        "--items-sizes", default="10000,100000,500000", help="comma-separated item counts (serving)"
    )
    parser.add_argument("--customers", type=int, default=1_000_000, help="customers (serving)")
    parser.add_argument("--rate", type=float, default=100.0, help="requests per second (serving)")
    parser.add_argument(
        "--duration", type=float, default=20.0, help="recorded seconds per scenario (serving)"
    )
    parser.add_argument("--warmup", type=float, default=5.0, help="unrecorded seconds (serving)")
    parser.add_argument(
        "--train-sizes",
        default="100000x10,1000000x10,1370000x22",
        help="comma-separated CUSTOMERSxINTERACTIONS_PER_CUSTOMER (training)",
    )
    parser.add_argument("--train-items", type=int, default=105_000, help="items (training)")
    parser.add_argument("--skip-serve", action="store_true", help="no serving measurements")
    parser.add_argument("--skip-train", action="store_true", help="no training measurements")
    parser.add_argument(
        "--from-results",
        action="store_true",
        help="run nothing: build the table and plot from the newest results in WORK/results",
    )
    parser.add_argument(
        "--png", type=Path, default=None, help="default WORK/results/cost_growth.png"
    )
    parser.add_argument(
        "--timeout", type=float, default=12 * 3600.0, help="seconds per benchmark subprocess"
    )
    parser.add_argument("--quiet", action="store_true", help="do not echo the benchmarks' output")
    args = parser.parse_args(argv)
    args.work = args.work.resolve()
    args.items_list = [int(v) for v in args.items_sizes.split(",") if v.strip()]
    args.train_list = parse_sizes(args.train_sizes)
    args.png = (args.png or args.work / "results" / "cost_growth.png").resolve()
    return args


# -- reading the benchmarks' results -----------------------------------------------------------------


def result_files(work: Path, prefix: str) -> list[Path]:
    """``WORK/results/<prefix>-<stamp>.json``, newest first (the stamp sorts by time)."""
    return sorted((work / "results").glob(f"{prefix}-*.json"), reverse=True)


def read_json(path: Path) -> dict[str, Any] | None:
    try:
        payload: dict[str, Any] = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    return payload


def as_float(value: Any) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def serve_row(path: Path, payload: dict[str, Any]) -> dict[str, Any]:
    """The figures of one ``serve_latency`` result for the table."""
    scenarios = {s["key"]: s for s in payload.get("scenarios", [])}
    row: dict[str, Any] = {
        "items": int(payload["args"]["items"]),
        "customers": int(payload["args"]["customers"]),
        "rate": as_float(payload["args"].get("rate")),
        "duration_s": as_float(payload["args"].get("duration")),
        "started": payload.get("started"),
        "source": str(path),
    }
    for key in SERVE_SCENARIOS:
        s = scenarios.get(key, {})
        stats = s.get("stats") or {}
        row[key] = {
            "server_cpu_ms_per_req": s.get("server_cpu_ms_per_req"),
            "server_p50_ms": stats.get("server_p50"),
            "p99_ms": stats.get("p99"),
            "errors": stats.get("errors"),
            "achieved_rps": stats.get("achieved_rps"),
            "server_rss": s.get("server_rss"),
            "error": s.get("error"),
        }
    return row


def find_serve_result(
    work: Path,
    customers: int,
    items: int,
    exclude: Collection[Path] = (),
) -> dict[str, Any] | None:
    """The newest ``serve_latency`` result of ``customers`` × ``items`` (10 interactions per
    customer) that measured at least one of :data:`SERVE_SCENARIOS`."""
    for path in result_files(work, "serve_latency"):
        if path in exclude:
            continue
        payload = read_json(path)
        if payload is None:
            continue
        args = payload.get("args", {})
        try:
            same = (
                int(args["customers"]) == customers
                and int(args["items"]) == items
                and float(args["interactions_per_customer"]) == SERVE_INTERACTIONS_PER_CUSTOMER
            )
        except (KeyError, TypeError, ValueError):
            continue
        measured = {
            s.get("key") for s in payload.get("scenarios", []) if s.get("server_cpu_ms_per_req")
        }
        if same and measured & set(SERVE_SCENARIOS):
            return serve_row(path, payload)
    return None


def find_train_result(
    work: Path,
    spec: RetailerSpec,
    exclude: Collection[Path] = (),
) -> dict[str, Any] | None:
    """The newest ``train_scale`` row of ``spec`` (customers, items, interactions per customer,
    seed), with the file it came from."""
    for path in result_files(work, "train_scale"):
        if path in exclude:
            continue
        payload = read_json(path)
        if payload is None:
            continue
        for row in payload.get("rows", []):
            s = row.get("spec", {})
            if (
                s.get("customers") == spec.customers
                and s.get("items") == spec.items
                and s.get("seed") == spec.seed
                and float(s.get("interactions_per_customer", -1)) == spec.interactions_per_customer
            ):
                return {**row, "source": str(path), "started": payload.get("started")}
    return None


# -- running the benchmarks --------------------------------------------------------------------------


def run_benchmark(script: str, cli: list[str], args: argparse.Namespace, log_name: str) -> None:
    """``python benchmarks/<script> <cli>`` to completion (its output echoed unless --quiet)."""
    cmd = [sys.executable, str(HERE / script), *cli, "--work", str(args.work)]
    if args.quiet:
        cmd.append("--quiet")
    print(f"[cost_growth] $ {' '.join(cmd)}", flush=True)
    log = args.work / "logs" / f"cost_growth-{log_name}-{time.strftime('%Y%m%dT%H%M%S')}.log"
    stats = run_measured(cmd, log_path=log, timeout_s=args.timeout, echo=not args.quiet)
    if stats.returncode != 0:
        raise BenchError(
            f"{script} failed (exit {stats.returncode}); log: {stats.log}\n{log_tail(stats.log)}"
        )
    print(f"[cost_growth] {script} done in {stats.wall_s:.0f} s", flush=True)


def measure_serving(args: argparse.Namespace, items: int) -> dict[str, Any] | None:
    before = set(result_files(args.work, "serve_latency"))
    cli = [
        "--only",
        ",".join(SERVE_SCENARIOS),
        "--no-redis",
        "--rate",
        f"{args.rate:g}",
        "--duration",
        f"{args.duration:g}",
        "--warmup",
        f"{args.warmup:g}",
        "--customers",
        str(args.customers),
        "--items",
        str(items),
        "--interactions-per-customer",
        f"{SERVE_INTERACTIONS_PER_CUSTOMER:g}",
    ]
    run_benchmark("serve_latency.py", cli, args, f"serve-i{items}")
    return find_serve_result(args.work, args.customers, items, exclude=before)


def measure_training(args: argparse.Namespace, spec: RetailerSpec) -> dict[str, Any] | None:
    before = set(result_files(args.work, "train_scale"))
    size = f"{spec.customers}x{spec.interactions_per_customer:g}"
    cli = ["--sizes", size, "--items", str(spec.items)]
    run_benchmark("train_scale.py", cli, args, f"train-{size}")
    return find_train_result(args.work, spec, exclude=before)


# -- report ------------------------------------------------------------------------------------------


def fmt(value: Any, spec: str = ".3f") -> str:
    number = as_float(value)
    return "–" if number is None or number != number else format(number, spec)


def dominating_phase(phases: dict[str, float]) -> tuple[str, float] | None:
    """The ``lookbook train`` phase that took longest (the total aside)."""
    timed = {k: v for k, v in phases.items() if k != "total" and isinstance(v, int | float)}
    if not timed:
        return None
    name = max(timed, key=lambda k: timed[k])
    return name, float(timed[name])


def interactions_of(row: dict[str, Any]) -> float:
    spec = row["spec"]
    return float(row.get("interactions") or spec["customers"] * spec["interactions_per_customer"])


def format_serve_table(items_list: list[int], rows: dict[int, dict[str, Any] | None]) -> str:
    table = []
    for items in items_list:
        row = rows.get(items)
        if row is None:
            table.append([f"{items:,}", *["–"] * 6, "not measured"])
            continue
        p, s = row["personalized_uncached"], row["similar_uncached"]
        errors = sum(int(as_float(x["errors"]) or 0) for x in (p, s))
        table.append(
            [
                f"{items:,}",
                f"{human_count(row['customers'])} @ {fmt(row['rate'], 'g')}/s",
                fmt(p["server_cpu_ms_per_req"]),
                fmt(p["server_p50_ms"], ".2f"),
                fmt(s["server_cpu_ms_per_req"]),
                fmt(s["server_p50_ms"], ".2f"),
                str(errors),
                f"{Path(row['source']).name} ({(row['started'] or '')[:16]})",
            ]
        )
    return markdown_table(
        [
            "items",
            "customers @ rate",
            "personalized CPU ms/req",
            "personalized server p50 ms",
            "similar CPU ms/req",
            "similar server p50 ms",
            "errors",
            "result",
        ],
        table,
    )


def format_train_tables(specs: list[RetailerSpec], rows: dict[RetailerSpec, Any]) -> str:
    table = []
    for spec in specs:
        row = rows.get(spec)
        if row is None:
            table.append([spec.label, *["–"] * 6, "not measured"])
            continue
        train, dominant = row["train"], dominating_phase(row.get("phases", {}))
        total = row.get("phases", {}).get("total") or train["wall_s"]
        table.append(
            [
                spec.label,
                f"{interactions_of(row):,.0f}",
                f"{train['wall_s'] / 60:.2f}",
                f"{train['cpu_s'] / 60:.2f}",
                human_bytes(train["peak_rss_bytes"]),
                human_bytes(train["peak_tree_rss_bytes"]),
                "–"
                if dominant is None
                else f"{dominant[0]} ({dominant[1]:.1f} s, {dominant[1] / total:.0%})",
                f"{Path(row['source']).name} ({(row.get('started') or '')[:16]})",
            ]
        )
    out = markdown_table(
        [
            "data",
            "interactions",
            "train wall min",
            "train CPU min",
            "peak RSS (largest process)",
            "peak tree RSS",
            "dominating phase",
            "result",
        ],
        table,
    )
    measured = [(spec, rows[spec]) for spec in specs if rows.get(spec) is not None]
    phases = [p for p in PHASES if any(p in r.get("phases", {}) for _, r in measured)]
    for _, r in measured:  # phases a newer trainer records, before the total
        phases[-1:-1] = [p for p in r.get("phases", {}) if p not in phases]
    if measured and phases:
        out += "\n\n`lookbook train` phases (seconds, from the bundle manifest):\n\n"
        out += markdown_table(
            ["data", *phases],
            [
                [spec.label, *(fmt(r["phases"].get(p), ".1f") for p in phases)]
                for spec, r in measured
            ],
        )
    return out


def plot(
    serve: dict[int, dict[str, Any] | None], train: dict[RetailerSpec, Any], path: Path
) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed (pip install -e '.[bench]'): no plot, figures only")
        return False
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5))
    served = sorted(
        ((items, row) for items, row in serve.items() if row is not None), key=lambda p: p[0]
    )
    for key, label in (("personalized_uncached", "personalized"), ("similar_uncached", "similar")):
        points = [
            (items, row[key]["server_cpu_ms_per_req"])
            for items, row in served
            if row[key]["server_cpu_ms_per_req"]
        ]
        if points:
            xs, ys = zip(*points, strict=True)
            left.plot(xs, ys, marker="o", label=label)
    left.set_xscale("log")
    left.set_xlabel("items")
    left.set_ylabel("server CPU ms per request")
    left.set_title("serving (uncached lists)")
    left.grid(alpha=0.3, which="both")
    if served:
        left.legend()
        left.set_ylim(bottom=0)
    else:
        left.text(0.5, 0.5, "not measured", ha="center", transform=left.transAxes)
    trained = sorted(
        ((interactions_of(row), row) for row in train.values() if row is not None),
        key=lambda pair: pair[0],
    )
    if trained:
        sizes = [x for x, _ in trained]
        minutes = [r["train"]["wall_s"] / 60 for _, r in trained]
        gib = [r["train"]["peak_tree_rss_bytes"] / GIB for _, r in trained]
        right.plot(sizes, minutes, "o-", label="wall minutes")
        for x, m, g in zip(sizes, minutes, gib, strict=True):
            right.annotate(
                f"{m:.1f} min, {g:.1f} GiB",
                (x, m),
                textcoords="offset points",
                xytext=(6, -12),
                fontsize=8,
            )
        right.set_ylabel("`lookbook train` wall minutes")
        right.set_ylim(0, max(minutes) * 1.25)
        memory = right.twinx()
        memory.plot(sizes, gib, "s--", color="tab:red", label="peak GiB (process tree)")
        memory.set_ylabel("peak GiB")
        memory.set_ylim(0, max(gib) * 1.25)
        handles = right.get_legend_handles_labels()[0] + memory.get_legend_handles_labels()[0]
        right.legend(handles, [str(h.get_label()) for h in handles], loc="lower right")
    else:
        right.text(0.5, 0.5, "not measured", ha="center", transform=right.transAxes)
    right.set_xscale("log")
    right.set_xlabel("interactions")
    right.set_title("training")
    right.grid(alpha=0.3, which="both")
    fig.suptitle("How cost grows")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True


def _gather(run: Callable[[], Any], what: str, failures: list[str]) -> Any:
    """``run()`` (a measurement, or a result found in ``--work``); None when it fails, with the
    failure noted in ``failures`` (the table shows the size as not measured)."""
    try:
        return run()
    except BenchError as exc:
        print(f"[cost_growth] {exc}", file=sys.stderr)
        failures.append(f"{what}: {str(exc).splitlines()[0]}")
        return None


def _raise_interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _raise_interrupt)  # run_measured stops its child on the way out
    started, load_before = now_iso(), load_average()
    specs = [
        RetailerSpec(customers=c, items=args.train_items, interactions_per_customer=per)
        for c, per in args.train_list
    ]
    serve: dict[int, dict[str, Any] | None] = {}
    train: dict[RetailerSpec, Any] = {}
    failures: list[str] = []
    try:
        if not args.skip_serve:
            for items in args.items_list:
                serve[items] = _gather(
                    partial(find_serve_result, args.work, args.customers, items)
                    if args.from_results
                    else partial(measure_serving, args, items),
                    f"serving, {items} items",
                    failures,
                )
        if not args.skip_train:
            for spec in specs:
                train[spec] = _gather(
                    partial(find_train_result, args.work, spec)
                    if args.from_results
                    else partial(measure_training, args, spec),
                    f"training, {spec.label}",
                    failures,
                )
    except KeyboardInterrupt:
        print("\n[cost_growth] interrupted; child processes stopped", file=sys.stderr)
        return 130

    info = machine_info()
    print()
    print(f"## cost_growth — {started}")
    print()
    print(
        f"machine: {info['cpu']}, {info['memory']}, Python {info['python']}; load average "
        f"(1/5/15 min) before {load_before}, after {load_average()}"
        + ("; from existing results, nothing run" if args.from_results else "")
    )
    if not args.skip_serve:
        print()
        print(
            f"Serving: server CPU per request and server p50 of uncached lists "
            f"(benchmarks/serve_latency.py, {human_count(args.customers)} customers × "
            f"{SERVE_INTERACTIONS_PER_CUSTOMER:g} interactions, one worker, requests at a rate "
            f"that does not saturate the server):"
        )
        print()
        print(format_serve_table(args.items_list, serve))
    if not args.skip_train:
        print()
        print("Training: `lookbook train` end to end (benchmarks/train_scale.py):")
        print()
        print(format_train_tables(specs, train))
    for failure in failures:
        print(f"failed: {failure}")
    results = args.work / "results"
    out = results / f"cost_growth-{time.strftime('%Y%m%dT%H%M%S')}.json"
    save_json(
        out,
        {
            "started": started,
            "machine": info,
            "args": {k: str(v) for k, v in vars(args).items()},
            "from_results": args.from_results,
            "serve": [serve.get(items) or {"items": items} for items in args.items_list]
            if not args.skip_serve
            else [],
            "train": [
                {
                    **(train.get(spec) or {"spec": spec.__dict__}),
                    "dominating_phase": dominating_phase((train.get(spec) or {}).get("phases", {})),
                }
                for spec in specs
            ]
            if not args.skip_train
            else [],
            "failures": failures,
        },
    )
    print(f"\nresults: {out}")
    if plot(serve, train, args.png):
        print(f"plot: {args.png}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
