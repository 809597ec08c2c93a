"""The harness measures the diversity rerank the service serves: ``run_evaluation(rerankers=)``
adds methods that rerank the blend's lists with :func:`models.diversity.diversify_rows`."""

from __future__ import annotations

from functools import partial

import numpy as np
import pytest
from test_evaluate import FAST, synthetic_retailer

from feature_store.schema import ItemCols
from models.base import IntArray
from models.diversity import ItemSimilarity, candidate_pool, diversify_rows, intra_list_diversity
from training.evaluate import prepare, run_evaluation


def rerank(rows: IntArray, *, level: float, similarity: ItemSimilarity) -> IntArray:
    return diversify_rows(rows[:, : candidate_pool(FAST.k)], FAST.k, level, similarity)


def test_the_diversified_blend_is_measured_beside_the_blend() -> None:
    dataset = synthetic_retailer()
    prepared = prepare(dataset, "synthetic")
    items = dataset.items.set_index(dataset.items[ItemCols.ID].astype(str))
    similarity = ItemSimilarity.from_frame(
        items.reindex(prepared.maps.items.ids()).reset_index(drop=True)
    )
    config = FAST.replace(methods=("popularity", "repurchase", "blend"), folds=2)
    rerankers = {
        f"div{level:g}": partial(rerank, level=level, similarity=similarity) for level in (0.0, 1.0)
    }
    result = run_evaluation(prepared, config, name="synthetic", rerankers=rerankers)
    assert {"blend", "div0", "div1"} <= set(result.methods)
    blend, plain, diverse = (result.predictions[m] for m in ("blend", "div0", "div1"))
    np.testing.assert_array_equal(plain, blend)
    np.testing.assert_array_equal(diverse[:, 0], blend[:, 0])
    assert diverse.shape == blend.shape
    ild = [
        np.nanmean([intra_list_diversity(row, similarity) for row in lists])
        for lists in (blend, diverse)
    ]
    assert ild[1] > ild[0]
    with pytest.raises(ValueError, match="blend"):
        run_evaluation(prepared, config.replace(methods=("popularity",)), rerankers=rerankers)
