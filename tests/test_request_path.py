"""The request path's fast forms give what the plain forms give (issue 15).

Each speed-up of the uncached feeds is held to a reference computed the slow, obvious way on the
shared small retailer: co-purchase scores over the anchors' buyers (against dense catalog-sized
sums), the filters a request applies (against every filter's ``keep``), content similarity's
exclusions, a cached list shown on the event loop (and only in process), and the served bundle
frozen out of the garbage collector.
"""

from __future__ import annotations

import asyncio
import gc
import threading
from collections.abc import Iterator

import numpy as np
import orjson
import pytest
from fastapi.testclient import TestClient

from app.feeds import Feeds
from app.list_options import NO_OPTIONS
from app.main import create_app
from app.pipeline import (
    DEFAULT_FILTERS,
    AttributeSimilarSource,
    Candidate,
    Context,
    Pipeline,
    PopularitySource,
)
from app.response_cache import FeedKey
from app.runtime import LoadedBundle
from app.served_lists import Served
from app.settings import Settings
from app.strategy_sources import CO_PURCHASE_BUYERS, _co_purchases, bundle_stats
from helpers import personalized_request


@pytest.fixture
def service(settings: Settings) -> Iterator[object]:
    app = create_app(settings)
    with TestClient(app):
        yield app.state.service


def _dense_co_purchases(bundle: LoadedBundle, anchors: list[int], other: bool) -> np.ndarray:
    """The co-purchase scores as first written: a catalog-sized row per anchor."""
    stats = bundle_stats(bundle)
    catalog = bundle.catalog
    out = np.zeros((len(anchors), len(catalog.names)), dtype=np.float32)
    for row, anchor in enumerate(anchors):
        buyers = stats.purchases_csc[:, anchor].indices[:CO_PURCHASE_BUYERS]
        if len(buyers) == 0:
            continue
        counts = np.asarray(bundle.purchases[buyers].sum(axis=0), dtype=np.float32).ravel()
        if other:
            counts[catalog.by_category[str(catalog.categories[anchor])]] = 0.0
        out[row] = counts / np.sqrt(len(buyers))
    return out


@pytest.mark.parametrize("other_categories", [True, False])
def test_co_purchases_equal_the_dense_sums(service: object, other_categories: bool) -> None:
    bundle: LoadedBundle = service.feeds.bundles.current  # type: ignore[attr-defined]
    rng = np.random.default_rng(0)
    bought = np.flatnonzero(np.diff(bundle_stats(bundle).purchases_csc.indptr) > 0)
    assert len(bought) >= 10
    for _ in range(20):
        anchors = [int(a) for a in rng.choice(bought, size=5, replace=False)]
        items, sparse = _co_purchases(bundle, anchors, other_categories)
        dense = _dense_co_purchases(bundle, anchors, other_categories)
        assert np.all(np.diff(items) > 0)  # ascending, distinct
        assert np.array_equal(sparse, dense[:, items])  # the same floats
        rest = np.ones(dense.shape[1], dtype=bool)
        rest[items] = False
        assert not dense[:, rest].any()  # nothing scored outside the items returned


def test_a_request_applies_only_its_filters(service: object) -> None:
    feeds: Feeds = service.feeds  # type: ignore[attr-defined]
    bundle = feeds.bundles.current
    found = PopularitySource().candidates(Context(bundle=bundle, k=200), 200)
    assert len(found) > 20
    pipeline = Pipeline(sources=[])
    first, third = found[0].item, found[2].item
    category = str(bundle.catalog.categories[found[1].item])
    prices = sorted(float(bundle.catalog.prices[c.item]) for c in found)
    requests = [
        Context(bundle=bundle, k=10, exclude={first, third}),
        Context(bundle=bundle, k=10, exclude={first}, category=category),
        Context(bundle=bundle, k=10, min_price=prices[len(prices) // 3], max_price=prices[-5]),
        Context(bundle=bundle, k=10, anchor_item=third),
    ]
    for ctx in requests:
        kept = pipeline._keeper(ctx)(found)
        expected = [c for c in found if all(f.keep(ctx, c) for f in DEFAULT_FILTERS)]
        assert kept == expected
        assert all(c.item not in ctx.exclude and c.item != ctx.anchor_item for c in kept)
    assert len(pipeline._keeper(requests[0])(found)) == len(found) - 2


def test_content_similarity_never_returns_the_anchor_or_an_excluded_item(service: object) -> None:
    bundle: LoadedBundle = service.feeds.bundles.current  # type: ignore[attr-defined]
    source = AttributeSimilarSource()
    for anchor in range(0, len(bundle.catalog.names), 7):
        plain = source.candidates(Context(bundle=bundle, k=10, anchor_item=anchor), 10)
        assert plain and all(c.item != anchor for c in plain)
        exclude = {plain[0].item, plain[-1].item, anchor, len(bundle.catalog.names) + 5}
        kept = source.candidates(
            Context(bundle=bundle, k=10, anchor_item=anchor, exclude=exclude), 10
        )
        assert not {c.item for c in kept} & exclude
        # the rest keep their order and scores
        rest = [c for c in plain if c.item not in exclude]
        assert kept[: len(rest)] == rest


def test_a_cached_list_is_shown_without_computing_it(service: object) -> None:
    feeds: Feeds = service.feeds  # type: ignore[attr-defined]
    responses = feeds.responses
    assert responses.in_process  # no Redis configured
    bundle = feeds.bundles.current
    customer = bundle.customers.id(int(bundle.known_customer))  # type: ignore[arg-type]
    key, _ = personalized_request(feeds, customer, k=5)
    assert responses.cached(key) is None  # not cached yet
    misses = responses.cache.stats()["misses"]
    first = orjson.loads(feeds.personalized(customer, k=5, category=None, exclude_purchased=True))
    assert responses.cache.stats()["misses"] == misses + 1  # the peek counted no miss
    again = responses.cached(key)
    assert again is not None
    shown = orjson.loads(again)
    assert shown["recommendation_id"] != first["recommendation_id"]  # a showing of its own
    assert {k: v for k, v in shown.items() if k != "recommendation_id"} == {
        k: v for k, v in first.items() if k != "recommendation_id"
    }
    record = service.attribution_store.get_served(shown["recommendation_id"])  # type: ignore[attr-defined]
    assert record is not None  # recorded like any showing
    item = bundle.catalog.ids.id(0)
    similar_key, _ = feeds.similar_request(
        item, k=5, customer_id=None, in_stock_in_my_size=False, store_id=None, options=NO_OPTIONS
    )
    assert responses.cached(similar_key) is None
    feeds.similar(item, k=5)
    assert responses.cached(similar_key) is not None


def test_a_shared_cache_is_never_read_on_the_event_loop(service: object) -> None:
    feeds: Feeds = service.feeds  # type: ignore[attr-defined]
    responses = feeds.responses
    bundle = feeds.bundles.current
    customer = bundle.customers.id(int(bundle.known_customer))  # type: ignore[arg-type]
    feeds.personalized(customer, k=5, category=None, exclude_purchased=True)
    key = FeedKey(
        version=bundle.version,
        customer_id=customer,
        k=5,
        category=None,
        exclude_purchased=True,
        surface="home",
        in_stock_in_my_size=False,
        store_id=None,
    )
    assert responses.cached(key) is not None
    responses.in_process = False  # e.g. served records or bandit state in Redis
    assert responses.cached(key) is None


@pytest.mark.parametrize("in_process", [True, False])
def test_a_list_is_computed_on_the_event_loop_only_in_process(
    service: object, in_process: bool
) -> None:
    feeds: Feeds = service.feeds  # type: ignore[attr-defined]
    responses = feeds.responses
    responses.in_process = in_process
    bundle = feeds.bundles.current
    customer = bundle.customers.id(int(bundle.known_customer))  # type: ignore[arg-type]
    key, compute = personalized_request(feeds, customer, k=7)
    threads: list[threading.Thread] = []

    def traced() -> Served:
        threads.append(threading.current_thread())
        return compute()

    async def answer() -> tuple[bytes, threading.Thread]:
        return await responses.respond(key, traced), threading.current_thread()

    body, loop_thread = asyncio.run(answer())
    assert len(orjson.loads(body)["items"]) == 7
    assert len(threads) == 1  # computed once
    assert (threads[0] is loop_thread) == in_process  # else in a worker thread
    again, _ = asyncio.run(answer())
    assert len(threads) == 1  # the second answer is the cached list
    assert orjson.loads(again)["items"] == orjson.loads(body)["items"]


def test_a_service_with_redis_shows_nothing_on_the_event_loop(
    settings: Settings, redis_url: str, redis_prefix: str
) -> None:
    app = create_app(
        settings.model_copy(update={"redis_url": redis_url, "redis_prefix": redis_prefix})
    )
    with TestClient(app):
        assert not app.state.service.feeds.responses.in_process


def test_the_served_bundle_is_frozen_out_of_the_garbage_collector(service: object) -> None:
    bundle: LoadedBundle = service.feeds.bundles.current  # type: ignore[attr-defined]
    assert gc.get_freeze_count() > 0
    assert not gc.is_tracked(bundle) or bundle not in gc.get_objects(generation=2)


def test_fusion_keeps_each_candidates_reason() -> None:
    a = [Candidate(1, 1.0, "x", "from x"), Candidate(2, 0.5, "x", "also x")]
    b = [Candidate(2, 1.0, "y", "from y"), Candidate(3, 0.5, "y", "also y")]
    fused = Pipeline(sources=[])._fuse([a, b], [1.0, 2.0], 3)
    assert [c.item for c in fused] == [2, 3, 1]
    assert [c.reason for c in fused] == ["from y", "also y", "from x"]
