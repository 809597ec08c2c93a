"""Helpers shared by the benchmark scripts: running the ``lookbook`` CLI as a measured child
process, preparing (or reusing) synthetic retailers and bundles in a work folder, machine facts,
and Markdown tables.

Everything here runs the real command line in a subprocess: the benchmarks measure what an
engineer would run, not an in-process shortcut.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any, BinaryIO

from models.bundle import BundleLayout, latest_bundle
from training.train import ALSConfig, SequenceTrainConfig, TrainConfig, train

#: The small retailer's training config (tests and the small benchmarks train with it): fast,
#: and every model of the bundle fitted.
SMALL_CONFIG = TrainConfig(
    seed=7,
    test_days=14,
    als=ALSConfig(factors=16, iterations=6),
    sequence=SequenceTrainConfig(
        epochs=4,
        max_len=12,
        id_dim=8,
        feature_dim=4,
        hidden_dim=16,
        output_dim=8,
        num_negatives=64,
        batch_size=64,
        max_windows=400,
        blend_customers=120,
    ),
)


def small_retailer(work: Path, customers: int, items: int) -> tuple[Path, Path]:
    """A small synthetic retailer (seed 7) and a bundle trained on it with :data:`SMALL_CONFIG`,
    in ``work/data`` and ``work/bundles`` — generated and trained in-process the first time,
    reused after (the in-process cost benchmarks)."""
    from feature_store.synthetic import generate

    data, bundles = work / "data", work / "bundles"
    if latest_bundle(bundles) is None:
        generate(data, customers=customers, items=items, seed=7)
        train(data, bundles, config=SMALL_CONFIG, progress=False)
    return data, bundles


REPO = Path(__file__).resolve().parents[1]
DEFAULT_WORK = Path("/tmp/lookbook-bench")
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")
GENERATE_RECORD = "bench-generate.json"


class BenchError(RuntimeError):
    """A step the benchmark depends on failed (the message says which and where its log is)."""


# -- environment -----------------------------------------------------------------------------------


def child_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment for child processes: this one, with the repository importable."""
    env = dict(os.environ)
    path = env.get("PYTHONPATH", "")
    env["PYTHONPATH"] = f"{REPO}{os.pathsep}{path}" if path else str(REPO)
    env.setdefault("PYTHONUNBUFFERED", "1")
    if extra:
        env.update(extra)
    return env


def lookbook_cmd() -> list[str]:
    """The ``lookbook`` console script of this interpreter's environment, or the same entry point
    through ``python -m training.cli`` when the package is not installed."""
    script = Path(sys.executable).with_name("lookbook")
    if script.is_file() and os.access(script, os.X_OK):
        return [str(script)]
    return [sys.executable, "-m", "training.cli"]


# -- process trees ---------------------------------------------------------------------------------


def _children_map() -> dict[int, list[int]]:
    children: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", "rb") as fh:
                stat = fh.read()
        except OSError:
            continue
        # "pid (comm) state ppid ...": comm may contain spaces and parentheses.
        fields = stat[stat.rfind(b")") + 2 :].split()
        children.setdefault(int(fields[1]), []).append(int(entry.name))
    return children


def process_tree(root: int) -> list[int]:
    """``root`` and all its live descendants."""
    children = _children_map()
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(children.get(pid, ()))
    return found


def tree_rss_bytes(root: int) -> int:
    """Resident memory of ``root`` and its descendants right now (sum over the processes)."""
    total = 0
    for pid in process_tree(root):
        try:
            with open(f"/proc/{pid}/statm", "rb") as fh:
                total += int(fh.read().split()[1]) * PAGE_SIZE
        except (OSError, IndexError, ValueError):
            continue
    return total


def stop_process_group(proc: subprocess.Popen[bytes], grace_s: float = 10.0) -> None:
    """SIGTERM the process group led by ``proc`` (started with ``start_new_session``), then
    SIGKILL it if it has not exited after ``grace_s``."""
    if proc.poll() is not None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)  # stray grandchildren, if any
        return
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=grace_s)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)


@dataclass
class RunStats:
    """What one measured child process cost."""

    command: list[str]
    returncode: int
    wall_s: float
    cpu_s: float  # user + system of the child and the descendants it waited for
    peak_rss_bytes: int  # largest single process (kernel high-water mark, via wait4)
    peak_tree_rss_bytes: int  # largest sum over the live process tree (sampled every 0.2 s)
    log: str


class _Tee(threading.Thread):
    """Copies a child's output to a log file and, optionally, to our stderr."""

    def __init__(self, source: IO[bytes], log: BinaryIO, echo: bool) -> None:
        super().__init__(daemon=True)
        self.source, self.log, self.echo = source, log, echo

    def run(self) -> None:
        while chunk := self.source.read1(65536):  # type: ignore[attr-defined]
            self.log.write(chunk)
            self.log.flush()
            if self.echo:
                sys.stderr.buffer.write(chunk)
                sys.stderr.buffer.flush()


def run_measured(
    cmd: Sequence[str],
    *,
    log_path: Path,
    env: Mapping[str, str] | None = None,
    timeout_s: float = 3 * 3600.0,
    echo: bool = True,
    sample_every_s: float = 0.2,
) -> RunStats:
    """Run ``cmd`` (cwd = repository) to completion and measure wall time, CPU time and peak
    memory. Its output goes to ``log_path`` (and to stderr when ``echo``). The child runs in its
    own process group, which is killed on timeout or Ctrl-C."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "wb") as log:
        log.write(f"$ {' '.join(cmd)}\n".encode())
        log.flush()
        start = time.perf_counter()
        proc = subprocess.Popen(
            list(cmd),
            cwd=REPO,
            env=dict(env) if env is not None else child_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        assert proc.stdout is not None
        tee = _Tee(proc.stdout, log, echo)
        tee.start()
        peak_tree = 0
        try:
            while True:
                pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
                if pid == proc.pid:
                    break
                peak_tree = max(peak_tree, tree_rss_bytes(proc.pid))
                if time.perf_counter() - start > timeout_s:
                    stop_process_group(proc)
                    raise BenchError(f"{cmd[0]} timed out after {timeout_s:.0f} s; log: {log_path}")
                time.sleep(sample_every_s)
        except BaseException:
            stop_process_group(proc)
            raise
        wall = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)  # leftovers the child did not reap
        tee.join(timeout=5.0)
    return RunStats(
        command=list(cmd),
        returncode=proc.returncode,
        wall_s=wall,
        cpu_s=usage.ru_utime + usage.ru_stime,
        peak_rss_bytes=usage.ru_maxrss * 1024,
        peak_tree_rss_bytes=max(peak_tree, usage.ru_maxrss * 1024),
        log=str(log_path),
    )


def log_tail(path: Path | str, lines: int = 30) -> str:
    try:
        text = Path(path).read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.replace("\r", "\n").splitlines()[-lines:])


# -- synthetic retailers and bundles -----------------------------------------------------------------


@dataclass(frozen=True)
class RetailerSpec:
    customers: int
    items: int
    seed: int = 42
    interactions_per_customer: float = 10.0
    stores: int = 8

    @property
    def name(self) -> str:
        ipc = f"{self.interactions_per_customer:g}"
        return f"c{self.customers}-i{self.items}-ipc{ipc}-st{self.stores}-s{self.seed}"

    @property
    def label(self) -> str:
        nominal = self.customers * self.interactions_per_customer
        return f"{human_count(nominal)} ({human_count(self.customers)} customers × {self.interactions_per_customer:g}, {human_count(self.items)} items)"


def human_count(n: float) -> str:
    for factor, suffix in ((1e9, "B"), (1e6, "M"), (1e3, "k")):
        if n >= factor:
            return f"{n / factor:.3g}{suffix}"
    return f"{n:g}"


def human_bytes(n: float) -> str:
    for factor, suffix in ((1 << 30, "GiB"), (1 << 20, "MiB"), (1 << 10, "KiB")):
        if n >= factor:
            return f"{n / factor:.2f} {suffix}"
    return f"{n:.0f} B"


def data_dir(work: Path, spec: RetailerSpec) -> Path:
    return work / "data" / spec.name


def generate_record(path: Path) -> dict[str, Any] | None:
    """The measurements stored next to a dataset when the benchmark generated it."""
    try:
        record: dict[str, Any] = json.loads((path / GENERATE_RECORD).read_text())
    except (OSError, json.JSONDecodeError):
        return None
    return record


def ensure_dataset(
    work: Path, spec: RetailerSpec, *, force: bool = False, echo: bool = True
) -> tuple[Path, dict[str, Any], bool]:
    """The synthetic retailer for ``spec`` in ``work``: generated with ``lookbook generate`` unless
    a complete one is already there. Returns (folder, generation record, reused?).

    The generator writes into a temporary folder renamed into place on success, so an
    interrupted run never leaves a half dataset that a later run would reuse."""
    final = data_dir(work, spec)
    record = generate_record(final)
    if record is not None and not force:
        return final, record, True
    tmp = final.with_name(final.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.parent.mkdir(parents=True, exist_ok=True)
    cmd = [
        *lookbook_cmd(),
        "generate",
        "--out",
        str(tmp),
        "--customers",
        str(spec.customers),
        "--items",
        str(spec.items),
        "--seed",
        str(spec.seed),
        "--stores",
        str(spec.stores),
        "--interactions-per-customer",
        f"{spec.interactions_per_customer:g}",
    ]
    print(f"[bench] generating {spec.label} → {final}", flush=True)
    stats = run_measured(cmd, log_path=work / "logs" / f"generate-{spec.name}.log", echo=echo)
    if stats.returncode != 0:
        raise BenchError(
            f"`lookbook generate` failed (exit {stats.returncode}); log: {stats.log}\n"
            + log_tail(stats.log)
        )
    record = {"date": now_iso(), "spec": asdict(spec), "stats": asdict(stats)}
    (tmp / GENERATE_RECORD).write_text(json.dumps(record, indent=2))
    shutil.rmtree(final, ignore_errors=True)
    os.replace(tmp, final)
    return final, record, False


def latest_bundle_dir(bundles: Path) -> Path | None:
    """The newest complete bundle in ``bundles`` (the service's rule: last by name)."""
    info = latest_bundle(bundles)
    return None if info is None else info.path


def train_bundle(
    data: Path, bundles: Path, *, log_path: Path, config: Path | None = None, echo: bool = True
) -> tuple[Path, RunStats]:
    """Run ``lookbook train`` end to end; returns the new bundle and what it cost."""
    before = latest_bundle_dir(bundles)
    cmd = [*lookbook_cmd(), "train", "--data", str(data), "--out", str(bundles)]
    if config is not None:
        cmd += ["--config", str(config)]
    stats = run_measured(cmd, log_path=log_path, echo=echo)
    if stats.returncode != 0:
        raise BenchError(
            f"`lookbook train` failed (exit {stats.returncode}); log: {stats.log}\n"
            + log_tail(stats.log)
        )
    bundle = latest_bundle_dir(bundles)
    if bundle is None or bundle == before:
        raise BenchError(f"`lookbook train` wrote no new bundle into {bundles}; log: {stats.log}")
    return bundle, stats


def read_manifest(bundle: Path) -> dict[str, Any]:
    """The bundle's manifest as plain JSON (read leniently: a bundle of an older format too)."""
    manifest: dict[str, Any] = json.loads(BundleLayout(bundle).manifest.read_text())
    return manifest


# -- machine and reporting ---------------------------------------------------------------------------


def now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def load_average() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f} / {five:.2f} / {fifteen:.2f}"


def busy_processes(limit: int = 5, min_cpu: float = 20.0) -> list[str]:
    """Other processes using CPU right now (``ps``), to record concurrent load."""
    try:
        out = subprocess.run(
            ["ps", "-eo", "pcpu,pid,args", "--sort=-pcpu", "--no-headers"],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        ).stdout
    except (OSError, subprocess.TimeoutExpired):
        return []
    busy = []
    for line in out.splitlines():
        parts = line.split(None, 2)
        if len(parts) < 3:
            continue
        try:
            cpu = float(parts[0])
        except ValueError:
            continue
        if cpu >= min_cpu and int(parts[1]) != os.getpid():
            busy.append(f"{cpu:.0f}% {parts[2][:90]}")
        if len(busy) >= limit:
            break
    return busy


def machine_info() -> dict[str, str]:
    model = platform.processor() or "unknown CPU"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    mem = "?"
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem = f"{int(line.split()[1]) / (1 << 20):.1f} GiB"
                break
    return {
        "cpu": f"{model}, {os.cpu_count()} cores",
        "memory": mem,
        "python": platform.python_version(),
        "os": f"{platform.system()} {platform.release()}",
    }


def save_json(path: Path, payload: Mapping[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2, default=str))
