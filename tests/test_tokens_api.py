"""The Tokens API (Tinybird's /v0/tokens routes): a token's whole life through our gateway
and the real Envoy (create → use → list → update scopes → refresh → the old one refused →
delete → refused), what both answer alike, a second replica following the table, digests
only in the warehouse, and Tinybird's own SDKs (the TypeScript `createJWT` and
`createToken`, the Python `create_jwt`) against it."""

from __future__ import annotations

import asyncio
import json
import random
import shutil
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import grpc
import jwt
import orjson
import pytest
from conftest import unique_database
from expected import test_summary as expected_summary
from gateway_pair import GATEWAYS, GatewayPair, assert_same, service_targets, start_pair
from harness import TOKEN, Suite, free_port, start_suite
from processes import start_pipit
from tiers import tier

from common.datasources import registry
from common.token_table import TABLE, TokenFollower, TokenTable
from common.tokens import TokenFile, TokenStore, new_token
from common.warehouse.embedded import EmbeddedWarehouse
from gateway.early_auth import refuse_unknown_token
from gateway.errors import GatewayError
from pipit.query.v1 import query_service_pb2, query_service_pb2_grpc
from pipit.tokens.v1 import token_service_pb2, token_service_pb2_grpc

pytestmark = pytest.mark.e2e

CLIENTS = Path(__file__).parent / "clients"
ADMIN = {"Authorization": f"Bearer {TOKEN}"}
SUMMARY = "/v0/pipes/test_summary.json"
SEGMENTS = "/v0/pipes/test_segments.json?segment=device"


def _events(count: int) -> list[dict[str, Any]]:
    rng = random.Random(1616)
    start = datetime(2024, 7, 1)
    return [
        {
            "timestamp": (start + timedelta(minutes=13 * i)).strftime("%Y-%m-%d %H:%M:%S"),
            "user_id": f"user_{rng.randrange(10)}",
            "test_id": rng.choice(["org_1", "org_2"]),
            "variant": rng.choice("AB"),
            "event_type": "click",
            "conversion": rng.choice([0, 1]),
            "revenue": round(rng.uniform(0, 20), 2),
            "session_id": f"session_{rng.randrange(20)}",
            "device": rng.choice(["mobile", "desktop"]),
            "country": "NL",
        }
        for i in range(count)
    ]


EVENTS = _events(120)


@pytest.fixture(scope="module")
def file_tokens(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    tokens = TokenFile(tmp_path_factory.mktemp("tokens-api") / "tokens.json")
    return {
        "path": tokens.path,
        "reader": tokens.create("file-reader", ["PIPES:READ:*"]),
    }


@pytest.fixture(scope="module")
async def suite(chdb_dir: Path, file_tokens: dict[str, Any]) -> AsyncIterator[Suite]:
    warehouse = EmbeddedWarehouse(chdb_dir, unique_database("tokens"))
    await warehouse.open()
    await warehouse.ensure_schema(list(registry().values()))
    running = await start_suite(warehouse, gateway=False, tokens_file=file_tokens["path"])
    yield running
    await running.stop()
    await warehouse.execute(f"DROP DATABASE IF EXISTS `{warehouse.database}`")
    await warehouse.close()


@pytest.fixture(scope="module")
@tier("envoy")
async def pair(
    suite: Suite, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[GatewayPair]:
    assert suite.access is not None
    running = await start_pair(
        service_targets(suite.ingest.grpc, suite.query),
        tmp_path_factory.mktemp("tokens-envoy"),
        max_body_bytes=1024 * 1024,
        # As in `pipit up`: ours judges tokens first with the services' own store, which
        # follows the API's tokens.
        token_store=suite.access.tokens,
    )
    async with aiohttp.ClientSession() as http:
        body = b"\n".join(orjson.dumps(e) for e in EVENTS)
        url = f"{running.urls['pipit']}/v0/events?name=ab_test_events&wait=true"
        async with http.post(url, data=body, headers=ADMIN) as response:
            assert response.status == 200, await response.text()
    yield running
    await running.stop()


@pytest.fixture(scope="module")
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def _call(
    http: aiohttp.ClientSession,
    url: str,
    method: str = "GET",
    token: str = TOKEN,
    body: Any = None,
    content_type: str = "application/json",
) -> tuple[int, Any]:
    async with http.request(
        method,
        url,
        headers={"Authorization": f"Bearer {token}", "Content-Type": content_type},
        data=None if body is None else orjson.dumps(body),
    ) as response:
        return response.status, await response.json(content_type=None)


async def test_a_tokens_life_through_both_gateways(
    pair: GatewayPair, http: aiohttp.ClientSession
) -> None:
    for gateway in GATEWAYS:
        base = pair.urls[gateway]
        name = f"life_{gateway}"
        status, created = await _call(
            http,
            f"{base}/v0/tokens?name={name}&description=dashboard&scope=PIPES:READ:test_summary",
            "POST",
        )
        assert status == 200, created
        token = created["token"]
        assert token.startswith("p.") and len(token) == 45
        assert created["scopes"] == [{"type": "PIPES:READ", "resource": "test_summary"}]
        assert (created["name"], created["description"], created["origin"]) == (
            name,
            "dashboard",
            "api",
        )

        # Used: the pipe it may read, not another.
        assert (await _call(http, f"{base}{SUMMARY}", token=token))[0] == 200
        assert (await _call(http, f"{base}{SEGMENTS}", token=token))[0] == 403

        # Listed (never with its secret), beside the admin token and the file's.
        status, listed = await _call(http, f"{base}/v0/tokens")
        assert status == 200
        by_name = {t["name"]: t for t in listed["tokens"]}
        assert by_name[name]["scopes"] == created["scopes"]
        assert all("token" not in t for t in listed["tokens"])
        assert by_name["admin"]["scopes"] == [{"type": "ADMIN", "resource": ""}]
        assert by_name["file-reader"]["origin"] == "file"
        status, one = await _call(http, f"{base}/v0/tokens/{name}")
        assert (status, "token" in one) == (200, False)

        # New scopes replace the old ones; the token stays the same.
        status, updated = await _call(
            http, f"{base}/v0/tokens/{name}?scope=PIPES:READ:test_segments", "PUT"
        )
        assert status == 200, updated
        assert updated["scopes"] == [{"type": "PIPES:READ", "resource": "test_segments"}]
        assert (await _call(http, f"{base}{SUMMARY}", token=token))[0] == 403
        assert (await _call(http, f"{base}{SEGMENTS}", token=token))[0] == 200

        # Refreshed: a new secret, the old one refused at once.
        status, refreshed = await _call(http, f"{base}/v0/tokens/{name}/refresh", "POST")
        assert status == 200, refreshed
        assert refreshed["token"] != token and refreshed["scopes"] == updated["scopes"]
        assert (await _call(http, f"{base}{SEGMENTS}", token=token))[0] == 403
        assert (await _call(http, f"{base}{SEGMENTS}", token=refreshed["token"]))[0] == 200

        # Deleted: refused, and gone from the API.
        assert await _call(http, f"{base}/v0/tokens/{name}", "DELETE") == (200, {})
        assert (await _call(http, f"{base}{SEGMENTS}", token=refreshed["token"]))[0] == 403
        assert (await _call(http, f"{base}/v0/tokens/{name}"))[0] == 404


async def test_a_json_body_and_a_trailing_slash_as_tinybirds_sdks_send(
    pair: GatewayPair, http: aiohttp.ClientSession
) -> None:
    for gateway in GATEWAYS:
        base = pair.urls[gateway]
        status, created = await _call(
            http,
            f"{base}/v0/tokens/",
            "POST",
            body={
                "name": f"append_{gateway}",
                "scopes": [{"type": "DATASOURCES:APPEND", "resource": "ab_test_events"}],
            },
            # What `curl -d` labels it, as the README's examples send it.
            content_type="application/x-www-form-urlencoded",
        )
        assert status == 200, created
        event = dict(EVENTS[0], test_id=f"append_{gateway}")
        async with http.post(
            f"{base}/v0/events?name=ab_test_events",
            data=orjson.dumps(event),
            headers={"Authorization": f"Bearer {created['token']}"},
        ) as response:
            assert response.status == 202, await response.text()
        assert (await _call(http, f"{base}{SUMMARY}", token=created["token"]))[0] == 403


@pytest.mark.parametrize(
    ("method", "target", "auth", "status"),
    [
        ("GET", "/v0/tokens/nobody", "admin", 404),
        ("POST", "/v0/tokens?name=bad&scope=PIPES:CREATE", "admin", 400),
        ("POST", "/v0/tokens?name=admin&scope=ADMIN", "admin", 400),
        ("POST", "/v0/tokens?name=file-reader&scope=ADMIN", "admin", 400),
        ("POST", "/v0/tokens?name=noscope", "admin", 400),
        ("POST", "/v0/tokens?name=bad%20name&scope=ADMIN", "admin", 400),
        ("DELETE", "/v0/tokens/admin", "admin", 400),
        ("POST", "/v0/tokens/file-reader/refresh", "admin", 400),
        ("PUT", "/v0/tokens/nobody?scope=ADMIN", "admin", 404),
        ("GET", "/v0/tokens", "reader", 403),
        ("POST", "/v0/tokens?name=sneaky&scope=ADMIN", "reader", 403),
        ("GET", "/v0/tokens", "none", 403),
        # A JWT that would expire in the past.
        ("POST", "/v0/tokens?name=j&expiration_time=1", "admin", 400),
    ],
)
async def test_refusals_alike(
    pair: GatewayPair,
    http: aiohttp.ClientSession,
    file_tokens: dict[str, Any],
    method: str,
    target: str,
    auth: str,
    status: int,
) -> None:
    token = {"admin": TOKEN, "reader": file_tokens["reader"], "none": ""}[auth]
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    ours, envoy = await pair.send(http, method, target, headers=headers)
    assert ours.status == status, ours.body
    assert_same(ours, envoy)
    assert TOKEN not in ours.body.decode()


async def test_the_list_reads_alike(pair: GatewayPair, http: aiohttp.ClientSession) -> None:
    ours, envoy = await pair.send(http, "GET", "/v0/tokens", headers=ADMIN)
    assert ours.status == 200
    assert_same(ours, envoy)


async def test_a_jwt_minted_by_the_api(pair: GatewayPair, http: aiohttp.ClientSession) -> None:
    expires = int(time.time()) + 600
    for gateway in GATEWAYS:
        base = pair.urls[gateway]
        status, minted = await _call(
            http,
            f"{base}/v0/tokens/?expiration_time={expires}",
            "POST",
            body={
                "name": f"org_2_{gateway}",
                "scopes": [
                    {
                        "type": "PIPES:READ",
                        "resource": "test_summary",
                        "fixed_params": {"test_id": "org_2"},
                    }
                ],
                "limits": {"rps": 50},
            },
        )
        assert status == 200, minted
        status, answer = await _call(http, f"{base}{SUMMARY}?test_id=org_1", token=minted["token"])
        assert status == 200, answer
        _assert_rows(answer["data"], expected_summary(EVENTS, test_id="org_2"))
        # Not stored: the list has no JWTs.
        listed = (await _call(http, f"{base}/v0/tokens"))[1]
        assert f"org_2_{gateway}" not in {t["name"] for t in listed["tokens"]}


def _assert_rows(got: list[dict[str, Any]], want: list[dict[str, Any]]) -> None:
    assert len(got) == len(want) > 0
    for row, expected in zip(got, want, strict=True):
        for key, value in expected.items():
            assert row[key] == pytest.approx(value), key


async def test_another_replica_follows_the_table(
    suite: Suite, pair: GatewayPair, http: aiohttp.ClientSession, tmp_path: Path
) -> None:
    # A replica of its own: another store over the same warehouse, polled by hand.
    replica = TokenStore(TOKEN, tmp_path / "no-file.json")
    follower = TokenFollower(TokenTable(suite.warehouse), replica)
    await follower.refresh()
    assert replica.follows_api_tokens
    base = pair.urls["pipit"]
    status, created = await _call(
        http, f"{base}/v0/tokens?name=replicated&scope=DATASOURCES:READ:ab_test_events", "POST"
    )
    assert status == 200, created
    assert replica.authenticate(created["token"]) is None
    await follower.refresh()
    seen = replica.authenticate(created["token"])
    assert seen is not None and seen.scopes == ("DATASOURCES:READ:ab_test_events",)

    # The table holds digests only: no value of any row is a token.
    rows = await suite.warehouse.query(f"SELECT * FROM `{TABLE}`", {})  # noqa: S608
    assert created["token"] not in json.dumps(rows.data, default=str)

    assert (await _call(http, f"{base}/v0/tokens/replicated", "DELETE"))[0] == 200
    await follower.refresh()
    assert replica.authenticate(created["token"]) is None


# --- Tinybird's SDKs -----------------------------------------------------------------------


@pytest.fixture(scope="session")
def node() -> str:
    node = shutil.which("node")
    npm = shutil.which("npm")
    assert node and npm, "Node.js and npm are needed to run Tinybird's TypeScript SDK"
    js = CLIENTS / "js"
    if not (js / "node_modules" / "@tinybirdco" / "sdk").is_dir():
        subprocess.run(
            [npm, "ci", "--no-audit", "--no-fund", "--ignore-scripts"], cwd=js, check=True
        )
    return node


async def test_typescript_sdk_create_jwt_and_create_token(pair: GatewayPair, node: str) -> None:
    for gateway in GATEWAYS:
        request = {
            "jwt": {
                "name": f"ts_org_1_{gateway}",
                "expiresAt": int(time.time()) + 600,
                "scopes": [
                    {
                        "type": "PIPES:READ",
                        "resource": "test_summary",
                        "fixed_params": {"test_id": "org_1"},
                    }
                ],
                "limits": {"rps": 20},
            },
            "static": {
                "name": f"ts_static_{gateway}",
                "scopes": [{"type": "PIPES:READ", "resource": "test_summary"}],
            },
            "pipe": "test_summary",
            "params": {"test_id": "org_2"},
        }
        process = await asyncio.create_subprocess_exec(
            node,
            "tokens.mjs",
            cwd=CLIENTS / "js",
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            env={
                "PATH": str(Path(node).parent),
                "PIPIT_URL": pair.urls[gateway],
                "PIPIT_TOKEN": TOKEN,
            },
        )
        out, _ = await process.communicate(orjson.dumps(request))
        assert process.returncode == 0
        result = json.loads(out)
        assert result["jwt"]["ok"], result
        # The JWT's fixed test_id wins over the one the app asked for.
        _assert_rows(
            result["jwt_query"]["value"]["data"], expected_summary(EVENTS, test_id="org_1")
        )
        assert result["static"]["ok"], result
        assert result["static"]["value"]["scopes"] == request["static"]["scopes"]
        _assert_rows(
            result["static_query"]["value"]["data"], expected_summary(EVENTS, test_id="org_2")
        )


@pytest.fixture(scope="session")
def tinybird_sdk() -> Any:
    site = CLIENTS / "python" / "site-packages"
    if not (site / "tinybird_sdk").is_dir():
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "install",
                "--quiet",
                "--no-deps",
                "--target",
                str(site),
                "-r",
                str(CLIENTS / "python" / "requirements.txt"),
            ],
            check=True,
        )
    sys.path.insert(0, str(site))
    import tinybird_sdk

    return tinybird_sdk


async def test_python_sdk_create_jwt(pair: GatewayPair, tinybird_sdk: Any) -> None:
    for gateway in GATEWAYS:
        config = {"base_url": pair.urls[gateway], "token": TOKEN}
        minted = await asyncio.to_thread(
            tinybird_sdk.create_jwt,
            config,
            {
                "name": f"py_org_2_{gateway}",
                "expires_at": int(time.time()) + 600,
                "scopes": [
                    {
                        "type": "PIPES:READ",
                        "resource": "test_summary",
                        "fixed_params": {"test_id": "org_2"},
                    }
                ],
            },
        )
        api = tinybird_sdk.create_tinybird_api(
            {"base_url": pair.urls[gateway], "token": minted["token"]}
        )
        answer = await asyncio.to_thread(api.query, "test_summary", {"test_id": "org_1"})
        _assert_rows(answer["data"], expected_summary(EVENTS, test_id="org_2"))
        # Refused by the SDK's own error path: a JWT cannot sign JWTs.
        with pytest.raises(tinybird_sdk.TokenApiError) as refused:
            await asyncio.to_thread(
                tinybird_sdk.create_jwt,
                {"base_url": pair.urls[gateway], "token": minted["token"]},
                {"name": "x", "expires_at": int(time.time()) + 60, "scopes": []},
            )
        assert refused.value.status == 403
        # A static token through the SDK's create_token, used as the app would.
        admin = tinybird_sdk.create_tinybird_api(config)
        created = await asyncio.to_thread(
            admin.create_token,
            {
                "name": f"py_static_{gateway}",
                "scopes": [{"type": "PIPES:READ", "resource": "test_summary"}],
            },
        )
        reader = tinybird_sdk.create_tinybird_api(
            {"base_url": pair.urls[gateway], "token": created["token"]}
        )
        answer = await asyncio.to_thread(reader.query, "test_summary", {"test_id": "org_1"})
        _assert_rows(answer["data"], expected_summary(EVENTS, test_id="org_1"))


def test_a_gateway_of_its_own_passes_on_only_tokens_it_cannot_know() -> None:
    def check(store: TokenStore, token: str) -> grpc.StatusCode | None:
        try:
            refuse_unknown_token(store, (("authorization", f"Bearer {token}"),))
        except GatewayError as refused:
            return refused.code
        return None

    # `pipit gateway` cannot read the warehouse's tokens: one of their shape goes on to the
    # services; anything else, and every JWT, it judges itself.
    alone = TokenStore(TOKEN, None)
    expired = jwt.encode(
        {"name": "n", "exp": 1, "scopes": [{"type": "PIPES:READ", "resource": "p"}]}, TOKEN
    )
    assert check(alone, new_token()) is None
    assert check(alone, "wrong") == grpc.StatusCode.UNAUTHENTICATED
    assert check(alone, expired) == grpc.StatusCode.PERMISSION_DENIED
    assert check(alone, TOKEN) is None
    # Following the table (`pipit up`), it knows them all.
    alone.set_api_tokens([])
    assert check(alone, new_token()) == grpc.StatusCode.UNAUTHENTICATED


# --- replicas in processes of their own ----------------------------------------------------


async def _until(check: Any, want: Any, rounds: int = 150) -> Any:
    """`await check()` until it returns `want` (a bounded readiness wait: replicas poll the
    table once a second); the last answer otherwise."""
    got = None
    for _ in range(rounds):
        got = await check()
        if got == want:
            return got
        await asyncio.sleep(0.1)
    return got


async def test_every_replica_follows_the_tokens_api(tmp_path: Path, clickhouse_url: str) -> None:
    admin = "replicas-admin-token-0123456789"
    ingest_port, query_a, query_b = free_port(), free_port(), free_port()
    common = {
        "PIPIT_CLICKHOUSE_URL": clickhouse_url,
        "PIPIT_DATABASE": unique_database("token_replicas"),
        "PIPIT_ADMIN_TOKEN": admin,
        "PIPIT_DATA_DIR": str(tmp_path / "unused"),
        "PIPIT_TOKENS_FILE": str(tmp_path / "tokens.json"),
    }
    ingest = start_pipit(
        ["ingest"],
        {**common, "PIPIT_INGEST_PORT": str(ingest_port), "PIPIT_METRICS_PORT": str(free_port())},
        {"ingest"},
    )
    replicas = [
        start_pipit(["query"], {**common, "PIPIT_QUERY_PORT": str(port)}, {"query"})
        for port in (query_a, query_b)
    ]
    # `pipit gateway` with the admin token checks tokens early, without the warehouse's.
    gateway = start_pipit(
        ["gateway"],
        {
            "PIPIT_GATEWAY_PORT": str(free_port()),
            "PIPIT_INGEST_TARGET": f"127.0.0.1:{ingest_port}",
            "PIPIT_QUERY_TARGET": f"127.0.0.1:{query_a}",
            "PIPIT_ADMIN_TOKEN": admin,
            "PIPIT_TOKENS_FILE": str(tmp_path / "tokens.json"),
        },
        {"gateway"},
    )
    channels = [grpc.aio.insecure_channel(f"127.0.0.1:{p}") for p in (query_a, query_b)]
    try:
        tokens_a = token_service_pb2_grpc.TokenServiceStub(channels[0])
        tokens_b = token_service_pb2_grpc.TokenServiceStub(channels[1])
        as_admin = (("authorization", f"Bearer {admin}"),)
        created = await tokens_a.CreateToken(
            token_service_pb2.CreateTokenRequest(
                name="tenant",
                scope=["PIPES:READ:test_summary", "DATASOURCES:APPEND:ab_test_events"],
            ),
            metadata=as_admin,
        )

        async def summary_code(channel: grpc.aio.Channel, token: str) -> grpc.StatusCode:
            try:
                await query_service_pb2_grpc.QueryServiceStub(channel).TestSummary(
                    query_service_pb2.TestSummaryRequest(),
                    metadata=(("authorization", f"Bearer {token}"),),
                )
            except grpc.aio.AioRpcError as exc:
                return exc.code()
            return grpc.StatusCode.OK

        async def append_status(token: str) -> int:
            async with (
                aiohttp.ClientSession() as http,
                http.post(
                    f"{gateway.listening['gateway']}/v0/events?name=ab_test_events",
                    data=orjson.dumps(EVENTS[0]),
                    headers={"Authorization": f"Bearer {token}"},
                ) as response,
            ):
                return response.status

        # Made on replica A: replica B and the ingest process (through the gateway of its
        # own) accept it within their poll.
        ok = grpc.StatusCode.OK
        assert await _until(lambda: summary_code(channels[1], created.token), ok) == ok
        assert await _until(lambda: append_status(created.token), 202) == 202

        # Refreshed on replica B: the old secret stops working on replica A and at ingest.
        refreshed = await tokens_b.RefreshToken(
            token_service_pb2.RefreshTokenRequest(token="tenant"), metadata=as_admin
        )
        unknown = grpc.StatusCode.UNAUTHENTICATED
        assert await _until(lambda: summary_code(channels[0], created.token), unknown) == unknown
        assert await _until(lambda: append_status(created.token), 403) == 403
        assert await _until(lambda: append_status(refreshed.token), 202) == 202

        # Deleted on replica A: refused everywhere.
        await tokens_a.DeleteToken(
            token_service_pb2.DeleteTokenRequest(token="tenant"), metadata=as_admin
        )
        assert await _until(lambda: summary_code(channels[1], refreshed.token), unknown) == unknown
        assert await _until(lambda: append_status(refreshed.token), 403) == 403
    finally:
        for channel in channels:
            await channel.close()
        codes = [gateway.stop(), *(r.stop() for r in replicas), ingest.stop()]
    assert codes == [0, 0, 0, 0]
