"""The bundle format: what the writer writes the reader reads back; a bad manifest is refused."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from feature_store.errors import BundleError
from feature_store.ids import IdMap
from models.base import TrainingData
from models.bundle import (
    BUNDLE_FORMAT,
    BlendWeights,
    BundleLayout,
    BundleWriter,
    CandidateTables,
    DataSection,
    ProfilesSection,
    SequenceSection,
    SimilarItems,
    latest_bundle,
    list_bundles,
    load_csr,
    load_purchase_history,
    new_version,
    read_manifest,
)
from models.bundle.layout import FILES, FOLDERS, INDEX_NAMES, MODEL_NAMES
from models.candidates import NeighbourTable
from models.index import ItemIndex
from models.popularity import PopularityRecommender

N_ITEMS, N_CUSTOMERS = 6, 4
DATA = DataSection(
    path="data/synthetic",
    source="synthetic",
    fingerprint="0123456789abcdef",
    first_interaction="2024-01-01 00:00:00",
    last_interaction="2024-03-31 12:00:00",
    interactions=9,
    event_log=None,
)


def _write(bundles: Path, version: str = "20240331T120000-01234567", **sections: Any) -> Path:
    rng = np.random.default_rng(0)
    writer = BundleWriter(bundles, version)
    layout = writer.layout
    writer.write_ids(
        IdMap(f"I{i}" for i in range(N_ITEMS)), IdMap(f"C{c}" for c in range(N_CUSTOMERS))
    )
    writer.write_catalog(pd.DataFrame({"item_id": [f"I{i}" for i in range(N_ITEMS)]}))
    writer.write_stock(pd.DataFrame({"item_id": ["I0"], "size": ["M"], "quantity": [3]}))
    matrix = sp.random(N_CUSTOMERS, N_ITEMS, density=0.5, format="csr", random_state=1)
    writer.write_user_items(matrix.astype(np.float32))
    writer.write_purchases((matrix > 0).astype(np.float32).tocsr())
    writer.write_purchase_history(
        {
            "indptr": np.array([0, 2, 2, 3, 3]),
            "items": np.array([1, 4, 0], dtype=np.int32),
            "timestamps": np.array([10, 20, 30], dtype=np.int64),
            "weights": np.ones(3, dtype=np.float32),
        }
    )
    siblings = NeighbourTable.from_matrix(sp.csr_matrix(np.eye(N_ITEMS)[::-1] + np.eye(N_ITEMS)))
    writer.write_candidates(CandidateTables(rng.random(N_ITEMS), siblings))
    ids = np.tile(np.arange(2, dtype=np.int32), (N_ITEMS, 1))
    writer.write_similar_items(SimilarItems(ids, np.ones(ids.shape, np.float32)))
    events = matrix.tocoo()
    data = TrainingData(
        user_items=matrix.astype(np.float32),
        user_idx=events.row.astype(np.int64),
        item_idx=events.col.astype(np.int64),
        timestamps=np.arange(events.nnz, dtype=np.int64),
        event_types=np.zeros(events.nnz, np.int8),
        weights=np.ones(events.nnz, np.float32),
        now=events.nnz,
    )
    PopularityRecommender().fit(data).save(layout.popularity_model)
    ItemIndex.build(rng.random((N_ITEMS, 3)).astype(np.float32), kind="flat").save(layout.als_index)
    return writer.commit(
        data=DATA,
        config={"seed": 7, "als": {"factors": 16}},
        metrics={"als": {"map@12": 0.25}},
        item_count=N_ITEMS,
        customer_count=N_CUSTOMERS,
        timings_seconds={"total": 1.5},
        **sections,
    )


def test_what_the_writer_writes_the_reader_reads(tmp_path: Path) -> None:
    blend = BlendWeights(weights={"als": 2.0, "repeat": 0.5}, rrf_k=5.0, fitted=True)
    sequence = SequenceSection.model_validate(
        {"fit": {"train_seconds": 1.0, "epochs_run": 2, "stopped_by_budget": False}}
    )
    profiles = ProfilesSection(
        as_of="2024-03-31T12:00:00", customers=4, tiers={}, stages={}, churn={}
    )
    path = _write(tmp_path, blend=blend, sequence=sequence, profiles=profiles)

    info = latest_bundle(tmp_path)
    assert info is not None and info.path == path and info.version == path.name
    assert [b.version for b in list_bundles(tmp_path)] == [path.name]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")], "no temp leftovers"
    manifest = read_manifest(path)
    assert manifest.format == BUNDLE_FORMAT and manifest.version == path.name
    assert manifest.data == DATA and manifest.blend == blend
    assert manifest.sequence == sequence and manifest.look is None
    assert manifest.config == {"seed": 7, "als": {"factors": 16}}
    assert (manifest.item_count, manifest.customer_count) == (N_ITEMS, N_CUSTOMERS)
    # the writer lists what was saved, and where the profiles are
    assert manifest.models == {"popularity": "models/popularity"}
    assert manifest.indexes == {"als_items": "indexes/als_items.faiss"}
    assert manifest.profiles is not None
    assert (manifest.profiles.path, manifest.profiles.churn_model) == ("profiles", None)
    assert "look" not in json.loads(info.layout.manifest.read_text()), "absent sections stay out"

    layout = BundleLayout(path)
    assert load_csr(layout.user_items).shape == (N_CUSTOMERS, N_ITEMS)
    log = load_purchase_history(layout.purchase_history, N_CUSTOMERS)
    assert log is not None and log["items"].tolist() == [1, 4, 0]
    tables = CandidateTables.load(layout.candidates, N_ITEMS)
    assert tables is not None and tables.siblings.neighbours(0)[0].tolist() == [N_ITEMS - 1]
    assert SimilarItems.load(layout.similar_items, N_ITEMS).ids.shape == (N_ITEMS, 2)
    loaded = PopularityRecommender.load(layout.popularity_model)
    assert loaded.scores.shape == (N_ITEMS,)
    assert len(ItemIndex.load(layout.als_index)) == N_ITEMS


def test_tables_that_do_not_match_the_ids_are_refused(tmp_path: Path) -> None:
    layout = BundleLayout(_write(tmp_path))
    with pytest.raises(BundleError, match="customer ids"):
        load_purchase_history(layout.purchase_history, N_CUSTOMERS + 1)
    with pytest.raises(BundleError, match="item ids"):
        CandidateTables.load(layout.candidates, N_ITEMS + 1)
    with pytest.raises(BundleError, match="item ids"):
        SimilarItems.load(layout.similar_items, N_ITEMS - 1)
    # bundles written before a table have none
    assert load_purchase_history(tmp_path / "none.npz", N_CUSTOMERS) is None
    assert CandidateTables.load(tmp_path / "none.npz", N_ITEMS) is None


def test_a_version_is_published_once(tmp_path: Path) -> None:
    version = new_version("0123456789abcdef")
    assert version.endswith("-01234567")
    _write(tmp_path, version)
    with pytest.raises(BundleError, match="already exists"):
        _write(tmp_path, version)


def _manifest(tmp_path: Path) -> tuple[Path, dict[str, Any]]:
    path = _write(tmp_path, blend=BlendWeights())
    return path, json.loads(BundleLayout(path).manifest.read_text())


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda m: m.update(format=BUNDLE_FORMAT + 1), f"bundle format {BUNDLE_FORMAT + 1}"),
        (lambda m: m.update(format=True), "bundle format True"),
        (lambda m: m.pop("checksums"), "needs checksums"),
        (lambda m: m.pop("format"), "bundle format None"),
        (lambda m: m.update(item_cuont=m.pop("item_count")), "item_count"),  # misspelt
        (lambda m: m.pop("data"), "data"),  # missing
        (lambda m: m["data"].pop("last_interaction"), "data.last_interaction"),
        (lambda m: m.update(metrics={"als": {"map@12": "high"}}), "metrics.als.map@12"),
        (lambda m: m["blend"].pop("weights"), "blend"),
        (lambda m: m["blend"].update(rrfk=5), "blend.rrfk"),  # misspelt
    ],
)
def test_a_wrong_manifest_is_a_bundle_error(tmp_path: Path, change: Any, message: str) -> None:
    path, raw = _manifest(tmp_path)
    change(raw)
    BundleLayout(path).manifest.write_text(json.dumps(raw))
    with pytest.raises(BundleError, match=message.replace(".", r"\.")):
        read_manifest(path)


def test_a_folder_without_a_readable_manifest_is_a_bundle_error(tmp_path: Path) -> None:
    with pytest.raises(BundleError, match="not a bundle"):
        read_manifest(tmp_path)
    BundleLayout(tmp_path).manifest.write_text("{not json")
    with pytest.raises(BundleError, match="not valid JSON"):
        read_manifest(tmp_path)
    BundleLayout(tmp_path).manifest.write_text("[]")
    with pytest.raises(BundleError, match="not a JSON object"):
        read_manifest(tmp_path)


def test_older_manifests_and_newer_summaries_are_read(tmp_path: Path) -> None:
    """Sections a bundle was trained without are absent; summaries may carry more keys."""
    path, raw = _manifest(tmp_path)
    raw.pop("blend")
    raw.update(format=1)  # format 1: no checksums
    raw.pop("checksums")
    raw["look"] = {"complementary": {"baskets": 3, "added_later": True}}
    raw["profiles"] = {
        "as_of": "2024-03-31T12:00:00",
        "customers": 4,
        "tiers": {"high_value": 1},
        "stages": {"new": 4},
        "churn": {"horizon_days": 90},
        "path": "profiles",
        "churn_model": "churn",
        "segments_added_later": {},
    }
    BundleLayout(path).manifest.write_text(json.dumps(raw))
    manifest = read_manifest(path)
    assert manifest.blend is None and manifest.sequence is None and manifest.checksums is None
    assert manifest.look == {"complementary": {"baskets": 3, "added_later": True}}
    assert manifest.profiles is not None and manifest.profiles.churn_model == "churn"


def test_the_layout_names_each_entry_once() -> None:
    names = [*FILES, *FOLDERS, *(f"indexes/{n}.faiss" for n in INDEX_NAMES)]
    assert len(names) == len(set(names))
    layout = BundleLayout(Path("/b"))
    assert layout.model("als") == layout.als_model == Path("/b/models/als")
    assert layout.index("als_items") == layout.als_index == Path("/b/indexes/als_items.faiss")
    assert {layout.owner(layout.model(m) / "config.json") for m in MODEL_NAMES} == {
        f"models/{m}" for m in MODEL_NAMES
    }
    assert layout.owner(Path("/b/indexes/als_items.faiss.json")) == "indexes/als_items.faiss"
    assert layout.owner(Path("/b/profiles/sizes.parquet")) == "profiles"
    assert layout.owner(Path("/b/notes.txt")) is None
    with pytest.raises(ValueError, match="unknown bundle model"):
        layout.model("magic")
