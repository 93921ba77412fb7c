"""The write-ahead log on its own: durability format, group commit, replay, torn tails,
segment deletion and the bound."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from services.ingest import wal as wal_module
from services.ingest.wal import WalFull, WriteAheadLog

COLUMNS = ("a",)


def lines(*values: int) -> list[bytes]:
    return [b'{"a":%d}' % v for v in values]


async def open_log(path: Path, **kwargs) -> tuple[WriteAheadLog, list, list]:
    log = WriteAheadLog(
        path,
        max_bytes=kwargs.get("max_bytes", 1 << 20),
        segment_bytes=kwargs.get("segment_bytes", 1 << 20),
    )
    data, flushes = await log.open()
    return log, data, flushes


async def test_concurrent_appends_share_fsyncs(tmp_path, monkeypatch):
    calls = []
    real_fsync = os.fsync
    monkeypatch.setattr(wal_module.os, "fsync", lambda fd: calls.append(fd) or real_fsync(fd))
    log, _, _ = await open_log(tmp_path)
    calls.clear()
    sequences = await asyncio.gather(*(log.append("t", COLUMNS, lines(i)) for i in range(200)))
    assert sorted(sequences) == list(range(sequences[0], sequences[0] + 200))
    assert len(calls) < 20, f"{len(calls)} fsyncs for 200 concurrent appends"
    await log.close()


async def test_uncommitted_batches_and_intents_are_replayed_in_order(tmp_path):
    log, _, _ = await open_log(tmp_path)
    first = await log.append("t", COLUMNS, lines(1, 2))
    second = await log.append("t", COLUMNS, lines(3))
    third = await log.append("u", ("b",), [b'{"b":"x"}'])
    intent = await log.append_flush("t", "tok-1", [first, second])
    done = await log.append_flush("u", "tok-2", [third])
    log.release([third, done], intent=done)
    await log.close()

    again, data, flushes = await open_log(tmp_path)
    assert [(r.sequence, r.table, r.lines) for r in data] == [
        (first, "t", lines(1, 2)),
        (second, "t", lines(3)),
    ]
    assert [(f.sequence, f.token, f.members) for f in flushes] == [
        (intent, "tok-1", (first, second))
    ]
    assert again.id == log.id and again.id
    # Sequence numbers keep growing across restarts, so tokens never repeat in one log.
    assert await again.append("t", COLUMNS, lines(4)) > intent
    await again.close()


async def test_a_torn_tail_is_cut_off_and_earlier_records_survive(tmp_path):
    log, _, _ = await open_log(tmp_path)
    kept = await log.append("t", COLUMNS, lines(1))
    await log.close()
    segment = max(tmp_path.glob("*.wal"), key=lambda p: p.stat().st_size)
    with segment.open("ab") as f:
        f.write(b"\x10\x00\x00\x00garbage")  # a record header cut short by a crash
    again, data, _ = await open_log(tmp_path)
    assert [r.sequence for r in data] == [kept]
    await again.close()


async def test_committed_segments_are_deleted(tmp_path):
    log, _, _ = await open_log(tmp_path, segment_bytes=200)
    sequences = [await log.append("t", COLUMNS, lines(*range(20))) for _ in range(5)]
    assert len(list(tmp_path.glob("*.wal"))) >= 5
    log.release(sequences)
    assert log.pending_bytes == 0
    assert len(list(tmp_path.glob("*.wal"))) == 1  # only the open segment remains
    await log.close()
    again, data, flushes = await open_log(tmp_path)
    assert (data, flushes) == ([], [])
    await again.close()


async def test_the_bound_refuses_instead_of_growing(tmp_path):
    log, _, _ = await open_log(tmp_path, max_bytes=100)
    sequence = await log.append("t", COLUMNS, lines(*range(8)))
    with pytest.raises(WalFull, match="limit 100"):
        await log.append("t", COLUMNS, lines(*range(8)))
    log.release([sequence])
    await log.append("t", COLUMNS, lines(*range(8)))  # room again once committed
    await log.close()
