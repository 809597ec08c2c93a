"""What checking a bundle before a hot swap costs: checksums, load, checks, warmups, probe feeds.

Times each stage of :meth:`app.runtime.BundleManager.refresh` on the newest bundle of
``--bundles`` (median of ``--repeat`` runs after one cold run): the sha256 of every file, the
load with its checks (:meth:`~app.runtime.LoadedBundle.load`), the service's probe feeds
(:class:`~app.bundle_probe.FeedProbe`), and the whole refresh of a fresh manager with the
service's warmups (the strategy sources' per-version statistics stay cached between runs).
Without ``--bundles`` it trains the embedded retailer (5,000 customers, 2,000 items) into
``--work`` first.

    .venv/bin/python benchmarks/bundle_check.py
    .venv/bin/python benchmarks/bundle_check.py --bundles var/bundles
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from app.main import create_app
from app.runtime import BundleManager, LoadedBundle
from app.settings import Settings
from feature_store.synthetic import generate
from models.bundle import latest_bundle, read_manifest, verify_checksums
from training.train import train


def _median_seconds(run: Callable[[], object], repeat: int) -> float:
    run()  # cold: imports, first touch of the files
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bundles", type=Path, default=None)
    parser.add_argument("--work", type=Path, default=Path("var/bench/bundle_check"))
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    bundles = args.bundles
    if bundles is None:
        bundles = args.work / "bundles"
        if latest_bundle(bundles) is None:
            data = args.work / "data"
            generate(data, customers=5_000, items=2_000, seed=42)
            train(data, bundles, progress=False)
    info = latest_bundle(bundles)
    if info is None:
        sys.exit(f"no bundle in {bundles}")
    manifest = read_manifest(info.path)
    size = sum(p.stat().st_size for p in info.path.rglob("*") if p.is_file())
    settings = Settings(
        bundle_dir=bundles, event_log_dir=args.work / "events", bundle_poll_seconds=0
    )
    manager: BundleManager = create_app(settings).state.bundles
    bundle = LoadedBundle.load(info.path)
    checksums = manifest.checksums or {}
    rows = {
        "checksums (sha256 of every file)": _median_seconds(
            lambda: verify_checksums(info.path, checksums), args.repeat
        ),
        "load + checks (incl. checksums)": _median_seconds(
            lambda: LoadedBundle.load(info.path), args.repeat
        ),
        "checks alone (counts, finite, indexes)": _median_seconds(bundle.check, args.repeat),
        "probe feeds": _median_seconds(
            lambda: [probe(bundle) for probe in manager.probes], args.repeat
        ),
        "refresh of a fresh manager (all)": _median_seconds(
            lambda: BundleManager(
                bundles, warmups=manager.warmups, probes=manager.probes
            ).refresh(),
            args.repeat,
        ),
    }
    print(
        f"bundle {info.version}: {manifest.item_count} items, {manifest.customer_count} "
        f"customers, {len(checksums)} files, {size / 1e6:.1f} MB"
    )
    for stage, seconds in rows.items():
        print(f"{stage:<42}{seconds * 1000:>10.1f} ms")


if __name__ == "__main__":
    main()
