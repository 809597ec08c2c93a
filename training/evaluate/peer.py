"""The published peer: rectools' SASRec as a source (:func:`source_sasrec`).

rectools is optional (``pip install 'rectools[torch]'``, pinned in
``benchmarks/requirements-peer.txt``); without it the source raises :class:`PeerUnavailable` and
the run reports the method as skipped.
"""

from __future__ import annotations

import time

import numpy as np
import numpy.typing as npt
import pandas as pd

from models.base import IntArray
from training.evaluate.context import FoldContext

__all__ = ["PeerUnavailable", "source_sasrec"]


class PeerUnavailable(RuntimeError):
    """The published peer (rectools) is not installed."""


def source_sasrec(ctx: FoldContext) -> IntArray:
    """rectools' SASRec fitted on the events before ``train_end``; each customer's history up to
    their cutoff is its input. Raises :class:`PeerUnavailable` without rectools."""
    try:
        from rectools import Columns
        from rectools.dataset import Dataset as RecDataset
        from rectools.models import SASRecModel
    except ImportError as exc:  # pragma: no cover - depends on the optional extra
        raise PeerUnavailable(
            "rectools is not installed: `pip install 'rectools[torch]'` to measure the SASRec peer"
        ) from exc
    import torch
    from pytorch_lightning import Trainer

    c = ctx.config
    data = ctx.prepared.data
    train = ctx.train
    out = np.full((len(ctx.holdout), c.depth), -1, dtype=np.int64)
    if len(train.item_idx) == 0:
        return out

    def frame(users: IntArray, items: IntArray, ts: npt.NDArray[np.int64]) -> pd.DataFrame:
        return pd.DataFrame(
            {
                Columns.User: users,
                Columns.Item: items,
                Columns.Weight: np.ones(len(users), dtype=np.float32),
                Columns.Datetime: pd.to_datetime(ts, unit="s"),
            }
        )

    keep = train.weights > 0
    train_df = frame(train.user_idx[keep], train.item_idx[keep], train.timestamps[keep])
    dataset = RecDataset.construct(train_df)

    def trainer() -> Trainer:
        return Trainer(
            max_epochs=c.peer.epochs,
            min_epochs=c.peer.epochs,
            deterministic=True,
            enable_progress_bar=False,
            enable_model_summary=False,
            logger=False,
            enable_checkpointing=False,
            accelerator="cpu",
            devices=1,
        )

    previous = torch.get_num_threads()
    torch.set_num_threads(c.threads)
    start = time.perf_counter()
    try:
        torch.manual_seed(c.seed)
        model = SASRecModel(
            n_factors=c.peer.n_factors,
            n_blocks=c.peer.n_blocks,
            n_heads=c.peer.n_heads,
            session_max_len=c.peer.session_max_len,
            batch_size=c.peer.batch_size,
            epochs=c.peer.epochs,
            deterministic=True,
            verbose=0,
            get_trainer_func=trainer,
            recommend_torch_device="cpu",
        )
        model.fit(dataset)
        ctx.timings["sasrec_fit"] = time.perf_counter() - start
        known = set(np.unique(train_df[Columns.Item]).tolist())
        rows_u, rows_i, rows_t, targets = [], [], [], []
        for r, events in enumerate(ctx.histories):
            events = events[data.weights[events] > 0]
            items = data.item_idx[events]
            mask = np.isin(items, list(known))
            if not mask.any():
                continue
            targets.append(r)
            rows_u.append(np.full(int(mask.sum()), r, dtype=np.int64))
            rows_i.append(items[mask])
            rows_t.append(data.timestamps[events][mask])
        if not targets:
            return out
        reco_df = frame(np.concatenate(rows_u), np.concatenate(rows_i), np.concatenate(rows_t))
        reco_dataset = RecDataset.construct(reco_df)
        reco = model.recommend(
            users=np.asarray(targets, dtype=np.int64),
            dataset=reco_dataset,
            k=c.depth,
            filter_viewed=False,
            on_unsupported_targets="ignore",
        )
    finally:
        torch.set_num_threads(previous)
    reco = reco.sort_values([Columns.User, Columns.Rank])
    for r, group in reco.groupby(Columns.User, sort=True):
        items = group[Columns.Item].to_numpy(dtype=np.int64)[: c.depth]
        out[int(r), : len(items)] = items
    return out
