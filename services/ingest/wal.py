"""The ingest write-ahead log: every accepted batch is on disk, fsync'd, before it is
acknowledged, and stays there until its rows are committed to the warehouse.

Records go into segment files (`<first sequence number>.wal`) as
`[length u32][crc32 u32][sequence u64][kind u8][payload]`. Segments, and the log's id,
are 0600 in a 0700 directory: they hold every accepted event. Three kinds:

- DATA: one accepted batch for one table (a JSON header line naming the table, its
  columns, the body's format and its row count, then the body: see blocks.py);
- FLUSH: the intent to insert a set of DATA records as one batch under a deduplication
  token, written before the insert. After a crash the same records are inserted again
  under the same token, so the warehouse drops the copy it already has (exactly once);
- COMMIT: that intent's insert succeeded, so a replay skips it and its batches.

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
import fcntl
import os
import secrets
import struct
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import orjson
import structlog

from services.ingest.blocks import FORMATS, JSON_EACH_ROW, Block

log = structlog.get_logger("wal")

_HEADER = struct.Struct("<IIQB")
DATA = 1
FLUSH = 2
COMMIT = 3
SUFFIX = ".wal"
ID_FILE = "wal.id"
FILE_MODE = 0o600
DIRECTORY_MODE = 0o700
_NONCE_BYTES = 16
_LARGEST_SEQUENCE = 2**64 - 1
# The share of `max_bytes` what waits for the warehouse must fall to before a full log
# counts as having room again.
ROOM_AGAIN = 0.5

Batch = tuple[str, Sequence[str], Block]
"""(table, columns, block): rows for one table."""


LOCK_FILE = "wal.lock"


class WalInUse(RuntimeError):
    """Another process holds the log: two writers (an ingest and a drain) would each
    insert its unflushed batches under tokens of their own, so the warehouse would
    count them twice."""


def lock(directory: Path) -> BinaryIO:
    """Holds `directory`'s log for this process until the returned file is closed (or
    the process ends, however it ends). Raises WalInUse when another holds it."""
    directory.mkdir(mode=DIRECTORY_MODE, parents=True, exist_ok=True)
    handle = _open_private(directory / LOCK_FILE)
    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        raise WalInUse(f"another process is using the write-ahead log in {directory}") from None
    return handle


class WalFull(RuntimeError):
    """Accepting more would take the log (and memory) past its bound."""


@dataclass(frozen=True)
class DataRecord:
    """An accepted batch, as logged."""

    sequence: int
    table: str
    columns: tuple[str, ...]
    block: Block

    @property
    def size(self) -> int:
        return self.block.size

    @property
    def lines(self) -> list[bytes]:
        """The rows of a JSONEachRow batch."""
        return self.block.lines()


@dataclass(frozen=True)
class FlushRecord:
    """A batch about to be inserted under `token`."""

    sequence: int
    table: str
    token: str
    members: tuple[int, ...]


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


def _encode(sequence: int, kind: int, payload: Sequence[bytes]) -> list[bytes]:
    """A record as parts to write one after the other: the payload (itself in parts,
    so a batch's body is never copied to build it) behind its header."""
    crc = 0
    for part in payload:
        crc = zlib.crc32(part, crc)
    length = sum(len(part) for part in payload)
    return [_HEADER.pack(length, crc & 0xFFFFFFFF, sequence, kind), *payload]


def _record_size(payload: Sequence[bytes]) -> int:
    return _HEADER.size + sum(len(part) for part in payload)


def _data_payload(table: str, columns: Sequence[str], block: Block) -> list[bytes]:
    header = orjson.dumps(
        {"table": table, "columns": list(columns), "format": block.fmt, "rows": block.rows}
    )
    return [header + b"\n", block.body]


def _flush_payload(table: str, token: str, members: Sequence[int]) -> bytes:
    return orjson.dumps({"table": table, "token": token, "members": list(members)})


def _commit_payload(intent: int) -> bytes:
    return orjson.dumps({"intent": intent})


def _data_block(meta: dict, body: bytes) -> Block:
    # A record without a format predates blocks: JSONEachRow lines.
    fmt = meta.get("format", JSON_EACH_ROW)
    if fmt not in FORMATS:
        raise RuntimeError(f"write-ahead log record has an unknown format {fmt!r}")
    rows = meta.get("rows")
    if rows is None:
        rows = len(body.split(b"\n")) if body else 0
    return Block(body, rows, fmt)


def _read_segment(path: Path) -> tuple[list[tuple[int, int, bytes]], int]:
    """The intact records of a segment and the offset where intact data ends."""
    data = path.read_bytes()
    records = []
    offset = 0
    while offset + _HEADER.size <= len(data):
        length, crc, sequence, kind = _HEADER.unpack_from(data, offset)
        start = offset + _HEADER.size
        payload = data[start : start + length]
        if len(payload) < length or zlib.crc32(payload) & 0xFFFFFFFF != crc:
            break
        records.append((sequence, kind, payload))
        offset = start + length
    return records, offset


def _open_private(path: Path) -> BinaryIO:
    """`path` for appending, created readable by this user only."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, FILE_MODE)
    return os.fdopen(fd, "ab")


def _fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _done_at_recovery(data: set[int], flushes: list[FlushRecord], committed: set[int]) -> set[int]:
    """The sequence numbers a replay must skip: committed intents and their batches,
    and intents that cannot have anything left to insert."""
    done = set(committed)
    for intent in flushes:
        if intent.sequence in committed:
            done.update(intent.members)
    claimed: set[int] = set()
    for intent in flushes:
        if intent.sequence in done:
            continue
        members = intent.members
        if any(m in done or m not in data for m in members):
            # A batch leaves the log only after the insert of its intent succeeded
            # (its COMMIT was lost in a crash), so the rest of it is in the warehouse.
            done.add(intent.sequence)
            done.update(members)
        elif any(m in claimed for m in members):
            # An intent written again after a failed write (same token, same batches):
            # the first copy replays them.
            done.add(intent.sequence)
        else:
            claimed.update(members)
    return done


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
            with _open_private(staged) as f:
                f.truncate(0)
                f.write(secrets.token_hex(8).encode() + b"\n")
                f.flush()
                os.fsync(f.fileno())
            staged.replace(id_file)
            _fsync_directory(self.directory)
        os.chmod(id_file, FILE_MODE)
        self.id = id_file.read_text().strip()

    def _recover(self) -> tuple[list[DataRecord], list[FlushRecord]]:
        self._open_directory()
        paths = sorted(self.directory.glob("*" + SUFFIX), key=lambda p: int(p.stem))
        found: list[tuple[_Segment, DataRecord | FlushRecord]] = []
        committed: set[int] = set()
        for index, path in enumerate(paths):
            os.chmod(path, FILE_MODE)
            records, end = _read_segment(path)
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
                    head, _, body = payload.partition(b"\n")
                    meta = orjson.loads(head)
                    block = _data_block(meta, body)
                    record = DataRecord(sequence, meta["table"], tuple(meta["columns"]), block)
                    found.append((segment, record))
                elif kind == FLUSH:
                    meta = orjson.loads(payload)
                    intent = FlushRecord(
                        sequence, meta["table"], meta["token"], tuple(meta["members"])
                    )
                    found.append((segment, intent))
                elif kind == COMMIT:
                    committed.add(orjson.loads(payload)["intent"])
        done = _done_at_recovery(
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
            size = _record_size([_flush_payload(table, token, [_LARGEST_SEQUENCE])])
            size += _record_size([_commit_payload(_LARGEST_SEQUENCE)])
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
            (table, _data_payload(table, columns, block), block)
            for table, columns, block in batches
        ]
        self._check_room(
            sum(_record_size(payload) + self._bookkeeping(table) for table, payload, _ in records)
        )
        enqueued = [
            self._enqueue(DATA, payload, _Hold(block.size, self._bookkeeping(table)))
            for table, payload, block in records
        ]
        await asyncio.gather(*(done for _, done in enqueued))
        return [sequence for sequence, _ in enqueued]

    async def append_flush(self, table: str, token: str, members: Sequence[int]) -> int:
        """Logs the intent to insert `members` as one batch under `token`."""
        sequence, done = self._enqueue(FLUSH, [_flush_payload(table, token, members)], None)
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
        parts = _encode(sequence, kind, payload)
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
            handle = _open_private(segment.path)
            handle.truncate(segment.size)
            os.fsync(handle.fileno())
            self._file = handle
        except BaseException as exc:
            self._broken = exc
            log.error("write-ahead log cannot undo a failed write", error=str(exc))

    def _open_next(self, path: Path) -> BinaryIO:
        if self._file is not None:
            self._file.close()
        handle = _open_private(path)
        # The new file's directory entry must survive a crash too.
        _fsync_directory(self.directory)
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
            _, written = self._enqueue(COMMIT, [_commit_payload(intent)], None)
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
