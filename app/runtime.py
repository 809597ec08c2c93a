"""The loaded model bundle the service answers from, and the manager that swaps in newer versions."""

from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
import scipy.sparse as sp

from feature_store.errors import BundleError, ModelNotLoaded
from feature_store.ids import IdMap
from feature_store.profiles import CustomerProfiles
from feature_store.schema import ItemCols, StockCols
from models.als import ALSRecommender
from models.attributes import attribute_matrix
from models.bundle import (
    BlendWeights,
    BundleInfo,
    BundleLayout,
    CandidateTables,
    Manifest,
    PurchaseLog,
    ReturnLog,
    SimilarItems,
    list_bundles,
    load_csr,
    load_purchase_history,
    load_returns,
    read_manifest,
)
from models.candidates import NeighbourTable
from models.complementary import ComplementaryModel
from models.diversity import ItemSimilarity
from models.index import ItemIndex
from models.popularity import PopularityRecommender
from models.seasonal import SeasonalModel
from models.sequence import SequenceRecommender
from models.size_fit import SizeFitModel

logger = logging.getLogger("lookbook.app")


@dataclass(frozen=True)
class Catalog:
    """Item metadata in item-index order, shaped for fast responses."""

    ids: IdMap
    names: list[str]
    categories: npt.NDArray[np.str_]
    prices: npt.NDArray[np.float64]
    by_category: dict[str, npt.NDArray[np.int64]]
    # Content similarity: weighted one-hot attributes, so that attributes[a] . attributes[b]
    # = 2 [same product type] + 1 [same colour] + .5 [same material] + .5 [same pattern]
    #   + 1.5 cosine(styles); one CSR block per category.
    attributes_by_category: dict[str, sp.csr_matrix]
    attributes: sp.csr_matrix
    log_prices: npt.NDArray[np.float64]
    frame: pd.DataFrame  # the catalog table in item-index order (profile updates read records)
    sizes: list[tuple[str, ...]]  # sizes offered per item, in size order
    launch: npt.NDArray[np.float64]  # launch date per item, epoch seconds (NaN unknown)

    @classmethod
    def from_frame(cls, frame: pd.DataFrame, ids: IdMap) -> Catalog:
        if frame[ItemCols.ID].astype(str).tolist() != ids.ids():
            raise BundleError("catalog.parquet and item_ids.parquet disagree on item order")
        categories = frame[ItemCols.CATEGORY].astype(str).to_numpy(dtype=np.str_)
        by_category = {
            str(cat): np.flatnonzero(categories == cat).astype(np.int64)
            for cat in np.unique(categories)
        }
        attributes = attribute_matrix(frame)
        return cls(
            ids=ids,
            names=frame[ItemCols.NAME].astype(str).tolist(),
            categories=categories,
            prices=frame[ItemCols.PRICE].to_numpy(dtype=np.float64),
            by_category=by_category,
            attributes_by_category={cat: attributes[rows] for cat, rows in by_category.items()},
            attributes=attributes,
            log_prices=np.log(np.maximum(frame[ItemCols.PRICE].to_numpy(dtype=np.float64), 0.01)),
            frame=frame.reset_index(drop=True),
            sizes=[_labels(v) for v in frame[ItemCols.SIZES]]
            if ItemCols.SIZES in frame.columns
            else [() for _ in range(len(frame))],
            launch=_epoch_seconds(frame[ItemCols.LAUNCH_DATE])
            if ItemCols.LAUNCH_DATE in frame.columns
            else np.full(len(frame), np.nan),
        )

    def record(self, item: int) -> dict[str, Any]:
        """The catalog row of an item as a plain dict (list columns as lists of strings)."""
        row: dict[str, Any] = {str(k): v for k, v in self.frame.iloc[item].to_dict().items()}
        for column in ItemCols.LIST_COLUMNS:
            if column in row:
                row[column] = list(_labels(row[column]))
        return row

    def describe(self, item: int) -> dict[str, Any]:
        return {
            "item_id": self.ids.id(item),
            "name": self.names[item],
            "category": str(self.categories[item]),
            "price": round(float(self.prices[item]), 2),
        }


def _labels(value: Any) -> tuple[str, ...]:
    if isinstance(value, list | tuple | np.ndarray):
        return tuple(str(v) for v in value)
    return ()


def _epoch_seconds(column: pd.Series) -> npt.NDArray[np.float64]:
    stamps = pd.to_datetime(column, utc=True, errors="coerce")
    seconds = stamps.astype("int64").to_numpy(dtype=np.float64) / 1e9
    return np.where(stamps.isna().to_numpy(), np.nan, seconds)


class StockTable:
    """Stock per (item, size), in total and per store, from the bundle's ``stock.parquet``.

    Lookups are binary searches over sorted int64 keys, so a catalog of 100k items with sizes in
    dozens of stores stays a few arrays rather than millions of Python objects.
    """

    def __init__(self, frame: pd.DataFrame, items: IdMap) -> None:
        position = pd.Index(items.ids()).get_indexer(pd.Index(frame[StockCols.ITEM_ID].astype(str)))
        frame = frame[position >= 0]
        item = position[position >= 0].astype(np.int64)
        size_codes, size_labels = pd.factorize(frame[StockCols.SIZE].astype(str))
        store_codes, store_labels = pd.factorize(frame[StockCols.STORE_ID].astype(str))
        quantity = frame[StockCols.QUANTITY].to_numpy(dtype=np.int64)
        self.size_code = {str(label): i for i, label in enumerate(size_labels)}
        self.store_code = {str(label): i for i, label in enumerate(store_labels)}
        self._n_sizes = max(len(size_labels), 1)
        self._n_items = max(len(items), 1)
        total_key = item * self._n_sizes + size_codes
        order = np.argsort(total_key, kind="stable")
        keys, start = np.unique(total_key[order], return_index=True)
        self._total_keys = keys
        self._total_qty = np.add.reduceat(quantity[order], start) if len(order) else quantity
        store_key = (store_codes * self._n_items + item) * self._n_sizes + size_codes
        order = np.argsort(store_key, kind="stable")
        keys, start = np.unique(store_key[order], return_index=True)
        self._store_keys = keys
        self._store_qty = np.add.reduceat(quantity[order], start) if len(order) else quantity

    @property
    def stores(self) -> list[str]:
        return list(self.store_code)

    def quantity(self, item: int, size: str, store: str | None = None) -> int:
        """Units of ``item`` in ``size`` (in ``store``, or across every store)."""
        size_code = self.size_code.get(size)
        if size_code is None:
            return 0
        if store is None:
            keys, qty, key = self._total_keys, self._total_qty, item * self._n_sizes + size_code
        else:
            store_code = self.store_code.get(store)
            if store_code is None:
                return 0
            key = (store_code * self._n_items + item) * self._n_sizes + size_code
            keys, qty = self._store_keys, self._store_qty
        at = int(np.searchsorted(keys, key))
        return int(qty[at]) if at < len(keys) and keys[at] == key else 0

    @property
    def empty(self) -> bool:
        return len(self._total_keys) == 0

    def in_stock_items(self) -> npt.NDArray[np.bool_]:
        """Per item: True when some size of it is in stock somewhere."""
        mask = np.zeros(self._n_items, dtype=bool)
        mask[self._total_keys[self._total_qty > 0] // self._n_sizes] = True
        return mask


def _load_sequence(layout: BundleLayout) -> SequenceRecommender | None:
    """The bundle's LSTM, set up for serving: one torch thread per request (the service runs
    requests on several threads) and retrieval through its FAISS index when the bundle has one."""
    if not layout.sequence_model.is_dir():
        return None
    model = SequenceRecommender.load(layout.sequence_model)
    model.config = model.config.replace(num_threads=1)
    if layout.sequence_index.exists():
        model.use_index(ItemIndex.load(layout.sequence_index))
    return model


@dataclass(frozen=True)
class LoadedBundle:
    """Everything one bundle version serves from, read once at load time."""

    version: str
    path: Path
    manifest: Manifest
    catalog: Catalog
    customers: IdMap
    user_items: sp.csr_matrix
    purchases: sp.csr_matrix
    als: ALSRecommender
    popularity: PopularityRecommender
    index: ItemIndex  # raw ALS item factors, inner product = ALS score
    similar_index: ItemIndex  # normalised ALS item factors, inner product = cosine
    neighbour_ids: npt.NDArray[np.int32]  # n_items x m precomputed cosine neighbours (-1 padded)
    neighbour_scores: npt.NDArray[np.float32]
    popular_order: npt.NDArray[np.int64]
    popular_by_category: dict[str, npt.NDArray[np.int64]]
    trained_until: datetime  # the newest interaction the bundle was trained on (UTC)
    item_evidence: npt.NDArray[np.int64]  # customers who interacted with each item in training
    stock: StockTable
    profiles: CustomerProfiles | None  # None for bundles trained before customer intelligence
    # "Complete the look" and seasonal models (None for bundles trained before them).
    complementary: ComplementaryModel | None = None
    seasonal: SeasonalModel | None = None
    # The LSTM sequence model with its FAISS index attached (None for bundles without one), and
    # the personalized blend's weights fitted by the trainer on a validation period (defaults for
    # bundles without them).
    sequence: SequenceRecommender | None = None
    blend: BlendWeights = field(default_factory=BlendWeights)
    # Every customer's purchases in time order (``purchase_history.npz``: CSR-style ``indptr``
    # over customers, ``items``, ``timestamps`` in epoch seconds, ``weights``); None for bundles
    # written before it, which fall back to the purchase matrix (no times).
    purchase_log: PurchaseLog | None = None
    # Every customer's returns in time order with the size and reason (``returns.npz``); None for
    # bundles written before it (their returns are known from the purchase log alone).
    return_log: ReturnLog | None = None
    # The rule-based blend sources' tables (``candidates.npz``): each item's product-type rebuy
    # rate and its product siblings; None for bundles written before them.
    repeat_rates: npt.NDArray[np.float64] | None = None
    siblings: NeighbourTable | None = None
    # The size-fit model (customers' true sizes, items' offsets; None for bundles without it).
    size_fit: SizeFitModel | None = None

    @classmethod
    def load(
        cls, path: Path, warmups: Sequence[Callable[[LoadedBundle], object]] = ()
    ) -> LoadedBundle:
        """The bundle in the folder ``path``, with ``warmups`` run on it. Any failure (a missing
        or truncated file, a bad FAISS index, a manifest whose ``version`` is not the folder's
        name, a warmup that cannot run on it) is a :class:`BundleError`: this is the one place
        where loading a bundle can fail, so the service can refuse a bad bundle and keep going."""
        try:
            bundle = cls._load(path)
            for warmup in warmups:
                warmup(bundle)
        except BundleError:
            raise
        except Exception as exc:
            raise BundleError(
                f"bundle {path.name} is incomplete or corrupt: {type(exc).__name__}: {exc}"
            ) from exc
        return bundle

    @classmethod
    def _load(cls, path: Path) -> LoadedBundle:
        manifest = read_manifest(path)
        if manifest.version != path.name:
            raise BundleError(
                f"bundle {path.name} is inconsistent: its manifest says version "
                f"{manifest.version!r} (the folder name is the version)"
            )
        layout = BundleLayout(path)
        try:
            items = IdMap.load(layout.item_ids)
            customers = IdMap.load(layout.customer_ids)
            catalog = Catalog.from_frame(pd.read_parquet(layout.catalog), items)
            user_items = load_csr(layout.user_items)
            purchases = load_csr(layout.purchases)
            als = ALSRecommender.load(layout.als_model)
            popularity = PopularityRecommender.load(layout.popularity_model)
            index = ItemIndex.load(layout.als_index)
            similar_index = ItemIndex.load(layout.als_cosine_index)
            similar = SimilarItems.load(layout.similar_items, len(items))
            stock = StockTable(
                pd.read_parquet(layout.stock)
                if layout.stock.exists()
                else pd.DataFrame({c: pd.Series([], dtype=object) for c in StockCols.ALL}),
                items,
            )
            profiles = CustomerProfiles.load(layout.profiles) if layout.profiles.is_dir() else None
            complementary = (
                ComplementaryModel.load(layout.complementary_model)
                if layout.complementary_model.is_dir()
                else None
            )
            seasonal = (
                SeasonalModel.load(layout.seasonal_model)
                if layout.seasonal_model.is_dir()
                else None
            )
            sequence = _load_sequence(layout)
            size_fit = (
                SizeFitModel.load(layout.size_fit_model) if layout.size_fit_model.is_dir() else None
            )
            purchase_log = load_purchase_history(layout.purchase_history, len(customers))
            return_log = load_returns(layout.returns, len(customers))
            tables = CandidateTables.load(layout.candidates, len(items))
            for model in (complementary, seasonal, sequence, size_fit):
                if model is not None and model.n_items != len(items):
                    raise ValueError(f"{model.name} model has {model.n_items} items")
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
            version=manifest.version,
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
            neighbour_ids=similar.ids,
            neighbour_scores=similar.scores,
            popular_order=order,
            popular_by_category=by_category,
            trained_until=pd.Timestamp(manifest.data.last_interaction).to_pydatetime(),
            item_evidence=np.bincount(user_items.indices, minlength=len(items)).astype(np.int64),
            stock=stock,
            profiles=profiles,
            complementary=complementary,
            seasonal=seasonal,
            sequence=sequence,
            blend=manifest.blend or BlendWeights(),
            purchase_log=purchase_log,
            return_log=return_log,
            repeat_rates=None if tables is None else tables.repeat_rates,
            siblings=None if tables is None else tables.siblings,
            size_fit=size_fit,
        )

    @functools.cached_property
    def popularity_top(self) -> float:
        """The largest popularity score (> 0), to normalise popularity tie-breaks."""
        scores = self.popularity.scores
        return max(float(scores.max()), 1e-9) if len(scores) else 1.0

    @functools.cached_property
    def item_similarity(self) -> ItemSimilarity:
        """Attribute similarity of the catalog's items, for the diversity rerank."""
        return ItemSimilarity.build(self.catalog.attributes, self.catalog.categories)

    def popular_in(self, category: str | None) -> npt.NDArray[np.int64]:
        """Item indices by popularity, best first: the whole catalog, or one category's."""
        if category is None:
            return self.popular_order
        return self.popular_by_category.get(category, np.empty(0, dtype=np.int64))

    def history(self, customer: int) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]:
        """Items and confidence weights the customer had at training time."""
        start, end = self.user_items.indptr[customer], self.user_items.indptr[customer + 1]
        return (
            self.user_items.indices[start:end].astype(np.int64),
            self.user_items.data[start:end].astype(np.float32),
        )

    def purchase_events(
        self, customer: int
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[np.float64]]:
        """``(items, epoch seconds, weights)`` of the customer's purchases in training, oldest
        first. Bundles without a purchase log give each purchased item once, dated at the end of
        training."""
        log = self.purchase_log
        if log is None:
            items = self.purchased(customer)
            when = int(self.trained_until.timestamp())
            return items, np.full(len(items), when, np.int64), np.ones(len(items), np.float64)
        start, end = int(log["indptr"][customer]), int(log["indptr"][customer + 1])
        return (
            log["items"][start:end].astype(np.int64),
            log["timestamps"][start:end].astype(np.int64),
            log["weights"][start:end].astype(np.float64),
        )

    def returns(self, customer: int) -> list[tuple[int, str | None, str | None]]:
        """``(item, size, reason)`` of the customer's returns in training, oldest first (size
        and reason None when unknown); empty for bundles without a returns log."""
        log = self.return_log
        if log is None:
            return []
        start, end = int(log["indptr"][customer]), int(log["indptr"][customer + 1])
        return [
            (int(item), str(size) or None, str(reason) or None)
            for item, size, reason in zip(
                log["items"][start:end].tolist(),
                log["sizes"][start:end].tolist(),
                log["reasons"][start:end].tolist(),
                strict=True,
            )
        ]

    def purchased(self, customer: int) -> npt.NDArray[np.int64]:
        start, end = self.purchases.indptr[customer], self.purchases.indptr[customer + 1]
        return self.purchases.indices[start:end].astype(np.int64)


@dataclass(frozen=True)
class RejectedBundle:
    """A published bundle the service refused to load, and why."""

    version: str
    reason: str
    at: datetime


class BundleManager:
    """Holds the current bundle; :meth:`refresh` swaps in a newer one without stopping service.

    A bundle that cannot be loaded is rejected: logged, reported to ``on_rejected``, remembered
    (so polling does not load it again; an explicit reload retries it) and skipped for the newest
    older one that loads, while the bundle being served keeps serving."""

    def __init__(
        self,
        bundle_dir: Path,
        warmups: Sequence[Callable[[LoadedBundle], object]] = (),
        on_rejected: Callable[[RejectedBundle], object] | None = None,
    ) -> None:
        """``warmups`` run on a newly loaded bundle before it is swapped in (per-bundle tables),
        so no request pays for them."""
        self.bundle_dir = bundle_dir
        self.warmups = list(warmups)
        self.on_rejected = on_rejected
        self._current: LoadedBundle | None = None
        self._rejected: dict[str, RejectedBundle] = {}
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

    @property
    def rejected(self) -> list[RejectedBundle]:
        """Versions refused since start-up (or their last retry), oldest version first."""
        return [self._rejected[v] for v in sorted(self._rejected)]

    def refresh(self, retry_rejected: bool = False) -> bool:
        """Serve the newest loadable bundle: the newest published version, else (when it is
        rejected) the newest older one that loads. True when it swapped. Versions rejected
        before are skipped unless ``retry_rejected``; the served bundle is never reloaded."""
        with self._lock:
            if retry_rejected:
                self._rejected.clear()
            for info in reversed(list_bundles(self.bundle_dir)):
                if info.version in self._rejected:
                    continue
                if self._current is not None and self._current.version == info.version:
                    return False
                try:
                    bundle = LoadedBundle.load(info.path, self.warmups)
                except BundleError as exc:
                    self._reject(info, exc)
                    continue
                self._current = bundle
                self._rejected.pop(info.version, None)
                return True
            return False

    def _reject(self, info: BundleInfo, exc: BundleError) -> None:
        reason = str(exc).replace(str(info.path), info.version)
        rejected = RejectedBundle(info.version, reason, datetime.now(UTC))
        self._rejected[info.version] = rejected
        logger.error("rejected bundle %s, not serving it: %s", info.version, reason)
        if self.on_rejected is not None:
            self.on_rejected(rejected)
