"""One memory budget for decoded vectors, shared by every channel's index: least recently used entries leave first.

Entries carry the index `version` they were read at. Every writer (the bot, or the CLI in another process) bumps
that column in the same transaction as its change, so comparing it on each lookup is what invalidates across
processes; nothing here needs to hear about changes.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Hashable
from typing import Protocol

log = logging.getLogger(__name__)


class Sized(Protocol):
    @property
    def nbytes(self) -> int: ...


class VectorCache:
    """LRU of loaded index matrices bounded by `budget_bytes` in total. An entry larger than the whole budget is
    not kept (the caller still uses it for the search at hand)."""

    def __init__(self, budget_bytes: int) -> None:
        if budget_bytes < 0:
            raise ValueError("budget_bytes must be >= 0")
        self.budget_bytes = budget_bytes
        self._entries: OrderedDict[Hashable, tuple[int, Sized]] = OrderedDict()
        self._used = 0
        self._lock = threading.Lock()  # scorers run loads in worker threads

    @property
    def used_bytes(self) -> int:
        return self._used

    def get(self, key: Hashable, version: int) -> Sized | None:
        """The entry stored under `key` if it was read at `version`; a stale one is dropped."""
        with self._lock:
            found = self._entries.get(key)
            if found is None:
                return None
            if found[0] != version:
                self._remove(key)
                return None
            self._entries.move_to_end(key)
            return found[1]

    def put(self, key: Hashable, value: Sized, version: int) -> None:
        with self._lock:
            if key in self._entries:
                self._remove(key)
            size = value.nbytes
            if size > self.budget_bytes:
                log.info("an index of %.0f MiB exceeds the vector cache budget: not kept", size / 2**20)
                return
            while self._entries and self._used + size > self.budget_bytes:
                self._remove(next(iter(self._entries)))
            self._entries[key] = (version, value)
            self._used += size

    def _remove(self, key: Hashable) -> None:
        _, value = self._entries.pop(key)
        self._used -= value.nbytes
