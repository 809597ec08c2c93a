"""Time constants and the one recency-decay formula every model and profile uses.

``decay(age, half_life)`` is ``2 ** (-age / half_life)``: an event ``half_life`` old counts half
as much as one happening now. Ages and half-lives share a unit (seconds or days); a ``None``
half-life means no decay.
"""

from __future__ import annotations

from typing import Final

import numpy as np
import numpy.typing as npt

__all__ = ["SECONDS_PER_DAY", "decay"]

SECONDS_PER_DAY: Final = 86_400


def decay(age: npt.ArrayLike, half_life: float | None) -> npt.NDArray[np.float64]:
    """Weights ``2 ** (-age / half_life)`` (all ones when ``half_life`` is None)."""
    ages = np.asarray(age, dtype=np.float64)
    if half_life is None:
        return np.ones_like(ages)
    return np.exp2(-ages / float(half_life))
