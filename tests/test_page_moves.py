"""The page moves chDB keeps beside clickstream_events (common/page_moves.py): after every
insert, in any order of batches, retried or not, and after rows are deleted, truncated or
present before the moves table was, the table holds exactly the moves computed here in
plain Python from the rows inserted; and page_paths, which reads them, answers what
tests/expected.py computes from the same events."""

from __future__ import annotations

import asyncio
import dataclasses
import random
from collections import Counter
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

import aiohttp
import orjson
import pytest
from conftest import unique_database
from expected import page_paths as expected_page_paths
from harness import TOKEN, start_suite

from common import page_moves
from common.datasources import Datasource, registry
from common.warehouse import embedded
from common.warehouse.embedded import EmbeddedWarehouse
from pipit.query.v1 import query_service_pb2 as q
from services.query.service import builtin_endpoints

DS = "clickstream_events"
SITE = "https://example.com"
PAGES = [f"{SITE}{path}" for path in ("/", "/pricing", "/docs", "/blog", "/checkout", "/about")]
START = datetime(2024, 3, 1)
Event = dict[str, Any]


def _events(seed: int, sessions: int = 40) -> list[Event]:
    """Sessions of page views (some `pageview`, as a client may spell it) and other events,
    with reloads, repeated pages and views that share a second (told apart by event_id)."""
    rng = random.Random(seed)
    events = []
    for s in range(sessions):
        at = START + timedelta(minutes=rng.randrange(60 * 24))
        for i in range(rng.randrange(1, 12)):
            at += timedelta(seconds=rng.choice([0, 0, 1, 5, 30, 400]))
            events.append(
                _view(
                    f"s{seed}-{s}",
                    at,
                    rng.choice(PAGES[: rng.randrange(2, len(PAGES) + 1)]),
                    f"{i}-{rng.randrange(1000)}",
                    event_type=rng.choice(["page_view"] * 6 + ["pageview", "click", "scroll"]),
                    user_id=f"u{s % 7}",
                )
            )
    return events


def _view(
    session: str,
    at: datetime,
    page: str,
    number: int | str,
    *,
    event_type: str = "page_view",
    user_id: str = "u1",
) -> Event:
    """One event of `session` at `at` on `page` (a page view unless `event_type` says)."""
    return {
        "event_id": f"e{session}-{number}",
        "user_id": user_id,
        "session_id": session,
        "event_type": event_type,
        "page_url": page,
        "page_title": "t",
        "referrer": "",
        "timestamp": at.strftime("%Y-%m-%d %H:%M:%S"),
        "device_type": "mobile",
        "browser": "Chrome",
        "properties": "{}",
    }


def _moves(events: list[Event]) -> Counter[tuple[str, str, str, str, str]]:
    """Each session's neighbouring page views (by time, event_id, url) on different pages."""
    views: dict[str, list[tuple[str, str, str]]] = {}
    for e in events:
        if e["event_type"] in ("page_view", "pageview"):
            views.setdefault(e["session_id"], []).append(
                (e["timestamp"], e["event_id"], e["page_url"])
            )
    moves: Counter[tuple[str, str, str, str, str]] = Counter()
    for session, seen in views.items():
        ordered = sorted(seen)
        for (t1, _, p1), (t2, _, p2) in zip(ordered, ordered[1:], strict=False):
            if p1 != p2:
                moves[(session, p1, p2, t1, t2)] += 1
    return moves


def _quoted(values: Iterable[str]) -> str:
    """`values` as SQL string literals, for an IN list (ids of our own making)."""
    return ", ".join(f"'{v}'" for v in sorted(values))


async def _kept(warehouse: EmbeddedWarehouse) -> Counter[tuple[str, str, str, str, str]]:
    """The moves the table holds once the pending sessions are settled (as a read of
    page_paths settles them)."""
    await warehouse.settle_page_moves(DS)
    return await _unsettled(warehouse)


async def _insert(warehouse: EmbeddedWarehouse, rows: list[Event], token: str) -> None:
    columns = registry()[DS].column_names
    body = b"\n".join(orjson.dumps({c: r[c] for c in columns}) for r in rows)
    await warehouse.insert_json_rows(DS, columns, body, dedup_token=token)


async def _page_paths(warehouse: EmbeddedWarehouse, **fields: str) -> list[dict[str, Any]]:
    endpoint = builtin_endpoints(1 << 20)["PagePaths"]
    sql, params = endpoint.prepare(q.PagePathsRequest(**fields))
    result = await warehouse.query(sql, params)
    return [{**row, "transitions": int(row["transitions"])} for row in result.data]


@pytest.fixture
async def warehouse(chdb_dir) -> EmbeddedWarehouse:
    warehouse = EmbeddedWarehouse(chdb_dir, unique_database())
    await warehouse.open()
    await warehouse.ensure_schema(list(registry().values()))
    yield warehouse
    await warehouse.execute(f"DROP DATABASE IF EXISTS `{warehouse.database}`")
    await warehouse.close()


async def _pending(warehouse: EmbeddedWarehouse) -> int:
    """The sessions waiting for a reconcile (read on the ad-hoc lane, which settles none)."""
    table = page_moves.pending_table(DS)
    result = await warehouse.adhoc_query(f"SELECT count() AS n FROM `{table}`", {})  # noqa: S608
    return int(result.data[0]["n"])


async def _unsettled(warehouse: EmbeddedWarehouse) -> Counter[tuple[str, str, str, str, str]]:
    """The moves the table holds as it is, pending sessions not settled."""
    table = page_moves.table(DS)
    result = await warehouse.adhoc_query(
        f"SELECT session_id, from_page, to_page, formatDateTime(from_time, '%F %T') AS f, "  # noqa: S608
        f"formatDateTime(to_time, '%F %T') AS t, sum(sign) AS n FROM `{table}` "
        "GROUP BY session_id, from_page, to_page, f, t HAVING n != 0",
        {},
    )
    return Counter(
        {
            (r["session_id"], r["from_page"], r["to_page"], r["f"], r["t"]): int(r["n"])
            for r in result.data
        }
    )


def _settle_every_write(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every write reconciles its sessions: no wait, whatever the last reconcile cost."""
    monkeypatch.setattr(page_moves, "SETTLE_SECONDS", 0.0)
    monkeypatch.setattr(page_moves, "SETTLE_TIMES", 0.0)


@pytest.mark.parametrize(
    ("costs", "writes"),
    [
        # Cheap reconciles: a second after the first write not reconciled.
        ([0.05], [(100.0, 1, False), (100.9, 1, False), (101.0, 1, True)]),
        # A reconcile of half a second (a big table's): ten times that, so that reconciles
        # take at most a tenth of the writer's time.
        ([0.5], [(200.0, 1, False), (204.9, 1, False), (205.0, 1, True)]),
        # The moves made again from the rows say nothing of a reconcile's cost: kept. Many
        # bytes pending: due at once, however soon.
        ([0.5, None], [(300.0, 1, False), (304.9, 1, False), (304.95, 64 << 20, True)]),
        # An hour idle, then a write: its sessions wait for the batches that follow it,
        # rather than being reconciled alone because the last reconcile is long past.
        ([0.01], [(3_600.0, 1, False), (3_600.5, 1, False), (3_601.0, 1, True)]),
    ],
    ids=["cheap", "costly", "rebuilt", "after-idle"],
)
def test_a_writer_waits_from_its_first_write_not_reconciled_by_their_cost(costs, writes):
    schedule = page_moves.SettleSchedule()
    for cost in costs:
        schedule.settled(cost)
    for at, size, due in writes:
        assert schedule.written(at, size) is due, at
    assert schedule.pending_bytes == sum(size for _, size, _ in writes)
    schedule.settled(0.01)
    assert (schedule.pending_since, schedule.pending_bytes) == (None, 0)


@pytest.mark.parametrize("settle_seconds", [0.0, 3600.0], ids=["every-batch", "on-read"])
@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_batches_in_any_order_and_retried_keep_exactly_the_rows_moves(
    warehouse, seed, settle_seconds, monkeypatch
):
    # Reconciled with every batch, or only when read (many batches' sessions at once).
    monkeypatch.setattr(page_moves, "SETTLE_SECONDS", settle_seconds)
    monkeypatch.setattr(page_moves, "SETTLE_TIMES", 0.0)
    events = _events(seed)
    rng = random.Random(seed)
    shuffled = events[:]
    rng.shuffle(shuffled)  # later views first, views landing between two kept ones
    batches = []
    while shuffled:
        size = rng.randrange(1, 25)
        batches.append(shuffled[:size])
        shuffled = shuffled[size:]
    inserted: list[Event] = []
    for number, batch in enumerate(batches):
        await _insert(warehouse, batch, f"t{seed}-{number}")
        inserted += batch
        if number % 5 == 0 or number == len(batches) - 1:
            assert await _kept(warehouse) == _moves(inserted), number
    # A flush retried after its answer was lost: the rows are deduplicated, the moves too.
    await _insert(warehouse, batches[0], f"t{seed}-0")
    assert await _kept(warehouse) == _moves(events)
    assert _moves(events)  # the generated sessions do move between pages
    ranges = [
        {},
        {"start_date": "2024-03-01 06:00:00", "end_date": "2024-03-01 18:00:00"},
        {"start_date": "2024-03-01 12:00:05", "end_date": "2024-03-01 12:40:00"},
    ]
    for page in PAGES:
        for bounds in ranges:
            answer = await _page_paths(warehouse, page_url=page, **bounds)
            assert answer == expected_page_paths(events, page_url=page, **bounds), (page, bounds)


async def test_a_read_of_the_moves_settles_what_writes_left_pending(warehouse, monkeypatch):
    monkeypatch.setattr(page_moves, "SETTLE_SECONDS", 3600.0)
    first, second = _events(31), _events(32)
    await _insert(warehouse, first, "first")  # the first write of the process settles
    assert await _pending(warehouse) == 0
    assert await _unsettled(warehouse) == _moves(first)
    # Within the interval: the sessions wait, the moves table is behind the rows.
    await _insert(warehouse, second, "second")
    assert await _pending(warehouse) > 0
    assert await _unsettled(warehouse) == _moves(first)
    # page_paths answers from settled moves: its read reconciles them first.
    events = first + second
    for page in PAGES[:3]:
        answer = await _page_paths(warehouse, page_url=page)
        assert answer == expected_page_paths(events, page_url=page), page
    assert await _pending(warehouse) == 0
    assert await _unsettled(warehouse) == _moves(events)


async def test_writes_settle_once_the_interval_or_the_bytes_are_reached(warehouse, monkeypatch):
    monkeypatch.setattr(page_moves, "SETTLE_SECONDS", 3600.0)
    events = _events(41)
    await _insert(warehouse, events[:5], "a")
    await _insert(warehouse, events[5:10], "b")
    assert await _pending(warehouse) > 0
    # Enough bytes since the last reconcile: the write settles them itself.
    monkeypatch.setattr(page_moves, "SETTLE_BYTES", 1)
    await _insert(warehouse, events[10:20], "c")
    assert await _pending(warehouse) == 0
    assert await _unsettled(warehouse) == _moves(events[:20])
    monkeypatch.setattr(page_moves, "SETTLE_BYTES", 1 << 40)
    await _insert(warehouse, events[20:30], "d")
    assert await _pending(warehouse) > 0
    # A second after the last reconcile (here: no interval at all), likewise.
    _settle_every_write(monkeypatch)
    await _insert(warehouse, events[30:], "e")
    assert await _pending(warehouse) == 0
    assert await _unsettled(warehouse) == _moves(events)


async def test_sessions_left_pending_by_an_earlier_process_are_settled(warehouse, monkeypatch):
    monkeypatch.setattr(page_moves, "SETTLE_SECONDS", 3600.0)
    events = _events(51)
    await _insert(warehouse, events[:30], "a")
    await _insert(warehouse, events[30:], "b")
    assert await _pending(warehouse) > 0
    # A new process knows of no reconcile (the pending table is on disk): its first write
    # settles what waits, its own batch's sessions with them.
    engine = embedded._Engine.get(warehouse.data_dir / "chdb")
    engine.moves_schedules.clear()
    more = _events(52)
    await _insert(warehouse, more, "c")
    assert await _pending(warehouse) == 0
    assert await _unsettled(warehouse) == _moves(events + more)


async def test_deleted_and_truncated_rows_leave_no_moves(warehouse):
    events = _events(7)
    await _insert(warehouse, events, "all")
    table = f"`{warehouse.database}`.`{DS}`"

    # The writer's delete: only the deleted rows' sessions are reconciled.
    gone = {e["session_id"] for e in events[::3]}
    await warehouse.delete_rows(DS, table, f"session_id IN ({_quoted(gone)})")
    left = [e for e in events if e["session_id"] not in gone]
    assert await _pending(warehouse) == 0
    assert await _unsettled(warehouse) == _moves(left)
    assert _moves(left) != _moves(events)
    # Some of a session's rows only: its remaining views move between other neighbours.
    cut = {e["event_id"] for e in left[1::4]}
    await warehouse.delete_rows(DS, table, f"event_id IN ({_quoted(cut)})")
    left = [e for e in left if e["event_id"] not in cut]
    assert await _unsettled(warehouse) == _moves(left)
    # SQL the writer does not see, then told: every move made again.
    gone = {e["session_id"] for e in left[::2]}
    await warehouse.execute(
        f"ALTER TABLE {table} DELETE WHERE session_id IN ({_quoted(gone)}) "
        "SETTINGS mutations_sync = 2"
    )
    await warehouse.rows_replaced(DS)
    left = [e for e in left if e["session_id"] not in gone]
    assert await _kept(warehouse) == _moves(left)
    await warehouse.execute(f"TRUNCATE TABLE {table}")
    await warehouse.rows_replaced(DS)
    assert await _kept(warehouse) == Counter()
    assert await _spans(warehouse) == {}
    # The spans were made again with the moves (a table replaced): the next reconcile
    # reads within them and extends them with the views it read.
    again = _events(8)
    await _insert(warehouse, again, "again")
    assert await _kept(warehouse) == _moves(again)
    assert await _spans(warehouse) == _expected_spans(again)


async def _delete_begun(
    warehouse: EmbeddedWarehouse, seed: int, every: int, suffix: str
) -> tuple[list[dict[str, Any]], list[str], str]:
    """What delete_rows does before its mutation, as a stopped process left it: events
    written, every `every`th one's session to go, those sessions kept under `suffix`.
    Answers the events, the sessions and the delete's condition."""
    events = _events(seed)
    await _insert(warehouse, events, "all")
    gone = sorted({e["session_id"] for e in events[::every]})
    condition = f"session_id IN ({_quoted(gone)})"
    await warehouse.execute(page_moves.deleting_sql(warehouse.database, DS, suffix, condition))
    return events, gone, condition


async def test_a_delete_a_stopped_process_left_is_finished_by_a_start(warehouse):
    # What delete_rows had done when the process stopped: the sessions kept, the rows
    # deleted, their moves not settled yet (nor pending).
    suffix = "0123456789ab"
    events, gone, condition = await _delete_begun(warehouse, 61, 3, suffix)
    table = f"`{warehouse.database}`.`{DS}`"
    await warehouse.execute(
        f"ALTER TABLE {table} DELETE WHERE {condition} SETTINGS mutations_sync = 2"
    )
    left = [e for e in events if e["session_id"] not in gone]
    assert await _unsettled(warehouse) == _moves(events) != _moves(left)
    await warehouse.ensure_schema(list(registry().values()))
    await warehouse.deletes_finished()
    assert await _unsettled(warehouse) == _moves(left)
    assert page_moves.deleting_table(DS, suffix) not in await warehouse.table_names()


async def test_a_start_does_not_wait_for_the_delete_a_stopped_process_left(warehouse):
    # A mutation runs for minutes at scale: a start that waited for it would not be ready.
    suffix = "a1b2c3d4e5f6"
    events, gone, condition = await _delete_begun(warehouse, 63, 4, suffix)
    table = f"`{warehouse.database}`.`{DS}`"
    # The engine runs mutations as it merges: stopped, the delete cannot end.
    await warehouse.execute(f"SYSTEM STOP MERGES {table}")
    try:
        await warehouse.execute(
            f"ALTER TABLE {table} DELETE WHERE {condition} SETTINGS mutations_sync = 0"
        )
        await asyncio.wait_for(warehouse.ensure_schema(list(registry().values())), 60)
        # Ready, the delete still under way: its sessions kept, their moves as before.
        assert page_moves.deleting_table(DS, suffix) in await warehouse.table_names()
        assert await _unsettled(warehouse) == _moves(events)
        # Another warehouse of this process over the same database (another service of
        # one suite) leaves it to the first.
        other = warehouse.sibling(warehouse.database)
        await other.open()
        await asyncio.wait_for(other.ensure_schema(list(registry().values())), 60)
        assert other._finishing is None and warehouse._finishing is not None
    finally:
        await warehouse.execute(f"SYSTEM START MERGES {table}")
    await warehouse.deletes_finished()
    left = [e for e in events if e["session_id"] not in gone]
    assert await _unsettled(warehouse) == _moves(left) != _moves(events)
    assert page_moves.deleting_table(DS, suffix) not in await warehouse.table_names()


async def test_a_start_leaves_the_deletes_this_process_runs_to_their_callers(warehouse):
    # A deploy's ensure_schema while a delete of this process runs: the delete's kept
    # sessions are not taken for a stopped process's.
    events = _events(64)
    await _insert(warehouse, events, "all")
    condition = f"session_id = '{events[0]['session_id']}'"
    suffix = "f6e5d4c3b2a1"
    await warehouse.execute(page_moves.deleting_sql(warehouse.database, DS, suffix, condition))
    under_way = warehouse._engine.deletes_under_way
    under_way.add(suffix)
    try:
        await warehouse.ensure_schema(list(registry().values()))
        await warehouse.deletes_finished()
        assert page_moves.deleting_table(DS, suffix) in await warehouse.table_names()
    finally:
        under_way.discard(suffix)
    await warehouse.ensure_schema(list(registry().values()))  # now one left: finished
    await warehouse.deletes_finished()
    assert page_moves.deleting_table(DS, suffix) not in await warehouse.table_names()


async def test_a_start_stops_a_failed_delete_a_stopped_process_left(warehouse):
    suffix = "ba9876543210"
    events, _, condition = await _delete_begun(warehouse, 62, 3, suffix)
    # A mutation that fails on a row it reaches, retried by the engine for ever.
    await warehouse.execute(
        f"ALTER TABLE `{warehouse.database}`.`{DS}` DELETE WHERE "
        f"throwIf(event_id = '{events[0]['event_id']}') = 0 AND {condition} "
        "SETTINGS mutations_sync = 0"
    )
    await warehouse.ensure_schema(list(registry().values()))
    await warehouse.deletes_finished()
    assert page_moves.deleting_table(DS, suffix) not in await warehouse.table_names()
    # Whichever rows the engine got to, the moves are theirs.
    left = await warehouse.query(f"SELECT event_id FROM `{DS}`", {})  # noqa: S608
    kept = {row["event_id"] for row in left.data}
    assert await _unsettled(warehouse) == _moves([e for e in events if e["event_id"] in kept])


def _without_moves() -> list[Datasource]:
    """The datasources as a release before the page moves declared them."""
    return [
        dataclasses.replace(ds, page_moves=False) if ds.name == DS else ds
        for ds in registry().values()
    ]


async def test_rows_older_than_the_moves_table_are_moved_in(chdb_dir):
    warehouse = EmbeddedWarehouse(chdb_dir, unique_database())
    await warehouse.open()
    try:
        await warehouse.ensure_schema(_without_moves())
        events = _events(11)
        await _insert(warehouse, events, "before")
        tables = await warehouse.query(
            "SELECT count() AS n FROM system.tables WHERE database = currentDatabase() "
            "AND name = {name:String}",
            {"name": page_moves.table(DS)},
        )
        assert tables.data == [{"n": 0}]
        await warehouse.ensure_schema(list(registry().values()))
        assert await _kept(warehouse) == _moves(events)
        # And the writer keeps them from then on.
        more = _events(12)
        await _insert(warehouse, more, "after")
        assert await _kept(warehouse) == _moves(events + more)
    finally:
        await warehouse.execute(f"DROP DATABASE IF EXISTS `{warehouse.database}`")
        await warehouse.close()


async def _rows(warehouse: EmbeddedWarehouse) -> list[dict[str, Any]]:
    """The moves table's rows as they are (each row, not the moves' sums)."""
    result = await warehouse.adhoc_query(
        f"SELECT session_id, from_page, to_page, formatDateTime(from_time, '%F %T') AS f, "  # noqa: S608
        f"formatDateTime(to_time, '%F %T') AS t, sign FROM `{page_moves.table(DS)}`",
        {},
    )
    return result.data


async def test_merged_moves_keep_one_row_per_standing_move(warehouse, monkeypatch):
    # Settled with every batch, so that later views undo moves the table already holds.
    _settle_every_write(monkeypatch)
    events = _events(61, sessions=60)
    ordered = sorted(events, key=lambda e: e["timestamp"])
    # Every other view first, then the rest: each later batch puts views between two kept
    # ones, so the moves between those are undone (-1) and others made (+1).
    batches = [ordered[0::2], ordered[1::2]]
    for number, batch in enumerate(batches):
        await _insert(warehouse, batch, f"merge-{number}")
    await warehouse.settle_page_moves(DS)
    before = await _rows(warehouse)
    undone = [r for r in before if int(r["sign"]) < 0]
    assert undone, "the batches undo no move: the test shows nothing"
    await warehouse.execute(f"OPTIMIZE TABLE `{page_moves.table(DS)}` FINAL")
    after = await _rows(warehouse)
    merged = Counter(
        {
            (r["session_id"], r["from_page"], r["to_page"], r["f"], r["t"]): int(r["sign"])
            for r in after
        }
    )
    # One row per move that stands, holding its count: no undone move, no pair of +1 and -1.
    assert len(after) == len(merged) < len(before)
    assert merged == _moves(events)
    for page in PAGES[:3]:
        answer = await _page_paths(warehouse, page_url=page)
        assert answer == expected_page_paths(events, page_url=page), page


async def test_an_older_releases_moves_table_is_summed_into_the_new_one(chdb_dir):
    warehouse = EmbeddedWarehouse(chdb_dir, unique_database())
    await warehouse.open()
    db = warehouse.database
    try:
        await warehouse.ensure_schema(list(registry().values()))
        events = _events(71)
        await _insert(warehouse, events, "before")
        await warehouse.settle_page_moves(DS)
        # As a release before 2026-12-02 left it: the settled moves in a plain MergeTree of
        # the old name, a correction's +1 and -1 rows among them, and no summed table. One
        # move the rows do not have shows that the upgrade copies what that table had
        # settled (the pending sessions are settled against it later), not the rows.
        old = page_moves.retired_table(DS)
        await warehouse.execute(
            f"CREATE TABLE `{db}`.`{old}` ENGINE = MergeTree ORDER BY (from_page, from_time) "  # noqa: S608
            f"AS SELECT session_id, from_page, to_page, from_time, to_time, toInt8(sign) AS sign "
            f"FROM `{db}`.`{page_moves.table(DS)}`"
        )
        extra = ("s-extra", PAGES[0], PAGES[1], "2024-03-01 10:00:00", "2024-03-01 10:00:05")
        undone = ("s-undone", PAGES[1], PAGES[2], "2024-03-01 11:00:00", "2024-03-01 11:00:09")
        values = ", ".join(
            f"('{m[0]}', '{m[1]}', '{m[2]}', '{m[3]}', '{m[4]}', {sign})"
            for m, sign in ((extra, 1), (undone, 1), (undone, -1))
        )
        await warehouse.execute(f"INSERT INTO `{db}`.`{old}` VALUES {values}")  # noqa: S608
        await warehouse.execute(f"DROP TABLE `{db}`.`{page_moves.table(DS)}`")
        await warehouse.ensure_schema(list(registry().values()))
        tables = await warehouse.query(
            "SELECT name, engine FROM system.tables WHERE database = currentDatabase() "
            "AND name IN ({old:String}, {new:String})",
            {"old": old, "new": page_moves.table(DS)},
        )
        assert tables.data == [{"name": page_moves.table(DS), "engine": "SummingMergeTree"}]
        rows = await _rows(warehouse)
        # Summed as copied: one row per move, none for the undone one.
        assert len(rows) == len(_moves(events)) + 1
        assert await _unsettled(warehouse) == _moves(events) + Counter({extra: 1})
    finally:
        await warehouse.execute(f"DROP DATABASE IF EXISTS `{db}`")
        await warehouse.close()


async def test_a_process_stopped_while_replacing_rows_leaves_the_moves_to_the_next_start(
    chdb_dir,
):
    warehouse = EmbeddedWarehouse(chdb_dir, unique_database())
    await warehouse.open()
    db = warehouse.database
    try:
        await warehouse.ensure_schema(list(registry().values()))
        await _insert(warehouse, _events(91), "old rows")
        await warehouse.settle_page_moves(DS)
        assert await _unsettled(warehouse)
        # A truncate, as the Data Sources API runs it, by a process that stops before it
        # makes the moves again: the rows are gone, the moves are still there.
        await warehouse.rows_replacing(DS)
        await warehouse.execute(f"TRUNCATE TABLE `{db}`.`{DS}`")
        await warehouse.close()
        warehouse = EmbeddedWarehouse(chdb_dir, db)
        await warehouse.open()
        await warehouse.ensure_schema(list(registry().values()))
        # The start makes them from the rows, and the mark goes.
        assert await _unsettled(warehouse) == Counter()
        assert page_moves.stale_table(DS) not in await warehouse.table_names()
        # And a replace that finishes leaves no mark either.
        events = _events(92)
        await _insert(warehouse, events, "new rows")
        await warehouse.rows_replacing(DS)
        await warehouse.rows_replaced(DS)
        assert page_moves.stale_table(DS) not in await warehouse.table_names()
        assert await _kept(warehouse) == _moves(events)
    finally:
        await warehouse.execute(f"DROP DATABASE IF EXISTS `{db}`")
        await warehouse.close()


async def test_a_start_drops_the_copy_a_replace_stopped_midway_left(warehouse):
    """The engine builds a `CREATE OR REPLACE TABLE`'s new table beside the old under a name
    of its own, then swaps them: a process stopped in between leaves the copy (a whole moves
    table, say) for ever, unless a start drops it."""
    db = warehouse.database
    await _insert(warehouse, _events(95), "rows")
    await warehouse.settle_page_moves(DS)
    left = ["_tmp_replace_9f3c2a_1", ".tmp_replace_77e1b0_2"]
    for name in left:
        await warehouse.execute(
            f"CREATE TABLE `{db}`.`{name}` ENGINE = MergeTree ORDER BY from_page "  # noqa: S608
            f"AS SELECT * FROM `{db}`.`{page_moves.table(DS)}`"
        )
    # A table of the project's whose name only holds the words stays.
    await warehouse.execute(f"CREATE TABLE `{db}`.`kept_tmp_replace_log` (n UInt8) ENGINE = Log")
    before = await warehouse.table_names()
    assert set(left) <= before
    await warehouse.ensure_schema(list(registry().values()))
    assert await warehouse.table_names() == before - set(left)


async def test_a_start_stopped_while_making_the_moves_leaves_them_to_the_next(
    chdb_dir, monkeypatch
):
    warehouse = EmbeddedWarehouse(chdb_dir, unique_database())
    await warehouse.open()
    try:
        await warehouse.ensure_schema(_without_moves())
        events = _events(81)
        await _insert(warehouse, events, "rows")
        # The start that adds the moves stops where it would fill them (killed, say, by a
        # liveness probe that found it slow).
        execute = warehouse.execute

        async def stopped(sql: str) -> None:
            if page_moves.table(DS) in sql and " AS SELECT" in sql:
                raise RuntimeError("stopped")
            await execute(sql)

        monkeypatch.setattr(warehouse, "execute", stopped)
        with pytest.raises(RuntimeError, match="stopped"):
            await warehouse.ensure_schema(list(registry().values()))
        monkeypatch.setattr(warehouse, "execute", execute)
        # No moves table, rather than an empty one the next start would keep.
        assert page_moves.table(DS) not in await warehouse.table_names()
        await warehouse.ensure_schema(list(registry().values()))
        assert await _kept(warehouse) == _moves(events)
    finally:
        await warehouse.execute(f"DROP DATABASE IF EXISTS `{warehouse.database}`")
        await warehouse.close()


@pytest.mark.e2e
async def test_the_apis_that_write_rows_keep_the_moves(warehouse):
    """Through a whole suite: the Events API's batches (the ingest's own insert format),
    an import, a replace, a delete and a truncate of the Data Sources API."""
    suite = await start_suite(warehouse)
    try:
        async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {TOKEN}"}) as http:

            async def call(path: str, data: Any) -> dict[str, Any]:
                async with http.post(f"{suite.gateway_url}{path}", data=data) as response:
                    answer = await response.json()
                    assert response.status == 200, answer
                    return answer

            def ndjson(rows: list[Event]) -> bytes:
                return b"\n".join(orjson.dumps(r) for r in rows)

            events = _events(21)
            rng = random.Random(21)
            shuffled = events[:]
            rng.shuffle(shuffled)
            for start in range(0, len(shuffled), 40):
                batch = ndjson(shuffled[start : start + 40])
                await call(f"/v0/events?name={DS}&wait=true", batch)
            # The endpoint itself answers from settled moves, whatever the writes left.
            for page in PAGES[:2]:
                url = f"{suite.gateway_url}/v0/pipes/page_paths.json"
                async with http.get(url, params={"page_url": page}) as response:
                    answer = await response.json()
                    assert response.status == 200, answer
                got = [{**r, "transitions": int(r["transitions"])} for r in answer["data"]]
                assert got == expected_page_paths(events, page_url=page), page
            assert await _kept(warehouse) == _moves(events)

            more = _events(22)
            await suite.ingest.importer.wait(
                (await call(f"/v0/datasources?name={DS}&format=ndjson", ndjson(more)))["id"]
            )
            assert await _kept(warehouse) == _moves(events + more)

            instead = _events(23)
            replace = f"/v0/datasources?name={DS}&mode=replace&format=ndjson"
            job = await call(replace, ndjson(instead))
            await suite.ingest.importer.wait(job["id"])
            assert await _kept(warehouse) == _moves(instead)
            # The table swapped in is the one the pending sessions' view records writes to.
            extra = _events(24)
            await call(f"/v0/events?name={DS}&wait=true", ndjson(extra))
            instead += extra
            assert await _kept(warehouse) == _moves(instead)

            gone = sorted({e["session_id"] for e in instead[::4]})
            condition = f"session_id IN ({_quoted(gone)})"
            await call(f"/v0/datasources/{DS}/delete", {"delete_condition": condition})
            await suite.ingest.datasources.wait_deletes()
            left = [e for e in instead if e["session_id"] not in gone]
            assert _moves(left) != _moves(instead)
            assert await _kept(warehouse) == _moves(left)

            await call(f"/v0/datasources/{DS}/truncate", None)
            assert await _kept(warehouse) == Counter()
    finally:
        await suite.stop()


async def _spans(warehouse: EmbeddedWarehouse) -> dict[str, tuple[str, str]]:
    table = page_moves.spans_table(DS)
    result = await warehouse.adhoc_query(
        f"SELECT session_id, formatDateTime(min(first_view), '%F %T') AS f, "  # noqa: S608
        f"formatDateTime(max(last_view), '%F %T') AS l FROM `{table}` GROUP BY session_id",
        {},
    )
    return {r["session_id"]: (r["f"], r["l"]) for r in result.data}


def _expected_spans(events: list[Event]) -> dict[str, tuple[str, str]]:
    times: dict[str, list[str]] = {}
    for e in events:
        if e["event_type"] in page_moves.PAGE_VIEW_TYPES:
            times.setdefault(e["session_id"], []).append(e["timestamp"])
    return {s: (min(t), max(t)) for s, t in times.items()}


async def test_a_view_months_from_its_sessions_others_still_finds_them(warehouse, monkeypatch):
    """The reconcile reads the pending sessions' rows within the span of them all: a view
    that lands months after (or between) a session's others must still meet them, and a
    session touched in the same batch with a span of minutes must not narrow the read."""
    _settle_every_write(monkeypatch)
    first = [
        _view("long", START, PAGES[0], 1),
        _view("long", START + timedelta(minutes=3), PAGES[1], 2),
        _view("short", START + timedelta(days=90), PAGES[2], 1),
    ]
    await _insert(warehouse, first, "first")
    later = [
        # Months on: its neighbour is the view of March, which no time near it holds.
        _view("long", START + timedelta(days=90, minutes=5), PAGES[3], 3),
        _view("short", START + timedelta(days=90, minutes=1), PAGES[4], 2),
    ]
    await _insert(warehouse, later, "later")
    between = [_view("long", START + timedelta(days=40), PAGES[5], 4)]
    await _insert(warehouse, between, "between")
    events = first + later + between
    assert await _kept(warehouse) == _moves(events)
    assert (("long", PAGES[5], PAGES[3], events[5]["timestamp"], events[3]["timestamp"])) in (
        _moves(events)
    )
    assert await _spans(warehouse) == _expected_spans(events)


async def test_the_spans_of_a_table_from_before_them_are_made_from_its_rows(warehouse):
    """A release before the spans kept the moves without them: a start makes them from the
    rows, so that the next reconcile of an older session finds its first views."""
    events = _events(81)
    await _insert(warehouse, events, "before")
    await warehouse.settle_page_moves(DS)
    db = warehouse.database
    await warehouse.execute(f"DROP TABLE `{db}`.`{page_moves.spans_table(DS)}`")
    await warehouse.ensure_schema(list(registry().values()))
    assert await _spans(warehouse) == _expected_spans(events)
    # A view a week after every other, in a session of the day before.
    session = events[0]["session_id"]
    late = [_view(session, START + timedelta(days=8), PAGES[5], 99)]
    await _insert(warehouse, late, "late")
    assert await _kept(warehouse) == _moves(events + late)


async def test_a_start_replaces_the_views_of_a_release_before_pending_spans(warehouse, monkeypatch):
    """A release before 2026-12-03 recorded the pending sessions without spans and extended
    the spans with a view of its own on every insert; a start drops both views for the one
    that records pending spans, and the sessions that release left pending (their spans
    already extended) settle right."""
    monkeypatch.setattr(page_moves, "SETTLE_SECONDS", 3600.0)
    events = _events(83)
    await _insert(warehouse, events, "first")  # the first write of the process settles
    db = warehouse.database
    pending = f"`{db}`.`{page_moves.pending_table(DS)}`"
    spans = f"`{db}`.`{page_moves.spans_table(DS)}`"
    source = f"`{db}`.`{DS}`"
    views = "event_type IN ('page_view', 'pageview')"
    old_pending_view = f"_pipit_pending_moves_{DS}_view"
    old_spans_view = f"_pipit_session_spans_{DS}_view"
    # The older release's tables and views, as it made them.
    for statement in (
        f"DROP VIEW `{db}`.`{page_moves.pending_view(DS)}`",
        f"DROP TABLE {pending}",
        f"CREATE TABLE {pending} (session_id String) ENGINE = MergeTree ORDER BY session_id",
        f"CREATE MATERIALIZED VIEW `{db}`.`{old_pending_view}` TO {pending} "  # noqa: S608
        f"AS SELECT session_id FROM {source} WHERE {views}",
        f"CREATE MATERIALIZED VIEW `{db}`.`{old_spans_view}` TO {spans} AS SELECT session_id, "  # noqa: S608
        f"min(timestamp) AS first_view, max(timestamp) AS last_view FROM {source} "
        f"WHERE {views} GROUP BY session_id",
    ):
        await warehouse.execute(statement)
    # Views weeks on, in sessions of the first day, left pending by the older release.
    later = [
        _view(e["session_id"], START + timedelta(days=20, seconds=n), PAGES[n % 6], 200 + n)
        for n, e in enumerate(events[::5])
    ]
    await _insert(warehouse, later, "later")
    assert await _pending(warehouse) > 0
    await warehouse.ensure_schema(list(registry().values()))
    assert old_pending_view not in await _hidden(warehouse)
    assert old_spans_view not in await _hidden(warehouse)
    assert page_moves.pending_view(DS) in await _hidden(warehouse)
    # And the new view records what comes next.
    more = [
        _view(e["session_id"], START + timedelta(days=40, seconds=n), PAGES[n % 6], 300 + n)
        for n, e in enumerate(events[::7])
    ]
    await _insert(warehouse, more, "more")
    assert await _kept(warehouse) == _moves(events + later + more)
    assert await _spans(warehouse) == _expected_spans(events + later + more)
    assert await _pending(warehouse) == 0


async def test_spans_made_beside_kept_moves_cover_a_pending_sessions_deleted_views(warehouse):
    """A start that adds the spans to moves already kept makes them from the moves too: a
    session an older release left pending after deleting some of its rows still holds the
    moves of those rows, which its reconcile must find to take them back."""
    events = [
        _view("cut", START, PAGES[0], 1),
        _view("cut", START + timedelta(hours=2), PAGES[1], 2),
        _view("cut", START + timedelta(hours=3), PAGES[2], 3),
        _view("cut", START + timedelta(hours=4), PAGES[3], 4),
    ]
    await _insert(warehouse, events, "all")
    await warehouse.settle_page_moves(DS)
    db = warehouse.database
    # As the release before the spans left it: the session's first view deleted by SQL
    # the writer did not see through, the session pending, no spans.
    await warehouse.execute(
        f"ALTER TABLE `{db}`.`{DS}` DELETE WHERE event_id = '{events[0]['event_id']}' "
        "SETTINGS mutations_sync = 2"
    )
    await warehouse.execute(
        f"INSERT INTO `{db}`.`{page_moves.pending_table(DS)}` (session_id) VALUES ('cut')"  # noqa: S608
    )
    await warehouse.execute(f"DROP TABLE `{db}`.`{page_moves.spans_table(DS)}`")
    await warehouse.ensure_schema(list(registry().values()))
    # The span starts at the deleted view's move, not at the first view left.
    assert await _spans(warehouse) == {"cut": (events[0]["timestamp"], events[3]["timestamp"])}
    assert await _kept(warehouse) == _moves(events[1:])


async def test_a_session_with_no_span_is_read_over_all_times(warehouse, monkeypatch):
    """Should a pending session have no span at all (a delete's sessions, which come without
    one, whose kept spans were lost), its rows and moves are read whatever their times
    rather than none of them."""
    monkeypatch.setattr(page_moves, "SETTLE_SECONDS", 3600.0)
    events = _events(82)
    await _insert(warehouse, events, "first")  # the first write of the process settles
    assert await _pending(warehouse) == 0
    db = warehouse.database
    await warehouse.execute(f"TRUNCATE TABLE `{db}`.`{page_moves.spans_table(DS)}`")
    # The views of a few sessions deleted by SQL, the sessions then made pending as a
    # delete makes them: without a span.
    sessions = sorted({e["session_id"] for e in events})[:5]
    listed = ", ".join(f"'{s}'" for s in sessions)
    await warehouse.execute(
        f"ALTER TABLE `{db}`.`{DS}` DELETE WHERE session_id IN ({listed}) "  # noqa: S608
        "AND event_type IN ('page_view', 'pageview') "
        "SETTINGS mutations_sync = 2"
    )
    await warehouse.execute(
        f"INSERT INTO `{db}`.`{page_moves.pending_table(DS)}` (session_id) "  # noqa: S608
        f"SELECT arrayJoin([{listed}])"
    )
    assert await _spans(warehouse) == {}
    left = [e for e in events if e["session_id"] not in sessions]
    assert _moves(left) != _moves(events)
    assert await _kept(warehouse) == _moves(left)


async def _hidden(warehouse: EmbeddedWarehouse) -> set[str]:
    """The hidden tables and views of the database named for the datasource."""
    names = await warehouse.query(
        "SELECT name FROM system.tables WHERE database = currentDatabase() "
        "AND name LIKE {pattern:String}",
        {"pattern": f"\\_pipit\\_%{DS}%"},
    )
    return {row["name"] for row in names.data}


_KEPT = {
    page_moves.table(DS),
    page_moves.pending_table(DS),
    page_moves.pending_view(DS),
    page_moves.spans_table(DS),
}


async def test_dropped_sql_leaves_nothing_the_moves_kept(warehouse):
    """What bench.projections drops to measure a table without its page moves: everything
    a start made for them, whatever the schema adds next."""
    assert await _hidden(warehouse) >= _KEPT
    for statement in page_moves.dropped_sql(warehouse.database, DS):
        await warehouse.execute(statement)
    assert await _hidden(warehouse) == set()
    # Rows still go in, with nothing recording their sessions.
    await _insert(warehouse, _events(91), "after")


async def test_a_table_that_stops_declaring_moves_loses_what_was_kept_for_them(warehouse):
    """A deploy that takes `page_moves` off a datasource: its views would otherwise go on
    recording every insert's sessions into a pending table that nothing reconciles."""
    events = _events(93)
    await _insert(warehouse, events, "with")
    assert await _hidden(warehouse) >= _KEPT
    await warehouse.ensure_schema(_without_moves())
    assert await _hidden(warehouse) == set()
    more = _events(94)
    await _insert(warehouse, more, "without")
    # Declared again, they are made from the rows, those inserted meanwhile included.
    await warehouse.ensure_schema(list(registry().values()))
    assert await _kept(warehouse) == _moves(events + more)
