"""Every showing of a list gets its ``recommendation_id`` and its served-list record here.

A surface that computes a list returns a :class:`Served`: the body (rendered without
``recommendation_id``, so it can be cached) and the record *template*
(:func:`feature_store.served_lists.template`: surface, segment, variant, customer, model version
and per position the item, its source and propensity). :meth:`ServedLists.show` makes each showing
— fresh or from the cache — a new id, the full record (:func:`feature_store.served_lists.stamp`),
kept in the attribution store for its TTL (one write), queued for the durable impression log (off
the request thread), and counted as impressions per source, surface and variant (and, for a list
the bandit ranked, as impressions of its arms: :meth:`app.bandit.BanditStage.shown`). The response
cache stores the template beside the body (:func:`pack` / :func:`unpack`), so a cache hit is
recorded without recomputing anything.

A failing store or a full log queue never fails the response: it is logged and counted
(``lookbook_served_list_errors_total``).
"""

from __future__ import annotations

import logging
import struct
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

import orjson

from app.bandit import BanditStage
from app.metrics import Metrics
from app.outage_log import OutageWarning
from app.rendering import new_recommendation_id, with_recommendation_id
from feature_store.attribution_store import AttributionStore, Credit
from feature_store.errors import StoreUnavailable
from feature_store.impression_log import ImpressionLog
from feature_store.redis_batch import Pending, RedisBatch
from feature_store.served_lists import stamp

logger = logging.getLogger("lookbook.app")
_store_down = OutageWarning(logger)

# Cached value with a record template: 0x00, 4-byte big-endian template length, template, body.
# A plain body (a JSON object, starting with "{") has no template.
_MARK: Final = b"\x00"
_LENGTH: Final = struct.Struct(">I")
_MEMO_TEMPLATES: Final = 4096  # distinct templates remembered (cleared when full)


@dataclass(frozen=True, slots=True)
class Served:
    """A computed list: its body without ``recommendation_id`` and its record template (None:
    a list that is not recorded)."""

    body: bytes
    template: bytes | None = None


def pack(served: Served) -> bytes:
    """The bytes the response cache keeps for a list (the body alone when it has no template)."""
    if served.template is None:
        return served.body
    return _MARK + _LENGTH.pack(len(served.template)) + served.template + served.body


def unpack(raw: bytes) -> Served:
    """The inverse of :func:`pack`."""
    if not raw.startswith(_MARK):
        return Served(raw)
    (length,) = _LENGTH.unpack_from(raw, 1)
    start = 1 + _LENGTH.size
    return Served(raw[start + length :], raw[start : start + length])


class ServedLists:
    """Gives each showing its id and records it (store, impression log, counters)."""

    def __init__(
        self,
        store: AttributionStore,
        log: ImpressionLog | None,
        metrics: Metrics,
        *,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
        bandit: BanditStage | None = None,
    ) -> None:
        self.store = store
        self.bandit = bandit  # counts the showings of lists it ranked as impressions
        self.log = log
        self.metrics = metrics
        self._now = now
        # Per distinct template (a cached list is shown many times): its impressions per credit
        # and their Prometheus children, so a showing neither parses JSON nor resolves labels.
        self._by_template: dict[bytes, tuple[str | None, list[tuple[Credit, int, Any]]]] = {}

    def show(self, served: Served, batch: RedisBatch | None = None) -> bytes:
        """The body with a fresh ``recommendation_id``; its record kept when it has a template
        (with a ``batch``, queued on it when the store shares its client: kept once the caller
        has executed it — before the response is returned)."""
        recommendation_id = new_recommendation_id()
        if served.template is not None:
            self.record(recommendation_id, served.template, batch)
        return with_recommendation_id(served.body, recommendation_id)

    def record(
        self, recommendation_id: str, template: bytes, batch: RedisBatch | None = None
    ) -> None:
        record = stamp(template, recommendation_id, self._now())
        customer_id, counted = self._counted(template)
        try:
            queued = self.store.put_served(
                recommendation_id, record, {c: n for c, n, _ in counted}, customer_id, batch=batch
            )
        except StoreUnavailable as exc:
            self._not_kept(recommendation_id, exc)
        else:
            if queued is not None and batch is not None:
                batch.after(lambda: self._check_kept(recommendation_id, queued))
        if self.log is not None and not self.log.append(record):
            self.metrics.served_list_errors.labels(where="log").inc()
        for _, n, child in counted:
            child.inc(n)
        if self.bandit is not None:
            self.bandit.shown(template, batch)

    def _check_kept(self, recommendation_id: str, queued: Pending[None]) -> None:
        try:
            queued.result()
        except StoreUnavailable as exc:
            self._not_kept(recommendation_id, exc)

    def _not_kept(self, recommendation_id: str, exc: StoreUnavailable) -> None:
        self.metrics.served_list_errors.labels(where="store").inc()
        _store_down.warn("served-list record %s not kept online: %s", recommendation_id, exc)

    def _counted(self, template: bytes) -> tuple[str | None, list[tuple[Credit, int, Any]]]:
        """The customer a template names, and its impressions per credit with their Prometheus
        children (memoised per distinct template)."""
        found = self._by_template.get(template)
        if found is None:
            customer_id, impressions = impressions_of(template)
            found = (
                customer_id,
                [
                    (
                        credit,
                        n,
                        self.metrics.impressions.labels(
                            source=credit[0], surface=credit[1], variant=credit[2] or "none"
                        ),
                    )
                    for credit, n in impressions.items()
                ],
            )
            if len(self._by_template) >= _MEMO_TEMPLATES:
                self._by_template.clear()
            self._by_template[template] = found
        return found

    def close(self) -> None:
        """Write what the impression log still holds (the app's shutdown)."""
        if self.log is not None:
            self.log.close()


def impressions_of(template: bytes) -> tuple[str | None, dict[Credit, int]]:
    """The customer a record template names, and its positions shown per credit (source,
    surface, variant)."""
    data = orjson.loads(template)
    surface: str = data["surface"]
    variant: str | None = data["variant"]
    out: dict[Credit, int] = {}
    for position in data["items"]:
        credit = (position["source"], surface, variant)
        out[credit] = out.get(credit, 0) + 1
    return data["customer_id"], out
