"""The integer codes the LSTM reads: item side features, sizes and interaction types.

``ItemFeatures.from_frame(items, item_ids)`` codes a catalog's categorical columns in the model's
dense item order; :func:`encode_event_sizes` codes the size of every training event.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from feature_store.schema import PRICE_BANDS, InteractionType, ItemCols
from models.base import IntArray

UNKNOWN = "<unk>"
#: The categorical item columns used as side features, in this order.
CATEGORICAL_FEATURES: tuple[str, ...] = (
    ItemCols.CATEGORY,
    ItemCols.PRODUCT_TYPE,
    ItemCols.COLOUR,
    ItemCols.MATERIAL,
    ItemCols.PATTERN,
    ItemCols.PRICE_BAND,
)
#: Interaction types in declaration order: an event's type code is its position here.
TYPE_ORDER = list(InteractionType)
PURCHASE = TYPE_ORDER.index(InteractionType.PURCHASE)
#: Types that are never an input step of the LSTM.
NO_INPUT_TYPES = frozenset(
    {TYPE_ORDER.index(InteractionType.IMPRESSION), TYPE_ORDER.index(InteractionType.RETURN)}
)


@dataclass(frozen=True)
class ItemFeatures:
    """Side features of every item, in dense item-index order, as integer codes.

    ``codes[name][i]`` is the code of item ``i`` in ``vocabs[name]`` (code 0 is ``"<unk>"``, for
    missing values); ``styles[i]`` holds up to ``max_styles`` style codes (0 = padding).
    """

    codes: dict[str, IntArray]
    vocabs: dict[str, list[str]]
    styles: IntArray
    style_vocab: list[str]

    @property
    def n_items(self) -> int:
        return int(self.styles.shape[0])

    @property
    def names(self) -> list[str]:
        return list(self.codes)

    @classmethod
    def from_frame(
        cls, items: pd.DataFrame, item_ids: Sequence[str] | None = None, *, max_styles: int = 4
    ) -> ItemFeatures:
        """Codes from an ``items`` table (columns of :class:`~feature_store.schema.ItemCols`).

        ``item_ids`` gives the dense item order (the model's item indices); by default the table's
        own row order. Missing columns or values become ``"<unk>"``. When ``price_band`` is absent
        or empty it is derived from ``price`` quartiles (named after ``PRICE_BANDS``).
        """
        frame = items
        if item_ids is not None:
            indexed = items.set_index(items[ItemCols.ID].astype(str))
            missing = [i for i in item_ids if i not in indexed.index]
            if missing:
                raise ValueError(
                    f"{len(missing)} item ids have no row in items, e.g. {missing[0]!r}"
                )
            frame = indexed.loc[list(item_ids)].reset_index(drop=True)
        n = len(frame)
        codes: dict[str, IntArray] = {}
        vocabs: dict[str, list[str]] = {}
        for name in CATEGORICAL_FEATURES:
            if name == ItemCols.PRICE_BAND:
                values = _price_bands(frame)
            elif name in frame.columns:
                values = frame[name].astype("string").fillna(UNKNOWN).str.strip().str.lower()
                values = values.where(values != "", UNKNOWN)
            else:
                values = pd.Series([UNKNOWN] * n, dtype="string")
            vocab = [UNKNOWN, *sorted(set(values.tolist()) - {UNKNOWN})]
            lookup = {v: k for k, v in enumerate(vocab)}
            codes[name] = np.asarray([lookup[v] for v in values.tolist()], dtype=np.int64)
            vocabs[name] = vocab
        style_lists: list[list[str]] = []
        if ItemCols.STYLES in frame.columns:
            for raw in frame[ItemCols.STYLES].tolist():
                style_lists.append(_as_str_list(raw)[:max_styles])
        else:
            style_lists = [[] for _ in range(n)]
        style_vocab = [UNKNOWN, *sorted({s for row in style_lists for s in row})]
        style_lookup = {v: k for k, v in enumerate(style_vocab)}
        styles = np.zeros((n, max(max_styles, 1)), dtype=np.int64)
        for i, row in enumerate(style_lists):
            for j, value in enumerate(row):
                styles[i, j] = style_lookup[value]
        return cls(codes=codes, vocabs=vocabs, styles=styles, style_vocab=style_vocab)

    def to_arrays(self) -> dict[str, np.ndarray]:
        arrays: dict[str, np.ndarray] = {f"feature.{k}": v for k, v in self.codes.items()}
        arrays["feature_styles"] = self.styles
        return arrays

    def to_config(self) -> dict[str, Any]:
        return {"vocabs": self.vocabs, "style_vocab": self.style_vocab, "names": self.names}

    @classmethod
    def from_saved(cls, config: dict[str, Any], arrays: dict[str, np.ndarray]) -> ItemFeatures:
        names = [str(n) for n in config["names"]]
        return cls(
            codes={n: np.asarray(arrays[f"feature.{n}"], dtype=np.int64) for n in names},
            vocabs={n: [str(v) for v in config["vocabs"][n]] for n in names},
            styles=np.asarray(arrays["feature_styles"], dtype=np.int64),
            style_vocab=[str(v) for v in config["style_vocab"]],
        )


def _as_str_list(raw: object) -> list[str]:
    if raw is None:
        return []
    if isinstance(raw, str):
        return [p.strip().lower() for p in raw.split("|") if p.strip()]
    if isinstance(raw, float) and math.isnan(raw):
        return []
    try:
        return [str(p).strip().lower() for p in list(raw) if str(p).strip()]  # type: ignore[call-overload]
    except TypeError:
        return [str(raw).strip().lower()]


def _price_bands(frame: pd.DataFrame) -> pd.Series:
    if ItemCols.PRICE_BAND in frame.columns:
        bands = frame[ItemCols.PRICE_BAND].astype("string").str.strip().str.lower()
        if bands.notna().any() and (bands.fillna("") != "").any():
            return bands.fillna(UNKNOWN).where(bands.fillna("") != "", UNKNOWN)
    if ItemCols.PRICE not in frame.columns:
        return pd.Series([UNKNOWN] * len(frame), dtype="string")
    price = pd.to_numeric(frame[ItemCols.PRICE], errors="coerce")
    labels = np.full(len(frame), UNKNOWN, dtype=object)
    valid = price.notna().to_numpy()
    if valid.sum() >= len(PRICE_BANDS):
        ranks = price[valid].rank(method="first", pct=True).to_numpy()
        idx = np.minimum((ranks * len(PRICE_BANDS)).astype(int), len(PRICE_BANDS) - 1)
        labels[valid] = np.asarray(PRICE_BANDS, dtype=object)[idx]
    return pd.Series(labels, dtype="string")


def encode_event_sizes(
    sizes: Sequence[str | None] | None, n_events: int
) -> tuple[list[str], IntArray]:
    """``(size vocabulary, code per event)``: the vocabulary is ``"<unk>"`` then the distinct
    sizes sorted; unknown sizes (``None``) are code 0."""
    if sizes is None:
        return [UNKNOWN], np.zeros(n_events, dtype=np.int64)
    values = np.empty(len(sizes), dtype=object)
    values[:] = list(sizes) if not isinstance(sizes, list) else sizes
    present = np.asarray(~pd.isna(values), dtype=bool)  # None (or NaN): unknown
    codes, uniques = pd.factorize(values[present], sort=True)
    vocab = [UNKNOWN, *(str(u) for u in uniques)]
    out = np.zeros(len(values), dtype=np.int64)
    out[present] = np.asarray(codes, dtype=np.int64) + 1
    return vocab, out
