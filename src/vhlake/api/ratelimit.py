"""Per-key request rates: a token bucket for each key id."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable


class TokenBuckets:
    """Each key may make ``burst`` requests at once, refilled at ``rate_per_s``.

    Only authenticated keys get a bucket, so there are as many as there are live keys."""

    def __init__(self, rate_per_s: float, burst: int, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._rate, self._burst, self._clock = rate_per_s, float(burst), clock
        self._buckets: dict[str, tuple[float, float]] = {}  # key id -> (tokens left, as of when)
        self._lock = threading.Lock()  # the key checks run in the threadpool

    def take(self, key_id: str) -> float:
        """Spend one of ``key_id``'s tokens: 0 when it had one, else the seconds until it will."""
        with self._lock:
            now = self._clock()
            tokens, then = self._buckets.get(key_id, (self._burst, now))
            tokens = min(self._burst, tokens + (now - then) * self._rate)
            granted = tokens >= 1.0
            self._buckets[key_id] = (tokens - 1.0 if granted else tokens, now)
            return 0.0 if granted else (1.0 - tokens) / self._rate
