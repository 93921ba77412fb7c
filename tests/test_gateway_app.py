"""Integration tests of the gateway: real HTTP through the aiohttp app to in-process gRPC
servers implementing fake QueryService and IngestService that record what arrives."""

from __future__ import annotations

import gzip
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import grpc
import orjson
import pytest
import structlog
from aiohttp.test_utils import TestClient, TestServer
from fake_upstream import fake_upstream
from google.protobuf import any_pb2
from google.rpc import status_pb2
from grpc_health.v1 import health, health_pb2
from status_table import README_ERROR_STATUSES

from gateway import bound_port, create_app, serve_gateway
from gateway.app import pipe_query_path
from gateway.deployment import QUERY_READINESS
from pipit.ingest.v1 import ingest_service_pb2 as ingest_pb2
from pipit.ingest.v1 import ingest_service_pb2_grpc as ingest_grpc
from pipit.query.v1 import pipe_pb2
from pipit.query.v1 import query_service_pb2 as query_pb2
from pipit.query.v1 import query_service_pb2_grpc as query_grpc

QUERY = "pipit.query.v1.QueryService"
INGEST = "pipit.ingest.v1.IngestService"
MAX_BODY = 64 * 1024
EXPOSED = "x-request-id, retry-after, x-ratelimit-limit, x-ratelimit-remaining, x-ratelimit-reset"
ORIGIN = "https://app.example"


@dataclass
class Recorder:
    """What the fakes received, and how the next call should fail (if at all)."""

    calls: list[tuple[str, Any, dict[str, str]]] = field(default_factory=list)
    abort: tuple[grpc.StatusCode, str] | None = None
    trailing: tuple[tuple[str, str | bytes], ...] = ()

    async def record(self, name: str, request: Any, context: grpc.aio.ServicerContext) -> None:
        metadata = {k: v for k, v in context.invocation_metadata() if isinstance(v, str)}
        self.calls.append((name, request, metadata))
        if self.abort is not None:
            if self.trailing:
                context.set_trailing_metadata(self.trailing)
            await context.abort(*self.abort)

    @property
    def last(self) -> tuple[str, Any, dict[str, str]]:
        return self.calls[-1]


class FakeQuery(query_grpc.QueryServiceServicer):
    def __init__(self, recorder: Recorder) -> None:
        self.recorder = recorder

    async def GetPopularPages(self, request, context):
        await self.recorder.record("GetPopularPages", request, context)
        return query_pb2.GetPopularPagesResponse(
            meta=[pipe_pb2.ColumnMeta(name="page_url", type="String")],
            data=[query_pb2.GetPopularPagesRow(page_url="/home")],
            rows=1,
            statistics=pipe_pb2.Statistics(elapsed=0.25, rows_read=1000.0),
        )

    async def TestSummary(self, request, context):
        await self.recorder.record("TestSummary", request, context)
        return query_pb2.TestSummaryResponse()


class FakeIngest(ingest_grpc.IngestServiceServicer):
    def __init__(self, recorder: Recorder) -> None:
        self.recorder = recorder

    async def PostEvents(self, request, context):
        await self.recorder.record("PostEvents", request, context)
        if not request.wait:
            await context.send_initial_metadata((("x-http-status", "202"),))
        lines = [line for line in request.body.data.splitlines() if line.strip()]
        return ingest_pb2.PostEventsResponse(successful_rows=len(lines))

    async def AppendUserEvents(self, request, context):
        await self.recorder.record("AppendUserEvents", request, context)
        return ingest_pb2.AppendUserEventsResponse(successful_rows=len(request.events))


@dataclass
class Upstream:
    health: health.aio.HealthServicer
    target: str
    recorder: Recorder


@pytest.fixture(scope="module")
async def upstream() -> AsyncIterator[Upstream]:
    recorder = Recorder()
    async with fake_upstream(
        (query_grpc.add_QueryServiceServicer_to_server, FakeQuery(recorder)),
        (ingest_grpc.add_IngestServiceServicer_to_server, FakeIngest(recorder)),
        serving=(),  # `fresh` sets them, for each test
    ) as running:
        yield Upstream(running.health, running.target, recorder)


@pytest.fixture
async def fresh(upstream: Upstream) -> Upstream:
    """The module's upstream as no test left it: nothing recorded, answering, serving."""
    upstream.recorder.calls.clear()
    upstream.recorder.abort = None
    upstream.recorder.trailing = ()
    for name in ("", QUERY_READINESS):
        await upstream.health.set(name, health_pb2.HealthCheckResponse.SERVING)
    return upstream


@pytest.fixture
async def client(fresh: Upstream) -> AsyncIterator[TestClient]:
    upstream = fresh
    app = create_app(
        {QUERY: upstream.target, INGEST: upstream.target},
        max_body_bytes=MAX_BODY,
        allowed_origins=(ORIGIN,),
        timeout=5.0,
    )
    async with TestClient(TestServer(app)) as test_client:
        yield test_client


async def _json(response: aiohttp.ClientResponse) -> Any:
    return orjson.loads(await response.read())


# --- query parameters, metadata, JSON printing ---


async def test_query_parameters_become_request_fields(client: TestClient, upstream: Upstream):
    response = await client.get(
        "/v0/pipes/get_popular_pages.json"
        "?start_date=2023-06-01+00:00:00&end_date=2023-06-30%2023:59:59&limit=5"
        "&unknown=1&utm_source=x&token=secret-token"
    )
    assert response.status == 200
    name, request, metadata = upstream.recorder.last
    assert name == "GetPopularPages"
    assert request.start_date == "2023-06-01 00:00:00"
    assert request.end_date == "2023-06-30 23:59:59"
    assert request.HasField("limit") and request.limit == 5
    assert metadata["authorization"] == "Bearer secret-token"
    assert metadata["x-request-id"] == response.headers["x-request-id"]


@pytest.mark.parametrize(
    ("method", "path", "query", "rewritten"),
    [
        ("GET", "/v0/pipes/p.json", "q=select+1", True),
        ("GET", "/v0/pipes/p.json", "limit=1&%71=select+1", True),  # a name decodes to q
        ("GET", "/v0/pipes/p.json", "q=", False),  # an empty q is no query
        ("GET", "/v0/pipes/p.json", "q", False),
        ("GET", "/v0/pipes/p.json", "qq=select+1", False),
        ("POST", "/v0/pipes/p.json", "q=select+1", False),  # every POST reaches ReadPipe
        ("GET", "/v0/pipes/p.csv", "q=select+1", False),  # as does every other format
        ("GET", "/v0/pipes/a/p.json", "q=select+1", False),
        ("GET", "/v0/pipes/p.json:query", "q=select+1", False),
    ],
)
def test_a_pipes_json_with_q_goes_to_readpipe(
    method: str, path: str, query: str, rewritten: bool
) -> None:
    expected = path + ":query" if rewritten else path
    assert pipe_query_path(method, path, query) == expected


async def test_bad_int_is_400_naming_the_parameter(client: TestClient, upstream: Upstream):
    response = await client.get("/v0/pipes/get_popular_pages.json?limit=ten")
    assert response.status == 400
    body = await _json(response)
    assert body["code"] == grpc.StatusCode.INVALID_ARGUMENT.value[0]
    assert "limit" in body["message"] and body["details"] == []
    assert upstream.recorder.calls == []


async def test_authorization_header_is_forwarded_and_wins(client: TestClient, upstream: Upstream):
    response = await client.get(
        "/v0/pipes/test_summary.json?token=from-query",
        headers={"Authorization": "Bearer from-header", "x-request-id": "req-123"},
    )
    assert response.status == 200
    _, _, metadata = upstream.recorder.last
    assert metadata["authorization"] == "Bearer from-header"
    assert metadata["x-request-id"] == "req-123"
    assert response.headers["x-request-id"] == "req-123"


async def test_json_uses_proto_names_and_prints_defaults(client: TestClient):
    response = await client.get("/v0/pipes/get_popular_pages.json")
    assert response.status == 200
    assert response.headers["Content-Type"] == "application/json"
    assert await response.read() == orjson.dumps(
        {
            "meta": [{"name": "page_url", "type": "String"}],
            "data": [{"page_url": "/home", "page_title": "", "view_count": 0}],
            "rows": 1,
            "statistics": {"elapsed": 0.25, "rows_read": 1000, "bytes_read": 0},
        }
    )
    empty = await client.get("/v0/pipes/test_summary.json")
    assert await _json(empty) == {"meta": [], "data": [], "rows": 0}


# --- bodies ---


async def test_events_api_body_arrives_raw(client: TestClient, upstream: Upstream):
    ndjson = b'{"event_id": "1"}\n{"event_id": "2"}\n'
    response = await client.post(
        "/v0/events?name=user_events&wait=true&token=t",
        data=ndjson,
        headers={"Content-Type": "application/x-ndjson"},
    )
    assert response.status == 200
    assert await _json(response) == {"successful_rows": 2, "quarantined_rows": 0}
    _, request, metadata = upstream.recorder.last
    assert (request.name, request.wait) == ("user_events", True)
    assert request.body.data == ndjson
    assert request.body.content_type == "application/x-ndjson"
    assert metadata["authorization"] == "Bearer t"


async def test_x_http_status_metadata_sets_status(client: TestClient):
    response = await client.post("/v0/events?name=user_events", data=b'{"event_id": "1"}')
    assert response.status == 202
    assert "x-http-status" not in response.headers
    assert await _json(response) == {"successful_rows": 1, "quarantined_rows": 0}


async def test_gzip_body_is_decompressed(client: TestClient, upstream: Upstream):
    ndjson = b'{"event_id": "1"}\n' * 100
    response = await client.post(
        "/v0/events?name=user_events&wait=1",
        data=gzip.compress(ndjson),
        headers={"Content-Encoding": "gzip", "Content-Type": "application/x-ndjson"},
    )
    assert response.status == 200
    assert upstream.recorder.last[1].body.data == ndjson


@pytest.mark.parametrize(
    ("payload", "headers"),
    [
        (b"x" * (MAX_BODY + 1), {}),
        # A gzip bomb (mtime=0: the header's clock would make the test id differ by worker).
        (gzip.compress(b"\n" * (MAX_BODY * 64), mtime=0), {"Content-Encoding": "gzip"}),
    ],
)
async def test_oversized_body_is_413(
    client: TestClient, upstream: Upstream, payload: bytes, headers: dict[str, str]
):
    response = await client.post("/v0/events?name=user_events", data=payload, headers=headers)
    assert response.status == 413
    body = await _json(response)
    assert body["code"] == grpc.StatusCode.RESOURCE_EXHAUSTED.value[0]
    assert str(MAX_BODY) in body["message"]
    assert upstream.recorder.calls == []


async def test_every_gzip_member_arrives(client: TestClient, upstream: Upstream):
    # `cat a.gz b.gz` (RFC 1952); zlib on its own stops after the first member.
    first, second = b'{"event_id": "1"}\n', b'{"event_id": "2"}\n{"event_id": "3"}\n'
    response = await client.post(
        "/v0/events?name=user_events&wait=1",
        data=gzip.compress(first) + gzip.compress(b"") + gzip.compress(second),
        headers={"Content-Encoding": "gzip"},
    )
    assert response.status == 200
    assert await _json(response) == {"successful_rows": 3, "quarantined_rows": 0}
    assert upstream.recorder.last[1].body.data == first + second


@pytest.mark.parametrize(
    ("payload", "says"),
    [
        (gzip.compress(b"{}", mtime=0) + b"trailing garbage", "are not another member"),
        (gzip.compress(b"{}", mtime=0) + b"\0" * 16, "are not another member"),
        (gzip.compress(b"{}", mtime=0)[:-2], "truncated"),
        (b"not gzip at all", "incorrect header check"),
    ],
    ids=["trailing garbage", "zero padding", "truncated", "not gzip"],
)
async def test_a_body_that_is_not_the_gzip_it_claims_is_400(
    client: TestClient, upstream: Upstream, payload: bytes, says: str
):
    response = await client.post(
        "/v0/events?name=user_events", data=payload, headers={"Content-Encoding": "gzip"}
    )
    assert response.status == 400
    body = await _json(response)
    assert body["code"] == grpc.StatusCode.INVALID_ARGUMENT.value[0]
    assert body["message"].startswith("request body is not valid gzip: ")
    assert says in body["message"]
    assert upstream.recorder.calls == []


async def test_a_gzip_body_over_the_limit_as_sent_is_413(client: TestClient, upstream: Upstream):
    # Empty members inflate to nothing: only the compressed size can stop them.
    empties = gzip.compress(b"") * (MAX_BODY // len(gzip.compress(b"")) + 1)
    for chunked in (False, True):

        async def chunks() -> AsyncIterator[bytes]:
            yield empties

        response = await client.post(
            "/v0/events?name=user_events",
            data=chunks() if chunked else empties,
            headers={"Content-Encoding": "gzip"},
        )
        assert response.status == 413, chunked
        assert (await _json(response))["message"] == (
            f"request body exceeds the limit of {MAX_BODY} bytes"
        )
    assert upstream.recorder.calls == []


async def test_chunked_oversized_body_is_413(client: TestClient, upstream: Upstream):
    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(MAX_BODY // 1024 + 2):
            yield b"y" * 1024

    response = await client.post("/v0/events?name=user_events", data=chunks())
    assert response.status == 413
    assert upstream.recorder.calls == []


async def test_unsupported_content_encoding_is_415(client: TestClient):
    response = await client.post(
        "/v0/events?name=x", data=b"abc", headers={"Content-Encoding": "compress"}
    )
    assert response.status == 415


async def test_body_star_json(client: TestClient, upstream: Upstream):
    response = await client.post(
        "/v1/datasources/user_events/events?wait=true",
        data=orjson.dumps({"events": [{"event_id": "e1", "timestamp": "2024-01-01T00:00:00Z"}]}),
    )
    assert response.status == 200
    assert await _json(response) == {"successful_rows": 1, "quarantined_rows": 0}
    _, request, _ = upstream.recorder.last
    assert request.wait and request.events[0].event_id == "e1"
    assert request.events[0].timestamp.seconds == 1704067200

    bad = await client.post("/v1/datasources/user_events/events", data=b"{oops")
    assert bad.status == 400
    assert (await _json(bad))["code"] == grpc.StatusCode.INVALID_ARGUMENT.value[0]


async def test_large_json_body_is_transcoded_off_the_loop(fresh: Upstream):
    upstream = fresh
    # Over the offload threshold (256 KiB): build_request runs in a worker thread.
    events = [{"event_id": f"e{i}", "properties": "p" * 100} for i in range(3000)]
    app = create_app({INGEST: upstream.target}, timeout=5.0)
    async with TestClient(TestServer(app)) as client:
        response = await client.post(
            "/v1/datasources/user_events/events", data=orjson.dumps({"events": events})
        )
        assert response.status == 200
        assert await _json(response) == {"successful_rows": 3000, "quarantined_rows": 0}


# --- errors ---


@pytest.mark.parametrize("code", [c for c in grpc.StatusCode if c is not grpc.StatusCode.OK])
async def test_grpc_codes_map_to_http_statuses(
    client: TestClient, upstream: Upstream, code: grpc.StatusCode
):
    upstream.recorder.abort = (code, f"failed with {code.name}: field 'limit'")
    response = await client.get("/v0/pipes/test_summary.json")
    assert response.status == README_ERROR_STATUSES[code.name]
    assert response.headers["Content-Type"] == "application/json"
    message = f"failed with {code.name}: field 'limit'"
    assert await _json(response) == {
        "error": message,
        "code": code.value[0],
        "message": message,
        "details": [],
    }


@pytest.mark.parametrize(
    ("code", "wanted", "status"),
    [
        (grpc.StatusCode.RESOURCE_EXHAUSTED, "413", 413),  # a body the service found too large
        (grpc.StatusCode.RESOURCE_EXHAUSTED, "400", 429),  # not a status of that code
        (grpc.StatusCode.INVALID_ARGUMENT, "413", 400),
        (grpc.StatusCode.RESOURCE_EXHAUSTED, "202", 429),  # a success status is no error's
    ],
)
async def test_x_http_status_narrows_an_error_only_to_a_status_of_its_code(
    client: TestClient, upstream: Upstream, code: grpc.StatusCode, wanted: str, status: int
):
    upstream.recorder.abort = (code, "refused")
    upstream.recorder.trailing = (("x-http-status", wanted),)
    response = await client.post("/v0/events?name=user_events", data=b"{}")
    assert response.status == status
    assert "x-http-status" not in response.headers
    assert (await _json(response))["code"] == code.value[0]


async def test_error_metadata_such_as_retry_after_is_forwarded(
    client: TestClient, upstream: Upstream
):
    upstream.recorder.abort = (grpc.StatusCode.RESOURCE_EXHAUSTED, "ingest buffer full")
    upstream.recorder.trailing = (("retry-after", "2"),)
    response = await client.post("/v0/events?name=user_events", data=b"{}")
    assert response.status == 429
    assert response.headers["Retry-After"] == "2"


async def test_rich_status_details_are_printed(client: TestClient, upstream: Upstream):
    detail = any_pb2.Any()
    detail.Pack(pipe_pb2.ColumnMeta(name="limit", type="Int32"))
    rich = status_pb2.Status(code=3, message="limit out of range", details=[detail])
    upstream.recorder.abort = (grpc.StatusCode.INVALID_ARGUMENT, "limit out of range")
    upstream.recorder.trailing = (("grpc-status-details-bin", rich.SerializeToString()),)
    response = await client.get("/v0/pipes/test_summary.json")
    assert response.status == 400
    assert await _json(response) == {
        "error": "limit out of range",
        "code": 3,
        "message": "limit out of range",
        "details": [
            {
                "@type": "type.googleapis.com/pipit.query.v1.ColumnMeta",
                "name": "limit",
                "type": "Int32",
            }
        ],
    }


async def test_unsafe_request_id_is_replaced(client: TestClient, upstream: Upstream):
    response = await client.get(
        "/v0/pipes/test_summary.json", headers={"x-request-id": "bad id; " + "x" * 200}
    )
    assert response.status == 200
    assert response.headers["x-request-id"] == upstream.recorder.last[2]["x-request-id"]
    assert response.headers["x-request-id"].isalnum()


async def test_unimplemented_method_is_501(client: TestClient):
    response = await client.get("/v0/pipes/get_session_events.json?session_id=s")
    assert response.status == 501
    assert (await _json(response))["code"] == grpc.StatusCode.UNIMPLEMENTED.value[0]


async def test_unknown_path_is_404(client: TestClient, upstream: Upstream):
    for method, path in [("GET", "/v0/nope"), ("POST", "/v0/event"), ("DELETE", "/healthz")]:
        response = await client.request(method, path)
        assert response.status == 404, (method, path)
        body = await _json(response)
        assert body["code"] == grpc.StatusCode.NOT_FOUND.value[0]
        assert body["error"] == body["message"] == f"Could not resolve {path} to a method."
        assert "Allow" not in response.headers
    assert upstream.recorder.calls == []


@pytest.mark.parametrize(
    ("method", "path", "allow"),
    [
        ("GET", "/v0/events", "POST"),
        ("PUT", "/v0/events?name=ab_test_events", "POST"),
        # The typed GET and PipeService's GET and POST of /v0/pipes/{file}.
        ("DELETE", "/v0/pipes/test_summary.json", "GET, POST"),
        ("HEAD", "/v0/pipes/test_summary.json", "GET, POST"),
        ("OPTIONS", "/v0/pipes/test_summary.json", "GET, POST"),  # not a preflight
        ("GET", "/v1/datasources/ab_test_events/events/", "POST"),
    ],
)
async def test_a_known_path_with_another_method_is_405(
    client: TestClient, upstream: Upstream, method: str, path: str, allow: str
):
    # Tinybird's "405 HTTP Method not allowed", with the Allow RFC 9110 asks of a 405.
    response = await client.request(method, path, headers={"Authorization": "Bearer t"})
    assert response.status == 405
    assert response.headers["Allow"] == allow
    if method != "HEAD":
        raw_path = path.partition("?")[0]
        message = f"method {method} is not allowed on {raw_path}; it takes {allow}"
        assert await _json(response) == {
            "error": message,
            "code": grpc.StatusCode.UNIMPLEMENTED.value[0],
            "message": message,
            "details": [],
        }
    assert upstream.recorder.calls == []


async def test_unreachable_upstream_is_503(fresh: Upstream):
    upstream = fresh
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        dead = f"127.0.0.1:{sock.getsockname()[1]}"
    app = create_app({QUERY: dead, INGEST: upstream.target}, timeout=5.0)
    async with TestClient(TestServer(app)) as client:
        response = await client.get("/v0/pipes/test_summary.json")
        assert response.status == 503
        assert (await _json(response))["code"] == grpc.StatusCode.UNAVAILABLE.value[0]
        health_response = await client.get("/healthz")
        assert health_response.status == 503


# --- CORS, health, logging, serving ---


async def test_cors_preflight_and_simple_requests(client: TestClient):
    preflight = await client.options(
        "/v0/events",
        headers={
            "Origin": ORIGIN,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization, content-type",
        },
    )
    assert preflight.status == 200
    assert preflight.headers["Access-Control-Allow-Origin"] == ORIGIN
    assert preflight.headers["Access-Control-Allow-Methods"] == "DELETE, GET, POST, PUT, OPTIONS"
    allowed_headers = preflight.headers["Access-Control-Allow-Headers"]
    for name in ("authorization", "content-type", "content-encoding", "x-request-id"):
        assert name in allowed_headers
    assert int(preflight.headers["Access-Control-Max-Age"]) > 0
    assert preflight.headers.getall("Vary") == ["Origin"]

    simple = await client.get("/v0/pipes/test_summary.json", headers={"Origin": ORIGIN})
    assert simple.headers["Access-Control-Allow-Origin"] == ORIGIN
    assert simple.headers["Access-Control-Expose-Headers"] == EXPOSED
    assert preflight.headers["Access-Control-Expose-Headers"] == EXPOSED
    assert "Origin" in simple.headers["Vary"]

    foreign = await client.get(
        "/v0/pipes/test_summary.json", headers={"Origin": "https://evil.example"}
    )
    assert "Access-Control-Allow-Origin" not in foreign.headers
    foreign_preflight = await client.options(
        "/v0/events",
        headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"},
    )
    # Passed on, as Envoy does: an OPTIONS the path has no route for.
    assert foreign_preflight.status == 405


async def test_a_browser_may_read_every_header_a_rate_limited_answer_carries(
    client: TestClient, upstream: Upstream
):
    upstream.recorder.abort = (grpc.StatusCode.RESOURCE_EXHAUSTED, "rate limit reached")
    upstream.recorder.trailing = (
        ("retry-after", "7"),
        ("x-ratelimit-limit", "5"),
        ("x-ratelimit-remaining", "0"),
        ("x-ratelimit-reset", "7"),
    )
    response = await client.get("/v0/pipes/test_summary.json", headers={"Origin": ORIGIN})
    assert response.status == 429
    exposed = {h.strip() for h in response.headers["Access-Control-Expose-Headers"].split(",")}
    sent = {name for name, _ in upstream.recorder.trailing} | {"x-request-id"}
    assert sent <= {name.lower() for name in response.headers} and sent <= exposed


async def test_healthz(client: TestClient, upstream: Upstream):
    response = await client.get("/healthz")
    assert response.status == 200
    assert await _json(response) == {"status": "SERVING"}
    # The query service's readiness counts, not the whole server's liveness.
    await upstream.health.set("", health_pb2.HealthCheckResponse.NOT_SERVING)
    response = await client.get("/healthz")
    assert response.status == 200
    await upstream.health.set(QUERY_READINESS, health_pb2.HealthCheckResponse.NOT_SERVING)
    response = await client.get("/healthz")
    assert response.status == 503
    assert await _json(response) == {"status": "NOT_SERVING"}


async def test_one_log_line_per_request(client: TestClient):
    with structlog.testing.capture_logs() as logs:
        response = await client.get("/v0/pipes/test_summary.json?token=do-not-log")
        await client.get("/v0/nope")
    lines = [entry for entry in logs if entry["event"] == "http_request"]
    assert len(lines) == 2
    first = lines[0]
    assert first["request_id"] == response.headers["x-request-id"]
    assert (first["method"], first["path"], first["status"]) == (
        "GET",
        "/v0/pipes/test_summary.json",
        200,
    )
    assert first["grpc_method"] == f"/{QUERY}/TestSummary"
    assert first["duration_ms"] >= 0
    assert "do-not-log" not in repr(logs)
    assert (lines[1]["status"], lines[1]["grpc_method"]) == (404, None)


async def test_serve_gateway_on_a_real_port(fresh: Upstream):
    upstream = fresh
    app = create_app({QUERY: upstream.target}, timeout=5.0)
    runner = await serve_gateway(app, "127.0.0.1", 0)
    base = f"http://127.0.0.1:{bound_port(runner)}"
    try:
        async with aiohttp.ClientSession() as session:
            async with session.get(f"{base}/v0/pipes/test_summary.json") as response:
                assert response.status == 200
            async with session.post(f"{base}/v0/events", data=b"{}") as response:
                assert response.status == 404  # IngestService not served by this gateway
    finally:
        await runner.cleanup()
