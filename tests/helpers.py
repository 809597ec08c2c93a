"""Builders shared by tests: a small synthetic retailer and a bundle trained on it, made once."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

from feature_store.synthetic import generate
from training.train import ALSConfig, TrainConfig, train

SMALL_CUSTOMERS = 800
SMALL_ITEMS = 400
SMALL_CONFIG = TrainConfig(seed=7, test_days=14, als=ALSConfig(factors=16, iterations=6))


def build_small_retailer(root: Path) -> tuple[Path, Path]:
    """(data folder, bundles folder) of a small synthetic retailer with one trained bundle."""
    data = root / "data"
    bundles = root / "bundles"
    generate(data, customers=SMALL_CUSTOMERS, items=SMALL_ITEMS, seed=7)
    train(data, bundles, config=SMALL_CONFIG, progress=False)
    return data, bundles


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class RedisServer:
    """A private redis-server process on a free port, which a test can stop and start again."""

    def __init__(self, workdir: Path) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise FileNotFoundError("redis-server is not installed")
        self.binary = binary
        self.port = free_port()
        self.workdir = workdir
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [
                self.binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.workdir),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"redis-server did not start on port {self.port}")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(timeout=10)
            self.proc = None


def redis_server_required() -> bool:
    return os.environ.get("CI") == "true" or os.environ.get("LOOKBOOK_REQUIRE_REDIS") == "1"
