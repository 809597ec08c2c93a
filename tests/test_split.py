"""Time-ordered splits: the global time split and the per-customer last-day holdout."""

from __future__ import annotations

import pandas as pd
import pytest

from training.split import last_day_holdout, time_split

START = pd.Timestamp("2024-03-01", tz="UTC")
EPOCH = pd.Timestamp(0, tz="UTC")


def epoch_seconds(stamps: pd.Series) -> pd.Series:
    return (stamps - EPOCH) // pd.Timedelta(seconds=1)


def daily_frame(days: int = 10) -> pd.DataFrame:
    """Two events a day (at 09:00 and 18:00 UTC) for ``days`` days."""
    stamps = [START + pd.Timedelta(days=d, hours=h) for d in range(days) for h in (9, 18)]
    return pd.DataFrame(
        {
            "customer_id": [f"c{i % 3}" for i in range(len(stamps))],
            "item_id": [f"i{i}" for i in range(len(stamps))],
            "timestamp": pd.to_datetime(stamps, utc=True),
        },
        index=pd.RangeIndex(100, 100 + len(stamps)),
    )


def test_time_split_holds_out_the_last_days() -> None:
    frame = daily_frame()
    train, test = time_split(frame, test_days=3)
    assert sorted(test["timestamp"].dt.day.unique()) == [8, 9, 10]
    assert train["timestamp"].max() < test["timestamp"].min()
    assert len(train) + len(test) == len(frame)
    assert sorted([*train.index, *test.index]) == list(frame.index)  # index kept, disjoint
    assert list(train.columns) == list(frame.columns)


def test_time_split_on_dates_takes_exactly_test_days_dates() -> None:
    dates = pd.date_range("2020-09-01", "2020-09-22", freq="D")
    frame = pd.DataFrame({"timestamp": dates, "x": range(len(dates))})
    train, test = time_split(frame, test_days=7)
    assert test["timestamp"].min() == pd.Timestamp("2020-09-16")
    assert len(test) == 7 and train["timestamp"].max() == pd.Timestamp("2020-09-15")


def test_time_split_on_epoch_seconds_matches_datetimes() -> None:
    frame = daily_frame()
    seconds = frame.assign(timestamp=epoch_seconds(frame["timestamp"]))
    train, test = time_split(frame, test_days=2)
    train_s, test_s = time_split(seconds, test_days=2)
    assert list(train.index) == list(train_s.index) and list(test.index) == list(test_s.index)


@pytest.mark.parametrize("test_days", [0, -1, True, 1.5, "3"])
def test_time_split_refuses_bad_test_days(test_days: object) -> None:
    with pytest.raises(ValueError, match="test_days"):
        time_split(daily_frame(), test_days=test_days)  # type: ignore[arg-type]


def test_time_split_validates_the_frame() -> None:
    frame = daily_frame()
    with pytest.raises(ValueError, match="no timestamp column"):
        time_split(frame, test_days=1, timestamp_col="ts")
    with pytest.raises(ValueError, match="empty"):
        time_split(frame.iloc[:0], test_days=1)
    with pytest.raises(ValueError, match="to_datetime"):
        time_split(frame.assign(timestamp=frame["timestamp"].astype(str)), test_days=1)
    with pytest.raises(ValueError, match="missing timestamps"):
        time_split(
            frame.assign(timestamp=frame["timestamp"].where(frame.index != 101)), test_days=1
        )
    with pytest.raises(ValueError, match="nothing is left to train on"):
        time_split(frame, test_days=30)


def holdout_frame() -> pd.DataFrame:
    rows = [
        # customer a: bought on day 1, and twice on day 3 (the held-out basket)
        ("a", "i1", "purchase", "2024-03-01 10:00"),
        ("a", "i2", "view", "2024-03-02 10:00"),
        ("a", "i3", "purchase", "2024-03-03 08:00"),
        ("a", "i4", "purchase", "2024-03-03 21:00"),
        ("a", "i5", "view", "2024-03-03 09:00"),  # same day as the held-out basket
        ("a", "i6", "view", "2024-03-04 09:00"),  # after it
        # customer b: everything on one day
        ("b", "i1", "purchase", "2024-03-02 10:00"),
        ("b", "i7", "purchase", "2024-03-02 11:00"),
        # customer c: never bought
        ("c", "i2", "view", "2024-03-05 10:00"),
    ]
    return pd.DataFrame(
        {
            "customer_id": [r[0] for r in rows],
            "item_id": [r[1] for r in rows],
            "type": [r[2] for r in rows],
            "timestamp": pd.to_datetime([r[3] for r in rows], utc=True),
        }
    )


def test_last_day_holdout_with_event_types() -> None:
    frame = holdout_frame()
    train, test, cutoffs = last_day_holdout(frame, type_col="type")
    assert sorted(zip(test["customer_id"], test["item_id"], strict=True)) == [
        ("a", "i3"),
        ("a", "i4"),
        ("b", "i1"),
        ("b", "i7"),
    ]
    assert sorted(zip(train["customer_id"], train["item_id"], strict=True)) == [
        ("a", "i1"),
        ("a", "i2"),
        ("c", "i2"),
    ]
    assert cutoffs.name == "cutoff"
    assert cutoffs.to_dict() == {
        "a": pd.Timestamp("2024-03-03", tz="UTC"),
        "b": pd.Timestamp("2024-03-02", tz="UTC"),
    }
    # train is strictly before each customer's cutoff
    for customer, cutoff in cutoffs.items():
        assert (train.loc[train["customer_id"] == customer, "timestamp"] < cutoff).all()
    # a repeated index label changes nothing
    repeated = frame.set_axis([0] * len(frame))
    again_train, again_test, _ = last_day_holdout(repeated, type_col="type")
    assert again_train["item_id"].tolist() == train["item_id"].tolist()
    assert again_test["item_id"].tolist() == test["item_id"].tolist()


def test_last_day_holdout_of_a_transactions_table() -> None:
    frame = holdout_frame()
    train, test, cutoffs = last_day_holdout(frame[["customer_id", "item_id", "timestamp"]])
    # every row is a purchase: a's last day is now 03-04, c's only row is its test
    assert cutoffs["a"] == pd.Timestamp("2024-03-04", tz="UTC")
    assert sorted(test["item_id"][test["customer_id"] == "a"]) == ["i6"]
    assert sorted(train["item_id"][train["customer_id"] == "a"]) == ["i1", "i2", "i3", "i4", "i5"]
    assert "c" not in set(train["customer_id"]) and "c" in set(test["customer_id"])


def test_last_day_holdout_on_epoch_seconds_and_categorical_ids() -> None:
    frame = holdout_frame()
    converted = frame.assign(
        timestamp=epoch_seconds(frame["timestamp"]),
        customer_id=frame["customer_id"].astype("category"),
    )
    train, test, cutoffs = last_day_holdout(converted, type_col="type")
    expected_train, expected_test, expected_cutoffs = last_day_holdout(frame, type_col="type")
    assert list(train.index) == list(expected_train.index)
    assert list(test.index) == list(expected_test.index)
    assert cutoffs["a"] == expected_cutoffs["a"].timestamp()


def test_last_day_holdout_validates_inputs() -> None:
    frame = holdout_frame()
    with pytest.raises(ValueError, match="no customer column"):
        last_day_holdout(frame, customer_col="user")
    with pytest.raises(ValueError, match="no type column"):
        last_day_holdout(frame, type_col="kind")
    with pytest.raises(ValueError, match="nothing to hold out"):
        last_day_holdout(frame, type_col="type", purchase_type="rental")
    with pytest.raises(ValueError, match="missing customer ids"):
        last_day_holdout(frame.assign(customer_id=frame["customer_id"].where(frame.index > 0)))
    with pytest.raises(ValueError, match="empty"):
        last_day_holdout(frame.iloc[:0])
