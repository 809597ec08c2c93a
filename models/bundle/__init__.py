"""The model bundle: one folder per version, written by the trainer, read by the service.

This package is the bundle format's one owner: the layout (:class:`BundleLayout`, every name
spelt once in :mod:`models.bundle.layout`), the manifest schema (:class:`Manifest`), the writer
(:class:`BundleWriter`), the reader (:func:`list_bundles`, :func:`latest_bundle`,
:func:`read_manifest` and the table loaders) and the blend's fusion function (:func:`rrf_fuse`
with :class:`BlendWeights`). Layout of ``<bundles_dir>/<version>/``::

    manifest.json          Manifest: format, version, created, data, config, metrics, item and
                           customer counts, models, indexes, timings; blend, sequence, look and
                           profiles sections when trained
    item_ids.parquet       dense item index -> external item id
    customer_ids.parquet   dense customer index -> external customer id
    catalog.parquet        the items table in item-index order (names, categories, prices, sizes ...)
    stock.parquet          stock per item, store and size at training time
    user_items.npz         customer x item confidence matrix (CSR) the models were fitted on
    purchases.npz          customer x item matrix of items bought and kept (CSR, binary)
    purchase_history.npz   every customer's purchases, oldest first (indptr, items, timestamps,
                           weights)
    returns.npz            every customer's returns, oldest first (indptr, items, timestamps,
                           sizes, reasons): what is not offered again, or only in another size
    candidates.npz         the rule-based sources' tables: repeat_rates, siblings_{indptr,indices,
                           scores} (CandidateTables)
    similar_items.npz      ids, scores: each item's nearest items by ALS cosine (SimilarItems)
    profiles/              customer profiles (feature_store's CustomerProfiles.save)
    churn/                 the churn model (models.churn), when fitted
    models/<name>/         als, popularity, sequence, complementary, seasonal, size_fit,
                           size_fit_ranker, ranker: each model's save
    indexes/<name>.faiss   als_items, als_items_cosine, sequence_items: FAISS indexes (+ .json)
    pools/<name>.npy       als, sequence: each customer's precomputed candidates of that source
                           (CustomerPools; read a row at a time by the service, PoolFile);
                           sequence_sessions: each customer's LSTM session vector
                           (CustomerVectors, read as a VectorFile)

and beside the versions ``<bundles_dir>/pin.json`` (:mod:`models.bundle.pin`): the version every
replica serves instead of the newest while it exists. The manifest records the sha256 of every
file (:mod:`models.bundle.integrity`), checked before a bundle is read; :func:`prune_bundles`
removes old versions (never the pinned or the newest one).

A bundle is written into a hidden temporary folder and renamed into place when complete, so a
reader never sees half a bundle; the newest version is the one whose name sorts last.
No file needs pickle to be read.
"""

from __future__ import annotations

from .fusion import (
    DEFAULT_RRF_K,
    DEFAULT_WEIGHTS,
    SOURCES,
    BlendWeights,
    Fused,
    RankTable,
    rrf_fuse,
    rrf_fuse_row,
)
from .integrity import file_checksums, verify_checksums
from .layout import BundleLayout
from .manifest import (
    BUNDLE_FORMAT,
    READABLE_FORMATS,
    BlendFitSummary,
    DataSection,
    FitSummary,
    Manifest,
    ProfilesSection,
    SequenceSection,
    read_manifest,
)
from .pin import Pin, clear_pin, read_pin, write_pin
from .prune import bundles_to_prune, prune_bundles
from .reader import BundleInfo, latest_bundle, list_bundles
from .tables import (
    CandidateTables,
    CustomerPools,
    CustomerVectors,
    PoolFile,
    PurchaseLog,
    ReturnLog,
    SimilarItems,
    VectorFile,
    load_csr,
    load_purchase_history,
    load_returns,
    save_csr,
)
from .writer import BundleWriter, new_version

__all__ = [
    "BUNDLE_FORMAT",
    "DEFAULT_RRF_K",
    "DEFAULT_WEIGHTS",
    "READABLE_FORMATS",
    "SOURCES",
    "BlendFitSummary",
    "BlendWeights",
    "BundleInfo",
    "BundleLayout",
    "BundleWriter",
    "CandidateTables",
    "CustomerPools",
    "CustomerVectors",
    "DataSection",
    "FitSummary",
    "Fused",
    "Manifest",
    "Pin",
    "PoolFile",
    "ProfilesSection",
    "PurchaseLog",
    "RankTable",
    "ReturnLog",
    "SequenceSection",
    "SimilarItems",
    "VectorFile",
    "bundles_to_prune",
    "clear_pin",
    "file_checksums",
    "latest_bundle",
    "list_bundles",
    "load_csr",
    "load_purchase_history",
    "load_returns",
    "new_version",
    "prune_bundles",
    "read_manifest",
    "read_pin",
    "rrf_fuse",
    "rrf_fuse_row",
    "save_csr",
    "verify_checksums",
    "write_pin",
]
