"""Our gateway refuses a request without a known token before reading its body, with the
services' own answer. The proof needs no clock: a raw client sends the head and a first part of
a large body, and gets the 403 while the rest has not been sent (so it cannot have been read,
let alone inflated)."""

from __future__ import annotations

import asyncio
import gzip
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from harness import TOKEN, Suite, free_port, start_suite
from processes import start_pipit
from raw_http import RawConnection

from common.tokens import TokenFile, TokenStore
from gateway.app import bound_port, create_app, serve_gateway
from services.ingest.service import SERVICE as INGEST
from services.query.service import SERVICE as QUERY
from services.query.sql_api import SERVICE as SQL

pytestmark = pytest.mark.e2e

MAX_BODY = 10 * 1024 * 1024
EVENTS = "/v0/events?name=ab_test_events&wait=true"
LINE = (
    b'{"timestamp": "2023-06-15 14:30:00", "user_id": "u", "session_id": "early-auth", '
    b'"test_id": "t", "variant": "A", "event_type": "page_view", "conversion": 0, '
    b'"revenue": 0, "device": "mobile", "country": "US"}\n'
)


@pytest.fixture
async def suite(embedded_warehouse, tmp_path: Path) -> AsyncIterator[Suite]:
    running = await start_suite(
        embedded_warehouse,
        gateway=False,
        max_body_bytes=MAX_BODY,
        tokens_file=tmp_path / "tokens.json",
    )
    yield running
    await running.stop()


def _upstreams(suite: Suite) -> dict[str, str]:
    return {
        INGEST.full_name: f"127.0.0.1:{suite.ingest.port}",
        QUERY.full_name: f"127.0.0.1:{suite.query.port}",
        SQL.full_name: f"127.0.0.1:{suite.query.port}",
    }


async def _gateway(suite: Suite, tokens_file: Path, early: bool = True) -> Any:
    store = TokenStore(TOKEN, tokens_file) if early else None
    app = create_app(_upstreams(suite), max_body_bytes=MAX_BODY, token_store=store)
    return await serve_gateway(app, "127.0.0.1", 0)


def _url(runner: Any) -> str:
    return f"http://127.0.0.1:{bound_port(runner)}"


REFUSED = [
    # (query, headers, the services' message)
    ("", {}, "missing bearer token: send 'Authorization: Bearer <token>' or ?token="),
    ("", {"Authorization": "Basic dXNlcjpwYXNz"}, "missing bearer token"),
    ("", {"Authorization": "Bearer "}, "missing bearer token"),
    ("", {"Authorization": "Bearer not-a-token"}, "invalid token"),
    ("&token=not-a-token", {}, "invalid token"),
    (f"&token={TOKEN}x", {}, "invalid token"),
]


@pytest.mark.parametrize(
    ("query", "headers", "message"),
    REFUSED,
    ids=["none", "basic", "empty", "unknown", "unknown ?token=", "admin's plus one"],
)
@pytest.mark.parametrize("encoding", ["identity", "gzip"])
async def test_no_known_token_is_refused_before_the_body_is_read(
    suite: Suite, tmp_path: Path, query: str, headers: dict[str, str], message: str, encoding: str
) -> None:
    early = await _gateway(suite, tmp_path / "tokens.json")
    late = await _gateway(suite, tmp_path / "tokens.json", early=False)
    try:
        # Far more body than is ever sent: a gateway that waited for it would never answer.
        first_part = gzip.compress(LINE) + b"trailing garbage" if encoding == "gzip" else LINE
        connection = await RawConnection.open(_url(early))
        await connection.send_head(
            "POST",
            EVENTS + query,
            {
                **headers,
                "Content-Encoding": encoding,
                "Content-Length": str(MAX_BODY),
                "Content-Type": "application/x-ndjson",
            },
        )
        await connection.send(first_part)
        answer = await connection.read_answer()
        connection.close()
        assert answer.status == 403
        assert answer.json["message"].startswith(message)

        # Word for word what the service answers when the whole body reaches it.
        async with aiohttp.ClientSession() as http:
            async with http.post(
                _url(late) + EVENTS + query,
                data=gzip.compress(LINE) if encoding == "gzip" else LINE,
                headers={**headers, "Content-Encoding": encoding},
            ) as response:
                assert response.status == 403
                assert answer.json == await response.json()
    finally:
        await early.cleanup()
        await late.cleanup()
    assert await _rows(suite) == 0


async def _rows(suite: Suite) -> int:
    result = await suite.warehouse.query(
        "SELECT count() AS n FROM ab_test_events WHERE session_id = 'early-auth'", {}
    )
    return int(result.data[0]["n"])


async def test_a_client_that_asks_first_is_told_not_to_send_its_body(
    suite: Suite, tmp_path: Path
) -> None:
    runner = await _gateway(suite, tmp_path / "tokens.json")
    try:
        refused = await RawConnection.open(_url(runner))
        await refused.send_head(
            "POST", EVENTS, {"Content-Length": str(len(LINE)), "Expect": "100-continue"}
        )
        assert (await refused.read_answer()).status == 403  # no 100 Continue before it
        refused.close()

        welcome = await RawConnection.open(_url(runner))
        await welcome.send_head(
            "POST",
            EVENTS,
            {
                "Authorization": f"Bearer {TOKEN}",
                "Content-Length": str(len(LINE)),
                "Expect": "100-continue",
            },
        )
        assert (await welcome.read_answer()).status == 100
        await welcome.send(LINE)
        answer = await welcome.read_answer()
        welcome.close()
        assert (answer.status, answer.json) == (200, {"successful_rows": 1, "quarantined_rows": 0})
    finally:
        await runner.cleanup()


async def test_known_tokens_reach_the_services_which_judge_their_scopes(
    suite: Suite, tmp_path: Path
) -> None:
    tokens = TokenFile(tmp_path / "tokens.json")
    reader = tokens.create("reader", ["PIPES:READ:*"])
    writer = tokens.create("writer", ["DATASOURCES:APPEND:ab_test_events"])
    runner = await _gateway(suite, tokens.path)
    try:
        async with aiohttp.ClientSession() as http:
            # The services re-read the token file within a second: wait until they know both.
            for token in (reader, writer):
                for _ in range(200):
                    async with http.get(
                        _url(runner) + "/v0/pipes/test_summary.json", params={"token": token}
                    ) as response:
                        # Unknown yet: 403 with UNAUTHENTICATED (a missing scope is 403 too).
                        if response.status != 403 or (await response.json())["code"] != 16:
                            break
                        await asyncio.sleep(0.05)
            for token, status in ((reader, 403), (writer, 200), (TOKEN, 200)):
                async with http.post(
                    _url(runner) + EVENTS, data=LINE, headers={"Authorization": f"Bearer {token}"}
                ) as response:
                    assert response.status == status, await response.text()
                    if status == 403:  # known, without the scope: PERMISSION_DENIED
                        assert (await response.json())["code"] == 7
            # A token created after the gateway started is known to it too (the file is
            # re-read), as it is to the services.
            late = tokens.create("late", ["DATASOURCES:APPEND:*"])
            for _ in range(200):
                async with http.post(
                    _url(runner) + EVENTS + f"&token={late}", data=LINE
                ) as response:
                    if response.status == 200:
                        break
                    assert response.status == 403
                    await asyncio.sleep(0.05)
            assert response.status == 200
    finally:
        await runner.cleanup()
    assert await _rows(suite) == 3


async def test_a_token_check_that_fails_leaves_the_decision_to_the_services(
    suite: Suite, tmp_path: Path
) -> None:
    class Broken(TokenStore):
        def authenticate(self, token: str) -> Any:
            raise ValueError("unreadable token file")

    app = create_app(
        _upstreams(suite), max_body_bytes=MAX_BODY, token_store=Broken(TOKEN, tmp_path / "t")
    )
    runner = await serve_gateway(app, "127.0.0.1", 0)
    try:
        async with aiohttp.ClientSession() as http:
            for token, status in ((TOKEN, 200), ("wrong", 403)):
                async with http.post(
                    _url(runner) + EVENTS, data=LINE, headers={"Authorization": f"Bearer {token}"}
                ) as response:
                    assert response.status == status
    finally:
        await runner.cleanup()


@pytest.mark.parametrize(("admin_token", "status"), [("the-gateway-admin-token", 403), ("", 503)])
async def test_pipit_gateway_authenticates_early_only_with_an_admin_token(
    tmp_path: Path, admin_token: str, status: int
) -> None:
    # Nothing listens upstream: a 403 can only be the gateway's own, a 503 means it passed the
    # request on. `pipit gateway` never makes up an admin token of its own.
    port = free_port()
    process = start_pipit(
        ["gateway", "--gateway-port", str(port), "--tokens-file", str(tmp_path / "tokens.json")],
        {
            "PIPIT_ADMIN_TOKEN": admin_token,
            "PIPIT_INGEST_TARGET": "127.0.0.1:9",
            "PIPIT_QUERY_TARGET": "127.0.0.1:9",
        },
        {"gateway"},
        cwd=str(tmp_path),
    )
    try:
        async with aiohttp.ClientSession() as http:
            async with http.post(
                f"http://127.0.0.1:{port}{EVENTS}",
                data=LINE,
                headers={"Authorization": "Bearer wrong"},
            ) as response:
                assert response.status == status
    finally:
        assert process.stop() == 0
    # No data directory, no generated token.
    assert await asyncio.to_thread(os.listdir, tmp_path) == []
