"""How many ad-hoc queries may be in the engine at once: in all, and per token. Past either
bound a query is refused at once (429 with Retry-After) rather than queued, so a burst of
heavy queries from one token cannot build a queue that others wait behind."""

from __future__ import annotations

import contextlib
from collections import Counter
from collections.abc import Iterator


class Busy(RuntimeError):
    """No room for another query now; the message says which bound was reached."""


class Admission:
    """Counts queries running or waiting, in all and by key (a token's digest)."""

    def __init__(self, total: int, per_key: int) -> None:
        self.total = total
        self.per_key = per_key
        self._running = 0
        self._by_key: Counter[str] = Counter()

    @contextlib.contextmanager
    def admit(self, key: str) -> Iterator[None]:
        """Holds a place for one query of `key` while the block runs; raises Busy when
        there is none."""
        if self._by_key[key] >= self.per_key:
            raise Busy(
                f"this token already has {self.per_key} Query API queries in flight; "
                "retry when one finishes"
            )
        if self._running >= self.total:
            raise Busy(f"{self.total} Query API queries are in flight; retry shortly")
        self._running += 1
        self._by_key[key] += 1
        try:
            yield
        finally:
            self._running -= 1
            self._by_key[key] -= 1
            if not self._by_key[key]:
                del self._by_key[key]
