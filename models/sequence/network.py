"""The LSTM network in torch: item tower, LSTM over the steps, session head and repeat gate.

:func:`torch_session` runs torch code with a fixed thread count, deterministic algorithms and an
optional seeded, forked RNG (how every fit and batched inference runs).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import numpy as np
import torch
from torch import nn

from .config import SequenceConfig
from .encoding import TYPE_ORDER, ItemFeatures


class SequenceNet(nn.Module):
    """The network: item tower (id + side features → ``D``), LSTM over steps, session head.

    Each step of a history is one interaction: the *item vector* of its item, plus an embedding
    of the size bought (when known) and of the interaction type. The LSTM reads the steps; a
    linear head turns its state after the last step into a *session vector* ``u``. An item's
    score is ``u · v_i + b_i`` plus, for items already in the history, a learned *repeat term*
    ``beta(u) · [log1p(count), log1p(recency-decayed count)]`` with ``beta(u) = softplus(W u +
    c)``: the session decides how much shoppers rebuy (RepeatNet's idea, Ren et al., AAAI 2019,
    in its simplest form).

    Item vectors are tied between input and output: ``v_i = W [item_embedding(i) ; category ;
    product_type ; colour ; material ; pattern ; price_band ; mean(style embeddings)]``, so what
    is learnt about "a black jersey top" carries over to the next black jersey top; in training,
    whole id embeddings are dropped at random (``id_dropout``) so the side features must carry
    the signal. Item codes are shifted by one inside: code 0 is padding.
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
        self.type_embedding = nn.Embedding(len(TYPE_ORDER) + 1, c.feature_dim, padding_idx=0)
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


@contextlib.contextmanager
def torch_session(threads: int, seed: int | None) -> Iterator[None]:
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
