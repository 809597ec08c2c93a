"""The Rent the Runway adapter: a tiny cleandata.parquet, and the real one in ../shared/data."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from conftest import shared_dataset

from feature_store.rent_the_runway import RTR_FILE, is_rent_the_runway, load_rtr
from feature_store.schema import CustomerCols, InteractionCols, ItemCols


def write_rentals(folder: Path) -> Path:
    """Five rentals of three items; one has no review date and is dropped."""
    folder.mkdir()
    frame = pd.DataFrame(
        {
            "user_id": [1, 1, 2, 3, 3],
            "item_id": [10, 11, 10, 12, 12],
            "category": ["gown", "Blouse", "gown", "skirt", "skirt"],
            "size": [8, 12, 4, 20, 20],
            "review_date": pd.to_datetime(
                ["2016-01-02", "2016-02-03", "2016-03-04", "2016-04-05", None]
            ),
            "fit": ["fit", "small", "fit", "large", "fit"],
        }
    )
    frame.to_parquet(folder / RTR_FILE, index=False)
    return folder


def test_rentals_become_dated_purchases_in_their_size(tmp_path: Path) -> None:
    folder = write_rentals(tmp_path / "rtr")
    assert is_rent_the_runway(folder) and is_rent_the_runway(folder / RTR_FILE)
    assert not is_rent_the_runway(tmp_path)
    dataset = load_rtr(folder)
    rows = dataset.interactions
    assert rows[InteractionCols.CUSTOMER_ID].tolist() == ["1", "1", "2", "3"]
    assert rows[InteractionCols.ITEM_ID].tolist() == ["10", "11", "10", "12"]
    assert set(rows[InteractionCols.TYPE]) == {"purchase"}
    assert rows[InteractionCols.SIZE].tolist() == ["8", "12", "4", "20"]
    assert rows[InteractionCols.TIMESTAMP].iloc[1] == pd.Timestamp("2016-02-03", tz="UTC")
    items = dataset.items.set_index(ItemCols.ID)
    assert items[ItemCols.CATEGORY].to_dict() == {"10": "dress", "11": "top", "12": "bottom"}
    assert items[ItemCols.PRODUCT_TYPE].to_dict() == {"10": "gown", "11": "Blouse", "12": "skirt"}
    assert sorted(dataset.customers[CustomerCols.ID]) == ["1", "2", "3"]
    assert load_rtr(folder / RTR_FILE).interactions.equals(rows)


@pytest.mark.realdata
def test_rtr_loads_with_sizes() -> None:
    dataset = load_rtr(shared_dataset("renttherunway_clean"))
    assert len(dataset.interactions) > 190_000
    assert dataset.interactions[InteractionCols.SIZE].notna().all()
    assert set(dataset.items[ItemCols.CATEGORY]) >= {"dress", "top"}
