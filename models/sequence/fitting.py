"""The training loop of the LSTM: epochs of Adam over training windows, with a sampled or full
softmax over the next items and the session-gated repeat term.

``EpochTrainer(net, config, n_items).run(windows_of, show_progress, started)`` trains ``net`` in
place (inside :func:`~models.sequence.network.torch_session`) and returns the loss of each epoch;
``stopped_by_budget`` tells whether ``max_train_seconds`` ended it early.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import torch
from torch import nn
from tqdm.auto import tqdm

from feature_store.timeutils import SECONDS_PER_DAY, decay
from models.base import IntArray

from .config import SequenceConfig
from .network import SequenceNet
from .windows import Windows

logger = logging.getLogger("lookbook.models.sequence")


@dataclass
class EpochTrainer:
    """Trains ``net`` (built for ``n_items`` items) with the hyperparameters of ``config``."""

    net: SequenceNet
    config: SequenceConfig
    n_items: int
    stopped_by_budget: bool = False  # the last run ended early on max_train_seconds

    def _batch_repeat(
        self, w: Windows, batch: IntArray, local: IntArray, pair_idx: IntArray
    ) -> tuple[IntArray, IntArray, npt.NDArray[np.float64]]:
        """``(pair rows, history items, decayed weights)`` of the steps each loss pair has read."""
        c = self.config
        pos = w.pair_pos[pair_idx]
        items = w.items[batch][local]  # (P, L) item + 1
        times = w.times[batch][local]
        mask = (np.arange(items.shape[1])[None, :] <= pos[:, None]) & (items > 0)
        rows, cols = np.nonzero(mask)
        age = np.maximum(w.pair_time[pair_idx][rows] - times[rows, cols], 0) / SECONDS_PER_DAY
        return rows, items[rows, cols] - 1, decay(age, c.repeat_half_life_days)

    def run(
        self, windows_of: Callable[[int], Windows], show_progress: bool, started: float
    ) -> tuple[list[float], tuple[int, int]]:
        """Epochs of Adam over the windows ``windows_of(epoch)``; returns the mean loss of each
        epoch run and ``(windows, loss pairs)`` trained on in all."""
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
        w: Windows,
        optimizer: torch.optim.Optimizer,
        generator: np.random.Generator,
        show_progress: bool,
        epoch: int,
    ) -> tuple[float, int]:
        """One pass over ``w``; returns (sum of pair losses, pairs)."""
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
