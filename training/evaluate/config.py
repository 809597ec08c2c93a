"""What an evaluation run can be told: :class:`EvalConfig` and the command's :func:`preset_config`.

Every setting is a strict pydantic model (:class:`feature_store.config.StrictConfig`): a misspelt
key, in a preset's overrides, in :meth:`EvalConfig.replace` or in a JSON object read with
:func:`feature_store.config.load_config`, is a :class:`~feature_store.errors.DataFormatError`
naming the key and the keys allowed there.
"""

from __future__ import annotations

from typing import Any

from pydantic import ConfigDict, Field, model_validator

from feature_store.config import StrictConfig, validate_config
from models.ranker import RankerConfig
from models.sequence import SequenceConfig

__all__ = [
    "BASELINES",
    "METHODS",
    "PROTOCOLS",
    "ALSParams",
    "EvalConfig",
    "PeerParams",
    "preset_config",
]

METHODS: tuple[str, ...] = (
    "popularity",
    "repurchase",
    "als",
    "item_knn",
    "sasrec",
    "lstm",
    "blend",
    "ranker",
)
#: Methods the blend target is compared against (baselines and the peer).
BASELINES: tuple[str, ...] = ("popularity", "repurchase", "als", "item_knn", "sasrec")
PROTOCOLS: tuple[str, ...] = ("last_day", "time_split")


class ALSParams(StrictConfig):
    """Implicit ALS settings of the ``als`` method and blend source."""

    model_config = ConfigDict(frozen=True)

    factors: int = 64
    regularization: float = 0.05
    alpha: float = 2.0
    iterations: int = 15


class PeerParams(StrictConfig):
    """rectools SASRec settings (its defaults, shortened for a 2-core CPU)."""

    model_config = ConfigDict(frozen=True)

    epochs: int = 5
    n_factors: int = 64
    n_blocks: int = 2
    n_heads: int = 2
    session_max_len: int = 50
    batch_size: int = 128


class EvalConfig(StrictConfig):
    """Everything :func:`training.evaluate.run_evaluation` can be told."""

    model_config = ConfigDict(frozen=True)

    protocol: str = "last_day"
    k: int = 12
    folds: int = 6
    test_days: int = 28  # time_split only
    min_validation_days: int = 28
    max_validation_days: int = 91
    depth: int = 100  # candidates per source handed to the blend
    popularity_half_life_days: float = 14.0
    repurchase_half_life_days: float = 60.0
    knn_half_life_days: float = 60.0
    repeat_half_life_days: float = 3.0
    repeat_exponent: float = 2.0
    sibling_half_life_days: float = 30.0
    max_neighbours: int = 50  # per item in the sibling table
    pool_validation: bool = True  # fit a fold's weights on its and all earlier folds' validation
    ranker_depth: int = 50  # candidates per source in the learned ranker's union
    ranker: RankerConfig = Field(default_factory=RankerConfig)
    als: ALSParams = Field(default_factory=ALSParams)
    sequence: SequenceConfig = Field(default_factory=SequenceConfig)
    peer: PeerParams = Field(default_factory=PeerParams)
    methods: tuple[str, ...] = METHODS
    n_boot: int = 1000
    seed: int = 42
    threads: int = 2
    max_customers: int | None = None  # a seeded sample of the evaluated customers

    @model_validator(mode="after")
    def _check(self) -> EvalConfig:
        if self.protocol not in PROTOCOLS:
            raise ValueError(f"protocol must be one of {PROTOCOLS}, got {self.protocol!r}")
        unknown = [m for m in self.methods if m not in METHODS]
        if unknown:
            raise ValueError(f"unknown methods {unknown}; known: {METHODS}")
        if self.k < 1 or self.folds < 1 or self.depth < self.k or self.test_days < 1:
            raise ValueError("k, folds and test_days must be >= 1 and depth >= k")
        if not 1 <= self.min_validation_days <= self.max_validation_days:
            raise ValueError("need 1 <= min_validation_days <= max_validation_days")
        return self

    def replace(self, **changes: Any) -> EvalConfig:
        """A copy with ``changes`` applied and validated (unknown keys are refused)."""
        return validate_config(EvalConfig, {**dict(self), **changes}, what="evaluation config")


def preset_config(
    protocol: str,
    *,
    n_interactions: int = 0,
    seed: int = 42,
    **overrides: Any,
) -> EvalConfig:
    """The configuration ``lookbook evaluate`` and ``benchmarks/offline_hm.py`` use: the defaults,
    and for large ``time_split`` data (more than 100k interactions, e.g. Rent the Runway's 192k)
    fewer, larger LSTM and SASRec steps and a 3,000-customer sample, so a run takes minutes on two
    cores; the LSTM trains on one thread otherwise. ``overrides`` are :class:`EvalConfig` fields
    (``lstm_epochs`` sets the LSTM's); a misspelt one is a
    :class:`~feature_store.errors.DataFormatError` naming it."""
    lstm_epochs = overrides.pop("lstm_epochs", None)
    large = protocol == "time_split" and n_interactions > 100_000
    sequence = (
        SequenceConfig(epochs=3, batch_size=256, learning_rate=1e-2, seed=seed)
        if large
        # one torch thread: on the shared 2-core machine two threads contend with every other
        # process (largest H&M fold, same load: 50 s with one thread, 182 s with two)
        else SequenceConfig(seed=seed, num_threads=1)
    )
    if lstm_epochs is not None:
        sequence = sequence.replace(epochs=int(lstm_epochs))
    values: dict[str, Any] = {"protocol": protocol, "seed": seed, "sequence": sequence}
    if large:
        values.update(peer=PeerParams(epochs=2, batch_size=256), max_customers=3000)
    values.update({k: v for k, v in overrides.items() if v is not None})
    return validate_config(EvalConfig, values, what="evaluation config")
