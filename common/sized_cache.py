"""A least-recently-used cache bounded by the bytes its values hold, not by their number.

Kept answers (common/warehouse/embedded.py) and the gateway's printed bodies
(gateway/answer_bodies.py) range from a few bytes to megabytes, so a count would bound
neither their memory nor their usefulness. cachetools' `LRUCache(getsizeof=…)` sizes a
value once, when it is stored; a kept answer grows as shapes of it are kept beside it
(`grow`), so the size is carried here with the value. Not thread-safe: each user touches
it from one event loop."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class SizedCache(Generic[K, V]):
    """Values by key with their sizes; the least recently used go first once the sizes
    add up past the limit a caller keeps to (given with each call that adds bytes, as a
    shared cache's users may each have their own)."""

    def __init__(self) -> None:
        self._items: OrderedDict[K, tuple[V, int]] = OrderedDict()
        self.total_bytes = 0

    def __len__(self) -> int:
        return len(self._items)

    def get(self, key: K) -> V | None:
        """The value kept under `key`, now the most recently used; None if not kept."""
        item = self._items.get(key)
        if item is None:
            return None
        self._items.move_to_end(key)
        return item[0]

    def peek(self, key: K) -> V | None:
        """The value kept under `key`, its place in line unchanged."""
        item = self._items.get(key)
        return None if item is None else item[0]

    def put(self, key: K, value: V, size: int, limit: int) -> bool:
        """Keeps `value` under `key` (replacing what was there) unless it alone is over
        `limit`; then drops the least recently used until all fit. True when kept."""
        if size > limit:
            return False
        replaced = self._items.pop(key, None)
        if replaced is not None:
            self.total_bytes -= replaced[1]
        self._items[key] = (value, size)
        self.total_bytes += size
        self._trim(limit)
        return key in self._items

    def grow(self, key: K, extra: int, limit: int) -> None:
        """Counts `extra` more bytes to the value under `key` (something was added to it),
        then drops the least recently used — the grown one too, if it alone no longer fits."""
        item = self._items.get(key)
        if item is None:
            return
        self._items[key] = (item[0], item[1] + extra)
        self.total_bytes += extra
        self._trim(limit)

    def clear(self) -> None:
        self._items.clear()
        self.total_bytes = 0

    def _trim(self, limit: int) -> None:
        while self.total_bytes > limit and self._items:
            _, (_, size) = self._items.popitem(last=False)
            self.total_bytes -= size
