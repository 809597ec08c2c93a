"""Versioned model bundles: one folder per version, written atomically, read without pickle.

Layout of ``<bundles_dir>/<version>/``::

    manifest.json          version, created, data fingerprint, config, metrics, counts, models
    item_ids.parquet       dense item index -> external item id
    customer_ids.parquet   dense customer index -> external customer id
    catalog.parquet        the items table in item-index order (names, categories, prices, sizes ...)
    stock.parquet          stock per item, store and size at training time
    user_items.npz         customer x item confidence matrix (CSR) the models were fitted on
    purchases.npz          customer x item matrix of items bought and kept (CSR, binary)
    models/<name>/         each model's arrays.npz + config.json
    indexes/<name>.faiss   FAISS indexes (+ .json)

A bundle is written into a hidden temporary folder and renamed into place when complete, so a reader
never sees half a bundle; the newest complete version is the one whose name sorts last.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from feature_store.errors import BundleError
from feature_store.ids import IdMap

logger = logging.getLogger("lookbook.bundle")

BUNDLE_FORMAT = 1
MANIFEST = "manifest.json"


def new_version(fingerprint: str, when: datetime | None = None) -> str:
    when = when or datetime.now(UTC)
    return f"{when.strftime('%Y%m%dT%H%M%S')}-{fingerprint[:8]}"


def save_csr(path: Path, matrix: sp.csr_matrix) -> None:
    np.savez(
        path,
        indptr=matrix.indptr,
        indices=matrix.indices,
        data=matrix.data,
        shape=np.asarray(matrix.shape, dtype=np.int64),
    )


def load_csr(path: Path) -> sp.csr_matrix:
    with np.load(path, allow_pickle=False) as arrays:
        shape = tuple(int(v) for v in arrays["shape"])
        return sp.csr_matrix((arrays["data"], arrays["indices"], arrays["indptr"]), shape=shape)


class BundleWriter:
    """Collects a bundle's files in a temporary folder; :meth:`commit` publishes it atomically."""

    def __init__(self, bundles_dir: Path, version: str) -> None:
        self.bundles_dir = bundles_dir
        self.version = version
        bundles_dir.mkdir(parents=True, exist_ok=True)
        self.path = bundles_dir / f".tmp-{version}-{os.getpid()}"
        if self.path.exists():
            shutil.rmtree(self.path)
        self.path.mkdir()

    def model_dir(self, name: str) -> Path:
        return self.path / "models" / name

    def index_path(self, name: str) -> Path:
        (self.path / "indexes").mkdir(exist_ok=True)
        return self.path / "indexes" / f"{name}.faiss"

    def write_frame(self, name: str, frame: pd.DataFrame) -> None:
        frame.reset_index(drop=True).to_parquet(self.path / f"{name}.parquet", index=False)

    def write_ids(self, items: IdMap, customers: IdMap) -> None:
        items.save(self.path / "item_ids.parquet")
        customers.save(self.path / "customer_ids.parquet")

    def write_matrix(self, name: str, matrix: sp.csr_matrix) -> None:
        save_csr(self.path / f"{name}.npz", matrix)

    def commit(self, manifest: dict[str, Any]) -> Path:
        manifest = {"format": BUNDLE_FORMAT, "version": self.version, **manifest}
        (self.path / MANIFEST).write_text(
            json.dumps(manifest, indent=2, sort_keys=True, default=str)
        )
        final = self.bundles_dir / self.version
        if final.exists():
            raise BundleError(f"bundle version {self.version} already exists at {final}")
        os.replace(self.path, final)
        logger.info("published bundle %s", final)
        return final

    def abort(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)


@dataclass(frozen=True)
class BundleInfo:
    version: str
    path: Path
    manifest: dict[str, Any]


def list_bundles(bundles_dir: Path) -> list[BundleInfo]:
    """Complete bundles in ``bundles_dir``, oldest first."""
    if not bundles_dir.is_dir():
        return []
    found = []
    for child in sorted(bundles_dir.iterdir()):
        if child.name.startswith(".") or not (child / MANIFEST).is_file():
            continue
        try:
            manifest = json.loads((child / MANIFEST).read_text())
        except (OSError, json.JSONDecodeError) as exc:
            logger.warning("skipping bundle %s: unreadable manifest (%s)", child, exc)
            continue
        found.append(BundleInfo(version=child.name, path=child, manifest=manifest))
    return found


def latest_bundle(bundles_dir: Path) -> BundleInfo | None:
    bundles = list_bundles(bundles_dir)
    return bundles[-1] if bundles else None


def read_manifest(path: Path) -> dict[str, Any]:
    try:
        manifest: dict[str, Any] = json.loads((path / MANIFEST).read_text())
    except FileNotFoundError as exc:
        raise BundleError(f"{path} is not a bundle (no {MANIFEST})") from exc
    except json.JSONDecodeError as exc:
        raise BundleError(f"{path / MANIFEST} is not valid JSON: {exc}") from exc
    if manifest.get("format") != BUNDLE_FORMAT:
        raise BundleError(
            f"{path} has bundle format {manifest.get('format')!r}; this Lookbook reads {BUNDLE_FORMAT}"
        )
    return manifest
