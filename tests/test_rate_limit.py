"""Per-token rate limits: X-RateLimit-* headers on every answer, then 429 with
Retry-After (RESOURCE_EXHAUSTED over gRPC) once a token's window is used up; other tokens
are unaffected. One bucket per token per process, shared by ingest and query (the suite
is built as `pipit up` builds it), kept under the token's digest, never its name.

Every test uses tokens of its own, so none depends on what another used up."""

from __future__ import annotations

import aiohttp
import grpc
import orjson
import pytest
from harness import TOKEN, start_suite

from common.datasources import registry
from common.rate_limit import RateLimiter
from common.tokens import TokenFile, digest
from pipit.query.v1 import query_service_pb2
from pipit.seed.generator import generate

pytestmark = pytest.mark.e2e

DEFAULT_LIMIT = 100


@pytest.fixture(scope="module")
async def limited(chdb_dir, tmp_path_factory):
    from conftest import unique_database

    from common.warehouse.embedded import EmbeddedWarehouse

    tokens = TokenFile(tmp_path_factory.mktemp("ratelimit") / "tokens.json")
    issued = {
        "http_slow": tokens.create("http_slow", ["PIPES:READ:*"], rate_limit=3),
        "grpc_slow": tokens.create("grpc_slow", ["PIPES:READ:*"], rate_limit=2),
        "free": tokens.create("free", ["PIPES:READ:*"]),
        "both": tokens.create(
            "both", ["PIPES:READ:*", "DATASOURCES:APPEND:user_events"], rate_limit=4
        ),
    }
    # Older versions let `pipit token create --name admin` through; such a file must not
    # give its token the real admin's bucket.
    issued["named_admin"] = "p.named-admin-token-made-by-an-older-version"
    doc = orjson.loads(tokens.path.read_bytes())
    doc["tokens"].append(
        {
            "name": "admin",
            "sha256": digest(issued["named_admin"]),
            "scopes": ["PIPES:READ:*"],
            "created_at": "",
            "rate_limit": 2,
        }
    )
    tokens.path.write_bytes(orjson.dumps(doc))
    warehouse = EmbeddedWarehouse(chdb_dir, unique_database("rate"))
    await warehouse.open()
    await warehouse.ensure_schema(list(registry().values()))
    suite = await start_suite(warehouse, tokens_file=tokens.path, rate_limit=DEFAULT_LIMIT)
    yield suite, issued
    await suite.stop()


def _pipe(suite) -> str:
    return f"{suite.gateway_url}/v0/pipes/test_summary.json"


async def test_http_headers_then_429(limited):
    suite, issued = limited
    slow = issued["http_slow"]
    async with aiohttp.ClientSession() as http:
        remaining = []
        for _ in range(3):
            async with http.get(_pipe(suite), params={"token": slow}) as r:
                assert r.status == 200
                assert r.headers["X-RateLimit-Limit"] == "3"
                assert 1 <= int(r.headers["X-RateLimit-Reset"]) <= 60
                remaining.append(r.headers["X-RateLimit-Remaining"])
        assert remaining == ["2", "1", "0"]
        async with http.get(_pipe(suite), params={"token": slow}) as r:
            assert r.status == 429
            assert 1 <= int(r.headers["Retry-After"]) <= 60
            assert "rate limit of 3 requests per minute" in (await r.json())["message"]
        # The service-wide default applies to a token without its own limit.
        async with http.get(_pipe(suite), params={"token": issued["free"]}) as r:
            assert (r.status, r.headers["X-RateLimit-Limit"]) == (200, str(DEFAULT_LIMIT))


async def test_grpc_resource_exhausted(limited):
    suite, issued = limited
    stub = suite.query_stub()
    auth = (("authorization", f"Bearer {issued['grpc_slow']}"),)
    for _ in range(2):
        await stub.TestSummary(query_service_pb2.TestSummaryRequest(), metadata=auth)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.TestSummary(query_service_pb2.TestSummaryRequest(), metadata=auth)
    assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    trailers = dict(caught.value.trailing_metadata())
    assert 1 <= int(trailers["retry-after"]) <= 60
    assert trailers["x-ratelimit-remaining"] == "0"


async def test_one_bucket_for_ingest_and_query(limited):
    """Pipe calls (query service) and Events API posts (ingest service) draw on the same
    four requests a minute."""
    suite, issued = limited
    auth = {"Authorization": f"Bearer {issued['both']}"}
    event = orjson.dumps(next(iter(generate("user_events", 1, seed=5))))
    events_url = f"{suite.gateway_url}/v0/events"

    async def pipe(http):
        return await http.get(_pipe(suite), headers=auth)

    async def post(http):
        return await http.post(events_url, params={"name": "user_events"}, data=event, headers=auth)

    async with aiohttp.ClientSession() as http:
        answers = []
        for call in (pipe, post, pipe, post, pipe, post):
            async with await call(http) as r:
                answers.append((r.status, r.headers.get("X-RateLimit-Remaining")))
    assert answers == [
        (200, "3"),
        (202, "2"),
        (200, "1"),
        (202, "0"),
        (429, "0"),
        (429, "0"),
    ]


async def test_a_token_named_admin_has_a_bucket_of_its_own(limited):
    suite, issued = limited
    async with aiohttp.ClientSession() as http:

        async def remaining(token: str) -> tuple[int, str]:
            async with http.get(_pipe(suite), params={"token": token}) as r:
                return r.status, r.headers["X-RateLimit-Remaining"]

        status, before = await remaining(TOKEN)
        assert status == 200
        impostor = [(await remaining(issued["named_admin"]))[0] for _ in range(3)]
        assert impostor == [200, 200, 429]
        assert await remaining(TOKEN) == (200, str(int(before) - 1))


def test_the_window_starts_over():
    now = [0.0]
    limiter = RateLimiter(clock=lambda: now[0])
    assert [limiter.take("t", 2).allowed for _ in range(3)] == [True, True, False]
    assert limiter.take("u", 2).allowed  # another key, another bucket
    now[0] = 61.0
    assert limiter.take("t", 2).allowed


def test_expired_windows_are_dropped_once_there_are_many():
    now = [0.0]
    limiter = RateLimiter(clock=lambda: now[0])
    for key in range(5000):
        limiter.take(str(key), 1)
    now[0] = 61.0
    assert limiter.take("new", 1).allowed
    assert len(limiter._windows) == 1
    assert limiter.take("0", 1).allowed  # a dropped window starts afresh
