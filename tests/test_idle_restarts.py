"""Issue 13, item 0: events acknowledged after idle restarts must land. The reproduction:
a fresh data directory; one user_events event posted with wait=true; the service stopped
and started with nothing posted in between; a different event posted with wait=true;
both must be in the warehouse. Before the fix the log's numbering restarted at 1 after
the second idle restart, the new flush reused the first one's deduplication token, and
the warehouse dropped it as a duplicate while ingest answered 200.

Run in process (ingest, query and gateway on one warehouse, restarted for real) on chDB
and on the ClickHouse HTTP fixture, and once as a real `pipit up` process."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import orjson
import pytest
from conftest import unique_database
from harness import TOKEN, free_port, start_suite
from processes import start_pipit

from common.datasources import registry
from common.warehouse.base import Warehouse
from common.warehouse.clickhouse import ClickHouseWarehouse

pytestmark = pytest.mark.e2e

ROUNDS = 3
IDLE_RESTARTS = 3


def _event(n: int) -> bytes:
    return orjson.dumps(
        {
            "event_id": f"ev_{n}",
            "user_id": "user_1",
            "session_id": f"session_{n}",
            "event_type": "click",
            "page_url": "https://example.com/",
            "referrer": "",
            "device_type": "desktop",
            "browser": "Firefox",
            "country": "Canada",
            "city": "Toronto",
            "properties": "{}",
            "timestamp": f"2025-05-11 17:49:{n:02d}",
        }
    )


async def _post_and_wait(http: aiohttp.ClientSession, gateway: str, n: int, token: str) -> None:
    async with http.post(
        f"{gateway}/v0/events?name=user_events&wait=true",
        data=_event(n),
        headers={"Authorization": f"Bearer {token}"},
    ) as response:
        assert response.status == 200, await response.text()
        assert await response.json() == {"successful_rows": 1, "quarantined_rows": 0}


async def _event_ids(warehouse: Warehouse) -> list[str]:
    result = await warehouse.query("SELECT event_id FROM user_events ORDER BY event_id", {})
    return [row["event_id"] for row in result.data]


@pytest.fixture(params=["chdb", "clickhouse-http"])
async def warehouse(request, embedded_warehouse) -> AsyncIterator[Warehouse]:
    if request.param == "chdb":
        yield embedded_warehouse
        return
    remote = ClickHouseWarehouse(request.getfixturevalue("clickhouse_url"), unique_database("idle"))
    await remote.open()
    await remote.ensure_schema(list(registry().values()))
    yield remote
    await remote.close()


async def test_events_acknowledged_after_idle_restarts_all_land(
    warehouse: Warehouse, tmp_path: Path
) -> None:
    wal_dir = tmp_path / "wal"
    posted = []
    async with aiohttp.ClientSession() as http:
        for round_ in range(ROUNDS):
            suite = await start_suite(warehouse, wal_dir=wal_dir)
            try:
                await _post_and_wait(http, suite.gateway_url, round_, TOKEN)
                posted.append(f"ev_{round_}")
            finally:
                await suite.stop()
            for _ in range(IDLE_RESTARTS):  # started and stopped with nothing posted
                idle = await start_suite(warehouse, wal_dir=wal_dir, gateway=False)
                await idle.stop()
            assert await _event_ids(warehouse) == posted


def _count_with_chdb(data_dir: Path) -> list[str]:
    """The user_events rows of a stopped `pipit up`, read by chDB in a process of its own
    (this one already holds the session's data directory)."""
    script = (
        "import sys, chdb.session as s\n"
        "q = s.Session(sys.argv[1]).query("
        "'SELECT event_id FROM pipit.user_events ORDER BY event_id', 'CSV')\n"
        "print(q.bytes().decode(), end='')\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script, str(data_dir / "chdb")],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    ).stdout
    return [line.strip('"') for line in out.split()]


async def test_pipit_up_keeps_events_posted_after_idle_restarts(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    env = {
        "PIPIT_DATA_DIR": str(data_dir),
        "PIPIT_INGEST_PORT": str(free_port()),
        "PIPIT_QUERY_PORT": str(free_port()),
        "PIPIT_GATEWAY_PORT": str(free_port()),
        "PIPIT_METRICS_PORT": "0",
        "PIPIT_ADMIN_TOKEN": "idle-restart-token",
        "PIPIT_CLICKHOUSE_URL": "",
    }
    for n in range(2):
        up = start_pipit(["up"], env, {"gateway"}, cwd=str(tmp_path))
        try:
            # A session per process: a pooled connection would point at the last one.
            async with aiohttp.ClientSession() as http:
                await _post_and_wait(http, up.listening["gateway"], n, env["PIPIT_ADMIN_TOKEN"])
        finally:
            assert up.stop() == 0
        for _ in range(2):
            assert start_pipit(["up"], env, {"gateway"}, cwd=str(tmp_path)).stop() == 0
    assert _count_with_chdb(data_dir) == ["ev_0", "ev_1"]
