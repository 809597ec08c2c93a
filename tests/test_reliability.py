"""The reliability suite's short version (issue 14): each scenario of ``benchmarks/reliability.py``
at CI size against real processes — the service started with ``lookbook serve``, private Redis and
PostgreSQL servers killed and restarted — and every criterion of its row must hold. The full
size is ``python benchmarks/reliability.py`` (figures in ``benchmarks/README.md``)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from benchmarks._reliability import SCENARIOS, run_scenario
from benchmarks._reliability.common import HEADERS, Workspace, row_cells
from helpers import postgres_missing, redis_missing
from training.report import markdown_table

pytestmark = pytest.mark.slow

NEEDS = {
    "redis_killed": {"redis"},
    "postgres_stopped": {"postgres"},
    "kill9": {"redis", "postgres"},
    "erasure": {"redis", "postgres"},
    "soak": {"redis"},
}


def _require(needs: set[str]) -> None:
    if "redis" in needs and shutil.which("redis-server") is None:
        redis_missing("redis-server is not installed (the scenario starts and kills its own)")
    if "postgres" in needs and not (
        sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb")) or shutil.which("initdb")
    ):
        postgres_missing(
            "PostgreSQL's initdb is not installed (the scenario runs a cluster of its own)"
        )


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_scenario_short(name: str, retailer: tuple[Path, Path], tmp_path: Path) -> None:
    _require(NEEDS.get(name, set()))
    data, bundles = retailer
    row = run_scenario(name, Workspace(tmp_path, data, bundles), "short")
    table = markdown_table(HEADERS, [row_cells(row)])
    print(table)
    assert row.ok, table
    assert row.requests > 0, table
