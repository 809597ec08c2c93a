"""Finding published bundles in a bundles folder (the newest complete one is served)."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .layout import BundleLayout

logger = logging.getLogger("lookbook.bundle")


@dataclass(frozen=True)
class BundleInfo:
    """A published bundle as listed: its version (folder name), folder and raw manifest (not
    checked against the format: :func:`~models.bundle.read_manifest` does that when loading;
    empty when the manifest cannot be read, so the loader rejects it with the reason)."""

    version: str
    path: Path
    manifest: dict[str, Any]

    @property
    def layout(self) -> BundleLayout:
        return BundleLayout(self.path)


def list_bundles(bundles_dir: Path) -> list[BundleInfo]:
    """Published bundles in ``bundles_dir`` (folders with a manifest), oldest first; hidden
    folders are being written or removed."""
    if not bundles_dir.is_dir():
        return []
    found = []
    for child in sorted(bundles_dir.iterdir()):
        manifest_path = BundleLayout(child).manifest
        if child.name.startswith(".") or not manifest_path.is_file():
            continue
        try:
            manifest = json.loads(manifest_path.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            logger.warning("bundle %s has an unreadable manifest (%s)", child, exc)
            manifest = {}
        if not isinstance(manifest, dict):
            manifest = {}
        found.append(BundleInfo(version=child.name, path=child, manifest=manifest))
    return found


def latest_bundle(bundles_dir: Path) -> BundleInfo | None:
    bundles = list_bundles(bundles_dir)
    return bundles[-1] if bundles else None
