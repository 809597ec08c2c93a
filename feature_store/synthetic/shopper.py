"""A simulated shopper: the synthetic retailer's ground truth turned into a click model.

The generator (:mod:`.behaviour`) draws each customer's hidden tastes — a primary and a secondary
style, a colour palette, a price band — and writes them to ``latent_customers.parquet``. This
module uses the same truth to answer "would this customer click this item, shown at this position,
and buy it after the click?", so a simulation can drive the real service and score what it shows
(``benchmarks/simulated_shop.py``, ``tests/test_simulated_shop.py``).

The model is a position-based click model (examination × attractiveness):

* **examination** of position ``p`` (0-based): ``1 / (1 + p) ** position_decay``;
* **attractiveness**: ``base_click`` × style match (an item style that is the customer's primary
  style ``1``, secondary ``secondary_style``, neither ``other_style``) × colour (in the palette
  ``1``, else ``off_palette``) × price band (the customer's ``1``, else ``off_band``);
* **source boost**: the click probability of an item shown *from* a named source (the served
  list's per-position ``source``) is multiplied by ``source_boost[source]`` — the knob that makes
  one recommendation source truly better in the simulation (the known answer a bandit must find);
* the click probability is capped at ``max_click``; a **purchase** follows a click with probability
  ``purchase_given_click`` × style match × price band factor.

Everything is vectorised over the positions of one list; draws come from the caller's seeded
``numpy`` generator, so a simulation is deterministic under its seed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from .vocabulary import LATENT_FILE, FloatArray


@dataclass(frozen=True)
class ClickModel:
    """Parameters of the simulated shopper (see the module docstring)."""

    base_click: float = 0.35
    position_decay: float = 0.7
    secondary_style: float = 0.5
    other_style: float = 0.15
    off_palette: float = 0.5
    off_band: float = 0.6
    max_click: float = 0.95
    purchase_given_click: float = 0.25
    source_boost: Mapping[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in ("base_click", "secondary_style", "other_style", "off_palette", "off_band"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {value}")
        if not 0.0 < self.max_click <= 1.0 or not 0.0 <= self.purchase_given_click <= 1.0:
            raise ValueError("max_click must be in (0, 1] and purchase_given_click in [0, 1]")
        if self.position_decay < 0:
            raise ValueError("position_decay must be ≥ 0")
        for source, boost in self.source_boost.items():
            if boost < 0:
                raise ValueError(f"source_boost[{source!r}] must be ≥ 0, got {boost}")


@dataclass(frozen=True)
class Outcome:
    """What a shopper did with one shown list: per position, clicked and purchased."""

    clicked: np.ndarray  # bool, one per position
    purchased: np.ndarray  # bool, one per position (only where clicked)


class Shopper:
    """The click model over one synthetic retailer's hidden tastes (``data`` is the folder
    :func:`feature_store.synthetic.generate` wrote)."""

    def __init__(self, data: Path, model: ClickModel | None = None) -> None:
        self.model = model or ClickModel()
        items = pd.read_parquet(
            data / "items.parquet", columns=["item_id", "styles", "colour", "price_band"]
        )
        latent = pd.read_parquet(data / LATENT_FILE)
        self._items = {str(i): n for n, i in enumerate(items["item_id"])}
        self._item_styles = [frozenset(s) for s in items["styles"]]
        self._item_colour = items["colour"].astype(str).tolist()
        self._item_band = items["price_band"].astype(str).tolist()
        self._customers = {str(c): n for n, c in enumerate(latent["customer_id"])}
        self._primary = latent["primary_style"].astype(str).tolist()
        self._secondary = latent["secondary_style"].astype(str).tolist()
        self._palette = [frozenset(p) for p in latent["palette"]]
        self._band = latent["price_band"].astype(str).tolist()

    @property
    def customers(self) -> list[str]:
        return list(self._customers)

    def with_model(self, model: ClickModel) -> Shopper:
        """The same retailer's shoppers under other click-model parameters."""
        other = object.__new__(Shopper)
        other.__dict__.update(self.__dict__)
        other.model = model
        return other

    def _factors(self, customer: str, items: Sequence[str]) -> tuple[FloatArray, FloatArray]:
        """(style match, price band factor) per item for ``customer``; colour folded into the
        first."""
        m = self.model
        c = self._customers[customer]
        primary, secondary = self._primary[c], self._secondary[c]
        palette, band = self._palette[c], self._band[c]
        style = np.empty(len(items))
        price = np.empty(len(items))
        for j, item_id in enumerate(items):
            i = self._items[item_id]
            styles = self._item_styles[i]
            match = (
                1.0
                if primary in styles
                else m.secondary_style
                if secondary in styles
                else m.other_style
            )
            colour = 1.0 if self._item_colour[i] in palette else m.off_palette
            style[j] = match * colour
            price[j] = 1.0 if self._item_band[i] == band else m.off_band
        return style, price

    def click_probability(
        self, customer: str, items: Sequence[str], sources: Sequence[str] | None = None
    ) -> FloatArray:
        """Per position of a shown list: the probability that ``customer`` clicks it."""
        m = self.model
        style, price = self._factors(customer, items)
        examination = 1.0 / (1.0 + np.arange(len(items))) ** m.position_decay
        boost = np.ones(len(items))
        if sources is not None and m.source_boost:
            boost = np.array([m.source_boost.get(s, 1.0) for s in sources])
        p = examination * m.base_click * style * price * boost
        return np.minimum(p, m.max_click)

    def purchase_probability(self, customer: str, items: Sequence[str]) -> FloatArray:
        """Per item: the probability of a purchase once clicked."""
        style, price = self._factors(customer, items)
        return self.model.purchase_given_click * np.minimum(style, 1.0) * price

    def react(
        self,
        customer: str,
        items: Sequence[str],
        sources: Sequence[str] | None,
        rng: np.random.Generator,
    ) -> Outcome:
        """Draw the shopper's clicks and purchases on one shown list."""
        clicked = rng.random(len(items)) < self.click_probability(customer, items, sources)
        bought = rng.random(len(items)) < self.purchase_probability(customer, items)
        return Outcome(clicked=clicked, purchased=clicked & bought)
