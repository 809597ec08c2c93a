"""The Rent the Runway adapter: a tiny cleandata.parquet, and the real one in ../shared/data."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from conftest import shared_dataset

from feature_store.rent_the_runway import (
    RTR_FILE,
    FitCols,
    is_rent_the_runway,
    load_rtr,
    load_rtr_fit,
)
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


def test_fit_verdicts_sizes_and_body_measurements(tmp_path: Path) -> None:
    folder = write_rentals(tmp_path / "rtr")
    frame = pd.read_parquet(folder / RTR_FILE)
    frame["height_in"] = [66.0, None, 62.0, 70.0, 70.0]
    frame["weight_lbs"] = [130.0, 140.0, None, 150.0, 150.0]
    frame["bust_size_num"] = [34.0, 34.0, 32.0, None, 36.0]
    frame["bust_size_letter"] = ["d", "D", "aa", None, "zz"]
    frame["age"] = [28.0, 116.0, 0.0, 40.0, 40.0]
    frame["body_type"] = ["hourglass", None, "petite", "pear", "pear"]
    frame["rented_for"] = ["party", "work", "wedding", None, "party"]
    frame.to_parquet(folder / RTR_FILE, index=False)
    rentals = load_rtr_fit(folder)
    assert len(rentals) == 4  # the rental without a review date is dropped
    assert rentals[FitCols.FIT].tolist() == ["fit", "small", "fit", "large"]
    assert rentals[FitCols.SIZE].tolist() == [8, 12, 4, 20]
    assert rentals[FitCols.CUSTOMER_ID].tolist() == ["1", "1", "2", "3"]
    assert rentals[FitCols.CATEGORY].tolist() == ["dress", "top", "dress", "bottom"]
    assert rentals[FitCols.PRODUCT_TYPE].tolist() == ["gown", "Blouse", "gown", "skirt"]
    assert rentals[FitCols.DATE].iloc[0] == pd.Timestamp("2016-01-02", tz="UTC")
    assert rentals[FitCols.CUP].tolist()[:3] == [4.0, 4.0, 0.0]
    assert pd.isna(rentals[FitCols.CUP].iloc[3])
    age = rentals[FitCols.AGE].tolist()
    assert age[0] == 28.0 and pd.isna(age[1]) and pd.isna(age[2])  # implausible ages dropped
    assert pd.isna(rentals[FitCols.HEIGHT].iloc[1])


@pytest.mark.realdata
def test_size_fit_evaluation_on_a_sample() -> None:
    """The evaluation end to end on 6 000 rentals (the full run: benchmarks/size_fit_rtr.py)."""
    import numpy as np

    from models.size_fit_ranker import SizeFitRankerConfig
    from training.size_fit_eval import (
        SERVED,
        SizeFitEvalConfig,
        evaluate_split,
        random_split,
        table,
    )

    frame = load_rtr_fit(shared_dataset("renttherunway_clean"))
    rows = np.random.default_rng(0).choice(len(frame), 6_000, replace=False)
    frame = frame.iloc[np.sort(rows)].reset_index(drop=True)
    config = SizeFitEvalConfig(ranker=SizeFitRankerConfig(rounds=60, threads=1))
    result = evaluate_split(frame, random_split(len(frame), 0), "random", config, lambda _: None)
    assert result.rows == {"train": 4800, "validation": 600, "test": 600}
    assert set(result.auc) >= {"item only", SERVED}
    assert all(0.3 < v < 0.9 for v in result.auc.values())
    assert result.auc[SERVED] > 0.55
    assert result.recommend_rows > 100
    assert all(0.0 <= v <= 1.0 for v in result.recommend.values())
    assert "K-LF-ML (paper)" in table([result])
