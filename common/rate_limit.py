"""Per-token rate limits: a fixed one-minute window per token, per process (each replica
counts on its own, so a deployment's effective limit is the per-token limit times the
replicas a client reaches)."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

WINDOW_SECONDS = 60.0


@dataclass(frozen=True)
class Decision:
    """Whether a request may proceed, and the figures for the X-RateLimit-* headers."""

    allowed: bool
    limit: int
    remaining: int
    reset: int  # seconds until the window starts over

    def headers(self) -> tuple[tuple[str, str], ...]:
        return (
            ("x-ratelimit-limit", str(self.limit)),
            ("x-ratelimit-remaining", str(self.remaining)),
            ("x-ratelimit-reset", str(self.reset)),
        )


class RateLimiter:
    """Counts requests per token name in the current window."""

    def __init__(self, clock=time.monotonic) -> None:
        self._clock = clock
        self._windows: dict[str, tuple[float, int]] = {}

    def take(self, name: str, limit: int) -> Decision:
        now = self._clock()
        start, used = self._windows.get(name, (now, 0))
        if now - start >= WINDOW_SECONDS:
            start, used = now, 0
        reset = max(1, math.ceil(start + WINDOW_SECONDS - now))
        if used >= limit:
            self._windows[name] = (start, used)
            return Decision(False, limit, 0, reset)
        self._windows[name] = (start, used + 1)
        return Decision(True, limit, limit - used - 1, reset)
