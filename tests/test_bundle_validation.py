"""A new bundle is checked before it is served — manifest and format, checksums, counts, finite
scores, indexes that answer, real feeds within a budget — and one that fails any check is
rejected with its reason (``GET /v1/admin/models``, ``lookbook_bundle_rejected_total``) while the
served bundle keeps answering every request."""

from __future__ import annotations

import pickle
import threading
import time
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient

from app.main import create_app
from app.runtime import BundleManager, LoadedBundle
from app.settings import Settings
from feature_store.errors import BundleError
from helpers import edit_manifest, newer_version, own_bundles, publish_copy, truncate
from models.bundle import BundleLayout, read_manifest
from models.index import ItemIndex


def _flip_bytes(file: Path) -> None:
    data = bytearray(file.read_bytes())
    data[len(data) // 2] ^= 0xFF
    file.write_bytes(bytes(data))


def _nan_popularity(layout: BundleLayout) -> None:
    path = layout.popularity_model / "arrays.npz"
    with np.load(path, allow_pickle=False) as table:
        arrays = {key: table[key] for key in table.files}
    arrays["scores"] = arrays["scores"].astype(np.float32)
    arrays["scores"][3] = np.nan
    np.savez(path, **arrays)


def _foreign_index(layout: BundleLayout) -> None:
    """An als_items index of the right size and kind, built from other vectors."""
    index = ItemIndex.load(layout.als_index)
    vectors = np.random.default_rng(0).normal(size=(len(index), index.dim))
    ItemIndex.build(vectors, kind=index.kind).save(layout.als_index)


def _nan_complementary(layout: BundleLayout) -> None:
    """NaN in the complementary model's item biases (refused when its index is rebuilt)."""
    path = layout.complementary_model / "arrays.npz"
    with np.load(path, allow_pickle=False) as table:
        arrays = {key: table[key] for key in table.files}
    arrays["item_bias"] = np.full_like(arrays["item_bias"], np.nan)
    np.savez(path, **arrays)


def _more_items(layout: BundleLayout) -> None:
    edit_manifest(layout, item_count=read_manifest(layout.root).item_count + 1)


# corruption → (the check that refuses it, words of its reason, reseal the checksums)
CORRUPTIONS: dict[str, tuple[Callable[[BundleLayout], Any], str, str, bool]] = {
    "checksum mismatch": (lambda b: _flip_bytes(b.catalog), "checksum", "catalog.parquet", False),
    "truncated npz": (lambda b: truncate(b.user_items), "load", "BadZipFile", True),
    "missing file": (lambda b: b.stock.unlink(), "missing_file", "stock.parquet", False),
    "wrong format": (lambda b: edit_manifest(b, format=99), "format", "format 99", False),
    "malformed manifest": (
        lambda b: edit_manifest(b, metrics="high"),
        "manifest",
        "metrics",
        False,
    ),
    "NaN scores": (_nan_popularity, "scores", "NaN", True),
    "index that does not answer": (_foreign_index, "index", "als_items index", True),
    "count mismatch": (_more_items, "counts", "counts of items disagree", False),
    "NaN in a model": (_nan_complementary, "load", "NaN or infinite", True),
}


def test_every_kind_of_corruption_is_rejected_with_its_reason(
    retailer: tuple[Path, Path], tmp_path: Path
) -> None:
    """Nine bad bundles newer than the good one: start-up rejects each, says why, counts them,
    and serves the good one."""
    bundles, version = own_bundles(retailer, tmp_path)
    published = {}
    for day, (name, (corrupt, _, _, reseal)) in enumerate(CORRUPTIONS.items(), start=1):
        path = publish_copy(bundles, version, newer_version(version, day), corrupt, reseal=reseal)
        published[path.name] = name
    settings = Settings(
        bundle_dir=bundles, event_log_dir=tmp_path / "events", bundle_poll_seconds=0
    )
    with TestClient(create_app(settings)) as c:
        models = c.get("/v1/admin/models").json()
        assert models["serving"] == version
        assert c.get("/v1/customers/anyone/recommendations").json()["model_version"] == version
        reasons = {r["version"]: r for r in models["rejected"]}
        assert set(reasons) == set(published)
        for rejected_version, name in published.items():
            _, check, words, _ = CORRUPTIONS[name]
            assert reasons[rejected_version]["check"] == check, (name, reasons[rejected_version])
            assert words in reasons[rejected_version]["reason"], (name, reasons[rejected_version])
        assert f"lookbook_bundle_rejected_total {len(CORRUPTIONS)}.0" in c.get("/metrics").text


def test_the_checks_pass_on_a_good_bundle_and_the_trained_time_is_exported(
    retailer: tuple[Path, Path], tmp_path: Path
) -> None:
    bundles, version = own_bundles(retailer, tmp_path)
    manifest = read_manifest(bundles / version)
    assert manifest.checksums and "user_items.npz" in manifest.checksums
    settings = Settings(
        bundle_dir=bundles, event_log_dir=tmp_path / "events", bundle_poll_seconds=0
    )
    with TestClient(create_app(settings)) as c:
        models = c.get("/v1/admin/models").json()
        assert models["serving"] == version and models["rejected"] == []
        assert models["pinned"] is None and models["pin_problem"] is None
        text = c.get("/metrics").text
        line = next(
            row for row in text.splitlines() if row.startswith("lookbook_bundle_trained_timestamp")
        )
        assert float(line.split()[-1]) == pytest.approx(manifest.created.timestamp())
        assert pd.Timestamp(models["serving_trained_at"]) == pd.Timestamp(manifest.created)


def test_the_probe_answers_the_feeds_of_a_good_bundle_within_its_budget(
    retailer: tuple[Path, Path], tmp_path: Path
) -> None:
    bundles, version = own_bundles(retailer, tmp_path)
    settings = Settings(
        bundle_dir=bundles, event_log_dir=tmp_path / "events", bundle_poll_seconds=0
    )
    manager: BundleManager = create_app(settings).state.bundles
    (probe,) = manager.probes
    good = LoadedBundle.load(bundles / version)
    start = time.perf_counter()
    probe(good)
    assert time.perf_counter() - start < settings.bundle_probe_budget_seconds
    # a model that loads but answers NaN is caught by the feed that uses it
    assert good.complementary is not None
    good.complementary.item_bias_ = np.full_like(good.complementary.item_bias_, np.nan)
    with pytest.raises(BundleError, match="complementary feed has NaN") as caught:
        probe(good)
    assert caught.value.check == "scores"


@pytest.mark.parametrize(
    "error",
    [
        zipfile.BadZipFile("File is not a zip file"),
        OSError(5, "Input/output error"),
        ValueError("cannot reshape array"),
        EOFError("Ran out of input"),
        KeyError("scores"),
        RuntimeError("Error in faiss::read_index at io.cpp:67: read error"),
        pickle.UnpicklingError("invalid load key"),
        MemoryError(),
        AssertionError("a broken invariant"),
    ],
    ids=lambda e: type(e).__name__,
)
@pytest.mark.parametrize("where", ["warmup", "probe"])
def test_any_error_a_bundle_raises_is_a_rejection(
    retailer: tuple[Path, Path], tmp_path: Path, error: Exception, where: str
) -> None:
    bundles, version = own_bundles(retailer, tmp_path)
    newer = newer_version(version)

    def fail_on_newer(bundle: LoadedBundle) -> None:
        if bundle.version == newer:
            raise error

    rejected: list[str] = []
    manager = BundleManager(
        bundles,
        warmups=[fail_on_newer] if where == "warmup" else [],
        probes=[fail_on_newer] if where == "probe" else [],
        on_rejected=lambda r: rejected.append(r.reason),
    )
    assert manager.refresh() and manager.current.version == version
    publish_copy(bundles, version, newer)
    assert manager.refresh() is False  # no exception escapes
    assert manager.current.version == version
    assert len(rejected) == 1 and type(error).__name__ in rejected[0]


def test_feeds_slower_than_the_budget_are_a_rejection(
    retailer: tuple[Path, Path], tmp_path: Path
) -> None:
    bundles, version = own_bundles(retailer, tmp_path)
    newer = newer_version(version)
    release = threading.Event()

    def hangs_on_newer(bundle: LoadedBundle) -> None:
        if bundle.version == newer:
            release.wait(30)

    manager = BundleManager(bundles, probes=[hangs_on_newer], probe_budget_seconds=0.2)
    assert manager.refresh()
    publish_copy(bundles, version, newer)
    start = time.perf_counter()
    assert not manager.refresh()
    release.set()
    assert time.perf_counter() - start < 10
    assert manager.current.version == version
    assert manager.rejected[0].check == "feeds" and "0.2 s budget" in manager.rejected[0].reason


def test_a_corrupt_bundle_published_under_load_fails_no_request(
    retailer: tuple[Path, Path], tmp_path: Path
) -> None:
    """Requests keep coming while the watcher loads, checks and rejects two bad bundles: every
    one is answered, all by the old version."""
    bundles, version = own_bundles(retailer, tmp_path)
    catalog = pd.read_parquet(BundleLayout(bundles / version).catalog)
    item_id = str(catalog["item_id"].iloc[0])
    settings = Settings(
        bundle_dir=bundles, event_log_dir=tmp_path / "events", bundle_poll_seconds=0.05
    )
    statuses: list[tuple[int, str | None]] = []
    stop = threading.Event()
    with TestClient(create_app(settings)) as c:

        def hammer() -> None:
            paths = ["/v1/customers/anyone/recommendations", f"/v1/items/{item_id}/similar"]
            while not stop.is_set():
                for path in paths:
                    response = c.get(path)
                    body = response.json()
                    statuses.append((response.status_code, body.get("model_version")))

        worker = threading.Thread(target=hammer)
        worker.start()
        try:
            while len(statuses) < 20:
                time.sleep(0.01)
            publish_copy(bundles, version, newer_version(version, 1), _nan_popularity, reseal=True)
            publish_copy(bundles, version, newer_version(version, 2), _foreign_index, reseal=True)
            deadline = time.monotonic() + 60
            while len(c.get("/v1/admin/models").json()["rejected"]) < 2:
                assert time.monotonic() < deadline, "the watcher did not reject both"
                time.sleep(0.05)
            seen = len(statuses)
            while len(statuses) < seen + 20:
                time.sleep(0.01)
        finally:
            stop.set()
            worker.join(30)
        assert c.get("/v1/admin/models").json()["serving"] == version
    assert len(statuses) >= 40
    assert {status for status, _ in statuses} == {200}
    assert {served for _, served in statuses} == {version}
