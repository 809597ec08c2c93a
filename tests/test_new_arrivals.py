"""New items get exploration slots: the ``new_arrivals`` source (in-stock items launched within
``new_item_days`` of the newest launch, by early popularity) and the bandit's reserved share for
it (``BanditConfig.new_items_share``): about that share of the slots, each with its propensity;
share 0 adds nothing; with the bandit off the bodies stay those of the fixed fusion."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient
from test_api_bandit import arms, feed, make_settings, record, without_id

from app.main import create_app
from app.pipeline import Context
from app.runtime import LoadedBundle, StockTable
from app.strategies import SEGMENTS
from app.strategy_sources import NewArrivalsSource, bundle_stats
from feature_store.schema import StockCols
from feature_store.timeutils import SECONDS_PER_DAY
from models.bandit import BanditConfig
from models.bundle import BundleLayout

SHARE = 0.25
DAYS = 30


@pytest.fixture(scope="module")
def bundle(retailer: tuple[Path, Path]) -> LoadedBundle:
    _, bundles = retailer
    return LoadedBundle.load(next(p for p in sorted(bundles.iterdir()) if p.is_dir()))


@pytest.fixture(scope="module")
def shoppers(retailer: tuple[Path, Path]) -> list[str]:
    """Forty customers with purchases (personalized feeds)."""
    data, _ = retailer
    frame = pd.read_parquet(data / "interactions.parquet")
    bought = frame[frame["type"] == "purchase"]
    counts = bought.groupby("customer_id", observed=True).size().sort_values(ascending=False)
    return [str(c) for c in counts.index[:40]]


def sold_out(bundle: LoadedBundle, items: list[int]) -> LoadedBundle:
    """A copy of ``bundle`` (its own version) in which ``items`` are out of stock everywhere."""
    frame = pd.read_parquet(BundleLayout(bundle.path).stock)
    gone = frame[StockCols.ITEM_ID].astype(str).isin([bundle.catalog.ids.ids()[i] for i in items])
    frame.loc[gone, StockCols.QUANTITY] = 0
    stock = StockTable(frame, bundle.catalog.ids)
    return dataclasses.replace(bundle, version=f"{bundle.version}-sold-out", stock=stock)


def test_new_arrivals_are_recent_in_stock_and_ranked_by_early_popularity(
    bundle: LoadedBundle,
) -> None:
    catalog = bundle.catalog
    launch = catalog.launch
    newest = float(np.nanmax(launch))
    window = ~np.isnan(launch) & (launch >= newest - DAYS * SECONDS_PER_DAY)
    recent = np.flatnonzero(window).tolist()
    assert len(recent) >= 10
    gone = recent[::4]  # some new items sell out
    shop = sold_out(bundle, gone)
    assert not shop.stock.in_stock_items()[gone].any()
    expected = set(recent) - set(gone)

    ctx = Context(bundle=shop, k=12)
    got = NewArrivalsSource(DAYS).candidates(ctx, len(catalog.names))
    items = [c.item for c in got]
    assert set(items) == expected  # every in-stock item of the window, nothing else
    assert all(c.source == "new_arrivals" for c in got)
    scores = [c.score for c in got]
    assert scores == sorted(scores, reverse=True)  # early popularity first
    assert scores == [float(shop.popularity.scores[i]) for i in items]
    first = got[0]
    assert first.reason.startswith(f"New in: {catalog.categories[first.item]}, launched ")
    # a narrower window is a subset; the request's filters apply
    assert {c.item for c in NewArrivalsSource(3).candidates(ctx, 10_000)} < expected
    category = str(catalog.categories[items[0]])
    narrowed = Context(bundle=shop, k=12, category=category, exclude={items[0]})
    kept = NewArrivalsSource(DAYS).candidates(narrowed, 10_000)
    assert kept and all(catalog.categories[c.item] == category for c in kept)
    assert items[0] not in {c.item for c in kept}
    assert bundle_stats(shop).launched_within(float(DAYS)).tolist() == items


def test_new_arrivals_can_be_named_in_a_strategy(
    retailer: tuple[Path, Path], tmp_path: Path, shoppers: list[str]
) -> None:
    strategies = tmp_path / "strategies.json"
    only_new = [{"source": "new_arrivals", "weight": 1.0}]
    strategies.write_text(json.dumps({"home": {segment: only_new for segment in SEGMENTS}}))
    settings = make_settings(retailer, tmp_path, strategies_file=strategies)
    with TestClient(create_app(settings)) as client:
        body = feed(client, shoppers[0])
    assert body["items"]
    new = [i for i in body["items"] if i["source"] == "new_arrivals"]
    assert body["items"][0] == new[0] and len(new) >= 5  # the strategy's one source leads
    assert all(i["reason"].startswith("New in: ") for i in new)


def new_item_slots(client: TestClient, shoppers: list[str]) -> tuple[int, int, list[float]]:
    """(slots filled while the new-arrivals list still had candidates, of them by new arrivals,
    the propensities of those) over one feed per shopper."""
    total, new, propensities = 0, 0, []
    for customer in shoppers:
        body = feed(client, customer, k=12)
        rec = record(client, body["recommendation_id"])
        assert rec.policy == "bandit"
        assert [p.source for p in rec.items] == [i["source"] for i in body["items"]]
        for position in rec.items:
            total += 1
            if position.source == "new_arrivals":
                new += 1
                propensities.append(position.propensity)
    return total, new, propensities


def test_a_reserved_share_gives_new_items_about_that_share_of_slots(
    retailer: tuple[Path, Path], tmp_path: Path, shoppers: list[str]
) -> None:
    """Greedy otherwise (exploration 0): the new-arrivals list (prior at the mean weight, below
    the best source's) takes a slot only through its reservation, so each of its slots has
    propensity exactly the share, every other slot 1 − share, and about a quarter of the slots
    are its own (it has candidates for every slot of a feed here)."""
    config = BanditConfig(enabled=True, exploration=0.0, new_items_share=SHARE, new_item_days=DAYS)
    settings = make_settings(retailer, tmp_path, bandit=config, bandit_seed=11)
    with TestClient(create_app(settings)) as client:
        total, new, propensities = new_item_slots(client, shoppers)
        body = feed(client, shoppers[0], k=12)
        rec = record(client, body["recommendation_id"])
        assert {p.propensity for p in rec.items} <= {SHARE, 1.0 - SHARE}
        # credited like any arm: its impressions are counted
        found = arms(client)
        shown = sum(a["impressions"] for (_, _, s), a in found.items() if s == "new_arrivals")
    assert total == 12 * len(shoppers)
    assert new / total == pytest.approx(SHARE, abs=0.06)  # binomial sd 0.02 over 480 slots
    assert propensities and all(p == SHARE for p in propensities)
    assert shown == pytest.approx(new + sum(p.source == "new_arrivals" for p in rec.items), 1e-4)
    for item in body["items"]:
        if item["source"] == "new_arrivals":
            assert item["reason"].startswith("New in: ")


def test_with_thompson_sampling_new_items_get_at_least_the_share(
    retailer: tuple[Path, Path], tmp_path: Path, shoppers: list[str]
) -> None:
    config = BanditConfig(enabled=True, new_items_share=SHARE, new_item_days=DAYS)
    settings = make_settings(retailer, tmp_path, bandit=config, bandit_seed=5)
    with TestClient(create_app(settings)) as client:
        total, new, propensities = new_item_slots(client, shoppers)
    assert new / total >= SHARE - 0.06
    assert all(SHARE <= p <= 1.0 for p in propensities)


def test_share_zero_adds_no_new_items_source(
    retailer: tuple[Path, Path], tmp_path: Path, shoppers: list[str]
) -> None:
    """Share 0 (the default) changes nothing: the list is not offered, so no slot and no arm is
    new arrivals', and the bodies are those of a bandit with a different (unused) window."""
    zero = BanditConfig(enabled=True, new_items_share=0.0, new_item_days=DAYS)
    other = BanditConfig(enabled=True, new_items_share=0.0, new_item_days=3)
    with (
        TestClient(
            create_app(make_settings(retailer, tmp_path / "a", bandit=zero, bandit_seed=2))
        ) as a,
        TestClient(
            create_app(make_settings(retailer, tmp_path / "b", bandit=other, bandit_seed=2))
        ) as b,
    ):
        for customer in shoppers[:12]:
            body = feed(a, customer, k=12)
            assert without_id(body) == without_id(feed(b, customer, k=12))
            assert all(i["source"] != "new_arrivals" for i in body["items"])
        assert not any(source == "new_arrivals" for (_, _, source) in arms(a))


def test_bandit_off_keeps_the_bodies_whatever_the_share(
    retailer: tuple[Path, Path], tmp_path: Path, shoppers: list[str]
) -> None:
    off = BanditConfig(enabled=False, new_items_share=0.5, new_item_days=DAYS)
    with (
        TestClient(create_app(make_settings(retailer, tmp_path / "a"))) as default,
        TestClient(create_app(make_settings(retailer, tmp_path / "b", bandit=off))) as shared,
    ):
        for customer in shoppers[:12]:
            body: dict[str, Any] = feed(default, customer, k=12)
            again = feed(shared, customer, k=12)
            assert without_id(body) == without_id(again)
            assert record(shared, again["recommendation_id"]).policy is None
