"""The Query API under attack: every query of the corpus (attack_corpus.py), from a token of
each kind (append-only, read one datasource, pipes only, admin), on embedded chDB and on the
ClickHouse HTTP path (the test fixture, or the real server named by
PIPIT_TEST_CLICKHOUSE_URL), by GET and by POST, and a sample through the typed gRPC
`Query`. Each is refused with 403 or 400 (the admin token may read the
other datasource, and does), and after each: no file was written, no socket was opened, the
token file is as it was, the datasources hold what they held, and no response carries a
secret (the canary file, the process environment, the admin token, the token digests,
/etc/passwd)."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import grpc
import orjson
import pytest
from attack_corpus import CROSS_DATASOURCE, LEGITIMATE, corpus
from conftest import ENVIRON_CANARY, unique_database
from harness import TOKEN, Suite, start_suite

from common.datasources import registry
from common.tokens import TokenFile
from common.warehouse.base import Warehouse
from common.warehouse.clickhouse import ClickHouseWarehouse
from common.warehouse.embedded import EmbeddedWarehouse
from pipit.query.v1 import sql_service_pb2, sql_service_pb2_grpc

pytestmark = pytest.mark.e2e

VICTIM = "ab_test_events"
OTHER = "user_events"
SCOPES = {
    "append-only": ["DATASOURCES:APPEND:user_events"],
    "read-one": [f"DATASOURCES:READ:{VICTIM}"],
    "pipes-only": ["PIPES:READ:*"],
    "admin": None,
}
ATTACKS = corpus()
ROW = {
    "timestamp": "2023-06-15 14:30:00",
    "user_id": "u1",
    "test_id": "t",
    "variant": "A",
    "event_type": "page_view",
    "conversion": 1,
    "revenue": 2.5,
    "session_id": "s",
    "device": "mobile",
    "country": "US",
}


@dataclass
class Target:
    suite: Suite
    warehouse: Warehouse
    tokens: dict[str, str]
    token_file: Path
    token_file_bytes: bytes
    secrets: list[str]
    out: Path
    probe_dir: Path
    listener: str
    connections: list[int]


async def _listener() -> tuple[asyncio.Server, list[int]]:
    """A socket that counts every connection made to it: none may be."""
    counted = [0]

    async def accept(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        counted[0] += 1
        writer.close()

    return await asyncio.start_server(accept, "127.0.0.1", 0), counted


@pytest.fixture(scope="module", params=["chdb", "clickhouse"])
async def target(request, chdb_dir: Path, tmp_path_factory) -> AsyncIterator[Target]:
    base = tmp_path_factory.mktemp("attacks")
    canary = "canary-" + secrets.token_hex(16)
    database = unique_database("attacks")
    if request.param == "chdb":
        warehouse: Warehouse = EmbeddedWarehouse(chdb_dir, database)
    else:
        warehouse = ClickHouseWarehouse(request.getfixturevalue("clickhouse_url"), database)
    await warehouse.open()
    await warehouse.ensure_schema(list(registry().values()))
    body = b"\n".join(orjson.dumps({**ROW, "user_id": f"u{i}"}) for i in range(3))
    for name in (VICTIM,):
        await warehouse.insert_json_rows(name, registry()[name].column_names, body)
    secret_file = base / "secret.txt"
    secret_file.write_text(canary + "\n")
    token_file = TokenFile(base / "tokens.json")
    tokens = {
        name: token_file.create(name, scopes) if scopes else TOKEN
        for name, scopes in SCOPES.items()
    }
    server, connections = await _listener()
    port = server.sockets[0].getsockname()[1]
    suite = await start_suite(warehouse, tokens_file=token_file.path)
    digests = [entry.sha256 for entry in token_file.entries()]
    yield Target(
        suite=suite,
        warehouse=warehouse,
        tokens=tokens,
        token_file=token_file.path,
        token_file_bytes=token_file.path.read_bytes(),
        secrets=[canary, ENVIRON_CANARY, TOKEN, *tokens.values(), *digests, "root:x:0:0"],
        out=base / "out" / "probe.txt",
        probe_dir=base,
        listener=f"127.0.0.1:{port}",
        connections=connections,
    )
    await suite.stop()
    server.close()
    await warehouse.execute(f"DROP DATABASE IF EXISTS `{database}`")
    await warehouse.close()


def _fill(template: str, target: Target) -> str:
    return template.format(
        secret=target.probe_dir / "secret.txt",
        out=target.out,
        tokens=target.token_file,
        listener=target.listener,
        victim=VICTIM,
        other=OTHER,
        database=target.warehouse.database,
    )


# Each token's queries go by one of the Query API's bindings, so both are attacked: the query
# string of a GET, and the text/plain body of a POST as the SDKs send it.
POSTED = frozenset({"read-one", "admin"})


async def _sql(target: Target, q: str, scope: str) -> tuple[int, str]:
    url = f"{target.suite.gateway_url}/v0/sql"
    async with aiohttp.ClientSession() as http:
        if scope in POSTED:
            request = http.post(
                url,
                data=q.encode(),
                headers={
                    "Authorization": f"Bearer {target.tokens[scope]}",
                    "Content-Type": "text/plain",
                },
            )
        else:
            request = http.get(url, params={"q": q, "token": target.tokens[scope]})
        async with request as response:
            return response.status, await response.text()


def _files(directory: Path) -> set[Path]:
    return {path for path in directory.rglob("*") if path.is_file()}


@pytest.mark.parametrize("scope", list(SCOPES))
@pytest.mark.parametrize("attack", list(ATTACKS))
async def test_attack_is_refused_and_leaves_no_trace(
    target: Target, scope: str, attack: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    q = _fill(ATTACKS[attack], target)
    files_before = _files(target.probe_dir)
    outfile = attack.startswith("statement:outfile")
    if outfile:
        # A relative OUTFILE is written where the in-process engine runs: a directory of this
        # test's own, which nothing else writes (tests on the other worker write the repo's).
        monkeypatch.chdir(tmp_path)
    cwd_before = _files(Path.cwd()) if outfile else set()
    status, text = await _sql(target, q, scope)
    allowed = scope == "admin" and attack in CROSS_DATASOURCE
    if allowed:
        assert status == 200, text
    else:
        assert status in (400, 403), (status, text)
        body = orjson.loads(text)
        assert body["message"], body
    for secret in target.secrets:
        assert secret not in text, f"{secret[:12]}… leaked: {text[:300]}"
    assert _files(target.probe_dir) == files_before
    if outfile:
        assert _files(Path.cwd()) == cwd_before
    assert not target.out.exists()
    assert target.connections == [0]
    assert target.token_file.read_bytes() == target.token_file_bytes
    rows = await target.warehouse.query(f"SELECT count() AS n FROM {VICTIM}", {})  # noqa: S608
    assert rows.data == [{"n": 3}]


@pytest.mark.parametrize("scope", ["read-one", "admin"])
@pytest.mark.parametrize("query", list(LEGITIMATE))
async def test_legitimate_queries_still_answer(target: Target, scope: str, query: str):
    status, text = await _sql(target, _fill(LEGITIMATE[query], target), scope)
    assert status == 200, text
    assert orjson.loads(text)["data"]


@pytest.mark.parametrize("query", ["count", "constant", "cte"])
@pytest.mark.parametrize("scope", ["append-only", "pipes-only"])
async def test_tokens_without_a_read_scope_read_nothing(target: Target, scope: str, query: str):
    status, text = await _sql(target, _fill(LEGITIMATE[query], target), scope)
    if query == "constant":
        # Reads no datasource, so no scope is needed; only allowed functions ran.
        assert status == 200, text
    else:
        assert status == 403, text


# The typed gRPC method runs the same checks as the HTTP bindings; a sample of every kind.
TYPED_SAMPLE = [
    "expr:file:plain",
    "expr:file:no-from",
    "source:file:cte",
    "source:other-datasource:plain",
    "statement:outfile",
    "statement:multi-file",
    "statement:settings-readonly",
    "statement:format-template",
    "statement:pipe-shadowed-by-cte",
]


@pytest.mark.parametrize("attack", TYPED_SAMPLE)
async def test_the_typed_grpc_method_refuses_alike(target: Target, attack: str):
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{target.suite.query.port}")
    stub = sql_service_pb2_grpc.SqlServiceStub(channel)
    try:
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await stub.Query(
                sql_service_pb2.QueryRequest(q=_fill(ATTACKS[attack], target)),
                metadata=(("authorization", f"Bearer {target.tokens['read-one']}"),),
            )
    finally:
        await channel.close()
    assert refused.value.code() in (
        grpc.StatusCode.PERMISSION_DENIED,
        grpc.StatusCode.INVALID_ARGUMENT,
    )
    for secret in target.secrets:
        assert secret not in (refused.value.details() or "")
    assert not target.out.exists()
    assert target.connections == [0]
