"""The ingest service over gRPC: typed appends, the stream, the Events API, bad input
(each with its status, and the valid rows of the same request kept), auth and a
shutdown that flushes."""

from __future__ import annotations

import gzip

import grpc
import orjson
import pytest
from google.api import httpbody_pb2
from google.protobuf.timestamp_pb2 import Timestamp
from harness import AUTH, start_suite
from samples import ab_test_event

from pipit.datasources.v1 import ab_test_events_pb2
from pipit.ingest.v1 import ingest_service_pb2 as pb

pytestmark = pytest.mark.e2e

SAMPLE = ab_test_event()


def sample(**changes: object) -> dict:
    event = dict(SAMPLE)
    event.update(changes)
    return {k: v for k, v in event.items() if v is not ...}


@pytest.fixture
async def suite(embedded_warehouse):
    running = await start_suite(embedded_warehouse, gateway=False)
    yield running
    await running.stop()


async def count(warehouse, table: str) -> int:
    result = await warehouse.query(f"SELECT count() AS c FROM {table}", {})  # noqa: S608
    return int(result.data[0]["c"])


async def quarantine_errors(warehouse, table: str) -> list[str]:
    result = await warehouse.query(
        f"SELECT error FROM {table}_quarantine ORDER BY error",  # noqa: S608
        {},
    )
    return [row["error"] for row in result.data]


def post(name: str, body: bytes, wait: bool = True) -> pb.PostEventsRequest:
    return pb.PostEventsRequest(
        name=name, wait=wait, body=httpbody_pb2.HttpBody(content_type="application/json", data=body)
    )


async def test_events_api_takes_the_tutorials_pretty_printed_event(suite):
    body = orjson.dumps(SAMPLE, option=orjson.OPT_INDENT_2)
    response = await suite.ingest_stub().PostEvents(post("ab_test_events", body), metadata=AUTH)
    assert (response.successful_rows, response.quarantined_rows) == (1, 0)
    result = await suite.warehouse.query(
        "SELECT toString(timestamp) AS ts, revenue, conversion FROM ab_test_events", {}
    )
    assert result.data == [{"ts": "2023-06-15 14:30:00", "revenue": 29.99, "conversion": 1}]


async def test_ndjson_keeps_valid_rows_and_quarantines_each_bad_one_with_its_reason(suite):
    lines = [
        sample(),
        sample(user_id=...),  # missing field
        sample(revenue="lots"),  # wrong type
        sample(conversion=300),  # out of range for UInt8
        sample(timestamp="yesterday-ish"),  # unparseable timestamp
        sample(timestamp="2023-06-15T14:30:00Z", user_id="rfc3339"),
        sample(timestamp=1686839400, user_id="epoch"),
    ]
    body = b"\n".join(orjson.dumps(line) for line in lines) + b"\n{not json\n"
    response = await suite.ingest_stub().PostEvents(post("ab_test_events", body), metadata=AUTH)
    assert (response.successful_rows, response.quarantined_rows) == (3, 5)
    assert await count(suite.warehouse, "ab_test_events") == 3
    errors = await quarantine_errors(suite.warehouse, "ab_test_events")
    assert len(errors) == 5
    joined = "\n".join(errors)
    for expected in (
        "missing required field 'user_id'",
        "field 'revenue': expected a number",
        "field 'conversion': 300 is out of range for UInt8",
        "field 'timestamp'",
        "line 8: not valid JSON",
    ):
        assert expected in joined
    same_instant = await suite.warehouse.query(
        "SELECT uniqExact(timestamp) AS n FROM ab_test_events", {}
    )
    assert same_instant.data[0]["n"] == 1  # all three timestamp formats mean 14:30:00 UTC


@pytest.mark.parametrize(
    ("name", "body", "code", "message"),
    [
        ("ab_test_events", b"", grpc.StatusCode.INVALID_ARGUMENT, "empty body"),
        ("ab_test_events", b"  \n ", grpc.StatusCode.INVALID_ARGUMENT, "empty body"),
        ("ab_test_events", b"hello, world", grpc.StatusCode.INVALID_ARGUMENT, "not JSON"),
        ("no_such_source", b"{}", grpc.StatusCode.NOT_FOUND, "'no_such_source' does not exist"),
        ("", b"{}", grpc.StatusCode.INVALID_ARGUMENT, "'name' is required"),
    ],
)
async def test_unusable_requests_are_refused_and_store_nothing(suite, name, body, code, message):
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await suite.ingest_stub().PostEvents(post(name, body), metadata=AUTH)
    assert caught.value.code() == code
    assert message in caught.value.details()
    assert await count(suite.warehouse, "ab_test_events") == 0
    assert await count(suite.warehouse, "ab_test_events_quarantine") == 0


async def test_body_over_the_limit_is_refused(embedded_warehouse):
    suite = await start_suite(embedded_warehouse, gateway=False, max_body_bytes=1000)
    try:
        stub = suite.ingest_stub()
        big = b"\n".join(orjson.dumps(sample()) for _ in range(10))
        # A small gzip body that inflates past the limit is refused the same way, and so is
        # one of empty members that inflates to nothing but is too large as sent.
        bomb = gzip.compress(b"\n".join(orjson.dumps(sample()) for _ in range(50)))
        assert len(bomb) < 1000
        empties = gzip.compress(b"") * 60
        for body in (big, bomb, empties):
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await stub.PostEvents(post("ab_test_events", body), metadata=AUTH)
            assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert caught.value.details() == "request body exceeds the limit of 1000 bytes"
            # The gateways answer it 413, as they do a body over their own limit.
            assert ("x-http-status", "413") in tuple(caught.value.trailing_metadata())
        small = gzip.compress(orjson.dumps(sample()))
        response = await stub.PostEvents(post("ab_test_events", small), metadata=AUTH)
        assert response.successful_rows == 1
        assert await count(suite.warehouse, "ab_test_events") == 1
    finally:
        await suite.stop()


def typed_event(**changes: object) -> ab_test_events_pb2.AbTestEvent:
    fields = {k: v for k, v in SAMPLE.items() if k != "timestamp"}
    fields.update(changes)
    return ab_test_events_pb2.AbTestEvent(timestamp=Timestamp(seconds=1686839400), **fields)


async def test_typed_append_and_its_quarantine(suite):
    missing_time = typed_event(user_id="no-time")
    missing_time.ClearField("timestamp")
    request = pb.AppendAbTestEventsRequest(
        events=[typed_event(), missing_time, typed_event(conversion=300)], wait=True
    )
    response = await suite.ingest_stub().AppendAbTestEvents(request, metadata=AUTH)
    assert (response.successful_rows, response.quarantined_rows) == (1, 2)
    errors = await quarantine_errors(suite.warehouse, "ab_test_events")
    assert errors == [
        "field 'conversion': 300 is out of range for UInt8 (0..255)",
        "missing required field 'timestamp'",
    ]
    raw = await suite.warehouse.query("SELECT raw FROM ab_test_events_quarantine", {})
    assert all(orjson.loads(r["raw"])["test_id"] == "homepage_redesign" for r in raw.data)


async def test_stream_appends_batches_of_any_datasource(suite):
    async def batches():
        for i in range(3):
            yield pb.StreamEventsRequest(
                ab_test_events=pb.AppendAbTestEventsRequest(
                    events=[typed_event(user_id=f"u{i}-{j}") for j in range(100)], wait=True
                )
            )

    response = await suite.ingest_stub().StreamEvents(batches(), metadata=AUTH)
    assert (response.successful_rows, response.quarantined_rows, response.batches) == (300, 0, 3)
    assert await count(suite.warehouse, "ab_test_events") == 300


async def test_queued_writes_answer_202_and_land_after_the_flush_interval(suite):
    call = suite.ingest_stub().PostEvents(
        post("ab_test_events", orjson.dumps(sample()), wait=False), metadata=AUTH
    )
    response = await call
    assert response.successful_rows == 1
    assert ("x-http-status", "202") in tuple(await call.initial_metadata())
    await suite.ingest.batcher.flush_all()
    assert await count(suite.warehouse, "ab_test_events") == 1


@pytest.mark.parametrize(
    "metadata",
    [(), (("authorization", "Bearer wrong"),), (("authorization", "Basic abc"),)],
)
async def test_requests_without_the_token_are_unauthenticated(suite, metadata):
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await suite.ingest_stub().PostEvents(
            post("ab_test_events", orjson.dumps(sample())), metadata=metadata
        )
    assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert await count(suite.warehouse, "ab_test_events") == 0


async def test_health_needs_no_token(suite):
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    channel = grpc.aio.insecure_channel(f"127.0.0.1:{suite.ingest.port}")
    suite.channels.append(channel)
    reply = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest())
    assert reply.status == health_pb2.HealthCheckResponse.SERVING


async def test_shutdown_flushes_everything_buffered(embedded_warehouse):
    suite = await start_suite(
        embedded_warehouse, gateway=False, flush_interval=3600.0, flush_rows=1_000_000
    )
    stub = suite.ingest_stub()
    body = b"\n".join(orjson.dumps(sample(user_id=f"u{i}")) for i in range(250))
    response = await stub.PostEvents(post("ab_test_events", body, wait=False), metadata=AUTH)
    assert response.successful_rows == 250
    assert await count(suite.warehouse, "ab_test_events") == 0  # still buffered
    await suite.stop()
    assert await count(suite.warehouse, "ab_test_events") == 250


async def test_reflection_lists_the_services_without_a_token(suite):
    from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

    for port, name in (
        (suite.ingest.port, "pipit.ingest.v1.IngestService"),
        (suite.query.port, "pipit.query.v1.QueryService"),
    ):
        channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
        suite.channels.append(channel)
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)

        async def ask():
            yield reflection_pb2.ServerReflectionRequest(list_services="")

        async for reply in stub.ServerReflectionInfo(ask()):
            services = {s.name for s in reply.list_services_response.service}
            assert {name, "grpc.health.v1.Health"} <= services


async def test_one_log_line_per_request_with_its_request_id(suite):
    import structlog
    from structlog.testing import capture_logs

    with capture_logs(processors=[structlog.contextvars.merge_contextvars]) as logs:
        await suite.ingest_stub().PostEvents(
            post("ab_test_events", orjson.dumps(sample())),
            metadata=(*AUTH, ("x-request-id", "req-42")),
        )
    lines = [line for line in logs if line["event"] == "rpc"]
    assert len(lines) == 1
    assert lines[0]["method"] == "/pipit.ingest.v1.IngestService/PostEvents"
    assert lines[0]["code"] == "OK"
    assert lines[0]["request_id"] == "req-42"
    assert lines[0]["duration_ms"] >= 0


async def test_prometheus_metrics_are_served(embedded_warehouse, tmp_path):
    import aiohttp
    from harness import AUTH, TOKEN, free_port

    from common import config
    from common.auth import Access
    from pipit.project.artifact import builtin
    from pipit.project.runtime import CurrentProject, Project
    from services.ingest.server import start_ingest

    port = free_port()
    settings = config.load(environ={}, admin_token=TOKEN, wal_dir=tmp_path / "wal")
    access = Access.for_process(settings, TOKEN)
    current = CurrentProject(Project(builtin()))
    ingest = await start_ingest(
        settings, embedded_warehouse, access, current, port=0, metrics_port=port
    )
    try:
        channel = grpc.aio.insecure_channel(f"127.0.0.1:{ingest.port}")
        from pipit.ingest.v1 import ingest_service_pb2_grpc

        stub = ingest_service_pb2_grpc.IngestServiceStub(channel)
        body = b"\n".join([orjson.dumps(sample()), b"{broken"])
        await stub.PostEvents(post("ab_test_events", body), metadata=AUTH)
        await channel.close()
        async with (
            aiohttp.ClientSession() as http,
            http.get(f"http://127.0.0.1:{port}/metrics") as response,
        ):
            text = await response.text()
    finally:
        await ingest.stop(1.0)
    for name in (
        'pipit_ingest_events_total{datasource="ab_test_events",outcome="accepted"}',
        'pipit_ingest_events_total{datasource="ab_test_events",outcome="quarantined"}',
        'pipit_ingest_rows_flushed_total{table="ab_test_events"}',
        "pipit_ingest_flush_seconds_bucket",
        "pipit_ingest_wal_pending_bytes",
        "pipit_ingest_buffered_rows",
        "pipit_ingest_warehouse_up",
    ):
        assert name in text, name


def _ndjson(*markers: str) -> bytes:
    return b"\n".join(orjson.dumps(sample(session_id=m)) for m in markers)


async def test_every_member_of_a_gzip_body_is_kept(suite):
    # `cat a.gz b.gz` is valid gzip (RFC 1952): zlib alone stops after the first member.
    first, second = _ndjson("m1", "m2") + b"\n", _ndjson("m3")
    body = gzip.compress(first) + gzip.compress(b"") + gzip.compress(second)
    response = await suite.ingest_stub().PostEvents(post("ab_test_events", body), metadata=AUTH)
    assert response.successful_rows == 3
    assert await count(suite.warehouse, "ab_test_events") == 3


@pytest.mark.parametrize(
    ("body", "metadata", "message"),
    [
        (gzip.compress(_ndjson("g1"), mtime=0) + b"garbage", (), "are not another member"),
        (gzip.compress(_ndjson("g2"), mtime=0)[:-3], (), "truncated"),
        # Declared gzip (Envoy passes Content-Encoding on as metadata), but it is not.
        (_ndjson("g3"), (("content-encoding", "gzip"),), "incorrect header check"),
        (b"this is not gzip", (("content-encoding", "GZIP"),), "incorrect header check"),
    ],
    ids=["trailing garbage", "truncated", "plain JSON declared gzip", "declared in capitals"],
)
async def test_a_body_that_is_not_the_gzip_it_claims_stores_nothing(suite, body, metadata, message):
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await suite.ingest_stub().PostEvents(post("ab_test_events", body), metadata=AUTH + metadata)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert caught.value.details().startswith("request body is not valid gzip: ")
    assert message in caught.value.details()
    assert await count(suite.warehouse, "ab_test_events") == 0
    assert await count(suite.warehouse, "ab_test_events_quarantine") == 0


async def test_a_declared_gzip_body_is_inflated(suite):
    body = gzip.compress(_ndjson("d1", "d2"))
    response = await suite.ingest_stub().PostEvents(
        post("ab_test_events", body), metadata=(*AUTH, ("content-encoding", "gzip"))
    )
    assert response.successful_rows == 2


@pytest.mark.parametrize("failure", ["s3-schedule", "port-in-use"])
async def test_a_start_that_fails_lets_go_of_the_log(embedded_warehouse, tmp_path, failure):
    """A start refused (a malformed S3 schedule, before the log is opened; a port another
    process holds, after the log was replayed) leaves nothing open: the log's lock is free
    for the next start, and no task of the batcher or the log is left running (asyncio
    would report those pending when they are collected)."""
    import asyncio
    import socket

    from harness import TOKEN

    from common import config
    from common.auth import Access
    from pipit.project.artifact import builtin
    from pipit.project.runtime import CurrentProject, Project
    from services.ingest.server import start_ingest

    wal_dir = tmp_path / "wal"
    current = CurrentProject(Project(builtin()))
    settings = config.load(environ={}, admin_token=TOKEN, wal_dir=wal_dir)
    access = Access.for_process(settings, TOKEN)
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    try:
        if failure == "s3-schedule":
            broken, port, refused = (
                config.load(environ={}, admin_token=TOKEN, wal_dir=wal_dir, s3_imports="nothing"),
                0,
                SystemExit,
            )
        else:
            broken, port, refused = settings, taken.getsockname()[1], Exception
        before = asyncio.all_tasks()
        with pytest.raises(refused):
            await start_ingest(broken, embedded_warehouse, access, current, port, metrics_port=0)
        left = {t.get_name() for t in asyncio.all_tasks() - before}
        assert not left & {"wal-writer", "batcher-ticker"}, left
    finally:
        taken.close()
    ingest = await start_ingest(settings, embedded_warehouse, access, current, 0, metrics_port=0)
    await ingest.stop(1.0)
