"""Per-table write buffers over the write-ahead log: rows are logged (fsync'd) when they
are accepted, then flushed to the warehouse at a row count, a byte size or an age,
whichever comes first.

Each flush is logged as an intent under a deduplication token the log makes (unique for
all time: see wal.py), then inserted under that token and retried (capped exponential
back-off with full jitter) until the warehouse takes it, or set aside (dead_letter.py)
when the warehouse refuses it for good (common/warehouse/failures.py). Only then is it
released from the log. After
a crash the log replays the same flushes under the same tokens, so a flush that reached
the warehouse before the crash is dropped by the warehouse instead of counted twice. A
token is only ever logged with the batches it was made for: an intent whose write fails
is written again as it was, never regrouped under a new token."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import structlog
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, wait_random_exponential

from common.config import Settings
from common.warehouse.base import Warehouse, WarehouseError
from common.warehouse.failures import permanent
from services.ingest import metrics
from services.ingest.blocks import Block, join
from services.ingest.dead_letter import DeadLetters, dead_letter_directory
from services.ingest.faults import crash_point
from services.ingest.wal import Batch, DataRecord, FlushRecord, WriteAheadLog

log = structlog.get_logger("batcher")

RETRY_INITIAL_SECONDS = 0.2


@dataclass(frozen=True)
class FlushPolicy:
    """When a buffer is written out, and how a failed write is tried again: after a wait
    drawn between 0 and `retry_initial` × 2^(tries - 1), at most `retry_max` seconds."""

    max_rows: int = Settings.flush_rows
    max_bytes: int = Settings.flush_bytes
    max_age: float = Settings.flush_interval
    retry_initial: float = RETRY_INITIAL_SECONDS
    retry_max: float = Settings.flush_retry_max

    def retrying(self, on_retry: Callable[[RetryCallState], None]) -> AsyncRetrying:
        """Tries until success or a failure no retry can mend (re-raised as it is); only
        exceptions are retried, so a cancellation still cancels."""
        return AsyncRetrying(
            retry=retry_if_exception(lambda e: isinstance(e, Exception) and not permanent(e)),
            wait=wait_random_exponential(multiplier=self.retry_initial, max=self.retry_max),
            before_sleep=on_retry,
            reraise=True,
        )


@dataclass
class _Chunk:
    """One logged batch and the future its caller may wait on."""

    sequence: int
    block: Block
    done: asyncio.Future[None]

    @property
    def rows(self) -> int:
        return self.block.rows

    @property
    def size(self) -> int:
        return self.block.size


@dataclass
class _Group:
    """Chunks inserted together under one deduplication token."""

    token: str
    chunks: list[_Chunk]
    intent: int


@dataclass
class _Buffer:
    table: str
    columns: tuple[str, ...]
    chunks: list[_Chunk] = field(default_factory=list)
    replayed: list[_Group] = field(default_factory=list)
    rows: int = 0
    size: int = 0
    oldest: float = 0.0
    flush_lock: asyncio.Lock = field(default_factory=asyncio.Lock)


class Batcher:
    """Logs rows, buffers them per table, and writes them to the warehouse in batches."""

    def __init__(
        self,
        warehouse: Warehouse,
        policy: FlushPolicy,
        wal: WriteAheadLog,
    ) -> None:
        self._warehouse = warehouse
        self._policy = policy
        self._wal = wal
        # By table and column list: a deploy that adds a column to a table changes the
        # columns new rows carry, while rows logged before still have the old ones.
        self._buffers: dict[tuple[str, tuple[str, ...]], _Buffer] = {}
        self._ticker: asyncio.Task[None] | None = None
        self._flushes: set[asyncio.Task[None]] = set()
        self._closing = False
        self._dead_letters = DeadLetters(self._write, dead_letter_directory(wal.directory))
        self.healthy = True
        metrics.WAREHOUSE_UP.set(1)
        # Read when scraped, so they are true at every moment, not as of the last flush.
        metrics.follow(metrics.BUFFERED_ROWS, self, lambda batcher: batcher.buffered_rows)
        metrics.follow(metrics.WAL_PENDING_BYTES, wal, lambda log: log.pending_bytes)
        metrics.follow(metrics.WAL_DISK_BYTES, wal, lambda log: log.disk_bytes)

    async def start(self) -> None:
        """Opens the log, queues what it holds for replay, and starts the age ticker."""
        data, flushes = await self._wal.open()
        self._replay(data, flushes)
        self._ticker = asyncio.create_task(self._tick(), name="batcher-ticker")
        for buffer in self._buffers.values():
            if buffer.replayed or buffer.chunks:
                self._spawn_flush(buffer)

    def _buffer(self, table: str, columns: Sequence[str]) -> _Buffer:
        key = (table, tuple(columns))
        buffer = self._buffers.get(key)
        if buffer is None:
            buffer = self._buffers[key] = _Buffer(table, key[1])
        return buffer

    def _replay(self, data: list[DataRecord], flushes: list[FlushRecord]) -> None:
        loop = asyncio.get_running_loop()
        chunks: dict[int, tuple[DataRecord, _Chunk]] = {}
        for record in data:
            chunks[record.sequence] = (
                record,
                _Chunk(record.sequence, record.block, loop.create_future()),
            )
        for intent in flushes:
            members = [chunks.pop(s) for s in intent.members if s in chunks]
            if members:
                buffer = self._buffer(intent.table, members[0][0].columns)
                buffer.replayed.append(
                    _Group(intent.token, [c for _, c in members], intent.sequence)
                )
        for record, chunk in chunks.values():
            self._add(self._buffer(record.table, record.columns), chunk)

    @property
    def buffered_batches(self) -> int:
        """Accepted batches not yet written."""
        return sum(
            len(b.chunks) + sum(len(g.chunks) for g in b.replayed) for b in self._buffers.values()
        )

    @property
    def buffered_rows(self) -> int:
        return sum(
            b.rows + sum(c.rows for g in b.replayed for c in g.chunks)
            for b in self._buffers.values()
        )

    async def append(
        self, table: str, columns: Sequence[str], lines: list[bytes]
    ) -> asyncio.Future[None]:
        """Logs JSONEachRow lines for `table` (see `append_batches`)."""
        (done,) = await self.append_batches([(table, columns, Block.from_lines(lines))])
        return done

    async def append_block(
        self, table: str, columns: Sequence[str], block: Block
    ) -> asyncio.Future[None]:
        """Logs rows for `table` (see `append_batches`)."""
        (done,) = await self.append_batches([(table, columns, block)])
        return done

    async def append_batches(self, batches: Sequence[Batch]) -> list[asyncio.Future[None]]:
        """Logs rows for their tables durably, in one write, and queues them. Returns,
        once they are on disk, a future per batch that resolves when its rows are in the
        warehouse. Raises WalFull past the log's bound, having logged none of them."""
        if self._closing:
            raise RuntimeError("the batcher is shutting down")
        loop = asyncio.get_running_loop()
        futures: list[asyncio.Future[None]] = [loop.create_future() for _ in batches]
        logged = [(i, batch) for i, batch in enumerate(batches) if batch[2].rows]
        sequences = await self._wal.append_batches([batch for _, batch in logged])
        crash_point("after_wal_append")
        for (index, (table, columns, block)), sequence in zip(logged, sequences, strict=True):
            buffer = self._buffer(table, columns)
            self._add(buffer, _Chunk(sequence, block, futures[index]))
            if buffer.rows >= self._policy.max_rows or buffer.size >= self._policy.max_bytes:
                self._spawn_flush(buffer)
        for index, (_, _, block) in enumerate(batches):
            if not block.rows:
                futures[index].set_result(None)
        return futures

    def _add(self, buffer: _Buffer, chunk: _Chunk) -> None:
        if not buffer.chunks:
            buffer.oldest = time.monotonic()
        buffer.chunks.append(chunk)
        buffer.rows += chunk.rows
        buffer.size += chunk.size

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
                    if not buffer.flush_lock.locked():
                        self._spawn_flush(buffer)

    async def _flush(self, buffer: _Buffer) -> None:
        # One flush per table at a time keeps a table's rows in log order and stops a
        # retry storm from stacking up parallel inserts.
        async with buffer.flush_lock:
            while buffer.replayed or buffer.chunks:
                if buffer.replayed:
                    group = buffer.replayed.pop(0)
                else:
                    group = await self._log_intent(buffer.table, self._take(buffer))
                    crash_point("after_flush_intent")
                await self._insert(buffer, group)
                crash_point("after_insert")
                self._wal.release(
                    [c.sequence for c in group.chunks] + [group.intent], intent=group.intent
                )
                for chunk in group.chunks:
                    if not chunk.done.done():
                        chunk.done.set_result(None)

    async def _log_intent(self, table: str, chunks: list[_Chunk]) -> _Group:
        """Logs the intent to insert `chunks` under a new token, retrying a failed write
        with the same token and chunks: the failed copy may be on disk, and a token must
        never stand for two different batches."""
        members = [c.sequence for c in chunks]
        token = self._wal.new_token(table, members)

        def failed(state: RetryCallState) -> None:
            log.error(
                "logging a flush intent failed; will retry",
                table=table,
                error=str(state.outcome.exception()),
            )

        async for attempt in self._policy.retrying(failed):
            with attempt:
                return _Group(token, chunks, await self._wal.append_flush(table, token, members))
        raise AssertionError("unreachable: the retries end in a return or a raise")

    async def _insert(self, buffer: _Buffer, group: _Group) -> None:
        """Inserts the group, retrying until the warehouse takes it, or sets it aside when
        the warehouse refuses it for good."""
        blocks = [chunk.block for chunk in group.chunks]
        rows = sum(block.rows for block in blocks)
        try:
            took = await self._write(buffer.table, buffer.columns, blocks, group.token)
        except WarehouseError as exc:  # only failures no retry can mend get here
            await self._dead_letters.set_aside(
                buffer.table, buffer.columns, blocks, group.token, exc
            )
            return
        metrics.FLUSH_SECONDS.labels(buffer.table).observe(took)
        metrics.ROWS_FLUSHED.labels(buffer.table).inc(rows)
        log.debug("flushed", table=buffer.table, rows=rows)

    async def _write(
        self, table: str, columns: Sequence[str], blocks: Sequence[Block], token: str
    ) -> float:
        """One insert of `blocks` (one format) under `token`, tried until the warehouse
        takes it; returns how long the try that succeeded took. Raises the failure when it
        is one no retry can mend."""
        body = join(blocks)
        fmt = blocks[0].fmt

        def failed(state: RetryCallState) -> None:
            metrics.FLUSH_RETRIES.labels(table).inc()
            self._set_health(False)
            log.warning(
                "flush failed; will retry",
                table=table,
                rows=sum(block.rows for block in blocks),
                retry_in=round(state.upcoming_sleep, 2),
                error=str(state.outcome.exception())[:500],
            )

        async for attempt in self._policy.retrying(failed):
            with attempt:
                started = time.perf_counter()
                await self._warehouse.insert_json_rows(
                    table, columns, body, dedup_token=token, fmt=fmt
                )
        self._set_health(True)
        return time.perf_counter() - started

    def _set_health(self, healthy: bool) -> None:
        # Reported, not acted on: readiness follows the log's room (server.py), so a
        # warehouse failing writes does not take ingest out while the log can take events.
        if healthy != self.healthy:
            self.healthy = healthy
            metrics.WAREHOUSE_UP.set(1 if healthy else 0)
            if healthy:
                log.info("warehouse flushes succeed again")
            else:
                log.error("warehouse is failing flushes; events wait in the write-ahead log")

    def _take(self, buffer: _Buffer) -> list[_Chunk]:
        """Takes chunks from the head of the buffer, up to about one batch, all of one
        format (one insert has one format)."""
        taken: list[_Chunk] = []
        rows = size = 0
        while buffer.chunks and (
            not taken
            or (
                rows < self._policy.max_rows
                and size < self._policy.max_bytes
                and buffer.chunks[0].block.fmt == taken[0].block.fmt
            )
        ):
            chunk = buffer.chunks.pop(0)
            taken.append(chunk)
            rows += chunk.rows
            size += chunk.size
        buffer.rows -= rows
        buffer.size -= size
        buffer.oldest = time.monotonic()
        return taken

    async def flush_all(self) -> None:
        """Writes out everything buffered now (and waits for flushes in flight)."""
        await asyncio.gather(*(self._flush(b) for b in list(self._buffers.values())))
        if self._flushes:
            await asyncio.gather(*list(self._flushes), return_exceptions=True)

    async def close(self, deadline: float | None = None) -> None:
        """Stops accepting rows and flushes everything buffered. Rows still unwritten
        when the deadline (seconds) passes stay in the log for the next start."""
        self._closing = True
        if self._ticker is not None:
            self._ticker.cancel()
            await asyncio.gather(self._ticker, return_exceptions=True)
        try:
            await asyncio.wait_for(self.flush_all(), deadline)
        except TimeoutError:
            log.error(
                "shutdown flush timed out; rows stay in the write-ahead log",
                rows=self.buffered_rows,
            )
            for task in list(self._flushes):
                task.cancel()
            await asyncio.gather(*list(self._flushes), return_exceptions=True)
        await self._wal.close()
