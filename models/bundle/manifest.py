"""``manifest.json``: what the trainer records about a bundle and the service reads back, typed.

Top-level keys are closed (a misspelt or missing required key is a
:class:`~feature_store.errors.BundleError`); the training summaries inside (``sequence``,
``look``, ``profiles``) accept keys added later, so an older reader still reads a newer summary.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError

from feature_store.errors import BundleError

from .fusion import BlendWeights
from .layout import MANIFEST, PROFILES

#: The bundle format this Lookbook writes: 2 adds ``checksums`` (sha256 of every file).
BUNDLE_FORMAT = 2
#: The formats it reads: 1 (no checksums: its files are not verified) and 2.
READABLE_FORMATS = (1, 2)


class _Closed(BaseModel):
    model_config = ConfigDict(extra="forbid")


class _Open(BaseModel):
    model_config = ConfigDict(extra="allow")


class DataSection(_Closed):
    """The data the bundle was trained on."""

    path: str
    source: str
    fingerprint: str
    first_interaction: str  # as the data's timestamps print (pandas)
    last_interaction: str
    interactions: int
    event_log: str | None = None


class FitSummary(_Open):
    """One fit of the LSTM."""

    train_seconds: float
    epochs_run: int
    stopped_by_budget: bool
    final_loss: float | None = None


class BlendFitSummary(_Open):
    """How the blend weights were fitted: customers, list depth, sources."""

    customers: int
    depth: int
    sources: list[str]


class SequenceSection(_Open):
    """The LSTM's fits (on the training period for evaluation, and for the bundle) and the blend
    fit's inputs."""

    eval_fit: FitSummary | None = None
    fit: FitSummary | None = None
    blend: BlendFitSummary | None = None


class ProfilesSection(_Open):
    """Customer intelligence: counts per tier and stage as of ``as_of``, the churn model's check,
    and where the profiles (and churn model, when fitted) are stored."""

    as_of: str
    customers: int
    tiers: dict[str, int]
    stages: dict[str, int]
    churn: dict[str, Any]
    path: str = PROFILES
    churn_model: str | None = None


def _blend_section(raw: object) -> object:
    if isinstance(raw, dict) and "weights" not in raw:
        raise ValueError("the blend section has no weights")
    return raw


class Manifest(_Closed):
    """Everything ``manifest.json`` holds."""

    format: int
    version: str
    created: datetime
    data: DataSection
    config: dict[str, Any]  # the trainer's configuration, as it dumped it
    metrics: dict[str, dict[str, float]]  # model → metric → value on the held-out period
    item_count: int
    customer_count: int
    models: dict[str, str]  # model name → folder (relative)
    indexes: dict[str, str]  # index name → file (relative)
    # source name → file (relative) of each customer pool (bundles before them: none)
    pools: dict[str, str] = Field(default_factory=dict)
    timings_seconds: dict[str, float]
    blend: Annotated[BlendWeights, BeforeValidator(_blend_section)] | None = None
    sequence: SequenceSection | None = None
    look: dict[str, dict[str, Any]] | None = None
    profiles: ProfilesSection | None = None
    # relative path → sha256 of every file of the bundle but the manifest (format 2)
    checksums: dict[str, str] | None = None

    @property
    def created_timestamp(self) -> float:
        """``created`` as unix seconds (a time without a zone is read as UTC)."""
        created = self.created
        if created.tzinfo is None:
            created = created.replace(tzinfo=UTC)
        return created.timestamp()

    def to_json(self) -> str:
        """The JSON text of the manifest (sections that are None are left out)."""
        sections = ("blend", "sequence", "look", "profiles", "checksums")
        absent = {name for name in sections if getattr(self, name) is None}
        return json.dumps(
            self.model_dump(mode="json", exclude=absent), indent=2, sort_keys=True, default=str
        )

    @classmethod
    def parse(cls, raw: object, where: Path) -> Manifest:
        """A manifest from decoded JSON; a wrong format or shape raises BundleError (check
        ``format`` or ``manifest``); format 2 must carry checksums."""
        if not isinstance(raw, dict):
            raise BundleError(f"{where} is not a JSON object")
        fmt = raw.get("format")
        if isinstance(fmt, bool) or fmt not in READABLE_FORMATS:
            readable = ", ".join(str(f) for f in READABLE_FORMATS)
            raise BundleError(
                f"{where.parent} has bundle format {fmt!r}; this Lookbook reads {readable}",
                check="format",
            )
        try:
            manifest = cls.model_validate(raw)
        except ValidationError as exc:
            first = exc.errors()[0]
            key = ".".join(str(part) for part in first.get("loc", ()))
            raise BundleError(f"{where}: {key}: {first['msg']}", check="manifest") from exc
        if manifest.format >= 2 and not manifest.checksums:
            raise BundleError(
                f"{where}: bundle format {manifest.format} needs checksums", check="manifest"
            )
        return manifest


def read_manifest(path: Path) -> Manifest:
    """The manifest of the bundle folder ``path``, checked (BundleError when it is not one)."""
    file = path / MANIFEST
    try:
        raw = json.loads(file.read_text())
    except FileNotFoundError as exc:
        raise BundleError(f"{path} is not a bundle (no {MANIFEST})", check="manifest") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise BundleError(f"{file} cannot be read: {exc}", check="manifest") from exc
    except json.JSONDecodeError as exc:
        raise BundleError(f"{file} is not valid JSON: {exc}", check="manifest") from exc
    return Manifest.parse(raw, file)
