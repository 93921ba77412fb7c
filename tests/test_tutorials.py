"""Each tutorial's sample event, posted as its tutorial shows (host changed to the local
gateway), lands in its datasource; each tutorial's curl calls answer with the columns
the tutorials name (listed here from the issue, independently of the protos)."""

from __future__ import annotations

import aiohttp
import pytest
from harness import TOKEN, start_suite
from samples import AB_TEST_EVENT_BODY

pytestmark = pytest.mark.e2e

SAMPLES = {
    # 001: the POST body, pretty-printed as in the tutorial.
    "ab_test_events": AB_TEST_EVENT_BODY,
    # 002-004: the tutorials' data samples (their POST examples elide the fields).
    "user_events": b'{"event_id": "ev_73902", "user_id": "user_902", "session_id": '
    b'"session_3902", "event_type": "scroll", "page_url": "https://example.com/about", '
    b'"referrer": "https://twitter.com", "device_type": "tablet", "browser": "Safari", '
    b'"country": "Canada", "city": "Toronto", "properties": '
    b'"{\\"button_id\\":\\"btn_2\\",\\"page_section\\":\\"main\\"}", '
    b'"timestamp": "2025-05-11 17:49:55"}',
    "app_events": b'{"event_id": "evt_372713", "user_id": "user_2713", "session_id": '
    b'"sess_22713", "event_type": "login", "feature": "billing", "timestamp": '
    b'"2025-05-11 21:25:07", "device_type": "mobile", "browser": "Firefox", "os": "iOS", '
    b'"location": "UK", "metadata": "{\\"subscription_tier\\":\\"basic\\",\\"duration\\":323}"}',
    "clickstream_events": b'{ "event_id": "ev_14742", "user_id": "user_742", "session_id": '
    b'"sess_4742", "event_type": "page_view", "page_url": "https://example.com/contact", '
    b'"page_title": "Contact Page", "referrer": "https://google.com", "timestamp": '
    b'"2025-05-07 11:02:40", "device_type": "desktop", "browser": "Safari", "properties": '
    b'"{\\"browser_version\\":\\"13.0\\", \\"screen_size\\":\\"1766x1010\\"}" } ',
}

UTM = "utm_source=DEV&utm_campaign=tb+create+--prompt+DEV"
COLUMNS = {
    "test_summary": "test_id variant users conversions conversion_rate total_revenue "
    "revenue_per_user",
    "test_segments": "test_id variant segment users conversions conversion_rate total_revenue "
    "revenue_per_user",
    "test_timeseries": "test_id variant period users conversions conversion_rate total_revenue",
    "user_session_stats": "session_id user_id session_start session_end duration_seconds "
    "event_count page_views unique_pages device_type browser country",
    "user_event_timeline": "event_id user_id session_id event_type page_url referrer device_type "
    "browser country city properties timestamp",
    "user_activity_metrics": "date unique_users sessions total_events page_views clicks "
    "click_through_rate",
    "session_insights": "session_id user_id session_start session_end session_duration_seconds "
    "event_count device_type browser os location",
    "feature_usage": "feature total_events unique_users unique_sessions",
    "active_users": "period active_users sessions total_events",
    "get_user_journey": "user_id session_id timestamp event_type page_url page_title referrer "
    "device_type browser",
    "get_session_events": "event_id user_id timestamp event_type page_url page_title referrer "
    "device_type browser properties",
    "get_popular_pages": "page_url page_title view_count",
}
# (pipe, query string as the tutorials write it or as its parameters suggest, rows expected)
CALLS = [
    (
        "test_summary",
        "test_id=homepage_redesign&start_date=2023-06-01+00%3A00%3A00"
        "&end_date=2023-06-30+23%3A59%3A59",
        1,
    ),
    ("test_summary", "test_id=homepage_redesign", 1),
    ("test_segments", "test_id=homepage_redesign&segment=country", 1),
    ("test_timeseries", "test_id=homepage_redesign&interval=week", 1),
    ("user_session_stats", "", 1),
    ("user_event_timeline", "user_id=user_902", 1),
    ("user_activity_metrics", "", 1),
    (
        "session_insights",
        "start_date=2023-01-01+00%3A00%3A00&end_date=2023-12-31+23%3A59%3A59"
        "&user_id=usr_789&limit=50",
        0,
    ),
    ("feature_usage", "", 1),
    (
        "active_users",
        "start_date=2023-01-01+00%3A00%3A00&end_date=2023-12-31+23%3A59%3A59&interval=1+week",
        0,
    ),
    ("active_users", "interval=1+week", 1),
    ("get_user_journey", "user_id=usr_abc123", 0),
    ("get_user_journey", "user_id=user_742", 1),
    ("get_session_events", "session_id=sess_4742", 1),
    ("get_popular_pages", "", 1),
]


@pytest.fixture(scope="module")
async def suite(chdb_dir):
    from conftest import unique_database

    from common.datasources import registry
    from common.warehouse.embedded import EmbeddedWarehouse

    warehouse = EmbeddedWarehouse(chdb_dir, unique_database("tutorials"))
    await warehouse.open()
    await warehouse.ensure_schema(list(registry().values()))
    running = await start_suite(warehouse)
    async with aiohttp.ClientSession() as http:
        for name, body in SAMPLES.items():
            async with http.post(
                f"{running.gateway_url}/v0/events?name={name}&{UTM}",
                data=body,
                headers={"Authorization": f"Bearer {TOKEN}"},
            ) as response:
                assert response.status == 202, await response.text()
                assert await response.json() == {"successful_rows": 1, "quarantined_rows": 0}
    await running.ingest.batcher.flush_all()
    yield running
    await running.stop()


@pytest.mark.parametrize("name", sorted(SAMPLES))
async def test_sample_event_lands_in_its_datasource(suite, name):
    result = await suite.warehouse.query(f"SELECT count() AS n FROM {name}", {})  # noqa: S608
    assert result.data == [{"n": 1}]


@pytest.mark.parametrize(("pipe", "query", "rows"), CALLS, ids=[f"{c[0]}?{c[1]}" for c in CALLS])
async def test_tutorial_curl_calls(suite, pipe, query, rows):
    url = f"{suite.gateway_url}/v0/pipes/{pipe}.json?token={TOKEN}&{query}&{UTM}"
    async with aiohttp.ClientSession() as http, http.get(url) as response:
        assert response.status == 200, await response.text()
        body = await response.json()
    assert [column["name"] for column in body["meta"]] == COLUMNS[pipe].split()
    assert body["rows"] == rows == len(body["data"])
    for row in body["data"]:
        assert list(row) == COLUMNS[pipe].split()


def test_every_endpoint_is_called():
    assert {pipe for pipe, _, _ in CALLS} == set(COLUMNS)
