"""The LSTM in ``lookbook train``: model, index and fitted blend in the bundle, save/load, config."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from feature_store.errors import DataFormatError
from feature_store.schema import InteractionCols
from helpers import SMALL_CONFIG
from models.bundle import DEFAULT_RRF_K, DEFAULT_WEIGHTS, SOURCES, latest_bundle
from models.index import ItemIndex
from models.sequence import ItemFeatures, SequenceConfig, SequenceRecommender
from training.blend import RRF_K_GRID, WEIGHT_GRID
from training.cli import cli
from training.data import build_id_maps, opted_out_rows, to_training_data
from training.train import (
    BLEND_SOURCES,
    SEQUENCE_TRAIN_DEFAULTS,
    SequenceTrainConfig,
    TrainConfig,
    _fit_sequence,
    load_training_frame,
    train,
)


@pytest.fixture(scope="module")
def bundle(retailer: tuple[Path, Path]) -> Path:
    info = latest_bundle(retailer[1])
    assert info is not None
    return info.path


def _manifest(bundle: Path) -> dict[str, Any]:
    manifest: dict[str, Any] = json.loads((bundle / "manifest.json").read_text())
    return manifest


def test_bundle_holds_the_lstm_its_index_and_the_fitted_blend(bundle: Path) -> None:
    manifest = _manifest(bundle)
    assert manifest["models"]["sequence"] == "models/sequence"
    assert manifest["indexes"]["sequence_items"] == "indexes/sequence_items.faiss"
    for name in (
        "models/sequence/arrays.npz",
        "models/sequence/config.json",
        "indexes/sequence_items.faiss",
        "purchase_history.npz",
        "candidates.npz",
    ):
        assert (bundle / name).is_file(), name
    # evaluated beside ALS and popularity on the same held-out customers
    metrics = manifest["metrics"]
    assert metrics["sequence"]["customers"] == metrics["als"]["customers"] > 0
    assert 0 < metrics["sequence"]["recall@12"] <= 1 and metrics["sequence"]["map@12"] > 0
    blend = manifest["blend"]
    # every source the service serves (models.bundle.SOURCES) is fitted
    assert set(blend["weights"]) == set(SOURCES)
    assert set(BLEND_SOURCES) | {"repeat", "siblings"} == set(blend["weights"])
    assert set(blend["weights"].values()) <= set(WEIGHT_GRID) | set(DEFAULT_WEIGHTS.values())
    assert blend["rrf_k"] in (*RRF_K_GRID, DEFAULT_RRF_K)
    assert blend["fitted"] is True and blend["validation_customers"] >= 30
    assert blend["validation_map"] >= blend["default_validation_map"]
    summary = manifest["sequence"]
    assert summary["blend"]["depth"] == 100
    assert sorted(summary["blend"]["sources"]) == sorted(SOURCES)
    assert summary["fit"]["epochs_run"] == SMALL_CONFIG.sequence.epochs
    assert summary["fit"]["stopped_by_budget"] is False
    for phase in ("fit_eval_sequence", "blend", "refit_sequence", "write_sequence"):
        assert manifest["timings_seconds"][phase] >= 0, phase
    assert manifest["config"]["sequence"] == SMALL_CONFIG.sequence.model_dump(mode="json")


def test_loaded_model_and_index_answer_like_the_model_before_saving(
    retailer: tuple[Path, Path], bundle: Path
) -> None:
    """Refit exactly as ``train`` refits on all the data (same seed) and compare the bundle's
    copy, loaded and retrieving through its FAISS index, with the in-memory model."""
    data, _ = retailer
    dataset = load_training_frame(data, None)
    maps = build_id_maps(dataset)
    frame = dataset.interactions
    full = to_training_data(frame, maps, now=pd.Timestamp(frame[InteractionCols.TIMESTAMP].max()))
    features = ItemFeatures.from_frame(dataset.items, maps.items.ids())
    fresh = _fit_sequence(
        frame, full, maps, features, SMALL_CONFIG, False, opted_out_rows(dataset, maps)
    )
    loaded = SequenceRecommender.load(bundle / "models" / "sequence")
    np.testing.assert_array_equal(loaded.item_vectors(), fresh.item_vectors())
    index = ItemIndex.load(bundle / "indexes" / "sequence_items.faiss")
    assert len(index) == len(maps.items) and index.dim == SMALL_CONFIG.sequence.output_dim + 1
    loaded.use_index(index)
    checked = 0
    for user in range(0, len(maps.customers), 37):
        items, sizes, types, times = fresh.history_of(user)
        got = loaded.history_of(user)
        np.testing.assert_array_equal(got[0], items)
        assert got[1] == sizes
        if len(items) == 0:
            continue
        kwargs: dict[str, Any] = {
            "sizes": sizes,
            "event_types": types.tolist(),
            "timestamps": times,
            "now": fresh.trained_until,
            "k": 12,
        }
        want_items, want_scores = fresh.recommend_from_sequence(items, **kwargs)
        got_items, got_scores = loaded.recommend_from_sequence(items, **kwargs)
        np.testing.assert_array_equal(got_items, want_items)
        np.testing.assert_allclose(got_scores, want_scores, rtol=1e-4, atol=1e-5)
        checked += 1
    assert checked >= 10
    # an anonymous session, and the exclusion of what it holds
    session = [3, 17, 42]
    want = fresh.recommend_from_sequence(session, k=8, exclude=session)
    got = loaded.recommend_from_sequence(session, k=8, exclude=session)
    np.testing.assert_array_equal(got[0], want[0])
    assert not set(got[0].tolist()) & set(session)


def test_sequence_disabled_writes_no_lstm_and_no_blend(
    retailer: tuple[Path, Path], tmp_path: Path
) -> None:
    config = SMALL_CONFIG.model_copy(
        update={"sequence": SMALL_CONFIG.sequence.model_copy(update={"enabled": False})}
    )
    result = train(retailer[0], tmp_path, config=config, progress=False)
    manifest = _manifest(result.bundle_path)
    assert "sequence" not in manifest["models"] and "sequence" not in manifest["metrics"]
    assert "sequence_items" not in manifest["indexes"]
    assert "blend" not in manifest, "the service then uses the default weights"
    assert "sequence" not in manifest
    assert not (result.bundle_path / "models" / "sequence").exists()
    assert not (result.bundle_path / "indexes" / "sequence_items.faiss").exists()
    for phase in ("fit_eval_sequence", "blend", "refit_sequence", "write_sequence"):
        assert phase not in manifest["timings_seconds"]
    assert set(result.metrics) == {"als", "popularity"}


@pytest.mark.parametrize(
    ("raw", "column"),
    [
        ({"sequence": {"epochs": 0}}, "sequence.epochs"),
        ({"sequence": {"max_windows": 0}}, "sequence.max_windows"),
        ({"sequence": {"max_train_seconds": -1}}, "sequence.max_train_seconds"),
        ({"sequence": {"loss": "magic"}}, "sequence.loss"),
        ({"sequence": {"hidden_dim": "big"}}, "sequence.hidden_dim"),
        ({"sequence": {"lstm_layers": 3}}, "sequence.lstm_layers"),
        ({"sequence": {"seed": 3}}, "sequence.seed"),  # the seed is TrainConfig.seed
        ({"sequence": {"hidden_dim": 4096}}, "sequence.hidden_dim"),  # the trainer's bound
        ({"sequence": {"learning_rate": 0}}, "sequence.learning_rate"),
        ({"sequence": {"dropout": 1.0}}, "sequence.dropout"),  # the model's own check
    ],
)
def test_invalid_sequence_config_is_a_data_format_error(
    tmp_path: Path, raw: dict[str, Any], column: str
) -> None:
    path = tmp_path / "train.json"
    path.write_text(json.dumps(raw))
    with pytest.raises(DataFormatError) as info:
        TrainConfig.from_file(path)
    assert info.value.column == column


def test_cli_reports_an_invalid_sequence_field(tmp_path: Path) -> None:
    config = tmp_path / "train.json"
    config.write_text(json.dumps({"sequence": {"batch_size": 0}}))
    out = CliRunner().invoke(
        cli,
        ["train", "--data", str(tmp_path), "--out", str(tmp_path / "b"), "--config", str(config)],
    )
    assert out.exit_code == 2
    assert "sequence.batch_size" in out.output and "Traceback" not in out.output


def test_sequence_config_reaches_the_model() -> None:
    config = TrainConfig.model_validate(
        {"seed": 9, "sequence": {"epochs": 3, "max_windows": None, "max_train_seconds": None}}
    ).sequence
    assert isinstance(config, SequenceTrainConfig)
    model_config = config.sequence_config(9)
    assert model_config.seed == 9 and model_config.epochs == 3
    assert model_config.max_windows is None and model_config.max_train_seconds is None
    assert model_config.table_rows == "batch"
    defaults = SequenceTrainConfig().sequence_config(1)
    assert defaults.max_windows is not None and defaults.max_train_seconds is not None


def test_trainer_fits_its_own_defaults_and_the_model_keeps_its() -> None:
    # what `lookbook train` has always fitted, field by field
    fitted = SequenceTrainConfig().sequence_config(42).to_dict()
    assert fitted == {
        "id_dim": 32,
        "feature_dim": 8,
        "hidden_dim": 64,
        "output_dim": 32,
        "num_layers": 1,
        "dropout": 0.2,
        "id_dropout": 0.3,
        "max_len": 20,
        "epochs": 2,
        "batch_size": 256,
        "learning_rate": 0.01,
        "weight_decay": 1e-05,
        "target": "next_basket",
        "target_types": ["purchase"],
        "loss": "sampled",
        "num_negatives": 512,
        "repeat": True,
        "repeat_half_life_days": 60.0,
        "repeat_prior": 3.0,
        "seed": 42,
        "num_threads": 1,
        "max_windows": 10000,
        "max_train_seconds": 90.0,
        "table_rows": "batch",
    }
    # the trainer departs from the model's defaults exactly where it says so
    model = SequenceConfig(seed=42).to_dict()
    assert {k for k, v in fitted.items() if model[k] != v} == set(SEQUENCE_TRAIN_DEFAULTS)
    explicit = SequenceTrainConfig(hidden_dim=96, table_rows="all").sequence_config(1)
    assert explicit.hidden_dim == 96 and explicit.table_rows == "all"
