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
    checked against the format: :func:`~models.bundle.read_manifest` does that when loading)."""

    version: str
    path: Path
    manifest: dict[str, Any]

    @property
    def layout(self) -> BundleLayout:
        return BundleLayout(self.path)


def list_bundles(bundles_dir: Path) -> list[BundleInfo]:
    """Complete bundles in ``bundles_dir``, oldest first (hidden folders are being written)."""
    if not bundles_dir.is_dir():
        return []
    found = []
    for child in sorted(bundles_dir.iterdir()):
        manifest_path = BundleLayout(child).manifest
        if child.name.startswith(".") or not manifest_path.is_file():
            continue
        try:
            manifest = json.loads(manifest_path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            logger.warning("skipping bundle %s: unreadable manifest (%s)", child, exc)
            continue
        found.append(BundleInfo(version=child.name, path=child, manifest=manifest))
    return found


def latest_bundle(bundles_dir: Path) -> BundleInfo | None:
    bundles = list_bundles(bundles_dir)
    return bundles[-1] if bundles else None
