"""The learned ranker: LightGBM LambdaRank over the candidate sources' union.

:class:`LearnedRanker` fits on feature rows (:mod:`models.ranker_features`) grouped by customer
with a 0/1 label (bought on the held-out day), early-stopped on a separate validation set, scores
candidates, and saves itself in LightGBM's own text model format plus a JSON file (no pickle).
Deterministic under ``RankerConfig.seed`` (one thread, LightGBM's ``deterministic`` mode).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final

import lightgbm as lgb
import numpy as np
import numpy.typing as npt
from pydantic import ConfigDict

from feature_store.config import StrictConfig
from feature_store.errors import DataFormatError
from models.base import save_arrays
from models.ranker_features import FEATURE_NAMES, ItemStats

__all__ = ["META_FILE", "MODEL_FILE", "LearnedRanker", "RankerConfig"]

MODEL_FILE: Final = "ranker.txt"
META_FILE: Final = "ranker.json"
STATS_FILE: Final = "arrays.npz"  # the item statistics (models.base.save_arrays)


class RankerConfig(StrictConfig):
    """LambdaRank settings (small trees: a few thousand customers a window)."""

    model_config = ConfigDict(frozen=True)

    num_leaves: int = 15
    learning_rate: float = 0.05
    max_rounds: int = 400
    early_stopping_rounds: int = 40
    min_data_in_leaf: int = 20
    feature_fraction: float = 0.8
    lambda_l2: float = 1.0
    eval_at: int = 12
    seed: int = 0
    num_threads: int = 1

    def params(self) -> dict[str, Any]:
        return {
            "objective": "lambdarank",
            "metric": "map",
            "eval_at": [self.eval_at],
            "num_leaves": self.num_leaves,
            "learning_rate": self.learning_rate,
            "min_data_in_leaf": self.min_data_in_leaf,
            "feature_fraction": self.feature_fraction,
            "lambda_l2": self.lambda_l2,
            "seed": self.seed,
            "deterministic": True,
            "force_row_wise": True,
            "num_threads": self.num_threads,
            "verbosity": -1,
        }


def _dataset(
    x: npt.NDArray[np.float32], y: npt.NDArray[np.int64], groups: Sequence[int]
) -> lgb.Dataset:
    return lgb.Dataset(
        np.asarray(x, dtype=np.float32),
        label=np.asarray(y, dtype=np.float64),
        group=np.asarray(groups, dtype=np.int64),
        feature_name=list(FEATURE_NAMES),
        free_raw_data=False,
        params={"verbosity": -1},
    )


class LearnedRanker:
    """A fitted LambdaRank booster over :data:`models.ranker_features.FEATURE_NAMES`."""

    def __init__(self, config: RankerConfig | None = None) -> None:
        self.config = config or RankerConfig()
        self.booster: lgb.Booster | None = None
        self.best_iteration: int = 0
        self.validation_map: float | None = None
        #: the item statistics it serves with (as of the bundle's data end), saved beside it
        self.stats: ItemStats | None = None
        #: the blend weights and fusion constant of its ``blend_score`` feature (fixed at fit)
        self.blend_weights: dict[str, float] = {}
        self.blend_rrf_k: float = 60.0

    @property
    def name(self) -> str:
        return "ranker"

    @property
    def n_items(self) -> int:
        return 0 if self.stats is None else self.stats.n_items

    @property
    def fitted(self) -> bool:
        return self.booster is not None

    def fit(
        self,
        x: npt.NDArray[np.float32],
        y: npt.NDArray[np.int64],
        groups: Sequence[int],
        validation: tuple[npt.NDArray[np.float32], npt.NDArray[np.int64], Sequence[int]]
        | None = None,
    ) -> LearnedRanker:
        """Fit on rows ``x`` (``groups`` consecutive rows per customer, labels ``y``). With
        ``validation``, rounds stop when its MAP@``eval_at`` has not improved for
        ``early_stopping_rounds``; the model is then refitted on ``x`` and the validation rows
        together for the best number of rounds."""
        if x.shape[1] != len(FEATURE_NAMES):
            raise ValueError(f"expected {len(FEATURE_NAMES)} features, got {x.shape[1]}")
        if int(np.sum(groups)) != len(x) or len(y) != len(x):
            raise ValueError("groups must sum to the number of rows, one label per row")
        c = self.config
        rounds = c.max_rounds
        if validation is not None and len(validation[0]) and np.asarray(validation[1]).any():
            train_set = _dataset(x, y, groups)
            valid_set = _dataset(*validation)
            record: dict[str, Any] = {}
            probe = lgb.train(
                c.params(),
                train_set,
                num_boost_round=c.max_rounds,
                valid_sets=[valid_set],
                valid_names=["validation"],
                callbacks=[
                    lgb.early_stopping(c.early_stopping_rounds, verbose=False),
                    lgb.record_evaluation(record),
                ],
            )
            rounds = max(int(probe.best_iteration), 1)
            self.validation_map = float(record["validation"][f"map@{c.eval_at}"][rounds - 1])
            x = np.concatenate([x, validation[0]])
            y = np.concatenate([y, validation[1]])
            groups = [*groups, *validation[2]]
        self.booster = lgb.train(c.params(), _dataset(x, y, groups), num_boost_round=rounds)
        self.best_iteration = rounds
        return self

    def score(self, x: npt.NDArray[np.float32]) -> npt.NDArray[np.float64]:
        """One score per row (higher first); rows are :data:`FEATURE_NAMES` features."""
        if self.booster is None:
            raise RuntimeError("the ranker is not fitted")
        if len(x) == 0:
            return np.empty(0, np.float64)
        return np.asarray(
            self.booster.predict(np.asarray(x, dtype=np.float32), num_threads=1), dtype=np.float64
        )

    def rank(
        self, candidates: npt.NDArray[np.int64], x: npt.NDArray[np.float32], k: int
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float64]]:
        """The top ``k`` of ``candidates`` by score (ties: first candidate first)."""
        scores = self.score(x)
        order = np.lexsort((np.arange(len(scores)), -scores))[:k]
        return np.asarray(candidates, dtype=np.int64)[order], scores[order]

    def importances(self) -> dict[str, float]:
        """Total gain per feature, as a share of the total (sums to 1; zeros when untrained)."""
        if self.booster is None:
            return {n: 0.0 for n in FEATURE_NAMES}
        gain = np.asarray(self.booster.feature_importance("gain"), dtype=np.float64)
        total = float(gain.sum()) or 1.0
        return {n: float(g / total) for n, g in zip(FEATURE_NAMES, gain, strict=True)}

    def save(self, folder: Path) -> None:
        """Write ``ranker.txt`` (LightGBM's text model), ``ranker.json`` and, when set, the item
        statistics ``arrays.npz`` into ``folder``."""
        if self.booster is None:
            raise RuntimeError("the ranker is not fitted")
        folder.mkdir(parents=True, exist_ok=True)
        (folder / MODEL_FILE).write_text(self.booster.model_to_string(), encoding="utf-8")
        meta = {
            "config": self.config.model_dump(),
            "features": list(FEATURE_NAMES),
            "best_iteration": self.best_iteration,
            "validation_map": self.validation_map,
            "blend_weights": self.blend_weights,
            "blend_rrf_k": self.blend_rrf_k,
        }
        (folder / META_FILE).write_text(json.dumps(meta, indent=2, sort_keys=True), "utf-8")
        if self.stats is not None:
            save_arrays(folder, **self.stats.to_arrays())

    @classmethod
    def load(cls, folder: Path) -> LearnedRanker:
        """Read what :meth:`save` wrote; a model of other features is a ``DataFormatError``."""
        meta = json.loads((folder / META_FILE).read_text(encoding="utf-8"))
        if tuple(meta.get("features", ())) != FEATURE_NAMES:
            raise DataFormatError(
                f"{folder / META_FILE}: the ranker was trained on other features "
                f"({meta.get('features')}); retrain the bundle"
            )
        ranker = cls(RankerConfig(**meta["config"]))
        ranker.booster = lgb.Booster(model_str=(folder / MODEL_FILE).read_text(encoding="utf-8"))
        ranker.best_iteration = int(meta["best_iteration"])
        vm = meta.get("validation_map")
        ranker.validation_map = None if vm is None else float(vm)
        ranker.blend_weights = {str(k): float(v) for k, v in meta["blend_weights"].items()}
        ranker.blend_rrf_k = float(meta["blend_rrf_k"])
        if (folder / STATS_FILE).is_file():
            with np.load(folder / STATS_FILE, allow_pickle=False) as arrays:
                ranker.stats = ItemStats.from_arrays(dict(arrays))
        return ranker
