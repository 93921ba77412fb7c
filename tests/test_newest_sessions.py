"""user_session_stats and session_insights answer the newest sessions from the newest rows
when they can (see their SQL): the answers equal the plain-Python reference whether that
shortcut is taken or not, including for a long session that began long before the newest
rows and a one-event session among them, and the shortcut really reads a fraction of the
table — with session ids in no order (hashes, as a site's are), which the lookup by the
sessions' numbers does not depend on — and that of many sessions starting in the same second
at the edge of `limit`, the smallest ids are answered, whatever order they were numbered in."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import expected
import orjson
import pytest
from conftest import unique_database
from test_endpoint_sql import ENDPOINTS, _run

from common.datasources import registry
from common.warehouse.embedded import EmbeddedWarehouse
from pipit.seed.generator import generate

# Many reference comparisons over a large generated dataset.
pytestmark = pytest.mark.slow

ENDPOINT_TABLES = {"user_session_stats": "user_events", "session_insights": "app_events"}
GENERATED = 30_000


def _long_session(table: str) -> list[dict[str, Any]]:
    """One session with an event at the very beginning of the data and two after
    everything else, and one newest session of a single event (0 s long)."""
    template = next(generate(table, 1, days=5, seed=3))
    rows = []
    for n, (session, moment) in enumerate(
        [
            ("long_session", "2023-06-01 00:00:01"),
            ("long_session", "2023-06-06 00:00:10"),
            ("long_session", "2023-06-06 00:00:20"),
            ("single_event", "2023-06-06 00:00:15"),
        ]
    ):
        rows.append(
            {
                **template,
                "event_id": f"long_{n}",
                "user_id": "user_long" if session == "long_session" else "user_single",
                "session_id": session,
                "timestamp": moment,
            }
        )
    return rows


TIED = 40


def _tied_sessions(table: str) -> list[dict[str, Any]]:
    """`TIED` sessions that all start in the newest second, of two events each (so that
    they last 2 s), written in the reverse order of their ids: numbered as first seen,
    their numbers run against their ids. Any `limit` under `TIED` cuts among them, where
    only the smallest ids may be answered."""
    template = next(generate(table, 1, days=5, seed=4))
    return [
        {
            **template,
            "event_id": f"tied_{n:02d}_{k}",
            "user_id": f"user_tied_{n:02d}",
            "session_id": f"tied_{n:02d}",
            "timestamp": moment,
        }
        for n in reversed(range(TIED))
        for k, moment in enumerate(("2023-06-06 00:01:00", "2023-06-06 00:01:02"))
    ]


def _hashed(row: dict[str, Any]) -> dict[str, Any]:
    """`row` with a session id in no order: the generator numbers its sessions in time
    order (`sess_1`, `sess_2`, …), so sorted by id its newest sessions would lie together."""
    digest = hashlib.blake2b(row["session_id"].encode(), digest_size=8).hexdigest()
    return {**row, "session_id": digest}


@pytest.fixture(scope="module")
def data() -> dict[str, list[dict[str, Any]]]:
    # Made when the module's tests run, not whenever pytest collects it (-m quick too).
    return {
        table: [
            *(_hashed(row) for row in generate(table, GENERATED, days=5, seed=3)),
            *_long_session(table),
            *_tied_sessions(table),
        ]
        for table in ENDPOINT_TABLES.values()
    }


@pytest.fixture(scope="module")
async def warehouse(
    chdb_dir: Path, data: dict[str, list[dict[str, Any]]]
) -> AsyncIterator[EmbeddedWarehouse]:
    """Small granules, so that reading a fraction of the table shows in rows read."""
    wh = EmbeddedWarehouse(chdb_dir, unique_database("sessions"))
    await wh.open()
    for table, rows in data.items():
        ds = registry()[table]
        ddl = ds.create_table_sql(wh.database, numbered=True)
        for statement in ds.schema_sql(wh.database, existing=frozenset(), numbered=True):
            if statement == ddl:
                statement = ddl.replace("SETTINGS ", "SETTINGS index_granularity = 64, ")
            await wh.execute(statement)
        for start in range(0, len(rows), 10_000):  # a few parts
            body = b"\n".join(orjson.dumps(row) for row in rows[start : start + 10_000])
            await wh.insert_json_rows(table, ds.column_names, body)
    yield wh
    await wh.execute(f"DROP DATABASE IF EXISTS `{wh.database}`")
    await wh.close()


CASES = [
    (name, given)
    for name in ENDPOINT_TABLES
    for given in (
        {"limit": "1"},
        {"limit": "5"},
        {"limit": "100"},
        {"limit": "10000"},
        {"limit": "20", "start_date": "2023-06-02 10:00:00", "end_date": "2023-06-03 12:30:00"},
        {"limit": "20", "start_date": "2023-06-01 00:00:00", "end_date": "2023-06-06 00:00:12"},
        {"user_id": "user_long"},
        {"user_id": "user_long", "end_date": "2023-06-06 00:00:10"},
    )
]


@pytest.mark.parametrize("case", CASES, ids=[f"{n}-{sorted(g.items())}" for n, g in CASES])
async def test_answers_equal_the_reference(warehouse: EmbeddedWarehouse, data, case) -> None:
    name, given = case
    actual = await _run(warehouse, name, given)
    want = getattr(expected, name)(data[ENDPOINT_TABLES[name]], **ENDPOINTS[name].bind(given))
    assert want
    expected.assert_rows_match(actual, want, expected.FLOAT_TOLERANCES.get(name, {}))
    ranked = [row["session_id"] for row in actual]
    if not given.get("user_id") and not given.get("end_date"):
        # Every tied session is newer than any other: the smallest ids, in order.
        tied = min(int(given["limit"]), TIED)
        assert ranked[:tied] == [f"tied_{n:02d}" for n in range(tied)]
    if "long_session" in ranked:
        # It began with the data: behind every session that began later.
        assert ranked[-1] == "long_session" or given.get("user_id")


@pytest.mark.parametrize("name", ENDPOINT_TABLES)
async def test_the_newest_sessions_are_read_from_the_newest_rows(
    warehouse: EmbeddedWarehouse, data, name: str
) -> None:
    total = len(data[ENDPOINT_TABLES[name]])
    endpoint = ENDPOINTS[name]
    shortcut = await warehouse.query(endpoint.sql, endpoint.bind({"limit": "5"}))
    everything = await warehouse.query(endpoint.sql, endpoint.bind({"limit": "10000"}))
    # With 5 asked for, the newest rows hold them; with more than there are sessions,
    # every session is aggregated. The sessions seen in the newest rows are looked up by
    # their numbers, a few granules: by their hashed ids, a granule each (~14,000 rows
    # read in all, measured with a projection sorted by id).
    assert shortcut.statistics["rows_read"] < total / 5, shortcut.statistics
    # More sessions than answered: the count before the LIMIT says so, as on the full
    # path — past the `TIED` sessions of the newest second too, which a limit under 40 keeps.
    past_ties = await warehouse.query(endpoint.sql, endpoint.bind({"limit": "60"}))
    assert past_ties.statistics["rows_read"] < total, past_ties.statistics  # the shortcut
    assert past_ties.rows_before_limit_at_least > 60, past_ties.rows_before_limit_at_least
    assert everything.statistics["rows_read"] >= total, everything.statistics
    assert "long_session" not in [row["session_id"] for row in shortcut.data]
