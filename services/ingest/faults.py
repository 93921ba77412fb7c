"""Crash points for the durability tests: `PIPIT_CRASH_AT=<point>:<n>` makes the process
SIGKILL itself the n-th time it reaches `<point>`, so a test can stop it exactly between
two steps (for example after a warehouse insert, before the log is truncated). Unset in
production, where `crash_point` is a dictionary lookup and nothing else."""

from __future__ import annotations

import os
import signal

_ARMED: dict[str, int] = {}
for spec in filter(None, os.environ.get("PIPIT_CRASH_AT", "").split(",")):
    point, _, count = spec.partition(":")
    _ARMED[point.strip()] = int(count or 1)

POINTS = ("after_wal_append", "after_flush_intent", "after_insert")


def crash_point(point: str) -> None:
    """Dies here, without cleanup, when this point is armed and its count is reached."""
    if point not in _ARMED:
        return
    _ARMED[point] -= 1
    if _ARMED[point] <= 0:
        os.kill(os.getpid(), signal.SIGKILL)
