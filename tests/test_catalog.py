"""The listings (`GET /v0/pipes`, `GET /v0/datasources[/<name>]`) and a pipe's description
(services/query/catalog.py `describe_pipe`): what each token sees, the shapes Tinybird's
clients read, column types that are the engine's own, and row counts equal to what the test
sent. Both gateways answer alike: tests/test_envoy_conformance.py."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import aiohttp
import orjson
import pytest
from conftest import unique_database
from endpoint_cases import CASES, DATA
from harness import TOKEN, Suite, start_suite

from common.datasources import registry
from common.tokens import TokenFile
from common.warehouse.base import Warehouse
from common.warehouse.clickhouse import ClickHouseWarehouse
from common.warehouse.embedded import EmbeddedWarehouse
from pipit.project.artifact import builtin
from pipit.project.runtime import Project
from services.query.catalog import describe_pipe, row_counts

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parent.parent
TUTORIAL_DATAFILES = ROOT / "tests" / "projects" / "tutorials"
PIPES = sorted({name for name, _ in CASES})
DATASOURCES = sorted(DATA)
# Rows the counting test sends to app_events beside DATA's, and how many of them are bad.
EXTRA_GOOD, EXTRA_BAD = 7, 3


def _headers(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture(scope="module")
def tokens(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    file = TokenFile(tmp_path_factory.mktemp("catalog-tokens") / "tokens.json")
    return {
        "path": file.path,
        "ab_pipes": file.create("ab-pipes", ["PIPES:READ:test_*"]),
        "one_pipe": file.create("one-pipe", ["PIPES:READ:feature_usage"]),
        "reader": file.create("reader", ["DATASOURCES:READ:app_events"]),
        "appender": file.create("appender", ["DATASOURCES:APPEND:user_events"]),
        "mixed": file.create(
            "mixed", ["PIPES:READ:get_*", "DATASOURCES:READ:click*", "DATASOURCES:APPEND:ab_*"]
        ),
    }


async def _post(http: aiohttp.ClientSession, base: str, name: str, body: bytes) -> dict:
    url = f"{base}/v0/events?name={name}&wait=true"
    async with http.post(url, data=body, headers=_headers(TOKEN)) as response:
        assert response.status == 200, await response.text()
        return await response.json()


@pytest.fixture(scope="module")
async def suite(chdb_dir: Path, tokens: dict[str, Any]) -> AsyncIterator[Suite]:
    warehouse = EmbeddedWarehouse(chdb_dir, unique_database("catalog"))
    await warehouse.open()
    await warehouse.ensure_schema(list(registry().values()))
    running = await start_suite(warehouse, tokens_file=tokens["path"])
    async with aiohttp.ClientSession() as http:
        for name, rows in DATA.items():
            body = b"\n".join(map(orjson.dumps, rows))
            answer = await _post(http, running.gateway_url, name, body)
            assert answer == {"successful_rows": len(rows), "quarantined_rows": 0}
    yield running
    await running.stop()
    await warehouse.execute(f"DROP DATABASE IF EXISTS `{warehouse.database}`")
    await warehouse.close()


@pytest.fixture(scope="module")
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def _get(
    http: aiohttp.ClientSession, suite: Suite, path: str, token: str | None = TOKEN
) -> tuple[int, Any]:
    headers = _headers(token) if token is not None else {}
    async with http.get(suite.gateway_url + path, headers=headers) as response:
        return response.status, orjson.loads(await response.read())


# --- pipes -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("token", "expected"),
    [
        ("admin", PIPES),
        ("ab_pipes", ["test_results", "test_segments", "test_summary", "test_timeseries"]),
        ("one_pipe", ["feature_usage"]),
        ("mixed", ["get_popular_pages", "get_session_events", "get_user_journey"]),
        ("reader", []),
    ],
)
async def test_the_pipes_listed_are_those_the_token_may_read(
    suite: Suite, http: aiohttp.ClientSession, tokens: dict, token: str, expected: list[str]
) -> None:
    status, body = await _get(
        http, suite, "/v0/pipes", TOKEN if token == "admin" else tokens[token]
    )
    assert status == 200
    assert [pipe["name"] for pipe in body["pipes"]] == expected


async def test_listing_needs_a_known_token(suite: Suite, http: aiohttp.ClientSession) -> None:
    # 403, as Tinybird answers a missing or unknown token (README, "Errors").
    for path, token in [
        ("/v0/pipes", None),
        ("/v0/pipes", "not-a-token"),
        ("/v0/datasources", None),
        ("/v0/datasources/app_events", "not-a-token"),
        ("/v0/pipes/openapi.json", None),
    ]:
        status, body = await _get(http, suite, path, token)
        assert (status, body["code"]) == (403, 16), (path, body)  # UNAUTHENTICATED


async def test_listed_columns_are_what_each_pipe_answers(
    suite: Suite, http: aiohttp.ClientSession
) -> None:
    # The engine's own `meta` of a real call is the truth the declared types must match.
    status, listing = await _get(http, suite, "/v0/pipes")
    assert status == 200
    listed = {pipe["name"]: pipe for pipe in listing["pipes"]}
    for name, given in CASES:
        query = urlencode(given, doseq=True)  # a list once per item
        status, answer = await _get(http, suite, f"/v0/pipes/{name}.json?{query}")
        assert status == 200, answer
        declared = [{"name": c["name"], "type": c["type"]} for c in listed[name]["columns"]]
        assert declared == answer["meta"], name
        # Tinybird's clients read the endpoint node's columns.
        assert listed[name]["nodes"][-1]["columns"] == answer["meta"], name


async def test_a_pipe_in_the_listing_as_tinybird_clients_read_it(
    suite: Suite, http: aiohttp.ClientSession, tokens: dict
) -> None:
    status, body = await _get(http, suite, "/v0/pipes", tokens["ab_pipes"])
    assert status == 200
    segments = next(p for p in body["pipes"] if p["name"] == "test_segments")
    # Written out from the tutorial's declaration, not read back from the descriptors.
    assert segments["type"] == "endpoint"
    assert segments["endpoint"] == "/v0/pipes/test_segments.json"
    assert segments["description"].startswith("A/B testing: the summary metrics broken down")
    assert [p["name"] for p in segments["parameters"]] == [
        "test_id",
        "segment",
        "start_date",
        "end_date",
    ]
    segment = segments["parameters"][1]
    assert segment == {
        "name": "segment",
        "type": "String",
        "default_value": "device",
        "required": False,
        "description": "The column that defines segments: `device` (default) or `country`.",
        "allowed_values": ["device", "country"],
    }
    (node,) = segments["nodes"]
    assert node["name"] == "test_segments"
    assert "sql" not in node  # only ADMIN sees the SQL
    assert node["params"][1] == {
        "name": "segment",
        "type": "String",
        "default": "device",
        "required": False,
        "description": segment["description"],
    }
    assert node["params"][0]["default"] is None


def test_describe_pipe_types_defaults_and_sql() -> None:
    project = Project(builtin())
    timeline = describe_pipe(project, "user_event_timeline", with_sql=True)
    by_name = {p["name"]: p for p in timeline["nodes"][0]["params"]}
    assert by_name["user_id"]["required"] is True
    assert by_name["limit"] == {
        "name": "limit",
        "type": "Int32",
        "default": 100,  # a number, as Tinybird's clients read an Int32's default
        "required": False,
        "description": "Most events returned (1..10000, default 100).",
    }
    sql = (ROOT / "services" / "query" / "sql" / "user_event_timeline.sql").read_text()
    assert timeline["nodes"][0]["sql"] == sql
    assert "sql" not in describe_pipe(project, "user_event_timeline")["nodes"][0]
    with pytest.raises(KeyError):
        describe_pipe(project, "no_such_pipe")


async def test_describe_pipe_of_a_tinybird_project(embedded_warehouse) -> None:
    suite = await start_suite(embedded_warehouse, gateway=False, project=TUTORIAL_DATAFILES)
    try:
        project = suite.current.project
        summary = describe_pipe(project, "test_summary", with_sql=True)
    finally:
        await suite.stop()
    # From tests/projects/tutorials/endpoints/test_summary.pipe, read by eye.
    assert summary["description"].startswith("Provides summary metrics for each A/B test")
    params = {p["name"]: p for p in summary["nodes"][-1]["params"]}
    assert params["start_date"]["type"] == "DateTime"
    assert params["start_date"]["default"] == "2023-01-01 00:00:00"
    assert params["test_id"]["type"] == "String"
    assert [n["name"] for n in summary["nodes"]] == ["test_summary_node"]
    assert "count(DISTINCT user_id) AS users" in summary["nodes"][0]["sql"]
    columns = {c["name"]: c["type"] for c in summary["columns"]}
    assert columns["users"] == "UInt64"
    assert columns["total_revenue"] == "Float64"
    # The datafile describes neither: no boilerplate from the generated protos instead.
    assert params["test_id"]["description"] == ""
    assert {c["description"] for c in summary["columns"]} == {""}


# --- datasources -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("token", "expected"),
    [
        ("admin", DATASOURCES),
        ("reader", ["app_events"]),
        ("appender", ["user_events"]),
        ("mixed", ["ab_test_events", "clickstream_events"]),
        ("ab_pipes", []),
    ],
)
async def test_the_datasources_listed_are_those_the_token_may_read_or_append_to(
    suite: Suite, http: aiohttp.ClientSession, tokens: dict, token: str, expected: list[str]
) -> None:
    status, body = await _get(
        http, suite, "/v0/datasources", TOKEN if token == "admin" else tokens[token]
    )
    assert status == 200
    assert [ds["name"] for ds in body["datasources"]] == expected


@pytest.mark.parametrize(
    ("token", "name", "status"),
    [
        ("admin", "app_events", 200),
        ("reader", "app_events", 200),
        ("appender", "user_events", 200),
        ("reader", "user_events", 403),
        ("ab_pipes", "app_events", 403),
        ("admin", "no_such_datasource", 404),
        # Without the scope, whether it exists is not told.
        ("reader", "no_such_datasource", 403),
        ("admin", "app_events_quarantine", 404),
    ],
)
async def test_one_datasource(
    suite: Suite, http: aiohttp.ClientSession, tokens: dict, token: str, name: str, status: int
) -> None:
    got, body = await _get(
        http, suite, f"/v0/datasources/{name}", TOKEN if token == "admin" else tokens[token]
    )
    assert got == status, body
    if status == 200:
        assert body["name"] == name
    else:
        assert name in body["error"]


async def test_a_datasource_as_tinybird_clients_read_it(
    suite: Suite, http: aiohttp.ClientSession
) -> None:
    status, body = await _get(http, suite, "/v0/datasources/app_events")
    assert status == 200
    # From tests/projects/tutorials/datasources/app_events.datasource, read by eye.
    assert body["description"] == "Captures all user events from SaaS applications"
    assert body["engine"]["engine"] == "MergeTree"
    assert body["engine"]["engine_sorting_key"] == "timestamp, user_id, event_type"
    assert body["engine"]["engine_partition_key"] == "toYYYYMM(timestamp)"
    names = [c["name"] for c in body["columns"]]
    assert names == [
        "event_id",
        "user_id",
        "session_id",
        "event_type",
        "feature",
        "timestamp",
        "device_type",
        "browser",
        "os",
        "location",
        "metadata",
    ]
    timestamp = body["columns"][5]
    assert timestamp == {
        "name": "timestamp",
        "normalized_name": "timestamp",
        "type": "DateTime",
        "nullable": False,
        "jsonpath": "$.timestamp",
        "default_value": None,
        "codec": None,
    }
    # The listing holds the same entry.
    status, listing = await _get(http, suite, "/v0/datasources")
    assert next(ds for ds in listing["datasources"] if ds["name"] == "app_events") == body


async def test_row_and_quarantined_counts_are_what_was_sent(
    suite: Suite, http: aiohttp.ClientSession
) -> None:
    good = [{**DATA["app_events"][0], "event_id": f"extra_{i}"} for i in range(EXTRA_GOOD)]
    bad = [{**DATA["app_events"][0], "timestamp": "not a time"} for _ in range(EXTRA_BAD)]
    answer = await _post(
        http, suite.gateway_url, "app_events", b"\n".join(map(orjson.dumps, good + bad))
    )
    assert answer == {"successful_rows": EXTRA_GOOD, "quarantined_rows": EXTRA_BAD}
    status, body = await _get(http, suite, "/v0/datasources")
    assert status == 200
    counts = {
        ds["name"]: (ds["statistics"]["row_count"], ds["quarantine_rows"])
        for ds in body["datasources"]
    }
    expected = {name: (len(rows), 0) for name, rows in DATA.items()}
    expected["app_events"] = (len(DATA["app_events"]) + EXTRA_GOOD, EXTRA_BAD)
    assert counts == expected


@pytest.mark.parametrize("engine", ["chdb", "clickhouse"])
async def test_row_counts_on_both_engines(
    request: pytest.FixtureRequest, chdb_dir: Path, engine: str
) -> None:
    database = unique_database("counts")
    warehouse: Warehouse = (
        EmbeddedWarehouse(chdb_dir, database)
        if engine == "chdb"
        else ClickHouseWarehouse(request.getfixturevalue("clickhouse_url"), database)
    )
    await warehouse.open()
    datasources = [registry()["app_events"], registry()["user_events"]]
    try:
        await warehouse.ensure_schema(datasources)
        events = [{"event_id": f"e{i}"} for i in range(5)]
        await warehouse.insert_json_rows(
            "app_events", ["event_id"], b"\n".join(map(orjson.dumps, events))
        )
        # Arrived now: the quarantine table's TTL drops rows that arrived long ago.
        now = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S")
        refused = [{"raw": "{", "error": "not JSON", "arrived_at": now} for _ in range(2)]
        await warehouse.insert_json_rows(
            "user_events_quarantine",
            ["raw", "error", "arrived_at"],
            b"\n".join(map(orjson.dumps, refused)),
        )
        assert await row_counts(warehouse, datasources) == {
            "app_events": (5, 0),
            "user_events": (0, 2),
        }
        assert await row_counts(warehouse, []) == {}
    finally:
        await warehouse.execute(f"DROP DATABASE IF EXISTS `{database}`")
        await warehouse.close()
