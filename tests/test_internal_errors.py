"""An exception no handler turned into a status is answered INTERNAL (HTTP 500) with a
fixed message that carries the request id and nothing of the exception, on every
service, and logged in full with that request id."""

from __future__ import annotations

from collections.abc import Mapping

import aiohttp
import grpc
import orjson
import pytest
import structlog
from harness import AUTH, TOKEN, start_suite
from structlog.testing import capture_logs

from common.datasources import registry
from common.request_log import internal_error_message
from common.warehouse.base import QueryResult
from common.warehouse.embedded import EmbeddedWarehouse
from pipit.ingest.v1 import ingest_service_pb2 as ipb
from pipit.query.v1 import query_service_pb2
from pipit.seed.command import to_message
from pipit.seed.generator import generate
from services.ingest.service import Ingestor

pytestmark = pytest.mark.e2e

SECRET = "secret-detail-from-/var/lib/pipit"
# What grpc's default answer and the exceptions involved would show.
LEAKS = ("Unexpected", "class", "JSONDecodeError", "orjson", "RuntimeError", SECRET, "line 1")


class InvalidJsonWarehouse(EmbeddedWarehouse):
    """A warehouse whose answers stop being JSON once `broken` is set (as a proxy or a
    truncated response would make them)."""

    broken = False

    async def query(self, sql: str, params: Mapping[str, str]) -> QueryResult:
        if self.broken:
            return QueryResult.from_json(b'{"meta": [{"name": ')
        return await super().query(sql, params)

    async def adhoc_query(self, sql: str, params: Mapping[str, str]) -> QueryResult:
        if self.broken:
            return QueryResult.from_json(b'{"meta": [{"name": ')
        return await super().adhoc_query(sql, params)

    async def query_raw(self, sql: str, params: Mapping[str, str], fmt: str) -> bytes:
        # The pipes read the engine's own output (and parse it themselves when it is JSON).
        if self.broken:
            return b'{"meta": [{"name": '
        return await super().query_raw(sql, params, fmt)


@pytest.fixture(scope="module")
async def failing(chdb_dir):
    from conftest import unique_database

    warehouse = InvalidJsonWarehouse(chdb_dir, unique_database("internal"))
    await warehouse.open()
    await warehouse.ensure_schema(list(registry().values()))
    suite = await start_suite(warehouse)
    # Broken once serving: what the handlers meet, not the start-up's reading of the project.
    warehouse.broken = True
    yield suite
    await suite.stop()
    await warehouse.close()


@pytest.fixture
def raising_ingest(monkeypatch):
    async def fail(*_args, **_kwargs):
        raise RuntimeError(SECRET)

    monkeypatch.setattr(Ingestor, "submit_json", fail)
    monkeypatch.setattr(Ingestor, "submit_messages", fail)


def _assert_clean(message: str, request_id: str) -> None:
    assert message == internal_error_message(request_id)
    for leak in LEAKS:
        assert leak not in message


def _logged(logs: list[dict], request_id: str) -> dict:
    entries = [e for e in logs if e.get("event") == "unhandled error"]
    assert len(entries) == 1, logs
    entry = entries[0]
    assert entry["request_id"] == request_id
    assert entry["log_level"] == "error"
    assert entry["exc_info"] is True  # the traceback goes to the server's log
    return entry


def _capture():
    return capture_logs(processors=[structlog.contextvars.merge_contextvars])


async def test_a_pipe_over_invalid_json_over_grpc(failing):
    stub = failing.query_stub()
    with _capture() as logs, pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.TestSummary(
            query_service_pb2.TestSummaryRequest(),
            metadata=(*AUTH, ("x-request-id", "req-pipe-1")),
        )
    assert caught.value.code() == grpc.StatusCode.INTERNAL
    _assert_clean(caught.value.details(), "req-pipe-1")
    _logged(logs, "req-pipe-1")


@pytest.mark.parametrize(
    ("method", "path", "params"),
    [
        ("GET", "/v0/pipes/test_summary.json", {}),
        ("GET", "/v0/sql", {"q": "SELECT count() FROM ab_test_events"}),
    ],
    ids=["pipe", "query-api"],
)
async def test_query_service_over_http(failing, method, path, params):
    headers = {"Authorization": f"Bearer {TOKEN}", "X-Request-Id": "req-http-1"}
    with _capture() as logs:
        async with (
            aiohttp.ClientSession() as http,
            http.request(method, failing.gateway_url + path, params=params, headers=headers) as r,
        ):
            status, body = r.status, await r.read()
    assert status == 500, body
    answer = orjson.loads(body)
    assert answer["code"] == grpc.StatusCode.INTERNAL.value[0]
    _assert_clean(answer["message"], "req-http-1")
    for leak in LEAKS:
        assert leak.encode() not in body
    _logged(logs, "req-http-1")


async def test_ingest_events_api(failing, raising_ingest):
    event = orjson.dumps(next(iter(generate("user_events", 1, seed=1))))
    headers = {"Authorization": f"Bearer {TOKEN}", "X-Request-Id": "req-ingest-1"}
    with _capture() as logs:
        async with (
            aiohttp.ClientSession() as http,
            http.post(
                f"{failing.gateway_url}/v0/events",
                params={"name": "user_events"},
                data=event,
                headers=headers,
            ) as r,
        ):
            status, answer = r.status, await r.json()
    assert status == 500
    _assert_clean(answer["message"], "req-ingest-1")
    _logged(logs, "req-ingest-1")


async def test_ingest_client_stream(failing, raising_ingest):
    ds = registry()["app_events"]
    request = ipb.StreamEventsRequest(
        app_events=ipb.AppendAppEventsRequest(
            events=[to_message(ds, next(iter(generate("app_events", 1, seed=2))))]
        )
    )

    async def requests():
        yield request

    with _capture() as logs, pytest.raises(grpc.aio.AioRpcError) as caught:
        await failing.ingest_stub().StreamEvents(
            requests(), metadata=(*AUTH, ("x-request-id", "req-stream-1"))
        )
    assert caught.value.code() == grpc.StatusCode.INTERNAL
    _assert_clean(caught.value.details(), "req-stream-1")
    _logged(logs, "req-stream-1")


async def test_a_failure_while_authenticating(failing, monkeypatch):
    """Access control runs inside the call, so its failures are answered the same way."""
    from common.tokens import TokenStore

    def fail(self, token):
        raise RuntimeError(SECRET)

    monkeypatch.setattr(TokenStore, "authenticate", fail)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await failing.query_stub().TestSummary(
            query_service_pb2.TestSummaryRequest(),
            metadata=(*AUTH, ("x-request-id", "req-auth-1")),
        )
    assert caught.value.code() == grpc.StatusCode.INTERNAL
    _assert_clean(caught.value.details(), "req-auth-1")


async def test_a_request_id_that_is_not_an_id_is_replaced(failing):
    odd = "req id with spaces <and> markup"
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await failing.query_stub().TestSummary(
            query_service_pb2.TestSummaryRequest(), metadata=(*AUTH, ("x-request-id", odd))
        )
    details = caught.value.details()
    assert odd not in details
    generated = details.rsplit(" ", 1)[1]
    _assert_clean(details, generated)
