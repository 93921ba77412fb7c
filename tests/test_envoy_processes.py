"""`--gateway envoy` as users run it: `pipit up --gateway envoy`, beside it `pipit gateway` (ours)
and `pipit gateway --gateway envoy` in front of the same services, all given the README's
walkthrough; every answer must be the same from the three."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

import aiohttp
import orjson
import pytest
from gateway_pair import Answer, require_envoy
from harness import free_port
from processes import start_pipit, start_up
from samples import tutorial_event

pytestmark = [pytest.mark.envoy, pytest.mark.e2e]

TOKEN = "envoy-e2e-admin-token-0123456789"

# The README's walkthrough, call for call.
POSTS = {
    "ab_test_events": tutorial_event("ab_test_events"),
    "user_events": tutorial_event("user_events"),
    # As the README sends it: metadata a JSON object, stored as its text.
    "app_events": tutorial_event("app_events", metadata={"subscription_tier": "basic"}),
    "clickstream_events": tutorial_event("clickstream_events", properties="{}"),
}
GETS = [
    "test_summary.json?token={t}&test_id=homepage_redesign&start_date=2023-06-01+00%3A00%3A00"
    "&end_date=2023-06-30+23%3A59%3A59",
    "test_segments.json?token={t}&test_id=homepage_redesign&segment=country",
    "test_timeseries.json?token={t}&test_id=homepage_redesign&interval=hour",
    "user_session_stats.json?token={t}",
    "user_event_timeline.json?token={t}&user_id=user_1&limit=20",
    "user_activity_metrics.json?token={t}&start_date=2023-06-01+00%3A00%3A00",
    "session_insights.json?token={t}&start_date=2023-01-01+00%3A00%3A00"
    "&end_date=2023-12-31+23%3A59%3A59&limit=50",
    "feature_usage.json?token={t}",
    "active_users.json?token={t}&start_date=2023-01-01+00%3A00%3A00"
    "&end_date=2023-12-31+23%3A59%3A59&interval=1+week",
    "get_user_journey.json?token={t}&user_id=user_742",
    "get_session_events.json?token={t}&session_id=sess_4742",
    "get_popular_pages.json?token={t}&limit=5",
    "test_summary.json",  # no token
]
# What the README shows test_summary answering after its one POST.
README_SUMMARY_ROW = {
    "test_id": "homepage_redesign",
    "variant": "B",
    "users": 1,
    "conversions": 1,
    "conversion_rate": 1,
    "total_revenue": 29.99,
    "revenue_per_user": 29.99,
}


async def _get(http: aiohttp.ClientSession, url: str) -> Answer:
    async with http.get(url) as response:
        return Answer(response.status, response.headers, await response.read())


async def test_pipit_up_with_envoy_answers_the_walkthrough_as_our_gateway(tmp_path: Path):
    require_envoy()
    up = start_up(tmp_path, TOKEN, "--gateway", "envoy")
    ingest_port, query_port = up.ports["ingest"], up.ports["query"]
    alone = {
        "PIPIT_INGEST_TARGET": f"127.0.0.1:{ingest_port}",
        "PIPIT_QUERY_TARGET": f"127.0.0.1:{query_port}",
    }
    ours = envoy_alone = None
    try:
        ours = start_pipit(
            ["gateway"], {**alone, "PIPIT_GATEWAY_PORT": str(free_port())}, {"gateway"}
        )
        envoy_alone = start_pipit(
            ["gateway", "--gateway", "envoy"],
            {**alone, "PIPIT_GATEWAY_PORT": str(free_port())},
            {"gateway"},
        )
        bases = [p.listening["gateway"] for p in (up, ours, envoy_alone)]
        auth = {"Authorization": f"Bearer {TOKEN}"}
        async with aiohttp.ClientSession() as http:
            # Each POST through one of the three; the README's answer from each.
            for (name, event), base in zip(POSTS.items(), [*bases, bases[0]], strict=True):
                async with http.post(
                    f"{base}/v0/events?name={name}", data=orjson.dumps(event), headers=auth
                ) as response:
                    assert response.status == 202, await response.text()
                    assert await response.json() == {"successful_rows": 1, "quarantined_rows": 0}
            # Queued rows are written within the flush interval: wait for one pipe of each
            # datasource to see its row (bounded; no timing is asserted).
            for _ in range(100):
                probes = [GETS[0], GETS[3], GETS[7], GETS[11]]
                answers = [
                    await _get(http, f"{bases[0]}/v0/pipes/{p.format(t=TOKEN)}") for p in probes
                ]
                if all(a.json["data"] for a in answers):
                    break
                await asyncio.sleep(0.1)
            for call in GETS:
                answers = [await _get(http, f"{b}/v0/pipes/{call.format(t=TOKEN)}") for b in bases]
                assert answers[0].status == (403 if "token" not in call else 200)
                comparable = [a.comparable() for a in answers]
                assert comparable[0] == comparable[1] == comparable[2], call
            summary = await _get(http, f"{bases[0]}/v0/pipes/{GETS[0].format(t=TOKEN)}")
            assert summary.json["data"] == [README_SUMMARY_ROW]
            health = [await _get(http, f"{b}/healthz") for b in bases]
            assert [h.status for h in health] == [200, 200, 200]
            assert health[0].comparable() == health[1].comparable() == health[2].comparable()
    finally:
        codes = [p.stop() for p in (envoy_alone, ours) if p is not None]
        codes.append(up.stop())
    assert codes == [0] * len(codes)
    # Envoy went with the process that started it.
    for base in (bases[0], bases[2]):
        host, port = base.removeprefix("http://").rsplit(":", 1)
        with socket.socket() as sock:
            assert sock.connect_ex((host, int(port))) != 0
