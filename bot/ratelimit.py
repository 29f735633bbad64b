"""Per-user question limits: a sliding window of recent question times."""

from __future__ import annotations

import time
from collections import deque


class SlidingWindowLimiter:
    """Allows `limit` events per `window_s` seconds per key; remembers at most `max_keys` keys."""

    def __init__(self, limit: int, window_s: float = 60.0, max_keys: int = 10_000) -> None:
        self._limit = limit
        self._window = window_s
        self._max_keys = max_keys
        self._events: dict[str, deque[float]] = {}

    def try_acquire(self, key: str, now: float | None = None) -> float:
        """Record an event and return 0, or return the seconds to wait (nothing recorded)."""
        now = time.monotonic() if now is None else now
        events = self._events.setdefault(key, deque())
        while events and now - events[0] >= self._window:
            events.popleft()
        if len(events) >= self._limit:
            return self._window - (now - events[0])
        events.append(now)
        if len(self._events) > self._max_keys:  # forget the quietest users first
            for stale in [k for k, v in self._events.items() if not v][: len(self._events) - self._max_keys]:
                del self._events[stale]
            while len(self._events) > self._max_keys:
                del self._events[next(iter(self._events))]
        return 0.0
