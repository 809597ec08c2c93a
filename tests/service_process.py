"""The service as real processes for the fleet tests: ``lookbook serve`` (uvicorn, workers) in a
subprocess of its own session, on a free port, with this worktree's code, stopped with its workers.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path

import httpx
import pytest

from benchmarks._common import child_env, log_tail, stop_process_group
from helpers import free_port


class ServiceProcess:
    """``python -m training.cli serve`` on a free port; :meth:`start` waits until it is ready."""

    def __init__(self, log: Path, env: Mapping[str, str], *, workers: int = 1) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = log
        self.env = child_env(env)
        self.workers = workers
        self.proc: subprocess.Popen[bytes] | None = None

    def command(self) -> list[str]:
        return [
            sys.executable,
            "-m",
            "training.cli",
            "serve",
            "--port",
            str(self.port),
            "--workers",
            str(self.workers),
        ]

    def start(self, timeout: float = 90.0) -> ServiceProcess:
        """Launch it and wait until it is ready."""
        self.launch()
        self.wait_ready(timeout)
        return self

    def launch(self) -> None:
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(
                self.command(),
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def wait_ready(self, timeout: float = 90.0) -> None:
        """Until every worker has started and ``/readyz`` answers 200 (a bundle is loaded);
        fails with the log's tail."""
        assert self.proc is not None, "not launched"
        deadline = time.monotonic() + timeout
        with httpx.Client(base_url=self.url, timeout=2.0) as http:
            while True:
                if self.proc.poll() is not None:
                    raise AssertionError(f"the service exited:\n{log_tail(self.log)}")
                if time.monotonic() > deadline:
                    self.stop()
                    raise AssertionError(f"the service was not ready:\n{log_tail(self.log)}")
                try:
                    if http.get("/readyz").status_code == 200 and self._started() >= self.workers:
                        return
                except httpx.TransportError:
                    pass
                time.sleep(0.2)

    def _started(self) -> int:
        """Workers whose start-up has completed (uvicorn logs it once per worker)."""
        return self.log.read_text(errors="replace").count("Application startup complete.")

    def stop(self) -> None:
        if self.proc is not None:
            stop_process_group(self.proc, grace_s=15.0)  # type: ignore[arg-type]
            self.proc = None


#: The event stores a fleet test runs over: the file log (a shared directory) and PostgreSQL.
STORES = ["file", pytest.param("postgres", marks=pytest.mark.postgres)]


def store_env(
    request: pytest.FixtureRequest, root: Path, store: str
) -> tuple[dict[str, str], str | Path]:
    """The service's environment for the event store ``store`` (one of :data:`STORES`),
    and the store's location for :func:`~feature_store.event_store.open_event_store`. The
    PostgreSQL database is the run's (``postgres_url``), its tables emptied first."""
    env = {"LOOKBOOK_EVENT_LOG_DIR": str(root / "events")}
    if store == "file":
        return env, root / "events"
    url: str = request.getfixturevalue("postgres_url")
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("TRUNCATE events, consents, erasures RESTART IDENTITY")
    return {**env, "LOOKBOOK_DATABASE_URL": url}, url
