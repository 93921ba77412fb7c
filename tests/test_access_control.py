"""Access control, table-driven: every RPC and every HTTP route × {no token, wrong token,
token with the wrong scope, token with the right scope}, through gRPC and through the
gateway; and revocation without a restart."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp
import grpc
import orjson
import pytest
from google.protobuf import json_format, message_factory
from harness import TOKEN, start_suite

from common.datasources import registry
from common.tokens import TokenFile
from pipit.ingest.v1 import ingest_service_pb2 as ipb
from pipit.query.v1 import query_service_pb2
from pipit.seed.command import to_message
from pipit.seed.generator import generate
from services.ingest.service import SERVICE as INGEST
from services.query.service import SERVICE as QUERY

pytestmark = pytest.mark.e2e

REQUIRED = {
    "user_id": "user_1",
    "session_id": "sess_1",
    "page_url": "https://example.com/",
    "steps": ["page_view", "click"],
}


def _event(datasource: str) -> dict:
    return next(iter(generate(datasource, 1, seed=3)))


def _cases() -> list[tuple[str, str, object, str]]:
    """(rpc path, required scope, gRPC request factory, unrelated scope)."""
    cases = []
    for method in QUERY.methods:
        endpoint = method.GetOptions().Extensions[
            __import__("pipit.clickhouse.v1.options_pb2", fromlist=["x"]).endpoint
        ]
        request_class = message_factory.GetMessageClass(method.input_type)
        fields = {k: v for k, v in REQUIRED.items() if k in method.input_type.fields_by_name}
        cases.append(
            (
                f"/{QUERY.full_name}/{method.name}",
                f"PIPES:READ:{endpoint}",
                lambda c=request_class, f=fields: c(**f),
                "PIPES:READ:some_other_pipe",
            )
        )
    for method in INGEST.methods:
        path = f"/{INGEST.full_name}/{method.name}"
        if method.name == "PostEvents":
            cases.append(
                (
                    path,
                    "DATASOURCES:APPEND:user_events",
                    lambda: ipb.PostEventsRequest(
                        name="user_events", body={"data": orjson.dumps(_event("user_events"))}
                    ),
                    "DATASOURCES:READ:user_events",
                )
            )
        elif method.name == "StreamEvents":
            cases.append(
                (
                    path,
                    "DATASOURCES:APPEND:app_events",
                    lambda: ipb.StreamEventsRequest(
                        app_events=ipb.AppendAppEventsRequest(
                            events=[to_message(registry()["app_events"], _event("app_events"))]
                        )
                    ),
                    "DATASOURCES:APPEND:user_events",
                )
            )
        else:
            events = method.input_type.fields_by_name["events"]
            ds = next(d for d in registry().values() if d.descriptor is events.message_type)
            request_class = message_factory.GetMessageClass(method.input_type)
            cases.append(
                (
                    path,
                    f"DATASOURCES:APPEND:{ds.name}",
                    lambda c=request_class, d=ds: c(events=[to_message(d, _event(d.name))]),
                    "PIPES:READ:*",
                )
            )
    return cases


CASES = _cases()
CREDENTIALS = ["none", "wrong", "wrong-scope", "right-scope"]
EXPECTED_GRPC = {
    "none": grpc.StatusCode.UNAUTHENTICATED,
    "wrong": grpc.StatusCode.UNAUTHENTICATED,
    "wrong-scope": grpc.StatusCode.PERMISSION_DENIED,
    "right-scope": grpc.StatusCode.OK,
}
# Tinybird answers a missing or unknown token 403, as it does a missing scope (gateway/errors.py);
# the body's gRPC code tells them apart.
EXPECTED_HTTP = {"none": 403, "wrong": 403, "wrong-scope": 403, "right-scope": (200, 202)}


@pytest.fixture(scope="module")
async def secured(chdb_dir, tmp_path_factory):
    from conftest import unique_database

    from common.warehouse.embedded import EmbeddedWarehouse

    tokens_path = tmp_path_factory.mktemp("tokens") / "tokens.json"
    tokens = TokenFile(tokens_path)
    issued = {}
    for path, scope, _, other in CASES:
        issued[(path, "right-scope")] = tokens.create(f"r{len(issued)}", [scope])
        issued[(path, "wrong-scope")] = tokens.create(f"w{len(issued)}", [other])
    warehouse = EmbeddedWarehouse(chdb_dir, unique_database("acl"))
    await warehouse.open()
    await warehouse.ensure_schema(list(registry().values()))
    suite = await start_suite(warehouse, tokens_file=tokens_path)
    yield suite, issued, tokens
    await suite.stop()


def _metadata(issued, path: str, credential: str) -> tuple:
    if credential == "none":
        return ()
    token = "not-a-token" if credential == "wrong" else issued[(path, credential)]
    return (("authorization", f"Bearer {token}"),)


@pytest.mark.parametrize("credential", CREDENTIALS)
@pytest.mark.parametrize("case", CASES, ids=[c[0].rsplit("/", 1)[1] for c in CASES])
async def test_grpc_matrix(secured, case, credential):
    suite, issued, _ = secured
    path, _, make_request, _ = case
    request = make_request()
    port = suite.ingest.port if path.startswith("/" + INGEST.full_name) else suite.query.port
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    metadata = _metadata(issued, path, credential)
    try:
        if path.endswith("/StreamEvents"):
            call = channel.stream_unary(path, type(request).SerializeToString, lambda b: b)

            async def requests():
                yield request

            await call(requests(), metadata=metadata)
        else:
            call = channel.unary_unary(path, type(request).SerializeToString, lambda b: b)
            await call(request, metadata=metadata)
        code = grpc.StatusCode.OK
    except grpc.aio.AioRpcError as exc:
        code = exc.code()
        if code == grpc.StatusCode.PERMISSION_DENIED:
            assert "lacks scope" in exc.details()
            assert issued[(path, "wrong-scope")] not in exc.details()
    finally:
        await channel.close()
    assert code == EXPECTED_GRPC[credential]


def _http_routes():
    """Every HTTP route in the protos: (rpc path, method, url path, query, body)."""
    routes = []
    for path, _, make_request, _ in CASES:
        name = path.rsplit("/", 1)[1]
        service = QUERY if path.startswith("/" + QUERY.full_name) else INGEST
        rule = (
            service.methods_by_name[name]
            .GetOptions()
            .Extensions[__import__("google.api.annotations_pb2", fromlist=["x"]).http]
        )
        if rule.get:
            request = make_request()
            printed = json_format.MessageToDict(request, preserving_proto_field_name=True)
            # A list parameter goes once per item (`steps=a&steps=b`).
            query = [
                (key, item)
                for key, value in printed.items()
                for item in (value if isinstance(value, list) else [value])
            ]
            routes.append((path, "GET", rule.get, query, None))
        elif rule.post and name == "PostEvents":
            routes.append(
                (
                    path,
                    "POST",
                    rule.post,
                    {"name": "user_events"},
                    orjson.dumps(_event("user_events")),
                )
            )
        elif rule.post:
            body = json_format.MessageToJson(make_request(), preserving_proto_field_name=True)
            routes.append((path, "POST", rule.post, {}, body.encode()))
    return routes


ROUTES = _http_routes()


def test_every_http_route_is_covered():
    assert len(ROUTES) == len(CASES) - 1  # all but the client stream, which has no route


@pytest.mark.parametrize("credential", CREDENTIALS)
@pytest.mark.parametrize("route", ROUTES, ids=[r[2] for r in ROUTES])
async def test_http_matrix(secured, route, credential):
    suite, issued, _ = secured
    path, method, url, query, body = route
    headers = {}
    if credential != "none":
        token = "not-a-token" if credential == "wrong" else issued[(path, credential)]
        headers["Authorization"] = f"Bearer {token}"
    async with (
        aiohttp.ClientSession() as http,
        http.request(
            method, suite.gateway_url + url, params=query, data=body, headers=headers
        ) as r,
    ):
        status = r.status
        answer = await r.json()
    expected = EXPECTED_HTTP[credential]
    assert status in (expected if isinstance(expected, tuple) else (expected,)), answer
    if status == 403:
        assert answer["code"] == EXPECTED_GRPC[credential].value[0]
    if credential == "wrong-scope":
        assert "lacks scope" in answer["error"]


async def _once_known(stub, auth) -> None:
    """A token created after start-up works once the file is re-read (within a second)."""
    for _ in range(50):
        try:
            await stub.TestSummary(query_service_pb2.TestSummaryRequest(), metadata=auth)
            return
        except grpc.aio.AioRpcError as exc:
            assert exc.code() == grpc.StatusCode.UNAUTHENTICATED
            await asyncio.sleep(0.1)
    pytest.fail("a new token never started working")


async def test_admin_token_and_wildcards(secured):
    suite, _, tokens = secured
    wildcard = tokens.create("wild", ["PIPES:READ:test_*"])
    stub = suite.query_stub()
    auth = (("authorization", f"Bearer {wildcard}"),)
    await _once_known(stub, auth)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.FeatureUsage(query_service_pb2.FeatureUsageRequest(), metadata=auth)
    assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "PIPES:READ:feature_usage" in caught.value.details()
    await stub.FeatureUsage(
        query_service_pb2.FeatureUsageRequest(), metadata=(("authorization", f"Bearer {TOKEN}"),)
    )


async def test_a_revoked_token_stops_working_without_a_restart(secured):
    suite, _, tokens = secured
    token = tokens.create("short-lived", ["PIPES:READ:*"])
    stub = suite.query_stub()
    auth = (("authorization", f"Bearer {token}"),)
    await _once_known(stub, auth)
    tokens.revoke("short-lived")
    for _ in range(50):
        try:
            await stub.TestSummary(query_service_pb2.TestSummaryRequest(), metadata=auth)
        except grpc.aio.AioRpcError as exc:
            assert exc.code() == grpc.StatusCode.UNAUTHENTICATED
            return
        await asyncio.sleep(0.1)
    pytest.fail("a revoked token kept working for 5 s")


def test_token_file_holds_digests_only(secured, tmp_path: Path):
    _, issued, tokens = secured
    text = tokens.path.read_text()
    assert not any(token in text for token in issued.values())
