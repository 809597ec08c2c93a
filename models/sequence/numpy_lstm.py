"""The inference path of a one-layer :class:`~models.sequence.network.SequenceNet` in numpy.

Used for a single history (one request), where torch's per-call overhead dominates; build it with
``NumpyLSTM.of(net, item_table)``.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import torch

from models.base import FloatArray, IntArray

from .network import SequenceNet


@dataclass(frozen=True)
class NumpyLSTM:
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
    def of(cls, net: SequenceNet, table: FloatArray) -> NumpyLSTM:
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
        """The session vector ``u`` after the steps (item indices, size codes, type codes + 1).

        One ``tanh`` over all four gates per step: the sigmoid gates are ``0.5 * (tanh(x / 2) +
        1)``, and their rows of the weights are pre-halved (:attr:`_half`), which is exact in
        floating point — the same numbers as computing each gate on its own."""
        hidden = self.w_hh.shape[1]
        h = np.zeros(hidden, dtype=np.float32)
        c = np.zeros(hidden, dtype=np.float32)
        if len(items):
            w_ih, w_hh, bias = self._halved
            steps = np.concatenate(
                [self.table[items], self.size_embedding[sizes], self.type_embedding[types]], axis=1
            )
            inputs = steps @ w_ih.T + bias  # (T, 4H), the sigmoid gates' rows halved
            g_rows = slice(2 * hidden, 3 * hidden)
            for t in range(len(items)):
                z = np.tanh(inputs[t] + w_hh @ h)
                gate = (z + 1.0) * 0.5  # i, f, o (the g rows of it unused)
                c = gate[hidden : 2 * hidden] * c + gate[:hidden] * z[g_rows]
                h = gate[3 * hidden :] * np.tanh(c)
        out: FloatArray = (self.head_w @ h + self.head_b).astype(np.float32)
        return out

    @functools.cached_property
    def _halved(self) -> tuple[FloatArray, FloatArray, FloatArray]:
        """``w_ih``, ``w_hh`` and ``bias`` with the rows of the sigmoid gates (i, f, o) halved."""
        hidden = self.w_hh.shape[1]
        half = np.full(4 * hidden, 0.5, dtype=np.float32)
        half[2 * hidden : 3 * hidden] = 1.0
        return (
            np.ascontiguousarray(self.w_ih * half[:, None]),
            np.ascontiguousarray(self.w_hh * half[:, None]),
            self.bias * half,
        )

    def repeat_weight(self, session: FloatArray) -> FloatArray:
        """``softplus(W u + c)``, as :meth:`SequenceNet.repeat_weight`."""
        out: FloatArray = np.logaddexp(0.0, self.gate_w @ session + self.gate_b).astype(np.float32)
        return out
