"""The one configuration system: strict pydantic models for everything Lookbook can be told.

Every config the trainer and the service read (``lookbook train --config``, the strategies file,
the models' hyperparameters, the evaluation harness) subclasses :class:`StrictConfig`, so a
misspelt key is an error instead of a silently ignored setting. :func:`load_config` reads a JSON
file into such a model and turns a validation failure into a :class:`DataFormatError` that names
the offending key and, for an unknown key, the keys that are allowed there.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

from feature_store.errors import DataFormatError

__all__ = ["StrictConfig", "config_error", "load_config", "validate_config"]

ConfigT = TypeVar("ConfigT", bound="StrictConfig")


class StrictConfig(BaseModel):
    """Base of every configuration model: unknown keys are refused, values are validated."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


def _allowed_keys(model: type[BaseModel], loc: tuple[int | str, ...]) -> list[str] | None:
    """The field names of the (sub-)model that holds the key at ``loc`` (None when unknown)."""
    current: Any = model
    for part in loc[:-1]:
        fields = getattr(current, "model_fields", None)
        if fields is None or not isinstance(part, str) or part not in fields:
            return None
        annotation = fields[part].annotation
        candidates = [annotation, *getattr(annotation, "__args__", ())]
        current = next(
            (c for c in candidates if isinstance(c, type) and issubclass(c, BaseModel)), None
        )
        if current is None:
            return None
    fields = getattr(current, "model_fields", None)
    return sorted(fields) if fields is not None else None


def config_error(
    exc: ValidationError, model: type[BaseModel], *, what: str, file: str | None = None
) -> DataFormatError:
    """A readable error for the first problem in ``exc``: the key's dotted path, the message and,
    for an unknown key, the keys allowed at that place."""
    first = exc.errors()[0]
    loc = tuple(first.get("loc", ()))
    where = ".".join(str(part) for part in loc) or None
    message = f"invalid {what}: {first['msg']}"
    if first.get("type") == "extra_forbidden" and loc:
        allowed = _allowed_keys(model, loc)
        message = f"invalid {what}: unknown key {str(loc[-1])!r}"
        if allowed:
            message += f" (allowed: {', '.join(allowed)})"
    return DataFormatError(message, file=file, column=where)


def validate_config(
    model: type[ConfigT], raw: Mapping[str, Any] | None, *, what: str, file: str | None = None
) -> ConfigT:
    """``model`` validated from ``raw`` (defaults for None), errors as :func:`config_error`."""
    try:
        return model.model_validate(dict(raw or {}))
    except ValidationError as exc:
        raise config_error(exc, model, what=what, file=file) from exc


def load_config(model: type[ConfigT], path: Path | None, *, what: str) -> ConfigT:
    """``model`` read from the JSON file at ``path`` (the defaults when ``path`` is None)."""
    if path is None:
        return model()
    try:
        raw = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise DataFormatError(f"cannot read {what}: {exc}", file=str(path)) from exc
    if not isinstance(raw, dict):
        raise DataFormatError(f"{what} must be a JSON object", file=str(path))
    return validate_config(model, raw, what=what, file=str(path))
