"""The size-fit model: size scales, the fit (gradient, determinism, save/load), planted answers,
fit feedback from Lookbook's format, and the known answer on the synthetic retailer."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

import models.size_fit as size_fit
from feature_store.loaders import load_dataset
from feature_store.schema import InteractionCols, ItemCols
from feature_store.synthetic import LATENT_FILE, LATENT_ITEMS_FILE, generate
from models.size_fit import (
    FIT,
    LARGE,
    SMALL,
    FitObservations,
    ItemSizing,
    SizeFitConfig,
    SizeFitModel,
    SizeScales,
)
from training.data import IdMaps, build_id_maps
from training.size_fit import catalog_sizing, fit_observations, fit_size_model

# -- size scales ------------------------------------------------------------------------------


def test_scales_merge_kinds_that_size_alike_and_order_labels() -> None:
    letters = ("XS", "S", "M", "L", "XL")
    waist = tuple(str(w) for w in (26, 27, 28, 29, 30, 31, 32, 33, 34, 36, 38))
    eu = ("34", "36", "38", "40", "42", "44", "46")
    scales = SizeScales.from_catalog(
        ["top", "top", "top", "bottom", "bottom", "bottom", "accessory"],
        ["tee", "shirt", "shirt", "jeans", "trousers", "trousers", "bag"],
        [letters[1:], letters[:4], ("M", "L", "XL"), waist, eu[:5], eu[2:], ("ONE SIZE",)],
    )
    tee = scales.scale_of("top", "tee", letters[1:])
    assert tee == scales.scale_of("top", "shirt", ("M", "L")) >= 0  # one scale for tops
    assert scales.labels[tee] == letters  # merged from partial lists, in size order
    jeans = scales.scale_of("bottom", "jeans", waist)
    trousers = scales.scale_of("bottom", "trousers", eu)
    assert jeans != trousers, "waist and EU sizes share a few numbers, not a scale"
    assert scales.labels[trousers] == eu and scales.labels[jeans] == waist  # by value
    assert scales.rank(jeans, "36") == 9 and scales.rank(trousers, "36") == 1
    assert scales.rank(tee, "XXL") is None
    assert scales.scale_of("accessory", "bag", ("ONE SIZE",)) == -1
    again = SizeScales.from_arrays(scales.to_arrays())
    assert again.labels == scales.labels and again.kinds == scales.kinds
    assert again.categories == scales.categories


# -- the model on planted data ----------------------------------------------------------------


def _planted(
    seed: int, customers: int = 300, items: int = 60, per_customer: int = 6
) -> tuple[FitObservations, ItemSizing, np.ndarray, np.ndarray]:
    """Verdicts drawn from known true sizes and item offsets (one scale of 7 sizes)."""
    rng = np.random.default_rng(seed)
    true = rng.normal(3.0, 1.0, customers)
    group = rng.integers(0, 3, items)
    offset = np.where(rng.random(items) < 0.2, rng.choice([-1.0, 1.0], items), 0.0)
    n = customers * per_customer
    cust = np.repeat(np.arange(customers), per_customer)
    item = rng.integers(0, items, n)
    position = np.clip(np.rint(true[cust] + rng.normal(0, 0.8, n)), 0, 6)
    eta = 3.0 * (position - true[cust] - offset[item])
    small = rng.random(n) < 1 / (1 + np.exp(eta + 2.0))
    large = ~small & (rng.random(n) < 1 / (1 + np.exp(-eta + 2.0)))
    verdict = np.where(small, SMALL, np.where(large, LARGE, FIT)).astype(np.int8)
    obs = FitObservations(cust.astype(np.int64), item.astype(np.int64), position, verdict)
    sizing = ItemSizing(np.zeros(items, np.int64), group.astype(np.int64), np.array([3.0]))
    return obs, sizing, true, offset


def test_gradient_matches_finite_differences(monkeypatch: pytest.MonkeyPatch) -> None:
    captured: dict[str, Any] = {}
    real = size_fit.minimize

    def spy(fun: Any, x0: Any, **kwargs: Any) -> Any:
        captured["fun"], captured["x0"] = fun, x0
        return real(fun, x0, **kwargs)

    monkeypatch.setattr(size_fit, "minimize", spy)
    obs, sizing, _, _ = _planted(1, customers=20, items=8, per_customer=4)
    body = np.random.default_rng(2).normal(size=(20, 2))
    body[::4, 1] = np.nan
    config = SizeFitConfig(max_iter=2, slope=None, calibration_share=0.0)
    SizeFitModel(config).fit(obs, sizing, 20, body)
    fun, x = (
        captured["fun"],
        captured["x0"] + np.random.default_rng(3).normal(0, 0.3, len(captured["x0"])),
    )
    _, grad = fun(x)
    eps = 1e-6
    numeric = np.array(
        [(fun(x + eps * e)[0] - fun(x - eps * e)[0]) / (2 * eps) for e in np.eye(len(x))]
    )
    np.testing.assert_allclose(grad, numeric, rtol=1e-4, atol=1e-5)


def test_recovers_planted_sizes_and_offsets() -> None:
    obs, sizing, true, offset = _planted(5)
    model = SizeFitModel(SizeFitConfig(calibration_share=0.0)).fit(obs, sizing, len(true))
    size, _, count = model.true_size(np.arange(len(true)), np.zeros(len(true), np.int64))
    assert (count == 6).all()
    assert np.corrcoef(size, true)[0, 1] > 0.9
    found, _, _ = model.offset(np.arange(len(offset)))
    assert found[offset > 0].mean() > 0.5 > found[offset == 0].mean() + 0.3
    assert found[offset < 0].mean() < -0.5
    probs = model.predict_proba(obs.customer, obs.item, obs.position)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0)
    # too small is likelier below the size that fits, too large above it
    below = model.predict_proba(np.array([0]), np.array([0]), np.array([size[0] - 1.0]))
    above = model.predict_proba(np.array([0]), np.array([0]), np.array([size[0] + 1.0]))
    assert below[0, SMALL] > below[0, LARGE] and above[0, LARGE] > above[0, SMALL]


def test_fit_is_deterministic_and_survives_save_and_load(tmp_path: Path) -> None:
    obs, sizing, true, _ = _planted(9, customers=120, items=30)
    body = np.random.default_rng(4).normal(size=(len(true), 2))
    config = SizeFitConfig(max_iter=100, calibration_share=0.3)
    first = SizeFitModel(config).fit(obs, sizing, len(true), body)
    second = SizeFitModel(config).fit(obs, sizing, len(true), body)
    np.testing.assert_array_equal(first.pair_size, second.pair_size)
    np.testing.assert_array_equal(first.item_offset, second.item_offset)
    assert first.curve == second.curve
    first.save(tmp_path / "size_fit")
    loaded = SizeFitModel.load(tmp_path / "size_fit")
    customers = np.array([0, 5, -1, 119])  # -1: a new customer (the scale's prior)
    items = np.array([0, 3, 7, 29])
    positions = np.array([2.0, 3.0, 4.0, 5.0])
    np.testing.assert_allclose(
        loaded.predict_proba(customers, items, positions),
        first.predict_proba(customers, items, positions),
    )
    new_body = np.array([[0.5, np.nan]])
    np.testing.assert_allclose(
        loaded.true_size(np.array([-1]), np.array([0]), new_body)[0],
        first.true_size(np.array([-1]), np.array([0]), new_body)[0],
    )
    assert loaded.config == first.config and loaded.calibration == first.calibration
    # forgetting a customer drops their learnt size, not what their feedback taught of items
    loaded.forget_customers(np.array([5]))
    _, _, count = loaded.true_size(np.array([5, 0]), np.array([0, 0]))
    assert count[0] == 0 and count[1] > 0
    np.testing.assert_array_equal(loaded.item_offset, first.item_offset)


def test_new_items_fall_back_to_their_product_type() -> None:
    obs, sizing, true, _ = _planted(11, customers=200, items=40)
    group = sizing.group.copy()
    group[:] = 0
    group[:20] = 1  # items 0..19 run small, and so does their product type
    rng = np.random.default_rng(0)
    cust = obs.customer
    n = len(cust)
    item = np.where(rng.random(n) < 0.5, rng.integers(0, 19, n), rng.integers(20, 40, n))
    truth_offset = np.where(group[item] == 1, 1.0, 0.0)
    eta = 3.0 * (obs.position - true[cust] - truth_offset)
    verdict = np.where(eta < -2.0, SMALL, np.where(eta > 2.0, LARGE, FIT)).astype(np.int8)
    planted = FitObservations(cust, item.astype(np.int64), obs.position, verdict)
    model = SizeFitModel(SizeFitConfig(calibration_share=0.0)).fit(
        planted, ItemSizing(sizing.scale, group, sizing.scale_centre), len(true)
    )
    unseen = 19  # product type 1, never observed
    assert unseen not in set(planted.item.tolist())
    assert model.offset(np.array([unseen]))[0][0] > 0.3
    assert model.group_offset[1] > model.group_offset[0] + 0.3


# -- Lookbook's format ------------------------------------------------------------------------


def test_fit_observations_from_purchases_and_returns() -> None:
    from feature_store.ids import IdMap

    items = pd.DataFrame(
        {
            ItemCols.ID: ["a", "b"],
            ItemCols.CATEGORY: ["top", "top"],
            ItemCols.PRODUCT_TYPE: ["tee", "tee"],
            ItemCols.SIZES: [["S", "M", "L"], ["S", "M", "L"]],
        }
    )
    stamp = pd.Timestamp("2026-01-01", tz="UTC")
    rows = [
        ("c1", "a", "purchase", "M", None),  # kept: fits
        ("c1", "b", "purchase", "S", None),
        ("c1", "b", "return", None, "too_small"),  # a return without a size: the one bought
        ("c2", "a", "purchase", "L", None),
        ("c2", "a", "return", "L", "too_large"),
        ("c2", "b", "purchase", "M", None),
        ("c2", "b", "return", "M", "changed_mind"),  # not about fit: left out
    ]
    interactions = pd.DataFrame(
        rows,
        columns=[
            InteractionCols.CUSTOMER_ID,
            InteractionCols.ITEM_ID,
            InteractionCols.TYPE,
            InteractionCols.SIZE,
            InteractionCols.RETURN_REASON,
        ],
    ).assign(**{InteractionCols.TIMESTAMP: stamp})
    maps = IdMaps(items=IdMap(["a", "b"]), customers=IdMap(["c1", "c2"]))
    scales, sizing = catalog_sizing(items)
    obs = fit_observations(interactions, sizing, maps, scales)
    got = sorted(
        zip(
            obs.customer.tolist(),
            obs.item.tolist(),
            obs.position.tolist(),
            obs.verdict.tolist(),
            strict=True,
        )
    )
    assert got == [(0, 0, 1.0, FIT), (0, 1, 0.0, SMALL), (1, 0, 2.0, LARGE)]


# -- the synthetic retailer's known answer ----------------------------------------------------

KNOWN_CUSTOMERS = 2_000
KNOWN_ITEMS = 250
#: latent column of the customer's true size, per (category, product types or None for all)
LATENT_COLUMN = {
    ("top", None): "size_top",
    ("outerwear", None): "size_outerwear",
    ("dress", None): "size_dress",
    ("underwear", None): "size_underwear",
    ("swimwear", None): "size_swimwear",
    ("shoes", None): "size_shoes",
    ("bottom", ("jeans", "chinos")): "size_bottom_waist",
    ("bottom", ("joggers", "leggings")): "size_bottom_letter",
    ("bottom", ("trousers", "skirt", "shorts")): "size_bottom_eu",
}


@pytest.fixture(scope="module")
def known(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    data = tmp_path_factory.mktemp("known") / "retailer"
    generate(data, customers=KNOWN_CUSTOMERS, items=KNOWN_ITEMS, seed=7)
    dataset = load_dataset(data)
    maps = build_id_maps(dataset)
    model, summary = fit_size_model(dataset, maps, np.empty(0, np.int64))
    return {
        "data": data,
        "dataset": dataset,
        "maps": maps,
        "model": model,
        "summary": summary,
        "latent": pd.read_parquet(data / LATENT_FILE).set_index("customer_id"),
        "offsets": pd.read_parquet(data / LATENT_ITEMS_FILE).set_index("item_id")["fit_offset"],
    }


def test_known_answer_items_that_run_small_or_large(known: dict[str, Any]) -> None:
    model: SizeFitModel = known["model"]
    maps: IdMaps = known["maps"]
    truth = known["offsets"].reindex(maps.items.ids()).to_numpy()
    offset, var, _ = model.offset(np.arange(len(truth)))
    sd = np.sqrt(var)
    small = (offset >= 0.4) & (offset >= 2 * sd)  # the service's rule (app/size_advice.py)
    large = (offset <= -0.4) & (-offset >= 2 * sd)
    found_small, found_large = small[truth == 1].mean(), large[truth == -1].mean()
    false = (small | large)[truth == 0].mean()
    print(
        f"runs small found {found_small:.0%} of {(truth == 1).sum()}, runs large "
        f"{found_large:.0%} of {(truth == -1).sum()}, false flags {false:.1%}"
    )
    assert found_small >= 0.5 and found_large >= 0.5
    assert false <= 0.1
    assert not (small & (truth == -1)).any() and not (large & (truth == 1)).any()


def test_known_answer_customers_true_sizes(known: dict[str, Any]) -> None:
    model: SizeFitModel = known["model"]
    maps: IdMaps = known["maps"]
    items = known["dataset"].items.set_index(ItemCols.ID).loc[maps.items.ids()]
    assert model.scales is not None and model.sizing is not None
    latent = known["latent"]
    n_scales = len(model.scales)
    keys = model.pair_keys
    customer_ids = np.asarray(maps.customers.ids(), dtype=object)[keys // n_scales]
    scale = keys % n_scales
    # the latent column behind each scale (through any item on it)
    column_of: dict[int, str] = {}
    for (category, kinds), column in LATENT_COLUMN.items():
        mask = items[ItemCols.CATEGORY] == category
        if kinds is not None:
            mask &= items[ItemCols.PRODUCT_TYPE].isin(kinds)
        for g in np.unique(model.sizing.scale[mask.to_numpy()]):
            if g >= 0:
                column_of[int(g)] = column
    hits, baseline_hits, total = 0, 0, 0
    bought = known["dataset"].interactions
    bought = bought[bought[InteractionCols.TYPE] == "purchase"]
    usual = bought.groupby([InteractionCols.CUSTOMER_ID, InteractionCols.ITEM_ID])[
        InteractionCols.SIZE
    ].last()
    usual_frame = usual.reset_index()
    usual_frame["scale"] = model.sizing.scale[
        maps.items.indices(usual_frame[InteractionCols.ITEM_ID].astype(str).tolist())
    ]
    mode = usual_frame.groupby([InteractionCols.CUSTOMER_ID, "scale"])[InteractionCols.SIZE].agg(
        lambda s: s.mode().iloc[0]
    )
    for k in range(len(keys)):
        column = column_of.get(int(scale[k]))
        if column is None:
            continue
        label = latent.at[customer_ids[k], column]
        rank = model.scales.rank(int(scale[k]), str(label))
        if rank is None:
            continue
        total += 1
        hits += int(round(model.pair_size[k]) == rank)
        baseline = mode.get((customer_ids[k], int(scale[k])))
        baseline_hits += int(
            baseline is not None and model.scales.rank(int(scale[k]), baseline) == rank
        )
    rate, baseline_rate = hits / total, baseline_hits / total
    print(f"true sizes recovered {rate:.1%} of {total} (most-bought size {baseline_rate:.1%})")
    assert total > 1000
    assert rate >= 0.7
    assert rate >= baseline_rate - 0.03  # on par with the most-bought size, and it knows more


# -- fitting at scale: the calibration sample, the warm start, the stopping rule --------------


def test_calibration_sample_is_seeded_whole_customers_under_the_cap() -> None:
    obs, _, _, _ = _planted(21, customers=300, per_customer=6)  # 1800 verdicts
    assert size_fit.calibration_sample(obs, None, 0) is obs
    assert size_fit.calibration_sample(obs, len(obs), 0) is obs
    first = size_fit.calibration_sample(obs, 600, 0)
    again = size_fit.calibration_sample(obs, 600, 0)
    other = size_fit.calibration_sample(obs, 600, 1)
    np.testing.assert_array_equal(first.customer, again.customer)
    np.testing.assert_array_equal(first.verdict, again.verdict)
    assert 594 <= len(first) <= 600  # whole customers (6 verdicts each) up to the cap
    assert set(first.customer.tolist()) != set(other.customer.tolist())
    # every verdict of a sampled customer, none of the others'
    picked = np.isin(obs.customer, np.unique(first.customer))
    assert picked.sum() == len(first)


def test_capped_calibration_is_deterministic_and_close_to_the_full_one() -> None:
    obs, sizing, true, _ = _planted(23, customers=2000, per_customer=5)
    capped = SizeFitConfig(calibration_share=0.2, calibration_max_observations=6000)
    first = SizeFitModel(capped).fit(obs, sizing, len(true))
    second = SizeFitModel(capped).fit(obs, sizing, len(true))
    assert first.calibration is not None and first.calibration == second.calibration
    assert first.training["calibration_fit"]["observations"] <= 6000 * 0.9
    np.testing.assert_array_equal(first.pair_size, second.pair_size)
    full = SizeFitModel(capped.model_copy(update={"calibration_max_observations": None}))
    full.fit(obs, sizing, len(true))
    # the same verdict curve, near enough, from under two thirds of the feedback
    dist = np.linspace(-2.0, 2.0, 9)
    var = np.full(9, 0.3)
    assert full.calibration is not None
    np.testing.assert_allclose(
        size_fit._curve(dist, var, first.calibration),
        size_fit._curve(dist, var, full.calibration),
        atol=0.06,
    )


def test_warm_start_reaches_the_cold_start_answer() -> None:
    obs, sizing, true, _ = _planted(25, customers=400, per_customer=6)
    body = np.random.default_rng(6).normal(size=(len(true), 2))
    config = SizeFitConfig(calibration_share=0.0, ftol=0.0, tol=1e-9, max_iter=1000)
    cold = SizeFitModel(config).fit(obs, sizing, len(true), body)
    # a first fit on part of the feedback (some customers and items unseen) to start from
    part = SizeFitModel(config).fit(obs.take(obs.customer < 250), sizing, len(true), body)
    warm = SizeFitModel(config)
    warm._fit_map(obs, sizing, len(true), body, False, "final", part._estimates())
    assert warm.training["warm_start"] and not cold.training["warm_start"]
    np.testing.assert_array_equal(warm.pair_keys, cold.pair_keys)
    np.testing.assert_allclose(warm.pair_size, cold.pair_size, atol=1e-3)
    np.testing.assert_allclose(warm.item_offset, cold.item_offset, atol=1e-3)
    np.testing.assert_allclose(warm.body_weights, cold.body_weights, atol=1e-3)
    assert warm.training["iterations"] < cold.training["iterations"]


def test_relative_loss_tolerance_stops_early_near_the_optimum() -> None:
    obs, sizing, true, _ = _planted(27, customers=1500, per_customer=6)
    exact = SizeFitModel(SizeFitConfig(calibration_share=0.0, ftol=0.0, tol=1e-9, max_iter=1000))
    exact.fit(obs, sizing, len(true))
    loose = SizeFitModel(SizeFitConfig(calibration_share=0.0, ftol=1e-6, tol=1e-9, max_iter=1000))
    loose.fit(obs, sizing, len(true))
    assert loose.training["converged"]
    assert loose.training["iterations"] < exact.training["iterations"]
    gap = loose.training["loss_per_observation"] - exact.training["loss_per_observation"]
    assert 0 <= gap < 1e-5
    np.testing.assert_allclose(loose.pair_size, exact.pair_size, atol=0.05)


def test_progress_logs_each_stage(caplog: pytest.LogCaptureFixture) -> None:
    obs, sizing, true, _ = _planted(29, customers=1000, per_customer=6)
    with caplog.at_level("INFO", logger="lookbook.models"):
        SizeFitModel(SizeFitConfig(calibration_share=0.2)).fit(
            obs, sizing, len(true), show_progress=True
        )
    stages = [r.getMessage() for r in caplog.records if "size-fit model" in r.getMessage()]
    assert len(stages) == 2
    assert "calibration fit" in stages[0] and "final fit" in stages[1]
    assert all("iterations" in s and " s" in s for s in stages)


def test_positions_rank_each_scale_label_once() -> None:
    from training.size_fit import _positions

    scales = SizeScales(["top", "shoe"], [("S", "M", "L"), ("38", "39")], {})
    sizing = ItemSizing(np.array([0, 1, -1], np.int64), np.zeros(3, np.int64), np.ones(2))
    item = np.array([0, 0, 1, 1, 2, -1, 0], np.int64)
    labels = pd.Series(["L", "38", "39", "M", "S", "S", "S"])
    got = _positions(item, labels, sizing, scales)
    # "38" is not a top's size, item 2 is one size, -1 an unknown item
    np.testing.assert_array_equal(got, [2.0, -1.0, 1.0, -1.0, -1.0, -1.0, 0.0])
