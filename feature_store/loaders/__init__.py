"""Loaders: the project's own format (Parquet or CSV) and adapters for the H&M datasets.

:func:`load_dataset` reads a folder and returns a :class:`~feature_store.dataset.Dataset`;
:func:`write_dataset` writes one in the own format, so that ``load → write → load`` gives identical
tables. The own format is documented in ``docs/data-format.md``.

Layouts recognised by ``format="auto"`` (:func:`detect_format`):

``own``        ``items.(parquet|csv)`` + ``interactions.(parquet|csv)``, optional ``customers.*`` and
               ``stock.*`` (Parquet is preferred when both exist).
``hm_kaggle``  Kaggle "H&M Personalized Fashion Recommendations": ``articles.csv`` +
               ``transactions_train.csv`` [+ ``customers.csv``].
``hm_neo4j``   the camelCase Neo4j sample: ``articles.csv`` + ``products.csv`` (joined on
               ``productCode``) + ``order-details.csv`` [+ ``customers.csv``].
``hm_ragrec``  the Parquet sample: ``articles_sample.parquet`` + ``transactions_sample.parquet``
               [+ ``customers_sample.parquet``].

Everything is read with pyarrow and validated with vectorised compute kernels. A bad file raises
:class:`~feature_store.errors.DataFormatError` naming the file, the row and the column. Rows count
as in the file: in CSV the header is row 1 and the first data row is row 2 (the record number; it is
the line number unless a quoted value spans lines); in Parquet the first record is row 1.

The tables come back in the form :class:`~feature_store.dataset.Dataset` documents, with every
column of :mod:`feature_store.schema` present (optional ones absent from the file are null):

* ids and text are pandas ``str`` (Arrow-backed); ``interactions.customer_id`` and
  ``interactions.item_id`` are ``category``: ``item_id``'s categories are exactly ``items.item_id``
  in catalog order (so a code is the item's row in ``items``), ``customer_id``'s are the customer
  ids that occur, sorted;
* ``interactions.timestamp`` is ``datetime64[ns, UTC]``; ``launch_date`` / ``signup_date`` are
  ``datetime64[ns]`` (midnight, no time zone);
* prices are ``float64``, ``stock.quantity`` ``int64``, ``interactions.position`` ``Int64``,
  ``consent_personalization`` ``boolean``; list columns hold Python lists of strings (never null);
* rows keep the order of the file.
"""

from __future__ import annotations

from .load import detect_format, load_dataset
from .spec import AGE_BANDS, FORMATS, LIST_SEPARATOR, ORPHAN_POLICIES, WRITE_FORMATS
from .writing import write_dataset

__all__ = [
    "AGE_BANDS",
    "FORMATS",
    "LIST_SEPARATOR",
    "ORPHAN_POLICIES",
    "WRITE_FORMATS",
    "detect_format",
    "load_dataset",
    "write_dataset",
]
