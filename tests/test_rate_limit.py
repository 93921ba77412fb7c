"""Per-token rate limits: X-RateLimit-* headers on every answer, then 429 with
Retry-After (RESOURCE_EXHAUSTED over gRPC) once a token's window is used up; other tokens
are unaffected."""

from __future__ import annotations

import aiohttp
import grpc
import pytest
from harness import start_suite

from common.datasources import registry
from common.rate_limit import RateLimiter
from common.tokens import TokenFile
from pipit.query.v1 import query_service_pb2


@pytest.fixture(scope="module")
async def limited(chdb_dir, tmp_path_factory):
    from conftest import unique_database

    from common.warehouse.embedded import EmbeddedWarehouse

    tokens = TokenFile(tmp_path_factory.mktemp("ratelimit") / "tokens.json")
    slow = tokens.create("slow", ["PIPES:READ:*"], rate_limit=3)
    free = tokens.create("free", ["PIPES:READ:*"])
    warehouse = EmbeddedWarehouse(chdb_dir, unique_database("rate"))
    await warehouse.open()
    await warehouse.ensure_schema(list(registry().values()))
    suite = await start_suite(warehouse, tokens_file=tokens.path, rate_limit=100)
    yield suite, slow, free
    await suite.stop()


async def test_http_headers_then_429(limited):
    suite, slow, free = limited
    url = f"{suite.gateway_url}/v0/pipes/test_summary.json"
    async with aiohttp.ClientSession() as http:
        remaining = []
        for _ in range(3):
            async with http.get(url, params={"token": slow}) as r:
                assert r.status == 200
                assert r.headers["X-RateLimit-Limit"] == "3"
                assert 1 <= int(r.headers["X-RateLimit-Reset"]) <= 60
                remaining.append(r.headers["X-RateLimit-Remaining"])
        assert remaining == ["2", "1", "0"]
        async with http.get(url, params={"token": slow}) as r:
            assert r.status == 429
            assert 1 <= int(r.headers["Retry-After"]) <= 60
            assert "rate limit of 3 requests per minute" in (await r.json())["message"]
        # The service-wide default applies to a token without its own limit.
        async with http.get(url, params={"token": free}) as r:
            assert (r.status, r.headers["X-RateLimit-Limit"]) == (200, "100")


async def test_grpc_resource_exhausted(limited):
    suite, slow, _ = limited
    stub = suite.query_stub()
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.TestSummary(
            query_service_pb2.TestSummaryRequest(), metadata=(("authorization", f"Bearer {slow}"),)
        )
    assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    trailers = dict(caught.value.trailing_metadata())
    assert "retry-after" in trailers


def test_the_window_starts_over():
    now = [0.0]
    limiter = RateLimiter(clock=lambda: now[0])
    assert [limiter.take("t", 2).allowed for _ in range(3)] == [True, True, False]
    now[0] = 61.0
    assert limiter.take("t", 2).allowed
