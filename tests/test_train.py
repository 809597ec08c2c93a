"""`lookbook train` end to end: bundle layout, manifest, determinism, consent, bad input."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from app.runtime import LoadedBundle
from feature_store.synthetic import generate
from helpers import SMALL_CONFIG
from models.als import ALSRecommender
from models.bundle import BundleLayout, latest_bundle, list_bundles, read_manifest, write_pin
from models.bundle.layout import FILES, INDEX_NAMES, MODEL_NAMES, POOL_NAMES
from models.sequence import SequenceRecommender
from training.cli import cli
from training.train import train


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("data")
    generate(folder, customers=400, items=200, seed=3)
    return folder


def test_bundle_layout_and_manifest(data: Path, tmp_path: Path) -> None:
    result = train(data, tmp_path, config=SMALL_CONFIG, progress=False)
    info = latest_bundle(tmp_path)
    assert info is not None and info.path == result.bundle_path
    manifest = info.manifest
    for key in ("version", "created", "data", "config", "metrics", "item_count", "models"):
        assert key in manifest
    assert manifest["data"]["fingerprint"]
    assert manifest["item_count"] == len(pd.read_parquet(data / "items.parquet"))
    assert set(manifest["metrics"]) >= {"als", "popularity"}
    assert "map@12" in manifest["metrics"]["als"] and "recall@12" in manifest["metrics"]["als"]
    for name in (
        "item_ids.parquet",
        "customer_ids.parquet",
        "catalog.parquet",
        "user_items.npz",
        "purchases.npz",
        "similar_items.npz",
        "indexes/als_items.faiss",
        "indexes/als_items_cosine.faiss",
        "models/als/arrays.npz",
        "models/popularity/arrays.npz",
    ):
        assert (info.path / name).exists(), name
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".tmp")], "no temp leftovers"


def test_every_file_the_trainer_writes_is_in_the_layout(retailer: tuple[Path, Path]) -> None:
    """The bundle on disk is exactly what :mod:`models.bundle.layout` names: each of its files,
    every model and index the manifest lists, the profiles and churn folders."""
    info = latest_bundle(retailer[1])
    assert info is not None
    path = info.path
    layout = BundleLayout(path)
    manifest = read_manifest(path)
    unnamed = [p for p in path.rglob("*") if p.is_file() and layout.owner(p) is None]
    assert not unnamed, f"files the layout does not name: {unnamed}"
    on_disk = {layout.owner(p) for p in path.rglob("*") if p.is_file()}
    listed = {*manifest.models.values(), *manifest.indexes.values(), *manifest.pools.values()}
    assert manifest.profiles is not None and manifest.profiles.churn_model is not None
    assert on_disk == {*FILES, *listed, manifest.profiles.path, manifest.profiles.churn_model}
    assert set(manifest.models) == set(MODEL_NAMES) and set(manifest.indexes) == set(INDEX_NAMES)
    assert set(manifest.pools) == set(POOL_NAMES)
    # every file but the manifest has its checksum
    files = {p.relative_to(path).as_posix() for p in path.rglob("*") if p.is_file()}
    assert manifest.checksums is not None and set(manifest.checksums) == files - {"manifest.json"}
    assert LoadedBundle.load(path).version == manifest.version == path.name


def test_same_data_and_seed_same_models(data: Path, tmp_path: Path) -> None:
    # four held-out weeks: enough held-out customers for the blend weights to be fitted
    config = SMALL_CONFIG.model_copy(update={"test_days": 28})
    first = train(data, tmp_path / "a", config=config, progress=False)
    second = train(data, tmp_path / "b", config=config, progress=False)
    a = ALSRecommender.load(first.bundle_path / "models" / "als")
    b = ALSRecommender.load(second.bundle_path / "models" / "als")
    np.testing.assert_array_equal(a.item_factors, b.item_factors)
    np.testing.assert_array_equal(a.user_factors, b.user_factors)
    assert first.metrics == second.metrics
    assert set(first.metrics) == {"als", "popularity", "sequence"}
    for name in (
        "similar_items.npz",
        "models/sequence/arrays.npz",  # every LSTM weight, feature code and kept history
        "purchase_history.npz",
    ):
        with (
            np.load(first.bundle_path / name) as x,
            np.load(second.bundle_path / name) as y,
        ):
            assert sorted(x.files) == sorted(y.files), name
            for key in x.files:
                np.testing.assert_array_equal(x[key], y[key], err_msg=f"{name}:{key}")
    manifests = [json.loads((r.bundle_path / "manifest.json").read_text()) for r in (first, second)]
    assert manifests[0]["blend"] == manifests[1]["blend"]
    assert manifests[0]["blend"]["fitted"] is True
    for manifest in manifests:
        assert manifest["sequence"]["fit"]["stopped_by_budget"] is False


def test_customers_without_consent_teach_als_nothing(data: Path, tmp_path: Path) -> None:
    copy = tmp_path / "data"
    copy.mkdir()
    for file in data.glob("*.parquet"):
        (copy / file.name).write_bytes(file.read_bytes())
    customers = pd.read_parquet(copy / "customers.parquet")
    customers["consent_personalization"] = True
    refused = str(customers["customer_id"].iloc[0])
    customers.loc[0, "consent_personalization"] = False
    customers.to_parquet(copy / "customers.parquet", index=False)
    result = train(copy, tmp_path / "bundles", config=SMALL_CONFIG, progress=False)
    ids = pd.read_parquet(result.bundle_path / "customer_ids.parquet")["id"].tolist()
    als = ALSRecommender.load(result.bundle_path / "models" / "als")
    assert not als.user_factors[ids.index(refused)].any()
    assert als.user_factors[ids.index(str(customers["customer_id"].iloc[1]))].any()
    # nor the LSTM, which keeps no history of them either
    lstm = SequenceRecommender.load(result.bundle_path / "models" / "sequence")
    assert len(lstm.history_of(ids.index(refused))[0]) == 0
    consenting = [c for c in customers["customer_id"].astype(str).iloc[1:40]]
    assert any(len(lstm.history_of(ids.index(c))[0]) for c in consenting)


def test_cli_train_prints_metrics_side_by_side_and_prunes(
    data: Path, tmp_path: Path, retailer: tuple[Path, Path]
) -> None:
    """``--keep 2`` leaves the new bundle, the newest older one and the pinned one."""
    config = tmp_path / "train.json"
    config.write_text(json.dumps(SMALL_CONFIG.model_dump()))
    bundles = tmp_path / "b"
    source = latest_bundle(retailer[1])
    assert source is not None
    old = [f"20000101T00000{i}-old" for i in range(4)]
    for version in old:
        shutil.copytree(source.path, bundles / version)
    write_pin(bundles, old[0])
    command = ["train", "--data", str(data), "--out", str(bundles), "--config", str(config)]
    out = CliRunner().invoke(cli, [*command, "--keep", "2"])
    assert out.exit_code == 0, out.output
    assert "als" in out.output and "popularity" in out.output and "map@12" in out.output
    versions = [info.version for info in list_bundles(bundles)]
    assert versions[:2] == [old[0], old[-1]] and len(versions) == 3
    assert not versions[-1].endswith("-old")  # the one just trained


def test_cli_train_bad_input_is_a_clear_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "items.csv").write_text("item_id,name,category,price\nI1,Shirt,top,12.0\n")
    (bad / "interactions.csv").write_text(
        "customer_id,item_id,type,timestamp\nC1,I1,purchase,not-a-date\n"
    )
    out = CliRunner().invoke(cli, ["train", "--data", str(bad), "--out", str(tmp_path / "b")])
    assert out.exit_code == 2
    assert "interactions.csv" in out.output and "row 2" in out.output
    assert "Traceback" not in out.output


def test_cli_train_bad_config_is_a_clear_error(data: Path, tmp_path: Path) -> None:
    config = tmp_path / "train.json"
    config.write_text("{not json")
    out = CliRunner().invoke(
        cli, ["train", "--data", str(data), "--out", str(tmp_path / "b"), "--config", str(config)]
    )
    assert out.exit_code == 2
    assert "train.json" in out.output


def test_cli_train_invalid_config_field_is_a_clear_error(data: Path, tmp_path: Path) -> None:
    config = tmp_path / "train.json"
    config.write_text(json.dumps({"als": {"factors": -1}}))
    out = CliRunner().invoke(
        cli, ["train", "--data", str(data), "--out", str(tmp_path / "b"), "--config", str(config)]
    )
    assert out.exit_code == 2
    assert "als.factors" in out.output and "Traceback" not in out.output


def test_consent_given_through_the_service_reaches_the_trainer(data: Path, tmp_path: Path) -> None:
    from feature_store.event_log import EventLog

    customers = pd.read_parquet(data / "customers.parquet")
    refused, erased = str(customers["customer_id"].iloc[2]), str(customers["customer_id"].iloc[3])
    log = EventLog(tmp_path / "events")
    log.record_consent(refused, False)
    log.record_consent(erased, False)
    log.erase_customer(erased)
    assert log.consents() == {refused: False}, "erasure forgets the consent record too"
    assert erased not in (tmp_path / "events" / "consent.jsonl").read_text()
    log.close()
    result = train(
        data, tmp_path / "b", config=SMALL_CONFIG, events_dir=tmp_path / "events", progress=False
    )
    ids = pd.read_parquet(result.bundle_path / "customer_ids.parquet")["id"].tolist()
    als = ALSRecommender.load(result.bundle_path / "models" / "als")
    assert not als.user_factors[ids.index(refused)].any()
    assert erased not in ids


def test_cli_evaluate_writes_a_report(data: Path, tmp_path: Path) -> None:
    out = CliRunner().invoke(
        cli,
        [
            "evaluate",
            "--data",
            str(data),
            "--out",
            str(tmp_path / "report"),
            "--methods",
            "popularity,repurchase,als",
            "--folds",
            "2",
            "--n-boot",
            "50",
        ],
    )
    assert out.exit_code == 0, out.output
    assert "repurchase" in out.output and "als" in out.output
    assert (tmp_path / "report" / "report.md").is_file()
    assert (tmp_path / "report" / "results.json").is_file()


def test_cli_evaluate_rejects_an_unknown_method(data: Path, tmp_path: Path) -> None:
    out = CliRunner().invoke(
        cli, ["evaluate", "--data", str(data), "--out", str(tmp_path), "--methods", "magic"]
    )
    assert out.exit_code == 2
    assert "magic" in out.output and "Traceback" not in out.output
