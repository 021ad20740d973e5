"""The sandbox's clock: starts at the scenario's `as_of` and runs on with wall time.

Statuses, periods and write stamps are computed from it, so a test can freeze it for exact
assertions, or move it to see a scheduled cancel take effect.
"""

from __future__ import annotations

import threading
import time
from datetime import datetime, timedelta


class Clock:
    def __init__(self, start: datetime, frozen: bool = False):
        self._lock = threading.Lock()
        self._start = start
        self._t0 = time.monotonic()
        self.frozen = frozen

    def now(self) -> datetime:
        with self._lock:
            if self.frozen:
                return self._start
            return self._start + timedelta(seconds=time.monotonic() - self._t0)

    def set(self, at: datetime) -> None:
        """Jump to `at`; a running clock runs on from there."""
        with self._lock:
            self._start, self._t0 = at, time.monotonic()

    def advance(self, delta: timedelta) -> None:
        self.set(self.now() + delta)
