"""Rule-based candidate rankings (models/candidates.py): known answers."""

from __future__ import annotations

import numpy as np
import pytest

from models.candidates import (
    SECONDS_PER_DAY,
    NeighbourTable,
    build_product_siblings,
    build_repeat_rates,
    item_groups,
    neighbour_ranking,
    repeat_ranking,
    repurchase_ranking,
)

DAY = SECONDS_PER_DAY
NOW = 100 * DAY


def test_repurchase_ranking_decays_and_breaks_ties_by_index() -> None:
    # item 7: two purchases 60 days ago (2 * 0.5 = 1.0); item 3: one today (1.0); item 5: 120 days
    items, scores = repurchase_ranking(
        [7, 7, 3, 5], [40 * DAY, 40 * DAY, NOW, -20 * DAY], [1, 1, 1, 1], NOW, half_life_days=60
    )
    assert items.tolist() == [3, 7, 5]  # 3 and 7 tie at 1.0: lower index first
    np.testing.assert_allclose(scores, [1.0, 1.0, 0.25])
    empty, _ = repurchase_ranking([], [], [], NOW)
    assert empty.size == 0


def test_item_groups_fall_back_to_the_second_column() -> None:
    groups = item_groups(["Socks", None, "Socks", "", "Dress"], ["a", "top", "b", None, "x"])
    # labels: v:Socks, f:top, v:Socks, "", v:Dress → sorted: "", f:top, v:Dress, v:Socks
    assert groups.tolist() == [3, 1, 3, 0, 2]


def test_repeat_rates_count_pairs_bought_on_two_days() -> None:
    # group 0 = items 0, 1; group 1 = item 2
    groups = np.array([0, 0, 1])
    users = np.array([0, 0, 1, 1, 2, 2])
    items = np.array([0, 0, 1, 2, 2, 2])
    days = np.array([1, 5, 1, 1, 3, 3]) * DAY  # user 0 rebuys item 0; user 2 buys item 2 twice
    rates = build_repeat_rates(users, items, days, groups, smoothing=0.0)
    # pairs: (0,0) on 2 days, (1,1) once, (1,2) once, (2,2) on one day (two units) → group 0: 1/2
    np.testing.assert_allclose(rates, [0.5, 0.5, 0.0])
    smoothed = build_repeat_rates(users, items, days, groups, smoothing=4.0)
    overall = 1 / 4
    np.testing.assert_allclose(
        smoothed,
        [(1 + 4 * overall) / 6, (1 + 4 * overall) / 6, (0 + 4 * overall) / 6],
    )
    assert build_repeat_rates([], [], [], groups).tolist() == [1.0, 1.0, 1.0]


def test_repeat_ranking_reorders_own_items_by_rate() -> None:
    rates = np.array([0.1, 0.4, 0.2])
    # item 0 bought today (count 1), item 1 bought 3 days ago (count 0.5 with half-life 3)
    items, scores = repeat_ranking(
        [0, 1, 2], [NOW, NOW - 3 * DAY, NOW - 3 * DAY], [1, 1, 1], NOW, rates, half_life_days=3.0
    )
    # scores: 0 → 1 * 0.01, 1 → 0.5 * 0.16 = 0.08, 2 → 0.5 * 0.04 = 0.02
    assert items.tolist() == [1, 2, 0]
    np.testing.assert_allclose(scores, [0.08, 0.02, 0.01])
    # a rate of 0 (or an item outside the table) keeps the item, last, by decayed count
    items, _ = repeat_ranking([0, 5], [NOW, NOW], [1, 1], NOW, np.array([0.0, 0.0]))
    assert items.tolist() == [0, 5]


def test_product_siblings_share_a_code_and_respect_eligibility() -> None:
    codes = ["A", "B", "A", None, "A", "nan"]
    table = build_product_siblings(codes)
    assert table.neighbours(0)[0].tolist() == [2, 4]
    assert table.neighbours(2)[0].tolist() == [0, 4]
    assert table.neighbours(1)[0].size == 0  # only variant of B
    assert table.neighbours(3)[0].size == 0 and table.neighbours(5)[0].size == 0  # no code
    assert table.neighbours(99)[0].size == 0  # unknown item
    eligible = np.array([True, True, False, True, True, True])
    restricted = build_product_siblings(codes, eligible=eligible)
    assert restricted.neighbours(0)[0].tolist() == [4]
    assert restricted.neighbours(2)[0].tolist() == [0, 4]  # ineligible items still have siblings
    with pytest.raises(ValueError):
        build_product_siblings(codes, eligible=[True])
    restored = NeighbourTable.from_arrays(table.to_arrays())
    assert restored.neighbours(4)[0].tolist() == [0, 2]


def test_neighbour_ranking_prefers_recent_purchases() -> None:
    # item 0's product has variants 1, 2; item 3's product has variant 4
    table = build_product_siblings(["P", "P", "P", "Q", "Q"])
    items, scores = neighbour_ranking(
        [0, 3], [NOW - 30 * DAY, NOW], [1.0, 1.0], NOW, table, half_life_days=30
    )
    # 4 ← purchase of 3 today (1.0); 1, 2 ← purchase of 0 a half-life ago (0.5 each)
    assert items.tolist() == [4, 1, 2]
    np.testing.assert_allclose(scores, [1.0, 0.5, 0.5])
    # popularity breaks the tie between 1 and 2; own items are excluded unless asked
    popular = np.array([0.0, 1.0, 5.0, 0.0, 0.0])
    items, _ = neighbour_ranking(
        [0, 3], [NOW - 30 * DAY, NOW], [1, 1], NOW, table, half_life_days=30, item_scores=popular
    )
    assert items.tolist() == [4, 2, 1]
    items, _ = neighbour_ranking([0, 1], [NOW, NOW], [1, 1], NOW, table)
    assert items.tolist() == [2]
    items, _ = neighbour_ranking([0, 1], [NOW, NOW], [1, 1], NOW, table, exclude_history=False)
    assert items.tolist() == [2, 0, 1]  # 2 is a sibling of both purchases; 0 and 1 tie
    items, _ = neighbour_ranking(
        [0], [NOW], [1], NOW, table, available=np.array([1, 0, 1, 1, 1], bool), depth=5
    )
    assert items.tolist() == [2]
    items, _ = neighbour_ranking([0, 3], [NOW, NOW], [1, 1], NOW, table, depth=1)
    assert len(items) == 1
    assert neighbour_ranking([], [], [], NOW, table)[0].size == 0


def test_neighbour_table_from_matrix_drops_self_and_sorts() -> None:
    matrix = np.array([[9.0, 1.0, 2.0], [1.0, 0.0, 0.0], [2.0, 0.0, 9.0]])
    table = NeighbourTable.from_matrix(matrix, max_neighbours=1)
    assert table.neighbours(0)[0].tolist() == [2]
    assert table.neighbours(1)[0].tolist() == [0]
    assert table.neighbours(2)[0].tolist() == [0]
    with pytest.raises(ValueError):
        NeighbourTable(np.array([0, 2]), np.array([1]), np.array([1.0]))
