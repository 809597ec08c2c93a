"""Rollback and pruning: a pinned version is served by every replica until it is unpinned (the
pin lives in the bundles folder); pruning keeps the pinned version and the newest ones."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from app.main import create_app
from app.runtime import BundleManager
from app.settings import Settings
from helpers import newer_version, own_bundles, publish_copy, truncate
from models.bundle import (
    bundles_to_prune,
    list_bundles,
    prune_bundles,
    read_pin,
    write_pin,
)
from training.cli import cli


def _versions(bundles: Path) -> list[str]:
    return [info.version for info in list_bundles(bundles)]


@pytest.fixture
def three(retailer: tuple[Path, Path], tmp_path: Path) -> tuple[Path, list[str]]:
    """A bundles folder with three good versions, oldest first."""
    bundles, version = own_bundles(retailer, tmp_path)
    for day in (1, 2):
        publish_copy(bundles, version, newer_version(version, day))
    return bundles, _versions(bundles)


@pytest.fixture
def replicas(three: tuple[Path, list[str]], tmp_path: Path) -> Iterator[list[TestClient]]:
    """Two replicas over the same bundles folder, each polling every 50 ms."""
    bundles, _ = three
    with ExitStack() as stack:
        yield [
            stack.enter_context(
                TestClient(
                    create_app(
                        Settings(
                            bundle_dir=bundles,
                            event_log_dir=tmp_path / f"events{i}",
                            bundle_poll_seconds=0.05,
                        )
                    )
                )
            )
            for i in range(2)
        ]


def _serving(client: TestClient) -> str:
    return str(client.get("/v1/admin/models").json()["serving"])


def _wait(condition: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_a_pin_is_followed_by_every_replica_until_it_is_removed(
    three: tuple[Path, list[str]], replicas: list[TestClient]
) -> None:
    bundles, versions = three
    first, second = replicas
    assert _serving(first) == _serving(second) == versions[-1]

    response = first.post(f"/v1/admin/models/{versions[0]}/activate")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["serving"] == versions[0]  # this replica at once
    assert body["pinned"]["version"] == versions[0]
    assert [v["version"] for v in body["versions"] if v["pinned"]] == [versions[0]]
    pin = read_pin(bundles)
    assert pin is not None and pin.version == versions[0]
    assert not [p.name for p in bundles.iterdir() if p.name.startswith(".")], "no temp files"
    _wait(lambda: _serving(second) == versions[0])  # the other within its poll interval
    assert second.get("/v1/admin/models").json()["pinned"]["version"] == versions[0]
    recommended = second.get("/v1/customers/anyone/recommendations").json()
    assert recommended["model_version"] == versions[0]

    # a newer bundle does not move a pinned fleet
    newest = publish_copy(bundles, versions[0], newer_version(versions[0], 9)).name
    time.sleep(0.3)
    assert _serving(first) == _serving(second) == versions[0]

    response = second.delete("/v1/admin/models/pin")
    assert response.status_code == 200, response.text
    assert response.json()["pinned"] is None and response.json()["serving"] == newest
    assert read_pin(bundles) is None
    _wait(lambda: _serving(first) == newest)
    assert second.delete("/v1/admin/models/pin").status_code == 200  # unpinning twice is fine


def test_pinning_an_unknown_or_rejected_version_is_refused(
    three: tuple[Path, list[str]], replicas: list[TestClient]
) -> None:
    bundles, versions = three
    client = replicas[0]
    response = client.post("/v1/admin/models/20000101T000000-nothere/activate")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "unknown_bundle"

    bad = publish_copy(
        bundles, versions[0], newer_version(versions[0], 9), lambda b: truncate(b.purchases)
    )
    _wait(lambda: bool(client.get("/v1/admin/models").json()["rejected"]))
    response = client.post(f"/v1/admin/models/{bad.name}/activate")
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["code"] == "bundle_rejected" and "checksum mismatch" in error["message"]
    assert str(bundles) not in error["message"]
    assert read_pin(bundles) is None  # the pin is left as it was
    assert _serving(client) == versions[-1]


def test_a_pin_that_cannot_be_written_changes_nothing(
    three: tuple[Path, list[str]], replicas: list[TestClient]
) -> None:
    bundles, versions = three
    client = replicas[0]
    (bundles / "pin.json").mkdir()  # in the way of the rename
    response = client.post(f"/v1/admin/models/{versions[0]}/activate")
    assert response.status_code == 503
    assert "cannot write the pin" in response.json()["error"]["message"]
    assert _serving(client) == versions[-1]
    assert not [p for p in bundles.iterdir() if p.name.startswith(".")], "no temp files"
    models = client.get("/v1/admin/models").json()
    assert models["pinned"] is None and "pin.json" in models["pin_problem"]
    assert client.delete("/v1/admin/models/pin").status_code == 503


def test_start_up_serves_the_pinned_version(three: tuple[Path, list[str]], tmp_path: Path) -> None:
    bundles, versions = three
    write_pin(bundles, versions[1])
    manager = BundleManager(bundles)
    assert manager.refresh() and manager.current.version == versions[1]
    assert manager.pin is not None and manager.pin.version == versions[1]


def test_a_broken_pin_keeps_what_is_served_and_says_why(
    three: tuple[Path, list[str]], tmp_path: Path
) -> None:
    bundles, versions = three
    manager = BundleManager(bundles)
    write_pin(bundles, versions[0])
    assert manager.refresh() and manager.current.version == versions[0]
    (bundles / "pin.json").write_text("{not json")
    assert not manager.refresh()
    assert manager.current.version == versions[0]  # an unreadable pin moves nothing
    assert manager.pin_problem is not None and "pin.json" in manager.pin_problem
    # a pin naming a version that is gone: the served one stays, and why is shown
    write_pin(bundles, "20000101T000000-gone")
    assert not manager.refresh() and manager.current.version == versions[0]
    assert manager.pin_problem == "pinned version 20000101T000000-gone is not published"
    # at start-up, with nothing served yet, the newest bundle that loads is served
    fresh = BundleManager(bundles)
    assert fresh.refresh() and fresh.current.version == versions[-1]


def test_prune_keeps_the_pinned_and_the_newest(three: tuple[Path, list[str]]) -> None:
    bundles, versions = three
    for day in (3, 4, 5):
        publish_copy(bundles, versions[0], newer_version(versions[0], day))
    everything = _versions(bundles)  # six, oldest first
    write_pin(bundles, everything[0])
    with pytest.raises(ValueError):
        bundles_to_prune(bundles, 0)
    assert bundles_to_prune(bundles, 2) == everything[1:4]
    assert prune_bundles(bundles, 2) == everything[1:4]
    assert _versions(bundles) == [everything[0], *everything[4:]]
    assert not [p for p in bundles.iterdir() if p.name.startswith(".")], "no leftovers"
    (bundles / "pin.json").unlink()
    assert prune_bundles(bundles, 1) == [everything[0], everything[4]]
    assert _versions(bundles) == [everything[-1]]  # the newest, always


def test_prune_does_not_count_broken_versions(three: tuple[Path, list[str]]) -> None:
    """Newer versions whose manifest cannot be read do not push the good ones out."""
    bundles, versions = three
    broken = publish_copy(bundles, versions[0], newer_version(versions[0], 9))
    (broken / "manifest.json").write_text("{")
    assert bundles_to_prune(bundles, 2) == versions[:1]
    (bundles / "pin.json").write_text("garbage")
    assert bundles_to_prune(bundles, 1) == [], "an unreadable pin prunes nothing"


def test_the_command_line_lists_and_prunes(three: tuple[Path, list[str]]) -> None:
    bundles, versions = three
    write_pin(bundles, versions[0])
    runner = CliRunner()
    listed = runner.invoke(cli, ["bundles", "--out", str(bundles)])
    assert listed.exit_code == 0, listed.output
    assert f"{versions[0]}  " in listed.output and "[pinned]" in listed.output
    dry = runner.invoke(
        cli, ["bundles", "prune", "--out", str(bundles), "--keep", "1", "--dry-run"]
    )
    assert dry.exit_code == 0 and f"would remove 1 bundle(s)\n  {versions[1]}" in dry.output
    assert _versions(bundles) == versions
    done = runner.invoke(cli, ["bundles", "prune", "--out", str(bundles), "--keep", "1"])
    assert done.exit_code == 0, done.output
    assert _versions(bundles) == [versions[0], versions[2]]
    refused = runner.invoke(cli, ["bundles", "prune", "--out", str(bundles), "--keep", "0"])
    assert refused.exit_code != 0
