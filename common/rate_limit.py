"""Per-token rate limits: a fixed window per token, per process — a minute for tokens'
requests-per-minute limits, a second for a JWT's `limits.rps`. Every service of a process
shares its RateLimiters, so a token's limit counts all its calls to that process (each
replica counts on its own: a deployment's effective limit is the per-token limit times the
replicas a client reaches)."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

WINDOW_SECONDS = 60.0
# Windows are kept for authenticated tokens only, so they are few; past this many, the
# expired ones (revoked or idle tokens) are dropped.
_PRUNE_AT = 4096


@dataclass(frozen=True)
class Decision:
    """Whether a request may proceed, and the figures for the X-RateLimit-* headers."""

    allowed: bool
    limit: int
    remaining: int
    reset: int  # seconds until the window starts over
    period: str = "minute"  # what `limit` counts requests per, for messages

    def headers(self) -> tuple[tuple[str, str], ...]:
        return (
            ("x-ratelimit-limit", str(self.limit)),
            ("x-ratelimit-remaining", str(self.remaining)),
            ("x-ratelimit-reset", str(self.reset)),
        )


class RateLimiter:
    """Counts requests per key (a token's identity, see Principal.key) in the current
    window of `window` seconds."""

    def __init__(
        self, clock: Callable[[], float] = time.monotonic, window: float = WINDOW_SECONDS
    ) -> None:
        self._clock = clock
        self._window = window
        self._period = {WINDOW_SECONDS: "minute", 1.0: "second"}.get(window, f"{window:g} s")
        self._windows: dict[str, tuple[float, int]] = {}

    def take(self, key: str, limit: int) -> Decision:
        now = self._clock()
        start, used = self._windows.get(key, (now, 0))
        if now - start >= self._window:
            start, used = now, 0
        reset = max(1, math.ceil(start + self._window - now))
        if used >= limit:
            self._windows[key] = (start, used)
            return Decision(False, limit, 0, reset, self._period)
        if key not in self._windows and len(self._windows) >= _PRUNE_AT:
            self._prune(now)
        self._windows[key] = (start, used + 1)
        return Decision(True, limit, limit - used - 1, reset, self._period)

    def _prune(self, now: float) -> None:
        self._windows = {
            key: window for key, window in self._windows.items() if now - window[0] < self._window
        }
