"""Every column type end to end: datasources declared as proto messages (as a project's
build declares them), their tables created from that declaration, one row per good value
of every type sent through the real ingest path (the Events API through the gateway, and
typed events through the ingestor, the write-ahead log and the batcher), and read back from
the warehouse: ClickHouse stores what the validator promised. And DEFAULT expressions:
a field an event leaves out gets the column's DEFAULT, computed by the table. On chDB and on
ClickHouse's HTTP interface."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from column_cases import ALL_TYPES, CASES, STORED, case_events, typed_event, typed_value
from conftest import unique_database
from datasource_protos import Spec, build
from harness import TOKEN, Suite, start_suite
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from common.datasources import Datasource
from common.validation import RowValidator
from common.warehouse.base import Warehouse
from common.warehouse.clickhouse import ClickHouseWarehouse
from common.warehouse.embedded import EmbeddedWarehouse
from pipit.project.artifact import builtin
from pipit.project.runtime import CurrentProject, Project
from services.ingest.blocks import Block
from services.ingest.service import Ingestor, _Counts

pytestmark = pytest.mark.e2e

# One column per type, each its own typed event's field: a typed event carries some types
# only for some values (no null inside a repeated field), so each is sent on its own.
TYPED = [
    build("typed_" + str(i), [Spec("id", "UInt32"), Spec("c", case.type)], sorting_key="id")
    for i, case in enumerate(STORED)
]
DEFAULTS = build(
    "with_defaults",
    [
        Spec("id", "UInt32"),
        Spec("name", "String"),
        Spec("name_length", "UInt64", default="length(name)"),
        Spec("tag", "Nullable(String)", default="'none'"),
        Spec("seen", "DateTime", default="toDateTime('2020-01-01 00:00:00', 'UTC')"),
        Spec("note", "String", json_path="$.meta.note", default="concat('n-', name)"),
    ],
    sorting_key="id",
)
ROWS = max(len(case.good) for case in STORED)


@pytest.fixture(scope="module", params=["chdb", "clickhouse"])
async def suite(request, chdb_dir: Path, clickhouse_url: str) -> AsyncIterator[Suite]:
    database = unique_database("types")
    if request.param == "chdb":
        warehouse: Warehouse = EmbeddedWarehouse(chdb_dir, database)
    else:
        warehouse = ClickHouseWarehouse(clickhouse_url, database)
    await warehouse.open()
    ours = [ALL_TYPES, DEFAULTS, *TYPED]
    await warehouse.ensure_schema(ours)
    running = await start_suite(warehouse, datasources=ours)
    yield running
    await running.stop()
    await warehouse.close()


async def _post(suite: Suite, name: str, events: list[dict[str, Any]]) -> dict[str, int]:
    async with (
        aiohttp.ClientSession() as http,
        http.post(
            f"{suite.gateway_url}/v0/events",
            params={"name": name, "wait": "true"},
            data=b"\n".join(map(orjson.dumps, events)),
            headers={"Authorization": f"Bearer {TOKEN}"},
        ) as response,
    ):
        assert response.status == 200, await response.text()
        return await response.json()


async def _stored(suite: Suite, ds: Datasource, columns: list[str]) -> list[list[Any]]:
    shown = ", ".join(f"toString(`{c}`) AS `{c}`" for c in columns)
    sql = f"SELECT {shown} FROM `{ds.name}` ORDER BY id"  # noqa: S608 - our own names
    result = await suite.warehouse.query(sql, {})
    return [[row[c] for c in columns] for row in result.data]


async def _emptied(suite: Suite, ds: Datasource) -> None:
    # The property test below inserts into the same tables; what a test reads back whole is only
    # what it sent itself, whichever order the tests run in.
    await suite.warehouse.execute(f"TRUNCATE TABLE `{suite.warehouse.database}`.`{ds.name}`")


async def test_every_good_value_of_every_type_is_stored_as_promised(suite: Suite) -> None:
    await _emptied(suite, ALL_TYPES)
    events = [
        {
            "id": row,
            **{f"c{i}": case.good[row % len(case.good)][0] for i, case in enumerate(STORED)},
        }
        for row in range(ROWS)
    ]
    assert await _post(suite, ALL_TYPES.name, events) == {
        "successful_rows": ROWS,
        "quarantined_rows": 0,
    }
    columns = [f"c{i}" for i in range(len(STORED))]
    stored = await _stored(suite, ALL_TYPES, columns)
    expected = [[case.good[row % len(case.good)][2] for case in STORED] for row in range(ROWS)]
    for row, (got, want) in enumerate(zip(stored, expected, strict=True)):
        for case, got_value, want_value in zip(STORED, got, want, strict=True):
            assert got_value == want_value, (row, case.type)


async def test_typed_events_of_every_type_are_stored_as_promised(suite: Suite) -> None:
    ingest = suite.ingest
    current = CurrentProject(Project(builtin()))
    current.project.datasources.update({ds.name: ds for ds in TYPED})
    ingestor = Ingestor(ingest.batcher, current, 64 * 1024, 1000)
    for ds, case in zip(TYPED, STORED, strict=True):
        sent = [
            (stored, typed)
            for value, _, stored in case.good
            if (typed := typed_value(case.type, value)) is not ...
        ]
        events = []
        for row, (_, typed) in enumerate(sent):
            event = typed_event(ds, typed)
            event.id = row
            events.append(event)
        counts = _Counts()
        await ingestor.submit_messages(ds, events, counts)
        await asyncio.gather(*counts.pending)
        assert (counts.successful, counts.quarantined) == (len(events), 0), case.type
        assert await _stored(suite, ds, ["c"]) == [[stored] for stored, _ in sent], case.type


async def test_a_left_out_field_gets_the_columns_default(suite: Suite) -> None:
    await _emptied(suite, DEFAULTS)
    full = {
        "id": 1,
        "name": "abc",
        "name_length": 10,
        "tag": "t",
        "seen": "2023-06-15 14:30:00",
        "meta": {"note": "hi"},
    }
    left_out = {"id": 2, "name": "abcd"}
    nulls = {"id": 3, "name": "x", "name_length": None, "tag": None, "seen": None, "meta": {}}
    # A request with no field left out is encoded a column at a time; one with some, a row
    # at a time: both are inserted, each in its own format.
    assert await _post(suite, DEFAULTS.name, [full]) == {
        "successful_rows": 1,
        "quarantined_rows": 0,
    }
    assert await _post(suite, DEFAULTS.name, [left_out, nulls, {**full, "id": 4}]) == {
        "successful_rows": 3,
        "quarantined_rows": 0,
    }
    # Typed: an unset Timestamp is left out too (proto3 scalars cannot be unset).
    event = DEFAULTS.message_class(id=5, name="typed")
    counts = _Counts()
    await Ingestor(suite.ingest.batcher, suite.current, 1024, 10).submit_messages(
        DEFAULTS, [event], counts
    )
    await asyncio.gather(*counts.pending)
    columns = ["id", "name", "name_length", "tag", "seen", "note"]
    assert await _stored(suite, DEFAULTS, columns) == [
        ["1", "abc", "10", "t", "2023-06-15 14:30:00", "hi"],
        ["2", "abcd", "4", "none", "2020-01-01 00:00:00", "n-abcd"],
        # A null is the column's NULL where it has one, else its DEFAULT.
        ["3", "x", "1", None, "2020-01-01 00:00:00", "n-x"],
        ["4", "abc", "10", "t", "2023-06-15 14:30:00", "hi"],
        ["5", "typed", "0", "none", "2020-01-01 00:00:00", ""],
    ]


async def _count(warehouse: Warehouse, table: str) -> int:
    result = await warehouse.query(f"SELECT count() AS n FROM `{table}`", {})  # noqa: S608
    return int(result.data[0]["n"])


DEFAULT_CASES = {
    "name": next(case for case in CASES if case.type == "LowCardinality(String)"),
    "name_length": next(case for case in CASES if case.type == "UInt64"),
    "tag": next(case for case in CASES if case.type == "LowCardinality(Nullable(String))"),
    "seen": next(case for case in CASES if case.type == "DateTime"),
}


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    every_type=case_events(
        {f"c{i}": case for i, case in enumerate(STORED)}, {"id": st.integers(0, 2**32 - 1)}
    ),
    defaults=case_events(DEFAULT_CASES, {"id": st.integers(0, 2**32 - 1)}),
)
async def test_whatever_passes_validation_the_warehouse_takes(
    suite: Suite, every_type: list, defaults: list
) -> None:
    # An insert the warehouse refuses would be retried for ever: each validated batch is
    # inserted here once, directly, and must be taken whole.
    for ds, events in ((ALL_TYPES, every_type), (DEFAULTS, defaults)):
        columns, bad = RowValidator(ds).columns_from_json(events)
        rows = len(events) - len(bad)
        if not rows:
            continue
        block = Block.from_columns(columns, rows, ds.column_names)
        before = await _count(suite.warehouse, ds.name)
        # A token of its own: the same rows twice are not a retry to drop (the table drops
        # an insert identical to a recent one).
        await suite.warehouse.insert_json_rows(
            ds.name, ds.column_names, block.body, dedup_token=uuid.uuid4().hex, fmt=block.fmt
        )
        assert await _count(suite.warehouse, ds.name) == before + rows
