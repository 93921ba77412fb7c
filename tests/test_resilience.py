"""How the processes behave when ClickHouse misbehaves, as Kubernetes sees them: three real
processes (`pipit ingest`, `pipit query`, `pipit gateway`) against the ClickHouse HTTP
fixture, which can refuse writes (as replicated tables do without Keeper) or go away and
come back on the same port.

- While inserts fail, pipe calls through the gateway keep answering and the gateway and
  the query service stay ready; ingest stays ready while its log has room, then answers 429
  (Retry-After) and is not ready; once writes pass, everything acknowledged arrives once.
- With ClickHouse gone, calls fail fast (503 UNAVAILABLE, not the gateway's 504 timeout),
  the query service and the gateway turn unready, ingest keeps acknowledging into its log;
  services started meanwhile listen, alive and not ready; when ClickHouse returns every one
  of them serves, in the same process (no exit, no restart).
- `pipit drain` replays the log of a replica killed before its flush (and of one killed
  between an insert and its commit) into the warehouse, exactly once, before it returns.

Expected counts are the events the test itself had acknowledged."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import grpc
import orjson
import pytest
from clickhouse_http_fixture import ClickHouseHttpFixture
from conftest import unique_database
from google.protobuf.timestamp_pb2 import Timestamp
from grpc_health.v1 import health_pb2, health_pb2_grpc
from harness import free_port
from processes import PipitProcess, start_pipit
from samples import keyed_ab_event

from pipit.datasources.v1 import ab_test_events_pb2
from pipit.ingest.v1 import ingest_service_pb2 as ingest_pb
from pipit.ingest.v1 import ingest_service_pb2_grpc as ingest_grpc
from pipit.query.v1 import query_service_pb2 as query_pb
from pipit.query.v1 import query_service_pb2_grpc as query_grpc
from services.ingest.wal import WriteAheadLog

pytestmark = pytest.mark.e2e

TOKEN = "resilience-admin-token-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
METADATA = (("authorization", f"Bearer {TOKEN}"),)
INGEST_READY = "pipit.ingest.v1.IngestService"
QUERY_READY = "pipit.query.v1.QueryService"
TEST_ID = "resilience"
SUMMARY = (
    f"/v0/pipes/test_summary.json?test_id={TEST_ID}&start_date=2023-06-01+00%3A00%3A00"
    "&end_date=2023-06-30+23%3A59%3A59"
)


def _common(clickhouse: ClickHouseHttpFixture, tmp_path: Path) -> dict[str, str]:
    return {
        "PIPIT_CLICKHOUSE_URL": clickhouse.url,
        "PIPIT_DATABASE": unique_database("resilience"),
        "PIPIT_ADMIN_TOKEN": TOKEN,
        "PIPIT_DATA_DIR": str(tmp_path / "data"),
        # Short back-off caps, so a recovery is seen soon after it happens.
        "PIPIT_FLUSH_RETRY_MAX": "0.5",
        "PIPIT_STARTUP_RETRY_MAX": "0.5",
    }


def _ingest(common: dict[str, str], wal: Path, **env: str) -> PipitProcess:
    running = start_pipit(
        ["ingest"],
        {
            **common,
            "PIPIT_INGEST_PORT": str(free_port()),
            "PIPIT_METRICS_PORT": "0",
            "PIPIT_WAL_DIR": str(wal),
            "PIPIT_FLUSH_INTERVAL": "0.05",
            **env,
        },
        {"ingest"},
    )
    return running


def _query(common: dict[str, str]) -> PipitProcess:
    return start_pipit(["query"], {**common, "PIPIT_QUERY_PORT": str(free_port())}, {"query"})


def _gateway(ingest: PipitProcess, query: PipitProcess) -> PipitProcess:
    return start_pipit(
        ["gateway"],
        {
            "PIPIT_GATEWAY_PORT": str(free_port()),
            "PIPIT_INGEST_TARGET": ingest.listening["ingest"],
            "PIPIT_QUERY_TARGET": query.listening["query"],
        },
        {"gateway"},
    )


async def _health(address: str, service: str) -> str:
    async with grpc.aio.insecure_channel(address) as channel:
        try:
            reply = await health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=service), timeout=5
            )
        except grpc.aio.AioRpcError as exc:
            return exc.code().name
    return health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)


async def _eventually(probe: Callable[[], Awaitable[Any]], expected: Any) -> Any:
    """Polls until `probe()` gives `expected` (a readiness wait, bounded); returns the last."""
    for _ in range(400):
        value = await probe()
        if value == expected:
            return value
        await asyncio.sleep(0.05)
    return value


async def _status(http: aiohttp.ClientSession, url: str) -> int:
    async with http.get(url) as response:
        await response.read()
        return response.status


async def _users(http: aiohttp.ClientSession, gateway: str) -> tuple[int, int]:
    """(HTTP status, users the summary pipe counts) through the gateway."""
    async with http.get(f"{gateway}{SUMMARY}", headers=AUTH) as response:
        if response.status != 200:
            return response.status, -1
        rows = (await response.json())["data"]
    return 200, sum(row["users"] for row in rows)


async def _stored(http: aiohttp.ClientSession, clickhouse: str, database: str) -> tuple[int, int]:
    """(rows, distinct users) of the test's events, asked of the warehouse itself."""
    query = "SELECT count(), uniqExact(user_id) FROM ab_test_events WHERE test_id = {t:String}"
    params = {"query": query, "database": database, "param_t": TEST_ID}
    async with http.get(clickhouse, params=params) as response:
        text = await response.text()
        assert response.status == 200, text
    rows, users = text.split()
    return int(rows), int(users)


async def _post(
    http: aiohttp.ClientSession, gateway: str, keys: list[str]
) -> aiohttp.ClientResponse:
    body = b"\n".join(orjson.dumps(keyed_ab_event(key, TEST_ID)) for key in keys)
    async with http.post(
        f"{gateway}/v0/events?name=ab_test_events", data=body, headers=AUTH
    ) as response:
        await response.read()
        return response


def _stop_all(*processes: PipitProcess) -> list[int]:
    return [process.stop() for process in processes]


async def test_failing_writes_leave_queries_and_readiness_alone(tmp_path: Path) -> None:
    clickhouse = ClickHouseHttpFixture(tmp_path / "clickhouse")
    clickhouse.start()
    common = _common(clickhouse, tmp_path)
    database = common["PIPIT_DATABASE"]
    limit = 200_000
    ingest = _ingest(
        common,
        tmp_path / "wal",
        PIPIT_WAL_MAX_BYTES=str(limit),
        PIPIT_WAL_SEGMENT_BYTES="20000",
    )
    query = _query(common)
    gateway = _gateway(ingest, query)
    base = gateway.listening["gateway"]
    ingest_at, query_at = ingest.listening["ingest"], query.listening["query"]
    try:
        async with aiohttp.ClientSession() as http:
            assert (await _post(http, base, ["first"])).status == 202
            assert await _eventually(lambda: _users(http, base), (200, 1)) == (200, 1)

            clickhouse.refuse_writes()
            acknowledged: list[str] = []
            refused = None
            for batch in range(400):
                keys = [f"b{batch}-e{i}" for i in range(50)]
                response = await _post(http, base, keys)
                if response.status != 202:
                    refused = response
                    break
                acknowledged += keys
                if batch == 0:
                    # Acknowledged into the log, not written: reads and readiness unmoved.
                    assert await _users(http, base) == (200, 1)
                    assert await _status(http, f"{base}/healthz") == 200
                    assert await _health(query_at, QUERY_READY) == "SERVING"
                    assert await _health(ingest_at, INGEST_READY) == "SERVING"
            assert refused is not None, "ingest never pushed back"
            assert refused.status == 429
            assert refused.headers["Retry-After"] == "1"
            assert len(acknowledged) >= 100
            # The log is full: ingest is not ready (still alive); queries go on regardless.
            not_ready = await _eventually(lambda: _health(ingest_at, INGEST_READY), "NOT_SERVING")
            assert not_ready == "NOT_SERVING"
            assert await _health(ingest_at, "") == "SERVING"
            assert await _users(http, base) == (200, 1)
            assert await _status(http, f"{base}/healthz") == 200
            assert await _health(query_at, QUERY_READY) == "SERVING"
            assert await _stored(http, clickhouse.url, database) == (1, 1)

            clickhouse.refuse_writes(False)
            expected = (len(acknowledged) + 1, len(acknowledged) + 1)
            assert (
                await _eventually(lambda: _stored(http, clickhouse.url, database), expected)
                == expected
            )
            assert await _eventually(lambda: _health(ingest_at, INGEST_READY), "SERVING") == (
                "SERVING"
            )
            assert await _users(http, base) == (200, expected[1])
        assert all(p.process.poll() is None for p in (ingest, query, gateway))
    finally:
        codes = _stop_all(gateway, query, ingest)
        clickhouse.stop()
    assert codes == [0, 0, 0]


async def _summary_over_grpc(address: str) -> tuple[str, int]:
    async with grpc.aio.insecure_channel(address) as channel:
        try:
            reply = await query_grpc.QueryServiceStub(channel).TestSummary(
                query_pb.TestSummaryRequest(
                    test_id=TEST_ID,
                    start_date="2023-06-01 00:00:00",
                    end_date="2023-06-30 23:59:59",
                ),
                metadata=METADATA,
                timeout=10,
            )
        except grpc.aio.AioRpcError as exc:
            return exc.code().name, -1
    return "OK", sum(row.users for row in reply.data)


async def _append(address: str, key: str, wait: bool) -> str:
    event = ab_test_events_pb2.AbTestEvent(
        timestamp=Timestamp(seconds=1686839400),
        user_id=key,
        test_id=TEST_ID,
        variant="A",
        event_type="view",
        session_id="s",
        device="d",
        country="c",
    )
    async with grpc.aio.insecure_channel(address) as channel:
        try:
            await ingest_grpc.IngestServiceStub(channel).AppendAbTestEvents(
                ingest_pb.AppendAbTestEventsRequest(events=[event], wait=wait),
                metadata=METADATA,
                timeout=30,
            )
        except grpc.aio.AioRpcError as exc:
            return exc.code().name
    return "OK"


async def test_an_outage_fails_fast_and_every_service_serves_again(tmp_path: Path) -> None:
    clickhouse = ClickHouseHttpFixture(tmp_path / "clickhouse")
    clickhouse.start()
    port = clickhouse.port
    assert port is not None
    common = _common(clickhouse, tmp_path)
    database = common["PIPIT_DATABASE"]
    ingest = _ingest(common, tmp_path / "wal")
    query = _query(common)
    gateway = _gateway(ingest, query)
    late: list[PipitProcess] = []
    base = gateway.listening["gateway"]
    query_at = query.listening["query"]
    try:
        async with aiohttp.ClientSession() as http:
            assert (await _post(http, base, ["before"])).status == 202
            assert await _eventually(lambda: _users(http, base), (200, 1)) == (200, 1)

            clickhouse.stop()
            # Fails fast: UNAVAILABLE (503), not the gateway's own timeout (504).
            async with http.get(f"{base}{SUMMARY}", headers=AUTH) as response:
                assert response.status == 503
                assert (await response.json())["code"] == grpc.StatusCode.UNAVAILABLE.value[0]
            assert await _eventually(lambda: _health(query_at, QUERY_READY), "NOT_SERVING") == (
                "NOT_SERVING"
            )
            assert await _status(http, f"{base}/healthz") == 503
            # Ingest takes events into its log all the same.
            assert (await _post(http, base, ["during"])).status == 202
            assert await _health(ingest.listening["ingest"], INGEST_READY) == "SERVING"

            # Started while ClickHouse is away: they listen, alive and not ready.
            late.append(_query(common))
            late.append(_ingest(common, tmp_path / "late-wal"))
            late_query, late_ingest = late[0].listening["query"], late[1].listening["ingest"]
            for address, ready in ((late_query, QUERY_READY), (late_ingest, INGEST_READY)):
                assert await _health(address, "") == "SERVING"
                assert await _health(address, ready) == "NOT_SERVING"
            assert await _summary_over_grpc(late_query) == ("UNAVAILABLE", -1)
            assert await _append(late_ingest, "refused", wait=False) == "UNAVAILABLE"

            clickhouse.start(port)
            assert await _eventually(lambda: _users(http, base), (200, 2)) == (200, 2)
            # Readiness is checked every few seconds: it follows.
            assert await _eventually(lambda: _status(http, f"{base}/healthz"), 200) == 200
            for address, ready in (
                (query_at, QUERY_READY),
                (late_query, QUERY_READY),
                (late_ingest, INGEST_READY),
            ):
                assert await _eventually(lambda a=address, r=ready: _health(a, r), "SERVING") == (
                    "SERVING"
                )
            assert await _summary_over_grpc(late_query) == ("OK", 2)
            assert await _append(late_ingest, "after", wait=True) == "OK"
            assert await _stored(http, clickhouse.url, database) == (3, 3)
        # The same processes throughout: none exited, none was restarted.
        assert all(p.process.poll() is None for p in (ingest, query, gateway, *late))
    finally:
        codes = _stop_all(gateway, query, ingest, *late)
        clickhouse.stop()
    assert codes == [0] * (3 + len(late))


def _drain(common: dict[str, str], wal: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pipit.cli", "drain", "--wal-dir", str(wal)],
        env={**os.environ, **common},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


async def _left_in(directory: Path) -> tuple[bool, bool]:
    """Whether a stopped replica's log holds batches, and flush intents, to replay."""
    wal = WriteAheadLog(directory, max_bytes=1 << 30, segment_bytes=1 << 20)
    data, flushes = await wal.open()
    await wal.close()
    return bool(data), bool(flushes)


async def test_drain_replays_a_stopped_replicas_log_exactly_once(tmp_path: Path) -> None:
    clickhouse = ClickHouseHttpFixture(tmp_path / "clickhouse")
    clickhouse.start()
    common = _common(clickhouse, tmp_path)
    database = common["PIPIT_DATABASE"]
    # One replica never flushes (its interval is an hour) and is killed; the other dies
    # right after its second flush reached the warehouse, before the log heard of it.
    never = _ingest(common, tmp_path / "never", PIPIT_FLUSH_INTERVAL="3600")
    midway = _ingest(
        common,
        tmp_path / "midway",
        PIPIT_FLUSH_INTERVAL="3600",
        PIPIT_FLUSH_ROWS="10",
        PIPIT_CRASH_AT="after_insert:2",
    )
    acknowledged: set[str] = set()
    # The append the crash cut off: the replica may have logged it before dying unanswered,
    # so it may be stored (once) or not; nothing else unacknowledged may be.
    unanswered: set[str] = set()
    try:
        for i in range(30):
            if await _append(never.listening["ingest"], f"never-{i}", wait=False) == "OK":
                acknowledged.add(f"never-{i}")
        for i in range(30):
            key = f"midway-{i}"
            if await _append(midway.listening["ingest"], key, wait=False) != "OK":
                unanswered.add(key)
                break
            acknowledged.add(key)
        never.process.send_signal(signal.SIGKILL)
        assert midway.process.wait(timeout=60) == -signal.SIGKILL  # its crash point
        assert never.process.wait(timeout=60) == -signal.SIGKILL
        async with aiohttp.ClientSession() as http:
            rows_before, _ = await _stored(http, clickhouse.url, database)
            # Some rows arrived (the midway replica's flushes); the midway log still holds
            # the intent whose insert reached the warehouse, the never log only batches.
            assert 0 < rows_before < len(acknowledged)
            assert await _left_in(tmp_path / "midway") == (True, True)
            assert await _left_in(tmp_path / "never") == (True, False)
            for wal in (tmp_path / "never", tmp_path / "midway"):
                done = _drain(common, wal)
                assert done.returncode == 0, done.stderr[-2000:]
                assert "the log is empty" in done.stdout
            # Before the commands returned: every acknowledged event, each once.
            count, users = await _stored(http, clickhouse.url, database)
            query = "SELECT user_id FROM ab_test_events WHERE test_id = {t:String}"
            params = {"query": query, "database": database, "param_t": TEST_ID}
            async with http.get(clickhouse.url, params=params) as response:
                stored = set((await response.text()).split())
        # All of the never replica's, and the midway replica's up to its crash.
        assert len(acknowledged) > 30
        assert acknowledged <= stored <= acknowledged | unanswered
        assert (count, users) == (len(stored), len(stored))  # each once
        # Drained again: nothing left to send, nothing doubled.
        done = _drain(common, tmp_path / "never")
        assert done.returncode == 0, done.stderr[-2000:]
        assert "0 rows" in done.stdout
    finally:
        for process in (never, midway):
            if process.process.poll() is None:
                process.process.kill()
        clickhouse.stop()
