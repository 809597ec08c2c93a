"""The reliability suite's scenarios, one module each (run by ``benchmarks/reliability.py`` and,
short, by ``tests/test_reliability.py``): each ``run(workspace, size)`` returns one
:class:`~benchmarks._reliability.common.Row`."""

from __future__ import annotations

import importlib
import traceback

from benchmarks._reliability.common import Row, Size, Workspace

#: scenario name → module (``benchmarks/_reliability/<module>.py``), in the table's order.
SCENARIOS: dict[str, str] = {
    "openapi": "openapi",
    "redis_killed": "redis_kill",
    "postgres_stopped": "postgres_stop",
    "kill9": "kill9",
    "bad_bundles": "bad_bundles",
    "hostile_input": "hostile",
    "auth": "auth",
    "erasure": "erasure",
    "soak": "soak",
}


def run_scenario(name: str, ws: Workspace, size: Size) -> Row:
    """Run one scenario; an exception becomes a failed row (the rest of the suite still runs)."""
    module = importlib.import_module(f"benchmarks._reliability.{SCENARIOS[name]}")
    try:
        row: Row = module.run(ws, size)
    except Exception as exc:
        traceback.print_exc()
        row = Row(name, "–", "–", problems=[f"crashed: {type(exc).__name__}: {exc}"])
    return row
