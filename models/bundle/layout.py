"""Where every file of a bundle lives: each file and folder name is spelt here and nowhere else."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Final

MANIFEST: Final = "manifest.json"
#: In the bundles folder (beside the versions): the version every replica serves while it exists.
PIN: Final = "pin.json"
ITEM_IDS: Final = "item_ids.parquet"
CUSTOMER_IDS: Final = "customer_ids.parquet"
CATALOG: Final = "catalog.parquet"
STOCK: Final = "stock.parquet"
USER_ITEMS: Final = "user_items.npz"
PURCHASES: Final = "purchases.npz"
PURCHASE_HISTORY: Final = "purchase_history.npz"
RETURNS: Final = "returns.npz"
CANDIDATES: Final = "candidates.npz"
SIMILAR_ITEMS: Final = "similar_items.npz"
PROFILES: Final = "profiles"
CHURN: Final = "churn"
MODELS: Final = "models"
INDEXES: Final = "indexes"
INDEX_SUFFIX: Final = ".faiss"

# models/<name>/
ALS: Final = "als"
POPULARITY: Final = "popularity"
SEQUENCE: Final = "sequence"
COMPLEMENTARY: Final = "complementary"
SEASONAL: Final = "seasonal"
SIZE_FIT: Final = "size_fit"
SIZE_FIT_RANKER: Final = "size_fit_ranker"  # the size-fit model's small / fit / large classifier
RANKER: Final = "ranker"  # the learned ranker (LightGBM text model) and its item statistics
MODEL_NAMES: Final = (
    ALS, POPULARITY, SEQUENCE, COMPLEMENTARY, SEASONAL, SIZE_FIT, SIZE_FIT_RANKER, RANKER,
)  # fmt: skip

# indexes/<name>.faiss
ALS_ITEMS: Final = "als_items"
ALS_ITEMS_COSINE: Final = "als_items_cosine"
SEQUENCE_ITEMS: Final = "sequence_items"
INDEX_NAMES: Final = (ALS_ITEMS, ALS_ITEMS_COSINE, SEQUENCE_ITEMS)

# pools/<name>.npy: each known customer's precomputed candidates of a source (CustomerPools), and
# the LSTM's session vector of each (CustomerVectors)
POOLS: Final = "pools"
POOL_SUFFIX: Final = ".npy"
SEQUENCE_SESSIONS: Final = "sequence_sessions"
POOL_NAMES: Final = (ALS, SEQUENCE, SEQUENCE_SESSIONS)

FILES: Final = (
    MANIFEST,
    ITEM_IDS,
    CUSTOMER_IDS,
    CATALOG,
    STOCK,
    USER_ITEMS,
    PURCHASES,
    PURCHASE_HISTORY,
    RETURNS,
    CANDIDATES,
    SIMILAR_ITEMS,
)
#: Folders whose contents belong to what is saved there (a model's or the profiles' own files).
FOLDERS: Final = (PROFILES, CHURN, *(f"{MODELS}/{name}" for name in MODEL_NAMES))


@dataclass(frozen=True)
class BundleLayout:
    """The paths of one bundle folder ``root`` (see :mod:`models.bundle` for what each holds)."""

    root: Path

    @property
    def manifest(self) -> Path:
        return self.root / MANIFEST

    @property
    def item_ids(self) -> Path:
        return self.root / ITEM_IDS

    @property
    def customer_ids(self) -> Path:
        return self.root / CUSTOMER_IDS

    @property
    def catalog(self) -> Path:
        return self.root / CATALOG

    @property
    def stock(self) -> Path:
        return self.root / STOCK

    @property
    def user_items(self) -> Path:
        return self.root / USER_ITEMS

    @property
    def purchases(self) -> Path:
        return self.root / PURCHASES

    @property
    def purchase_history(self) -> Path:
        return self.root / PURCHASE_HISTORY

    @property
    def returns(self) -> Path:
        return self.root / RETURNS

    @property
    def candidates(self) -> Path:
        return self.root / CANDIDATES

    @property
    def similar_items(self) -> Path:
        return self.root / SIMILAR_ITEMS

    @property
    def profiles(self) -> Path:
        return self.root / PROFILES

    @property
    def churn(self) -> Path:
        return self.root / CHURN

    def model(self, name: str) -> Path:
        """``models/<name>/``; ``name`` is one of :data:`MODEL_NAMES`."""
        if name not in MODEL_NAMES:
            raise ValueError(f"unknown bundle model {name!r}; known: {', '.join(MODEL_NAMES)}")
        return self.root / MODELS / name

    def index(self, name: str) -> Path:
        """``indexes/<name>.faiss``; ``name`` is one of :data:`INDEX_NAMES`."""
        if name not in INDEX_NAMES:
            raise ValueError(f"unknown bundle index {name!r}; known: {', '.join(INDEX_NAMES)}")
        return self.root / INDEXES / f"{name}{INDEX_SUFFIX}"

    @property
    def als_model(self) -> Path:
        return self.model(ALS)

    @property
    def popularity_model(self) -> Path:
        return self.model(POPULARITY)

    @property
    def sequence_model(self) -> Path:
        return self.model(SEQUENCE)

    @property
    def complementary_model(self) -> Path:
        return self.model(COMPLEMENTARY)

    @property
    def seasonal_model(self) -> Path:
        return self.model(SEASONAL)

    @property
    def size_fit_model(self) -> Path:
        return self.model(SIZE_FIT)

    @property
    def size_fit_ranker_model(self) -> Path:
        """The small / fit / large classifier served with the size-fit model."""
        return self.model(SIZE_FIT_RANKER)

    @property
    def ranker_model(self) -> Path:
        return self.model(RANKER)

    @property
    def als_index(self) -> Path:
        """Raw ALS item factors: inner product = the ALS score (personalized retrieval)."""
        return self.index(ALS_ITEMS)

    @property
    def als_cosine_index(self) -> Path:
        """Normalised ALS item factors: inner product = cosine (similar items)."""
        return self.index(ALS_ITEMS_COSINE)

    @property
    def sequence_index(self) -> Path:
        """The LSTM's item vectors, queried with its session vector."""
        return self.index(SEQUENCE_ITEMS)

    def pool(self, name: str) -> Path:
        """``pools/<name>.npy``; ``name`` is one of :data:`POOL_NAMES` (the source's name)."""
        if name not in POOL_NAMES:
            raise ValueError(f"unknown bundle pool {name!r}; known: {', '.join(POOL_NAMES)}")
        return self.root / POOLS / f"{name}{POOL_SUFFIX}"

    def relative(self, path: Path) -> str:
        """``path`` relative to the bundle folder, as the manifest records it."""
        return path.relative_to(self.root).as_posix()

    def models_present(self) -> dict[str, str]:
        """Model name → relative folder, for each model saved in this bundle."""
        return {
            name: self.relative(self.model(name))
            for name in MODEL_NAMES
            if self.model(name).is_dir()
        }

    def indexes_present(self) -> dict[str, str]:
        """Index name → relative file, for each index saved in this bundle."""
        return {
            name: self.relative(self.index(name))
            for name in INDEX_NAMES
            if self.index(name).is_file()
        }

    def pools_present(self) -> dict[str, str]:
        """Source name → relative file, for each customer pool saved in this bundle."""
        return {
            name: self.relative(self.pool(name)) for name in POOL_NAMES if self.pool(name).is_file()
        }

    def owner(self, path: Path) -> str | None:
        """The layout entry the file ``path`` (inside the bundle) belongs to: a file, a folder
        holding it, or an index with the files it writes beside it (``<name>.faiss.json``); None
        when the layout does not name it."""
        rel = self.relative(path)
        if rel in FILES:
            return rel
        for folder in FOLDERS:
            if rel == folder or rel.startswith(f"{folder}/"):
                return folder
        for name in INDEX_NAMES:
            index = self.relative(self.index(name))
            if rel == index or rel.startswith(f"{index}."):
                return index
        for name in POOL_NAMES:
            pool = self.relative(self.pool(name))
            if rel == pool:
                return pool
        return None
