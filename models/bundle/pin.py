"""The pin: ``<bundles_dir>/pin.json`` names the version every replica serves while it exists
(a rollback), instead of the newest. It lives beside the versions, so every replica and the
trainer see the same pin; it is written atomically (temporary file, fsync, rename)."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path

from pydantic import BaseModel, ConfigDict, ValidationError

from feature_store.errors import BundleError

from .layout import PIN


class Pin(BaseModel):
    """What ``pin.json`` holds: the pinned version and when it was pinned."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    version: str
    pinned_at: datetime


def pin_path(bundles_dir: Path) -> Path:
    return bundles_dir / PIN


def read_pin(bundles_dir: Path) -> Pin | None:
    """The pin of ``bundles_dir``, None when there is none; an unreadable pin raises
    :class:`~feature_store.errors.BundleError` (check ``pin``)."""
    path = pin_path(bundles_dir)
    try:
        raw = path.read_text()
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as exc:
        raise BundleError(f"{PIN} cannot be read: {exc}", check="pin") from exc
    try:
        return Pin.model_validate(json.loads(raw))
    except (json.JSONDecodeError, ValidationError) as exc:
        raise BundleError(f"{PIN} is not a pin: {exc}", check="pin") from exc


def write_pin(bundles_dir: Path, version: str) -> Pin:
    """Pin ``version`` (replacing any pin) atomically: a reader sees the old pin or the new one."""
    pin = Pin(version=version, pinned_at=datetime.now(UTC))
    target = pin_path(bundles_dir)
    tmp = bundles_dir / f".{PIN}.tmp-{os.getpid()}"
    try:
        with tmp.open("w") as handle:
            handle.write(pin.model_dump_json())
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _sync_dir(bundles_dir)
    return pin


def clear_pin(bundles_dir: Path) -> bool:
    """Remove the pin (every replica follows the newest bundle again); False when there was none."""
    try:
        pin_path(bundles_dir).unlink()
    except FileNotFoundError:
        return False
    _sync_dir(bundles_dir)
    return True


def _sync_dir(path: Path) -> None:
    """Make a rename or unlink in ``path`` durable (a no-op where directories cannot be opened)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
