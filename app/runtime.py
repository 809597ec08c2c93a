"""The loaded model bundle the service answers from, and the manager that swaps in newer versions."""

from __future__ import annotations

import functools
import gc
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
import scipy.sparse as sp

from app.bundle_checks import check_answers, check_counts, check_finite
from feature_store.errors import BundleError, BundleRejected, ModelNotLoaded, UnknownBundle
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
    Pin,
    PoolFile,
    PurchaseLog,
    ReturnLog,
    SimilarItems,
    VectorFile,
    clear_pin,
    list_bundles,
    load_csr,
    load_purchase_history,
    load_returns,
    read_manifest,
    read_pin,
    verify_checksums,
    write_pin,
)
from models.bundle.layout import SEQUENCE_SESSIONS
from models.candidates import NeighbourTable
from models.complementary import ComplementaryModel
from models.diversity import ItemSimilarity
from models.index import ItemIndex
from models.popularity import PopularityRecommender
from models.ranker import LearnedRanker
from models.seasonal import SeasonalModel
from models.sequence import SequenceRecommender
from models.size_fit import SizeFitModel
from models.size_fit_ranker import SizeFitRanker

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

    def store_items(self, store: str) -> npt.NDArray[np.bool_]:
        """Per item: True when some size of it is in stock in ``store`` (all False for an
        unknown store)."""
        mask = np.zeros(self._n_items, dtype=bool)
        code = self.store_code.get(store)
        if code is None:
            return mask
        span = self._n_items * self._n_sizes
        lo, hi = np.searchsorted(self._store_keys, [code * span, (code + 1) * span])
        keys = self._store_keys[lo:hi][self._store_qty[lo:hi] > 0]
        mask[(keys // self._n_sizes) % self._n_items] = True
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
    # The learned ranker with its item statistics (``models/ranker``): the personalized feed's
    # fusion stage when present; None for bundles without one.
    ranker: LearnedRanker | None = None
    # Each training customer's precomputed candidates of the ALS and LSTM indexes (``pools/``,
    # a row read per request; None for bundles without them): read instead of searching for a
    # customer with no events since training.
    als_pool: PoolFile | None = None
    sequence_pool: PoolFile | None = None
    # The LSTM's session vector of each training customer (``pools/sequence_sessions.npy``),
    # read instead of running the LSTM for a customer with no events since training.
    sequence_sessions: VectorFile | None = None

    @classmethod
    def load(
        cls, path: Path, warmups: Sequence[Callable[[LoadedBundle], object]] = ()
    ) -> LoadedBundle:
        """The bundle in the folder ``path``, checked and with ``warmups`` run on it. Any failure
        (a manifest of another format, a checksum that does not match, a missing or truncated
        file, a bad FAISS index, a manifest whose ``version`` is not the folder's name, counts
        that disagree, non-finite scores, an index that does not answer, a warmup that cannot
        run on it) is a :class:`BundleError` whose ``check`` names the kind: this is the one
        place where loading a bundle can fail, so the service can refuse a bad bundle and keep
        going."""
        try:
            bundle = cls._load(path)
            bundle.check()
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
                f"{manifest.version!r} (the folder name is the version)",
                check="manifest",
            )
        if manifest.checksums is not None:  # before any parser reads a byte of the files
            verify_checksums(path, manifest.checksums)
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
            if size_fit is not None and layout.size_fit_ranker_model.is_dir():
                classifier = SizeFitRanker.load(layout.size_fit_ranker_model)
                classifier.check(size_fit)
                size_fit.classifier = classifier
            ranker = (
                LearnedRanker.load(layout.ranker_model) if layout.ranker_model.is_dir() else None
            )
            purchase_log = load_purchase_history(layout.purchase_history, len(customers))
            return_log = load_returns(layout.returns, len(customers))
            tables = CandidateTables.load(layout.candidates, len(items))
            als_pool = PoolFile.load(layout.pool("als"), len(customers), len(items))
            sequence_pool = (
                PoolFile.load(layout.pool("sequence"), sequence.n_users, len(items))
                if sequence is not None
                else None
            )
            sequence_sessions = (
                VectorFile.load(
                    layout.pool(SEQUENCE_SESSIONS),
                    sequence.n_users,
                    sequence.config.output_dim + 1,
                )
                if sequence is not None
                else None
            )
            for model in (complementary, seasonal, sequence, size_fit, ranker):
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
            ranker=ranker,
            als_pool=als_pool,
            sequence_pool=sequence_pool,
            sequence_sessions=sequence_sessions,
        )

    def check(self) -> None:
        """Raise :class:`BundleError` unless the counts of items and customers agree across ids,
        arrays and indexes, the scores are finite, and every index answers a known query (the
        best customer's vector, the most popular item's) with its vectors' scores."""
        n_items = len(self.catalog.ids)
        items = {
            "item_ids.parquet": n_items,
            "manifest item_count": self.manifest.item_count,
            "ALS item factors": self.als.item_factors.shape[0],
            "popularity scores": len(self.popularity.scores),
            "als_items index": len(self.index),
            "als_items_cosine index": len(self.similar_index),
            "similar_items table": len(self.neighbour_ids),
            "user_items columns": self.user_items.shape[1],
            "purchases columns": self.purchases.shape[1],
        }
        if self.repeat_rates is not None:
            items["candidates repeat_rates"] = len(self.repeat_rates)
        check_counts(self.version, "items", items)
        customers = {
            "customer_ids.parquet": len(self.customers),
            "manifest customer_count": self.manifest.customer_count,
            "ALS customer factors": self.als.user_factors.shape[0],
            "user_items rows": self.user_items.shape[0],
            "purchases rows": self.purchases.shape[0],
        }
        check_counts(self.version, "customers", customers)
        neighbours = self.neighbour_ids
        if neighbours.size and (neighbours.min() < -1 or neighbours.max() >= n_items):
            raise BundleError(
                f"bundle {self.version}: similar_items names items outside the catalog",
                check="counts",
            )
        arrays: dict[str, npt.NDArray[Any]] = {
            "popularity scores": self.popularity.scores,
            "ALS item factors": self.als.item_factors,
            "ALS customer factors": self.als.user_factors,
            "similar_items scores": self.neighbour_scores[neighbours >= 0],
            "user_items values": self.user_items.data,
        }
        if self.repeat_rates is not None:
            arrays["candidates repeat_rates"] = self.repeat_rates
        check_finite(self.version, arrays)
        item = self.known_item
        if item is None:
            return
        factors = self.als.item_factors
        customer = self.known_customer
        query = self.als.user_factors[customer] if customer is not None else factors[item]
        check_answers(self.version, "als_items", self.index, factors, query)
        vectors = self.als.item_vectors()
        check_answers(
            self.version, "als_items_cosine", self.similar_index, vectors, vectors[item], finds=item
        )

    @property
    def known_item(self) -> int | None:
        """The most popular item (a query every index and feed must answer); None for an empty
        catalog."""
        return int(self.popular_order[0]) if len(self.popular_order) else None

    @functools.cached_property
    def known_customer(self) -> int | None:
        """The customer with the most training interactions (the lowest index on ties); None
        when nobody has a history."""
        counts = np.diff(self.user_items.indptr)
        if not len(counts) or counts.max() == 0:
            return None
        return int(np.argmax(counts))

    @functools.cached_property
    def popularity_top(self) -> float:
        """The largest popularity score (> 0), to normalise popularity tie-breaks."""
        scores = self.popularity.scores
        return max(float(scores.max()), 1e-9) if len(scores) else 1.0

    @functools.cached_property
    def category_content(self) -> dict[str, tuple[npt.NDArray[np.float64], npt.NDArray[Any]]]:
        """Per category, over its items (``catalog.by_category`` order): their log prices and
        their popularity tie-break ``1e-3 * popularity / popularity_top`` — what content
        similarity adds to every one of its scores, computed once per bundle."""
        catalog, scores, top = self.catalog, self.popularity.scores, self.popularity_top
        return {
            category: (catalog.log_prices[pool], 1e-3 * scores[pool] / top)
            for category, pool in catalog.by_category.items()
        }

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
    """A published bundle the service refused to serve, why, and which check it failed."""

    version: str
    reason: str
    at: datetime
    check: str = "load"


Signature = tuple[tuple[str, int, int], ...]


def _signature(path: Path) -> Signature:
    """Every file of a bundle folder with its size and modification time: a rejected bundle is
    tried again only when this changes (a copy that was still arriving, a file replaced)."""
    found = []
    try:
        for file in sorted(path.rglob("*")):
            stat = file.stat()
            found.append((file.relative_to(path).as_posix(), stat.st_size, stat.st_mtime_ns))
    except OSError:
        return ()
    return tuple(found)


class BundleManager:
    """Holds the served bundle; :meth:`refresh` swaps in another one without stopping service.

    Served: the pinned version while ``<bundle_dir>/pin.json`` names one (shared by every replica,
    :mod:`models.bundle.pin`), else the newest published version that passes its checks. A
    candidate is loaded and checked in the caller's thread (the watcher's, never a request's):
    manifest and format, checksums, every file loads, counts agree, scores are finite, indexes
    answer (:meth:`LoadedBundle.load`), the ``warmups``, then the ``probes`` — a few real feeds on
    the candidate, which must finish within ``probe_budget_seconds``. Only then is it swapped in
    (one reference assignment: a request uses the old or the new bundle, whole).

    A bundle that fails is rejected: logged, reported to ``on_rejected``, remembered with its
    reason (polling tries it again only when its files change; an explicit reload retries it),
    and the bundle being served keeps serving. No error a bundle can raise leaves this class.
    """

    def __init__(
        self,
        bundle_dir: Path,
        warmups: Sequence[Callable[[LoadedBundle], object]] = (),
        on_rejected: Callable[[RejectedBundle], object] | None = None,
        *,
        probes: Sequence[Callable[[LoadedBundle], object]] = (),
        probe_budget_seconds: float = 10.0,
        on_swapped: Callable[[LoadedBundle], object] | None = None,
    ) -> None:
        """``warmups`` run on a newly loaded bundle before it is swapped in (per-bundle tables),
        so no request pays for them; ``probes`` too, timed (``probes`` may be added to later,
        once what they call is built)."""
        self.bundle_dir = bundle_dir
        self.warmups = list(warmups)
        self.probes = list(probes)
        self.probe_budget_seconds = probe_budget_seconds
        self.on_rejected = on_rejected
        self.on_swapped = on_swapped
        self._current: LoadedBundle | None = None
        self._rejected: dict[str, tuple[RejectedBundle, Signature]] = {}
        self._pin: Pin | None = None
        self._pin_problem: str | None = None
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
        return [self._rejected[v][0] for v in sorted(self._rejected)]

    @property
    def pin(self) -> Pin | None:
        """The pin as last read (by :meth:`refresh`, :meth:`activate` or :meth:`unpin`)."""
        return self._pin

    @property
    def pin_problem(self) -> str | None:
        """Why the pin is not followed (unreadable, or its version missing or rejected)."""
        return self._pin_problem

    # -- choosing the bundle to serve -----------------------------------------------------------

    def refresh(self, retry_rejected: bool = False) -> bool:
        """Serve what should be served: the pinned version, or the newest version that passes
        its checks (when the newest is rejected, the newest older one that does). True when it
        swapped. Rejected versions are skipped unless their files changed or ``retry_rejected``;
        the served bundle is never reloaded. Never raises: a failure is logged and the served
        bundle stays."""
        with self._lock:
            try:
                return self._refresh(retry_rejected)
            except Exception:
                logger.exception("could not look for bundles in %s", self.bundle_dir)
                return False

    def _refresh(self, retry_rejected: bool) -> bool:
        if retry_rejected:
            self._rejected.clear()
        bundles = list_bundles(self.bundle_dir)
        published = {info.version for info in bundles}
        for version in [v for v in self._rejected if v not in published]:
            del self._rejected[version]  # removed (pruned): nothing to report any more
        current = self._current
        try:
            self._pin = read_pin(self.bundle_dir)
        except BundleError as exc:
            self._pin = None
            self._pin_trouble(str(exc))
            if current is not None:  # a broken pin is no reason to move
                return False
        else:
            self._pin_problem = None
        if self._pin is not None:
            pinned = self._pin.version
            if current is not None and current.version == pinned:
                return False
            target = next((info for info in bundles if info.version == pinned), None)
            if target is not None and self._try(target):
                return True
            self._pin_trouble(
                f"pinned version {pinned} is not published"
                if target is None
                else f"pinned version {pinned} is rejected: {self._rejected[pinned][0].reason}"
            )
            if current is not None:
                return False
        for info in reversed(bundles):
            if current is not None and current.version == info.version:
                return False
            if self._try(info):
                return True
        return False

    def _pin_trouble(self, problem: str) -> None:
        """Remember why the pin is not followed; log it when it is news (not at every poll)."""
        if problem != self._pin_problem:
            served = self._current.version if self._current is not None else None
            logger.error(
                "%s; %s",
                problem,
                f"still serving bundle {served}"
                if served
                else "serving the newest bundle that loads",
            )
        self._pin_problem = problem

    def activate(self, version: str) -> bool:
        """Pin ``version`` for every replica and serve it here now. It is checked first (even when
        rejected before): an unpublished version raises :class:`UnknownBundle`, one that fails
        its checks :class:`BundleRejected` (the pin is then left as it was); a pin that cannot
        be written is a :class:`BundleError` and nothing changes. True when it swapped."""
        with self._lock:
            info = next((i for i in list_bundles(self.bundle_dir) if i.version == version), None)
            if info is None:
                raise UnknownBundle(version)
            bundle = None
            if self._current is None or self._current.version != version:
                self._rejected.pop(version, None)
                bundle = self._check(info)
                if bundle is None:
                    reason = self._rejected[version][0].reason
                    raise BundleRejected(f"bundle {version} cannot be served: {reason}")
            try:
                self._pin = write_pin(self.bundle_dir, version)
            except OSError as exc:
                raise BundleError(
                    f"cannot write the pin for {version}: {exc}", check="pin"
                ) from exc
            self._pin_problem = None
            logger.info("pinned bundle %s", version)
            if bundle is not None:
                self._swap(bundle)
            return bundle is not None

    def unpin(self) -> bool:
        """Remove the pin (every replica follows the newest bundle again) and follow it here
        now. True when it swapped; a pin that cannot be removed is a :class:`BundleError`."""
        with self._lock:
            try:
                if clear_pin(self.bundle_dir):
                    logger.info("unpinned: following the newest bundle")
            except OSError as exc:
                raise BundleError(f"cannot remove the pin: {exc}", check="pin") from exc
            self._pin = None
            try:
                return self._refresh(retry_rejected=False)
            except Exception:
                logger.exception("could not look for bundles in %s", self.bundle_dir)
                return False

    # -- one candidate ---------------------------------------------------------------------------

    def _try(self, info: BundleInfo) -> bool:
        """Load and check ``info``; swap it in when it passes (True)."""
        bundle = self._check(info)
        if bundle is None:
            return False
        self._swap(bundle)
        return True

    def _check(self, info: BundleInfo) -> LoadedBundle | None:
        """``info`` loaded and checked, or None when it is rejected (and remembered as such);
        None without loading it again for a version rejected before whose files have not
        changed."""
        signature = _signature(info.path)
        before = self._rejected.get(info.version)
        if before is not None and before[1] == signature:
            return None
        start = time.perf_counter()
        try:
            bundle = LoadedBundle.load(info.path, self.warmups)
            self._probe(bundle)
        except BundleError as exc:
            self._reject(info, exc, signature)
            return None
        except Exception as exc:  # LoadedBundle.load wraps everything; a probe might not
            error = BundleError(f"{type(exc).__name__}: {exc}", check="feeds")
            self._reject(info, error, signature)
            return None
        self._rejected.pop(info.version, None)
        logger.info(
            "bundle %s passed its checks in %.2f s", info.version, time.perf_counter() - start
        )
        return bundle

    def _swap(self, bundle: LoadedBundle) -> None:
        """Serve ``bundle`` (one reference assignment: a request has the old or the new one)."""
        self._current = bundle
        logger.info("now serving bundle %s", bundle.version)
        if self.on_swapped is not None:
            try:
                self.on_swapped(bundle)
            except Exception:
                logger.exception("on_swapped failed for bundle %s", bundle.version)
        # The bundle's objects (ids, names, size lists, warmed tables: ~0.5M containers at 1M
        # customers x 100k items) live until the next swap; in the permanent generation the
        # cyclic garbage collector no longer walks them, so a full collection costs ~1 ms
        # instead of ~400 ms (a pause every request in flight would wait for). An old bundle is
        # still freed by reference counting when the last request holding it is done.
        gc.freeze()

    def _probe(self, bundle: LoadedBundle) -> None:
        """Run the probes on the candidate in a thread of their own: each error is a rejection,
        and so is running past the budget (a probe that hangs cannot hold up the watcher)."""
        if not self.probes:
            return
        failure: list[BaseException] = []

        def run() -> None:
            try:
                for probe in self.probes:
                    probe(bundle)
            except BaseException as exc:
                failure.append(exc)

        worker = threading.Thread(target=run, name=f"probe-{bundle.version}", daemon=True)
        start = time.perf_counter()
        worker.start()
        worker.join(self.probe_budget_seconds)
        if worker.is_alive():
            raise BundleError(
                f"bundle {bundle.version}: its feeds did not answer within the "
                f"{self.probe_budget_seconds:g} s budget",
                check="feeds",
            )
        if failure:
            exc = failure[0]
            if isinstance(exc, BundleError):
                raise exc
            raise BundleError(
                f"bundle {bundle.version}: a feed failed on it: {type(exc).__name__}: {exc}",
                check="feeds",
            ) from exc
        logger.info(
            "bundle %s answered its feeds in %.3f s", bundle.version, time.perf_counter() - start
        )

    def _reject(self, info: BundleInfo, exc: BundleError, signature: Signature) -> None:
        reason = str(exc).replace(str(info.path), info.version)
        rejected = RejectedBundle(info.version, reason, datetime.now(UTC), exc.check)
        self._rejected[info.version] = (rejected, signature)
        logger.error(
            "rejected bundle %s (%s check), not serving it: %s", info.version, exc.check, reason
        )
        if self.on_rejected is not None:
            try:
                self.on_rejected(rejected)
            except Exception:
                logger.exception("on_rejected failed for bundle %s", info.version)
