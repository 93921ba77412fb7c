"""Connections that hold a gateway without asking anything of it are closed, by ours and by the
real Envoy alike: one that sends nothing, one that sends its request head too slowly, one left
idle after an answer; a request whose body stalls is answered 408. A slow answer is not cut.

Both gateways run with a one-second header timeout; every wait below is for the server to act,
under a generous deadline (tests/raw_http.py), never a measured duration."""

from __future__ import annotations

import asyncio
import gzip
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from fake_upstream import fake_upstream
from gateway_pair import GATEWAYS, GatewayPair, start_pair
from raw_http import DEADLINE, RawConnection

from gateway.app import default_descriptor_set
from gateway.envoy import http_services
from pipit.ingest.v1 import ingest_service_pb2 as ingest_pb2
from pipit.ingest.v1 import ingest_service_pb2_grpc as ingest_grpc
from pipit.query.v1 import query_service_pb2 as query_pb2
from pipit.query.v1 import query_service_pb2_grpc as query_grpc

pytestmark = pytest.mark.envoy

HEADER_TIMEOUT = 1.0
REQUEST_TIMEOUT = 3.0
TRICKLE_SECONDS = 0.1
SLOW_ANSWER = 1.5  # longer than the header timeout, shorter than the request timeout


class SlowQuery(query_grpc.QueryServiceServicer):
    async def TestSummary(self, request, context):
        await asyncio.sleep(SLOW_ANSWER)
        return query_pb2.TestSummaryResponse(rows=1)


class Ingest(ingest_grpc.IngestServiceServicer):
    async def AppendUserEvents(self, request, context):
        return ingest_pb2.AppendUserEventsResponse(successful_rows=len(request.events))


@pytest.fixture(scope="module")
async def pair(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[GatewayPair]:
    async with fake_upstream(
        (query_grpc.add_QueryServiceServicer_to_server, SlowQuery()),
        (ingest_grpc.add_IngestServiceServicer_to_server, Ingest()),
    ) as upstream:
        running = await start_pair(
            {name: upstream.target for name in http_services(default_descriptor_set())},
            Path(tmp_path_factory.mktemp("timeouts")),
            max_body_bytes=1 << 20,
            request_timeout=REQUEST_TIMEOUT,
            header_timeout=HEADER_TIMEOUT,
        )
        yield running
        await running.stop()


@pytest.mark.parametrize("gateway", GATEWAYS)
async def test_connections_that_send_nothing_are_closed(pair: GatewayPair, gateway: str) -> None:
    connections = [await RawConnection.open(pair.urls[gateway]) for _ in range(20)]
    received = await asyncio.gather(*(c.closed_by_server() for c in connections))
    assert received == [b""] * len(connections)


@pytest.mark.parametrize("gateway", GATEWAYS)
async def test_a_head_sent_too_slowly_is_closed(pair: GatewayPair, gateway: str) -> None:
    connection = await RawConnection.open(pair.urls[gateway])
    await connection.send(b"GET /nope HTTP/1.1\r\nHost: pipit.test\r\n")
    closed = asyncio.create_task(connection.closed_by_server())
    # A header name one byte at a time, never the blank line that ends the head.
    await connection.send(b"X-Slow")
    for _ in range(int(DEADLINE / TRICKLE_SECONDS)):
        done, _ = await asyncio.wait([closed], timeout=TRICKLE_SECONDS)
        if done:
            break
        try:
            await connection.send(b"w")
        except ConnectionError:
            break
    received = await closed
    # Ours closes the connection; Envoy says why first.
    if gateway == "pipit":
        assert received == b""
    else:
        assert received.startswith(b"HTTP/1.1 408 Request Timeout\r\n")


@pytest.mark.parametrize("gateway", GATEWAYS)
async def test_an_idle_keep_alive_connection_is_closed(pair: GatewayPair, gateway: str) -> None:
    connection = await RawConnection.open(pair.urls[gateway])
    for _ in range(2):  # kept alive between requests, however many
        await connection.send_head("GET", "/nope", {})
        answer = await connection.read_answer()
        assert answer.status == 404
        assert answer.headers.get("connection", "keep-alive") == "keep-alive"
    assert await connection.closed_by_server() == b""


@pytest.mark.parametrize("gateway", GATEWAYS)
async def test_a_stalled_body_is_answered_408(pair: GatewayPair, gateway: str) -> None:
    connection = await RawConnection.open(pair.urls[gateway])
    await connection.send_head("POST", "/v0/events?name=ab_test_events", {"Content-Length": "100"})
    await connection.send(b'{"a": 1')
    answer = await connection.read_answer()
    assert (answer.status, answer.json) == (
        408,
        {"error": "stream timeout", "code": 4, "message": "stream timeout", "details": []},
    )
    await connection.closed_by_server()


async def test_an_answer_slower_than_the_header_timeout_is_not_cut(pair: GatewayPair) -> None:
    async with aiohttp.ClientSession() as http:
        for gateway in GATEWAYS:
            url = pair.urls[gateway] + "/v0/pipes/test_summary.json"
            async with http.get(url) as response:
                assert response.status == 200, (gateway, await response.text())
                assert (await response.json())["rows"] == 1


async def test_envoy_times_out_a_typed_message_split_across_gzip_members(
    pair: GatewayPair,
) -> None:
    # Envoy's decompressor passes on the first member only, so its transcoder waits for the
    # rest of the JSON message until the route times out. Ours reads both members.
    message = b'{"events": [{"user_id": "u", "event_id": "e"}]}'
    body = gzip.compress(message[:20]) + gzip.compress(message[20:])
    answers = {}
    async with aiohttp.ClientSession() as http:
        for gateway in GATEWAYS:
            async with http.post(
                pair.urls[gateway] + "/v1/datasources/user_events/events",
                data=body,
                headers={"Content-Encoding": "gzip"},
            ) as response:
                answers[gateway] = (response.status, await response.json())
    assert answers == {
        "pipit": (200, {"successful_rows": 1, "quarantined_rows": 0}),
        "envoy": (
            504,
            {
                "error": "upstream request timeout",
                "code": 4,
                "message": "upstream request timeout",
                "details": [],
            },
        ),
    }
