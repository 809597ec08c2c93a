"""The calendar of traffic: weekday, seasonal and sale weights of each day."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .common import _calendar, _season_of_month
from .vocabulary import FloatArray, IntArray


@dataclass
class _Calendar:
    start_day: int
    end_day: int
    cdf: FloatArray  # cumulative traffic weight; cdf[i] = weight of days < start_day + i
    season: IntArray  # per day
    sale_p: FloatArray  # probability a purchase that day is discounted
    sale_rate: FloatArray


def _make_calendar(start_day: int, end_day: int) -> _Calendar:
    days = np.arange(start_day, end_day + 1, dtype=np.int64)
    _, month, dom, weekday = _calendar(days)
    w = np.ones(len(days))
    w *= np.where(weekday >= 5, 1.2, 1.0)
    christmas = ((month == 11) & (dom >= 20)) | ((month == 12) & (dom <= 23))
    w *= np.where(christmas, 1.5, 1.0)
    black_friday = (month == 11) & (weekday == 4) & (dom >= 23) & (dom <= 29)
    monday_after = (weekday == 0) & (((month == 11) & (dom >= 26)) | ((month == 12) & (dom <= 2)))
    w *= np.where(black_friday | monday_after, 3.0, 1.0)
    winter_sale = ((month == 12) & (dom >= 26)) | (month == 1)
    summer_sale = month == 7
    w *= np.where((winter_sale & (dom <= 10)) | (summer_sale & (dom <= 15)), 1.35, 1.0)
    w *= np.linspace(1.0, 1.2, len(days))  # the business grows
    cdf = np.concatenate([[0.0], np.cumsum(w)])
    sale_p = np.where(winter_sale | summer_sale, 0.5, np.where(black_friday, 0.6, 0.0))
    sale_rate = np.where(black_friday, 0.8, 0.7)
    return _Calendar(start_day, end_day, cdf, _season_of_month(month), sale_p, sale_rate)
