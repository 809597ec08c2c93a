"""Pruning old bundles: keep the newest ``keep`` readable versions, the pinned one and the newest
one; remove the others.

Safe beside replicas serving an older version: the service reads every file of a bundle into
memory when it loads it (no memory map, nothing read lazily afterwards), so removing the folder
does not touch what a replica serves. A version is renamed to a hidden folder before it is
deleted, so a reader lists it complete or not at all.
"""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

from feature_store.errors import BundleError

from .manifest import read_manifest
from .pin import read_pin
from .reader import list_bundles

logger = logging.getLogger("lookbook.bundle")


def bundles_to_prune(bundles_dir: Path, keep: int) -> list[str]:
    """The versions :func:`prune_bundles` would remove, oldest first.

    Kept: the newest ``keep`` versions whose manifest reads (a broken newer one does not push a
    good one out), every version newer than the oldest of those, the pinned version and the
    newest version. An unreadable pin keeps everything (what it pins is not known)."""
    if keep < 1:
        raise ValueError(f"keep must be >= 1, got {keep}")
    try:
        pin = read_pin(bundles_dir)
    except BundleError as exc:
        logger.warning("not pruning %s: %s", bundles_dir, exc)
        return []
    versions = [info.version for info in list_bundles(bundles_dir)]
    readable = 0
    oldest_kept = len(versions)
    for position in range(len(versions) - 1, -1, -1):
        oldest_kept = position
        try:
            read_manifest(bundles_dir / versions[position])
        except BundleError:
            continue
        readable += 1
        if readable >= keep:
            break
    pinned = pin.version if pin is not None else None
    return [v for v in versions[:oldest_kept] if v != pinned]


def prune_bundles(bundles_dir: Path, keep: int) -> list[str]:
    """Remove the versions of :func:`bundles_to_prune`; returns them, oldest first."""
    removed = []
    for version in bundles_to_prune(bundles_dir, keep):
        folder = bundles_dir / version
        trash = bundles_dir / f".trash-{version}-{os.getpid()}"
        try:
            os.replace(folder, trash)
        except OSError as exc:
            logger.warning("could not prune bundle %s: %s", version, exc)
            continue
        shutil.rmtree(trash, ignore_errors=True)
        removed.append(version)
        logger.info("pruned bundle %s", version)
    return removed
