"""Per-table write buffers that flush to the warehouse at a row count, a byte size or
an age, whichever comes first.

Rows arrive already encoded as JSONEachRow lines, so a flush is one insert of joined
bytes. A failed insert keeps its rows at the head of the buffer and is retried with
exponential backoff and jitter; callers that asked to wait (`wait=true`) are answered
only once their rows are in the warehouse."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import structlog

from common.warehouse.base import Warehouse

log = structlog.get_logger("batcher")

RETRY_INITIAL_SECONDS = 0.2
RETRY_MAX_SECONDS = 30.0


@dataclass(frozen=True)
class FlushPolicy:
    """When a buffer is written out."""

    max_rows: int = 10_000
    max_bytes: int = 4 * 1024 * 1024
    max_age: float = 1.0


@dataclass
class _Chunk:
    """Rows appended by one call, and the future that call may wait on."""

    lines: list[bytes]
    size: int
    done: asyncio.Future[None]


@dataclass
class _Buffer:
    table: str
    columns: tuple[str, ...]
    chunks: list[_Chunk] = field(default_factory=list)
    rows: int = 0
    size: int = 0
    oldest: float = 0.0
    flush_lock: asyncio.Lock = field(default_factory=asyncio.Lock)


class Batcher:
    """Buffers rows per table and writes them to the warehouse in batches."""

    def __init__(self, warehouse: Warehouse, policy: FlushPolicy) -> None:
        self._warehouse = warehouse
        self._policy = policy
        self._buffers: dict[str, _Buffer] = {}
        self._ticker: asyncio.Task[None] | None = None
        self._flushes: set[asyncio.Task[None]] = set()
        self._closing = False
        self.healthy = True

    async def start(self) -> None:
        self._ticker = asyncio.create_task(self._tick(), name="batcher-ticker")

    @property
    def buffered_rows(self) -> int:
        return sum(b.rows for b in self._buffers.values())

    def append(
        self, table: str, columns: Sequence[str], lines: list[bytes]
    ) -> asyncio.Future[None]:
        """Queues rows for `table`; the returned future resolves once they are written.
        Callers that do not wait may drop it: the rows stay queued either way."""
        if self._closing:
            raise RuntimeError("the batcher is shutting down")
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if not lines:
            done.set_result(None)
            return done
        buffer = self._buffers.get(table)
        if buffer is None:
            buffer = self._buffers[table] = _Buffer(table, tuple(columns))
        size = sum(len(line) + 1 for line in lines)
        if not buffer.chunks:
            buffer.oldest = time.monotonic()
        buffer.chunks.append(_Chunk(lines, size, done))
        buffer.rows += len(lines)
        buffer.size += size
        if buffer.rows >= self._policy.max_rows or buffer.size >= self._policy.max_bytes:
            self._spawn_flush(buffer)
        return done

    def _spawn_flush(self, buffer: _Buffer) -> None:
        task = asyncio.create_task(self._flush(buffer), name=f"flush-{buffer.table}")
        self._flushes.add(task)
        task.add_done_callback(self._flushes.discard)

    async def _tick(self) -> None:
        # Checks ages a few times per interval so a row waits at most ~1.25 × max_age.
        period = max(self._policy.max_age / 4, 0.01)
        while True:
            await asyncio.sleep(period)
            now = time.monotonic()
            for buffer in list(self._buffers.values()):
                if buffer.chunks and now - buffer.oldest >= self._policy.max_age:
                    self._spawn_flush(buffer)

    async def _flush(self, buffer: _Buffer) -> None:
        # One flush per table at a time keeps a table's rows in arrival order and
        # stops a retry storm from stacking up parallel inserts.
        async with buffer.flush_lock:
            delay = RETRY_INITIAL_SECONDS
            while buffer.chunks:
                chunks = self._take(buffer)
                body = b"\n".join(line for chunk in chunks for line in chunk.lines)
                rows = sum(len(chunk.lines) for chunk in chunks)
                try:
                    await self._warehouse.insert_json_rows(buffer.table, buffer.columns, body)
                except Exception as exc:  # noqa: BLE001 - any failure is retried
                    self._put_back(buffer, chunks)
                    self.healthy = False
                    log.warning(
                        "flush failed; will retry",
                        table=buffer.table,
                        rows=rows,
                        retry_in=round(delay, 2),
                        error=str(exc)[:500],
                    )
                    await asyncio.sleep(delay * random.uniform(0.5, 1.5))  # noqa: S311
                    delay = min(delay * 2, RETRY_MAX_SECONDS)
                    continue
                self.healthy = True
                delay = RETRY_INITIAL_SECONDS
                log.debug("flushed", table=buffer.table, rows=rows, bytes=len(body))
                for chunk in chunks:
                    if not chunk.done.done():
                        chunk.done.set_result(None)

    def _take(self, buffer: _Buffer) -> list[_Chunk]:
        """Takes chunks from the head of the buffer, up to about one batch."""
        taken: list[_Chunk] = []
        rows = size = 0
        while buffer.chunks and (
            not taken or (rows < self._policy.max_rows and size < self._policy.max_bytes)
        ):
            chunk = buffer.chunks.pop(0)
            taken.append(chunk)
            rows += len(chunk.lines)
            size += chunk.size
        buffer.rows -= rows
        buffer.size -= size
        buffer.oldest = time.monotonic()
        return taken

    @staticmethod
    def _put_back(buffer: _Buffer, chunks: list[_Chunk]) -> None:
        buffer.chunks[:0] = chunks
        buffer.rows += sum(len(c.lines) for c in chunks)
        buffer.size += sum(c.size for c in chunks)

    async def flush_all(self) -> None:
        """Writes out everything buffered now (and waits for flushes in flight)."""
        await asyncio.gather(*(self._flush(b) for b in list(self._buffers.values())))
        if self._flushes:
            await asyncio.gather(*list(self._flushes), return_exceptions=True)

    async def close(self, deadline: float | None = None) -> None:
        """Stops accepting rows and flushes everything buffered. With a deadline (seconds), rows
        still unwritten when it expires are reported in the log."""
        self._closing = True
        if self._ticker is not None:
            self._ticker.cancel()
            await asyncio.gather(self._ticker, return_exceptions=True)
        try:
            await asyncio.wait_for(self.flush_all(), deadline)
        except TimeoutError:
            log.error("shutdown flush timed out; rows not written", rows=self.buffered_rows)
            for task in list(self._flushes):
                task.cancel()
