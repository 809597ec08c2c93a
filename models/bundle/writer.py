"""Writing a bundle: every file goes through :class:`BundleWriter`, published atomically."""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy.typing as npt
import pandas as pd
import scipy.sparse as sp

from feature_store.errors import BundleError
from feature_store.ids import IdMap

from .fusion import BlendWeights
from .integrity import file_checksums
from .layout import BundleLayout
from .manifest import (
    BUNDLE_FORMAT,
    DataSection,
    Manifest,
    ProfilesSection,
    SequenceSection,
)
from .tables import (
    CandidateTables,
    SimilarItems,
    save_csr,
    save_purchase_history,
    save_returns,
)

logger = logging.getLogger("lookbook.bundle")


def new_version(fingerprint: str, when: datetime | None = None) -> str:
    """A bundle version: the time, then the data's fingerprint (so versions sort by time)."""
    when = when or datetime.now(UTC)
    return f"{when.strftime('%Y%m%dT%H%M%S')}-{fingerprint[:8]}"


class BundleWriter:
    """Collects a bundle's files in a hidden temporary folder; :meth:`commit` writes the manifest
    and renames the folder into place, :meth:`abort` removes it.

    Models, indexes and profiles are saved by their own ``save`` into :attr:`layout`'s paths
    (``writer.layout.als_model``, ``writer.layout.als_index`` ...); the manifest lists the models
    and indexes found there.
    """

    def __init__(self, bundles_dir: Path, version: str) -> None:
        self.bundles_dir = bundles_dir
        self.version = version
        bundles_dir.mkdir(parents=True, exist_ok=True)
        self.path = bundles_dir / f".tmp-{version}-{os.getpid()}"
        if self.path.exists():
            shutil.rmtree(self.path)
        self.path.mkdir()
        self.layout = BundleLayout(self.path)

    def write_ids(self, items: IdMap, customers: IdMap) -> None:
        items.save(self.layout.item_ids)
        customers.save(self.layout.customer_ids)

    def write_catalog(self, frame: pd.DataFrame) -> None:
        _write_frame(self.layout.catalog, frame)

    def write_stock(self, frame: pd.DataFrame) -> None:
        _write_frame(self.layout.stock, frame)

    def write_user_items(self, matrix: sp.csr_matrix) -> None:
        save_csr(self.layout.user_items, matrix)

    def write_purchases(self, matrix: sp.csr_matrix) -> None:
        save_csr(self.layout.purchases, matrix)

    def write_purchase_history(self, log: Mapping[str, npt.NDArray[Any]]) -> None:
        save_purchase_history(self.layout.purchase_history, log)

    def write_returns(self, log: Mapping[str, npt.NDArray[Any]]) -> None:
        save_returns(self.layout.returns, log)

    def write_candidates(self, tables: CandidateTables) -> None:
        tables.save(self.layout.candidates)

    def write_similar_items(self, table: SimilarItems) -> None:
        table.save(self.layout.similar_items)

    def commit(
        self,
        *,
        data: DataSection,
        config: Mapping[str, Any],
        metrics: Mapping[str, Mapping[str, float]],
        item_count: int,
        customer_count: int,
        timings_seconds: Mapping[str, float],
        blend: BlendWeights | None = None,
        sequence: SequenceSection | None = None,
        look: Mapping[str, Mapping[str, Any]] | None = None,
        profiles: ProfilesSection | None = None,
    ) -> Path:
        """Write ``manifest.json`` and publish the bundle; returns its final folder. The format,
        version, creation time, the models and indexes saved and where the profiles are, are
        added here, with the sha256 of every file written."""
        layout = self.layout
        if profiles is not None:  # where they are, as older readers look them up
            churn = layout.relative(layout.churn) if layout.churn.is_dir() else None
            update = {"path": layout.relative(layout.profiles), "churn_model": churn}
            profiles = profiles.model_copy(update=update)
        manifest = Manifest(
            format=BUNDLE_FORMAT,
            version=self.version,
            created=datetime.now(UTC),
            data=data,
            config=dict(config),
            metrics={name: dict(values) for name, values in metrics.items()},
            item_count=item_count,
            customer_count=customer_count,
            models=layout.models_present(),
            indexes=layout.indexes_present(),
            pools=layout.pools_present(),
            timings_seconds=dict(timings_seconds),
            blend=blend,
            sequence=sequence,
            look=None if look is None else {name: dict(v) for name, v in look.items()},
            profiles=profiles,
            checksums=file_checksums(layout.root),
        )
        layout.manifest.write_text(manifest.to_json())
        final = self.bundles_dir / self.version
        if final.exists():
            raise BundleError(f"bundle version {self.version} already exists at {final}")
        os.replace(self.path, final)
        logger.info("published bundle %s", final)
        return final

    def abort(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)


def _write_frame(path: Path, frame: pd.DataFrame) -> None:
    frame.reset_index(drop=True).to_parquet(path, index=False)
