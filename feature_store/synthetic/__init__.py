"""A deterministic synthetic fashion retailer: catalog, stock, customers and interactions.

This is the demo and benchmark load of Lookbook. It looks like a retailer — outfits in baskets,
seasons, sizes, returns of the wrong size — but it is made up: accuracy claims are measured on the
real data in ``../shared/data``, never on this.

:func:`generate` writes the project's own format (see ``docs/data-format.md``) into a folder:

``items.parquet``         one row per item; readable names, categories, product types, styles,
                          colours, materials, patterns, seasons, price and price band, launch date,
                          sizes offered and a short description.
``stock.parquet``         one row per (item, store, size) carried: ``online`` (every item) and
                          ``store-001`` .. (a subset of the catalog each); ``quantity`` 0 means
                          out of stock there.
``customers.parquet``     one row per customer: age band, consent, signup date.
``interactions.parquet``  impressions, clicks, views, wishlists, add-to-carts, purchases and
                          returns. Written in row groups of one block of customers
                          (:data:`BLOCK_CUSTOMERS`, in customer-id order); rows are sorted by
                          timestamp *within* each block, not globally.
``latent_customers.parquet``  the hidden truth behind each customer (style mix, colour palette,
                          price band, true size per category) — for checking models on synthetic
                          data. Not part of the data format; loaders ignore it.
``latent_items.parquet``  the hidden truth behind each item: ``fit_offset``, the sizes above the
                          customer's true size that fit (+1 runs small, -1 runs large, 0 true to
                          size). Not part of the data format either.
``synthetic.json``        the parameters and the report returned by :func:`generate`.

How the data is made: :mod:`.catalog` and :mod:`.behaviour`.

Same arguments → byte-identical Parquet files (``synthetic.json`` differs only in ``seconds``).
Every random stream is a numpy ``Generator`` seeded from ``SeedSequence(seed, spawn_key=...)``:
one stream for the catalog, one for stock, one per block of :data:`BLOCK_CUSTOMERS` customers.
"""

from __future__ import annotations

from .build import generate
from .vocabulary import (
    AGE_BANDS,
    BLOCK_CUSTOMERS,
    CATEGORIES,
    COLOURS,
    LATENT_FILE,
    LATENT_ITEMS_FILE,
    LATENT_SIZE_COLUMNS,
    MATERIALS,
    PATTERNS,
    PRODUCT_TYPES,
    REPORT_FILE,
    SIZE_SCALES,
    STYLES,
    TRUE_SIZE_SLOTS,
)

__all__ = [
    "AGE_BANDS",
    "BLOCK_CUSTOMERS",
    "CATEGORIES",
    "COLOURS",
    "LATENT_FILE",
    "LATENT_ITEMS_FILE",
    "LATENT_SIZE_COLUMNS",
    "MATERIALS",
    "PATTERNS",
    "PRODUCT_TYPES",
    "REPORT_FILE",
    "SIZE_SCALES",
    "STYLES",
    "TRUE_SIZE_SLOTS",
    "generate",
]
