"""Online store: what the service needs to know about customers and items between two trainings.

Two implementations pass the same contract tests (``tests/test_online_store.py``):
:class:`InMemoryOnlineStore` (the embedded default) and :class:`RedisOnlineStore` (shared by replicas).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, Protocol, runtime_checkable

from .schema import Interaction


@runtime_checkable
class OnlineStore(Protocol):
    """Recent interactions per customer, purchased set, item lookups."""

    def record(self, events: Sequence[Interaction]) -> None:
        """Apply accepted events: append to the customer's recent list (newest first, capped),
        add purchases to (and remove returns from) the purchased set."""
        ...

    def recent(self, customer_id: str, n: int = 50) -> list[Interaction]:
        """The customer's ``n`` most recent interactions, newest first."""
        ...

    def purchased(self, customer_id: str) -> set[str]:
        """Item ids the customer bought (online, since the store was filled) and did not return."""
        ...

    def put_items(self, items: Iterable[dict[str, Any]]) -> None:
        """Insert or replace item records (each has ``item_id``)."""
        ...

    def get_item(self, item_id: str) -> dict[str, Any] | None:
        ...

    def get_items(self, item_ids: Sequence[str]) -> list[dict[str, Any] | None]:
        ...

    def erase_customer(self, customer_id: str) -> None:
        """Remove everything the store holds about the customer."""
        ...

    def ping(self) -> bool:
        """True when the backend answers."""
        ...
