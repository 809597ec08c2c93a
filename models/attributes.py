"""The catalog's item attributes as one weighted one-hot matrix: the content features the
service's attribute similarity (``app.pipeline.AttributeSimilarSource``) and the diversity
rerank (:mod:`models.diversity`) both read.

Rows are items, columns one-hot product type, colour, material and pattern, and the style tags;
the weights make ``attributes[a] . attributes[b]`` = 2 [same product type] + 1 [same colour]
+ .5 [same material] + .5 [same pattern] + 1.5 cosine(styles). Missing columns are left out.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import scipy.sparse as sp

from feature_store.schema import ItemCols

__all__ = ["ATTRIBUTE_WEIGHTS", "STYLE_WEIGHT", "attribute_matrix"]

ATTRIBUTE_WEIGHTS: dict[str, float] = {
    ItemCols.PRODUCT_TYPE: 2.0,
    ItemCols.COLOUR: 1.0,
    ItemCols.MATERIAL: 0.5,
    ItemCols.PATTERN: 0.5,
}
STYLE_WEIGHT = 1.5


def attribute_matrix(frame: pd.DataFrame) -> sp.csr_matrix:
    """The weighted one-hot attribute matrix of the catalog ``frame`` (one row per row of it)."""
    n = len(frame)
    blocks: list[sp.csr_matrix] = []
    for column, weight in ATTRIBUTE_WEIGHTS.items():
        if column not in frame.columns:
            continue
        codes, uniques = pd.factorize(frame[column].astype("string"), use_na_sentinel=True)
        known = codes >= 0
        blocks.append(
            sp.csr_matrix(
                (
                    np.full(int(known.sum()), np.sqrt(weight), np.float32),
                    (np.flatnonzero(known), codes[known]),
                ),
                shape=(n, len(uniques)),
            )
        )
    if ItemCols.STYLES in frame.columns:
        tags = [
            list(v) if isinstance(v, list | tuple | np.ndarray) else []
            for v in frame[ItemCols.STYLES]
        ]
        vocab = {t: i for i, t in enumerate(sorted({str(t) for row in tags for t in row}))}
        rows = [r for r, row in enumerate(tags) for _ in row]
        cols = [vocab[str(t)] for row in tags for t in row]
        counts = np.array([max(len(row), 1) for row in tags], dtype=np.float32)
        values = np.sqrt(STYLE_WEIGHT / counts[rows]) if rows else np.empty(0, np.float32)
        blocks.append(sp.csr_matrix((values, (rows, cols)), shape=(n, len(vocab))))
    if not blocks:
        return sp.csr_matrix((n, 0), dtype=np.float32)
    return sp.hstack(blocks, format="csr", dtype=np.float32)
