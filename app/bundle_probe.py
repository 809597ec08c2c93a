"""Real feeds run on a candidate bundle before it is served: a known customer's personalized
feed, similar items and complete-the-look for a known item.

:class:`FeedProbe` is one of the bundle manager's probes (:class:`~app.runtime.BundleManager`,
timed against ``LOOKBOOK_BUNDLE_PROBE_BUDGET_SECONDS``). It runs the service's own pipelines on
the candidate, without the online store, the cache, the bandit or any record of a showing, so
probing changes nothing a request sees. A feed that fails, comes back empty, names items outside
the catalog or scores them with NaN is a :class:`~feature_store.errors.BundleError` (check
``feeds``).
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from app.customers import Customers, CustomerView
from app.feeds import Feeds
from app.outfit_sources import with_look_sources
from app.pipeline import Context, Pipeline
from app.runtime import LoadedBundle
from app.strategies import resolve_weights
from feature_store.errors import BundleError

#: Length of each probed list.
PROBE_K = 12
#: The strategy surface probed when the strategies have it (else their first surface).
PROBE_SURFACE = "home"


class FeedProbe:
    """Runs a personalized feed, similar items and complete-the-look on a candidate bundle."""

    def __init__(self, feeds: Feeds, customers: Customers, k: int = PROBE_K) -> None:
        self.feeds = feeds
        self.customers = customers
        self.k = k

    def __call__(self, bundle: LoadedBundle) -> None:
        item = bundle.known_item
        if item is None:
            raise BundleError(f"bundle {bundle.version} has an empty catalog", check="feeds")
        customer = bundle.known_customer
        if customer is not None:
            self.personalized(bundle, customer)
        self.similar(bundle, item)
        self.complementary(bundle, item)

    def personalized(self, bundle: LoadedBundle, customer: int) -> None:
        """The customer's feed on the probed surface with the default segment's strategy."""
        feeds = self.feeds
        view = CustomerView(
            customer_id=bundle.customers.id(customer),
            index=customer,
            consent=True,
            profile=None,
            recent=[],
        )
        ctx = self.customers.context(bundle, view, k=self.k, category=None)
        surfaces = list(feeds.strategies.surfaces)
        surface = PROBE_SURFACE if PROBE_SURFACE in surfaces or not surfaces else surfaces[0]
        strategy, rrf_k = resolve_weights(
            feeds.strategies.for_segment(surface, "default"), bundle.blend
        )
        strategy = with_look_sources(strategy, feeds.look_sources)
        pipeline = Pipeline(sources=strategy, fallback=feeds.popular, rrf_k=rrf_k)
        ranked = pipeline.run(ctx)
        _check_list(bundle, "personalized", [(c.item, c.score) for c in ranked])

    def similar(self, bundle: LoadedBundle, item: int) -> None:
        ctx = Context(bundle=bundle, k=self.k, anchor_item=item, exclude={item})
        ranked = self.feeds.similar_pipeline(bundle, item).run(ctx)
        _check_list(bundle, "similar", [(c.item, c.score) for c in ranked])

    def complementary(self, bundle: LoadedBundle, item: int) -> None:
        model = bundle.complementary
        if model is None:
            return
        slots = model.complete([item], k_per_slot=self.k)
        found = [
            (int(i), float(s))
            for ids, scores in slots.values()
            for i, s in zip(ids, scores, strict=True)
        ]
        _check_list(bundle, "complementary", found, may_be_empty=True)


def _check_list(
    bundle: LoadedBundle,
    feed: str,
    items: Iterable[tuple[int, float]],
    *,
    may_be_empty: bool = False,
) -> None:
    pairs = list(items)
    if not pairs and not may_be_empty:
        raise BundleError(f"bundle {bundle.version}: the {feed} feed is empty", check="feeds")
    n_items = len(bundle.catalog.ids)
    if any(not 0 <= item < n_items for item, _ in pairs):
        raise BundleError(
            f"bundle {bundle.version}: the {feed} feed names items outside the catalog",
            check="feeds",
        )
    if not np.isfinite([score for _, score in pairs]).all():
        raise BundleError(
            f"bundle {bundle.version}: the {feed} feed has NaN or infinite scores", check="scores"
        )
