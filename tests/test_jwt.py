"""JWTs as Tinybird documents them, signed with the admin token: minted here by PyJWT (as an
app's backend would) and by the Tokens API (POST /v0/tokens?expiration_time=…, what the SDKs'
createJWT calls), used through our gateway, the real Envoy and direct gRPC. Expected answers
are plain Python over the events the test sent, filtered by the JWT's fixed value."""

from __future__ import annotations

import base64
import random
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
from google.api.httpbody_pb2 import HttpBody
from google.protobuf import json_format
from harness import TOKEN, Suite, start_suite
from tiers import tier

from common import jwt_tokens
from common.auth import Refused, identify
from common.datasources import registry
from common.tokens import TokenStore
from common.warehouse.embedded import EmbeddedWarehouse
from pipit.ingest.v1 import ingest_service_pb2
from pipit.query.v1 import query_service_pb2

pytestmark = pytest.mark.e2e

PIPE = "/v0/pipes/test_summary.json"
TENANTS = ("tenant_a", "tenant_b", "tenant_c")


def _events(count: int, seed: int) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    start = datetime(2024, 5, 1)
    return [
        {
            "timestamp": (start + timedelta(minutes=11 * i)).strftime("%Y-%m-%d %H:%M:%S"),
            "user_id": f"user_{rng.randrange(15)}",
            "test_id": rng.choice(TENANTS),
            "variant": rng.choice("AB"),
            "event_type": rng.choice(["page_view", "click", "purchase"]),
            "conversion": rng.choice([0, 1]),
            "revenue": round(rng.uniform(0, 50), 2),
            "session_id": f"session_{rng.randrange(40)}",
            "device": rng.choice(["mobile", "desktop"]),
            "country": rng.choice(["US", "NL"]),
        }
        for i in range(count)
    ]


EVENTS = _events(240, seed=16)


def _sign(claims: dict[str, Any], key: str = TOKEN, algorithm: str = "HS256") -> str:
    return jwt.encode(claims, key, algorithm=algorithm)


def _claims(**change: Any) -> dict[str, Any]:
    claims: dict[str, Any] = {
        "workspace_id": "any-workspace",
        "name": "tenant_a_session",
        # Signed when the tests are collected (parametrize lists) and used up to the end of
        # the whole run: a day is far past any run.
        "exp": int(time.time()) + 86400,
        "scopes": [
            {
                "type": "PIPES:READ",
                "resource": "test_summary",
                "fixed_params": {"test_id": "tenant_a"},
            }
        ],
    }
    claims.update(change)
    return claims


def _unsigned(claims: dict[str, Any]) -> str:
    def part(doc: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(orjson.dumps(doc)).rstrip(b"=").decode()

    return f"{part({'alg': 'none', 'typ': 'JWT'})}.{part(claims)}."


def _tampered(token: str) -> str:
    # The payload of another JWT under this one's signature.
    header, _, signature = token.split(".")
    other = _sign(_claims(scopes=[{"type": "PIPES:READ", "resource": "test_summary"}]))
    return f"{header}.{other.split('.')[1]}.{signature}"


# --- verification, unit by unit ----------------------------------------------------------

STORE = TokenStore(TOKEN, None)


def _refusal(token: str) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(Refused) as refused:
        identify(STORE, token)
    return refused.value.code, refused.value.message


def test_a_valid_jwt_grants_its_scopes_and_fixed_params() -> None:
    principal = identify(STORE, _sign(_claims(limits={"rps": 5})))
    assert principal.scopes == ("PIPES:READ:test_summary",)
    assert principal.fixed_params == {"test_summary": {"test_id": "tenant_a"}}
    assert principal.rps == 5
    assert principal.name == principal.key == "jwt:tenant_a_session"


@pytest.mark.parametrize(
    ("token", "code"),
    [
        (_sign(_claims(exp=int(time.time()) - 1)), grpc.StatusCode.PERMISSION_DENIED),
        (_tampered(_sign(_claims())), grpc.StatusCode.UNAUTHENTICATED),
        (_unsigned(_claims()), grpc.StatusCode.UNAUTHENTICATED),
        (_sign(_claims(), algorithm="HS512"), grpc.StatusCode.UNAUTHENTICATED),
        (_sign(_claims(), key="another-workspace-admin-token"), grpc.StatusCode.UNAUTHENTICATED),
        (_sign(_claims(scopes=[{"type": "ADMIN"}])), grpc.StatusCode.PERMISSION_DENIED),
        (
            _sign(_claims(scopes=[{"type": "PIPES:CREATE", "resource": "x"}])),
            grpc.StatusCode.PERMISSION_DENIED,
        ),
        (
            _sign(
                _claims(
                    scopes=[{"type": "DATASOURCES:READ", "resource": "x", "filter": "test_id = 1"}]
                )
            ),
            grpc.StatusCode.PERMISSION_DENIED,
        ),
        (
            _sign(_claims(scopes=[{"type": "PIPES:READ", "resource": "*"}])),
            grpc.StatusCode.PERMISSION_DENIED,
        ),
        (
            _sign({k: v for k, v in _claims().items() if k != "exp"}),
            grpc.StatusCode.PERMISSION_DENIED,
        ),
        (_sign(_claims(limits={"rps": -1})), grpc.StatusCode.PERMISSION_DENIED),
        # Not valid for a year: still in the future however late in the run this case comes.
        (_sign(_claims(nbf=int(time.time()) + 365 * 86400)), grpc.StatusCode.PERMISSION_DENIED),
        ("eyJ" + "a" * 40, grpc.StatusCode.UNAUTHENTICATED),
    ],
    ids=[
        "expired",
        "tampered",
        "alg-none",
        "hs512",
        "other-key",
        "admin-scope",
        "unknown-type",
        "row-filter",
        "wildcard",
        "no-exp",
        "bad-rps",
        "not-yet",
        "garbage",
    ],
)
def test_refused_jwts(token: str, code: grpc.StatusCode) -> None:
    refused_code, message = _refusal(token)
    assert refused_code == code
    assert token not in message
    if code == grpc.StatusCode.UNAUTHENTICATED:
        assert message == "invalid token"


def test_minted_jwts_are_what_verify_reads() -> None:
    token = jwt_tokens.mint(
        TOKEN,
        name="n",
        expires_at=int(time.time()) + 60,
        scopes=[{"type": "PIPES:READ", "resource": "p", "fixed_params": {"a": 1}}],
        rps=3,
    )
    claims = jwt.decode(token, TOKEN, algorithms=["HS256"])
    assert claims["workspace_id"] == jwt_tokens.workspace_id(TOKEN)
    assert claims["limits"] == {"rps": 3}
    with pytest.raises(ValueError, match="type must be one of"):
        jwt_tokens.mint(TOKEN, name="n", expires_at=1, scopes=[{"type": "ADMIN", "resource": "x"}])


# --- end to end ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
async def suite(chdb_dir: Path) -> AsyncIterator[Suite]:
    warehouse = EmbeddedWarehouse(chdb_dir, unique_database("jwt"))
    await warehouse.open()
    await warehouse.ensure_schema(list(registry().values()))
    running = await start_suite(warehouse, gateway=False)
    body = b"\n".join(orjson.dumps(e) for e in EVENTS)
    reply = await running.ingest_stub().PostEvents(
        ingest_service_pb2.PostEventsRequest(
            name="ab_test_events", wait=True, body=HttpBody(content_type="text/plain", data=body)
        ),
        metadata=[("authorization", f"Bearer {TOKEN}")],
    )
    assert reply.successful_rows == len(EVENTS)
    yield running
    await running.stop()
    await warehouse.execute(f"DROP DATABASE IF EXISTS `{warehouse.database}`")
    await warehouse.close()


@pytest.fixture(scope="module")
@tier("envoy")
async def pair(
    suite: Suite, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[GatewayPair]:
    running = await start_pair(
        service_targets(suite.ingest.grpc, suite.query),
        tmp_path_factory.mktemp("jwt-envoy"),
        max_body_bytes=1024 * 1024,
        # As in `pipit up`: ours judges tokens (JWTs included) before reading a body.
        token_store=TokenStore(TOKEN, None),
    )
    yield running
    await running.stop()


@pytest.fixture(scope="module")
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


def _rows(answer: Any) -> list[dict[str, Any]]:
    return answer.json["data"]


def _assert_rows(got: list[dict[str, Any]], want: list[dict[str, Any]]) -> None:
    assert len(got) == len(want) > 0
    for row, expected in zip(got, want, strict=True):
        for key, value in expected.items():
            assert row[key] == pytest.approx(value), key


async def test_fixed_params_override_the_callers_parameter(
    pair: GatewayPair, http: aiohttp.ClientSession
) -> None:
    token = _sign(_claims())
    want = expected_summary(EVENTS, test_id="tenant_a")
    for query in ("", "?test_id=tenant_b", f"?test_id=tenant_c&token={TOKEN}"):
        headers = {"Authorization": f"Bearer {token}"}
        ours, envoy = await pair.send(http, "GET", PIPE + query, headers=headers)
        assert ours.status == 200, ours.body
        _assert_rows(_rows(ours), want)
        assert_same(ours, envoy)
    # ?token= carries a JWT as well as a header does.
    ours, envoy = await pair.send(http, "GET", f"{PIPE}?test_id=tenant_b&token={token}")
    assert ours.status == 200, ours.body
    _assert_rows(_rows(ours), want)
    assert_same(ours, envoy)


async def test_fixed_params_hold_when_the_pipe_is_read_through_the_query_api(
    pair: GatewayPair, http: aiohttp.ClientSession
) -> None:
    """A pipe is a table of /v0/sql too (by name, or `_` with pipeline=): the JWT's tenant
    still sees only its own rows there, never the pipe's default (every tenant)."""
    token = _sign(_claims())
    want = sorted(
        (row["variant"], row["users"]) for row in expected_summary(EVENTS, test_id="tenant_a")
    )
    headers = {"Authorization": f"Bearer {token}"}
    for query in (
        "/v0/sql?q=SELECT+variant,+users+FROM+test_summary+ORDER+BY+variant",
        "/v0/sql?pipeline=test_summary&q=SELECT+variant,+users+FROM+_+ORDER+BY+variant",
    ):
        ours, envoy = await pair.send(http, "GET", query, headers=headers)
        assert ours.status == 200, ours.body
        assert [(r["variant"], r["users"]) for r in _rows(ours)] == want
        assert_same(ours, envoy)


async def test_fixed_params_over_direct_grpc(suite: Suite) -> None:
    token = _sign(
        _claims(
            name="grpc_tenant_b",
            scopes=[
                {
                    "type": "PIPES:READ",
                    "resource": "test_summary",
                    "fixed_params": {"test_id": "tenant_b"},
                }
            ],
        )
    )
    reply = await suite.query_stub().TestSummary(
        query_service_pb2.TestSummaryRequest(test_id="tenant_c"),
        metadata=[("authorization", f"Bearer {token}")],
    )
    rows = json_format.MessageToDict(reply, preserving_proto_field_name=True)["data"]
    _assert_rows(rows, expected_summary(EVENTS, test_id="tenant_b"))
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await suite.query_stub().FeatureUsage(
            query_service_pb2.FeatureUsageRequest(),
            metadata=[("authorization", f"Bearer {token}")],
        )
    assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
    with pytest.raises(grpc.aio.AioRpcError) as expired:
        await suite.query_stub().TestSummary(
            query_service_pb2.TestSummaryRequest(),
            metadata=[("authorization", f"Bearer {_sign(_claims(exp=1))}")],
        )
    assert expired.value.code() == grpc.StatusCode.PERMISSION_DENIED


@pytest.mark.parametrize(
    ("token", "target", "code"),
    [
        (_sign(_claims(exp=int(time.time()) - 5)), PIPE, 7),
        (_tampered(_sign(_claims())), PIPE, 16),
        (_unsigned(_claims()), PIPE, 16),
        (_sign(_claims(), algorithm="HS384"), PIPE, 16),
        (_sign(_claims()), "/v0/pipes/test_segments.json", 7),  # wrong resource
        (_sign(_claims()), "/v0/sql?q=SELECT+count()+FROM+ab_test_events", 7),
        (_sign(_claims()), "/v0/tokens", 7),
        (_sign(_claims(scopes=[{"type": "TOKENS", "resource": "x"}])), PIPE, 7),
        # A fixed parameter the pipe does not take filters nothing: refused, not ignored.
        (
            _sign(
                _claims(
                    scopes=[
                        {
                            "type": "PIPES:READ",
                            "resource": "test_summary",
                            "fixed_params": {"org": "a"},
                        }
                    ]
                )
            ),
            PIPE,
            7,
        ),
    ],
    ids=[
        "expired",
        "tampered",
        "alg-none",
        "hs384",
        "wrong-resource",
        "sql",
        "tokens-api",
        "unknown-type",
        "unknown-param",
    ],
)
async def test_refusals_through_both_gateways(
    pair: GatewayPair, http: aiohttp.ClientSession, token: str, target: str, code: int
) -> None:
    """403 as Tinybird answers every refused token; the body's gRPC code tells a JWT that is
    not ours (UNAUTHENTICATED, 16) from one that may not do this (PERMISSION_DENIED, 7)."""
    ours, envoy = await pair.send(http, "GET", target, headers={"Authorization": f"Bearer {token}"})
    assert ours.status == 403, ours.body
    assert ours.json["code"] == code
    assert_same(ours, envoy)


async def test_an_events_api_jwt_appends_only_its_datasource(
    pair: GatewayPair, http: aiohttp.ClientSession
) -> None:
    token = _sign(_claims(scopes=[{"type": "DATASOURCES:APPEND", "resource": "ab_test_events"}]))
    event = dict(EVENTS[0], test_id="jwt_append")
    for target, status in (
        ("/v0/events?name=ab_test_events", 202),
        ("/v0/events?name=user_events", 403),
    ):
        for gateway in GATEWAYS:
            async with http.post(
                pair.urls[gateway] + target,
                data=orjson.dumps(event),
                headers={"Authorization": f"Bearer {token}"},
            ) as response:
                assert response.status == status, (gateway, await response.text())


async def test_rps_limit(pair: GatewayPair, http: aiohttp.ClientSession) -> None:
    # One request a second per JWT name: back-to-back requests meet a 429 with Retry-After
    # (within a few, however slow the machine), through either gateway.
    for gateway in GATEWAYS:
        token = _sign(_claims(name=f"limited_{gateway}", limits={"rps": 1}))
        statuses = []
        for _ in range(20):
            async with http.get(
                pair.urls[gateway] + PIPE, headers={"Authorization": f"Bearer {token}"}
            ) as response:
                statuses.append(response.status)
                if response.status == 429:
                    assert response.headers["Retry-After"] == "1"
                    assert response.headers["X-RateLimit-Limit"] == "1"
                    assert "per second" in (await response.json())["message"]
                    break
                assert response.headers["X-RateLimit-Limit"] == "1"
        assert statuses[0] == 200 and statuses[-1] == 429, (gateway, statuses)


def test_pipit_token_jwt(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    from pipit.cli import main

    base = ["token", "jwt", "--data-dir", str(tmp_path), "--name", "cli_tenant"]
    # No admin token anywhere: nothing is made up.
    assert main([*base, "--pipe", "test_summary"]) == 2
    assert "no admin token" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []
    args = ["--pipe", "test_summary", "--fixed-param", "test_id=tenant_b", "--ttl", "10m"]
    assert main([*base, *args, "--rps", "4", "--admin-token", TOKEN]) == 0
    token = capsys.readouterr().out.strip()
    principal = identify(STORE, token)
    assert principal.scopes == ("PIPES:READ:test_summary",)
    assert principal.fixed_params == {"test_summary": {"test_id": "tenant_b"}}
    assert principal.rps == 4
    assert 590 <= jwt.decode(token, TOKEN, algorithms=["HS256"])["exp"] - time.time() <= 600


async def test_fixed_params_on_a_tinybird_template_pipe(chdb_dir: Path) -> None:
    # The tutorials' own datafiles: test_summary reads `{{String(test_id, '')}}` through the
    # template binder, which the fixed value reaches the same way.
    warehouse = EmbeddedWarehouse(chdb_dir, unique_database("jwt_datafiles"))
    await warehouse.open()
    tutorials = Path(__file__).parent / "projects" / "tutorials"
    suite = await start_suite(warehouse, project=tutorials)
    try:
        async with aiohttp.ClientSession() as http:
            body = b"\n".join(orjson.dumps(e) for e in EVENTS)
            async with http.post(
                f"{suite.gateway_url}/v0/events?name=ab_test_events&wait=true",
                data=body,
                headers={"Authorization": f"Bearer {TOKEN}"},
            ) as response:
                assert response.status == 200, await response.text()
            dates = {"start_date": "2024-01-01 00:00:00", "end_date": "2024-12-31 23:59:59"}
            token = _sign(
                _claims(
                    name="datafiles_tenant_c",
                    scopes=[
                        {
                            "type": "PIPES:READ",
                            "resource": "test_summary",
                            "fixed_params": {"test_id": "tenant_c"},
                        }
                    ],
                )
            )
            async with http.get(
                f"{suite.gateway_url}{PIPE}",
                params={"test_id": "tenant_a", **dates},
                headers={"Authorization": f"Bearer {token}"},
            ) as response:
                assert response.status == 200, await response.text()
                rows = (await response.json())["data"]
        _assert_rows(rows, expected_summary(EVENTS, test_id="tenant_c", **dates))
    finally:
        await suite.stop()
        await warehouse.execute(f"DROP DATABASE IF EXISTS `{warehouse.database}`")
        await warehouse.close()
