"""A PyTorch LSTM over a customer's recent interactions, with item side features and sizes.

What it learns
    Each step of a customer's time-ordered history is one interaction. Its input is the *item
    vector* of the item (see below), plus an embedding of the size bought (when known) and of the
    interaction type. An LSTM reads the steps; a linear head turns its state after the last step
    into a *session vector* ``u`` (``output_dim``). An item's score is ``u · v_i + b_i`` plus, for
    items already in the history, a learned *repeat term* ``beta(u) · [log1p(count),
    log1p(recency-decayed count)]`` with ``beta(u) = softplus(W u + c)`` — shoppers rebuy (another
    size, colour or a basic), and the LSTM's gate decides per session how much (RepeatNet's idea,
    Ren et al., AAAI 2019, in its simplest form). It is trained with a softmax cross-entropy
    (``loss="sampled"``: the batch's targets and history items plus ``num_negatives`` uniform
    negatives; ``loss="full"``: the whole catalog) to predict the items of the **next basket** (the
    next distinct timestamp with a target-type event; ``target="next_item"`` predicts the very next
    event instead).

Item vectors (tied between input and output)
    ``v_i = W [ item_embedding(i) ; category ; product_type ; colour ; material ; pattern ;
    price_band ; mean(style embeddings) ]`` — the id embedding plus one embedding per categorical
    side feature of the catalog. Most fashion items are bought a handful of times; the side
    features let what is learnt about "a black jersey top" carry over to the next black jersey top.
    During training whole item-id embeddings are dropped at random (``id_dropout``) so that the side
    features must carry the signal.

Retrieval
    :meth:`SequenceRecommender.item_vectors` returns ``[v_i, b_i]`` (``n_items x (output_dim+1)``)
    and :meth:`SequenceRecommender.session_vector` returns ``[u, 1]``, so a FAISS inner-product
    :class:`~models.index.ItemIndex` built over the item vectors ranks by ``u · v_i + b_i``; the
    repeat term (:meth:`SequenceRecommender.repeat_scores`, non-zero only for the history's items)
    is added to the FAISS candidates plus the history items, so the final ranking is exact.
    Without an index the scores are computed exactly with numpy (a 13k-item catalog takes < 1 ms).

Inputs the trainer passes
    ``SequenceRecommender(config, item_features=ItemFeatures.from_frame(items, item_ids))`` — the
    catalog's side features in dense item-index order (``None`` trains on item ids alone) — and
    ``fit(data, sizes=...)`` with ``sizes[e]`` the size string of event ``e`` of ``data`` (``None``
    where unknown); :func:`aligned_sizes` builds that array for a frame encoded by
    :func:`training.data.to_training_data`.

Known customers and anonymous sessions
    ``fit`` keeps each training customer's last ``max_len`` input events; :meth:`recommend` answers
    from those. A customer whose history grew after training (events from the online store), or an
    anonymous session, is answered by :meth:`recommend_from_sequence` from the item indices (and
    sizes) in time order.

Training at scale (all off by default, so the default configuration trains as it always did)
    ``max_windows`` caps the training windows of each epoch: every epoch draws a fresh seeded
    permutation of the customers (from a random stream of its own) and cuts their windows until
    ``max_windows`` are cut, so the cost of an epoch — window cutting included — no longer grows
    with the data; every customer's history is still kept for :meth:`recommend`.
    ``max_train_seconds`` is a wall-clock budget checked after each epoch: once it has run out
    no further epoch starts (logged as a warning; ``stopped_by_budget`` is saved). With the
    sampled loss, ``table_rows="batch"`` computes the item vectors of only the items a batch
    reads or scores (its targets, negatives and history items) instead of the whole catalog;
    it draws the same random numbers as ``"all"`` and is equal up to float rounding, and a
    step's cost no longer grows with the catalog. ``fit(show_progress=True)`` shows tqdm bars
    for the epochs and the batches of each.

Determinism and files
    Two fits with the same ``seed`` give bit-identical weights (``torch.manual_seed`` in a forked
    RNG, deterministic algorithms, a fixed thread count), also under ``max_windows``; only a fit
    that the ``max_train_seconds`` budget ended early depends on the machine's speed (how many
    epochs it ran). ``save`` writes the ``state_dict`` as
    numpy arrays in ``arrays.npz`` plus ``config.json`` (no pickle, so no ``torch.save``); ``load``
    rebuilds the module and gives identical outputs.
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, ClassVar, Literal, Self

import numpy as np
import numpy.typing as npt
import pandas as pd
import scipy.sparse as sp
import torch
from torch import nn
from tqdm.auto import tqdm

from feature_store.errors import BundleError
from feature_store.schema import PRICE_BANDS, InteractionType, ItemCols

from .base import (
    FloatArray,
    IntArray,
    Recommender,
    TrainingData,
    as_userids,
    load_arrays,
    read_model_config,
    save_arrays,
    top_n,
    user_rows,
    write_config,
)

logger = logging.getLogger("lookbook.models.sequence")

_FORMAT = 1
SECONDS_PER_DAY = 86_400
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
_TYPE_ORDER = list(InteractionType)
_PURCHASE = _TYPE_ORDER.index(InteractionType.PURCHASE)
_NO_INPUT_TYPES = frozenset(
    {_TYPE_ORDER.index(InteractionType.IMPRESSION), _TYPE_ORDER.index(InteractionType.RETURN)}
)


# --------------------------------------------------------------------------- item features


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


# --------------------------------------------------------------------------- config and module


@dataclass(frozen=True)
class SequenceConfig:
    """Hyperparameters of :class:`SequenceRecommender` (all plain values; saved in config.json)."""

    id_dim: int = 32  # item-id embedding
    feature_dim: int = 16  # each side-feature, size and event-type embedding
    hidden_dim: int = 128  # LSTM state
    output_dim: int = 64  # item and session vectors
    num_layers: int = 1
    dropout: float = 0.2  # on the LSTM output
    id_dropout: float = 0.3  # probability of dropping an item's id embedding in a training step
    max_len: int = 50  # steps of history the LSTM reads
    epochs: int = 10
    batch_size: int = 32
    learning_rate: float = 5e-3
    weight_decay: float = 1e-5
    target: Literal["next_basket", "next_item"] = "next_basket"
    target_types: tuple[str, ...] = (InteractionType.PURCHASE.value,)
    loss: Literal["full", "sampled"] = "sampled"
    num_negatives: int = 1024  # sampled softmax: uniform negatives shared by a batch
    repeat: bool = True  # learned, session-gated repeat term for items in the history
    repeat_half_life_days: float = 60.0
    repeat_prior: float = 3.0  # initial repeat weight, softplus(prior): history items start strong
    seed: int = 42
    num_threads: int = 2
    # Bounds for large data (all off by default; see "Training at scale" in the module docstring)
    max_windows: int | None = None  # training windows per epoch (seeded sample of customers)
    max_train_seconds: float | None = None  # wall-clock budget, checked after each epoch
    table_rows: Literal["all", "batch"] = "all"  # sampled loss: item vectors of the batch only

    def __post_init__(self) -> None:
        for name in ("id_dim", "feature_dim", "hidden_dim", "output_dim", "num_layers", "max_len"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.epochs < 0 or self.batch_size < 1 or self.num_threads < 1:
            raise ValueError("epochs must be >= 0, batch_size and num_threads >= 1")
        if not (0 <= self.dropout < 1 and 0 <= self.id_dropout < 1):
            raise ValueError("dropout and id_dropout must be in [0, 1)")
        if self.loss not in ("full", "sampled") or self.num_negatives < 1:
            raise ValueError(
                f"loss must be 'full' or 'sampled' (num_negatives >= 1), got {self.loss!r}"
            )
        if self.target not in ("next_basket", "next_item"):
            raise ValueError(f"target must be 'next_basket' or 'next_item', got {self.target!r}")
        if not self.repeat_half_life_days > 0:
            raise ValueError("repeat_half_life_days must be > 0")
        if self.max_windows is not None and self.max_windows < 1:
            raise ValueError(f"max_windows must be >= 1 or None, got {self.max_windows}")
        if self.max_train_seconds is not None and not self.max_train_seconds > 0:
            raise ValueError(f"max_train_seconds must be > 0 or None, got {self.max_train_seconds}")
        if self.table_rows not in ("all", "batch"):
            raise ValueError(f"table_rows must be 'all' or 'batch', got {self.table_rows!r}")
        known = {t.value for t in InteractionType}
        bad = [t for t in self.target_types if t not in known]
        if bad or not self.target_types:
            raise ValueError(f"target_types must be interaction types, got {self.target_types}")

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["target_types"] = list(self.target_types)
        return out

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> SequenceConfig:
        names = {f.name for f in fields(cls)}
        values = {k: v for k, v in raw.items() if k in names}
        if "target_types" in values:
            values["target_types"] = tuple(values["target_types"])
        return cls(**values)


class SequenceNet(nn.Module):
    """The network: item tower (id + side features → ``D``), LSTM over steps, session head.

    Item codes are shifted by one inside: code 0 is padding.
    """

    feature_codes: torch.Tensor  # (n_items, n_features) side-feature codes (buffer)
    styles: torch.Tensor  # (n_items, max_styles) style codes, 0 = none (buffer)

    def __init__(
        self,
        config: SequenceConfig,
        n_items: int,
        features: ItemFeatures | None,
        n_sizes: int,
    ) -> None:
        super().__init__()
        c = config
        self.n_items = n_items
        self.id_dropout = c.id_dropout
        self.item_embedding = nn.Embedding(n_items + 1, c.id_dim, padding_idx=0)
        self.feature_embeddings = nn.ModuleDict()
        feature_codes: list[torch.Tensor] = []
        width = c.id_dim
        if features is not None:
            for name in features.names:
                self.feature_embeddings[name] = nn.Embedding(
                    len(features.vocabs[name]), c.feature_dim
                )
                feature_codes.append(torch.from_numpy(np.ascontiguousarray(features.codes[name])))
                width += c.feature_dim
            self.style_embedding: nn.Embedding | None = nn.Embedding(
                len(features.style_vocab), c.feature_dim, padding_idx=0
            )
            width += c.feature_dim
            styles = torch.from_numpy(np.ascontiguousarray(features.styles))
        else:
            self.style_embedding = None
            styles = torch.zeros((n_items, 1), dtype=torch.long)
        self.register_buffer(
            "feature_codes",
            torch.stack(feature_codes, dim=1)
            if feature_codes
            else torch.zeros((n_items, 0), dtype=torch.long),
            persistent=False,
        )
        self.register_buffer("styles", styles, persistent=False)
        self.feature_names = list(self.feature_embeddings.keys())
        self.tower = nn.Linear(width, c.output_dim)
        self.item_bias = nn.Embedding(n_items, 1)
        nn.init.zeros_(self.item_bias.weight)
        self.size_embedding = nn.Embedding(n_sizes, c.feature_dim, padding_idx=0)
        self.type_embedding = nn.Embedding(len(_TYPE_ORDER) + 1, c.feature_dim, padding_idx=0)
        self.lstm = nn.LSTM(
            input_size=c.output_dim + 2 * c.feature_dim,
            hidden_size=c.hidden_dim,
            num_layers=c.num_layers,
            batch_first=True,
            dropout=c.dropout if c.num_layers > 1 else 0.0,
        )
        self.out_dropout = nn.Dropout(c.dropout)
        self.head = nn.Linear(c.hidden_dim, c.output_dim)
        self.repeat_gate = nn.Linear(c.output_dim, 2)
        nn.init.zeros_(self.repeat_gate.weight)
        nn.init.constant_(self.repeat_gate.bias, c.repeat_prior)

    def repeat_weight(self, sessions: torch.Tensor) -> torch.Tensor:
        """``(..., D) -> (..., 2)``: the session's weights ``beta(u) = softplus(W u + c)`` of the
        two repeat features of an item in the history: ``log1p(count)`` and
        ``log1p(recency-decayed count)``."""
        out: torch.Tensor = nn.functional.softplus(self.repeat_gate(sessions))
        return out

    def item_table(self, rows: torch.Tensor | None = None) -> torch.Tensor:
        """``() -> (n_items, D)``: every item's vector ``v_i`` (row ``i`` = item index ``i``);
        with ``rows`` (long item indices) only those items' vectors, ``(len(rows), D)``.

        In training, id dropout draws one number per catalog item either way (the same random
        stream), so a step computed over ``rows`` drops the same ids as one over the catalog.
        """
        weight = self.item_embedding.weight[1:]
        keep: torch.Tensor | None = None
        if self.training and self.id_dropout > 0:
            keep = (torch.rand(weight.shape[0], 1) >= self.id_dropout).to(weight.dtype)
        if rows is None:
            ids = weight if keep is None else weight * keep
            codes = self.feature_codes
            styles = self.styles
        else:
            ids = self.item_embedding(rows + 1)
            if keep is not None:
                ids = ids * keep[rows]
            codes = self.feature_codes[rows]
            styles = self.styles[rows]
        parts = [ids]
        for k, name in enumerate(self.feature_names):
            parts.append(self.feature_embeddings[name](codes[:, k]))
        if self.style_embedding is not None:
            emb = self.style_embedding(styles)  # (n_items, S, F); padding rows are zero
            count = (styles > 0).sum(dim=1, keepdim=True).clamp(min=1).to(emb.dtype)
            parts.append(emb.sum(dim=1) / count)
        out: torch.Tensor = self.tower(torch.cat(parts, dim=1))
        return out

    def biases(self) -> torch.Tensor:
        """``() -> (n_items,)``: the item bias ``b_i``."""
        return self.item_bias.weight[:, 0]

    def forward(
        self,
        items: torch.Tensor,
        sizes: torch.Tensor,
        types: torch.Tensor,
        table: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Session vectors after every step.

        ``items``: ``(B, T)`` long, item index + 1 (0 = padding, right-padded);
        ``sizes``: ``(B, T)`` long size codes (0 = unknown); ``types``: ``(B, T)`` long interaction
        type codes + 1; ``table``: ``(n_items, D)`` item vectors (computed when ``None``).
        Returns ``(B, T, D)``: row ``[b, t]`` is the session vector after reading steps ``0..t``
        (the LSTM is causal, so right padding never changes an earlier step).
        """
        if table is None:
            table = self.item_table()
        present = (items > 0).unsqueeze(-1).to(table.dtype)
        vectors = table[(items - 1).clamp(min=0)] * present  # padding steps are zero
        steps = torch.cat(
            [vectors, self.size_embedding(sizes), self.type_embedding(types)], dim=2
        )  # (B, T, D + 2F)
        states, _ = self.lstm(steps)  # (B, T, H)
        out: torch.Tensor = self.head(self.out_dropout(states))  # (B, T, D)
        return out


@dataclass(frozen=True)
class _NumpyLSTM:
    """The inference path of a one-layer :class:`SequenceNet` in numpy, for one history at a time
    (a request): the same arithmetic as torch's LSTM (gates in i, f, g, o order) without torch's
    per-call overhead. Outputs equal the torch path's up to float rounding (tested)."""

    table: FloatArray  # (n_items, D) item vectors
    size_embedding: FloatArray  # (n_sizes, F)
    type_embedding: FloatArray  # (n_types + 1, F)
    w_ih: FloatArray  # (4H, D + 2F)
    w_hh: FloatArray  # (4H, H)
    bias: FloatArray  # (4H,) b_ih + b_hh
    head_w: FloatArray  # (D, H)
    head_b: FloatArray  # (D,)
    gate_w: FloatArray  # (2, D)
    gate_b: FloatArray  # (2,)

    @classmethod
    def of(cls, net: SequenceNet, table: FloatArray) -> _NumpyLSTM:
        def arr(t: torch.Tensor) -> FloatArray:
            return np.ascontiguousarray(t.detach().numpy(), dtype=np.float32)

        def param(name: str) -> torch.Tensor:
            value = getattr(net.lstm, name)
            assert isinstance(value, torch.Tensor)
            return value

        return cls(
            table=np.ascontiguousarray(table, dtype=np.float32),
            size_embedding=arr(net.size_embedding.weight),
            type_embedding=arr(net.type_embedding.weight),
            w_ih=arr(param("weight_ih_l0")),
            w_hh=arr(param("weight_hh_l0")),
            bias=arr(param("bias_ih_l0") + param("bias_hh_l0")),
            head_w=arr(net.head.weight),
            head_b=arr(net.head.bias),
            gate_w=arr(net.repeat_gate.weight),
            gate_b=arr(net.repeat_gate.bias),
        )

    def session(self, items: IntArray, sizes: IntArray, types: IntArray) -> FloatArray:
        """The session vector ``u`` after the steps (item indices, size codes, type codes + 1)."""
        hidden = self.w_hh.shape[1]
        h = np.zeros(hidden, dtype=np.float32)
        c = np.zeros(hidden, dtype=np.float32)
        if len(items):
            steps = np.concatenate(
                [self.table[items], self.size_embedding[sizes], self.type_embedding[types]], axis=1
            )
            inputs = steps @ self.w_ih.T + self.bias  # (T, 4H)
            for t in range(len(items)):
                gates = inputs[t] + self.w_hh @ h
                i = _sigmoid(gates[:hidden])
                f = _sigmoid(gates[hidden : 2 * hidden])
                g = np.tanh(gates[2 * hidden : 3 * hidden])
                o = _sigmoid(gates[3 * hidden :])
                c = f * c + i * g
                h = o * np.tanh(c)
        out: FloatArray = (self.head_w @ h + self.head_b).astype(np.float32)
        return out

    def repeat_weight(self, session: FloatArray) -> FloatArray:
        """``softplus(W u + c)``, as :meth:`SequenceNet.repeat_weight`."""
        out: FloatArray = np.logaddexp(0.0, self.gate_w @ session + self.gate_b).astype(np.float32)
        return out


def _sigmoid(x: FloatArray) -> FloatArray:
    out: FloatArray = 0.5 * (np.tanh(0.5 * x) + 1.0)
    return out


# --------------------------------------------------------------------------- the recommender


@dataclass
class _Histories:
    """Each training customer's last ``max_len`` input events (CSR layout)."""

    indptr: IntArray = field(default_factory=lambda: np.zeros(1, dtype=np.int64))
    items: IntArray = field(default_factory=lambda: np.empty(0, dtype=np.int64))
    sizes: IntArray = field(default_factory=lambda: np.empty(0, dtype=np.int64))
    types: IntArray = field(default_factory=lambda: np.empty(0, dtype=np.int64))
    times: npt.NDArray[np.int64] = field(default_factory=lambda: np.empty(0, dtype=np.int64))

    def row(self, user: int) -> _Coded:
        a, b = int(self.indptr[user]), int(self.indptr[user + 1])
        return _Coded(self.items[a:b], self.sizes[a:b], self.types[a:b], self.times[a:b])


@dataclass
class _Coded:
    """One history ready for the network: item indices, size codes, type codes, timestamps
    (``None``: unknown, every event counts as recent)."""

    items: IntArray
    sizes: IntArray
    types: IntArray
    times: npt.NDArray[np.int64] | None


@contextlib.contextmanager
def _torch_session(threads: int, seed: int | None) -> Iterator[None]:
    """Fixed thread count, deterministic algorithms and (optionally) a seeded, forked RNG; the
    process-wide settings are restored afterwards."""
    previous_threads = torch.get_num_threads()
    previous_det = torch.are_deterministic_algorithms_enabled()
    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(True)
    try:
        if seed is None:
            yield
        else:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                yield
    finally:
        torch.use_deterministic_algorithms(previous_det)
        torch.set_num_threads(previous_threads)


SequenceInput = Sequence[int] | npt.NDArray[np.integer[Any]]
#: histories encoded and scored together by ``_rank`` (bounds memory: chunk x n_items scores)
_RANK_CHUNK = 256


def repeat_features(
    items: IntArray, times: npt.NDArray[np.int64] | None, now: int | None, half_life_days: float
) -> tuple[IntArray, npt.NDArray[np.float32]]:
    """``(distinct items, features (n x 2))`` of a history: ``log1p(count)`` and
    ``log1p(Σ 0.5 ** (age_days / half_life))``; with unknown times every occurrence is recent."""
    if len(items) == 0:
        return np.empty(0, np.int64), np.empty((0, 2), np.float32)
    if times is None or now is None:
        weight = np.ones(len(items), dtype=np.float64)
    else:
        age = np.maximum(int(now) - np.asarray(times, dtype=np.int64), 0) / SECONDS_PER_DAY
        weight = np.exp2(-age / half_life_days)
    distinct, inverse = np.unique(items, return_inverse=True)
    counts = np.bincount(inverse, minlength=len(distinct)).astype(np.float64)
    decayed = np.bincount(inverse, weights=weight, minlength=len(distinct))
    features = np.log1p(np.stack([counts, decayed], axis=1))
    return distinct.astype(np.int64), features.astype(np.float32)


class SequenceRecommender(Recommender):
    """The LSTM sequence recommender (see the module docstring for the model).

    ``SequenceRecommender(config, item_features=...)``; after :meth:`fit` / :meth:`load`:
    ``item_vectors()`` (``n_items x (D+1)``), ``session_vector(items, sizes)`` (``D+1``),
    ``recommend`` for training customers and ``recommend_from_sequence`` for any history.
    """

    name: ClassVar[str] = "sequence"

    def __init__(
        self, config: SequenceConfig | None = None, *, item_features: ItemFeatures | None = None
    ) -> None:
        self.config = config or SequenceConfig()
        self.item_features = item_features
        self.size_vocab: list[str] = [UNKNOWN]
        self.net: SequenceNet | None = None
        self.histories = _Histories()
        self.n_users = 0
        self.n_items = 0 if item_features is None else item_features.n_items
        self.trained_until = 0
        self.train_seconds = 0.0
        self.loss_history: list[float] = []
        self.stopped_by_budget = False  # the last fit ended early on max_train_seconds
        self._vectors: FloatArray | None = None
        self._table: torch.Tensor | None = None  # item vectors without the bias, for the LSTM
        self._numpy_net: _NumpyLSTM | None = None  # single-history inference without torch
        self._index: Any = None

    # ------------------------------------------------------------------ fitting

    def fit(
        self,
        data: TrainingData,
        *,
        show_progress: bool = False,
        sizes: Sequence[str | None] | None = None,
    ) -> Self:
        """Train on ``data``'s events in time order; ``sizes[e]`` is event ``e``'s size (or None).

        Input steps are every event except impressions and returns; targets are the events of
        ``config.target_types``. Returns ``self``.
        """
        c = self.config
        n_events = len(data.item_idx)
        if sizes is not None and len(sizes) != n_events:
            raise ValueError(f"{len(sizes)} sizes for {n_events} events")
        if self.item_features is not None and self.item_features.n_items != data.n_items:
            raise ValueError(
                f"item_features has {self.item_features.n_items} items, the data {data.n_items}"
            )
        self.n_items, self.n_users = data.n_items, data.n_users
        self.trained_until = int(data.now)
        self.size_vocab, size_codes = _encode_event_sizes(sizes, n_events)
        target_codes = np.asarray([_TYPE_ORDER.index(InteractionType(t)) for t in c.target_types])
        events = _UserEvents.build(data, size_codes)
        self.histories = _keep_histories(events, data.n_users, c.max_len)
        if c.max_windows is None:
            # every customer's windows, the same in every epoch
            fixed = _training_windows(
                (events.sequence(k) for k in range(len(events))), target_codes, c
            )

            def windows_of(epoch: int) -> _Windows:
                return fixed

        else:
            # a fresh seeded sample of customers per epoch, cut until max_windows windows; its
            # own random stream, so the rest of training draws what it draws without the cap
            sampler = np.random.default_rng([c.seed, 0x5EC])
            limit = c.max_windows

            def windows_of(epoch: int) -> _Windows:
                order = sampler.permutation(len(events))
                return _training_windows(
                    (events.sequence(int(k)) for k in order), target_codes, c, limit
                )

        start = time.perf_counter()
        self.stopped_by_budget = False
        with _torch_session(c.num_threads, c.seed):
            self.net = SequenceNet(c, self.n_items, self.item_features, len(self.size_vocab))
            self.loss_history, seen = self._train(windows_of, show_progress, start)
            self.net.eval()
        self.train_seconds = time.perf_counter() - start
        self._vectors = None
        self._table = None
        self._numpy_net = None
        self._index = None
        logger.info(
            "sequence: %d windows, %d targets, %d/%d epochs in %.1fs (final loss %.3f, seed %d)",
            seen[0],
            seen[1],
            len(self.loss_history),
            c.epochs,
            self.train_seconds,
            self.loss_history[-1] if self.loss_history else float("nan"),
            c.seed,
        )
        return self

    def _batch_repeat(
        self, w: _Windows, batch: IntArray, local: IntArray, pair_idx: IntArray
    ) -> tuple[IntArray, IntArray, npt.NDArray[np.float64]]:
        """``(pair rows, history items, decayed weights)`` of the steps each loss pair has read."""
        c = self.config
        pos = w.pair_pos[pair_idx]
        items = w.items[batch][local]  # (P, L) item + 1
        times = w.times[batch][local]
        mask = (np.arange(items.shape[1])[None, :] <= pos[:, None]) & (items > 0)
        rows, cols = np.nonzero(mask)
        age = np.maximum(w.pair_time[pair_idx][rows] - times[rows, cols], 0) / SECONDS_PER_DAY
        return rows, items[rows, cols] - 1, np.exp2(-age / c.repeat_half_life_days)

    def _train(
        self, windows_of: Callable[[int], _Windows], show_progress: bool, started: float
    ) -> tuple[list[float], tuple[int, int]]:
        """Epochs of Adam over the windows ``windows_of(epoch)``; returns the mean loss of each
        epoch run and ``(windows, loss pairs)`` trained on in all."""
        assert self.net is not None
        c = self.config
        net = self.net
        if c.epochs == 0:
            return [], (0, 0)
        w = windows_of(0)
        if len(w.pair_target) == 0:
            return [], (0, 0)
        optimizer = torch.optim.Adam(
            net.parameters(), lr=c.learning_rate, weight_decay=c.weight_decay
        )
        generator = np.random.default_rng(c.seed)
        losses: list[float] = []
        seen = [0, 0]
        epochs = tqdm(range(c.epochs), desc="sequence epochs", disable=not show_progress)
        net.train()
        for epoch in epochs:
            if epoch > 0 and c.max_windows is not None:
                w = windows_of(epoch)
            total, count = self._epoch(w, optimizer, generator, show_progress, epoch)
            seen[0] += len(w.items)
            seen[1] += len(w.pair_target)
            losses.append(total / max(count, 1))
            elapsed = time.perf_counter() - started
            epochs.set_postfix(loss=f"{losses[-1]:.4f}")
            if show_progress:
                logger.info("sequence: epoch %d/%d loss %.4f", epoch + 1, c.epochs, losses[-1])
            if (
                c.max_train_seconds is not None
                and elapsed >= c.max_train_seconds
                and epoch + 1 < c.epochs
            ):
                self.stopped_by_budget = True
                logger.warning(
                    "sequence: wall-clock budget of %.0fs reached after epoch %d/%d (%.1fs); "
                    "stopping early (this fit now depends on the machine's speed)",
                    c.max_train_seconds,
                    epoch + 1,
                    c.epochs,
                    elapsed,
                )
                break
        epochs.close()
        return losses, (seen[0], seen[1])

    def _epoch(
        self,
        w: _Windows,
        optimizer: torch.optim.Optimizer,
        generator: np.random.Generator,
        show_progress: bool,
        epoch: int,
    ) -> tuple[float, int]:
        """One pass over ``w``; returns (sum of pair losses, pairs)."""
        assert self.net is not None
        c = self.config
        net = self.net
        items, sizes, types = (torch.from_numpy(a) for a in (w.items, w.sizes, w.types))
        pair_window = w.pair_window
        n_windows = len(w.items)
        sampled = c.loss == "sampled" and c.num_negatives < self.n_items
        partial = sampled and c.table_rows == "batch"
        # batches of windows of similar length (little padding), in random order
        order = np.lexsort((generator.random(n_windows), w.lengths))
        batches = [order[a : a + c.batch_size] for a in range(0, n_windows, c.batch_size)]
        total, count = 0.0, 0
        for b in tqdm(
            generator.permutation(len(batches)),
            desc=f"sequence epoch {epoch + 1}/{c.epochs}",
            disable=not show_progress,
            leave=False,
        ):
            batch = np.sort(batches[b])
            lo = w.pair_start[batch]
            hi = w.pair_start[batch + 1]
            pair_idx = np.concatenate([np.arange(a, b) for a, b in zip(lo, hi, strict=True)])
            if len(pair_idx) == 0:
                continue
            length = int(w.lengths[batch].max())
            rows = torch.from_numpy(batch)
            local = np.searchsorted(batch, pair_window[pair_idx])
            targets = w.pair_target[pair_idx]
            step_items = items[rows, :length]
            if partial:
                # only the items this batch reads or scores get a vector (same math, same
                # random draws; a large catalog costs a few rows instead of all of them)
                if c.repeat:
                    rep_rows, rep_items, rep_weights = self._batch_repeat(w, batch, local, pair_idx)
                else:
                    rep_items = np.empty(0, np.int64)
                negatives = generator.choice(self.n_items, size=c.num_negatives, replace=False)
                candidates, inverse = np.unique(
                    np.concatenate([targets, negatives, rep_items]), return_inverse=True
                )
                labels = inverse[: len(targets)].astype(np.int64)
                read = step_items.numpy()
                needed = np.union1d(candidates, read[read > 0] - 1)
                table = net.item_table(torch.from_numpy(needed))
                local_items = np.where(read > 0, np.searchsorted(needed, read - 1) + 1, 0)
                states = net(
                    torch.from_numpy(local_items),
                    sizes[rows, :length],
                    types[rows, :length],
                    table,
                )
                picked = states[torch.from_numpy(local), torch.from_numpy(w.pair_pos[pair_idx])]
                cand = torch.from_numpy(candidates)
                cand_rows = torch.from_numpy(np.searchsorted(needed, candidates))
                logits = picked @ table[cand_rows].T + net.biases()[cand]
            else:
                table = net.item_table()
                states = net(step_items, sizes[rows, :length], types[rows, :length], table)
                picked = states[torch.from_numpy(local), torch.from_numpy(w.pair_pos[pair_idx])]
                if c.repeat:
                    rep_rows, rep_items, rep_weights = self._batch_repeat(w, batch, local, pair_idx)
                else:
                    rep_items = np.empty(0, np.int64)
                if not sampled:
                    candidates = np.arange(self.n_items)
                    labels = targets
                    logits = picked @ table.T + net.biases()
                else:
                    # sampled softmax: the batch's targets, the items its histories hold, and
                    # uniform negatives (uniform sampling needs no log-q correction; the bias
                    # still learns popularity)
                    negatives = generator.choice(self.n_items, size=c.num_negatives, replace=False)
                    candidates, inverse = np.unique(
                        np.concatenate([targets, negatives, rep_items]), return_inverse=True
                    )
                    labels = inverse[: len(targets)].astype(np.int64)
                    cand = torch.from_numpy(candidates)
                    logits = picked @ table[cand].T + net.biases()[cand]
            if c.repeat and len(rep_items):
                # sparse: only (pair, history item) cells get the repeat term
                cells = rep_rows * len(candidates) + np.searchsorted(candidates, rep_items)
                cells, inverse = np.unique(cells, return_inverse=True)
                counts = np.bincount(inverse, minlength=len(cells)).astype(np.float64)
                decayed = np.bincount(inverse, weights=rep_weights, minlength=len(cells))
                feature = torch.from_numpy(
                    np.log1p(np.stack([counts, decayed], axis=1)).astype(np.float32)
                )
                rows_t = torch.from_numpy(cells // len(candidates))
                cols_t = torch.from_numpy(cells % len(candidates))
                beta = net.repeat_weight(picked)  # (P, 2)
                values = (feature * beta[rows_t]).sum(dim=1)
                logits = logits.index_put((rows_t, cols_t), logits[rows_t, cols_t] + values)
            loss = nn.functional.cross_entropy(logits, torch.from_numpy(labels))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(net.parameters(), 5.0)
            optimizer.step()
            total += float(loss.item()) * len(pair_idx)
            count += len(pair_idx)
        return total, count

    # ------------------------------------------------------------------ inference

    def _check_fitted(self) -> SequenceNet:
        if self.net is None:
            raise RuntimeError("SequenceRecommender is not fitted: call fit() or load() first")
        return self.net

    def item_vectors(self) -> FloatArray:
        """``[v_i, b_i]`` for every item (``n_items x (output_dim + 1)``, float32, read-only):
        the inner product with :meth:`session_vector` is the model's score before the repeat
        term."""
        net = self._check_fitted()
        if self._vectors is None:
            with _torch_session(self.config.num_threads, None), torch.no_grad():
                table = net.item_table().numpy()
                bias = net.biases().numpy()[:, None]
            vectors = np.ascontiguousarray(np.concatenate([table, bias], axis=1), dtype=np.float32)
            vectors.flags.writeable = False
            self._vectors = vectors
        return self._vectors

    def use_index(self, index: Any) -> None:
        """Retrieve through ``index`` (a :class:`~models.index.ItemIndex` built over
        :meth:`item_vectors`) instead of exact numpy scoring; ``None`` goes back to exact."""
        if index is not None and (
            index.dim != self.item_vectors().shape[1] or len(index) != self.n_items
        ):
            raise ValueError("the index was not built over this model's item_vectors()")
        self._index = index

    def encode_sizes(self, sizes: Sequence[str | None] | None, n: int) -> IntArray:
        """Size codes of a history (unknown or missing sizes are 0)."""
        if sizes is None:
            return np.zeros(n, dtype=np.int64)
        if len(sizes) != n:
            raise ValueError(f"{len(sizes)} sizes for {n} items")
        lookup = {s: k for k, s in enumerate(self.size_vocab)}
        return np.asarray([lookup.get(s, 0) if s is not None else 0 for s in sizes], dtype=np.int64)

    def _prepare(
        self,
        item_indices: SequenceInput,
        sizes: Sequence[str | None] | None,
        event_types: Sequence[int] | None,
        timestamps: SequenceInput | None,
    ) -> _Coded:
        items = np.asarray(item_indices, dtype=np.int64).reshape(-1)
        if len(items) and (items.min() < 0 or items.max() >= self.n_items):
            bad = items[(items < 0) | (items >= self.n_items)][0]
            raise ValueError(f"item index {int(bad)} is not in the model ({self.n_items} items)")
        codes = self.encode_sizes(sizes, len(items))
        if event_types is None:
            types = np.full(len(items), _PURCHASE, dtype=np.int64)
        else:
            types = np.asarray(event_types, dtype=np.int64).reshape(-1)
            if types.shape != items.shape:
                raise ValueError(f"{len(types)} event types for {len(items)} items")
        times = None
        if timestamps is not None:
            times = np.asarray(timestamps, dtype=np.int64).reshape(-1)
            if times.shape != items.shape:
                raise ValueError(f"{len(times)} timestamps for {len(items)} items")
        return _Coded(items, codes, types, times)

    def _encode(self, histories: Sequence[_Coded]) -> tuple[FloatArray, FloatArray]:
        """``([u, 1]`` per history ``(B x (D+1))``, repeat weights ``beta(u)`` ``(B x 2))``.

        Only the last ``max_len`` steps are read; an empty history gives the LSTM's state before
        any step (its scores rank items by what follows "nothing", close to popularity).
        """
        net = self._check_fitted()
        c = self.config
        n = len(histories)
        out = np.ones((n, c.output_dim + 1), dtype=np.float32)
        if n == 0:
            return out, np.zeros((0, 2), dtype=np.float32)
        lengths = np.asarray([min(len(h.items), c.max_len) for h in histories], dtype=np.int64)
        width = max(int(lengths.max()), 1)
        items = np.zeros((n, width), dtype=np.int64)
        sizes = np.zeros((n, width), dtype=np.int64)
        types = np.zeros((n, width), dtype=np.int64)
        for r, h in enumerate(histories):
            length = int(lengths[r])
            if length:
                items[r, :length] = h.items[-length:] + 1
                sizes[r, :length] = h.sizes[-length:]
                types[r, :length] = h.types[-length:] + 1
        if n == 1 and c.num_layers == 1:  # one request's history: numpy, no torch overhead
            if self._numpy_net is None:
                self._numpy_net = _NumpyLSTM.of(net, self.item_vectors()[:, :-1])
            length = int(lengths[0])
            session = self._numpy_net.session(
                items[0, :length] - 1, sizes[0, :length], types[0, :length]
            )
            out[0, :-1] = session
            betas = self._numpy_net.repeat_weight(session)[None, :]
            if not c.repeat:
                betas = np.zeros((1, 2), dtype=np.float32)
            return out, betas
        if self._table is None:
            self._table = torch.from_numpy(np.ascontiguousarray(self.item_vectors()[:, :-1]))
        table = self._table
        with _torch_session(c.num_threads, None), torch.no_grad():
            states = net(
                torch.from_numpy(items), torch.from_numpy(sizes), torch.from_numpy(types), table
            )
            last = torch.from_numpy(np.maximum(lengths - 1, 0))
            sessions = states[torch.arange(n), last]
            if (lengths == 0).any():
                empty = net.head(torch.zeros(1, c.hidden_dim))[0]
                sessions[torch.from_numpy(lengths == 0)] = empty
            betas = net.repeat_weight(sessions).numpy()
            out[:, :-1] = sessions.numpy()
        if not c.repeat:
            betas = np.zeros((n, 2), dtype=np.float32)
        return out, np.asarray(betas, dtype=np.float32)

    def session_vector(
        self,
        item_indices: SequenceInput,
        sizes: Sequence[str | None] | None = None,
        event_types: Sequence[int] | None = None,
    ) -> FloatArray:
        """``[u, 1]`` (``output_dim + 1``) for a history of item indices in time order.

        ``sizes`` are the sizes bought (strings as in the training data, ``None`` when unknown);
        ``event_types`` index :class:`~feature_store.schema.InteractionType` in declaration order
        (default: purchases). The full score of item ``i`` is ``item_vectors()[i] · [u, 1]`` plus,
        for items in the history, the repeat term of :meth:`repeat_scores`.
        """
        return self._encode([self._prepare(item_indices, sizes, event_types, None)])[0][0]

    def repeat_scores(
        self,
        item_indices: SequenceInput,
        sizes: Sequence[str | None] | None = None,
        event_types: Sequence[int] | None = None,
        timestamps: SequenceInput | None = None,
        now: int | None = None,
    ) -> tuple[IntArray, FloatArray]:
        """``(items, boost)``: the repeat term added to the scores of the history's items,
        ``beta_1(u) · log1p(count) + beta_2(u) · log1p(Σ 0.5 ** (age_days / half_life))`` (ages
        from ``timestamps`` and ``now``, seconds since the epoch; without them every occurrence
        counts as recent)."""
        coded = self._prepare(item_indices, sizes, event_types, timestamps)
        _, betas = self._encode([coded])
        items, feature = repeat_features(
            coded.items, coded.times, now, self.config.repeat_half_life_days
        )
        return items, (feature @ betas[0]).astype(np.float32)

    def _rank(
        self,
        coded: Sequence[_Coded],
        nows: Sequence[int | None],
        k: int,
        excludes: Sequence[IntArray | None],
    ) -> tuple[IntArray, FloatArray]:
        n = len(coded)
        width = max(int(k), 0)
        out_ids = np.full((n, width), -1, dtype=np.int64)
        out_scores = np.full((n, width), -np.inf, dtype=np.float32)
        item_vectors = self.item_vectors()
        for lo in range(0, n, _RANK_CHUNK):
            hi = min(lo + _RANK_CHUNK, n)
            vectors, betas = self._encode(coded[lo:hi])
            # exact scores of the chunk in one matrix product (a row at a time is ~15x slower)
            exact = None if self._index is not None else vectors @ item_vectors.T
            for j, r in enumerate(range(lo, hi)):
                rep_items, feature = repeat_features(
                    coded[r].items, coded[r].times, nows[r], self.config.repeat_half_life_days
                )
                boost = feature @ betas[j]
                if exact is not None:
                    scores = exact[j]
                    scores[rep_items] += boost
                    ids, vals = top_n(scores, width, excludes[r])
                else:
                    given = excludes[r]
                    blocked: IntArray = given if given is not None else np.empty(0, np.int64)
                    found, _ = self._index.search(
                        vectors[j], width + len(rep_items), exclude=blocked
                    )
                    found_ids = np.asarray(found, np.int64).reshape(-1)
                    pool = np.unique(np.concatenate([found_ids[found_ids >= 0], rep_items]))
                    pool = pool[~np.isin(pool, blocked)]
                    # rank the pool alone (sorted by item, so ties still go to the lower item)
                    pool_scores = item_vectors[pool] @ vectors[j]
                    at = np.searchsorted(pool, rep_items)
                    hit = at < len(pool)
                    hit[hit] = pool[at[hit]] == rep_items[hit]
                    pool_scores[at[hit]] += boost[hit]
                    top, vals = top_n(pool_scores, width)
                    ids = pool[top]
                out_ids[r, : len(ids)] = ids
                out_scores[r, : len(vals)] = vals
        return out_ids, out_scores

    def recommend_from_sequence(
        self,
        item_indices: SequenceInput,
        sizes: Sequence[str | None] | None = None,
        k: int = 12,
        exclude: SequenceInput | None = None,
        event_types: Sequence[int] | None = None,
        timestamps: SequenceInput | None = None,
        now: int | None = None,
    ) -> tuple[IntArray, FloatArray]:
        """Top ``k`` items (1-d indices, scores) for a history in time order — a known customer's
        history including events after training, or an anonymous session. ``exclude`` lists item
        indices never to return (e.g. what was already bought); ``timestamps``/``now`` (seconds)
        age the repeat term."""
        coded = self._prepare(item_indices, sizes, event_types, timestamps)
        excl = None if exclude is None else np.asarray(exclude, dtype=np.int64).reshape(-1)
        ids, scores = self._rank([coded], [now], k, [excl])
        keep = ids[0] >= 0
        return ids[0][keep], scores[0][keep]

    def recommend_sequences(
        self,
        histories: Sequence[SequenceInput],
        sizes: Sequence[Sequence[str | None] | None] | None = None,
        k: int = 12,
        exclude: Sequence[SequenceInput | None] | None = None,
        event_types: Sequence[Sequence[int] | None] | None = None,
        timestamps: Sequence[SequenceInput | None] | None = None,
        now: Sequence[int | None] | None = None,
    ) -> tuple[IntArray, FloatArray]:
        """Batched :meth:`recommend_from_sequence`: 2-d arrays, one row per history, padded with
        ``-1`` / ``-inf``."""
        coded = [
            self._prepare(
                h,
                None if sizes is None else sizes[r],
                None if event_types is None else event_types[r],
                None if timestamps is None else timestamps[r],
            )
            for r, h in enumerate(histories)
        ]
        excludes = [
            None
            if exclude is None or exclude[r] is None
            else np.asarray(exclude[r], dtype=np.int64)
            for r in range(len(histories))
        ]
        nows = list(now) if now is not None else [None] * len(histories)
        return self._rank(coded, nows, k, excludes)

    def recommend(
        self,
        userid: int | IntArray,
        user_items: sp.csr_matrix,
        N: int = 12,
        *,
        filter_already_liked_items: bool = True,
        filter_items: IntArray | None = None,
    ) -> tuple[IntArray, FloatArray]:
        """Top ``N`` for training customers from the histories kept at fit, as of the end of
        training (see the base class for the shapes). A customer without history gets the
        empty-history ranking."""
        self._check_fitted()
        ids, single = as_userids(userid)
        if len(ids) and (ids.min() < 0 or ids.max() >= self.n_users):
            bad = ids[(ids < 0) | (ids >= self.n_users)][0]
            raise ValueError(
                f"customer index {int(bad)} is not in the model ({self.n_users} customers); "
                "use recommend_from_sequence"
            )
        rows = user_rows(user_items, ids, self.n_items) if filter_already_liked_items else None
        extra = (
            None if filter_items is None else np.asarray(filter_items, dtype=np.int64).reshape(-1)
        )
        excludes: list[IntArray | None] = []
        for r in range(len(ids)):
            parts = []
            if rows is not None:
                parts.append(
                    np.asarray(rows.indices[rows.indptr[r] : rows.indptr[r + 1]], dtype=np.int64)
                )
            if extra is not None:
                parts.append(extra)
            excludes.append(np.concatenate(parts) if parts else None)
        coded = [self.histories.row(int(u)) for u in ids]
        out_ids, out_scores = self._rank(coded, [self.trained_until] * len(ids), int(N), excludes)
        if single:
            keep = out_ids[0] >= 0
            return out_ids[0][keep], out_scores[0][keep]
        return out_ids, out_scores

    def history_of(
        self, user: int
    ) -> tuple[IntArray, list[str | None], IntArray, npt.NDArray[np.int64]]:
        """``(items, sizes, event types, timestamps)`` kept at fit for training customer ``user``
        (time order, at most ``max_len``): the service appends the events that arrived since and
        calls :meth:`recommend_from_sequence` with them."""
        if not 0 <= int(user) < self.n_users:
            raise ValueError(
                f"customer index {user} is not in the model ({self.n_users} customers)"
            )
        row = self.histories.row(int(user))
        sizes = [None if code == 0 else self.size_vocab[int(code)] for code in row.sizes]
        times = row.times if row.times is not None else np.zeros(len(row.items), np.int64)
        return row.items.copy(), sizes, row.types.copy(), times.copy()

    def similar_items(
        self, itemid: int, N: int = 12, *, filter_items: IntArray | None = None
    ) -> tuple[IntArray, FloatArray]:
        """Top ``N`` items by cosine similarity of the item vectors ``v_i`` (itself excluded)."""
        vectors = self.item_vectors()[:, :-1]
        item = int(itemid)
        if not 0 <= item < self.n_items:
            raise ValueError(f"item index {item} is not in the model ({self.n_items} items)")
        norms = np.linalg.norm(vectors, axis=1)
        scores = (vectors @ vectors[item]) / np.maximum(norms * norms[item], 1e-12)
        exclude = np.asarray([item], dtype=np.int64)
        if filter_items is not None:
            exclude = np.concatenate([exclude, np.asarray(filter_items, dtype=np.int64).ravel()])
        return top_n(scores, N, exclude)

    # ------------------------------------------------------------------ save / load

    def save(self, path: Path) -> None:
        """``path/arrays.npz``: every ``state_dict`` tensor as ``param.<name>``, the item feature
        codes and the kept histories; ``path/config.json``: hyperparameters and vocabularies."""
        net = self._check_fitted()
        arrays: dict[str, np.ndarray] = {
            f"param.{k}": v.detach().cpu().numpy() for k, v in net.state_dict().items()
        }
        if self.item_features is not None:
            arrays.update(self.item_features.to_arrays())
        arrays.update(
            hist_indptr=self.histories.indptr,
            hist_items=self.histories.items,
            hist_sizes=self.histories.sizes,
            hist_types=self.histories.types,
            hist_times=self.histories.times,
        )
        save_arrays(path, **arrays)
        write_config(
            path,
            {
                "model": self.name,
                "format": _FORMAT,
                "config": self.config.to_dict(),
                "n_items": self.n_items,
                "n_users": self.n_users,
                "trained_until": self.trained_until,
                "size_vocab": self.size_vocab,
                "item_features": None
                if self.item_features is None
                else self.item_features.to_config(),
                "train_seconds": round(self.train_seconds, 3),
                "loss_history": [round(v, 6) for v in self.loss_history],
                "stopped_by_budget": self.stopped_by_budget,
                "torch_version": torch.__version__,
            },
        )

    @classmethod
    def load(cls, path: Path) -> Self:
        config = read_model_config(path, cls.name)
        arrays = load_arrays(path)
        try:
            features = (
                None
                if config["item_features"] is None
                else ItemFeatures.from_saved(config["item_features"], arrays)
            )
            model = cls(SequenceConfig.from_dict(config["config"]), item_features=features)
            model.n_items = int(config["n_items"])
            model.n_users = int(config["n_users"])
            model.trained_until = int(config["trained_until"])
            model.size_vocab = [str(s) for s in config["size_vocab"]]
            model.train_seconds = float(config.get("train_seconds", 0.0))
            model.loss_history = [float(v) for v in config.get("loss_history", [])]
            model.stopped_by_budget = bool(config.get("stopped_by_budget", False))
            model.histories = _Histories(
                indptr=arrays["hist_indptr"].astype(np.int64),
                items=arrays["hist_items"].astype(np.int64),
                sizes=arrays["hist_sizes"].astype(np.int64),
                types=arrays["hist_types"].astype(np.int64),
                times=arrays["hist_times"].astype(np.int64),
            )
            state = {
                k[len("param.") :]: torch.from_numpy(v.copy())
                for k, v in arrays.items()
                if k.startswith("param.")
            }
        except (KeyError, ValueError, TypeError) as exc:
            raise BundleError(f"{path} is not a complete sequence model: {exc}") from exc
        net = SequenceNet(model.config, model.n_items, features, len(model.size_vocab))
        try:
            net.load_state_dict(state, strict=True)
        except RuntimeError as exc:
            raise BundleError(f"{path}: weights do not fit the saved configuration: {exc}") from exc
        net.eval()
        model.net = net
        return model


# --------------------------------------------------------------------------- data preparation


@dataclass
class _Sequence:
    items: IntArray
    sizes: IntArray
    types: IntArray
    times: npt.NDArray[np.int64]


def _encode_event_sizes(
    sizes: Sequence[str | None] | None, n_events: int
) -> tuple[list[str], IntArray]:
    """``(size vocabulary, code per event)``: the vocabulary is ``"<unk>"`` then the distinct
    sizes sorted; unknown sizes (``None``) are code 0. Vectorised (10M events take ~1 s)."""
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


@dataclass
class _UserEvents:
    """Every customer's input events (not impressions or returns) in one CSR layout: customer
    ``users[k]``'s events in time order are ``[starts[k], ends[k])`` of the event arrays."""

    users: IntArray  # customers with at least one input event, ascending
    starts: IntArray
    ends: IntArray
    items: IntArray
    sizes: IntArray
    types: IntArray
    times: npt.NDArray[np.int64]

    @classmethod
    def build(cls, data: TrainingData, size_codes: IntArray) -> _UserEvents:
        types = np.asarray(data.event_types, dtype=np.int64)
        keep = ~np.isin(types, list(_NO_INPUT_TYPES))
        users = data.user_idx[keep]
        order = np.lexsort((np.arange(len(users)), data.timestamps[keep], users))
        users = users[order]
        bounds = np.flatnonzero(np.diff(users)) + 1
        starts = np.concatenate([[0], bounds]).astype(np.int64)
        ends = np.concatenate([bounds, [len(users)]]).astype(np.int64)
        if len(users) == 0:
            starts = ends = np.empty(0, dtype=np.int64)
        return cls(
            users=np.asarray(users[starts], dtype=np.int64),
            starts=starts,
            ends=ends,
            items=np.asarray(data.item_idx[keep][order], dtype=np.int64),
            sizes=size_codes[keep][order],
            types=types[keep][order],
            times=np.asarray(data.timestamps, dtype=np.int64)[keep][order],
        )

    def __len__(self) -> int:
        return len(self.users)

    def sequence(self, k: int) -> _Sequence:
        """The ``k``-th customer's events (views, not copies)."""
        a, b = int(self.starts[k]), int(self.ends[k])
        return _Sequence(self.items[a:b], self.sizes[a:b], self.types[a:b], self.times[a:b])


def _keep_histories(events: _UserEvents, n_users: int, max_len: int) -> _Histories:
    """Each customer's last ``max_len`` input events, by customer index (CSR)."""
    lengths = events.ends - events.starts
    counts = np.zeros(n_users, dtype=np.int64)
    counts[events.users] = np.minimum(lengths, max_len)
    indptr = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    # event j of customer k is kept when it is among the customer's last max_len events
    owner_end = np.repeat(events.ends, lengths)
    kept = (owner_end - np.arange(len(events.items))) <= max_len
    return _Histories(
        indptr=indptr,
        items=events.items[kept].copy(),
        sizes=events.sizes[kept].copy(),
        types=events.types[kept].copy(),
        times=events.times[kept].copy(),
    )


@dataclass
class _Windows:
    """Padded training windows and the (window, position, target item) pairs of the loss."""

    items: IntArray  # (W, max_len) item index + 1
    sizes: IntArray
    types: IntArray  # type code + 1
    times: npt.NDArray[np.int64]  # (W, max_len) seconds
    lengths: IntArray
    pair_window: IntArray
    pair_pos: IntArray
    pair_target: IntArray
    pair_time: npt.NDArray[np.int64]  # when the target happened (the repeat term's "now")
    pair_start: IntArray  # (W + 1,) CSR offsets of each window's pairs (pairs sorted by window)


def _targets(seq: _Sequence, target_codes: IntArray, mode: str) -> list[tuple[int, int, int]]:
    """``(position, target item, target time)`` triples of one customer's sequence."""
    n = len(seq.items)
    is_target = np.isin(seq.types, target_codes)
    pairs: list[tuple[int, int, int]] = []
    if mode == "next_item":
        nxt = -1
        for p in range(n - 1, -1, -1):
            if nxt >= 0:
                pairs.append((p, int(seq.items[nxt]), int(seq.times[nxt])))
            if is_target[p]:
                nxt = p
        return pairs
    # next_basket: baskets are runs of equal timestamps; the state after a basket's last event
    # predicts the target items of the next basket that has any.
    change = np.flatnonzero(np.diff(seq.times)) + 1
    starts = np.concatenate([[0], change]).astype(np.int64)
    ends = np.concatenate([change, [n]]).astype(np.int64)
    upcoming: list[int] = []
    upcoming_time = 0
    for a, b in zip(starts[::-1], ends[::-1], strict=True):
        if upcoming:
            pairs.extend((int(b - 1), item, upcoming_time) for item in upcoming)
        basket = [int(seq.items[j]) for j in range(a, b) if is_target[j]]
        if basket:
            upcoming = basket
            upcoming_time = int(seq.times[a])
    return pairs


def _training_windows(
    sequences: Iterable[_Sequence],
    target_codes: IntArray,
    config: SequenceConfig,
    limit: int | None = None,
) -> _Windows:
    """Cut sequences into windows of ``max_len`` steps overlapping by a quarter, each loss pair
    assigned to exactly one window (where it has the most context). With ``limit``, stop once
    that many windows are cut (the sequences are read lazily, so the cost is bounded too)."""
    L = config.max_len
    overlap = L // 4 if L >= 4 else 0
    step = L - overlap
    rows: list[tuple[_Sequence, int, int]] = []
    pw: list[int] = []
    pp: list[int] = []
    pt: list[int] = []
    ptime: list[int] = []
    for seq in sequences:
        if limit is not None and len(rows) >= limit:
            break
        pairs = _targets(seq, target_codes, config.target)
        if not pairs:
            continue
        pairs.sort()
        positions = np.asarray([p for p, _, _ in pairs], dtype=np.int64)
        targets = np.asarray([t for _, t, _ in pairs], dtype=np.int64)
        when = np.asarray([t for _, _, t in pairs], dtype=np.int64)
        n = len(seq.items)
        start = 0
        while limit is None or len(rows) < limit:
            stop = min(start + L, n)
            lo = start if start == 0 else start + overlap
            mask = (positions >= lo) & (positions < stop)
            if mask.any():
                w = len(rows)
                rows.append((seq, start, stop))
                pw.extend([w] * int(mask.sum()))
                pp.extend((positions[mask] - start).tolist())
                pt.extend(targets[mask].tolist())
                ptime.extend(when[mask].tolist())
            if stop >= n:
                break
            start += step
    W = len(rows)
    items = np.zeros((W, L), dtype=np.int64)
    sizes = np.zeros((W, L), dtype=np.int64)
    types = np.zeros((W, L), dtype=np.int64)
    times = np.zeros((W, L), dtype=np.int64)
    lengths = np.zeros(W, dtype=np.int64)
    for w, (seq, a, b) in enumerate(rows):
        n = b - a
        items[w, :n] = seq.items[a:b] + 1
        sizes[w, :n] = seq.sizes[a:b]
        types[w, :n] = seq.types[a:b] + 1
        times[w, :n] = seq.times[a:b]
        lengths[w] = n
    pair_window = np.asarray(pw, dtype=np.int64)
    pair_start = np.searchsorted(pair_window, np.arange(W + 1)).astype(np.int64)
    return _Windows(
        items=items,
        sizes=sizes,
        types=types,
        times=times,
        lengths=lengths,
        pair_window=pair_window,
        pair_pos=np.asarray(pp, dtype=np.int64),
        pair_target=np.asarray(pt, dtype=np.int64),
        pair_time=np.asarray(ptime, dtype=np.int64),
        pair_start=pair_start,
    )
