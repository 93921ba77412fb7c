"""Bad input through the JSON gateway: each gets its HTTP status and a JSON error naming the
problem, and the valid rows of the same request are kept."""

from __future__ import annotations

import aiohttp
import orjson
import pytest
from harness import TOKEN, start_suite

pytestmark = pytest.mark.e2e

AUTH = {"Authorization": f"Bearer {TOKEN}"}
EVENT = {
    "timestamp": "2023-06-15 14:30:00",
    "user_id": "u1",
    "test_id": "t",
    "variant": "A",
    "event_type": "page_view",
    "conversion": 0,
    "revenue": 0,
    "session_id": "s1",
    "device": "mobile",
    "country": "US",
}


@pytest.fixture
async def suite(embedded_warehouse):
    running = await start_suite(embedded_warehouse, max_body_bytes=10 * 1024 * 1024)
    yield running
    await running.stop()


async def _count(suite, table: str) -> int:
    result = await suite.warehouse.query(f"SELECT count() AS n FROM {table}", {})  # noqa: S608
    return result.data[0]["n"]


async def _post(suite, body: bytes, query: str = "name=ab_test_events&wait=true", headers=AUTH):
    async with (
        aiohttp.ClientSession() as http,
        http.post(f"{suite.gateway_url}/v0/events?{query}", data=body, headers=headers) as r,
    ):
        return r.status, await r.json()


@pytest.mark.parametrize(
    ("query", "body", "status", "message"),
    [
        ("name=ab_test_events", b"", 400, "empty body"),
        ("name=ab_test_events", b"this is not json", 400, "not JSON"),
        ("name=nope", orjson.dumps(EVENT), 404, "datasource 'nope' does not exist"),
        ("wait=true", orjson.dumps(EVENT), 400, "'name' is required"),
    ],
)
async def test_unusable_bodies(suite, query, body, status, message):
    code, answer = await _post(suite, body, query)
    assert code == status
    assert message in answer["message"]
    assert await _count(suite, "ab_test_events") == 0


async def test_body_over_ten_megabytes_is_413(suite):
    line = orjson.dumps(EVENT)
    body = b"\n".join([line] * (10 * 1024 * 1024 // len(line) + 10))
    assert len(body) > 10 * 1024 * 1024
    code, answer = await _post(suite, body)
    assert code == 413
    assert "limit" in answer["message"]
    assert await _count(suite, "ab_test_events") == 0


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"user_id": None}, "missing required field 'user_id'"),
        ({"revenue": "free"}, "field 'revenue': expected a number"),
        ({"conversion": 300}, "field 'conversion': 300 is out of range"),
        ({"timestamp": "15/06/2023"}, "field 'timestamp'"),
    ],
)
async def test_bad_rows_are_quarantined_and_the_rest_kept(suite, change, reason):
    bad = {k: v for k, v in {**EVENT, **change}.items() if v is not None}
    body = b"\n".join([orjson.dumps(EVENT), orjson.dumps(bad), orjson.dumps(EVENT)])
    code, answer = await _post(suite, body)
    assert (code, answer) == (200, {"successful_rows": 2, "quarantined_rows": 1})
    assert await _count(suite, "ab_test_events") == 2
    result = await suite.warehouse.query("SELECT raw, error FROM ab_test_events_quarantine", {})
    assert len(result.data) == 1
    assert reason in result.data[0]["error"]
    assert orjson.loads(result.data[0]["raw"]) == bad


@pytest.mark.parametrize(
    ("pipe", "query", "message"),
    [
        ("test_segments", "segment=browser", "parameter 'segment' must be one of device, country"),
        ("test_timeseries", "interval=month", "parameter 'interval'"),
        ("test_summary", "start_date=June+1st", "parameter 'start_date'"),
        (
            "test_summary",
            "start_date=2023-06-30+00:00:00&end_date=2023-06-01+00:00:00",
            "parameter 'end_date'",
        ),
        ("user_event_timeline", "", "parameter 'user_id' is required"),
        ("get_popular_pages", "limit=0", "parameter 'limit' must be between 1 and 10000"),
        ("get_popular_pages", "limit=many", "limit"),
        ("active_users", "interval=1+year", "parameter 'interval'"),
    ],
)
async def test_bad_parameters_are_400_naming_the_parameter(suite, pipe, query, message):
    url = f"{suite.gateway_url}/v0/pipes/{pipe}.json?token={TOKEN}&{query}"
    async with aiohttp.ClientSession() as http, http.get(url) as response:
        assert response.status == 400
        answer = await response.json()
    assert answer["code"] == 3
    assert message in answer["message"]


@pytest.mark.parametrize(
    "headers", [{}, {"Authorization": "Bearer wrong"}], ids=["no-token", "wrong-token"]
)
async def test_missing_or_wrong_token_is_403(suite, headers):
    # Tinybird's status for it (Events API: "403 The token is not valid"); the gRPC code says
    # UNAUTHENTICATED.
    code, answer = await _post(suite, orjson.dumps(EVENT), headers=headers)
    assert (code, answer["code"]) == (403, 16)
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"{suite.gateway_url}/v0/pipes/test_summary.json?token=wrong") as r,
    ):
        assert r.status == 403
    assert await _count(suite, "ab_test_events") == 0
