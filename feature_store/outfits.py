"""Outfits and baskets in one form: ragged sets of dense item indices over an item attribute table.

The complementary model learns from *sets of items that go together*. They come from three kinds of
source, all turned into :class:`OutfitData` here:

* curated outfits with item attributes — the Mango datathon outfits
  (``mango_outfits_datathon2023``, :func:`load_mango_outfits`);
* Polyvore Outfits, nondisjoint split, with the provided fill-in-the-blank (FITB) and compatibility
  questions (``polyvore_outfits_lzcn_processed`` plus, when present, the fine categories of
  ``polyvore_outfits_vasileva_subset``; :func:`load_polyvore_nondisjoint`);
* same-day baskets of a retailer's purchases (customer + calendar day = one basket) from any
  :class:`~feature_store.dataset.Dataset`, e.g. the H&M sample (:func:`baskets_from_dataset`).

The item table of an :class:`OutfitData` is in dense-index order (row ``i`` is item ``i``) and has
the schema's ``item_id`` and ``category`` columns (:class:`~feature_store.schema.Category` values),
plus attribute columns (``product_type``, ``colour``, ``material``, ...) named in
:attr:`OutfitData.attributes`. Values are strings, or ``None`` when unknown.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from .dataset import Dataset
from .errors import DataFormatError
from .schema import Category, InteractionCols, InteractionType, ItemCols

logger = logging.getLogger("lookbook.feature_store")

IntArray = npt.NDArray[np.int64]

MANGO_FOLDER = "mango_outfits_datathon2023"
POLYVORE_FOLDER = "polyvore_outfits_lzcn_processed"
POLYVORE_FINE_FOLDER = "polyvore_outfits_vasileva_subset"

# Polyvore's 11 semantic categories, in the index order of the lzcn ``items.json`` lists.
POLYVORE_CATEGORIES: tuple[str, ...] = (
    "accessories",
    "all-body",
    "bags",
    "bottoms",
    "hats",
    "jewellery",
    "outerwear",
    "scarves",
    "shoes",
    "sunglasses",
    "tops",
)
POLYVORE_TO_CATEGORY: dict[str, Category] = {
    "accessories": Category.ACCESSORY,
    "all-body": Category.DRESS,
    "bags": Category.ACCESSORY,
    "bottoms": Category.BOTTOM,
    "hats": Category.ACCESSORY,
    "jewellery": Category.ACCESSORY,
    "outerwear": Category.OUTERWEAR,
    "scarves": Category.ACCESSORY,
    "shoes": Category.SHOES,
    "sunglasses": Category.ACCESSORY,
    "tops": Category.TOP,
}

# Mango ``des_product_category`` -> schema category (families refine the accessories below).
_MANGO_CATEGORY: dict[str, Category] = {
    "Tops": Category.TOP,
    "Bottoms": Category.BOTTOM,
    "Dresses, jumpsuits and Complete set": Category.DRESS,
    "Outerwear": Category.OUTERWEAR,
    "Accesories, Swim and Intimate": Category.ACCESSORY,
    "Home": Category.OTHER,
    "Beauty": Category.OTHER,
}
_MANGO_FAMILY: dict[str, Category] = {
    "Footwear": Category.SHOES,
    "Intimate": Category.UNDERWEAR,
    "Swimwear": Category.SWIMWEAR,
}
# Mango fabric codes -> a readable material name.
_MANGO_FABRIC: dict[str, str] = {
    "P-PLANA": "woven",
    "C-COMPLEMENTOS": "accessory material",
    "K-CIRCULAR": "jersey",
    "T-TRICOT": "knit",
    "J-JEANS": "denim",
    "O-POLIPIEL": "faux leather",
    "L-PIEL": "leather",
}


@dataclass(frozen=True)
class Outfits:
    """Ragged sets of dense item indices in CSR layout: set ``r`` is
    ``indices[indptr[r]:indptr[r + 1]]``; ``ids[r]`` is its external id."""

    indptr: IntArray
    indices: IntArray
    ids: tuple[str, ...]

    def __post_init__(self) -> None:
        if self.indptr.ndim != 1 or len(self.indptr) != len(self.ids) + 1:
            raise ValueError(
                f"indptr must have len(ids) + 1 = {len(self.ids) + 1} entries, "
                f"got {self.indptr.shape}"
            )
        if self.indptr[0] != 0 or self.indptr[-1] != len(self.indices):
            raise ValueError("indptr must start at 0 and end at len(indices)")
        if np.any(np.diff(self.indptr) < 0):
            raise ValueError("indptr must be non-decreasing")

    @classmethod
    def from_lists(
        cls, sets: Iterable[Sequence[int] | IntArray], ids: Sequence[str] | None = None
    ) -> Outfits:
        rows = [np.asarray(s, dtype=np.int64).reshape(-1) for s in sets]
        sizes = np.array([len(r) for r in rows], dtype=np.int64)
        indptr = np.zeros(len(rows) + 1, dtype=np.int64)
        np.cumsum(sizes, out=indptr[1:])
        indices = np.concatenate(rows) if rows else np.empty(0, dtype=np.int64)
        names = tuple(str(i) for i in ids) if ids is not None else tuple(map(str, range(len(rows))))
        if len(names) != len(rows):
            raise ValueError(f"{len(names)} ids for {len(rows)} sets")
        return cls(indptr=indptr, indices=indices.astype(np.int64), ids=names)

    @classmethod
    def empty(cls) -> Outfits:
        return cls.from_lists([])

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, row: int) -> IntArray:
        return self.indices[self.indptr[row] : self.indptr[row + 1]]

    def __iter__(self) -> Iterator[IntArray]:
        for r in range(len(self)):
            yield self[r]

    def sizes(self) -> IntArray:
        return np.diff(self.indptr)

    def subset(self, rows: Sequence[int] | IntArray) -> Outfits:
        """The sets at positions ``rows``, in that order."""
        picked = np.asarray(rows, dtype=np.int64).reshape(-1)
        return Outfits.from_lists(
            [self[int(r)] for r in picked], [self.ids[int(r)] for r in picked]
        )

    def concat(self, other: Outfits) -> Outfits:
        indptr = np.concatenate([self.indptr, other.indptr[1:] + self.indptr[-1]])
        return Outfits(
            indptr=indptr.astype(np.int64),
            indices=np.concatenate([self.indices, other.indices]).astype(np.int64),
            ids=self.ids + other.ids,
        )

    def min_size(self, n: int) -> Outfits:
        """Only the sets with at least ``n`` items."""
        return self.subset(np.flatnonzero(self.sizes() >= n))


@dataclass(frozen=True)
class FITBQuestions:
    """Fill-in-the-blank questions: which candidate completes the ``context`` set?

    ``candidates[q]`` holds the candidate item indices of question ``q`` (all of the blank's
    category); ``answer[q]`` is the column of the right one.
    """

    context: Outfits
    candidates: IntArray  # (n_questions, n_candidates)
    answer: IntArray  # (n_questions,)

    def __len__(self) -> int:
        return len(self.context)


@dataclass(frozen=True)
class CompatibilityQuestions:
    """Whole outfits labelled compatible (1) or not (0)."""

    outfits: Outfits
    labels: IntArray

    def __len__(self) -> int:
        return len(self.outfits)


@dataclass(frozen=True)
class OutfitData:
    """Items with attributes and sets of them that go together.

    ``splits`` holds outfits by split name as the source provides them (``"all"`` when it has no
    splits); ``fitb`` and ``compatibility`` hold the source's own test questions, by split.
    ``negative_group`` names the item column whose value defines "an item of the same kind" for
    negative sampling and FITB candidates (Polyvore's FITB draws candidates from its own 11
    categories, so there it is ``product_type``).
    """

    source: str
    items: pd.DataFrame
    attributes: tuple[str, ...]
    splits: dict[str, Outfits]
    fitb: dict[str, FITBQuestions] = field(default_factory=dict)
    compatibility: dict[str, CompatibilityQuestions] = field(default_factory=dict)
    negative_group: str = ItemCols.CATEGORY

    @property
    def n_items(self) -> int:
        return len(self.items)

    def summary(self) -> dict[str, Any]:
        """Counts for logs and READMEs."""
        return {
            "source": self.source,
            "items": self.n_items,
            "splits": {name: len(o) for name, o in self.splits.items()},
            "fitb": {name: len(q) for name, q in self.fitb.items()},
            "compatibility": {name: len(q) for name, q in self.compatibility.items()},
        }


def split_outfits(
    outfits: Outfits, fractions: Mapping[str, float], *, seed: int
) -> dict[str, Outfits]:
    """A seeded random partition of ``outfits`` into named parts of the given fractions.

    Fractions must sum to 1; the last part takes the rounding remainder.
    """
    names = list(fractions)
    values = np.array([fractions[n] for n in names], dtype=np.float64)
    if np.any(values < 0) or not np.isclose(values.sum(), 1.0):
        raise ValueError(f"fractions must be non-negative and sum to 1, got {dict(fractions)}")
    order = np.random.default_rng(seed).permutation(len(outfits))
    bounds = np.floor(np.cumsum(values) * len(outfits)).astype(np.int64)
    bounds[-1] = len(outfits)
    parts: dict[str, Outfits] = {}
    start = 0
    for name, end in zip(names, bounds, strict=True):
        parts[name] = outfits.subset(np.sort(order[start:end]))
        start = int(end)
    return parts


# ----------------------------------------------------------------------------------------- Mango


def load_mango_outfits(root: Path) -> OutfitData:
    """The Mango datathon outfits (``outfit_data.csv``) over its 9,222 products.

    Attributes: ``product_type`` (``des_product_type``), ``family``, ``aggregated_family``,
    ``colour`` (10 colour groups), ``colour_detail`` (110 colour names), ``material`` (fabric,
    7 values), ``line`` and ``collection`` (the year in the image file name, e.g. ``"2019"``).
    Categories: tops, bottoms, dresses, outerwear map directly; accessories split into shoes
    (footwear), underwear, swimwear and accessory; home and beauty are ``other``.
    ``product_code`` (not an attribute) is the model code of ``cod_modelo_color``: the items of a
    product code are the same garment in different colours.
    """
    folder = Path(root)
    if (folder / MANGO_FOLDER).is_dir():
        folder = folder / MANGO_FOLDER
    product_file = folder / "product_data.csv"
    outfit_file = folder / "outfit_data.csv"
    for path in (product_file, outfit_file):
        if not path.is_file():
            raise DataFormatError("file not found", file=str(path))
    products = pd.read_csv(product_file, dtype=str, keep_default_na=False)
    required = [
        "cod_modelo_color",
        "des_agrup_color_eng",
        "des_color_specification_esp",
        "des_fabric",
        "des_line",
        "des_product_category",
        "des_product_aggregated_family",
        "des_product_family",
        "des_product_type",
        "des_filename",
    ]
    missing = [c for c in required if c not in products.columns]
    if missing:
        raise DataFormatError("missing column", file=str(product_file), column=missing[0])
    if products["cod_modelo_color"].duplicated().any():
        dup = products["cod_modelo_color"][products["cod_modelo_color"].duplicated()].iloc[0]
        raise DataFormatError(f"duplicate product {dup!r}", file=str(product_file))

    def category(row_category: str, family: str) -> str:
        if family in _MANGO_FAMILY:
            return _MANGO_FAMILY[family].value
        return _MANGO_CATEGORY.get(row_category, Category.OTHER).value

    categories = [
        category(c, f)
        for c, f in zip(
            products["des_product_category"], products["des_product_family"], strict=True
        )
    ]
    collection = products["des_filename"].str.extract(r"(\d{4})_", expand=False)

    def clean(series: pd.Series) -> list[str | None]:
        return [v.strip() if isinstance(v, str) and v.strip() else None for v in series]

    items = pd.DataFrame(
        {
            ItemCols.ID: products["cod_modelo_color"].astype(str).to_numpy(),
            ItemCols.NAME: products["des_product_type"].astype(str).to_numpy(),
            ItemCols.CATEGORY: categories,
            ItemCols.PRODUCT_TYPE: clean(products["des_product_type"]),
            "family": clean(products["des_product_family"]),
            "aggregated_family": clean(products["des_product_aggregated_family"]),
            ItemCols.COLOUR: clean(products["des_agrup_color_eng"].str.lower()),
            "colour_detail": clean(products["des_color_specification_esp"].str.lower()),
            ItemCols.MATERIAL: [
                _MANGO_FABRIC.get(v, v.lower()) if v else None for v in products["des_fabric"]
            ],
            "line": clean(products["des_line"]),
            "collection": [v if isinstance(v, str) else None for v in collection],
            # the model (garment) an item is a colour of: ``41085800-02`` -> ``41085800``
            ItemCols.PRODUCT_CODE: clean(products["cod_modelo_color"].str.split("-").str[0]),
        }
    )
    index = pd.Index(items[ItemCols.ID])

    rows = pd.read_csv(outfit_file, dtype=str, keep_default_na=False)
    for col in ("cod_outfit", "cod_modelo_color"):
        if col not in rows.columns:
            raise DataFormatError("missing column", file=str(outfit_file), column=col)
    codes = index.get_indexer(rows["cod_modelo_color"])
    if (codes < 0).any():
        bad = int(np.flatnonzero(codes < 0)[0])
        raise DataFormatError(
            f"unknown product {rows['cod_modelo_color'].iloc[bad]!r}",
            file=str(outfit_file),
            row=bad + 2,
            column="cod_modelo_color",
        )
    frame = pd.DataFrame(
        {"outfit": pd.to_numeric(rows["cod_outfit"], errors="raise"), "item": codes}
    ).drop_duplicates()
    frame = frame.sort_values(["outfit"], kind="stable")
    groups = frame.groupby("outfit", sort=True)["item"]
    outfits = Outfits.from_lists([g.to_numpy() for _, g in groups], [str(k) for k in groups.groups])
    logger.info("mango: %d products, %d outfits", len(items), len(outfits))
    return OutfitData(
        source="mango_outfits_datathon2023",
        items=items,
        attributes=(
            ItemCols.PRODUCT_TYPE,
            "family",
            "aggregated_family",
            ItemCols.COLOUR,
            "colour_detail",
            ItemCols.MATERIAL,
            "line",
            "collection",
        ),
        splits={"all": outfits},
    )


# -------------------------------------------------------------------------------------- Polyvore


def _read_tuples(path: Path) -> npt.NDArray[np.int64]:
    """An lzcn tuple file: ``0, n, item_1..item_MAX, cat_1..cat_MAX`` per row (``-1`` padded)."""
    if not path.is_file():
        raise DataFormatError("file not found", file=str(path))
    frame = pd.read_csv(path, header=None, dtype=np.int64)
    array = frame.to_numpy()
    if array.shape[1] < 4 or array.shape[1] % 2:
        raise DataFormatError(
            f"expected an even number >= 4 of columns, got {array.shape[1]}", file=str(path)
        )
    return array


def _tuples_to_global(
    array: npt.NDArray[np.int64], offsets: IntArray, path: Path
) -> tuple[list[IntArray], IntArray]:
    """Per row, the global item indices (``offsets[cat] + idx``) and the row sizes."""
    width = (array.shape[1] - 2) // 2
    sizes = array[:, 1]
    if np.any(sizes < 1) or np.any(sizes > width):
        raise DataFormatError(f"outfit size outside 1..{width}", file=str(path))
    idx = array[:, 2 : 2 + width]
    cats = array[:, 2 + width : 2 + 2 * width]
    valid = np.arange(width)[None, :] < sizes[:, None]
    if np.any(cats[valid] < 0) or np.any(cats[valid] >= len(offsets) - 1):
        raise DataFormatError("category index out of range", file=str(path))
    glob = np.where(valid, offsets[np.clip(cats, 0, None)] + idx, -1)
    counts = offsets[1:] - offsets[:-1]
    if np.any(idx[valid] < 0) or np.any(idx[valid] >= counts[np.clip(cats, 0, None)][valid]):
        raise DataFormatError("item index out of range of its category", file=str(path))
    return [glob[r, : sizes[r]].astype(np.int64) for r in range(len(array))], sizes


def _read_items_json(path: Path) -> list[list[str]]:
    if not path.is_file():
        raise DataFormatError("file not found", file=str(path))
    lists = json.loads(path.read_text())
    if not isinstance(lists, list) or len(lists) != len(POLYVORE_CATEGORIES):
        raise DataFormatError(f"expected {len(POLYVORE_CATEGORIES)} category lists", file=str(path))
    return [[str(i) for i in group] for group in lists]


def _polyvore_fine_categories(folder: Path) -> dict[str, str]:
    """``item_id -> fine category name`` from the Vasileva subset (the last row per id wins)."""
    mapping_file = folder / "train_category.json"
    names_file = folder / "categories.csv"
    if not mapping_file.is_file() or not names_file.is_file():
        return {}
    names: dict[str, str] = {}
    with names_file.open() as fh:
        for line in fh:
            parts = [p.strip() for p in line.rstrip("\n").split(",")]
            if len(parts) >= 2 and parts[0]:
                names[parts[0]] = parts[1]
    raw: dict[str, str] = json.loads(mapping_file.read_text())
    return {item: names.get(str(cat), f"fine_{cat}") for item, cat in raw.items()}


def load_polyvore_nondisjoint(
    root: Path, *, fine_categories: Path | None = None, with_train: bool = True
) -> OutfitData:
    """Polyvore Outfits, nondisjoint split: 251,008 items; ``valid`` (5,000) and ``test`` (10,000)
    outfits; the 10,000 test FITB questions (``fitb["test"]``, the answer in column 0); the
    compatibility questions of valid and test (``compatibility``).

    The nondisjoint training outfits are missing from the shared copy. With ``with_train`` the
    ``train`` split is rebuilt from the *disjoint* files (train + valid + test, 35,140 outfits):
    they are a subset of the original 68,306 outfits; every one whose item set equals a nondisjoint
    valid or test outfit (5,135 of them are test outfits) is dropped, and duplicates are merged, so
    what remains belongs to the original nondisjoint train/valid partition and never reveals a
    test outfit.

    Item attributes: ``product_type`` = the Polyvore semantic category (``"bags"``, ...; the FITB
    candidates share it, hence ``negative_group``) and ``fine_type`` = the fine category name of
    the Vasileva subset (``fine_categories`` folder; by default the sibling folder
    ``polyvore_outfits_vasileva_subset``; about 80 % of items have one). No images or titles.
    """
    folder = Path(root)
    if (folder / POLYVORE_FOLDER).is_dir():
        folder = folder / POLYVORE_FOLDER
    nd = folder / "nondisjoint"
    groups = _read_items_json(nd / "items.json")
    counts = np.array([len(g) for g in groups], dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    item_ids = [i for g in groups for i in g]
    coarse = [POLYVORE_CATEGORIES[c] for c, g in enumerate(groups) for _ in g]
    fine_folder = (
        fine_categories if fine_categories is not None else (folder.parent / POLYVORE_FINE_FOLDER)
    )
    fine = _polyvore_fine_categories(fine_folder)
    items = pd.DataFrame(
        {
            ItemCols.ID: item_ids,
            ItemCols.NAME: [fine.get(i, c) for i, c in zip(item_ids, coarse, strict=True)],
            ItemCols.CATEGORY: [POLYVORE_TO_CATEGORY[c].value for c in coarse],
            ItemCols.PRODUCT_TYPE: coarse,
            "fine_type": [fine.get(i) for i in item_ids],
        }
    )
    if items[ItemCols.ID].duplicated().any():
        raise DataFormatError("an item id appears in two categories", file=str(nd / "items.json"))

    def outfits(name: str) -> Outfits:
        path = nd / name
        sets, _ = _tuples_to_global(_read_tuples(path), offsets, path)
        return Outfits.from_lists(sets, [f"{name}:{r}" for r in range(len(sets))])

    valid = outfits("valid_pos")
    test = outfits("test_pos")
    splits: dict[str, Outfits] = {"valid": valid, "test": test}
    if with_train:
        splits = {"train": _polyvore_train_from_disjoint(folder, items, valid, test), **splits}

    compatibility = {
        split: CompatibilityQuestions(
            outfits=splits[split].concat(outfits(f"{split}_neg")),
            labels=np.concatenate(
                [np.ones(len(splits[split]), np.int64), np.zeros(len(splits[split]), np.int64)]
            ),
        )
        for split in ("valid", "test")
    }
    fitb = {"test": _polyvore_fitb(nd, offsets)}
    data = OutfitData(
        source="polyvore_outfits_nondisjoint",
        items=items,
        attributes=(ItemCols.PRODUCT_TYPE, "fine_type"),
        splits=splits,
        fitb=fitb,
        compatibility=compatibility,
        negative_group=ItemCols.PRODUCT_TYPE,
    )
    logger.info("polyvore: %s", data.summary())
    return data


def _polyvore_train_from_disjoint(
    folder: Path, items: pd.DataFrame, valid: Outfits, test: Outfits
) -> Outfits:
    dj = folder / "disjoint"
    groups = _read_items_json(dj / "items.json")
    counts = np.array([len(g) for g in groups], dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    to_global = pd.Index(items[ItemCols.ID]).get_indexer([i for g in groups for i in g])
    if (to_global < 0).any():
        raise DataFormatError("disjoint items missing from nondisjoint items.json", file=str(dj))
    held_out = {frozenset(o.tolist()) for o in valid} | {frozenset(o.tolist()) for o in test}
    seen: set[frozenset[int]] = set()
    kept: list[IntArray] = []
    ids: list[str] = []
    dropped = 0
    for name in ("train_pos", "valid_pos", "test_pos"):
        path = dj / name
        sets, _ = _tuples_to_global(_read_tuples(path), offsets, path)
        for r, local in enumerate(sets):
            glob = to_global[local].astype(np.int64)
            key = frozenset(glob.tolist())
            if key in held_out:
                dropped += 1
                continue
            if key in seen:
                continue
            seen.add(key)
            kept.append(glob)
            ids.append(f"disjoint/{name}:{r}")
    logger.info(
        "polyvore: train rebuilt from disjoint files: %d outfits kept, %d dropped as equal to a "
        "nondisjoint valid/test outfit",
        len(kept),
        dropped,
    )
    return Outfits.from_lists(kept, ids)


def _polyvore_fitb(nd: Path, offsets: IntArray) -> FITBQuestions:
    pos_path, neg_path = nd / "test_pos_fitb", nd / "test_neg_fitb"
    pos, _ = _tuples_to_global(_read_tuples(pos_path), offsets, pos_path)
    neg, _ = _tuples_to_global(_read_tuples(neg_path), offsets, neg_path)
    if len(neg) != 3 * len(pos):
        raise DataFormatError(
            f"expected 3 wrong answers per question: {len(pos)} questions, {len(neg)} rows",
            file=str(neg_path),
        )
    contexts: list[IntArray] = []
    candidates = np.empty((len(pos), 4), dtype=np.int64)
    for q, right in enumerate(pos):
        wrong = neg[3 * q : 3 * q + 3]
        if any(len(w) != len(right) for w in wrong):
            raise DataFormatError(
                "a FITB question's wrong answers must have the outfit's size",
                file=str(neg_path),
                row=3 * q + 1,
            )
        differs = np.flatnonzero(np.any(np.stack([w != right for w in wrong]), axis=0))
        if len(differs) != 1:
            raise DataFormatError(
                "a FITB question's wrong answers must differ from the outfit at exactly one slot",
                file=str(neg_path),
                row=3 * q + 1,
            )
        blank = int(differs[0])
        contexts.append(np.delete(right, blank))
        candidates[q] = [right[blank], *(w[blank] for w in wrong)]
    return FITBQuestions(
        context=Outfits.from_lists(contexts, [f"fitb:{q}" for q in range(len(pos))]),
        candidates=candidates,
        answer=np.zeros(len(pos), dtype=np.int64),
    )


# ------------------------------------------------------------------------------ baskets (H&M etc.)


def baskets_from_dataset(
    dataset: Dataset,
    *,
    start: pd.Timestamp | None = None,
    end: pd.Timestamp | None = None,
    min_items: int = 2,
    cross_category_only: bool = False,
) -> Outfits:
    """Same-day baskets of purchases: one set per (customer, calendar day, UTC), over the dense
    item order of ``dataset.items`` (row ``i`` = item ``i``, as :func:`training.data.build_id_maps`).

    Only purchases with ``start <= timestamp < end`` count; returned items are removed from their
    basket; repeated units of an item count once. Baskets with fewer than ``min_items`` distinct
    items are dropped, and with ``cross_category_only`` also baskets whose items all share one
    category (they say nothing about what goes *with* what). Set ids are
    ``"<customer_id>@<YYYY-MM-DD>"``; sets are ordered by day, then customer.
    """
    frame = _purchases(dataset, start=start, end=end)
    if frame.empty:
        return Outfits.empty()
    index = pd.Index(dataset.items[ItemCols.ID].astype(str))
    frame["item"] = index.get_indexer(pd.Index(frame[InteractionCols.ITEM_ID].astype(str)))
    frame = frame[frame["item"] >= 0]
    frame = frame.drop_duplicates(["customer", "day", "item"])
    sizes = frame.groupby(["day", "customer"], sort=True)["item"].transform("size")
    frame = frame[sizes >= min_items]
    if cross_category_only and not frame.empty:
        cats = dataset.items[ItemCols.CATEGORY].astype(str).to_numpy()
        frame = frame.assign(cat=cats[frame["item"].to_numpy()])
        n_cats = frame.groupby(["day", "customer"], sort=True)["cat"].transform("nunique")
        frame = frame[n_cats >= 2]
    frame = frame.sort_values(["day", "customer", "item"], kind="stable")
    grouped = frame.groupby(["day", "customer"], sort=True)["item"]
    sets: list[IntArray] = []
    ids: list[str] = []
    for (day, customer), group in grouped:
        sets.append(group.to_numpy(dtype=np.int64))
        ids.append(f"{customer}@{day}")
    return Outfits.from_lists(sets, ids)


def _purchases(
    dataset: Dataset, *, start: pd.Timestamp | None, end: pd.Timestamp | None
) -> pd.DataFrame:
    """Purchases (customer, item, UTC day) in ``[start, end)``, without the items a customer
    returned in that period."""
    inter = dataset.interactions
    types = inter[InteractionCols.TYPE].astype(str)
    ts = inter[InteractionCols.TIMESTAMP]
    mask = pd.Series(True, index=inter.index)
    if start is not None:
        mask &= ts >= start
    if end is not None:
        mask &= ts < end
    base = pd.DataFrame(
        {
            "customer": inter[InteractionCols.CUSTOMER_ID].astype(str),
            InteractionCols.ITEM_ID: inter[InteractionCols.ITEM_ID].astype(str),
            "day": ts.dt.strftime("%Y-%m-%d"),
        }
    )
    bought = base[mask & (types == InteractionType.PURCHASE.value)]
    returned = base[mask & (types == InteractionType.RETURN.value)]
    if len(returned):
        key = ["customer", InteractionCols.ITEM_ID]
        ret = returned.drop_duplicates(key).assign(_returned=True)[[*key, "_returned"]]
        bought = bought.merge(ret, on=key, how="left")
        bought = bought[bought["_returned"].isna()].drop(columns="_returned")
    return bought.reset_index(drop=True)
