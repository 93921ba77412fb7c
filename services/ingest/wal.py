"""The ingest write-ahead log: every accepted batch is on disk, fsync'd, before it is
acknowledged, and stays there until its rows are committed to the warehouse.

Records go into segment files (`<first sequence number>.wal`) as
`[length u32][crc32 u32][sequence u64][kind u8][payload]`. Three kinds:

- DATA: one accepted batch for one table (a JSON header line naming the table, its
  columns, the body's format and its row count, then the body: see blocks.py);
- FLUSH: the intent to insert a set of DATA records as one batch under a deduplication
  token, written before the insert. After a crash the same records are inserted again
  under the same token, so the warehouse drops the copy it already has (exactly once).

Appends are group-committed: whoever arrives while a write is in flight joins the next
one, so concurrent requests share one fsync. A segment is deleted once it is closed and
every record in it is committed. A COMMIT record marks a flush done. Segments are deleted
from the front once every record in them is committed. A torn record at the end of the
last segment (a crash mid-write) is where the log ends; it was never acknowledged."""

from __future__ import annotations

import asyncio
import os
import secrets
import struct
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

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


def _encode(sequence: int, kind: int, payload: Sequence[bytes]) -> list[bytes]:
    """A record as parts to write one after the other: the payload (itself in parts,
    so a batch's body is never copied to build it) behind its header."""
    crc = 0
    for part in payload:
        crc = zlib.crc32(part, crc)
    length = sum(len(part) for part in payload)
    return [_HEADER.pack(length, crc & 0xFFFFFFFF, sequence, kind), *payload]


def _data_payload(table: str, columns: Sequence[str], block: Block) -> list[bytes]:
    header = orjson.dumps(
        {"table": table, "columns": list(columns), "format": block.fmt, "rows": block.rows}
    )
    return [header + b"\n", block.body]


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


class WriteAheadLog:
    """An append-only, fsync'd, segmented log of accepted batches."""

    def __init__(self, directory: Path, *, max_bytes: int, segment_bytes: int) -> None:
        self.directory = directory
        self.max_bytes = max_bytes
        self.segment_bytes = segment_bytes
        self._segments: dict[int, _Segment] = {}
        self._where: dict[int, _Segment] = {}
        self._sizes: dict[int, int] = {}
        self._current: _Segment | None = None
        self._file = None
        self._next = 1
        self.pending_bytes = 0
        self._queue: list[tuple[list[bytes], int, asyncio.Future[None]]] = []
        self._wake = asyncio.Event()
        self._writer: asyncio.Task[None] | None = None
        self._closed = False
        self.id = ""

    # --- start-up -------------------------------------------------------------------------

    async def open(self) -> tuple[list[DataRecord], list[FlushRecord]]:
        """Opens the log and returns what it holds that is not yet committed: batches in
        log order, and the flush intents that grouped some of them."""
        data, flushes = await asyncio.to_thread(self._recover)
        self._writer = asyncio.create_task(self._write_loop(), name="wal-writer")
        return data, flushes

    def _recover(self) -> tuple[list[DataRecord], list[FlushRecord]]:
        self.directory.mkdir(parents=True, exist_ok=True)
        # Sequence numbers restart in a new log; the log's id keeps deduplication tokens
        # of a new log from matching those an earlier log left in the warehouse.
        id_file = self.directory / ID_FILE
        if not id_file.exists():
            id_file.write_text(secrets.token_hex(8) + "\n")
        self.id = id_file.read_text().strip()
        paths = sorted(self.directory.glob("*" + SUFFIX), key=lambda p: int(p.stem))
        found: list[tuple[_Segment, DataRecord | FlushRecord]] = []
        committed: set[int] = set()
        for index, path in enumerate(paths):
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
            for sequence, kind, payload in records:
                self._next = max(self._next, sequence + 1)
                if kind == DATA:
                    head, _, body = payload.partition(b"\n")
                    meta = orjson.loads(head)
                    block = _data_block(meta, body)
                    found.append(
                        (
                            segment,
                            DataRecord(sequence, meta["table"], tuple(meta["columns"]), block),
                        )
                    )
                elif kind == FLUSH:
                    meta = orjson.loads(payload)
                    found.append(
                        (
                            segment,
                            FlushRecord(
                                sequence, meta["table"], meta["token"], tuple(meta["members"])
                            ),
                        )
                    )
                elif kind == COMMIT:
                    committed.add(orjson.loads(payload)["intent"])
        # A committed intent and its batches are done. An intent whose COMMIT was lost in
        # a crash is replayed under its token, and the warehouse drops the copy.
        done = set(committed)
        for _, record in found:
            if isinstance(record, FlushRecord) and record.sequence in committed:
                done.update(record.members)
        data: list[DataRecord] = []
        flushes: list[FlushRecord] = []
        for segment, record in found:
            if record.sequence in done:
                continue
            if isinstance(record, DataRecord):
                data.append(record)
                self._track(segment, record.sequence, record.size)
            else:
                flushes.append(record)
                self._track(segment, record.sequence, 0)
        self._drop_finished()
        self._roll()
        if data:
            log.info("replaying write-ahead log", batches=len(data), bytes=self.pending_bytes)
        return data, flushes

    def _track(self, segment: _Segment, sequence: int, size: int) -> None:
        segment.live.add(sequence)
        self._where[sequence] = segment
        self._sizes[sequence] = size
        self.pending_bytes += size

    # --- appending ------------------------------------------------------------------------

    def reserve(self, size: int) -> None:
        """Raises WalFull when `size` more bytes would take the log past its bound."""
        if self.pending_bytes + size > self.max_bytes:
            raise WalFull(
                f"ingest is holding {self.pending_bytes} unflushed bytes (limit "
                f"{self.max_bytes}); retry later"
            )

    async def append(
        self, table: str, columns: Sequence[str], lines: Sequence[bytes], *, checked: bool = False
    ) -> int:
        """Logs JSONEachRow lines durably (see `append_block`)."""
        return await self.append_block(table, columns, Block.from_lines(lines), checked=checked)

    async def append_block(
        self, table: str, columns: Sequence[str], block: Block, *, checked: bool = False
    ) -> int:
        """Logs a batch durably; returns its sequence number once it is fsync'd. Unless
        the caller `checked` the bound already, raises WalFull past it."""
        if not checked:
            self.reserve(block.size)
        payload = _data_payload(table, columns, block)
        sequence, done = self._enqueue(DATA, payload, block.size)
        await done
        return sequence

    async def append_flush(self, table: str, token: str, members: Sequence[int]) -> int:
        """Logs the intent to insert `members` as one batch under `token`."""
        payload = orjson.dumps({"table": table, "token": token, "members": list(members)})
        sequence, done = self._enqueue(FLUSH, [payload], 0)
        await done
        return sequence

    def _enqueue(
        self, kind: int, payload: Sequence[bytes], size: int
    ) -> tuple[int, asyncio.Future[None]]:
        if self._closed or self._writer is None:
            raise RuntimeError("the write-ahead log is not open")
        sequence = self._next
        self._next += 1
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._queue.append((_encode(sequence, kind, payload), sequence, done))
        # Counted now, so the bound holds for appends still waiting on their fsync.
        self._sizes[sequence] = size
        self.pending_bytes += size
        self._wake.set()
        return sequence, done

    async def _write_loop(self) -> None:
        while True:
            if not self._queue:
                if self._closed:
                    return
                await self._wake.wait()
                self._wake.clear()
                continue
            batch, self._queue = self._queue, []
            records = [part for record, _, _ in batch for part in record]
            try:
                await asyncio.to_thread(self._write, records)
            except Exception as exc:  # noqa: BLE001 - the callers must hear of it
                log.error("write-ahead log write failed", error=str(exc))
                for _, sequence, done in batch:
                    self.pending_bytes -= self._sizes.pop(sequence, 0)
                    if not done.done():
                        done.set_exception(exc)
                continue
            # Bookkeeping stays on the event loop, so release() never races it.
            segment = self._current
            assert segment is not None
            segment.size += sum(len(part) for part in records)
            for _, sequence, _ in batch:
                segment.live.add(sequence)
                self._where[sequence] = segment
            if segment.size >= self.segment_bytes:
                await self._roll_async()
            for _, _, done in batch:
                if not done.done():
                    done.set_result(None)

    def _write(self, records: list[bytes]) -> None:
        """On a worker thread: one write and one fsync for the whole group."""
        assert self._file is not None
        self._file.writelines(records)
        self._file.flush()
        os.fsync(self._file.fileno())

    def _open_next(self, path: Path):
        if self._file is not None:
            self._file.close()
        handle = path.open("ab")
        # The new file's directory entry must survive a crash too.
        fd = os.open(self.directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        return handle

    def _roll(self) -> None:
        path = self.directory / f"{self._next:020d}{SUFFIX}"
        self._file = self._open_next(path)
        self._install(path)

    async def _roll_async(self) -> None:
        path = self.directory / f"{self._next:020d}{SUFFIX}"
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
        if intent is not None and not self._closed:
            self._enqueue(COMMIT, [orjson.dumps({"intent": intent})], 0)
        for sequence in sequences:
            self.pending_bytes -= self._sizes.pop(sequence, 0)
            segment = self._where.pop(sequence, None)
            if segment is not None:
                segment.live.discard(sequence)
        self._drop_finished()

    def _drop_finished(self) -> None:
        # Only a prefix of the log is ever deleted: a flush intent always follows its
        # batches, so while any batch survives, the intent that may have inserted it does.
        for first in sorted(self._segments):
            segment = self._segments[first]
            if not segment.closed or segment.live:
                return
            segment.path.unlink(missing_ok=True)
            del self._segments[first]

    @property
    def disk_bytes(self) -> int:
        return sum(s.size for s in self._segments.values())

    async def close(self) -> None:
        self._closed = True
        self._wake.set()
        if self._writer is not None:
            await self._writer
        if self._file is not None:
            self._file.close()
            self._file = None
