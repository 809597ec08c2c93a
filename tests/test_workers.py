"""``lookbook serve --workers N`` with N > 1 and no ``REDIS_URL`` is refused with a clear message
(the workers would not share online state). That every worker of ``--workers 2`` accepts events
is checked on replica A of ``tests/test_replicas.py``, over both event stores."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from benchmarks._common import child_env


def test_workers_without_redis_are_refused(tmp_path: Path) -> None:
    env = child_env({"LOOKBOOK_BUNDLE_DIR": str(tmp_path / "none")})
    env.pop("REDIS_URL", None)
    env.pop("LOOKBOOK_REDIS_URL", None)
    done = subprocess.run(
        [sys.executable, "-m", "training.cli", "serve", "--workers", "2", "--port", "1"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode != 0
    assert "--workers 2 needs REDIS_URL" in done.stderr, done.stderr
    helped = subprocess.run(
        [sys.executable, "-m", "training.cli", "serve", "--help"],
        env={**env, "COLUMNS": "200"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert helped.returncode == 0
    assert "needs REDIS_URL" in " ".join(helped.stdout.split())
