"""A coroutine run as a task for the duration of a block: the followers (deployments,
tokens, a gateway's routes) that poll beside a server and must stop with it."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Coroutine
from typing import Any


@contextlib.asynccontextmanager
async def in_background(
    coroutine: Coroutine[Any, Any, Any], name: str
) -> AsyncIterator[asyncio.Task]:
    """Runs `coroutine` as a task named `name` until the block ends, then cancels it and
    waits for it, so nothing it was doing outlives the block."""
    task = asyncio.create_task(coroutine, name=name)
    try:
        yield task
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
