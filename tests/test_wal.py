"""The write-ahead log on its own: durability format, group commit, replay, torn tails,
segment deletion while running, the bound on disk, tokens that never repeat, and file
permissions."""

from __future__ import annotations

import asyncio
import os
import shutil
import stat
from pathlib import Path

import pytest

from services.ingest import wal as wal_module
from services.ingest.blocks import Block
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


def files_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.glob("*.wal"))


async def settled(log: WriteAheadLog, path: Path) -> None:
    """Waits (bounded) until the writer has caught up: the files hold what the log counts."""
    for _ in range(500):
        if files_bytes(path) == log.disk_bytes:
            return
        await asyncio.sleep(0.01)


async def commit(log: WriteAheadLog, sequences: list[int], token: str = "tok") -> None:
    """What the batcher does once an insert succeeded: intent, then release with COMMIT."""
    intent = await log.append_flush("t", token, sequences)
    log.release([*sequences, intent], intent=intent)


async def test_sequence_numbers_survive_idle_restarts(tmp_path):
    log, _, _ = await open_log(tmp_path)
    first = await log.append("t", COLUMNS, lines(1))
    await commit(log, [first])
    await log.close()
    for _ in range(3):  # restarts that log nothing leave only empty segments behind
        idle, data, flushes = await open_log(tmp_path)
        assert (data, flushes) == ([], [])
        await idle.close()
    again, _, _ = await open_log(tmp_path)
    assert await again.append("t", COLUMNS, lines(2)) > first
    await again.close()


async def test_tokens_differ_even_between_copies_of_one_log(tmp_path):
    log, _, _ = await open_log(tmp_path / "a")
    await log.close()
    shutil.copytree(tmp_path / "a", tmp_path / "b")  # a restored backup, a cloned volume
    a, _, _ = await open_log(tmp_path / "a")
    b, _, _ = await open_log(tmp_path / "b")
    assert a.id == b.id
    sequences = [await a.append("t", COLUMNS, lines(1)), await b.append("t", COLUMNS, lines(1))]
    assert sequences[0] == sequences[1]
    tokens = {a.new_token("t", [sequences[0]]) for _ in range(100)}
    tokens |= {b.new_token("t", [sequences[1]]) for _ in range(100)}
    assert len(tokens) == 200
    await a.close()
    await b.close()


async def test_committed_segments_are_deleted_while_running(tmp_path):
    log, _, _ = await open_log(tmp_path, segment_bytes=400)
    for n in range(40):
        sequence = await log.append("t", COLUMNS, lines(*range(n, n + 10)))
        await commit(log, [sequence])
        segments = sorted(tmp_path.glob("*.wal"))
        # Everything is committed: at most the open segment and the one just closed
        # (deleted as the COMMIT that finished it lands) remain.
        assert len(segments) <= 2, [p.name for p in segments]
    await settled(log, tmp_path)
    assert log.pending_bytes == 0
    assert log.disk_bytes == files_bytes(tmp_path) <= 400 + 200
    await log.close()


async def test_the_bound_holds_on_disk_and_bookkeeping_is_never_refused(tmp_path):
    limit = 6000
    log, _, _ = await open_log(tmp_path, max_bytes=limit, segment_bytes=1000)
    accepted = []
    with pytest.raises(WalFull, match=f"limit {limit}"):
        while True:
            accepted.append(await log.append("t", COLUMNS, lines(*range(8))))
    assert accepted
    # With the log full, every accepted batch still gets its intent and its COMMIT,
    # and the files stay within the bound.
    intents = [await log.append_flush("t", f"tok-{s}", [s]) for s in accepted]
    assert files_bytes(tmp_path) <= limit
    for sequence, intent in zip(accepted, intents, strict=True):
        log.release([sequence, intent], intent=intent)
    await settled(log, tmp_path)
    assert files_bytes(tmp_path) <= limit
    assert log.pending_bytes == 0
    # Room again once committed: the open segment, all committed, is rolled away.
    for _ in range(500):
        try:
            await log.append("t", COLUMNS, lines(*range(8)))
            break
        except WalFull:
            await asyncio.sleep(0.01)
    else:
        pytest.fail("the log never made room after everything was committed")
    await settled(log, tmp_path)
    assert log.disk_bytes == files_bytes(tmp_path)
    await log.close()


async def test_a_batch_that_can_never_fit_says_so(tmp_path):
    log, _, _ = await open_log(tmp_path, max_bytes=1000)
    with pytest.raises(WalFull, match="more than its limit of 1000"):
        await log.append("t", COLUMNS, lines(*range(200)))
    await log.close()


async def test_batches_logged_together_are_all_taken_or_none(tmp_path):
    log, _, _ = await open_log(tmp_path, max_bytes=2000)
    filler = await log.append("t", COLUMNS, lines(*range(70)))
    pending = log.pending_bytes
    second = ("u", COLUMNS, Block.from_lines(lines(*range(70))))
    with pytest.raises(WalFull, match="full"):
        await log.append_batches([("t", COLUMNS, Block.from_lines(lines(1))), second])
    assert log.pending_bytes == pending
    await log.close()
    again, data, _ = await open_log(tmp_path)
    assert [r.sequence for r in data] == [filler]
    await again.close()


async def test_log_files_are_private(tmp_path):
    directory = tmp_path / "wal"
    directory.mkdir(mode=0o755)
    (directory / f"{1:020d}.wal").write_bytes(b"")  # left by an older version, 0644
    os.chmod(directory / f"{1:020d}.wal", 0o644)
    log, _, _ = await open_log(directory, segment_bytes=100)
    for n in range(5):
        await log.append("t", COLUMNS, lines(n, n, n, n))
    paths = [directory, directory / "wal.id", *directory.glob("*.wal")]
    assert len(paths) > 3
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in paths}
    assert modes == {p.name: (0o700 if p == directory else 0o600) for p in paths}, modes
    await log.close()


async def test_an_intent_whose_batches_are_gone_counts_as_done(tmp_path):
    # A COMMIT lost in a crash, after the segment of the intent's batches was deleted:
    # the intent survives alone and must not keep its segment forever.
    log, _, _ = await open_log(tmp_path, segment_bytes=150)
    sequence = await log.append("t", COLUMNS, lines(*range(10)))
    await log.append("t", COLUMNS, lines(*range(10)))  # rolls: the batch's segment closes
    intent = await log.append_flush("t", "tok", [sequence])
    log._closed = True  # noqa: SLF001 - the crash: no COMMIT is written from here on
    log.release([sequence, intent], intent=intent)
    log._closed = False  # noqa: SLF001
    assert not (tmp_path / f"{sequence:020d}.wal").exists()
    await log.close()
    again, data, flushes = await open_log(tmp_path)
    assert flushes == []
    assert [r.sequence for r in data] == [sequence + 1]
    await again.close()


async def test_an_intent_written_twice_replays_once(tmp_path):
    log, _, _ = await open_log(tmp_path)
    sequence = await log.append("t", COLUMNS, lines(1))
    # A first write of the intent failed after reaching the disk; the batcher wrote it
    # again, same token, same batch.
    first = await log.append_flush("t", "tok", [sequence])
    await log.append_flush("t", "tok", [sequence])
    await log.close()
    again, data, flushes = await open_log(tmp_path)
    assert [(f.sequence, f.token, f.members) for f in flushes] == [(first, "tok", (sequence,))]
    assert [r.sequence for r in data] == [sequence]
    await again.close()


async def test_a_failed_write_leaves_no_torn_record_behind(tmp_path, monkeypatch):
    log, _, _ = await open_log(tmp_path)
    kept = await log.append("t", COLUMNS, lines(1))
    real_fsync = os.fsync
    calls = []

    def failing_fsync(fd: int) -> None:
        calls.append(fd)
        if len(calls) == 1:  # the bytes are in the file, the fsync fails
            raise OSError(5, "Input/output error")
        real_fsync(fd)

    monkeypatch.setattr(wal_module.os, "fsync", failing_fsync)
    with pytest.raises(OSError):
        await log.append("t", COLUMNS, lines(2))
    after = await log.append("t", COLUMNS, lines(3))
    assert log.pending_bytes == 2 * Block.from_lines(lines(1)).size
    await log.close()
    monkeypatch.setattr(wal_module.os, "fsync", real_fsync)
    again, data, _ = await open_log(tmp_path)
    assert [(r.sequence, r.lines) for r in data] == [(kept, lines(1)), (after, lines(3))]
    await again.close()
