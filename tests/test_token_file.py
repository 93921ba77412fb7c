"""The token file as operators really leave it: corrupt, half-written, wrongly typed or
mangled by hand, while servers run. Requests never fail because of it: the last good set
of tokens stays in force (only the admin token if there never was one), one error is
logged per change of the file, and a fixed file is picked up again."""

from __future__ import annotations

import asyncio
import json
import os
import tempfile
import time
from pathlib import Path

import aiohttp
import orjson
import pytest
from harness import TOKEN, free_port, start_suite
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from processes import start_pipit
from structlog.testing import capture_logs

from common.datasources import registry
from common.tokens import (
    ADMIN,
    RELOAD_SECONDS,
    TokenError,
    TokenStore,
    digest,
    parse_token_file,
)
from pipit.cli import main

pytestmark = pytest.mark.e2e

POOL = [(f"p.pool-token-{i}-abcdefghijklmnop", f"pool{i}") for i in range(4)]
SCOPES = ["PIPES:READ:*", "DATASOURCES:APPEND:user_events", "DATASOURCES:READ:ab_*", "ADMIN"]
REJECTED = "token file rejected: the last good tokens stay in force until it is fixed"


def _entry(index: int, scopes: list[str], rate_limit: int | None = None) -> dict:
    token, name = POOL[index]
    entry = {"name": name, "sha256": digest(token), "scopes": scopes, "created_at": ""}
    if rate_limit is not None:
        entry["rate_limit"] = rate_limit
    return entry


@st.composite
def good_docs(draw, min_tokens: int = 0) -> dict:
    chosen = draw(st.lists(st.integers(0, len(POOL) - 1), unique=True, min_size=min_tokens))
    return {
        "tokens": [
            _entry(
                i,
                draw(st.lists(st.sampled_from(SCOPES), min_size=1, max_size=3, unique=True)),
                draw(st.none() | st.integers(0, 1000)),
            )
            for i in chosen
        ]
    }


# (field, value): each makes an otherwise good entry invalid.
MANGLES = [
    ("name", 5),
    ("name", ""),
    ("name", "has space"),
    ("name", "x" * 65),
    ("name", None),
    ("sha256", "not-hex"),
    ("sha256", 12),
    ("sha256", "A" * 64),
    ("sha256", None),
    ("scopes", "PIPES:READ:*"),
    ("scopes", []),
    ("scopes", ["NOT:A:SCOPE"]),
    ("scopes", ["ADMIN\n"]),
    ("scopes", [1]),
    ("scopes", None),
    ("rate_limit", "5"),
    ("rate_limit", -1),
    ("rate_limit", True),
    ("rate_limit", 1.5),
    ("rate_limit", 2**40),
    ("created_at", 7),
]
JSON = st.recursive(
    # Integers within 64 bits: what orjson (and so any token file) can hold.
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.floats(allow_nan=False)
    | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
    max_leaves=10,
)


def _independently_valid_shape(data: bytes) -> bool:
    """Whether bytes could be a token file at all, judged without the product's parser."""
    try:
        doc = json.loads(data)
    except ValueError:
        return False
    return isinstance(doc, dict) and isinstance(doc.get("tokens"), list)


@st.composite
def bad_files(draw) -> bytes:
    kind = draw(
        st.sampled_from(["truncated", "bytes", "shape", "mangled", "entry", "duplicate", "empty"])
    )
    if kind == "truncated":  # a write caught half-way
        whole = orjson.dumps(draw(good_docs()))
        return whole[: draw(st.integers(0, len(whole) - 1))]
    if kind == "bytes":
        data = draw(st.binary(max_size=120))
        assume(not _independently_valid_shape(data))
        return data
    if kind == "shape":  # valid JSON, not a token file
        value = draw(JSON)
        doc = draw(st.sampled_from([value, {"tokens": value}]))
        data = orjson.dumps(doc)
        assume(not _independently_valid_shape(data))
        return data
    if kind == "mangled":
        doc = draw(good_docs(min_tokens=1))
        entry = draw(st.sampled_from(doc["tokens"]))
        field, value = draw(st.sampled_from(MANGLES))
        entry[field] = value
        return orjson.dumps(doc)
    if kind == "entry":
        doc = draw(good_docs())
        doc["tokens"].insert(0, draw(st.sampled_from(["x", 1, None, [], True])))
        return orjson.dumps(doc)
    if kind == "duplicate":  # two entries for one token, perhaps with other scopes
        doc = draw(good_docs(min_tokens=1))
        twin = dict(doc["tokens"][0], name="twin", scopes=["ADMIN"])
        doc["tokens"].append(twin)
        return orjson.dumps(doc)
    return draw(st.sampled_from([b"", b"\n", b"   \n\t"]))


STEPS = st.lists(
    st.one_of(
        good_docs().map(lambda doc: ("good", doc)),
        bad_files().map(lambda data: ("bad", data)),
        st.just(("delete", None)),
    ),
    max_size=8,
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(steps=STEPS)
def test_any_sequence_of_token_files(steps):
    """Whatever is written, in place and in any order: every answer is the last good
    file's, one error is logged per change to a bad file, and nothing raises."""
    with tempfile.TemporaryDirectory() as directory, capture_logs() as logs:
        path = Path(directory) / "tokens.json"
        now = [0.0]
        store = TokenStore(TOKEN, path, clock=lambda: now[0])
        in_force: dict[str, tuple] = {}
        last: bytes | None = None
        errors = 0
        for kind, payload in steps:
            if kind == "delete":
                path.unlink(missing_ok=True)
                in_force, last = {}, None
            else:
                data = orjson.dumps(payload) if kind == "good" else payload
                path.write_bytes(data)  # in place, as an editor or `echo >` would
                if data != last and kind == "bad":
                    errors += 1
                if kind == "good":
                    in_force = {
                        e["sha256"]: (
                            e["sha256"],
                            e["name"],
                            tuple(e["scopes"]),
                            e.get("rate_limit"),
                        )
                        for e in payload["tokens"]
                    }
                last = data
            now[0] += RELOAD_SECONDS
            for token, _ in POOL:
                principal = store.authenticate(token)
                got = None
                if principal is not None:
                    got = (principal.key, principal.name, principal.scopes, principal.rate_limit)
                assert got == in_force.get(digest(token))
            admin = store.authenticate(TOKEN)
            assert admin is not None and admin.scopes == (ADMIN,)
            assert store.authenticate("p.not-a-token-of-anyone") is None
        rejected = [entry for entry in logs if entry["log_level"] == "error"]
        assert len(rejected) == errors, rejected
        assert all(entry["event"] == REJECTED for entry in rejected)


def test_a_missing_file_means_only_the_admin_token(tmp_path: Path):
    store = TokenStore(TOKEN, tmp_path / "absent.json")
    assert store.authenticate(TOKEN).scopes == (ADMIN,)
    assert store.authenticate(POOL[0][0]) is None


def test_an_unreadable_path_is_reported_once(tmp_path: Path):
    now = [0.0]
    with capture_logs() as logs:
        store = TokenStore(TOKEN, tmp_path, clock=lambda: now[0])  # a directory
        for _ in range(3):
            now[0] += RELOAD_SECONDS
            assert store.authenticate(TOKEN) is not None
    assert [entry["log_level"] for entry in logs] == ["error"]
    assert "cannot read the token file" in logs[0]["problem"]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"{", "not valid JSON"),
        (b"", "the file is empty"),
        (b"[]", 'expected a JSON object {"tokens": [...]}'),
        (b'{"tokens": {}}', 'expected a JSON object {"tokens": [...]}'),
        (b'{"tokens": ["x"]}', "token #1 is not a JSON object"),
        (
            orjson.dumps({"tokens": [dict(_entry(0, ["PIPES:READ:*"]), rate_limit="5")]}),
            "token #1 (pool0): 'rate_limit' must be a whole number",
        ),
        (
            orjson.dumps({"tokens": [_entry(0, ["PIPES:READ:*"]), _entry(0, ["ADMIN"])]}),
            "token #2 (pool0) has the same sha256 as token #1",
        ),
        (
            orjson.dumps({"tokens": [_entry(0, ["PIPES:READ:x y"])]}),
            "token #1 (pool0): invalid scope 'PIPES:READ:x y'",
        ),
    ],
)
def test_parse_errors_say_what_is_wrong(data: bytes, message: str):
    with pytest.raises(TokenError) as caught:
        parse_token_file(data)
    assert message in str(caught.value)


def test_the_token_commands_refuse_the_admin_name_and_a_corrupt_file(tmp_path: Path, capsys):
    path = tmp_path / "tokens.json"
    base = ["token", "create", "--tokens-file", str(path), "--scope", "PIPES:READ:*"]
    for name in ("admin", "Admin"):
        assert main([*base, "--name", name]) == 2
        assert "reserved for the admin token" in capsys.readouterr().err
    assert not path.exists()
    path.write_bytes(b'{"tokens": [')
    assert main(["token", "list", "--tokens-file", str(path)]) == 2
    assert f"{path}: not valid JSON" in capsys.readouterr().err
    assert main([*base, "--name", "reader"]) == 2
    assert path.read_bytes() == b'{"tokens": ['  # left for the operator to repair


def _good_file(path: Path, entries: list[dict]) -> None:
    """Replaces the file whole (write, then rename), as `pipit token` and Kubernetes do."""
    scratch = path.with_name("scratch.json")
    scratch.write_bytes(orjson.dumps({"tokens": entries}))
    os.replace(scratch, path)


@pytest.fixture
async def suite_with_tokens(chdb_dir, tmp_path: Path):
    from conftest import unique_database

    from common.warehouse.embedded import EmbeddedWarehouse

    path = tmp_path / "tokens.json"
    _good_file(path, [_entry(0, ["PIPES:READ:*"]), _entry(1, ["DATASOURCES:APPEND:user_events"])])
    warehouse = EmbeddedWarehouse(chdb_dir, unique_database("tokfile"))
    await warehouse.open()
    await warehouse.ensure_schema(list(registry().values()))
    suite = await start_suite(warehouse, tokens_file=path)
    yield suite, path
    await suite.stop()
    await warehouse.close()


async def _statuses(http: aiohttp.ClientSession, base: str) -> dict[str, int | str]:
    """The pipe answer for each kind of caller: its status, or for a 403 the gRPC code in its
    body (both an unknown token and a missing scope are 403, as Tinybird answers them)."""
    callers = {
        "reader": POOL[0][0],
        "appender": POOL[1][0],
        "late": POOL[2][0],
        "stranger": "p.not-a-token-of-anyone",
        "admin": TOKEN,
    }
    answers = {}
    for who, token in callers.items():
        async with http.get(f"{base}/v0/pipes/test_summary.json", params={"token": token}) as r:
            answers[who] = r.status
            if r.status == 403:
                answers[who] = {7: "scope", 16: "unknown"}[(await r.json())["code"]]
    return answers


BEFORE = {
    "reader": 200,
    "appender": "scope",
    "late": "unknown",
    "stranger": "unknown",
    "admin": 200,
}
FIXED = {"reader": 200, "appender": "unknown", "late": 200, "stranger": "unknown", "admin": 200}


async def _until(check, what: str) -> None:
    for _ in range(200):
        if await check():
            return
        await asyncio.sleep(0.05)
    pytest.fail(f"never happened: {what}")


async def test_garbage_written_by_hand_while_serving(suite_with_tokens):
    suite, path = suite_with_tokens
    async with aiohttp.ClientSession() as http:
        assert await _statuses(http, suite.gateway_url) == BEFORE
        with capture_logs() as logs:
            path.write_bytes(b'{"tokens": [{"name": "reader", "sha256": "\x00\xff garbage')

            def rejections() -> list[dict]:
                return [e for e in logs if e.get("event") == REJECTED]

            async def rejected() -> bool:
                assert await _statuses(http, suite.gateway_url) == BEFORE
                return bool(rejections())

            await _until(rejected, "the corrupt file was noticed")
            # Keep asking across further re-reads of the file: still the last good answers,
            # and no second error for the same file.
            until = time.monotonic() + 2.5 * RELOAD_SECONDS
            while time.monotonic() < until:
                assert await _statuses(http, suite.gateway_url) == BEFORE
                await asyncio.sleep(0.1)
            assert len(rejections()) == 1
            assert "not valid JSON" in rejections()[0]["problem"]
            _good_file(path, [_entry(0, ["PIPES:READ:*"]), _entry(2, ["PIPES:READ:test_*"])])

            async def recovered() -> bool:
                return await _statuses(http, suite.gateway_url) == FIXED

            await _until(recovered, "the fixed file was picked up")
        assert len(rejections()) == 1


async def test_pipit_up_survives_a_hand_corrupted_token_file(tmp_path: Path):
    """The issue's case on a real `pipit up`: its log (stderr) has one error line for the
    corrupt file, whatever the number of requests and re-reads."""
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    path = data_dir / "tokens.json"
    _good_file(path, [_entry(0, ["PIPES:READ:*"]), _entry(1, ["DATASOURCES:APPEND:user_events"])])
    env = {
        "PIPIT_DATA_DIR": str(data_dir),
        "PIPIT_INGEST_PORT": str(free_port()),
        "PIPIT_QUERY_PORT": str(free_port()),
        "PIPIT_GATEWAY_PORT": str(free_port()),
        "PIPIT_METRICS_PORT": "0",
        "PIPIT_CLICKHOUSE_URL": "",
        "PIPIT_ADMIN_TOKEN": TOKEN,
    }
    log_path = tmp_path / "stderr.log"

    def rejections() -> list[dict]:
        lines = log_path.read_text().splitlines()
        return [doc for doc in map(_json_line, lines) if doc.get("event") == REJECTED]

    with log_path.open("w") as log_file:
        up = start_pipit(["up"], env, {"gateway"}, cwd=str(tmp_path), stderr=log_file)
        try:
            base = up.listening["gateway"]
            async with aiohttp.ClientSession() as http:
                assert await _statuses(http, base) == BEFORE
                with path.open("r+b") as edited:  # a hand edit gone wrong, in place
                    edited.seek(5)
                    edited.write(b"<<garbage>>")

                async def rejected() -> bool:
                    assert await _statuses(http, base) == BEFORE
                    return bool(rejections())

                await _until(rejected, "pipit up logged the corrupt file")
                until = time.monotonic() + 2.5 * RELOAD_SECONDS
                while time.monotonic() < until:
                    assert await _statuses(http, base) == BEFORE
                    await asyncio.sleep(0.1)
                _good_file(path, [_entry(0, ["PIPES:READ:*"]), _entry(2, ["PIPES:READ:*"])])

                async def recovered() -> bool:
                    return await _statuses(http, base) == FIXED

                await _until(recovered, "pipit up picked up the fixed file")
        finally:
            assert up.stop() == 0
    assert len(rejections()) == 1, rejections()
    assert "UNKNOWN" not in log_path.read_text()


def _json_line(line: str) -> dict:
    try:
        doc = json.loads(line)
    except ValueError:
        return {}
    return doc if isinstance(doc, dict) else {}
