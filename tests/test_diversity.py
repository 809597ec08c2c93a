"""The diversity rerank (models/diversity.py): maximal marginal relevance over item attributes."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from models.diversity import (
    ItemSimilarity,
    candidate_pool,
    check_diversity,
    diversify,
    diversify_rows,
    intra_list_diversity,
)


@pytest.fixture(scope="module")
def similarity() -> ItemSimilarity:
    """Items 0-5 are the same black T-shirt; 6-9 are each something else."""
    rows = [("top", "t_shirt", "black", ["casual"])] * 6 + [
        ("bottom", "jeans", "blue", ["casual"]),
        ("shoes", "sneaker", "white", ["sporty"]),
        ("top", "shirt", "white", ["formal"]),
        ("outerwear", "coat", "camel", ["classic"]),
    ]
    frame = pd.DataFrame(rows, columns=["category", "product_type", "colour", "styles"])
    return ItemSimilarity.from_frame(frame)


def test_similarity_matrix_is_a_cosine(similarity: ItemSimilarity) -> None:
    sim = similarity.matrix(np.arange(10))
    assert sim.shape == (10, 10)
    np.testing.assert_allclose(sim, sim.T)
    np.testing.assert_allclose(np.diag(sim), 1.0, atol=1e-6)
    assert sim.min() >= 0.0 and sim.max() <= 1.0 + 1e-9
    assert sim[0, 1] == pytest.approx(1.0)  # identical items
    assert sim[0, 7] == pytest.approx(0.0)  # nothing in common
    assert 0.0 < sim[0, 8] < 1.0  # same category, nothing else


def test_zero_diversity_keeps_the_ranking(similarity: ItemSimilarity) -> None:
    pool = np.arange(10)
    assert diversify(pool, 4, 0.0, similarity).tolist() == [0, 1, 2, 3]
    assert diversify(pool, 20, 0.0, similarity).tolist() == list(range(10))


@pytest.mark.parametrize("level", [0.5, 0.75, 1.0])  # 0.25 only swaps near ranks here
def test_diversity_spreads_attributes_and_keeps_the_top_item(
    similarity: ItemSimilarity, level: float
) -> None:
    pool = np.arange(10)
    plain = pool[diversify(pool, 4, 0.0, similarity)]
    picked = pool[diversify(pool, 4, level, similarity)]
    assert picked[0] == 0
    assert len(set(picked.tolist())) == 4
    assert intra_list_diversity(picked, similarity) > intra_list_diversity(plain, similarity)
    assert intra_list_diversity(plain, similarity) == pytest.approx(0.0, abs=1e-9)


def test_stronger_diversity_is_never_less_diverse_here(similarity: ItemSimilarity) -> None:
    pool = np.arange(10)
    ild = [
        intra_list_diversity(pool[diversify(pool, 5, level, similarity)], similarity)
        for level in (0.0, 0.25, 0.5, 0.75, 1.0)
    ]
    assert ild == sorted(ild)
    assert ild[-1] > ild[0]


def test_diversify_is_deterministic_and_a_permutation(similarity: ItemSimilarity) -> None:
    rng = np.random.default_rng(3)
    pool = rng.permutation(10)
    first = diversify(pool, 7, 0.6, similarity)
    assert first.tolist() == diversify(pool.copy(), 7, 0.6, similarity).tolist()
    assert len(set(first.tolist())) == 7 and set(first.tolist()) <= set(range(10))


def test_rows_skip_padding_and_match_the_single_list(similarity: ItemSimilarity) -> None:
    rows = np.array([[0, 1, 2, 6, 7, -1], [9, 8, -1, -1, -1, -1]])
    out = diversify_rows(rows, 3, 0.5, similarity)
    assert out[0].tolist() == rows[0][diversify(rows[0][:5], 3, 0.5, similarity)].tolist()
    assert out[1].tolist() == [9, 8, -1]


@pytest.mark.parametrize("bad", [-0.1, 1.01, math.nan, math.inf, -math.inf])
def test_diversity_out_of_range_is_refused(bad: float) -> None:
    with pytest.raises(ValueError, match="diversity"):
        check_diversity(bad)


def test_candidate_pool_is_deeper_than_k() -> None:
    assert candidate_pool(12) == 24
    assert candidate_pool(1) == 9
    assert all(candidate_pool(k) > k for k in range(1, 200))


def test_intra_list_diversity_of_short_lists_is_nan(similarity: ItemSimilarity) -> None:
    assert math.isnan(intra_list_diversity([3], similarity))
    assert math.isnan(intra_list_diversity([3, -1], similarity))
