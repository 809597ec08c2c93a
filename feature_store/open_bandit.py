"""The Open Bandit Dataset adapter: a logged policy's impressions as a :class:`BanditLog`.

    from feature_store.open_bandit import load_bandit_log, load_bts_prior

    log = load_bandit_log(root, policy="random", campaign="all")  # root/random/all/all.csv
    prior = load_bts_prior(root / "prior_bts.yaml", campaign="all")

The dataset (ZOZOTOWN, Saito et al. 2021) logs one impression per row: which item (``action``)
was shown in which of the recommendation slots (``position``, 1-based in the file, 0-based
here), whether it was clicked (``reward``) and the logging policy's probability of that item in
that slot (``pscore``). The user context is the one-hot code of the hashed categorical
``user_feature_*`` columns (categories sorted, so the code is deterministic) followed by the
numeric ``user-item_affinity_*`` columns; the item features are ``item_feature_0`` (numeric)
followed by the one-hot code of the categorical ``item_feature_1..``. A malformed file raises
:class:`DataFormatError` naming the file, and the row and column when known.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pandas as pd
import yaml

from feature_store.errors import DataFormatError

__all__ = [
    "PRIOR_FILE",
    "BanditLog",
    "BetaPrior",
    "load_bandit_log",
    "load_bts_prior",
]

PRIOR_FILE = "prior_bts.yaml"
ITEM_CONTEXT_FILE = "item_context.csv"
_LOG_COLUMNS = ("timestamp", "item_id", "position", "click", "propensity_score")
_USER_PREFIX = "user_feature_"
_AFFINITY_PREFIX = "user-item_affinity_"
_ITEM_PREFIX = "item_feature_"


@dataclass(frozen=True)
class BanditLog:
    """One logging policy's impressions, in time order (one row = one round).

    ``actions[i]`` (0..n_actions-1) was shown at ``positions[i]`` (0..n_positions-1) with the
    logging policy's probability ``pscore[i]``; ``rewards[i]`` is 1.0 for a click. ``contexts``
    holds one row of user features per round, named by ``context_names``; ``item_features`` one
    row per action, named by ``item_feature_names``.
    """

    policy: str
    campaign: str
    timestamps: npt.NDArray[np.datetime64]
    actions: npt.NDArray[np.int64]
    positions: npt.NDArray[np.int64]
    rewards: npt.NDArray[np.float64]
    pscore: npt.NDArray[np.float64]
    contexts: npt.NDArray[np.float64]
    context_names: tuple[str, ...]
    item_features: npt.NDArray[np.float64]
    item_feature_names: tuple[str, ...]
    n_actions: int
    n_positions: int

    def __len__(self) -> int:
        return int(self.actions.shape[0])

    def rows(self, index: slice | npt.NDArray[np.int64] | npt.NDArray[np.bool_]) -> BanditLog:
        """The log restricted to ``index`` (a slice, row numbers or a boolean mask)."""
        return BanditLog(
            policy=self.policy,
            campaign=self.campaign,
            timestamps=self.timestamps[index],
            actions=self.actions[index],
            positions=self.positions[index],
            rewards=self.rewards[index],
            pscore=self.pscore[index],
            contexts=self.contexts[index],
            context_names=self.context_names,
            item_features=self.item_features,
            item_feature_names=self.item_feature_names,
            n_actions=self.n_actions,
            n_positions=self.n_positions,
        )

    def split(self, share: float) -> tuple[BanditLog, BanditLog]:
        """The first ``share`` of the rounds by time, and the rest."""
        if not 0.0 < share < 1.0:
            raise ValueError(f"share must be in (0, 1), got {share}")
        cut = round(len(self) * share)
        return self.rows(slice(0, cut)), self.rows(slice(cut, len(self)))

    @property
    def affinity(self) -> npt.NDArray[np.float64]:
        """``(n_rounds, n_actions)``: the user-item affinity columns of the context."""
        start = len(self.context_names) - self.n_actions
        return self.contexts[:, start:]


@dataclass(frozen=True)
class BetaPrior:
    """A Beta prior per action: ``alpha[a]``, ``beta[a]`` (both positive)."""

    alpha: npt.NDArray[np.float64]
    beta: npt.NDArray[np.float64]


def _read_csv(path: Path) -> pd.DataFrame:
    if not path.is_file():
        raise DataFormatError("file not found", file=str(path))
    try:
        return pd.read_csv(path, index_col=0)
    except (OSError, ValueError, pd.errors.ParserError) as exc:
        raise DataFormatError(f"cannot read CSV: {exc}", file=str(path)) from exc


def _one_hot(frame: pd.DataFrame, columns: list[str]) -> tuple[np.ndarray, list[str]]:
    blocks: list[np.ndarray] = []
    names: list[str] = []
    for column in columns:
        values = frame[column].astype(str).to_numpy()
        categories = np.unique(values)
        blocks.append((values[:, None] == categories[None, :]).astype(np.float64))
        names.extend(f"{column}={c}" for c in categories)
    width = len(names)
    return (np.hstack(blocks) if blocks else np.zeros((len(frame), width))), names


def _numbered(columns: pd.Index, prefix: str) -> list[str]:
    found = [c for c in columns if isinstance(c, str) and c.startswith(prefix)]
    return sorted(found, key=lambda c: int(c[len(prefix) :]) if c[len(prefix) :].isdigit() else -1)


def _first_bad(mask: npt.NDArray[np.bool_]) -> int:
    return int(np.flatnonzero(mask)[0])


def _numeric(frame: pd.DataFrame, column: str, file: str) -> npt.NDArray[np.float64]:
    values = pd.to_numeric(frame[column], errors="coerce").to_numpy(dtype=np.float64)
    bad = ~np.isfinite(values)
    if bad.any():
        row = _first_bad(bad)
        raise DataFormatError(
            f"not a finite number: {frame[column].iloc[row]!r}", file=file, row=row, column=column
        )
    return values


def _item_context(path: Path) -> tuple[np.ndarray, list[str]]:
    frame = _read_csv(path)
    file = str(path)
    if "item_id" not in frame.columns:
        raise DataFormatError("missing column", file=file, column="item_id")
    ids = _numeric(frame, "item_id", file)
    if not np.array_equal(ids, np.arange(len(frame))):
        raise DataFormatError("item_id must be 0..n_items-1 in order", file=file, column="item_id")
    features = _numbered(frame.columns, _ITEM_PREFIX)
    if not features:
        raise DataFormatError(f"no {_ITEM_PREFIX}* columns", file=file)
    numeric = [_numeric(frame, features[0], file)]
    categorical, cat_names = _one_hot(frame, features[1:])
    matrix = np.hstack([np.column_stack(numeric), categorical])
    return matrix, [features[0], *cat_names]


def load_bandit_log(root: Path, policy: str, campaign: str) -> BanditLog:
    """``root/<policy>/<campaign>/<campaign>.csv`` and its ``item_context.csv`` as a
    :class:`BanditLog` (rows in time order; positions 0-based)."""
    folder = Path(root) / policy / campaign
    path = folder / f"{campaign}.csv"
    frame = _read_csv(path)
    file = str(path)
    for column in _LOG_COLUMNS:
        if column not in frame.columns:
            raise DataFormatError("missing column", file=file, column=column)
    if frame.empty:
        raise DataFormatError("the log has no rows", file=file)
    item_features, item_names = _item_context(folder / ITEM_CONTEXT_FILE)
    n_actions = item_features.shape[0]

    timestamps = pd.to_datetime(frame["timestamp"], utc=True, errors="coerce")
    if timestamps.isna().any():
        row = _first_bad(timestamps.isna().to_numpy())
        raise DataFormatError("not a timestamp", file=file, row=row, column="timestamp")
    actions = _numeric(frame, "item_id", file)
    bad = (actions != np.round(actions)) | (actions < 0) | (actions >= n_actions)
    if bad.any():
        row = _first_bad(bad)
        raise DataFormatError(
            f"item_id {actions[row]:g} is not one of the {n_actions} items of {ITEM_CONTEXT_FILE}",
            file=file,
            row=row,
            column="item_id",
        )
    positions = _numeric(frame, "position", file)
    if ((positions != np.round(positions)) | (positions < 1)).any():
        row = _first_bad((positions != np.round(positions)) | (positions < 1))
        raise DataFormatError(
            "position must be an integer >= 1", file=file, row=row, column="position"
        )
    rewards = _numeric(frame, "click", file)
    if not np.isin(rewards, (0.0, 1.0)).all():
        row = _first_bad(~np.isin(rewards, (0.0, 1.0)))
        raise DataFormatError("click must be 0 or 1", file=file, row=row, column="click")
    pscore = _numeric(frame, "propensity_score", file)
    if ((pscore <= 0.0) | (pscore > 1.0)).any():
        row = _first_bad((pscore <= 0.0) | (pscore > 1.0))
        raise DataFormatError(
            "propensity_score must be in (0, 1]", file=file, row=row, column="propensity_score"
        )

    user_columns = _numbered(frame.columns, _USER_PREFIX)
    affinity_columns = _numbered(frame.columns, _AFFINITY_PREFIX)
    if len(affinity_columns) != n_actions:
        raise DataFormatError(
            f"{len(affinity_columns)} {_AFFINITY_PREFIX}* columns for {n_actions} items",
            file=file,
        )
    one_hot, user_names = _one_hot(frame, user_columns)
    affinity = np.column_stack([_numeric(frame, c, file) for c in affinity_columns])

    order = np.argsort(timestamps.to_numpy(), kind="stable")
    return BanditLog(
        policy=policy,
        campaign=campaign,
        timestamps=timestamps.dt.tz_localize(None).to_numpy()[order],
        actions=actions.astype(np.int64)[order],
        positions=(positions.astype(np.int64) - 1)[order],
        rewards=rewards[order],
        pscore=pscore[order],
        contexts=np.hstack([one_hot, affinity])[order],
        context_names=(*user_names, *affinity_columns),
        item_features=item_features,
        item_feature_names=tuple(item_names),
        n_actions=n_actions,
        n_positions=int(positions.max()),
    )


def load_bts_prior(path: Path, campaign: str) -> BetaPrior:
    """The Beta prior of ``campaign`` in a ``prior_bts.yaml`` (``campaign: {alpha: [...],
    beta: [...]}``)."""
    file = str(path)
    try:
        raw = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise DataFormatError(f"cannot read the prior: {exc}", file=file) from exc
    if not isinstance(raw, dict) or campaign not in raw:
        raise DataFormatError(f"no campaign {campaign!r}", file=file)
    entry = raw[campaign]
    if not isinstance(entry, dict):
        raise DataFormatError("a campaign must map alpha and beta", file=file, column=campaign)
    arrays: dict[str, np.ndarray] = {}
    for key in ("alpha", "beta"):
        values = entry.get(key)
        if not isinstance(values, list) or not values:
            raise DataFormatError("missing or empty list", file=file, column=f"{campaign}.{key}")
        try:
            array = np.asarray(values, dtype=np.float64)
        except (TypeError, ValueError) as exc:
            raise DataFormatError(
                f"not numbers: {exc}", file=file, column=f"{campaign}.{key}"
            ) from exc
        if array.ndim != 1 or not (np.isfinite(array) & (array > 0)).all():
            raise DataFormatError(
                "every value must be a positive number", file=file, column=f"{campaign}.{key}"
            )
        arrays[key] = array
    if arrays["alpha"].shape != arrays["beta"].shape:
        raise DataFormatError("alpha and beta differ in length", file=file, column=campaign)
    return BetaPrior(alpha=arrays["alpha"], beta=arrays["beta"])
