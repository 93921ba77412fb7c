"""Ad-hoc SQL runs in a lane of its own: a failing Query API query (time limit, memory limit,
an error half-way through its output) is followed by correct pipe and Query API answers; a
slow one does not hold up pipes or `wait=true` ingest while it runs; and admission bounds
the queries a token, and everyone, may have in flight."""

from __future__ import annotations

import asyncio
import random
import threading
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import expected
import orjson
import pytest
from conftest import unique_database
from harness import TOKEN, Suite, start_suite

from common.datasources import registry
from common.tokens import TokenFile
from common.warehouse.base import AdhocLimits, Warehouse, WarehouseError
from common.warehouse.clickhouse import ClickHouseWarehouse
from common.warehouse.embedded import EmbeddedWarehouse, adhoc_lane_settings

pytestmark = pytest.mark.e2e

EVENTS = [
    {
        "timestamp": f"2023-06-{1 + i % 28:02d} {i % 24:02d}:00:00",
        "user_id": f"u{i % 37}",
        "test_id": "homepage",
        "variant": "AB"[i % 2],
        "event_type": "page_view",
        "conversion": int(i % 5 == 0),
        "revenue": round(random.Random(i).uniform(0, 50), 2),
        "session_id": f"s{i % 91}",
        "device": "mobile",
        "country": "US",
    }
    for i in range(400)
]
# Runs until the lane's time limit stops it: a cross join of four 1000-row subqueries,
# 10^12 rows made block by block, so it needs time rather than memory. Three of them
# (10^9 rows) finished inside the 2 s limit on a fast machine (1.7-1.9 s, 2026-12-03).
SLOW = (
    "SELECT sum(cityHash64(a, b, c, d)) AS n FROM (SELECT arrayJoin(range(1000)) AS a) AS w, "
    "(SELECT arrayJoin(range(1001)) AS b) AS x, (SELECT arrayJoin(range(1002)) AS c) AS y, "
    "(SELECT arrayJoin(range(1003)) AS d) AS z"
)
FAILING = {
    "time limit": (SLOW, 504),
    "memory limit": ("SELECT length(groupArray(arrayJoin(range(10000000)))) AS n", 400),
    "runtime error": (
        "SELECT intDiv(1, toUInt8(number > 5)) AS x FROM (SELECT arrayJoin(range(100)) AS number)",
        400,
    ),
}
LIMITS = AdhocLimits(max_seconds=2.0, max_memory_bytes=64 * 1024 * 1024, max_threads=1)


async def _open(backend: str, chdb_dir: Path, clickhouse_url: str) -> Warehouse:
    database = unique_database("lanes")
    if backend == "chdb":
        warehouse: Warehouse = EmbeddedWarehouse(chdb_dir, database, LIMITS)
    else:
        warehouse = ClickHouseWarehouse(clickhouse_url, database, LIMITS)
    await warehouse.open()
    await warehouse.ensure_schema(list(registry().values()))
    body = b"\n".join(orjson.dumps(event) for event in EVENTS)
    await warehouse.insert_json_rows(
        "ab_test_events", registry()["ab_test_events"].column_names, body
    )
    return warehouse


@pytest.fixture(scope="module", params=["chdb", "clickhouse"])
async def suite(request, chdb_dir: Path) -> AsyncIterator[Suite]:
    url = request.getfixturevalue("clickhouse_url") if request.param == "clickhouse" else ""
    warehouse = await _open(request.param, chdb_dir, url)
    running = await start_suite(warehouse)
    yield running
    await running.stop()
    await warehouse.execute(f"DROP DATABASE IF EXISTS `{warehouse.database}`")
    await warehouse.close()


async def _get(suite: Suite, path: str, token: str = TOKEN, **params: str) -> tuple[int, dict]:
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"{suite.gateway_url}{path}", params={**params, "token": token}) as response,
    ):
        return response.status, {**await response.json(), "_headers": dict(response.headers)}


async def _pipe_is_right(suite: Suite) -> None:
    status, body = await _get(suite, "/v0/pipes/test_summary.json", test_id="homepage")
    assert status == 200, body
    assert body["data"] == expected.test_summary(EVENTS, test_id="homepage")


@pytest.mark.parametrize("failure", list(FAILING))
async def test_a_failing_query_is_followed_by_right_answers(suite: Suite, failure: str):
    q, status = FAILING[failure]
    got, body = await _get(suite, "/v0/sql", q=q)
    assert got == status, body
    await _pipe_is_right(suite)
    got, body = await _get(suite, "/v0/sql", q="SELECT count() AS n FROM ab_test_events")
    assert (got, body["data"]) == (200, [{"n": len(EVENTS)}])


async def test_a_failed_query_leaves_its_chdb_session_whole(chdb_dir: Path):
    # chDB keeps the half-written output of a failed query for the next one on its session.
    warehouse = EmbeddedWarehouse(chdb_dir, unique_database("leftovers"))
    await warehouse.open()
    failing = "SELECT throwIf(number = 70000) AS x FROM numbers(100000)"
    for run in (warehouse.query, warehouse.adhoc_query):
        with pytest.raises(WarehouseError):
            await run(failing, {})
        assert (await run("SELECT 2 AS two", {})).data == [{"two": 2}]
        with pytest.raises(WarehouseError):
            await run(failing, {})
        assert (await run("SELECT 3 AS three", {})).data == [{"three": 3}]
    await warehouse.close()


@pytest.fixture
async def chdb_suite(chdb_dir: Path, tmp_path: Path) -> AsyncIterator[tuple[Suite, str]]:
    """A suite on chDB admitting one Query API query at a time, and a second token."""
    warehouse = await _open("chdb", chdb_dir, "")
    tokens = TokenFile(tmp_path / "tokens.json")
    other = tokens.create("other-reader", ["DATASOURCES:READ:ab_test_events"])
    running = await start_suite(
        warehouse, tokens_file=tokens.path, sql_max_queries=1, sql_max_queries_per_token=1
    )
    yield running, other
    await running.stop()
    await warehouse.execute(f"DROP DATABASE IF EXISTS `{warehouse.database}`")


def _watch_adhoc_lane(warehouse: Warehouse, monkeypatch) -> threading.Event:
    """An event set once the slow query starts running on the ad-hoc lane's thread."""
    assert isinstance(warehouse, EmbeddedWarehouse) and warehouse._engine is not None
    lane = warehouse._engine.lane("adhoc", adhoc_lane_settings(warehouse.adhoc_limits))
    started = threading.Event()
    run = lane.run

    def watched(database, sql, fmt, params):
        if "cityHash64(a, b, c, d)" in sql and not sql.startswith("EXPLAIN"):
            started.set()
        return run(database, sql, fmt, params)

    monkeypatch.setattr(lane, "run", watched)
    return started


async def test_pipes_and_ingest_answer_while_a_slow_query_runs(chdb_suite, monkeypatch):
    suite, _ = chdb_suite
    started = _watch_adhoc_lane(suite.warehouse, monkeypatch)
    slow = asyncio.create_task(_get(suite, "/v0/sql", q=SLOW))
    assert await asyncio.to_thread(started.wait, 30)
    await _pipe_is_right(suite)
    async with (
        aiohttp.ClientSession() as http,
        http.post(
            f"{suite.gateway_url}/v0/events",
            params={"name": "ab_test_events", "wait": "true", "token": TOKEN},
            data=orjson.dumps({**EVENTS[0], "user_id": "during"}),
        ) as response,
    ):
        assert response.status == 200, await response.text()
    # Both answered while the slow query still held its lane.
    assert not slow.done()
    status, body = await slow
    assert status == 504, body


async def test_admission_refuses_past_the_bounds(chdb_suite, monkeypatch):
    suite, other = chdb_suite
    started = _watch_adhoc_lane(suite.warehouse, monkeypatch)
    slow = asyncio.create_task(_get(suite, "/v0/sql", q=SLOW))
    assert await asyncio.to_thread(started.wait, 30)
    # The same token again: over its bound of one query in flight.
    status, body = await _get(suite, "/v0/sql", q="SELECT 1 AS one")
    assert status == 429, body
    assert body["_headers"]["Retry-After"] == "1"
    assert "this token" in body["message"]
    # Another token: over the bound for everyone.
    status, body = await _get(suite, "/v0/sql", other, q="SELECT 1 AS one")
    assert status == 429, body
    assert "in flight" in body["message"]
    assert not slow.done()
    assert (await slow)[0] == 504
    # Places are given back, also by a query that failed.
    for token in (TOKEN, other):
        status, body = await _get(suite, "/v0/sql", token, q="SELECT 1 AS one")
        assert (status, body["data"]) == (200, [{"one": 1}])
