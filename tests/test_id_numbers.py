"""Dense id numbers under the distinct counts on chDB (common/id_numbers.py): each id gets one
number, in order of first sight, kept across batches, both insert formats, a retried
(deduplicated) flush and a restart of the process; a table made by an older Pipit (uniqExact
projections, no numbers) upgrades and still answers exactly, its older rows included; and a
ClickHouse server's form of the projections is the ids' uniqExact sets. Expected numbers and
counts are worked out here in plain Python from the rows written."""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import sys
from collections.abc import Iterable, Sequence
from importlib import resources
from pathlib import Path
from typing import Any

import expected
import orjson
import pytest
from conftest import unique_database
from endpoint_cases import CUT, DATA, JUNE
from test_endpoint_sql import ENDPOINTS, _run

from common import id_numbers
from common.datasources import projection_name, registry
from common.warehouse.base import WarehouseError
from common.warehouse.embedded import EmbeddedWarehouse
from services.ingest.blocks import JSON_COMPACT_COLUMNS, JSON_EACH_ROW, Block

APP = registry()["app_events"]
NUMBERED = ("user_id", "session_id")
# Ids a format has to carry as they are: quotes, backslashes, a newline, a tab, non-ASCII, ''.
ODD_IDS = ["o'brien", "back\\slash", 'say "hi"', "new\nline", "tab\there", "ünïcødé ✓", ""]
REPO = Path(__file__).resolve().parent.parent


def app_event(user: str, session: str, second: int, feature: str = "dashboard") -> dict[str, Any]:
    minute, second = divmod(second, 60)
    hour, minute = divmod(minute, 60)
    return {
        "event_id": f"e-{user}-{session}-{second}",
        "user_id": user,
        "session_id": session,
        "event_type": "click",
        "feature": feature,
        "timestamp": f"2023-06-01 {hour:02d}:{minute:02d}:{second:02d}",
        "device_type": "desktop",
        "browser": "Firefox",
        "os": "Linux",
        "location": "UK",
        "metadata": "{}",
    }


def encode(rows: Sequence[dict[str, Any]], fmt: str) -> bytes:
    if fmt == JSON_EACH_ROW:
        return Block.from_lines([orjson.dumps(row) for row in rows]).body
    columns = [[row[name] for row in rows] for name in APP.column_names]
    return Block.from_columns(columns, len(rows)).body


def first_sight_numbers(batches: Iterable[Sequence[dict[str, Any]]]) -> dict[str, dict[str, int]]:
    """Each column's ids numbered 1, 2, 3… in the order the batches first show them."""
    numbers: dict[str, dict[str, int]] = {column: {} for column in NUMBERED}
    for batch in batches:
        for row in batch:
            for column in NUMBERED:
                numbers[column].setdefault(row[column], len(numbers[column]) + 1)
    return numbers


async def stored_numbers(warehouse: EmbeddedWarehouse, table: str) -> dict[str, dict[str, set]]:
    """The numbers the table's rows hold, per column and id (a set, to see any id with two)."""
    result = await warehouse.query(
        f"SELECT user_id, session_id, _pipit_user_id_number AS u, "  # noqa: S608 - test's own
        f"_pipit_session_id_number AS s FROM `{table}`",
        {},
    )
    out: dict[str, dict[str, set]] = {column: {} for column in NUMBERED}
    for row in result.data:
        out["user_id"].setdefault(row["user_id"], set()).add(row["u"])
        out["session_id"].setdefault(row["session_id"], set()).add(row["s"])
    return out


def as_single(numbers: dict[str, dict[str, set]]) -> dict[str, dict[str, int]]:
    for column, ids in numbers.items():
        several = {i: n for i, n in ids.items() if len(n) != 1}
        assert not several, f"{column}: ids with more than one number: {several}"
    return {column: {i: next(iter(n)) for i, n in ids.items()} for column, ids in numbers.items()}


BATCHES = [
    # Within a batch too: an id seen twice is numbered once, where it is first seen.
    [app_event("u1", "s1", 1), app_event("u2", "s2", 2), app_event("u1", "s1", 3)],
    [app_event(user, f"s-{user}", 10 + i) for i, user in enumerate(ODD_IDS)],
    # Known ids beside new ones, in another hour and feature.
    [app_event("u2", "s3", 3700, "billing"), app_event("u3", "s1", 3701, "billing")]
    + [app_event("u4", "s4", 3702 + i, "billing") for i in range(5)],
]


@pytest.mark.parametrize("formats", [(JSON_EACH_ROW,) * 3, (JSON_COMPACT_COLUMNS,) * 3])
async def test_each_id_keeps_one_number_across_batches_formats_and_retries(
    embedded_warehouse: EmbeddedWarehouse, formats: tuple[str, ...]
) -> None:
    wh = embedded_warehouse
    for i, (rows, fmt) in enumerate(zip(BATCHES, formats, strict=True)):
        body = encode(rows, fmt)
        await wh.insert_json_rows(APP.name, APP.column_names, body, dedup_token=f"t{i}", fmt=fmt)
    # A flush retried after its answer was lost: dropped, and it numbers nothing anew.
    other = JSON_EACH_ROW if formats[0] == JSON_COMPACT_COLUMNS else JSON_COMPACT_COLUMNS
    await wh.insert_json_rows(
        APP.name, APP.column_names, encode(BATCHES[0], other), dedup_token="t0", fmt=other
    )
    rows = [row for batch in BATCHES for row in batch]
    count = await wh.query(f"SELECT count() AS n FROM `{APP.name}`", {})  # noqa: S608
    assert count.data == [{"n": len(rows)}]
    assert as_single(await stored_numbers(wh, APP.name)) == first_sight_numbers(BATCHES)
    numbers_kept = (
        "SELECT column, count() AS n, max(number) AS top, uniqExact(id) AS ids "  # noqa: S608
        f"FROM `{id_numbers.NUMBERS}` GROUP BY column ORDER BY column"
    )
    kept = await wh.query(numbers_kept, {})
    want = first_sight_numbers(BATCHES)
    assert kept.data == [
        {"column": c, "n": len(want[c]), "top": len(want[c]), "ids": len(want[c])}
        for c in sorted(NUMBERED)
    ]
    for name in ("feature_usage", "active_users"):
        reference = expected.ENDPOINTS[name][1]
        actual = await _run(wh, name, {})
        expected.assert_rows_match(actual, reference(rows, **ENDPOINTS[name].bind({})), {})


async def test_an_id_without_a_number_is_refused_not_counted_as_0(
    embedded_warehouse: EmbeddedWarehouse,
) -> None:
    """Rows inserted around the writer's numbering (raw SQL here) fail rather than count
    as id 0."""
    wh = embedded_warehouse
    row = app_event("nobody", "nowhere", 5)
    with pytest.raises(Exception, match="has no number"):
        await wh.execute(
            f"INSERT INTO `{wh.database}`.`{APP.name}` ({', '.join(APP.column_names)}) "  # noqa: S608
            "FORMAT JSONEachRow\n" + orjson.dumps(row).decode()
        )


async def numbers_kept(wh: EmbeddedWarehouse) -> dict[str, dict[str, int]]:
    """`_pipit_numbers` per column, id: number, failing on an id kept twice."""
    result = await wh.query(f"SELECT column, id, number FROM `{id_numbers.NUMBERS}`", {})  # noqa: S608
    out: dict[str, dict[str, int]] = {}
    for row in result.data:
        ids = out.setdefault(row["column"], {})
        assert row["id"] not in ids, f"{row['column']} {row['id']!r} kept twice"
        ids[row["id"]] = row["number"]
    return out


async def test_blocks_joined_into_one_body_are_numbered_as_one_batch(
    embedded_warehouse: EmbeddedWarehouse,
) -> None:
    """Ingest inserts several blocks of a table at once, their bodies joined by newlines."""
    wh = embedded_warehouse
    body = b"\n".join(encode(batch, JSON_COMPACT_COLUMNS) for batch in BATCHES)
    await wh.insert_json_rows(APP.name, APP.column_names, body, fmt=JSON_COMPACT_COLUMNS)
    assert as_single(await stored_numbers(wh, APP.name)) == first_sight_numbers(BATCHES)
    assert await numbers_kept(wh) == first_sight_numbers(BATCHES)


async def test_insert_select_gets_its_numbers_from_the_lookup(
    embedded_warehouse: EmbeddedWarehouse,
) -> None:
    """Rows copied by SQL (a replace's swap, a deploy's copy) get the numbers their ids were
    given by the writer, from the lookup the MATERIALIZED columns read."""
    wh = embedded_warehouse
    await wh.insert_json_rows(APP.name, APP.column_names, encode(BATCHES[0], JSON_EACH_ROW))
    copy = f"{APP.name}_copy"
    await wh.execute(f"CREATE TABLE `{wh.database}`.`{copy}` AS `{wh.database}`.`{APP.name}`")
    await wh.execute(
        f"INSERT INTO `{wh.database}`.`{copy}` ({', '.join(APP.column_names)}) "  # noqa: S608
        f"SELECT {', '.join(APP.column_names)} FROM `{wh.database}`.`{APP.name}`"
    )
    # The copy's later rows come through the writer, which knows the copied ids.
    await wh.insert_json_rows(copy, APP.column_names, encode(BATCHES[2], JSON_EACH_ROW))
    want = first_sight_numbers([BATCHES[0], BATCHES[2]])
    assert as_single(await stored_numbers(wh, copy)) == want
    assert await numbers_kept(wh) == want


async def test_ids_numbered_by_sql_between_two_batches_keep_their_numbers(
    embedded_warehouse: EmbeddedWarehouse,
) -> None:
    """The upgrade of a table made before numbering numbers its ids in SQL, between two
    batches of the writer's: the second batch finds them numbered, and numbers its new ids
    after them."""
    wh = embedded_warehouse
    await wh.insert_json_rows(APP.name, APP.column_names, encode(BATCHES[0], JSON_EACH_ROW))
    users = registry()["user_events"]
    await wh.execute(f"DROP TABLE `{wh.database}`.`{users.name}`")
    await wh.execute(older_ddl(wh.database, users.name))
    older = [
        {**row, "user_id": user, "session_id": session}
        for row, user, session in zip(
            DATA[users.name][:4], ["u1", "w1", "w2", "w1"], ["z1", "s1", "z2", "z3"], strict=True
        )
    ]
    body = b"\n".join(orjson.dumps(row) for row in older)
    await wh.insert_json_rows(users.name, users.column_names, body)
    await wh.ensure_schema([users])  # numbers w1, w2, z1… in SQL
    await wh.insert_json_rows(APP.name, APP.column_names, encode(BATCHES[2], JSON_EACH_ROW))
    kept = await numbers_kept(wh)
    # In the order the numbers were handed out: BATCHES[0], the older rows (by time), then
    # BATCHES[2].
    by_time = sorted(older, key=lambda row: row["timestamp"])
    assert kept == first_sight_numbers([BATCHES[0], by_time, BATCHES[2]])
    for table in (APP.name, users.name):
        stored = as_single(await stored_numbers(wh, table))
        assert all(kept[column][i] == n for column in NUMBERED for i, n in stored[column].items())


# Ways a batch fails after its new numbers' insert began, each with what undoes it: the
# numbers' insert refused by a view on their table (it may have stored them all the same), and
# the numbers stored but not fed to the lookup (its view detached), so the batch's own insert
# finds its ids without a number.
FAULTS = {
    "numbers refused": (
        "CREATE MATERIALIZED VIEW `{db}`.`refuse` ENGINE = Memory AS "  # noqa: S608 - test's own
        "SELECT throwIf(number > 0, 'refused') AS x FROM `{db}`.`" + id_numbers.NUMBERS + "`",
        "DROP VIEW `{db}`.`refuse`",
        "refused",
    ),
    "numbers not fed to the lookup": (
        "DETACH TABLE `{db}`.`" + id_numbers.FEED + "`",
        "ATTACH TABLE `{db}`.`" + id_numbers.FEED + "`",
        "has no number",
    ),
}


@pytest.mark.parametrize("fault", FAULTS)
async def test_a_batch_that_failed_after_storing_numbers_is_retried_with_them(
    embedded_warehouse: EmbeddedWarehouse, fault: str
) -> None:
    """The writer adds the numbers the failed batch stored to the lookup, so its retry
    neither numbers an id twice nor skips one."""
    wh = embedded_warehouse
    fail, heal, message = (sql.format(db=wh.database) for sql in FAULTS[fault])
    await wh.insert_json_rows(APP.name, APP.column_names, encode(BATCHES[0], JSON_EACH_ROW))
    await wh.execute(fail)
    body = encode(BATCHES[1], JSON_EACH_ROW)
    with pytest.raises(WarehouseError, match=message):
        await wh.insert_json_rows(APP.name, APP.column_names, body, dedup_token="b1")
    await wh.execute(heal)
    await wh.insert_json_rows(APP.name, APP.column_names, body, dedup_token="b1")
    await wh.insert_json_rows(APP.name, APP.column_names, encode(BATCHES[2], JSON_EACH_ROW))
    assert await numbers_kept(wh) == first_sight_numbers(BATCHES)
    assert as_single(await stored_numbers(wh, APP.name)) == first_sight_numbers(BATCHES)


# A process of its own, as ingest after a restart: chDB opens one data path per process,
# and its id lookup (held in memory) starts empty there.
_CHILD = """
import asyncio, json, sys
from pathlib import Path
import orjson
from common.datasources import registry
from common.warehouse.embedded import EmbeddedWarehouse

async def main():
    data_dir, database, batches = Path(sys.argv[1]), sys.argv[2], json.loads(sys.argv[3])
    wh = EmbeddedWarehouse(data_dir, database)
    await wh.open()
    await wh.ensure_schema(list(registry().values()))
    ds = registry()["app_events"]
    for token, rows in batches:
        body = b"\\n".join(orjson.dumps(row) for row in rows)
        await wh.insert_json_rows(ds.name, ds.column_names, body, dedup_token=token)
    result = await wh.query(
        "SELECT user_id, session_id, _pipit_user_id_number AS u, _pipit_session_id_number AS s "
        "FROM app_events", {})
    print(json.dumps(result.data))

asyncio.run(main())
"""


async def test_a_table_another_warehouse_upgrades_is_numbered_by_this_one(
    embedded_warehouse: EmbeddedWarehouse,
) -> None:
    """Two warehouses over one database (as ingest and a deploy may be): one writes to a
    table made before numbering, the other upgrades it; the first's next batch gets its
    numbers, not the columns it read before the upgrade (then the lookup refuses it)."""
    wh = embedded_warehouse
    users = registry()["user_events"]
    await wh.execute(f"DROP TABLE `{wh.database}`.`{users.name}`")
    await wh.execute(older_ddl(wh.database, users.name))
    rows = DATA[users.name][:6]
    for i, half in enumerate((rows[:3], rows[3:])):
        if i == 1:
            other = EmbeddedWarehouse(wh.data_dir, wh.database)
            await other.open()
            await other.ensure_schema([users])
            await other.close()
        body = b"\n".join(orjson.dumps(row) for row in half)
        await wh.insert_json_rows(users.name, users.column_names, body)
    stored = as_single(await stored_numbers(wh, users.name))
    for column in NUMBERED:
        assert stored[column].keys() == {row[column] for row in rows}
        assert 0 not in stored[column].values()
        assert len(set(stored[column].values())) == len(stored[column])


def _in_a_new_process(data_dir: Path, database: str, batches: list) -> list[dict[str, Any]]:
    done = subprocess.run(
        [sys.executable, "-c", _CHILD, str(data_dir), database, json.dumps(batches)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_numbers_outlive_a_restart_and_a_retry_after_it(tmp_path: Path) -> None:
    database = unique_database("restart")
    first = _in_a_new_process(tmp_path, database, [["a", BATCHES[0]], ["b", BATCHES[1]]])
    # After the restart: `a` again (its answer was lost before the crash), then new rows.
    second = _in_a_new_process(tmp_path, database, [["a", BATCHES[0]], ["c", BATCHES[2]]])

    def numbers(rows: list[dict[str, Any]]) -> dict[str, dict[str, set]]:
        out: dict[str, dict[str, set]] = {"user_id": {}, "session_id": {}}
        for row in rows:
            out["user_id"].setdefault(row["user_id"], set()).add(row["u"])
            out["session_id"].setdefault(row["session_id"], set()).add(row["s"])
        return out

    assert as_single(numbers(first)) == first_sight_numbers(BATCHES[:2])
    assert as_single(numbers(second)) == first_sight_numbers(BATCHES)
    assert len(second) == sum(len(batch) for batch in BATCHES)


# The projections an older Pipit declared under these names, before ids were numbered.
OLDER_NAMES = {
    "feature_bitmap_hours": "feature_hours",
    "activity_bitmap_hours": "activity_hours",
    "ab_variant_hours": "ab_hours",
    "ab_segment_bitmap_hours": "ab_segment_hours",
}
DISTINCT_COUNTS = {
    "feature_usage": [{}, {"feature": "dashboard"}],
    "active_users": [{"interval": "1 day"}, {"interval": "1 week"}],
    "user_activity_metrics": [{}],
    "test_summary": [{}],
    "test_segments": [{"segment": "device"}, {"segment": "country"}],
    "test_timeseries": [{"interval": "day"}],
    "test_results": [{}],
}
UPGRADE_RANGES = [{}, JUNE, CUT]


def older_ddl(database: str, name: str) -> str:
    """The table as the release before numbering created it: no number columns, and its
    projections holding uniqExact sets under the older names."""
    ddl = registry()[name].create_table_sql(database)
    for new, old in OLDER_NAMES.items():
        ddl = ddl.replace(f"`{new}`", f"`{old}`")
    return ddl


def test_the_older_ddl_is_the_older_release_s() -> None:
    """A check on the test's own stand-in: the older projection, as it was declared."""
    ddl = older_ddl("pipit", "app_events")
    assert (
        "PROJECTION `feature_hours` (SELECT feature, toStartOfHour(timestamp) AS hour, "
        "count() AS event_count, uniqExactState(user_id) AS user_ids, "
        "uniqExactState(session_id) AS session_ids GROUP BY feature, hour)"
    ) in ddl
    assert "_pipit_user_id_number" not in ddl


async def mutations_done(wh: EmbeddedWarehouse) -> list[tuple[str, str]]:
    """Waits for the database's mutations to finish (the engine runs them in the background);
    the (table, column) of each column they materialized."""
    query = (
        "SELECT table, command, is_done, latest_fail_reason FROM system.mutations "
        "WHERE database = {d:String}"
    )
    deadline = asyncio.get_running_loop().time() + 120
    while True:
        rows = (await wh.query(query, {"d": wh.database})).data
        if all(row["is_done"] for row in rows):
            break
        assert asyncio.get_running_loop().time() < deadline, rows
        await asyncio.sleep(0.05)
    found = []
    for row in rows:
        words = row["command"].strip("()").replace("`", "").split()
        if words[:2] == ["MATERIALIZE", "COLUMN"]:
            found.append((row["table"], words[2]))
    return found


async def test_a_table_made_before_numbering_upgrades_and_answers_exactly(chdb_dir: Path) -> None:
    wh = EmbeddedWarehouse(chdb_dir, unique_database("upgrade"))
    await wh.open()
    try:
        for name in DATA:
            await wh.execute(older_ddl(wh.database, name))
        half = {name: len(rows) // 2 for name, rows in DATA.items()}
        for name, rows in DATA.items():
            body = b"\n".join(orjson.dumps(row) for row in rows[: half[name]])
            await wh.insert_json_rows(name, registry()[name].column_names, body)
        for _ in range(2):  # idempotent
            await wh.ensure_schema(list(registry().values()))
        for name, rows in DATA.items():
            body = b"\n".join(orjson.dumps(row) for row in rows[half[name] :])
            await wh.insert_json_rows(name, registry()[name].column_names, body)

        # The older parts get their number columns written, once (not again at each start).
        materialized = await mutations_done(wh)
        assert sorted(materialized) == sorted(
            (name, id_numbers.column_name(column))
            for name in DATA
            for column in registry()[name].numbered_columns
        )
        # Every active part holds them (a part from before the upgrade lists no such column).
        holding = await wh.query(
            "SELECT table, column, count() AS parts FROM system.parts_columns "
            "WHERE database = {d:String} AND active AND startsWith(column, '_pipit_') "
            "AND endsWith(column, '_number') GROUP BY table, column",
            {"d": wh.database},
        )
        parts = await wh.query(
            "SELECT table, count() AS parts FROM system.parts WHERE database = {d:String} "
            "AND active GROUP BY table",
            {"d": wh.database},
        )
        per_table = {r["table"]: r["parts"] for r in parts.data}
        assert {(r["table"], r["column"]): r["parts"] for r in holding.data} == {
            (table, column): per_table[table] for table, column in materialized
        }
        projections = await wh.query(
            "SELECT table, name FROM system.projections WHERE database = {d:String} "
            "ORDER BY table, name",
            {"d": wh.database},
        )
        names = {(r["table"], r["name"]) for r in projections.data}
        assert not {(t, n) for t, n in names if n in OLDER_NAMES.values()}
        assert {
            ("app_events", "feature_bitmap_hours"),
            ("ab_test_events", "ab_variant_hours"),
        } <= names
        # Every row has its ids' one number, the older rows' computed from the lookup.
        for name in ("app_events", "user_events"):
            by_id = as_single(await stored_numbers(wh, name))
            for column in NUMBERED:
                assert len(set(by_id[column].values())) == len(by_id[column])
                assert 0 not in by_id[column].values()
        for name, cases in DISTINCT_COUNTS.items():
            datasource, reference = expected.ENDPOINTS[name]
            for extra in cases:
                for bounds in UPGRADE_RANGES:
                    given = {**extra, **bounds}
                    actual = await _run(wh, name, given)
                    want = reference(DATA[datasource], **ENDPOINTS[name].bind(given))
                    tolerances = expected.FLOAT_TOLERANCES.get(name, {})
                    expected.assert_rows_match(actual, want, tolerances)
    finally:
        await wh.execute(f"DROP DATABASE IF EXISTS `{wh.database}`")
        await wh.close()


def test_a_server_keeps_uniqexact_sets_of_the_ids() -> None:
    declared = {projection_name(p): p for p in APP.projections}
    assert id_numbers.server_form(declared["feature_bitmap_hours"]) == (
        "`feature_bitmap_hours` (SELECT feature, toStartOfHour(timestamp) AS hour, "
        "count() AS event_count, uniqExactState(user_id) AS user_ids, "
        "uniqExactState(session_id) AS session_ids GROUP BY feature, hour)"
    )
    assert id_numbers.server_form("groupBitmapMerge(user_ids) AS users") == (
        "uniqExactMerge(user_ids) AS users"
    )
    assert APP.create_table_sql("pipit").count("_pipit_") == 0
    assert APP.create_table_sql("pipit", numbered=True).count("`_pipit_user_id_number` UInt32") == 1


def test_a_server_runs_the_query_a_pipe_marks_for_it_where_bitmaps_meet() -> None:
    """retention intersects bitmaps of numbers, which a server's uniqExact sets cannot: its
    server form is the query its comment holds, with no bitmap left in it."""
    sql = (resources.files("services.query") / "sql" / "retention.sql").read_text()
    assert "bitmapAndCardinality(" in sql and "/*numbered*/" in sql
    server = id_numbers.server_form(sql)
    assert not re.search(r"(?i)bitmap\w*\(", server) and "/*" not in server and "*/" not in server
    assert "GROUP BY user_id" in server and server.strip().endswith("period_number ASC")
    # Text before the marked query stays; only the marked part is replaced.
    assert id_numbers.server_form("SELECT 1 /*numbered*/ SELECT 2 /*server: SELECT 3 */") == (
        "SELECT 1  SELECT 3 "
    )
