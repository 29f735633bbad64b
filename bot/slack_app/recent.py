"""What the Slack bot remembers for a while: a bounded map that forgets its oldest entries."""

from __future__ import annotations

from collections import OrderedDict
from typing import Any


class _Recent:
    """A bounded map that forgets its oldest entries (event ids seen, threads the bot is in, user lookups)."""

    def __init__(self, size: int) -> None:
        self._size = size
        self._items: OrderedDict[Any, Any] = OrderedDict()

    def get(self, key: Any, default: Any = None) -> Any:
        return self._items.get(key, default)

    def put(self, key: Any, value: Any = True) -> None:
        self._items[key] = value
        self._items.move_to_end(key)
        while len(self._items) > self._size:
            self._items.popitem(last=False)

    def __contains__(self, key: Any) -> bool:
        return key in self._items
