"""A published bundle that fails a check is rejected, never fatal: the served bundle keeps
serving, the poller keeps polling, start-up serves the newest bundle that passes."""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from app.main import create_app
from app.runtime import BundleManager, LoadedBundle
from app.settings import Settings
from feature_store.errors import BundleError
from helpers import newer_version, own_bundles, publish_copy, truncate


def _settings(bundles: Path, tmp_path: Path, poll: float = 0) -> Settings:
    return Settings(bundle_dir=bundles, event_log_dir=tmp_path / "events", bundle_poll_seconds=poll)


def test_any_load_failure_is_a_bundle_error(retailer: tuple[Path, Path], tmp_path: Path) -> None:
    """Damage written into the bundle with matching checksums still fails as a BundleError."""
    bundles, version = own_bundles(retailer, tmp_path)
    npz = publish_copy(
        bundles, version, newer_version(version, 1), lambda b: truncate(b.user_items), reseal=True
    )
    with pytest.raises(BundleError, match="BadZipFile"):
        LoadedBundle.load(npz)
    faiss = publish_copy(
        bundles, version, newer_version(version, 2), lambda b: truncate(b.als_index), reseal=True
    )
    with pytest.raises(BundleError, match="FAISS"):
        LoadedBundle.load(faiss)


def test_a_truncated_npz_is_rejected_once_and_a_later_bundle_is_served(
    retailer: tuple[Path, Path], tmp_path: Path
) -> None:
    bundles, version = own_bundles(retailer, tmp_path)
    rejected: list[str] = []
    manager = BundleManager(bundles, on_rejected=lambda r: rejected.append(r.version))
    assert manager.refresh() and manager.current.version == version
    bad = publish_copy(
        bundles, version, newer_version(version, 1), lambda b: truncate(b.purchases), reseal=True
    )
    assert not manager.refresh()  # rejected: still serving the old bundle
    assert manager.current.version == version
    assert not manager.refresh()  # not loaded again at the next poll
    assert rejected == [bad.name]
    assert "BadZipFile" in manager.rejected[0].reason
    assert not manager.refresh(retry_rejected=True)  # an explicit reload retries it
    assert rejected == [bad.name, bad.name]
    good = publish_copy(bundles, version, newer_version(version, 2))
    assert manager.refresh() and manager.current.version == good.name


def test_a_rejected_bundle_is_tried_again_when_its_files_change(
    retailer: tuple[Path, Path], tmp_path: Path
) -> None:
    """A copy still arriving (a file missing) is rejected; once complete, polling serves it."""
    bundles, version = own_bundles(retailer, tmp_path)
    manager = BundleManager(bundles)
    assert manager.refresh()
    held_back = tmp_path / "stock.parquet"
    late = publish_copy(
        bundles,
        version,
        newer_version(version),
        lambda b: shutil.move(b.stock, held_back),
    )
    assert not manager.refresh()
    assert manager.rejected[0].check == "missing_file"
    assert not manager.refresh()
    shutil.move(held_back, late / "stock.parquet")
    assert manager.refresh() and manager.current.version == late.name
    assert manager.rejected == []


def test_a_manifest_version_that_is_not_the_folder_name_is_rejected_once(
    retailer: tuple[Path, Path], tmp_path: Path
) -> None:
    bundles, version = own_bundles(retailer, tmp_path)
    shutil.copytree(bundles / version, bundles / newer_version(version))  # manifest keeps `version`
    loads: list[str] = []
    manager = BundleManager(bundles, warmups=[lambda b: loads.append(b.version)])
    assert manager.refresh() and manager.current.version == version
    for _ in range(3):
        assert not manager.refresh()
    assert loads == [version]
    assert [r.version for r in manager.rejected] == [newer_version(version)]
    assert "manifest says version" in manager.rejected[0].reason


@pytest.mark.parametrize("corrupt", ["npz", "faiss", "manifest"])
def test_start_up_serves_the_newest_bundle_that_loads(
    retailer: tuple[Path, Path], tmp_path: Path, corrupt: str
) -> None:
    bundles, version = own_bundles(retailer, tmp_path)
    bad = publish_copy(bundles, version, newer_version(version))
    if corrupt == "manifest":
        (bad / "manifest.json").write_text('{"format": 2, "vers')
    else:
        truncate(bad / ("user_items.npz" if corrupt == "npz" else "indexes/als_items.faiss"))
    with TestClient(create_app(_settings(bundles, tmp_path))) as c:
        assert c.get("/readyz").status_code == 200
        assert c.get("/v1/customers/anyone/recommendations").status_code == 200
        models = c.get("/v1/admin/models").json()
        assert models["serving"] == version
        assert [r["version"] for r in models["rejected"]] == [bad.name]
        assert models["rejected"][0]["check"] == (
            "manifest" if corrupt == "manifest" else "checksum"
        )
        assert str(bundles) not in models["rejected"][0]["reason"]
        assert {v["version"]: v["rejected"] for v in models["versions"]} == {
            version: False,
            bad.name: True,
        }
        assert "lookbook_bundle_rejected_total 1.0" in c.get("/metrics").text


def test_reload_answers_json_and_keeps_serving(retailer: tuple[Path, Path], tmp_path: Path) -> None:
    bundles, version = own_bundles(retailer, tmp_path)
    with TestClient(create_app(_settings(bundles, tmp_path))) as c:
        bad = publish_copy(
            bundles, version, newer_version(version), lambda b: truncate(b.similar_items)
        )
        response = c.post("/v1/admin/reload")
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["reloaded"] is False and body["serving"] == version
        assert [r["version"] for r in body["rejected"]] == [bad.name]
        assert c.get("/v1/customers/anyone/recommendations").json()["model_version"] == version


def test_the_poller_survives_a_corrupt_bundle_and_picks_up_a_later_one(
    retailer: tuple[Path, Path], tmp_path: Path
) -> None:
    bundles, version = own_bundles(retailer, tmp_path)
    with TestClient(create_app(_settings(bundles, tmp_path, poll=0.05))) as c:
        bad = publish_copy(
            bundles, version, newer_version(version, 1), lambda b: truncate(b.user_items)
        )
        _wait(lambda: bool(c.get("/v1/admin/models").json()["rejected"]))
        assert c.get("/v1/customers/anyone/recommendations").status_code == 200
        good = publish_copy(bundles, version, newer_version(version, 2))
        _wait(lambda: c.get("/v1/admin/models").json()["serving"] == good.name)
        body = c.get("/v1/customers/anyone/recommendations").json()
        assert body["model_version"] == good.name
        rejected = c.get("/v1/admin/models").json()["rejected"]
        assert [r["version"] for r in rejected] == [bad.name]
        assert json.dumps(rejected)  # plain JSON


def _wait(condition: Callable[[], bool], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)
