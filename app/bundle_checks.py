"""The checks a loaded bundle passes before it is served: its counts agree (ids, arrays, indexes),
its scores are finite and every index answers a known query with the scores of its vectors.

:func:`check_bundle` runs on a freshly loaded candidate, off the request path (the bundle
manager's :meth:`~app.runtime.BundleManager.refresh`); a failure is a
:class:`~feature_store.errors.BundleError` whose ``check`` says which kind.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from feature_store.errors import BundleError
from models.index import ItemIndex

if TYPE_CHECKING:
    from app.runtime import LoadedBundle

#: Results asked of each index for its known query.
QUERY_K = 10


def check_bundle(bundle: LoadedBundle) -> None:
    """Raise :class:`~feature_store.errors.BundleError` unless ``bundle`` is whole and sane."""
    _check_counts(bundle)
    _check_finite(bundle)
    _check_indexes(bundle)


def known_item(bundle: LoadedBundle) -> int | None:
    """The most popular item (a query every index must answer), None for an empty catalog."""
    return int(bundle.popular_order[0]) if len(bundle.popular_order) else None


def known_customer(bundle: LoadedBundle) -> int | None:
    """The customer with the most training interactions (lowest index on ties), None when the
    bundle has nobody with a history."""
    counts = np.diff(bundle.user_items.indptr)
    if not len(counts) or counts.max() == 0:
        return None
    return int(np.argmax(counts))


def _check_counts(bundle: LoadedBundle) -> None:
    manifest = bundle.manifest
    items = {
        "item_ids.parquet": len(bundle.catalog.ids),
        "manifest item_count": manifest.item_count,
        "ALS item factors": bundle.als.item_factors.shape[0],
        "popularity scores": len(bundle.popularity.scores),
        "als_items index": len(bundle.index),
        "als_items_cosine index": len(bundle.similar_index),
        "similar_items table": len(bundle.neighbour_ids),
        "user_items columns": bundle.user_items.shape[1],
        "purchases columns": bundle.purchases.shape[1],
    }
    if bundle.repeat_rates is not None:
        items["candidates repeat_rates"] = len(bundle.repeat_rates)
    customers = {
        "customer_ids.parquet": len(bundle.customers),
        "manifest customer_count": manifest.customer_count,
        "ALS customer factors": bundle.als.user_factors.shape[0],
        "user_items rows": bundle.user_items.shape[0],
        "purchases rows": bundle.purchases.shape[0],
    }
    for what, counts in (("items", items), ("customers", customers)):
        if len(set(counts.values())) > 1:
            listed = ", ".join(f"{name} {count}" for name, count in counts.items())
            raise BundleError(
                f"bundle {bundle.version}: counts of {what} disagree: {listed}", check="counts"
            )
    neighbours = bundle.neighbour_ids
    if neighbours.size and (neighbours.min() < -1 or neighbours.max() >= items["item_ids.parquet"]):
        raise BundleError(
            f"bundle {bundle.version}: similar_items names items outside the catalog",
            check="counts",
        )


def _check_finite(bundle: LoadedBundle) -> None:
    arrays: dict[str, npt.NDArray[Any]] = {
        "popularity scores": bundle.popularity.scores,
        "ALS item factors": bundle.als.item_factors,
        "ALS customer factors": bundle.als.user_factors,
        "similar_items scores": bundle.neighbour_scores[bundle.neighbour_ids >= 0],
        "user_items values": bundle.user_items.data,
    }
    if bundle.repeat_rates is not None:
        arrays["candidates repeat_rates"] = bundle.repeat_rates
    for name, values in arrays.items():
        if not np.isfinite(values).all():
            bad = int(np.size(values) - np.count_nonzero(np.isfinite(values)))
            raise BundleError(
                f"bundle {bundle.version}: {bad} NaN or infinite value(s) in the {name}",
                check="scores",
            )


def _check_indexes(bundle: LoadedBundle) -> None:
    item = known_item(bundle)
    if item is None:
        return
    item_factors = bundle.als.item_factors
    customer = known_customer(bundle)
    query = bundle.als.user_factors[customer] if customer is not None else item_factors[item]
    _answers("als_items", bundle.index, item_factors, query, bundle.version)
    vectors = bundle.als.item_vectors()
    answer = _answers(
        "als_items_cosine", bundle.similar_index, vectors, vectors[item], bundle.version
    )
    own = float(vectors[item] @ vectors[item])
    if answer[0] < own - 1e-3 * max(1.0, abs(own)):
        raise BundleError(
            f"bundle {bundle.version}: the als_items_cosine index does not find item {item} "
            f"for its own vector (best score {answer[0]:.4f}, its own {own:.4f})",
            check="index",
        )


def _answers(
    name: str,
    index: ItemIndex,
    vectors: npt.NDArray[np.float32],
    query: npt.NDArray[np.float32],
    version: str,
) -> npt.NDArray[np.float32]:
    """Search ``index`` for ``query``: it must return items of the catalog with finite scores
    equal to the inner products of their ``vectors`` (the index was built from them). Returns
    the scores, best first."""
    ids, scores = index.search(np.asarray(query, dtype=np.float32), min(QUERY_K, len(vectors)))
    if not len(ids):
        raise BundleError(f"bundle {version}: the {name} index answers nothing", check="index")
    if ids.min() < 0 or ids.max() >= len(vectors) or not np.isfinite(scores).all():
        raise BundleError(
            f"bundle {version}: the {name} index answers items outside the catalog or "
            "non-finite scores",
            check="index",
        )
    expected = vectors[ids].astype(np.float64) @ np.asarray(query, dtype=np.float64)
    tolerance = 1e-3 * max(1.0, float(np.abs(expected).max()))
    if np.abs(expected - scores).max() > tolerance:
        raise BundleError(
            f"bundle {version}: the {name} index does not answer a known query with its "
            f"vectors' scores (off by {float(np.abs(expected - scores).max()):.4g}): it was "
            "built from other vectors",
            check="index",
        )
    return scores
