"""gateway/edge.py is the reference for the HTTP edge, and both gateways are held to it: every
refusal in its table is sent through each gateway the table says produces it (ours, Envoy or
both), and the answer must be the table's status, headers and words in the JSON error body
(a native gRPC request's answer in gRPC). A refusal added to the table without a request here
fails; so does one a gateway stops producing, or produces in other words.

The upstreams are scripted (a query service that answers, an import that never does), so
every refusal is the gateway's own. Both gateways run with a one-second header timeout; every
wait is for a gateway to act, under tests/raw_http.py's generous deadline."""

from __future__ import annotations

import asyncio
import gzip
import re
import string
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import orjson
import pytest
from aiohttp import web
from fake_upstream import fake_upstream
from gateway_pair import GATEWAYS, GatewayPair, start_pair
from raw_http import RawConnection

from gateway.app import default_descriptor_set
from gateway.body import read_body
from gateway.edge import REFUSALS, Refusal
from gateway.envoy import EnvoyConfig, http_services, render_bootstrap
from gateway.errors import GatewayError
from pipit.ingest.v1 import datasources_service_pb2 as datasources_pb2
from pipit.ingest.v1 import datasources_service_pb2_grpc as datasources_grpc
from pipit.query.v1 import query_service_pb2 as query_pb2
from pipit.query.v1 import query_service_pb2_grpc as query_grpc

MAX_BODY = 1000
IMPORT_MAX_BODY = 4000
HEADER_TIMEOUT = 1.0
REQUEST_TIMEOUT = 2.0
PIPE = "/v0/pipes/test_summary.json"
EVENTS = "/v0/events?name=ab_test_events"


class Query(query_grpc.QueryServiceServicer):
    async def TestSummary(self, request, context):
        return query_pb2.TestSummaryResponse(rows=1)


class HeldImport(datasources_grpc.DatasourcesServiceServicer):
    """Reads an import's whole body, then never answers: the gateway's timeout must."""

    async def ImportData(self, request_iterator, context):
        async for _ in request_iterator:
            pass
        await asyncio.Event().wait()
        return datasources_pb2.JobResponse()


@pytest.fixture(scope="module")
async def pair(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[GatewayPair]:
    async with fake_upstream(
        (query_grpc.add_QueryServiceServicer_to_server, Query()),
        (datasources_grpc.add_DatasourcesServiceServicer_to_server, HeldImport()),
    ) as upstream:
        running = await start_pair(
            {name: upstream.target for name in http_services(default_descriptor_set())},
            Path(tmp_path_factory.mktemp("edge")),
            max_body_bytes=MAX_BODY,
            import_max_body_bytes=IMPORT_MAX_BODY,
            request_timeout=REQUEST_TIMEOUT,
            header_timeout=HEADER_TIMEOUT,
        )
        yield running
        await running.stop()


@dataclass(frozen=True)
class Seen:
    """What a client saw of one answer."""

    status: int
    headers: dict[str, str]
    body: bytes


Send = Callable[[str], Awaitable[tuple[Seen, dict[str, object]]]]


async def _request(
    url: str, method: str, target: str, data: bytes = b"", headers: dict[str, str] | None = None
) -> Seen:
    async with (
        aiohttp.ClientSession(auto_decompress=False) as http,
        http.request(
            method,
            aiohttp.client.URL(url + target, encoded=True),
            data=data,
            headers=headers or {},
        ) as response,
    ):
        headers_seen = {k.lower(): v for k, v in response.headers.items()}
        return Seen(response.status, headers_seen, await response.read())


# One request per refusal, by name: it returns the answer and the fields the table's words
# take for it. Each runs against the gateway whose URL it is given.


async def _no_route(url: str) -> tuple[Seen, dict[str, object]]:
    return await _request(url, "GET", "/v0/nowhere"), {"path": "/v0/nowhere"}


async def _method_not_allowed(url: str) -> tuple[Seen, dict[str, object]]:
    # The pipe's typed GET and PipeService's GET and POST of `/v0/pipes/{file}`.
    seen = await _request(url, "DELETE", PIPE)
    return seen, {"method": "DELETE", "path": PIPE, "methods": "GET, POST"}


async def _unprintable_token(url: str) -> tuple[Seen, dict[str, object]]:
    return await _request(url, "GET", PIPE + "?token=%C3%A9"), {}


async def _unsupported_encoding(url: str) -> tuple[Seen, dict[str, object]]:
    seen = await _request(url, "POST", EVENTS, b"{}", {"Content-Encoding": "br"})
    return seen, {"encoding": "br"}


async def _body_too_large(url: str) -> tuple[Seen, dict[str, object]]:
    return await _request(url, "POST", EVENTS, b" " * (MAX_BODY + 1)), {"limit": MAX_BODY}


async def _body_stalled(url: str) -> tuple[Seen, dict[str, object]]:
    connection = await RawConnection.open(url)
    try:
        await connection.send_head("POST", EVENTS, {"Content-Length": "100"})
        await connection.send(b'{"a": 1')
        answer = await connection.read_answer()
    finally:
        connection.close()
    return Seen(answer.status, answer.headers, answer.body), {}


async def _upstream_timeout(url: str) -> tuple[Seen, dict[str, object]]:
    # A streamed import, which the scripted service never answers.
    seen = await _request(
        url, "POST", "/v0/datasources?name=ab_test_events&mode=append", b"a,b\n1,2\n"
    )
    return seen, {}


async def _bad_gzip(url: str) -> tuple[Seen, dict[str, object]]:
    body = gzip.compress(b"{}") + b"not a second member"
    seen = await _request(url, "POST", EVENTS, body, {"Content-Encoding": "gzip"})
    # common/gzip_inflater.py's words for bytes after the last member.
    reason = (
        "request body is not valid gzip: bytes after the last gzip member are not another member"
    )
    return seen, {"reason": reason}


async def _native_grpc(url: str) -> tuple[Seen, dict[str, object]]:
    target = "/pipit.query.v1.QueryService/TestSummary"
    seen = await _request(url, "POST", target, b"\0\0\0\0\0", {"Content-Type": "application/grpc"})
    return seen, {"path": target}


REQUESTS: dict[str, Send] = {
    "no_route": _no_route,
    "method_not_allowed": _method_not_allowed,
    "unprintable_token": _unprintable_token,
    "unsupported_encoding": _unsupported_encoding,
    "body_too_large": _body_too_large,
    "body_stalled": _body_stalled,
    "upstream_timeout": _upstream_timeout,
    "bad_gzip": _bad_gzip,
    "native_grpc": _native_grpc,
}


# Refusals no request can bring about on demand, each checked where it is made instead. aiohttp's
# parser answers a body it cannot parse itself, before any handler (400, plain text), and one
# that breaks after the handler began reading never wakes the reader (it then stalls: 408);
# body.py's refusal stands for a payload error aiohttp does report.
NOT_SENDABLE = {"body_unreadable"}


def _produced() -> list[tuple[Refusal, str]]:
    """Each refusal with each gateway the table says produces it."""
    return [
        (refusal, gateway)
        for refusal in REFUSALS
        if refusal.name not in NOT_SENDABLE
        for gateway, producer in zip(GATEWAYS, (refusal.ours, refusal.envoy), strict=True)
        if producer is not None
    ]


def test_every_refusal_has_a_request() -> None:
    assert set(REQUESTS) | NOT_SENDABLE == {refusal.name for refusal in REFUSALS}
    assert not set(REQUESTS) & NOT_SENDABLE
    assert all(refusal.ours or refusal.envoy for refusal in REFUSALS)


class _BrokenPayload:
    async def read(self, _size: int) -> bytes:
        raise web.RequestPayloadError("Not enough data to satisfy content length header.")


class _BrokenRequest:
    content = _BrokenPayload()


async def test_an_unreadable_body_is_the_tables_refusal() -> None:
    with pytest.raises(GatewayError) as refused:
        await read_body(_BrokenRequest(), MAX_BODY, "", HEADER_TIMEOUT)  # type: ignore[arg-type]
    message = "cannot read the request body: Not enough data to satisfy content length header."
    assert (refused.value.status, orjson.loads(refused.value.body())) == (
        400,
        {"error": message, "code": 3, "message": message, "details": []},
    )


@pytest.mark.envoy
@pytest.mark.parametrize(
    ("refusal", "gateway"), _produced(), ids=[f"{r.name}-{g}" for r, g in _produced()]
)
async def test_each_refusal_as_the_table_declares_it(
    pair: GatewayPair, refusal: Refusal, gateway: str
) -> None:
    seen, fields = await REQUESTS[refusal.name](pair.urls[gateway])
    words = _words(refusal.message, fields)
    number = refusal.code.value[0]
    if refusal.in_grpc:
        # A gRPC answer: HTTP 200, the status in its headers (a trailers-only answer).
        assert (seen.status, seen.headers.get("content-type")) == (200, "application/grpc")
        assert seen.headers.get("grpc-status") == str(number), seen
        assert words.fullmatch(seen.headers.get("grpc-message", "")), seen
        return
    assert seen.status == refusal.status, seen
    assert seen.headers.get("content-type") == "application/json", seen
    body = orjson.loads(seen.body)
    assert body == {
        "error": body["message"],
        "code": number,
        "message": body["message"],
        "details": [],
    }, body
    assert words.fullmatch(body["message"]), body
    for name, value in refusal.headers.items():
        assert seen.headers.get(name.lower()) == value.format(**fields), seen


def _words(template: str, fields: dict[str, object]) -> re.Pattern[str]:
    """The table's words with the request's fields; a field the request cannot know (a
    parser's reason) may be any text."""
    pattern = ""
    for literal, field, _spec, _conversion in string.Formatter().parse(template):
        pattern += re.escape(literal)
        if field is not None:
            pattern += re.escape(str(fields[field])) if field in fields else ".+"
    return re.compile(pattern, re.DOTALL)


def test_envoy_turns_each_local_refusal_into_its_code(tmp_path: Path) -> None:
    """Envoy's local replies carry only a status and a text; local_reply_config must give
    each refusal Envoy answers that way the table's code and the JSON shape."""
    descriptor = tmp_path / "descriptor_set.binpb"
    descriptor.write_bytes(default_descriptor_set())
    upstreams = {name: "127.0.0.1:1" for name in http_services(default_descriptor_set())}
    bootstrap = render_bootstrap(EnvoyConfig(upstreams, descriptor))
    listener = bootstrap["static_resources"]["listeners"][0]
    hcm = listener["filter_chains"][0]["filters"][0]["typed_config"]
    codes = {}
    for mapper in hcm["local_reply_config"]["mappers"]:
        comparison = mapper["filter"].get("status_code_filter", {}).get("comparison", {})
        if comparison.get("op") == "EQ" and "body_format_override" in mapper:
            status = comparison["value"]["default_value"]
            codes.setdefault(status, mapper["body_format_override"]["json_format"]["code"])
    for refusal in REFUSALS:
        if refusal.envoy is not None and not refusal.in_grpc:
            assert codes[refusal.envoy_status] == refusal.code.value[0], refusal.name
