"""The suite as users run it: `pipit up` in one process (embedded chDB, data surviving a
restart), and `pipit ingest`, `pipit query` and `pipit gateway` as three processes
against a ClickHouse HTTP endpoint — driven with the A/B tutorial's calls."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import aiohttp
import grpc
import pytest
from clickhouse_http_fixture import ClickHouseHttpFixture
from conftest import unique_database
from harness import free_port
from processes import start_pipit
from samples import AB_TEST_EVENT_BODY

from pipit.query.v1 import query_service_pb2, query_service_pb2_grpc

pytestmark = pytest.mark.e2e

TOKEN = "e2e-admin-token-0123456789"
SUMMARY_QUERY = (
    "test_id=homepage_redesign&start_date=2023-06-01+00%3A00%3A00"
    "&end_date=2023-06-30+23%3A59%3A59&utm_source=DEV&utm_campaign=tb+create+--prompt+DEV"
)
EXPECTED_ROW = {
    "test_id": "homepage_redesign",
    "variant": "B",
    "users": 1,
    "conversions": 1,
    "conversion_rate": 1,
    "total_revenue": 29.99,
    "revenue_per_user": 29.99,
}


async def _post_event(http: aiohttp.ClientSession, base: str, auth: dict[str, str]) -> None:
    # As the tutorial sends it: no wait, so the answer is 202 (queued).
    async with http.post(
        f"{base}/v0/events?name=ab_test_events&utm_source=DEV",
        data=AB_TEST_EVENT_BODY,
        headers=auth,
    ) as response:
        assert response.status == 202, await response.text()
        assert await response.json() == {"successful_rows": 1, "quarantined_rows": 0}


async def _summary(http: aiohttp.ClientSession, base: str, token: str) -> list[dict]:
    async with http.get(f"{base}/v0/pipes/test_summary.json?token={token}&{SUMMARY_QUERY}") as r:
        assert r.status == 200, await r.text()
        return (await r.json())["data"]


async def _summary_once_flushed(http: aiohttp.ClientSession, base: str, token: str) -> list[dict]:
    """Queued rows become visible after the flush interval; poll for them (the wait is
    bounded, and no timing is asserted)."""
    for _ in range(100):
        data = await _summary(http, base, token)
        if data:
            return data
        await asyncio.sleep(0.1)
    return []


async def _tutorial_calls(base: str, token: str) -> None:
    auth = {"Authorization": f"Bearer {token}"}
    async with aiohttp.ClientSession() as http:
        await _post_event(http, base, auth)
        assert await _summary_once_flushed(http, base, token) == [EXPECTED_ROW]
        async with http.get(
            f"{base}/v0/pipes/test_segments.json?token={token}&test_id=homepage_redesign"
            "&segment=country"
        ) as r:
            assert r.status == 200
            segments = (await r.json())["data"]
        assert [(s["variant"], s["segment"], s["users"]) for s in segments] == [("B", "US", 1)]
        async with http.get(
            f"{base}/v0/pipes/test_timeseries.json?token={token}&interval=hour"
        ) as r:
            assert r.status == 200
            series = (await r.json())["data"]
        assert [(s["period"], s["conversions"]) for s in series] == [("2023-06-15 14:00:00", 1)]
        async with http.get(f"{base}/v0/pipes/test_summary.json?{SUMMARY_QUERY}") as r:
            assert r.status == 403


async def _grpc_summary(address: str, token: str) -> list[tuple]:
    async with grpc.aio.insecure_channel(address) as channel:
        stub = query_service_pb2_grpc.QueryServiceStub(channel)
        response = await stub.TestSummary(
            query_service_pb2.TestSummaryRequest(
                test_id="homepage_redesign",
                start_date="2023-06-01 00:00:00",
                end_date="2023-06-30 23:59:59",
            ),
            metadata=(("authorization", f"Bearer {token}"),),
        )
    return [
        (r.variant, r.users, r.conversions, r.conversion_rate, r.total_revenue, r.revenue_per_user)
        for r in response.data
    ]


def _up_env(data_dir: Path) -> dict[str, str]:
    return {
        "PIPIT_DATA_DIR": str(data_dir),
        "PIPIT_INGEST_PORT": str(free_port()),
        "PIPIT_QUERY_PORT": str(free_port()),
        "PIPIT_GATEWAY_PORT": str(free_port()),
        "PIPIT_ADMIN_TOKEN": "",
        "PIPIT_CLICKHOUSE_URL": "",
        "PIPIT_METRICS_PORT": str(free_port()),
    }


async def test_pipit_up_serves_the_tutorial_and_keeps_data_across_a_restart(tmp_path: Path):
    env = _up_env(tmp_path / "data")
    expect = {"ingest", "query", "gateway"}
    first = start_pipit(["up"], env, expect, cwd=str(tmp_path))
    try:
        token_lines = [line for line in first.lines if "admin token" in line]
        assert token_lines, first.lines
        token = token_lines[0].rsplit(" ", 1)[1]
        assert (tmp_path / "data" / "admin_token").read_text().strip() == token
        await _tutorial_calls(first.listening["gateway"], token)
        grpc_rows = await _grpc_summary(first.listening["query"], token)
        assert grpc_rows == [("B", 1, 1, 1.0, 29.99, 29.99)]
    finally:
        assert first.stop() == 0
    second = start_pipit(["up"], env, expect, cwd=str(tmp_path))
    try:
        async with aiohttp.ClientSession() as http:
            assert await _summary(http, second.listening["gateway"], token) == [EXPECTED_ROW]
        assert await _grpc_summary(second.listening["query"], token) == grpc_rows
    finally:
        assert second.stop() == 0


async def test_shutdown_of_pipit_up_flushes_queued_events(tmp_path: Path):
    env = {**_up_env(tmp_path / "data"), "PIPIT_FLUSH_INTERVAL": "3600", "PIPIT_ADMIN_TOKEN": TOKEN}
    first = start_pipit(["up"], env, {"gateway"}, cwd=str(tmp_path))
    try:
        async with aiohttp.ClientSession() as http:
            await _post_event(
                http, first.listening["gateway"], {"Authorization": f"Bearer {TOKEN}"}
            )
            assert await _summary(http, first.listening["gateway"], TOKEN) == []  # buffered
    finally:
        assert first.stop() == 0
    second = start_pipit(["up"], env, {"gateway"}, cwd=str(tmp_path))
    try:
        async with aiohttp.ClientSession() as http:
            assert await _summary(http, second.listening["gateway"], TOKEN) == [EXPECTED_ROW]
    finally:
        assert second.stop() == 0


@pytest.fixture
def clickhouse_url(tmp_path: Path):
    configured = os.environ.get("PIPIT_TEST_CLICKHOUSE_URL")
    if configured:
        yield configured
        return
    with ClickHouseHttpFixture(tmp_path / "clickhouse") as server:
        yield server.url


async def test_three_processes_against_clickhouse(tmp_path: Path, clickhouse_url: str):
    ingest_port, query_port = free_port(), free_port()
    common = {
        "PIPIT_CLICKHOUSE_URL": clickhouse_url,
        "PIPIT_DATABASE": unique_database("procs"),
        "PIPIT_ADMIN_TOKEN": TOKEN,
        "PIPIT_DATA_DIR": str(tmp_path / "unused"),
    }
    ingest = start_pipit(
        ["ingest"],
        {**common, "PIPIT_INGEST_PORT": str(ingest_port), "PIPIT_METRICS_PORT": str(free_port())},
        {"ingest"},
    )
    query = start_pipit(["query"], {**common, "PIPIT_QUERY_PORT": str(query_port)}, {"query"})
    gateway = start_pipit(
        ["gateway"],
        {
            "PIPIT_GATEWAY_PORT": str(free_port()),
            "PIPIT_INGEST_TARGET": f"127.0.0.1:{ingest_port}",
            "PIPIT_QUERY_TARGET": f"127.0.0.1:{query_port}",
        },
        {"gateway"},
    )
    try:
        await _tutorial_calls(gateway.listening["gateway"], TOKEN)
        assert await _grpc_summary(f"127.0.0.1:{query_port}", TOKEN) == [
            ("B", 1, 1, 1.0, 29.99, 29.99)
        ]
        async with aiohttp.ClientSession() as http:
            async with http.get(f"{gateway.listening['gateway']}/healthz") as r:
                assert r.status == 200
    finally:
        codes = [gateway.stop(), query.stop(), ingest.stop()]
    assert codes == [0, 0, 0]
    assert not (tmp_path / "unused" / "chdb").exists(), "the ClickHouse path must not use chDB"


async def test_pipit_seed_fills_every_datasource_and_every_endpoint_answers(tmp_path: Path):
    env = {**_up_env(tmp_path / "data"), "PIPIT_ADMIN_TOKEN": TOKEN}
    up = start_pipit(["up"], env, {"ingest", "gateway"}, cwd=str(tmp_path))
    try:
        seed = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "pipit.cli",
            "seed",
            "--events",
            "100000",
            "--ingest-target",
            up.listening["ingest"],
            env={**os.environ, **env},
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.DEVNULL,
        )
        out, _ = await seed.communicate()
        assert seed.returncode == 0, out
        assert "sent 100000 rows" in out.decode()
        base = up.listening["gateway"]
        async with aiohttp.ClientSession() as http:
            answers = {}
            for pipe, query in PIPE_CALLS:
                async with http.get(f"{base}/v0/pipes/{pipe}.json?token={TOKEN}&{query}") as r:
                    assert r.status == 200, (pipe, await r.text())
                    answers[pipe] = (await r.json())["data"]
        assert all(answers.values()), [pipe for pipe, rows in answers.items() if not rows]
        # 100,000 events split evenly over the four datasources.
        assert sum(r["total_events"] for r in answers["feature_usage"]) == 25_000
        assert sum(r["total_events"] for r in answers["user_activity_metrics"]) == 25_000
        assert sum(r["total_events"] for r in answers["active_users"]) == 25_000
        assert sum(r["users"] for r in answers["test_summary"]) > 0
    finally:
        assert up.stop() == 0


PIPE_CALLS = [
    ("test_summary", ""),
    ("test_segments", "segment=country"),
    ("test_timeseries", "interval=week"),
    ("user_session_stats", ""),
    ("user_event_timeline", "user_id=user_1"),
    ("user_activity_metrics", ""),
    ("session_insights", ""),
    ("feature_usage", ""),
    ("active_users", "interval=1+month"),
    ("get_user_journey", "user_id=user_1"),
    ("get_session_events", "session_id=sess_1"),
    ("get_popular_pages", ""),
]
