"""The small / fit / large classifier of the size-fit model (models/size_fit_ranker.py): features
the same offline and for one triple, deterministic training, the save / load round trip, consent,
the latent model serving its probabilities, and a known answer on planted verdicts."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from app.runtime import LoadedBundle
from feature_store.errors import BundleError
from models.bundle import latest_bundle
from models.size_fit import LARGE, SMALL, FitObservations, SizeFitConfig, SizeFitModel
from models.size_fit_ranker import (
    FEATURES,
    FitTables,
    SizeFitRanker,
    SizeFitRankerConfig,
    feature_names,
    ordinal,
)
from tests.test_size_fit import _planted
from training.churn_eval import auc

CONFIG = SizeFitRankerConfig(rounds=80, min_child_samples=20)


def _fitted(seed: int = 3) -> tuple[FitObservations, SizeFitModel, SizeFitRanker]:
    obs, sizing, true, _ = _planted(seed, customers=400, items=40, per_customer=8)
    body = np.random.default_rng(seed).normal(true[:, None], 1.0, size=(len(true), 2))
    body[::5, 1] = np.nan
    latent = SizeFitModel(SizeFitConfig(max_iter=100, calibration_share=0.0)).fit(
        obs, sizing, len(true), body
    )
    return obs, latent, SizeFitRanker(CONFIG).fit(obs, latent)


@pytest.fixture(scope="module")
def fitted() -> tuple[FitObservations, SizeFitModel, SizeFitRanker]:
    return _fitted()


def _queries() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    customers = np.array([0, 5, -1, 399, 12, 12])  # -1: a new customer
    items = np.array([0, 3, 7, 39, 11, 11])
    positions = np.array([2.0, 3.0, 4.0, 5.0, 1.0, 9.0])  # 9: a size nobody bought
    return customers, items, positions


def test_features_offline_equal_online(
    fitted: tuple[FitObservations, SizeFitModel, SizeFitRanker],
) -> None:
    obs, latent, ranker = fitted
    batch = ranker.features(latent, obs.customer[:200], obs.item[:200], obs.position[:200])
    assert batch.shape == (200, len(feature_names(latent)))
    for k in range(0, 200, 17):  # one (customer, item, size) at a time, as the service asks
        one = ranker.features(
            latent, obs.customer[k : k + 1], obs.item[k : k + 1], obs.position[k : k + 1]
        )
        np.testing.assert_array_equal(one[0], batch[k])
    # the tables are the statistics of the verdicts: the item's count and its small share
    k = int(obs.item[0])
    mine = obs.item == k
    row = batch[0, list(feature_names(latent)).index("i_n")]
    assert row == mine.sum()
    prior = np.bincount(obs.verdict.astype(np.int64), minlength=3) / len(obs)
    small = ((obs.verdict[mine] == SMALL).sum() + CONFIG.smoothing * prior[SMALL]) / (
        mine.sum() + CONFIG.smoothing
    )
    assert batch[0, FEATURES.index("i_small")] == pytest.approx(small)


def test_training_is_deterministic(
    fitted: tuple[FitObservations, SizeFitModel, SizeFitRanker],
) -> None:
    _, latent, ranker = fitted
    _, _, again = _fitted()
    assert ranker.booster is not None and again.booster is not None
    assert ranker.booster.model_to_string() == again.booster.model_to_string()
    np.testing.assert_array_equal(
        ranker.predict_proba(latent, *_queries()), again.predict_proba(latent, *_queries())
    )


def test_boosting_on_a_capped_sample_of_rows_is_deterministic(
    fitted: tuple[FitObservations, SizeFitModel, SizeFitRanker],
) -> None:
    obs, latent, ranker = fitted
    capped = CONFIG.model_copy(update={"max_train_rows": 1000})
    first = SizeFitRanker(capped).fit(obs, latent)
    second = SizeFitRanker(capped).fit(obs, latent)
    assert first.training["boosted_rows"] == 1000 < first.training["observations"]
    assert ranker.training["boosted_rows"] == ranker.training["observations"]
    assert first.booster is not None and second.booster is not None
    assert first.booster.model_to_string() == second.booster.model_to_string()
    # the served tables still hold every verdict
    assert first.tables is not None and ranker.tables is not None
    np.testing.assert_array_equal(first.tables.item, ranker.tables.item)


def test_save_and_load_give_identical_probabilities(
    fitted: tuple[FitObservations, SizeFitModel, SizeFitRanker], tmp_path: Path
) -> None:
    _, latent, ranker = fitted
    ranker.save(tmp_path / "size_fit_ranker")
    assert sorted(p.name for p in (tmp_path / "size_fit_ranker").iterdir()) == [
        "arrays.npz",
        "booster.txt",
        "config.json",
    ]
    loaded = SizeFitRanker.load(tmp_path / "size_fit_ranker")
    np.testing.assert_array_equal(
        loaded.predict_proba(latent, *_queries()), ranker.predict_proba(latent, *_queries())
    )
    np.testing.assert_array_equal(
        loaded.features(latent, *_queries()), ranker.features(latent, *_queries())
    )
    assert loaded.training == ranker.training


def test_a_classifier_of_another_model_is_refused(
    fitted: tuple[FitObservations, SizeFitModel, SizeFitRanker],
) -> None:
    _, latent, ranker = fitted
    ranker.check(latent)
    obs, sizing, true, _ = _planted(4, customers=50, items=12, per_customer=4)
    other = SizeFitModel(SizeFitConfig(max_iter=20, calibration_share=0.0)).fit(
        obs, sizing, len(true)
    )  # no body measurements, fewer items
    with pytest.raises(BundleError, match="disagree"):
        ranker.check(other)


def test_the_latent_model_serves_the_classifiers_probabilities(
    fitted: tuple[FitObservations, SizeFitModel, SizeFitRanker],
) -> None:
    _, latent, ranker = fitted
    alone = latent.predict_proba(*_queries())
    np.testing.assert_array_equal(alone, latent.latent_proba(*_queries()))
    latent.classifier = ranker
    try:
        served = latent.predict_proba(*_queries())
    finally:
        latent.classifier = None
    np.testing.assert_array_equal(served, ranker.predict_proba(latent, *_queries()))
    np.testing.assert_allclose(served.sum(axis=1), 1.0)
    assert not np.allclose(served, alone)


def test_forgotten_customers_keep_no_statistics(tmp_path: Path) -> None:
    _, latent, ranker = _fitted()
    names = feature_names(latent)
    own = [names.index(n) for n in ("u_n", "u_mean", "u_rel")]
    before = ranker.features(latent, np.array([5, 6]), np.array([0, 0]), np.array([3.0, 3.0]))
    assert (before[:, own[0]] > 0).all()
    ranker.forget_customers(np.array([5]))
    ranker.save(tmp_path / "r")
    after = SizeFitRanker.load(tmp_path / "r").features(
        latent, np.array([5, 6]), np.array([0, 0]), np.array([3.0, 3.0])
    )
    assert after[0, own[0]] == 0 and np.isnan(after[0, own[1:]]).all()
    np.testing.assert_array_equal(after[1], before[1])  # others untouched
    assert ranker.tables is not None
    assert 5 not in set((ranker.tables.customer_keys // ranker.n_scales).tolist())


def test_known_answer_on_held_out_planted_verdicts() -> None:
    """Planted items that run small / large and customers' true sizes: the classifier ranks
    held-out verdicts better than chance and no worse than the item's shares alone."""
    obs, sizing, true, _ = _planted(11, customers=600, items=40, per_customer=8)
    held = np.random.default_rng(0).random(len(obs)) < 0.2
    train, test = obs.take(~held), obs.take(held)
    latent = SizeFitModel(SizeFitConfig(max_iter=100, calibration_share=0.0)).fit(
        train, sizing, len(true)
    )
    ranker = SizeFitRanker(CONFIG).fit(train, latent)
    probs = ranker.predict_proba(latent, test.customer, test.item, test.position)
    y = test.verdict.astype(np.int64)
    served = np.mean([auc(y == k, probs[:, k]) for k in range(3)])
    x = ranker.features(latent, test.customer, test.item, test.position)
    item_small, item_large = x[:, FEATURES.index("i_small")], x[:, FEATURES.index("i_large")]
    item_only = np.mean(
        [
            auc(y == SMALL, item_small),
            auc(y == 1, 1 - item_small - item_large),
            auc(y == LARGE, item_large),
        ]
    )
    print(f"served classifier {served:.3f}, item only {item_only:.3f}")
    assert served > 0.7
    assert served > item_only + 0.05


def test_tables_leave_out_items_on_no_scale() -> None:
    obs = FitObservations(
        np.array([0, 0, 1], np.int64),
        np.array([0, 1, 1], np.int64),
        np.array([1.0, 2.0, 2.0]),
        np.array([SMALL, LARGE, LARGE], np.int8),
    )
    tables = FitTables.build(obs, np.array([-1, 0], np.int64), smoothing=0.0)
    assert tables.item[0, 0] == 0 and np.isnan(tables.item[0, 1])
    assert tables.item[1, 0] == 2 and tables.item[1, 4] == 1.0  # both too large
    assert tables.prior.tolist() == [0.0, 0.0, 1.0]


def test_ordinal_probabilities() -> None:
    raw = np.array([[0.5, 0.4, 0.1], [0.6, 0.3, 0.1], [0.1, 0.5, 0.4], [0.1, 0.8, 0.1]])
    out = ordinal(raw)
    np.testing.assert_allclose(out.sum(axis=1), 1.0)
    assert (np.diff(out[:, SMALL]) <= 1e-12).all() and (np.diff(out[:, LARGE]) >= -1e-12).all()
    np.testing.assert_allclose(out[:2, SMALL], 0.55)  # the violating pair pooled
    np.testing.assert_allclose(ordinal(out), out)  # already ordinal: unchanged


def test_the_bundle_serves_the_classifier(retailer: tuple[Path, Path], client: TestClient) -> None:
    """``lookbook train`` wrote the classifier, the service loads it with the size-fit model and
    the size advice shows its probabilities (made ordinal over the item's sizes)."""
    _, bundles = retailer
    info = latest_bundle(bundles)
    assert info is not None
    assert (info.path / "models" / "size_fit_ranker" / "booster.txt").is_file()
    bundle = LoadedBundle.load(info.path)
    model = bundle.size_fit
    assert model is not None and model.classifier is not None and model.scales is not None
    assert model.sizing is not None
    item = int(np.flatnonzero(model.sizing.scale >= 0)[0])
    item_id = bundle.catalog.ids.ids()[item]
    offered = list(bundle.catalog.sizes[item])
    scale = int(model.sizing.scale[item])
    positions = np.array([model.scales.rank(scale, size) for size in offered], np.float64)
    n = len(offered)
    expected = ordinal(
        model.predict_proba(np.full(n, -1), np.full(n, item), positions)[np.argsort(positions)]
    )[np.argsort(np.argsort(positions))]
    body = client.get(f"/v1/items/{item_id}/size-advice").json()
    shown = np.array([[s["p_small"], s["p_fit"], s["p_large"]] for s in body["sizes"]])
    np.testing.assert_allclose(shown, expected, atol=6e-5)
