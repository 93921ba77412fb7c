"""The one error mapping, proven on both gateways: a scripted upstream answers each gRPC status
(and metadata, rich statuses, health) on demand, and our gateway and the real Envoy must turn
each into the same HTTP status, JSON body (Tinybird's `error` included, whatever the message
holds) and headers. Then both in front of an upstream that is not there."""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import grpc
import pytest
from fake_upstream import fake_upstream
from gateway_pair import GatewayPair, assert_same, start_pair
from google.protobuf import any_pb2, timestamp_pb2
from google.rpc import status_pb2
from grpc_health.v1 import health, health_pb2
from harness import free_port
from status_table import README_ERROR_STATUSES

from gateway.app import default_descriptor_set
from gateway.deployment import QUERY_READINESS
from gateway.envoy import EnvoyConfig, http_services, start_envoy
from gateway.errors import http_status
from pipit.ingest.v1 import ingest_service_pb2
from pipit.query.v1 import pipe_pb2
from pipit.query.v1 import query_service_pb2 as query_pb2
from pipit.query.v1 import query_service_pb2_grpc as query_grpc

pytestmark = pytest.mark.envoy

INGEST = ingest_service_pb2.DESCRIPTOR.services_by_name["IngestService"]
QUERY = query_pb2.DESCRIPTOR.services_by_name["QueryService"]
MESSAGE = 'it went wrong: <"quoted"> & é'
# Messages the Lua filter that adds `error` to Envoy's bodies must copy exactly: it reads the
# printed JSON string up to its closing quote.
MESSAGES = [
    "",
    '"',
    "\\",
    'a quote " and a backslash \\ and both \\" in a row\\\\"',
    "ends in a backslash \\",
    "new\nline, tab\t, return\r, form feed\f, bell\a, NUL\x00, DEL\x7f",
    "non-ASCII: é ü ß 日本語 🙂, and line separators \u2028\u2029",
    "</script> & <b>\"quoted\"</b> 'single'",
    '{"code":1,"message":"a body inside a body"}',
    "%s %d %q %% $1 \\1",
]


class Held:
    """A request the upstream holds: `arrived` once it is in, answered once `released`."""

    def __init__(self) -> None:
        self.arrived = asyncio.Event()
        self.released = asyncio.Event()


# test_id "held" waits on this (the test that sends it makes a fresh one first).
HELD = [Held()]


class ScriptedQuery(query_grpc.QueryServiceServicer):
    """TestSummary does what its `test_id` says."""

    async def TestSummary(self, request, context):
        verb, _, argument = request.test_id.partition(":")
        if verb == "message":
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, MESSAGES[int(argument)])
        if verb == "bare":  # no metadata at all
            await context.abort(grpc.StatusCode[argument], MESSAGE)
        if verb == "code":
            if argument == "RESOURCE_EXHAUSTED":
                context.set_trailing_metadata((("retry-after", "1"),))
            await context.abort(grpc.StatusCode[argument], MESSAGE)
        if verb == "rich":
            detail = any_pb2.Any()
            if argument == "known":
                detail.Pack(pipe_pb2.ColumnMeta(name="limit", type="Int32"))
            else:  # a type the descriptor set does not hold
                detail.Pack(timestamp_pb2.Timestamp(seconds=1))
                detail.type_url = "type.googleapis.com/google.rpc.ErrorInfo"
            rich = status_pb2.Status(code=3, message=MESSAGE, details=[detail])
            context.set_trailing_metadata((("grpc-status-details-bin", rich.SerializeToString()),))
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, MESSAGE)
        if verb == "status":
            await context.send_initial_metadata((("x-http-status", argument), ("x-custom", "1")))
            if argument == "error":
                await context.abort(grpc.StatusCode.NOT_FOUND, MESSAGE)
        if verb == "error-status":  # an error with x-http-status: "<code>=<status>"
            code, _, status = argument.partition("=")
            context.set_trailing_metadata((("x-http-status", status),))
            await context.abort(grpc.StatusCode[code], MESSAGE)
        if verb == "trailer":
            context.set_trailing_metadata((("x-trailer", "1"),))
        if verb == "slow":
            await asyncio.sleep(float(argument))
        if verb == "held":
            held = HELD[0]
            held.arrived.set()
            await held.released.wait()
        return query_pb2.TestSummaryResponse(
            meta=[pipe_pb2.ColumnMeta(name="test_id", type="String")],
            data=[query_pb2.TestSummaryRow(test_id="t", users=3, conversion_rate=0.5)],
            rows=1,
            statistics=pipe_pb2.Statistics(elapsed=0.25, rows_read=10.0, bytes_read=3.0),
        )


@pytest.fixture(scope="module")
async def upstream() -> AsyncIterator[tuple[str, health.aio.HealthServicer]]:
    async with fake_upstream(
        (query_grpc.add_QueryServiceServicer_to_server, ScriptedQuery()),
        serving=("", QUERY_READINESS),
    ) as running:
        yield running.target, running.health


def _everything_at(target: str) -> dict[str, str]:
    return {name: target for name in http_services(default_descriptor_set())}


@pytest.fixture(scope="module")
async def pair(upstream, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[GatewayPair]:
    target, _ = upstream
    running = await start_pair(
        _everything_at(target), tmp_path_factory.mktemp("envoy-errors"), max_body_bytes=1 << 20
    )
    yield running
    await running.stop()


@pytest.fixture(scope="module")
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


def _summary(test_id: str) -> str:
    return f"/v0/pipes/test_summary.json?test_id={test_id}"


def test_the_readme_table_is_what_the_gateway_implements() -> None:
    assert {code.name: http_status(code) for code in grpc.StatusCode if code.value[0]} == (
        README_ERROR_STATUSES
    )


@pytest.mark.parametrize("code", list(README_ERROR_STATUSES))
async def test_each_grpc_status(pair: GatewayPair, http: aiohttp.ClientSession, code: str) -> None:
    ours, envoy = await pair.send(http, "GET", _summary(f"code:{code}"))
    assert ours.status == README_ERROR_STATUSES[code]
    assert ours.json == {
        "error": MESSAGE,
        "code": grpc.StatusCode[code].value[0],
        "message": MESSAGE,
        "details": [],
    }
    assert ours.headers.get("retry-after") == ("1" if code == "RESOURCE_EXHAUSTED" else None)
    assert_same(ours, envoy)


async def test_a_429_always_says_when_to_come_back(
    pair: GatewayPair, http: aiohttp.ClientSession
) -> None:
    # The services send their own Retry-After; one that does not gets a second.
    ours, envoy = await pair.send(http, "GET", _summary("bare:RESOURCE_EXHAUSTED"))
    assert (ours.status, ours.headers["retry-after"]) == (429, "1")
    assert_same(ours, envoy)


@pytest.mark.parametrize("index", range(len(MESSAGES)))
async def test_the_error_key_holds_any_message(
    pair: GatewayPair, http: aiohttp.ClientSession, index: int
) -> None:
    ours, envoy = await pair.send(http, "GET", _summary(f"message:{index}"))
    assert (ours.status, ours.json) == (
        400,
        {"error": MESSAGES[index], "code": 3, "message": MESSAGES[index], "details": []},
    )
    assert_same(ours, envoy)
    # Envoy's body is its transcoder's, with the message copied in front as printed.
    assert envoy.body.startswith(b'{"error":')


@pytest.mark.parametrize("value", ["201", "202", "204", "302", "404", "abc", "error"])
async def test_x_http_status(pair: GatewayPair, http: aiohttp.ClientSession, value: str) -> None:
    # Only a 2xx replaces the 200 of a success; the header itself never reaches the client,
    # other metadata does.
    ours, envoy = await pair.send(http, "GET", _summary(f"status:{value}"))
    assert_same(ours, envoy)
    assert ours.headers["x-custom"] == envoy.headers["x-custom"] == "1"
    assert "x-http-status" not in envoy.headers


@pytest.mark.parametrize(
    ("given", "status"),
    [
        ("RESOURCE_EXHAUSTED=413", 413),  # a body too large: the one narrowing there is
        ("RESOURCE_EXHAUSTED=400", 429),
        ("RESOURCE_EXHAUSTED=202", 429),
        ("INVALID_ARGUMENT=413", 400),
        ("NOT_FOUND=200", 404),
    ],
)
async def test_x_http_status_on_an_error(
    pair: GatewayPair, http: aiohttp.ClientSession, given: str, status: int
) -> None:
    ours, envoy = await pair.send(http, "GET", _summary(f"error-status:{given}"))
    assert ours.status == status
    assert ours.json["message"] == MESSAGE
    assert "x-http-status" not in envoy.headers
    assert_same(ours, envoy)


async def test_a_success_answer(pair: GatewayPair, http: aiohttp.ClientSession) -> None:
    ours, envoy = await pair.send(http, "GET", _summary("ok"))
    assert ours.status == 200
    assert_same(ours, envoy)
    # Statistics are compared whole here: the upstream's numbers, printed alike.
    assert ours.json == envoy.json
    assert ours.json["data"][0] == {
        "test_id": "t",
        "variant": "",
        "users": 3,
        "conversions": 0,
        "conversion_rate": 0.5,
        "total_revenue": 0,
        "revenue_per_user": 0,
    }


async def test_trailing_metadata_of_a_success(
    pair: GatewayPair, http: aiohttp.ClientSession
) -> None:
    ours, envoy = await pair.send(http, "GET", _summary("trailer"))
    assert_same(ours, envoy)
    assert ours.headers.get("x-trailer") == envoy.headers.get("x-trailer")


async def test_a_rich_status(pair: GatewayPair, http: aiohttp.ClientSession) -> None:
    ours, envoy = await pair.send(http, "GET", _summary("rich:known"))
    assert_same(ours, envoy)
    assert ours.json["details"] == [
        {"@type": "type.googleapis.com/pipit.query.v1.ColumnMeta", "name": "limit", "type": "Int32"}
    ]
    assert ours.json["error"] == ours.json["message"] == MESSAGE


async def test_a_rich_status_with_a_detail_type_outside_the_descriptor_set(
    pair: GatewayPair, http: aiohttp.ClientSession
) -> None:
    # Ours drops the details it cannot print; Envoy cannot print the status at all and sends the
    # gRPC framing on with an empty body. Pipit's services send no rich statuses.
    ours, envoy = await pair.send(http, "GET", _summary("rich:unknown"))
    assert (ours.status, ours.json) == (
        400,
        {"error": MESSAGE, "code": 3, "message": MESSAGE, "details": []},
    )
    assert (envoy.status, envoy.body) == (400, b"")
    assert envoy.headers["content-type"] == "application/grpc"


async def test_healthz_follows_the_query_services_readiness(
    pair: GatewayPair, http: aiohttp.ClientSession, upstream
) -> None:
    # Ours asks on every request; Envoy answers from its last health check (every 0.2 s here).
    _, health_servicer = upstream
    for status, code in (
        (health_pb2.HealthCheckResponse.NOT_SERVING, 503),
        (health_pb2.HealthCheckResponse.SERVING, 200),
    ):
        await health_servicer.set(QUERY_READINESS, status)
        for _ in range(100):
            ours, envoy = await pair.send(http, "GET", "/healthz")
            if ours.status == envoy.status == code:
                break
            await asyncio.sleep(0.05)
        assert ours.status == code
        assert_same(ours, envoy)


async def test_a_gateway_stays_ready_while_ingest_is_away(
    http: aiohttp.ClientSession, upstream, tmp_path: Path
) -> None:
    # Ingest's services at an address nothing listens on: queries are still answered, so
    # both gateways stay ready (only the query upstream's readiness counts).
    target, _ = upstream
    away = f"127.0.0.1:{free_port()}"
    # Every other service follows these two by its role (gateway/deployment.py).
    upstreams = {INGEST.full_name: away, QUERY.full_name: target}
    running = await start_pair(upstreams, tmp_path, max_body_bytes=1 << 20)
    try:
        for _ in range(100):
            ours, envoy = await running.send(http, "GET", "/healthz")
            if ours.status == envoy.status == 200:
                break
            await asyncio.sleep(0.05)
        assert ours.status == 200
        assert_same(ours, envoy)
        ours, envoy = await running.send(http, "GET", _summary("x"))
        assert ours.status == envoy.status == 200
        ours, envoy = await running.send(http, "POST", "/v0/events?name=ab_test_events")
        assert (ours.status, envoy.status) == (503, 503)
    finally:
        await running.stop()


async def test_an_upstream_that_is_not_there(http: aiohttp.ClientSession, tmp_path: Path) -> None:
    # Both 503 UNAVAILABLE; each says in its own words that it could not connect.
    running = await start_pair(
        _everything_at(f"127.0.0.1:{free_port()}"), tmp_path, max_body_bytes=1 << 20
    )
    try:
        ours, envoy = await running.send(http, "GET", "/healthz")
        assert ours.status == 503
        assert_same(ours, envoy)
        ours, envoy = await running.send(http, "GET", _summary("x"))
        assert (ours.status, ours.json["code"]) == (envoy.status, envoy.json["code"]) == (503, 14)
        assert ours.json["message"].startswith("failed to connect to all addresses")
        assert envoy.json["message"].startswith(
            "upstream connect error or disconnect/reset before headers"
        )
    finally:
        await running.stop()


async def test_envoy_stops_as_our_gateway_does(upstream, tmp_path: Path) -> None:
    # No new connections, the request in flight answered, then the process gone.
    target, _ = upstream
    envoy = await start_envoy(
        EnvoyConfig(_everything_at(target)), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    held = HELD[0] = Held()
    async with aiohttp.ClientSession() as http:
        in_flight = asyncio.create_task(http.get(envoy.url + _summary("held")))
        await asyncio.wait_for(held.arrived.wait(), 10)
        stopping = asyncio.create_task(envoy.stop(grace=10))
        # Readiness wait, reversed: until a new connection is refused (the listener drained).
        deadline = asyncio.get_running_loop().time() + 10
        while True:
            try:
                async with aiohttp.ClientSession() as fresh, fresh.get(envoy.url + "/healthz"):
                    pass
            except aiohttp.ClientConnectionError:
                break
            assert asyncio.get_running_loop().time() < deadline, "Envoy kept taking connections"
            await asyncio.sleep(0.02)
        assert not in_flight.done()
        held.released.set()
        response = await in_flight
        assert response.status == 200
        assert await stopping == 0
    assert envoy.process.returncode is not None
    assert not envoy.workdir.exists()
