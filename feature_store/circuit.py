"""A circuit breaker for a backend that can become unreachable (Redis): after a failure, callers
bypass the backend at once instead of each waiting for a timeout; after ``retry_interval`` one
caller probes it, and a success closes the circuit again.

The one implementation: the Redis-backed stores (through
:func:`feature_store.online_store.redis_errors`, one breaker per Redis server, see
:func:`breaker_for`) and the Redis response cache (``app/cache.py``) use it.
"""

from __future__ import annotations

import threading
import time
from enum import Enum
from typing import Final


class Admission(Enum):
    """What a caller may do now."""

    CLOSED = "closed"  # the backend is up: use it
    PROBE = "probe"  # the backend was down and this caller probes it (others still bypass it)
    OPEN = "open"  # the backend is down: do not use it


class CircuitBreaker:
    """Thread-safe: ``admit()`` before using the backend, then ``succeeded()`` or ``failed()``."""

    def __init__(self, retry_interval: float = 1.0) -> None:
        if retry_interval < 0:
            raise ValueError(f"retry_interval must be >= 0, got {retry_interval}")
        self.retry_interval = retry_interval
        self._lock = threading.Lock()
        self._down_until: float | None = None  # monotonic time of the next probe; None = closed
        self._bypassed = 0  # calls refused while open (this outage)

    def admit(self) -> Admission:
        with self._lock:
            if self._down_until is None:
                return Admission.CLOSED
            now = time.monotonic()
            if now < self._down_until:
                self._bypassed += 1
                return Admission.OPEN
            self._down_until = now + self.retry_interval  # the others bypass while this probes
            return Admission.PROBE

    def failed(self) -> bool:
        """Open (or keep open) the circuit; True when it was closed (a new outage)."""
        with self._lock:
            was_closed = self._down_until is None
            if was_closed:
                self._bypassed = 0
            self._down_until = time.monotonic() + self.retry_interval
            return was_closed

    def succeeded(self) -> int | None:
        """Close the circuit; when it was open, the number of calls bypassed during the outage
        (else ``None``)."""
        with self._lock:
            if self._down_until is None:
                return None
            self._down_until = None
            bypassed, self._bypassed = self._bypassed, 0
            return bypassed

    @property
    def is_open(self) -> bool:
        with self._lock:
            return self._down_until is not None


#: How long the Redis-backed stores bypass an unreachable Redis before probing it again.
STORE_RETRY_INTERVAL: Final = 1.0

_breakers: dict[str, CircuitBreaker] = {}
_breakers_lock = threading.Lock()


def breaker_for(where: str) -> CircuitBreaker:
    """The breaker of one backend (e.g. a Redis URL), shared by every store that uses it."""
    with _breakers_lock:
        breaker = _breakers.get(where)
        if breaker is None:
            breaker = _breakers[where] = CircuitBreaker(STORE_RETRY_INTERVAL)
        return breaker
