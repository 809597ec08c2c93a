"""Small helpers of the generator: seeded random streams, weighted choices, segments, Arrow strings, dates."""

from __future__ import annotations

from datetime import date

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from .vocabulary import _EPOCH, BoolArray, FloatArray, IntArray


def _rng(seed: int, *key: int) -> np.random.Generator:
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence(seed, spawn_key=key)))


def _day(d: date) -> int:
    return (d - _EPOCH).days


def _choice(rng: np.random.Generator, p: npt.ArrayLike, size: int) -> IntArray:
    """``size`` draws of indices with probabilities ``p`` (normalised)."""
    cdf = np.cumsum(np.asarray(p, dtype=np.float64))
    cdf /= cdf[-1]
    return np.minimum(np.searchsorted(cdf, rng.random(size), side="right"), len(cdf) - 1)


def _choice_rows(rng: np.random.Generator, weights: FloatArray) -> IntArray:
    """One index per row of ``weights`` (rows need not be normalised)."""
    cdf = np.cumsum(weights, axis=1)
    u = rng.random(weights.shape[0]) * cdf[:, -1]
    out = (cdf <= u[:, None]).sum(axis=1)
    return np.minimum(out, weights.shape[1] - 1).astype(np.int64)


def _segment_starts(counts: IntArray) -> IntArray:
    starts = np.zeros(len(counts), dtype=np.int64)
    np.cumsum(counts[:-1], out=starts[1:])
    return starts


def _rank_in_segment(counts: IntArray) -> IntArray:
    """0, 1, .. within each segment of a flat array made by ``np.repeat(..., counts)``."""
    total = int(counts.sum())
    return np.arange(total, dtype=np.int64) - np.repeat(_segment_starts(counts), counts)


def _strings(values: list[str] | tuple[str, ...]) -> pa.Array:
    return pa.array(list(values), type=pa.string())


def _take(dictionary: pa.Array, indices: IntArray, mask: BoolArray | None = None) -> pa.Array:
    """``dictionary[indices]`` as a plain string array; ``mask`` True → null."""
    idx = pa.array(indices, type=pa.int64(), mask=mask)
    return pc.take(dictionary, idx)


def _join(words: list[str]) -> str:
    """``a``, ``a and b``, ``a, b and c``."""
    return words[0] if len(words) == 1 else f"{', '.join(words[:-1])} and {words[-1]}"


def _season_of_month(month: IntArray) -> IntArray:
    """Meteorological seasons of the northern hemisphere, as indices into ``schema.SEASONS``."""
    lookup = np.array([3, 3, 0, 0, 0, 1, 1, 1, 2, 2, 2, 3], dtype=np.int64)  # Jan..Dec
    return lookup[month - 1]


def _calendar(days: IntArray) -> tuple[IntArray, IntArray, IntArray, IntArray]:
    """(year, month 1..12, day of month, weekday 0=Monday) of epoch day numbers."""
    d64 = days.astype("datetime64[D]")
    years = d64.astype("datetime64[Y]")
    months = d64.astype("datetime64[M]")
    year = years.astype(np.int64) + 1970
    month = (months - years).astype(np.int64) + 1
    dom = (d64 - months).astype(np.int64) + 1
    weekday = (days + 3) % 7  # 1970-01-01 was a Thursday
    return year, month, dom, weekday
