"""Corrupt, partial and incompatible bundles published while serving: with hot reload on (poll
every 0.5 s) and reads at a steady rate, bad bundles are published one after the other — bytes
flipped in an array file (checksums no longer match), a file cut in half (an interrupted copy), a
file missing, a manifest of an unknown format, and arrays resealed with a wrong item count.
Criteria: 0 failed requests, the good bundle keeps serving, every bad one listed under
``rejected`` by ``GET /v1/admin/models`` (and counted in ``lookbook_bundle_rejected_total``)."""

from __future__ import annotations

import asyncio
import json
import shutil
import time
from collections.abc import Callable
from pathlib import Path

import httpx

from benchmarks._reliability.common import (
    EventMaker,
    Load,
    Row,
    Size,
    Workspace,
    growth,
    run_async,
    run_load,
    service_env,
    serving,
)
from models.bundle import BundleLayout, file_checksums, latest_bundle

RATE = 50.0


def _flip(layout: BundleLayout) -> None:
    target = layout.root / "similar_items.npz"
    data = bytearray(target.read_bytes())
    for offset in range(len(data) // 3, len(data) // 3 + 64):
        data[offset] ^= 0xFF
    target.write_bytes(bytes(data))


def _truncate(layout: BundleLayout) -> None:
    target = layout.root / "user_items.npz"
    target.write_bytes(target.read_bytes()[: target.stat().st_size // 2])


def _missing(layout: BundleLayout) -> None:
    (layout.root / "catalog.parquet").unlink()


def _edit(layout: BundleLayout, **changes: object) -> None:
    raw = json.loads(layout.manifest.read_text())
    raw.update(changes)
    layout.manifest.write_text(json.dumps(raw))


def _unknown_format(layout: BundleLayout) -> None:
    _edit(layout, format=999)


def _wrong_counts(layout: BundleLayout) -> None:
    raw = json.loads(layout.manifest.read_text())
    _edit(layout, item_count=raw["item_count"] + 7)
    _edit(layout, checksums=file_checksums(layout.root))  # resealed: written wrong, not damaged


BAD: dict[str, Callable[[BundleLayout], None]] = {
    "corrupt (bytes flipped)": _flip,
    "partial (file cut in half)": _truncate,
    "partial (file missing)": _missing,
    "incompatible (format 999)": _unknown_format,
    "incompatible (item count, resealed)": _wrong_counts,
}


def publish(
    bundles: Path, source: str, version: str, corrupt: Callable[[BundleLayout], None]
) -> None:
    """A copy of ``source`` published as ``version`` after ``corrupt`` — renamed into place, as
    the trainer publishes."""
    staging = bundles / f".tmp-{version}"
    shutil.copytree(bundles / source, staging)
    manifest = staging / "manifest.json"
    manifest.write_text(manifest.read_text().replace(source, version))
    corrupt(BundleLayout(staging))
    staging.rename(bundles / version)


def run(ws: Workspace, size: Size) -> Row:
    settle_s = 3.0 if size == "full" else 1.5
    row = Row("bad_bundles", f"{RATE:g} req/s reads, hot reload every 0.5 s",
              f"{len(BAD)} bad bundles published while serving: {', '.join(BAD)}")  # fmt: skip
    folder = ws.folder("bad-bundles")
    bundles = ws.own_bundles("bad-bundles")
    info = latest_bundle(bundles)
    assert info is not None
    good = info.version
    env = service_env(ws, bundles, bundle_poll_seconds="0.5", event_log_dir=str(folder / "events"))
    with serving(env, folder / "service.log") as service:
        rss_before = service.rss()
        duration = settle_s * (len(BAD) + 1) + 2

        async def scenario() -> Load:
            load = asyncio.create_task(run_load(service.url, ws, rate=RATE, duration_s=duration,
                                                event_share=0.0, events=EventMaker(ws)))  # fmt: skip
            await asyncio.sleep(settle_s)
            for day, corrupt in enumerate(BAD.values(), start=1):
                await asyncio.to_thread(
                    publish, bundles, good, f"9999{day:04d}T000000-{good.split('-')[-1]}", corrupt
                )
                await asyncio.sleep(settle_s)
            return await load

        load = run_async(scenario())
        deadline = time.monotonic() + 30
        while True:  # the last one may still be under its checks
            models = httpx.get(
                f"{service.url}/v1/admin/models", headers=ws.keys.header(), timeout=10
            ).json()
            if len(models["rejected"]) >= len(BAD) or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        metrics = httpx.get(f"{service.url}/metrics", headers=ws.keys.header(), timeout=10).text
        rss_after = service.rss()
    rejected = {r["version"]: r for r in models["rejected"]}
    row.requests = len(load.samples)
    row.failures = len(Load.failed(load.samples))
    row.rss_growth = growth(rss_before, rss_after)
    row.notes.append("rejections: " + "; ".join(f"{r['check']}" for r in rejected.values()))
    row.require(row.failures == 0, f"{row.failures} failed requests")
    row.require(models["serving"] == good, f"serving {models['serving']}, not the good {good}")
    row.require(
        len(rejected) == len(BAD), f"{len(rejected)} of {len(BAD)} bad bundles listed as rejected"
    )
    row.require(
        f"lookbook_bundle_rejected_total {len(BAD)}.0" in metrics,
        "rejections not counted in /metrics",
    )
    return row
