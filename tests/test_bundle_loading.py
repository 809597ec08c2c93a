"""A published bundle that cannot be loaded is rejected, never fatal: the served bundle keeps
serving, the poller keeps polling, start-up serves the newest bundle that loads."""

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
from models.bundle import BundleLayout, latest_bundle


def _own_bundles(retailer: tuple[Path, Path], tmp_path: Path) -> tuple[Path, str]:
    """A copy of the retailer's bundles folder and the version it holds."""
    own = tmp_path / "bundles"
    shutil.copytree(retailer[1], own)
    info = latest_bundle(own)
    assert info is not None
    return own, info.version


def _publish(
    bundles: Path, source: str, version: str, corrupt: Callable[[BundleLayout], object] = str
) -> BundleLayout:
    """A copy of bundle ``source`` published as ``version`` (its manifest says so too), damaged
    by ``corrupt`` before it is renamed into place (as the trainer publishes)."""
    staging = bundles / f".tmp-{version}"
    shutil.copytree(bundles / source, staging)
    manifest = staging / "manifest.json"
    manifest.write_text(manifest.read_text().replace(source, version))
    corrupt(BundleLayout(staging))
    return BundleLayout(staging.rename(bundles / version))


def _newer(version: str, day: int = 1) -> str:
    return f"9999{day:04d}T000000-{version.split('-')[-1]}"


def _truncate(file: Path) -> None:
    file.write_bytes(file.read_bytes()[: file.stat().st_size // 2])


def _settings(bundles: Path, tmp_path: Path, poll: float = 0) -> Settings:
    return Settings(bundle_dir=bundles, event_log_dir=tmp_path / "events", bundle_poll_seconds=poll)


def test_any_load_failure_is_a_bundle_error(retailer: tuple[Path, Path], tmp_path: Path) -> None:
    bundles, version = _own_bundles(retailer, tmp_path)
    npz = _publish(bundles, version, _newer(version, 1), lambda b: _truncate(b.user_items))
    with pytest.raises(BundleError, match="BadZipFile"):
        LoadedBundle.load(npz.root)
    faiss = _publish(bundles, version, _newer(version, 2), lambda b: _truncate(b.als_index))
    with pytest.raises(BundleError):
        LoadedBundle.load(faiss.root)


def test_a_truncated_npz_is_rejected_once_and_a_later_bundle_is_served(
    retailer: tuple[Path, Path], tmp_path: Path
) -> None:
    bundles, version = _own_bundles(retailer, tmp_path)
    rejected: list[str] = []
    manager = BundleManager(bundles, on_rejected=lambda r: rejected.append(r.version))
    assert manager.refresh() and manager.current.version == version
    bad = _publish(bundles, version, _newer(version, 1), lambda b: _truncate(b.purchases))
    assert not manager.refresh()  # rejected: still serving the old bundle
    assert manager.current.version == version
    assert not manager.refresh()  # not loaded again at the next poll
    assert rejected == [bad.root.name]
    assert "BadZipFile" in manager.rejected[0].reason
    assert not manager.refresh(retry_rejected=True)  # an explicit reload retries it
    assert rejected == [bad.root.name, bad.root.name]
    good = _publish(bundles, version, _newer(version, 2))
    assert manager.refresh() and manager.current.version == good.root.name


def test_a_manifest_version_that_is_not_the_folder_name_is_rejected_once(
    retailer: tuple[Path, Path], tmp_path: Path
) -> None:
    bundles, version = _own_bundles(retailer, tmp_path)
    shutil.copytree(bundles / version, bundles / _newer(version))  # manifest keeps `version`
    loads: list[str] = []
    manager = BundleManager(bundles, warmups=[lambda b: loads.append(b.version)])
    assert manager.refresh() and manager.current.version == version
    for _ in range(3):
        assert not manager.refresh()
    assert loads == [version]
    assert [r.version for r in manager.rejected] == [_newer(version)]
    assert "manifest says version" in manager.rejected[0].reason


@pytest.mark.parametrize("corrupt", ["npz", "faiss"])
def test_start_up_serves_the_newest_bundle_that_loads(
    retailer: tuple[Path, Path], tmp_path: Path, corrupt: str
) -> None:
    bundles, version = _own_bundles(retailer, tmp_path)
    bad = _publish(bundles, version, _newer(version))
    _truncate(bad.user_items if corrupt == "npz" else bad.als_index)
    with TestClient(create_app(_settings(bundles, tmp_path))) as c:
        assert c.get("/v1/customers/anyone/recommendations").status_code == 200
        models = c.get("/v1/admin/models").json()
        assert models["serving"] == version
        assert [r["version"] for r in models["rejected"]] == [bad.root.name]
        assert str(bundles) not in models["rejected"][0]["reason"]
        assert {v["version"]: v["rejected"] for v in models["versions"]} == {
            version: False,
            bad.root.name: True,
        }
        assert "lookbook_bundle_rejected_total 1.0" in c.get("/metrics").text


def test_reload_answers_json_and_keeps_serving(retailer: tuple[Path, Path], tmp_path: Path) -> None:
    bundles, version = _own_bundles(retailer, tmp_path)
    with TestClient(create_app(_settings(bundles, tmp_path))) as c:
        bad = _publish(bundles, version, _newer(version), lambda b: _truncate(b.similar_items))
        response = c.post("/v1/admin/reload")
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["reloaded"] is False and body["serving"] == version
        assert [r["version"] for r in body["rejected"]] == [bad.root.name]
        assert c.get("/v1/customers/anyone/recommendations").json()["model_version"] == version


def test_the_poller_survives_a_corrupt_bundle_and_picks_up_a_later_one(
    retailer: tuple[Path, Path], tmp_path: Path
) -> None:
    bundles, version = _own_bundles(retailer, tmp_path)
    with TestClient(create_app(_settings(bundles, tmp_path, poll=0.05))) as c:
        bad = _publish(bundles, version, _newer(version, 1), lambda b: _truncate(b.user_items))
        _wait(lambda: bool(c.get("/v1/admin/models").json()["rejected"]))
        assert c.get("/v1/customers/anyone/recommendations").status_code == 200
        good = _publish(bundles, version, _newer(version, 2))
        _wait(lambda: c.get("/v1/admin/models").json()["serving"] == good.root.name)
        body = c.get("/v1/customers/anyone/recommendations").json()
        assert body["model_version"] == good.root.name
        rejected = c.get("/v1/admin/models").json()["rejected"]
        assert [r["version"] for r in rejected] == [bad.root.name]
        assert json.dumps(rejected)  # plain JSON


def _wait(condition: object, timeout: float = 60.0) -> None:
    assert callable(condition)
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)
