"""The ingest write-ahead log: every accepted batch is on disk, fsync'd, before it is
acknowledged, and stays there until its rows are committed to the warehouse.

Records (services/ingest/wal_records.py: DATA, an accepted batch; FLUSH, the intent to
insert some as one batch under a deduplication token; COMMIT, that the insert succeeded) go
into segment files (`<first sequence number>.wal`), 0600 in a 0700 directory: they hold
every accepted event.

A token names one batch for all time: the log's id, the table, the sequence numbers it
covers and 128 random bits. The random part alone keeps the tokens of two batches apart
across restarts (idle ones included), logs that start over and copied log directories;
the rest says where a batch came from. A replay reuses the token stored in the intent.

Appends are group-committed: whoever arrives while a write is in flight joins the next
one, so concurrent requests share one fsync. A torn record at the end of the last
segment (a crash mid-write) is where the log ends; it was never acknowledged.

Only DATA and FLUSH records wait for the warehouse ("live"). A segment is deleted while
running as soon as it is closed and it and every segment before it hold nothing live,
so the log holds the segments from the one with the oldest unflushed record to the one
being written. On disk it never passes `max_bytes`: a batch is refused (WalFull) when
the segments, the records queued for writing, the FLUSH and COMMIT records the accepted
batches will still cause, and the batch itself would pass it. FLUSH and COMMIT records
are never refused (their room was set aside with their batches), so a full log drains.

The log is `full` from the first batch it refuses until what waits for the warehouse
falls to half its bound (`ROOM_AGAIN`): ingest's readiness follows it, so a replica that
cannot take events stops being sent them, and is not sent them again for one batch's
worth of room."""

from __future__ import annotations

import asyncio
import os
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import structlog

from services.ingest.blocks import Block
from services.ingest.wal_files import DIRECTORY_MODE, FILE_MODE, fsync_directory, open_private
from services.ingest.wal_records import (
    COMMIT,
    DATA,
    FLUSH,
    Batch,
    DataRecord,
    FlushRecord,
    commit_payload,
    committed_intent,
    data_payload,
    data_record,
    done_at_recovery,
    encode,
    flush_payload,
    flush_record,
    read_segment,
    record_size,
)

log = structlog.get_logger("wal")

SUFFIX = ".wal"
ID_FILE = "wal.id"
_NONCE_BYTES = 16
_LARGEST_SEQUENCE = 2**64 - 1
# The share of `max_bytes` what waits for the warehouse must fall to before a full log
# counts as having room again.
ROOM_AGAIN = 0.5


class WalFull(RuntimeError):
    """Accepting more would take the log (and memory) past its bound."""


@dataclass
class _Segment:
    path: Path
    first: int
    size: int = 0
    live: set[int] = field(default_factory=set)
    closed: bool = False


@dataclass(frozen=True)
class _Hold:
    """What an uncommitted DATA record counts against the log: its block (pending
    bytes, in memory and on disk) and the FLUSH and COMMIT records it may still cause."""

    size: int
    bookkeeping: int


@dataclass
class _Queued:
    parts: list[bytes]
    sequence: int
    kind: int
    size: int
    done: asyncio.Future[None]


class WriteAheadLog:
    """An append-only, fsync'd, segmented log of accepted batches."""

    def __init__(self, directory: Path, *, max_bytes: int, segment_bytes: int) -> None:
        self.directory = directory
        self.max_bytes = max_bytes
        self.segment_bytes = segment_bytes
        self._segments: dict[int, _Segment] = {}
        self._where: dict[int, _Segment] = {}
        self._holds: dict[int, _Hold] = {}
        self._bookkeeping_sizes: dict[str, int] = {}
        self._current: _Segment | None = None
        self._file: BinaryIO | None = None
        self._next = 1
        self.pending_bytes = 0
        self._reserved = 0
        self._queued_bytes = 0
        self._disk_bytes = 0
        self._queue: list[_Queued] = []
        self._wake = asyncio.Event()
        self._roll_wanted = False
        self._writer: asyncio.Task[None] | None = None
        self._closed = False
        self._broken: BaseException | None = None
        self.id = ""
        self.full = False
        self._on_full: list[Callable[[bool], None]] = []

    # --- start-up -------------------------------------------------------------------------

    async def open(self) -> tuple[list[DataRecord], list[FlushRecord]]:
        """Opens the log and returns what it holds that is not yet committed: batches in
        log order, and the flush intents that grouped some of them."""
        data, flushes = await asyncio.to_thread(self._recover)
        self._writer = asyncio.create_task(self._write_loop(), name="wal-writer")
        return data, flushes

    def _open_directory(self) -> None:
        self.directory.mkdir(mode=DIRECTORY_MODE, parents=True, exist_ok=True)
        # Logs made before files were private are made private too.
        os.chmod(self.directory, DIRECTORY_MODE)
        id_file = self.directory / ID_FILE
        if not id_file.exists() or not id_file.read_text().strip():
            staged = self.directory / (ID_FILE + ".new")
            with open_private(staged) as f:
                f.truncate(0)
                f.write(secrets.token_hex(8).encode() + b"\n")
                f.flush()
                os.fsync(f.fileno())
            staged.replace(id_file)
            fsync_directory(self.directory)
        os.chmod(id_file, FILE_MODE)
        self.id = id_file.read_text().strip()

    def _recover(self) -> tuple[list[DataRecord], list[FlushRecord]]:
        self._open_directory()
        paths = sorted(self.directory.glob("*" + SUFFIX), key=lambda p: int(p.stem))
        found: list[tuple[_Segment, DataRecord | FlushRecord]] = []
        committed: set[int] = set()
        for index, path in enumerate(paths):
            os.chmod(path, FILE_MODE)
            records, end = read_segment(path)
            if end < path.stat().st_size:
                if index != len(paths) - 1:
                    raise RuntimeError(f"write-ahead log segment {path} is corrupt mid-log")
                log.warning("truncating torn tail of the write-ahead log", path=str(path))
                with path.open("r+b") as f:
                    f.truncate(end)
                    os.fsync(f.fileno())
            segment = _Segment(path, int(path.stem), size=end, closed=True)
            self._segments[segment.first] = segment
            self._disk_bytes += end
            # A segment is named for the first sequence number it holds or, while
            # empty, the next one the log would give: after restarts that logged
            # nothing, the names alone carry the numbering on.
            self._next = max(self._next, segment.first)
            for sequence, kind, payload in records:
                self._next = max(self._next, sequence + 1)
                if kind == DATA:
                    found.append((segment, data_record(sequence, payload)))
                elif kind == FLUSH:
                    found.append((segment, flush_record(sequence, payload)))
                elif kind == COMMIT:
                    committed.add(committed_intent(payload))
        done = done_at_recovery(
            {r.sequence for _, r in found if isinstance(r, DataRecord)},
            [r for _, r in found if isinstance(r, FlushRecord)],
            committed,
        )
        data: list[DataRecord] = []
        flushes: list[FlushRecord] = []
        for segment, record in found:
            if record.sequence in done:
                continue
            if isinstance(record, DataRecord):
                data.append(record)
                self._hold(record.sequence, _Hold(record.size, self._bookkeeping(record.table)))
            else:
                flushes.append(record)
            segment.live.add(record.sequence)
            self._where[record.sequence] = segment
        self._drop_finished()
        self._roll()
        if data:
            log.info("replaying write-ahead log", batches=len(data), bytes=self.pending_bytes)
        return data, flushes

    # --- tokens and the bound ---------------------------------------------------------------

    def new_token(self, table: str, members: Sequence[int]) -> str:
        """A deduplication token for inserting `members` (in log order) as one batch,
        unlike any other token ever made, here or by any other log."""
        nonce = secrets.token_hex(_NONCE_BYTES)
        return f"{self.id}:{table}:{members[0]}-{members[-1]}:{nonce}"

    def _bookkeeping(self, table: str) -> int:
        """The most a batch of `table` can add in FLUSH and COMMIT records: those of a
        flush of it alone, with the longest token and sequence numbers there can be
        (a flush of n batches writes less than n of them)."""
        size = self._bookkeeping_sizes.get(table)
        if size is None:
            token = self.new_token(table, [_LARGEST_SEQUENCE, _LARGEST_SEQUENCE])
            size = record_size([flush_payload(table, token, [_LARGEST_SEQUENCE])])
            size += record_size([commit_payload(_LARGEST_SEQUENCE)])
            self._bookkeeping_sizes[table] = size
        return size

    @property
    def used_bytes(self) -> int:
        """What counts against `max_bytes`: the segments, records waiting to be
        written, and the bookkeeping records uncommitted batches may still cause."""
        return self._disk_bytes + self._queued_bytes + self._reserved

    @property
    def disk_bytes(self) -> int:
        """Bytes in the segment files."""
        return self._disk_bytes

    @property
    def oldest_pending(self) -> int | None:
        """The sequence number of the oldest record not yet committed, if any."""
        return min(self._where, default=None)

    def on_full(self, listener: Callable[[bool], None]) -> None:
        """Calls `listener(full)` whenever the log turns full or has room again."""
        self._on_full.append(listener)

    def _set_full(self, full: bool) -> None:
        if full != self.full:
            self.full = full
            log.warning("write-ahead log full" if full else "write-ahead log has room again")
            for listener in self._on_full:
                listener(full)

    def _check_room(self, size: int) -> None:
        used = self.used_bytes
        if used + size <= self.max_bytes:
            return
        current = self._current
        if current is not None and current.size and not current.live:
            # The open segment holds only committed records, and only a closed one can
            # be deleted: start the next one, so that the retry finds the room.
            self._roll_wanted = True
            self._wake.set()
        if size > self.max_bytes:
            raise WalFull(
                f"this request needs {size} bytes of write-ahead log, more than its limit "
                f"of {self.max_bytes} (PIPIT_WAL_MAX_BYTES); send fewer events at a time"
            )
        self._set_full(True)
        raise WalFull(
            f"ingest's write-ahead log is full: {used} bytes in use and {size} more "
            f"asked for, limit {self.max_bytes}; retry later"
        )

    def _hold(self, sequence: int, hold: _Hold) -> None:
        self._holds[sequence] = hold
        self.pending_bytes += hold.size
        self._reserved += hold.bookkeeping

    def _unhold(self, sequence: int) -> None:
        hold = self._holds.pop(sequence, None)
        if hold is not None:
            self.pending_bytes -= hold.size
            self._reserved -= hold.bookkeeping

    # --- appending ------------------------------------------------------------------------

    async def append(self, table: str, columns: Sequence[str], lines: Sequence[bytes]) -> int:
        """Logs JSONEachRow lines durably (see `append_block`)."""
        return await self.append_block(table, columns, Block.from_lines(lines))

    async def append_block(self, table: str, columns: Sequence[str], block: Block) -> int:
        """Logs a batch durably; returns its sequence number once it is fsync'd. Raises
        WalFull past the log's bound."""
        (sequence,) = await self.append_batches([(table, columns, block)])
        return sequence

    async def append_batches(self, batches: Sequence[Batch]) -> list[int]:
        """Logs batches durably, all in one write, and returns their sequence numbers
        once that write is fsync'd. Either all are taken or, past the log's bound, none
        (WalFull), so a refused request can be retried whole."""
        records = [
            (table, data_payload(table, columns, block), block) for table, columns, block in batches
        ]
        self._check_room(
            sum(record_size(payload) + self._bookkeeping(table) for table, payload, _ in records)
        )
        enqueued = [
            self._enqueue(DATA, payload, _Hold(block.size, self._bookkeeping(table)))
            for table, payload, block in records
        ]
        await asyncio.gather(*(done for _, done in enqueued))
        return [sequence for sequence, _ in enqueued]

    async def append_flush(self, table: str, token: str, members: Sequence[int]) -> int:
        """Logs the intent to insert `members` as one batch under `token`."""
        sequence, done = self._enqueue(FLUSH, [flush_payload(table, token, members)], None)
        await done
        return sequence

    def _enqueue(
        self, kind: int, payload: Sequence[bytes], hold: _Hold | None
    ) -> tuple[int, asyncio.Future[None]]:
        if self._closed or self._writer is None:
            raise RuntimeError("the write-ahead log is not open")
        if self._broken is not None:
            raise RuntimeError(
                f"the write-ahead log could not undo a failed write ({self._broken}); "
                "restart ingest"
            )
        sequence = self._next
        self._next += 1
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        parts = encode(sequence, kind, payload)
        size = sum(len(part) for part in parts)
        self._queue.append(_Queued(parts, sequence, kind, size, done))
        self._queued_bytes += size
        # Counted now, so the bound holds for appends still waiting on their fsync.
        if hold is not None:
            self._hold(sequence, hold)
        self._wake.set()
        return sequence, done

    async def _write_loop(self) -> None:
        while True:
            if not self._queue:
                current = self._current
                if self._roll_wanted and not self._closed and current is not None and current.size:
                    self._roll_wanted = False
                    await self._roll_async()
                    continue
                if self._closed:
                    return
                await self._wake.wait()
                self._wake.clear()
                continue
            batch, self._queue = self._queue, []
            segment = self._current
            assert segment is not None
            try:
                await asyncio.to_thread(
                    self._write, [part for record in batch for part in record.parts], segment
                )
            except Exception as exc:  # noqa: BLE001 - the callers must hear of it
                log.error("write-ahead log write failed", error=str(exc))
                for record in batch:
                    self._queued_bytes -= record.size
                    self._unhold(record.sequence)
                    if not record.done.done():
                        record.done.set_exception(exc)
                continue
            # Bookkeeping stays on the event loop, so release() never races it.
            for record in batch:
                self._queued_bytes -= record.size
                segment.size += record.size
                self._disk_bytes += record.size
                if record.kind != COMMIT:
                    # Batches and intents wait for the warehouse; a COMMIT waits for
                    # nothing, and tracking it would keep its segment forever.
                    segment.live.add(record.sequence)
                    self._where[record.sequence] = segment
            if segment.size >= self.segment_bytes:
                await self._roll_async()
            for record in batch:
                if not record.done.done():
                    record.done.set_result(None)

    def _write(self, parts: list[bytes], segment: _Segment) -> None:
        """On a worker thread: one write and one fsync for the whole group."""
        assert self._file is not None
        try:
            self._file.writelines(parts)
            self._file.flush()
            os.fsync(self._file.fileno())
        except BaseException:
            self._cut_back(segment)
            raise

    def _cut_back(self, segment: _Segment) -> None:
        """After a failed write, cuts the segment back to its last acknowledged byte:
        part of the group may have reached the file, and later records must not follow
        a torn one (a replay stops at the first)."""
        try:
            try:
                self._file.close()  # type: ignore[union-attr]
            except OSError:
                pass  # its buffer held the failed write; the descriptor is closed
            handle = open_private(segment.path)
            handle.truncate(segment.size)
            os.fsync(handle.fileno())
            self._file = handle
        except BaseException as exc:
            self._broken = exc
            log.error("write-ahead log cannot undo a failed write", error=str(exc))

    def _open_next(self, path: Path) -> BinaryIO:
        if self._file is not None:
            self._file.close()
        handle = open_private(path)
        # The new file's directory entry must survive a crash too.
        fsync_directory(self.directory)
        return handle

    def _next_path(self) -> Path:
        # Named for the first record it will hold: one already waiting in the queue,
        # or the next number the log gives.
        first = self._queue[0].sequence if self._queue else self._next
        return self.directory / f"{first:020d}{SUFFIX}"

    def _roll(self) -> None:
        path = self._next_path()
        self._file = self._open_next(path)
        self._install(path)

    async def _roll_async(self) -> None:
        path = self._next_path()
        self._file = await asyncio.to_thread(self._open_next, path)
        self._install(path)

    def _install(self, path: Path) -> None:
        if self._current is not None:
            self._current.closed = True
        self._current = _Segment(path, int(path.stem))
        self._segments[self._current.first] = self._current
        self._drop_finished()

    # --- committing -----------------------------------------------------------------------

    def release(self, sequences: Sequence[int], intent: int | None = None) -> None:
        """Marks records committed; closed segments with nothing live are deleted. With
        the flush intent that covered them, a COMMIT record tells a later replay to skip
        them (it rides along with the next group write; losing it is harmless)."""
        if intent is not None and not self._closed and self._broken is None:
            _, written = self._enqueue(COMMIT, [commit_payload(intent)], None)
            # Nobody waits for it; a failed write of it is logged by the writer.
            written.add_done_callback(lambda f: f.cancelled() or f.exception())
        for sequence in sequences:
            self._unhold(sequence)
            segment = self._where.pop(sequence, None)
            if segment is not None:
                segment.live.discard(sequence)
        self._drop_finished()
        # What waits for the warehouse, not the files: committed records still on disk
        # go with their segment, which is closed now if nothing in it waits any more
        # (only a closed segment can be deleted).
        waiting = self.pending_bytes + self._reserved + self._queued_bytes
        if self.full and waiting <= self.max_bytes * ROOM_AGAIN:
            current = self._current
            if current is not None and current.size and not current.live:
                self._roll_wanted = True
                self._wake.set()
            self._set_full(False)

    def _drop_finished(self) -> None:
        # Only a prefix of the log is ever deleted: a flush intent always follows its
        # batches and its COMMIT follows it, so while any batch survives, so do the
        # intent that may have inserted it and the COMMIT that says it did.
        for first in sorted(self._segments):
            segment = self._segments[first]
            if not segment.closed or segment.live:
                return
            segment.path.unlink(missing_ok=True)
            self._disk_bytes -= segment.size
            del self._segments[first]

    async def close(self) -> None:
        self._closed = True
        self._wake.set()
        if self._writer is not None:
            await self._writer
        if self._file is not None:
            self._file.close()
            self._file = None
