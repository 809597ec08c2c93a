"""Builders shared by tests: a small synthetic retailer and a bundle trained on it, made once."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
import types
from pathlib import Path
from typing import Any, NoReturn, Union, get_args, get_origin

import pytest
import redis
from pydantic import BaseModel

from benchmarks._common import SMALL_CONFIG
from feature_store.synthetic import generate
from training.train import train

SMALL_CUSTOMERS = 800
SMALL_ITEMS = 400


def build_small_retailer(root: Path) -> tuple[Path, Path]:
    """(data folder, bundles folder) of a small synthetic retailer with one trained bundle."""
    data = root / "data"
    bundles = root / "bundles"
    generate(data, customers=SMALL_CUSTOMERS, items=SMALL_ITEMS, seed=7)
    train(data, bundles, config=SMALL_CONFIG, progress=False)
    return data, bundles


def assert_matches(model: type[BaseModel], body: Any) -> None:
    """``body`` validates as ``model`` and has exactly the keys the model declares, at every depth
    (the schemas ignore unknown keys, so validation alone would let an undeclared key through)."""
    model.model_validate(body)
    _same_keys(model, body, model.__name__)


def _same_keys(annotation: Any, value: Any, path: str) -> None:
    origin = get_origin(annotation)
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        assert isinstance(value, dict), f"{path}: not an object"
        declared = set(annotation.model_fields)
        assert set(value) == declared, (
            f"{path}: undeclared {sorted(set(value) - declared)}, "
            f"missing {sorted(declared - set(value))} ({annotation.__name__})"
        )
        for name, field in annotation.model_fields.items():
            _same_keys(field.annotation, value[name], f"{path}.{name}")
    elif origin is list and isinstance(value, list):
        (element,) = get_args(annotation)
        for i, item in enumerate(value):
            _same_keys(element, item, f"{path}[{i}]")
    elif origin is dict and isinstance(value, dict):
        _, element = get_args(annotation)
        for key, item in value.items():
            _same_keys(element, item, f"{path}.{key}")
    elif origin in (Union, types.UnionType) and value is not None:
        options = [a for a in get_args(annotation) if a is not type(None)]
        if len(options) == 1:
            _same_keys(options[0], value, path)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class RedisServer:
    """A throw-away ``redis-server`` without persistence, on a port of its own."""

    def __init__(self, workdir: Path, binary: str | None = None) -> None:
        found = binary or shutil.which("redis-server")
        if found is None:
            raise FileNotFoundError("redis-server is not installed")
        self.binary = found
        self.workdir = workdir
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.process = subprocess.Popen(
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
        probe = redis.Redis(port=self.port, socket_timeout=0.2, socket_connect_timeout=0.2)
        deadline = time.monotonic() + 10
        while True:
            try:
                if probe.ping():
                    break
            except redis.RedisError:
                pass
            assert self.process.poll() is None, f"redis-server exited ({self.process.returncode})"
            assert time.monotonic() < deadline, "redis-server did not answer within 10 s"
            time.sleep(0.02)
        probe.close()

    def kill(self) -> None:
        assert self.process is not None
        self.process.kill()
        self.process.wait(timeout=10)

    def pause(self) -> None:
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGSTOP)

    def resume(self) -> None:
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGCONT)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGCONT)
            self.process.kill()
            self.process.wait(timeout=10)


def redis_server_required() -> bool:
    """In CI (or with LOOKBOOK_REQUIRE_REDIS=1) the Redis tests must run."""
    return os.environ.get("CI") == "true" or os.environ.get("LOOKBOOK_REQUIRE_REDIS") == "1"


def redis_missing(reason: str) -> NoReturn:
    """A Redis server or binary the test needs is missing: a failure where Redis is required
    (:func:`redis_server_required`), a skip with ``reason`` elsewhere."""
    if redis_server_required():
        pytest.fail(f"Redis is required here (CI / LOOKBOOK_REQUIRE_REDIS=1): {reason}")
    pytest.skip(reason)


def postgres_server_required() -> bool:
    """In CI (or with LOOKBOOK_REQUIRE_POSTGRES=1) the PostgreSQL tests must run."""
    return os.environ.get("CI") == "true" or os.environ.get("LOOKBOOK_REQUIRE_POSTGRES") == "1"


def postgres_missing(reason: str) -> NoReturn:
    """The PostgreSQL server is missing: a failure where it is required
    (:func:`postgres_server_required`), a skip with ``reason`` elsewhere."""
    if postgres_server_required():
        pytest.fail(f"PostgreSQL is required here (CI / LOOKBOOK_REQUIRE_POSTGRES=1): {reason}")
    pytest.skip(reason)


class TcpProxy:
    """A TCP relay on a port of its own to ``upstream``: :meth:`stop` cuts every connection and
    refuses new ones (a server outage as clients see it), :meth:`start` serves again — without
    touching the shared server behind it."""

    def __init__(self, upstream: tuple[str, int]) -> None:
        self.upstream = upstream
        self.port = free_port()
        self._listener: socket.socket | None = None
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()

    def start(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def stop(self) -> None:
        listener, self._listener = self._listener, None
        if listener is not None:
            _shut(listener)
        with self._lock:
            sockets, self._sockets = self._sockets, []
        for sock in sockets:
            _shut(sock)

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.upstream, timeout=5)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            with self._lock:
                self._sockets += [client, upstream]
            for source, target in ((client, upstream), (upstream, client)):
                threading.Thread(target=_pump, args=(source, target), daemon=True).start()


def _pump(source: socket.socket, target: socket.socket) -> None:
    try:
        while data := source.recv(65536):
            target.sendall(data)
    except OSError:
        pass
    finally:
        _shut(source)
        _shut(target)


def _shut(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    sock.close()


# -- copies of the shared retailer's bundle, published as new versions (hot reload, pins) --------


def own_bundles(retailer: tuple[Path, Path], tmp_path: Path) -> tuple[Path, str]:
    """A copy of the retailer's bundles folder in ``tmp_path`` and the version it holds."""
    from models.bundle import latest_bundle

    own = tmp_path / "bundles"
    shutil.copytree(retailer[1], own)
    info = latest_bundle(own)
    assert info is not None
    return own, info.version


def newer_version(version: str, day: int = 1) -> str:
    """A version that sorts after ``version`` (and after ``newer_version(version, day - 1)``)."""
    return f"9999{day:04d}T000000-{version.split('-')[-1]}"


def publish_copy(
    bundles: Path,
    source: str,
    version: str,
    corrupt: Any = None,
    *,
    reseal: bool = False,
) -> Path:
    """A copy of bundle ``source`` published as ``version`` (its manifest says so too), changed by
    ``corrupt(layout)`` before it is renamed into place, as the trainer publishes. With
    ``reseal`` the manifest's checksums are recomputed after the change (a bundle written wrong
    by the trainer, rather than damaged afterwards)."""
    from models.bundle import BundleLayout, file_checksums

    staging = bundles / f".tmp-{version}"
    shutil.copytree(bundles / source, staging)
    manifest = staging / "manifest.json"
    manifest.write_text(manifest.read_text().replace(source, version))
    layout = BundleLayout(staging)
    if corrupt is not None:
        corrupt(layout)
    if reseal:
        edit_manifest(layout, checksums=file_checksums(staging))
    return staging.rename(bundles / version)


def edit_manifest(layout: Any, **changes: Any) -> None:
    """Set top-level keys of a bundle's manifest."""
    import json

    raw = json.loads(layout.manifest.read_text())
    raw.update(changes)
    layout.manifest.write_text(json.dumps(raw))


def truncate(file: Path) -> None:
    """Cut ``file`` to half its size (a copy interrupted half-way)."""
    file.write_bytes(file.read_bytes()[: file.stat().st_size // 2])


CHROMIUM = Path(os.environ.get("LOOKBOOK_CHROMIUM", "/usr/bin/chromium"))
CHROMEDRIVER = Path(os.environ.get("LOOKBOOK_CHROMEDRIVER", "/usr/bin/chromedriver"))


def browser_required() -> bool:
    """In CI (``LOOKBOOK_REQUIRE_BROWSER=1``, set by ``.ci/run``) the browser tests must run."""
    return os.environ.get("LOOKBOOK_REQUIRE_BROWSER") == "1"


def browser_missing(reason: str) -> NoReturn:
    """Chromium or chromedriver is missing: a failure where the browser is required
    (:func:`browser_required`), a skip with ``reason`` elsewhere (``make ensure-chromium``
    installs both)."""
    if browser_required():
        pytest.fail(f"a browser is required here (LOOKBOOK_REQUIRE_BROWSER=1): {reason}")
    pytest.skip(reason)


def personalized_request(feeds: Any, customer: str, *, k: int) -> tuple[Any, Any]:
    """The cache key and computation of a default personalized request (home surface, no
    options), as :meth:`app.feeds.Feeds.personalized_request` gives them."""
    from app.list_options import NO_OPTIONS

    return feeds.personalized_request(  # type: ignore[no-any-return]
        customer,
        k=k,
        category=None,
        exclude_purchased=True,
        surface="home",
        in_stock_in_my_size=False,
        store_id=None,
        options=NO_OPTIONS,
    )
