"""The one exception tree of Lookbook.

Domain code raises these; only the API edge (:mod:`app.errors`) turns them into HTTP responses,
and only the command line turns them into exit messages.

    LookbookError
    ├── DataFormatError        a data file is malformed (names file, row and column)
    ├── InvalidRequest         a request parameter is out of range (422 at the API edge)
    ├── InvalidEvent           an interaction event failed validation
    ├── UnknownItem            an item id that the loaded catalog does not know
    ├── UnknownCustomer        a customer id that nothing knows
    ├── UnsupportedOperation   a model asked for something it does not do
    ├── BundleError            a model bundle is missing, incomplete or corrupt
    │   └── ModelNotLoaded     the service has no bundle loaded yet
    └── StoreUnavailable       the online store / cache backend / event store cannot be reached
        └── SchemaOutdated     the event database's schema is older than this release needs
"""

from __future__ import annotations


class LookbookError(Exception):
    """Base of every error Lookbook raises on purpose."""

    code = "lookbook_error"


class DataFormatError(LookbookError):
    """A data file is malformed. The message names the file, and the row and column when known."""

    code = "data_format_error"

    def __init__(
        self,
        message: str,
        *,
        file: str | None = None,
        row: int | None = None,
        column: str | None = None,
    ) -> None:
        self.file = file
        self.row = row
        self.column = column
        where = []
        if file is not None:
            where.append(f"file {file}")
        if row is not None:
            where.append(f"row {row}")
        if column is not None:
            where.append(f"column {column!r}")
        prefix = ", ".join(where)
        super().__init__(f"{prefix}: {message}" if prefix else message)


class InvalidRequest(LookbookError):
    code = "validation_error"


class InvalidEvent(LookbookError):
    code = "invalid_event"


class UnknownItem(LookbookError):
    code = "unknown_item"

    def __init__(self, item_id: str) -> None:
        self.item_id = item_id
        super().__init__(f"unknown item {item_id!r}")


class UnknownCustomer(LookbookError):
    code = "unknown_customer"

    def __init__(self, customer_id: str) -> None:
        self.customer_id = customer_id
        super().__init__(f"unknown customer {customer_id!r}")


class UnsupportedOperation(LookbookError):
    code = "unsupported_operation"


class BundleError(LookbookError):
    code = "bundle_error"


class ModelNotLoaded(BundleError):
    code = "model_not_loaded"


class StoreUnavailable(LookbookError):
    code = "store_unavailable"


class SchemaOutdated(StoreUnavailable):
    """The PostgreSQL event store's schema is not at the version this release expects: run
    ``lookbook db upgrade``."""

    code = "schema_outdated"
