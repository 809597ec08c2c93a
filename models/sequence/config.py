"""The LSTM's hyperparameters, with the one set of defaults (saved in a model's config.json).

``SequenceConfig(epochs=3, seed=7)`` validates on construction (a bad value is a ValueError naming
the field); ``config.replace(epochs=5)`` is a validated copy; ``to_dict`` / ``from_dict`` are the
config.json form. :class:`SequenceHyperparameters` is every field but the seed, for a caller that
sets the seed itself (``training.train.SequenceTrainConfig``).
"""

from __future__ import annotations

from typing import Any, Literal, Self

from pydantic import ConfigDict, Field, field_validator

from feature_store.config import StrictConfig
from feature_store.schema import InteractionType


class SequenceHyperparameters(StrictConfig):
    """Every hyperparameter of :class:`~models.sequence.SequenceRecommender` but the seed.

    Bounds for large data are off by default: ``max_windows`` caps the training windows of each
    epoch (a fresh seeded sample of customers per epoch, from a random stream of its own, so an
    epoch's cost no longer grows with the data); ``max_train_seconds`` is a wall-clock budget
    checked after each epoch (a fit it ends early depends on the machine's speed); with the
    sampled loss, ``table_rows="batch"`` computes the item vectors of only the items a batch reads
    or scores (the same random draws as ``"all"``, equal up to float rounding).
    """

    model_config = ConfigDict(frozen=True)

    id_dim: int = Field(32, ge=1, description="item-id embedding")
    feature_dim: int = Field(16, ge=1, description="each side-feature, size and type embedding")
    hidden_dim: int = Field(128, ge=1, description="LSTM state")
    output_dim: int = Field(64, ge=1, description="item and session vectors")
    num_layers: int = Field(1, ge=1)
    dropout: float = Field(0.2, ge=0, lt=1, description="on the LSTM output")
    id_dropout: float = Field(
        0.3, ge=0, lt=1, description="probability of dropping an item's id embedding in a step"
    )
    max_len: int = Field(50, ge=1, description="steps of history the LSTM reads")
    epochs: int = Field(10, ge=0)
    batch_size: int = Field(32, ge=1)
    learning_rate: float = 5e-3
    weight_decay: float = 1e-5
    target: Literal["next_basket", "next_item"] = "next_basket"
    target_types: tuple[str, ...] = (InteractionType.PURCHASE.value,)
    loss: Literal["full", "sampled"] = "sampled"
    num_negatives: int = Field(
        1024, ge=1, description="sampled softmax: uniform negatives shared by a batch"
    )
    repeat: bool = Field(True, description="learned, session-gated repeat term for history items")
    repeat_half_life_days: float = Field(60.0, gt=0)
    repeat_prior: float = Field(
        3.0, description="initial repeat weight, softplus(prior): history items start strong"
    )
    num_threads: int = Field(2, ge=1)
    max_windows: int | None = Field(
        None, ge=1, description="training windows per epoch (seeded sample of customers)"
    )
    max_train_seconds: float | None = Field(
        None, gt=0, description="wall-clock budget, checked after each epoch"
    )
    table_rows: Literal["all", "batch"] = Field(
        "all", description="sampled loss: item vectors of the batch's items only"
    )

    @field_validator("target_types")
    @classmethod
    def _interaction_types(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        known = {t.value for t in InteractionType}
        if not value or any(t not in known for t in value):
            raise ValueError(f"target_types must be interaction types, got {value}")
        return value

    def replace(self, **changes: Any) -> Self:
        """A copy with ``changes`` applied, validated like a new config."""
        return self.model_validate({**self.model_dump(), **changes})


class SequenceConfig(SequenceHyperparameters):
    """Hyperparameters of :class:`~models.sequence.SequenceRecommender` (saved in config.json).

    Two fits with the same ``seed`` give bit-identical weights (also under ``max_windows``).
    """

    seed: int = 42

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON values (``target_types`` as a list)."""
        return self.model_dump(mode="json")

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> SequenceConfig:
        """The config of a saved model; keys this version does not know are ignored."""
        return cls.model_validate({k: v for k, v in raw.items() if k in cls.model_fields})
