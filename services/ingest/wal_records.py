"""The write-ahead log's records (services/ingest/wal.py): their encoding on disk, each
kind's payload, reading a segment back, and which records a replay skips.

A record is `[length u32][crc32 u32][sequence u64][kind u8][payload]`. Three kinds:

- DATA: one accepted batch for one table (a JSON header line naming the table, its
  columns, the body's format and its row count, then the body: see blocks.py);
- FLUSH: the intent to insert a set of DATA records as one batch under a deduplication
  token, written before the insert. After a crash the same records are inserted again
  under the same token, so the warehouse drops the copy it already has (exactly once);
- COMMIT: that intent's insert succeeded, so a replay skips it and its batches."""

from __future__ import annotations

import struct
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import orjson

from services.ingest.blocks import FORMATS, JSON_EACH_ROW, Block

HEADER = struct.Struct("<IIQB")
DATA = 1
FLUSH = 2
COMMIT = 3


Batch = tuple[str, Sequence[str], Block]
"""(table, columns, block): rows for one table."""


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


def encode(sequence: int, kind: int, payload: Sequence[bytes]) -> list[bytes]:
    """A record as parts to write one after the other: the payload (itself in parts,
    so a batch's body is never copied to build it) behind its header."""
    crc = 0
    for part in payload:
        crc = zlib.crc32(part, crc)
    length = sum(len(part) for part in payload)
    return [HEADER.pack(length, crc & 0xFFFFFFFF, sequence, kind), *payload]


def record_size(payload: Sequence[bytes]) -> int:
    return HEADER.size + sum(len(part) for part in payload)


def data_payload(table: str, columns: Sequence[str], block: Block) -> list[bytes]:
    header = orjson.dumps(
        {"table": table, "columns": list(columns), "format": block.fmt, "rows": block.rows}
    )
    return [header + b"\n", block.body]


def flush_payload(table: str, token: str, members: Sequence[int]) -> bytes:
    return orjson.dumps({"table": table, "token": token, "members": list(members)})


def commit_payload(intent: int) -> bytes:
    return orjson.dumps({"intent": intent})


def data_record(sequence: int, payload: bytes) -> DataRecord:
    """A DATA record's batch, from its payload."""
    head, _, body = payload.partition(b"\n")
    meta = orjson.loads(head)
    return DataRecord(sequence, meta["table"], tuple(meta["columns"]), _data_block(meta, body))


def flush_record(sequence: int, payload: bytes) -> FlushRecord:
    """A FLUSH record's intent, from its payload."""
    meta = orjson.loads(payload)
    return FlushRecord(sequence, meta["table"], meta["token"], tuple(meta["members"]))


def committed_intent(payload: bytes) -> int:
    """The intent a COMMIT record's payload names."""
    return orjson.loads(payload)["intent"]


def _data_block(meta: dict, body: bytes) -> Block:
    # A record without a format predates blocks: JSONEachRow lines.
    fmt = meta.get("format", JSON_EACH_ROW)
    if fmt not in FORMATS:
        raise RuntimeError(f"write-ahead log record has an unknown format {fmt!r}")
    rows = meta.get("rows")
    if rows is None:
        rows = len(body.split(b"\n")) if body else 0
    return Block(body, rows, fmt)


def read_segment(path: Path) -> tuple[list[tuple[int, int, bytes]], int]:
    """The intact records of a segment and the offset where intact data ends."""
    data = path.read_bytes()
    records = []
    offset = 0
    while offset + HEADER.size <= len(data):
        length, crc, sequence, kind = HEADER.unpack_from(data, offset)
        start = offset + HEADER.size
        payload = data[start : start + length]
        if len(payload) < length or zlib.crc32(payload) & 0xFFFFFFFF != crc:
            break
        records.append((sequence, kind, payload))
        offset = start + length
    return records, offset


def done_at_recovery(data: set[int], flushes: list[FlushRecord], committed: set[int]) -> set[int]:
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
