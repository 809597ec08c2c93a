"""The loaded model bundle the service answers from, and the manager that swaps in newer versions."""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
import scipy.sparse as sp

from feature_store.errors import BundleError, ModelNotLoaded
from feature_store.ids import IdMap
from feature_store.schema import ItemCols
from models.als import ALSRecommender
from models.index import ItemIndex
from models.popularity import PopularityRecommender
from training.bundle import BundleInfo, latest_bundle, load_csr, read_manifest

logger = logging.getLogger("lookbook.app")


@dataclass(frozen=True)
class Catalog:
    """Item metadata in item-index order, shaped for fast responses."""

    ids: IdMap
    names: list[str]
    categories: npt.NDArray[np.str_]
    prices: npt.NDArray[np.float64]
    by_category: dict[str, npt.NDArray[np.int64]]
    # attribute codes for content similarity (-1 = unknown)
    product_types: npt.NDArray[np.int32]
    colours: npt.NDArray[np.int32]
    materials: npt.NDArray[np.int32]
    patterns: npt.NDArray[np.int32]
    styles: npt.NDArray[np.float32]  # n_items x n_styles multi-hot

    @classmethod
    def from_frame(cls, frame: pd.DataFrame, ids: IdMap) -> Catalog:
        if frame[ItemCols.ID].astype(str).tolist() != ids.ids():
            raise BundleError("catalog.parquet and item_ids.parquet disagree on item order")
        categories = frame[ItemCols.CATEGORY].astype(str).to_numpy(dtype=np.str_)
        by_category = {
            str(cat): np.flatnonzero(categories == cat).astype(np.int64)
            for cat in np.unique(categories)
        }
        return cls(
            ids=ids,
            names=frame[ItemCols.NAME].astype(str).tolist(),
            categories=categories,
            prices=frame[ItemCols.PRICE].to_numpy(dtype=np.float64),
            by_category=by_category,
            product_types=_codes(frame, ItemCols.PRODUCT_TYPE),
            colours=_codes(frame, ItemCols.COLOUR),
            materials=_codes(frame, ItemCols.MATERIAL),
            patterns=_codes(frame, ItemCols.PATTERN),
            styles=_multi_hot(frame, ItemCols.STYLES),
        )

    def describe(self, item: int) -> dict[str, Any]:
        return {
            "item_id": self.ids.id(item),
            "name": self.names[item],
            "category": str(self.categories[item]),
            "price": round(float(self.prices[item]), 2),
        }


def _codes(frame: pd.DataFrame, column: str) -> npt.NDArray[np.int32]:
    if column not in frame.columns:
        return np.full(len(frame), -1, dtype=np.int32)
    codes, _ = pd.factorize(frame[column].astype("string"), use_na_sentinel=True)
    return np.asarray(codes, dtype=np.int32)


def _multi_hot(frame: pd.DataFrame, column: str) -> npt.NDArray[np.float32]:
    if column not in frame.columns:
        return np.zeros((len(frame), 0), dtype=np.float32)
    values = [list(v) if isinstance(v, list | tuple | np.ndarray) else [] for v in frame[column]]
    vocab = {tag: i for i, tag in enumerate(sorted({str(t) for row in values for t in row}))}
    matrix = np.zeros((len(frame), len(vocab)), dtype=np.float32)
    for row, tags in enumerate(values):
        for tag in tags:
            matrix[row, vocab[str(tag)]] = 1.0
    return matrix


@dataclass(frozen=True)
class LoadedBundle:
    """Everything one bundle version serves from, read once at load time."""

    version: str
    path: Path
    manifest: dict[str, Any]
    catalog: Catalog
    customers: IdMap
    user_items: sp.csr_matrix
    purchases: sp.csr_matrix
    als: ALSRecommender
    popularity: PopularityRecommender
    index: ItemIndex  # raw ALS item factors, inner product = ALS score
    similar_index: ItemIndex  # normalised ALS item factors, inner product = cosine
    popular_order: npt.NDArray[np.int64]
    popular_by_category: dict[str, npt.NDArray[np.int64]]
    trained_until: datetime  # the newest interaction the bundle was trained on (UTC)
    item_evidence: npt.NDArray[np.int64]  # customers who interacted with each item in training

    @classmethod
    def load(cls, path: Path) -> LoadedBundle:
        manifest = read_manifest(path)
        try:
            items = IdMap.load(path / "item_ids.parquet")
            customers = IdMap.load(path / "customer_ids.parquet")
            catalog = Catalog.from_frame(pd.read_parquet(path / "catalog.parquet"), items)
            user_items = load_csr(path / "user_items.npz")
            purchases = load_csr(path / "purchases.npz")
            als = ALSRecommender.load(path / "models" / "als")
            popularity = PopularityRecommender.load(path / "models" / "popularity")
            index = ItemIndex.load(path / "indexes" / "als_items.faiss")
            similar_index = ItemIndex.load(path / "indexes" / "als_items_cosine.faiss")
        except (OSError, KeyError, ValueError) as exc:
            raise BundleError(f"bundle {path} is incomplete or corrupt: {exc}") from exc
        order = np.argsort(-np.asarray(popularity.scores), kind="stable").astype(np.int64)
        by_category = {
            cat: order[np.isin(order, members, assume_unique=True)]
            for cat, members in catalog.by_category.items()
        }
        logger.info(
            "loaded bundle %s: %d items, %d customers", path.name, len(items), len(customers)
        )
        return cls(
            version=str(manifest["version"]),
            path=path,
            manifest=manifest,
            catalog=catalog,
            customers=customers,
            user_items=user_items,
            purchases=purchases,
            als=als,
            popularity=popularity,
            index=index,
            similar_index=similar_index,
            popular_order=order,
            popular_by_category=by_category,
            trained_until=pd.Timestamp(manifest["data"]["last_interaction"]).to_pydatetime(),
            item_evidence=np.bincount(user_items.indices, minlength=len(items)).astype(np.int64),
        )

    def history(self, customer: int) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]:
        """Items and confidence weights the customer had at training time."""
        start, end = self.user_items.indptr[customer], self.user_items.indptr[customer + 1]
        return (
            self.user_items.indices[start:end].astype(np.int64),
            self.user_items.data[start:end].astype(np.float32),
        )

    def purchased(self, customer: int) -> npt.NDArray[np.int64]:
        start, end = self.purchases.indptr[customer], self.purchases.indptr[customer + 1]
        return self.purchases.indices[start:end].astype(np.int64)


class BundleManager:
    """Holds the current bundle; :meth:`refresh` swaps in a newer one without stopping service."""

    def __init__(self, bundle_dir: Path) -> None:
        self.bundle_dir = bundle_dir
        self._current: LoadedBundle | None = None
        self._lock = threading.Lock()

    @property
    def current(self) -> LoadedBundle:
        bundle = self._current
        if bundle is None:
            raise ModelNotLoaded(f"no model bundle loaded yet (looking in {self.bundle_dir})")
        return bundle

    @property
    def loaded(self) -> bool:
        return self._current is not None

    def refresh(self) -> bool:
        """Load the newest bundle if it is not the one being served. True when it swapped."""
        with self._lock:
            info: BundleInfo | None = latest_bundle(self.bundle_dir)
            if info is None:
                return False
            if self._current is not None and self._current.version == info.version:
                return False
            bundle = LoadedBundle.load(info.path)
            self._current = bundle
            return True
