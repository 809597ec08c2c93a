"""The checks a loaded bundle passes before it is served: its counts agree (ids, arrays, indexes),
its scores are finite and every index answers a known query with the scores of its vectors.

:meth:`~app.runtime.LoadedBundle.check` gathers what a bundle holds into these checks; they run
on a freshly loaded candidate, off the request path. A failure is a
:class:`~feature_store.errors.BundleError` whose ``check`` says which kind (``counts``,
``scores``, ``index``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import numpy.typing as npt

from feature_store.errors import BundleError
from models.index import ItemIndex

#: Results asked of each index for its known query.
QUERY_K = 10


def check_counts(version: str, what: str, counts: Mapping[str, int]) -> None:
    """Every count of ``what`` (items, customers) in ``counts`` (where → count) is the same."""
    if len(set(counts.values())) > 1:
        listed = ", ".join(f"{name} {count}" for name, count in counts.items())
        raise BundleError(f"bundle {version}: counts of {what} disagree: {listed}", check="counts")


def check_finite(version: str, arrays: Mapping[str, npt.NDArray[Any]]) -> None:
    """No NaN or infinite value in any of ``arrays`` (what → values)."""
    for name, values in arrays.items():
        finite = np.isfinite(values)
        if not finite.all():
            bad = int(finite.size - np.count_nonzero(finite))
            raise BundleError(
                f"bundle {version}: {bad} NaN or infinite value(s) in the {name}", check="scores"
            )


def check_answers(
    version: str,
    name: str,
    index: ItemIndex,
    vectors: npt.NDArray[np.float32],
    query: npt.NDArray[np.float32],
    *,
    finds: int | None = None,
) -> None:
    """Search ``index`` for ``query``: it must return items of the catalog with finite scores
    equal to the inner products of their ``vectors`` (it was built from them), and, with
    ``finds``, score that item's own inner product at the top (the query is its vector)."""
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
    off = float(np.abs(expected - scores).max())
    if off > 1e-3 * max(1.0, float(np.abs(expected).max())):
        raise BundleError(
            f"bundle {version}: the {name} index does not answer a known query with its "
            f"vectors' scores (off by {off:.4g}): it was built from other vectors",
            check="index",
        )
    if finds is not None:
        own = float(np.asarray(vectors[finds], dtype=np.float64) @ np.asarray(query, np.float64))
        if scores[0] < own - 1e-3 * max(1.0, abs(own)):
            raise BundleError(
                f"bundle {version}: the {name} index does not find item {finds} for its own "
                f"vector (best score {scores[0]:.4f}, its own {own:.4f})",
                check="index",
            )
