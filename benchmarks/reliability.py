"""The reliability suite (issue 14): real processes, real faults, one table.

Each scenario (``benchmarks/_reliability/<name>.py``) starts what it needs on loopback — the
service (``lookbook serve``), a private Redis or PostgreSQL to kill, its load — bounds every loop
in count and time, stops everything it started, and returns one row. ``--size short`` is the
version ``tests/test_reliability.py`` runs in CI; ``full`` the benchmark.

    .venv/bin/python benchmarks/reliability.py                        # every scenario, full size
    .venv/bin/python benchmarks/reliability.py redis_killed soak --size short

The exit code is 1 when a scenario's criteria did not hold (the table says which), else 0.
"""

from __future__ import annotations

import argparse
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._common import machine_info, now_iso
from benchmarks._reliability import SCENARIOS, run_scenario
from benchmarks._reliability.common import HEADERS, Row, Workspace, build_retailer, row_cells
from training.report import markdown_table


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")  # unwinds through every scenario's clean-up


def main(argv: list[str] | None = None) -> int:
    signal.signal(signal.SIGTERM, _interrupt)  # a SIGTERM (e.g. `timeout`) stops what we started
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("scenarios", nargs="*", choices=[*SCENARIOS, []], metavar="SCENARIO",
                        help=f"any of {', '.join(SCENARIOS)} (default: all)")  # fmt: skip
    parser.add_argument("--size", choices=["full", "short"], default="full")
    parser.add_argument("--work", type=Path, default=None,
                        help="folder for the retailer, logs and private servers' data (kept); "
                             "default: a temporary folder, removed afterwards")  # fmt: skip
    args = parser.parse_args(argv)
    names = args.scenarios or list(SCENARIOS)
    root = args.work or Path(tempfile.mkdtemp(prefix="lookbook-reliability-"))
    root.mkdir(parents=True, exist_ok=True)
    rows: list[Row] = []
    try:
        retailer = root / "retailer"
        if not (retailer / "bundles").is_dir():
            shutil.rmtree(retailer, ignore_errors=True)
            print(
                "[reliability] building the small synthetic retailer and its bundle …", flush=True
            )
            build_retailer(retailer)
        ws = Workspace(root, retailer / "data", retailer / "bundles")
        for name in names:
            print(f"[reliability] {name} ({args.size}) …", flush=True)
            started = time.monotonic()
            row = run_scenario(name, ws, args.size)
            row.seconds = time.monotonic() - started
            rows.append(row)
            print(markdown_table(HEADERS, [row_cells(row)]), flush=True)
    finally:
        if args.work is None:
            shutil.rmtree(root, ignore_errors=True)
    print(f"\n# Reliability suite, {args.size} size — {now_iso()}")
    print("; ".join(f"{k}: {v}" for k, v in machine_info().items()))
    print(markdown_table(HEADERS, [row_cells(r) for r in rows]))
    return 0 if all(r.ok for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
