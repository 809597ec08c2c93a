"""Rate-limited warnings for a backend outage: during an outage every request would log the
same failure; :class:`OutageWarning` logs it at most once per ``interval`` seconds per call site,
with the number of like warnings held back since the last one."""

from __future__ import annotations

import logging
import threading
import time


class OutageWarning:
    """``warn(...)`` like ``logger.warning(...)``, at most once per ``interval`` seconds."""

    def __init__(self, logger: logging.Logger, interval: float = 30.0) -> None:
        self.logger = logger
        self.interval = interval
        self._lock = threading.Lock()
        self._last: float | None = None
        self._suppressed = 0

    def warn(self, message: str, *args: object) -> None:
        now = time.monotonic()
        with self._lock:
            if self._last is not None and now - self._last < self.interval:
                self._suppressed += 1
                return
            self._last = now
            suppressed, self._suppressed = self._suppressed, 0
        if suppressed:
            self.logger.warning(message + " (%d like warnings held back)", *args, suppressed)
        else:
            self.logger.warning(message, *args)
