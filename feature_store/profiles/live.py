"""LiveProfiles: batch profiles plus online states, the one object the service calls."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, Protocol, runtime_checkable

import orjson

from ..schema import (
    Interaction,
)
from .events import _epoch_seconds
from .online import new_state, revoke_personalization
from .store import CustomerProfiles


@runtime_checkable
class ProfileStateStore(Protocol):
    """Where online states live: the in-process default or a Redis JSON per customer."""

    def get(self, customer_id: str) -> dict[str, Any] | None: ...

    def put(self, customer_id: str, state: Mapping[str, Any]) -> None: ...

    def delete(self, customer_id: str) -> None: ...


class InMemoryProfileStates:
    """Online states in this process: JSON bytes in a dict behind a lock (copies on read).

    At most ``max_customers`` states are kept: the least recently used (read or written) goes
    first; a customer whose state was dropped is re-seeded from the batch profile by
    :class:`LiveProfiles`, like one never seen online.
    """

    def __init__(self, max_customers: int = 100_000) -> None:
        if max_customers < 1:
            raise ValueError(f"max_customers must be >= 1, got {max_customers}")
        self.max_customers = max_customers
        self._lock = threading.Lock()
        self._states: OrderedDict[str, bytes] = OrderedDict()

    def get(self, customer_id: str) -> dict[str, Any] | None:
        with self._lock:
            raw = self._states.get(customer_id)
            if raw is not None:
                self._states.move_to_end(customer_id)
        if raw is None:
            return None
        state: dict[str, Any] = orjson.loads(raw)
        return state

    def put(self, customer_id: str, state: Mapping[str, Any]) -> None:
        raw = orjson.dumps(dict(state))
        with self._lock:
            self._states[customer_id] = raw
            self._states.move_to_end(customer_id)
            while len(self._states) > self.max_customers:
                self._states.popitem(last=False)

    def delete(self, customer_id: str) -> None:
        with self._lock:
            self._states.pop(customer_id, None)

    def __len__(self) -> int:
        with self._lock:
            return len(self._states)

    def __contains__(self, customer_id: object) -> bool:
        with self._lock:
            return customer_id in self._states


class LiveProfiles:
    """Batch profiles + online states: the one object the service needs.

    * ``GET /v1/customers/{id}/profile`` → :meth:`profile` (None → 404 unknown customer);
    * ``POST /v1/events`` (after the event log and online store) → :meth:`apply` per event;
    * ``GET /v1/segments`` → ``live.batch.counts()``; ``GET /v1/segments/{name}/customers`` →
      ``live.batch.list_segment(name, cursor=..., limit=..., min_churn_risk=...)``;
    * ``PUT /v1/customers/{id}/consent`` → :meth:`set_consent`;
    * ``DELETE /v1/customers/{id}`` → :meth:`erase`;
    * a new bundle → :meth:`swap` (states seeded from an older batch are re-seeded lazily).
    """

    def __init__(self, batch: CustomerProfiles, states: ProfileStateStore | None = None) -> None:
        self.batch = batch
        self.states: ProfileStateStore = states if states is not None else InMemoryProfileStates()

    def current(self, customer_id: str, online: dict[str, Any] | None) -> dict[str, Any] | None:
        """The state to serve: ``online`` (a state read from the profile-state store) when it
        builds on the served batch, else the batch's own state (None for an unknown customer)."""
        if online is not None and online.get("batch_as_of") == self.batch.as_of_s:
            return online
        return self.batch.state(customer_id)

    def _current(self, customer_id: str) -> dict[str, Any] | None:
        return self.current(customer_id, self.states.get(customer_id))

    def profile(self, customer_id: str, now: datetime) -> dict[str, Any] | None:
        return self.profile_from(customer_id, self.states.get(customer_id), now)

    def profile_from(
        self, customer_id: str, online: dict[str, Any] | None, now: datetime
    ) -> dict[str, Any] | None:
        """The rendered profile from an online state already read (see :meth:`current`)."""
        state = self.current(customer_id, online)
        return None if state is None else self.batch.render(state, now)

    def apply(
        self,
        event: Interaction,
        item_attrs: Mapping[str, Any] | None,
        now: datetime,
        *,
        personalization: bool | None = None,
    ) -> dict[str, Any]:
        """Update the customer's state with ``event``; returns the rendered profile.

        ``personalization`` (when the caller knows the consent) is written into the state
        first; without consent sizes and affinities are not learned from the event.
        """
        state = self._current(event.customer_id)
        if state is None:
            state = new_state(
                event.customer_id,
                self.batch.as_of_s,
                consent=True if personalization is None else personalization,
            )
        elif personalization is False and state.get("consent", True):
            state = revoke_personalization(state)
        elif personalization is True:
            state = {**state, "consent": True}
        updated = self.batch.apply_event(state, event, item_attrs, now)
        self.states.put(event.customer_id, updated)
        return self.batch.render(updated, now)

    def replay(
        self,
        customer_id: str,
        events: Sequence[Interaction],
        item_lookup: Mapping[str, Mapping[str, Any]],
        now: datetime,
    ) -> dict[str, Any] | None:
        """Re-seed the state from the batch and apply ``events`` dated after the batch, in time
        order (e.g. ``online_store.recent(customer_id)`` after a bundle swap)."""
        state = self.batch.state(customer_id)
        later = sorted(
            (e for e in events if _epoch_seconds(e.timestamp) > self.batch.as_of_s),
            key=lambda e: e.timestamp,
        )
        if state is None and not later:
            return None
        for event in later:
            state = self.batch.apply_event(state, event, item_lookup.get(event.item_id), now)
        assert state is not None
        self.states.put(customer_id, state)
        return self.batch.render(state, now)

    def set_consent(self, customer_id: str, personalization: bool) -> None:
        """Record consent; revoking clears sizes and affinities in the batch and online."""
        state = self._current(customer_id)
        if not personalization:
            self.batch.revoke_personalization(customer_id)
            if state is not None:
                self.states.put(customer_id, revoke_personalization(state))
        elif state is not None:
            self.states.put(customer_id, {**state, "consent": True})

    def erase(self, customer_id: str) -> None:
        """Remove the customer from the online states and the batch profiles."""
        self.states.delete(customer_id)
        self.batch.erase(customer_id)

    def swap(self, batch: CustomerProfiles) -> None:
        """Serve a new batch (states seeded from the previous one are ignored from now on)."""
        self.batch = batch
