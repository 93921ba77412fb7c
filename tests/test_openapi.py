"""The pipes' OpenAPI document (`GET /v0/pipes/openapi.json`, services/query/openapi.py):
valid OpenAPI 3 for the built-in tutorials and for a project of Tinybird datafiles, holding
only the pipes a token may read, with the parameters and answers the pipes really have; and
schemathesis, run against a live `pipit up` holding data, finds no server error and no
answer that breaks the document."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from conftest import unique_database
from endpoint_cases import DATA
from harness import TOKEN, Suite, free_port, start_suite
from processes import PipitProcess, start_pipit

from common.datasources import registry
from common.tokens import TokenFile
from common.warehouse.embedded import EmbeddedWarehouse

pytestmark = pytest.mark.e2e


def validate(document: dict[str, Any]) -> None:
    """openapi-spec-validator's check. Imported here, not at the top: every run collects this
    module (`pytest -m quick` too), and the import takes most of half a second."""
    from openapi_spec_validator import validate as check

    check(document)


ROOT = Path(__file__).resolve().parent.parent
TUTORIAL_DATAFILES = ROOT / "tests" / "projects" / "tutorials"
UP_TOKEN = "openapi-admin-token-0123456789"
# Bounded so that each run takes well under a minute on a shared machine.
EXAMPLES_PER_OPERATION = 30
# Fixed, so that a finding is reproducible with the same command.
SCHEMATHESIS_SEED = 20261129
# What must hold for every generated request: no 5xx, answers (bodies, content types,
# statuses, headers) as the document says. Not `positive_data_acceptance`: a document cannot
# say that `end_date` must not precede `start_date`, or that February has no 31st.
CHECKS = (
    "not_a_server_error",
    "response_schema_conformance",
    "content_type_conformance",
    "status_code_conformance",
    "response_headers_conformance",
)


# Every format a pipe answers in (issue 15), each a path of the document.
EXTENSIONS = ("json", "csv", "csvwithnames", "ndjson", "parquet")


async def _document(url: str, token: str) -> Any:
    async with aiohttp.ClientSession() as http:
        async with http.get(
            f"{url}/v0/pipes/openapi.json", headers={"Authorization": f"Bearer {token}"}
        ) as response:
            assert response.status == 200, await response.text()
            assert response.headers["Content-Type"] == "application/json"
            return orjson.loads(await response.read())


@pytest.fixture(scope="module")
def scoped(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    file = TokenFile(tmp_path_factory.mktemp("openapi-tokens") / "tokens.json")
    return {
        "path": file.path,
        "timeline": file.create("timeline", ["PIPES:READ:user_event_timeline"]),
        "datasources": file.create("datasources", ["DATASOURCES:READ:*"]),
    }


@pytest.fixture(scope="module")
async def suite(chdb_dir: Path, scoped: dict[str, Any]) -> AsyncIterator[Suite]:
    warehouse = EmbeddedWarehouse(chdb_dir, unique_database("openapi"))
    await warehouse.open()
    await warehouse.ensure_schema(list(registry().values()))
    running = await start_suite(warehouse, tokens_file=scoped["path"])
    yield running
    await running.stop()
    await warehouse.execute(f"DROP DATABASE IF EXISTS `{warehouse.database}`")
    await warehouse.close()


async def test_the_tutorials_document_is_valid_openapi(suite: Suite) -> None:
    document = await _document(suite.gateway_url, TOKEN)
    validate(document)
    assert document["openapi"].startswith("3.")
    assert sorted(document["paths"]) == sorted(
        f"/v0/pipes/{name}.{extension}"
        for name in suite.current.project.pipes
        for extension in EXTENSIONS
    )
    assert document["components"]["securitySchemes"]["tokenParameter"] == {
        "type": "apiKey",
        "in": "query",
        "name": "token",
        "description": "The same token as a query parameter, as Tinybird accepts it.",
    }
    assert document["components"]["securitySchemes"]["bearerAuth"]["scheme"] == "bearer"


async def test_a_scoped_token_sees_only_its_pipes(suite: Suite, scoped: dict) -> None:
    document = await _document(suite.gateway_url, scoped["timeline"])
    validate(document)
    assert sorted(document["paths"]) == sorted(
        f"/v0/pipes/user_event_timeline.{extension}" for extension in EXTENSIONS
    )
    nothing = await _document(suite.gateway_url, scoped["datasources"])
    validate(nothing)
    assert nothing["paths"] == {}


async def test_parameters_and_answer_as_the_tutorial_declares_them(suite: Suite) -> None:
    document = await _document(suite.gateway_url, TOKEN)
    operation = document["paths"]["/v0/pipes/user_event_timeline.json"]["get"]
    parameters = {p["name"]: p for p in operation["parameters"]}
    # From protos/pipit/query/v1/query_service.proto's UserEventTimelineRequest, read by eye.
    assert list(parameters) == ["user_id", "start_date", "end_date", "event_type", "limit", "q"]
    assert parameters["user_id"]["required"] is True
    assert parameters["user_id"]["schema"] == {"type": "string", "minLength": 1}
    assert parameters["limit"]["required"] is False
    assert parameters["limit"]["schema"] == {
        "type": "integer",
        "format": "int32",
        "minimum": 1,
        "maximum": 10000,
        "default": 100,
    }
    assert parameters["start_date"]["schema"]["default"] == "1970-01-01 00:00:00"
    assert parameters["start_date"]["description"].startswith("Earliest event time included")
    segments = document["paths"]["/v0/pipes/test_segments.json"]["get"]
    segment = next(p for p in segments["parameters"] if p["name"] == "segment")
    assert segment["schema"]["enum"] == ["device", "country"]
    typed, generic = operation["responses"]["200"]["content"]["application/json"]["schema"]["anyOf"]
    assert generic == {"$ref": "#/components/schemas/QueryAnswer"}  # with q=
    answer = typed["$ref"]
    row_ref = document["components"]["schemas"][answer.rsplit("/", 1)[1]]["properties"]["data"]
    row = document["components"]["schemas"][row_ref["items"]["$ref"].rsplit("/", 1)[1]]
    assert row["properties"]["timestamp"]["type"] == "string"
    assert row["required"][:3] == ["event_id", "user_id", "session_id"]
    summary = document["components"]["schemas"]["pipit.query.v1.TestSummaryRow"]
    assert summary["properties"]["users"]["type"] == "integer"
    assert summary["properties"]["conversion_rate"]["type"] == "number"
    for status in ("400", "403", "404", "429"):
        assert status in operation["responses"]


async def test_a_tinybird_project_document_is_valid_openapi(embedded_warehouse) -> None:
    suite = await start_suite(embedded_warehouse, project=TUTORIAL_DATAFILES)
    try:
        document = await _document(suite.gateway_url, TOKEN)
    finally:
        await suite.stop()
    validate(document)
    operation = document["paths"]["/v0/pipes/test_summary.json"]["get"]
    parameters = {p["name"]: p["schema"] for p in operation["parameters"]}
    # tests/projects/tutorials/endpoints/test_summary.pipe: DateTime(start_date, '2023-01-01 …')
    assert parameters["start_date"]["default"] == "2023-01-01 00:00:00"
    assert parameters["start_date"]["pattern"].startswith("^")
    assert operation["summary"].startswith("Provides summary metrics for each A/B test")


# Parameters and answer columns of many kinds: Nullable, Array, 64-bit, Bool, Date, DateTime64.
VARIED_PROJECT = {
    "datasources/readings.datasource": """DESCRIPTION >
    Readings sent by sensors.

SCHEMA >
    `timestamp` DateTime64(3) `json:$.timestamp`,
    `sensor` String `json:$.sensor`,
    `value` Float64 `json:$.value`,
    `ok` Bool `json:$.ok`,
    `tags` Array(String) `json:$.tags`,
    `note` Nullable(String) `json:$.note`,
    `count` Int64 `json:$.count`

ENGINE "MergeTree"
ENGINE_SORTING_KEY "sensor, timestamp"
""",
    "pipes/readings_of.pipe": """DESCRIPTION >
    Readings of some sensors.

NODE readings_node
SQL >
    %
    SELECT sensor, timestamp, value, ok, tags, note, count, toUInt64(count) AS unsigned
    FROM readings
    WHERE sensor IN {{Array(sensors, 'String', 'a,b', description="Which sensors")}}
      AND timestamp >= {{DateTime64(since, '2024-01-01 00:00:00.000')}}
      AND toDate(timestamp) <= {{Date(until, '2149-06-06')}}
      AND value >= {{Float64(min_value, 0.5)}}
      AND (ok OR NOT {{Boolean(only_ok, False)}})
      AND count <= {{Int64(most, 9007199254740993)}}
      AND length(tags) < {{UInt8(tag_limit, 200, required=True)}}
    ORDER BY sensor, timestamp
    LIMIT {{Int32(limit, 100)}}

TYPE endpoint
""",
}


async def test_a_varied_project_document_is_valid_and_schemathesis_finds_nothing(
    embedded_warehouse, tmp_path: Path
) -> None:
    folder = tmp_path / "varied"
    for path, text in VARIED_PROJECT.items():
        (folder / path).parent.mkdir(parents=True, exist_ok=True)
        (folder / path).write_text(text)
    suite = await start_suite(embedded_warehouse, project=folder)
    try:
        readings = [
            {
                "timestamp": "2024-03-01 10:00:00.250",
                "sensor": "a",
                "value": 1.5,
                "ok": True,
                "tags": ["x"],
                "note": None,
                "count": 2**53 + 1,
            },
            {
                "timestamp": "2024-03-01 11:00:00.000",
                "sensor": "b",
                "value": 2.0,
                "ok": False,
                "tags": [],
                "note": "n",
                "count": -(2**63),
            },
        ]
        async with aiohttp.ClientSession() as http:
            async with http.post(
                f"{suite.gateway_url}/v0/events?name=readings&wait=true",
                data=b"\n".join(map(orjson.dumps, readings)),
                headers={"Authorization": f"Bearer {TOKEN}"},
            ) as response:
                assert await response.json() == {"successful_rows": 2, "quarantined_rows": 0}
        document = await _document(suite.gateway_url, TOKEN)
        validate(document)
        operation = document["paths"]["/v0/pipes/readings_of.json"]["get"]
        parameters = {p["name"]: p for p in operation["parameters"]}
        assert parameters["sensors"]["schema"]["type"] == "array"
        assert parameters["sensors"]["style"] == "form"
        assert parameters["tag_limit"]["required"] is True
        assert parameters["tag_limit"]["schema"]["maximum"] == 2**32 - 1  # UInt8 rides a uint32
        assert parameters["only_ok"]["schema"] == {"type": "boolean", "default": False}
        assert parameters["most"]["schema"]["default"] == 9007199254740993
        row = document["components"]["schemas"]["pipit.project.v1.ReadingsOfRow"]
        assert "note" not in row["required"]  # Nullable: left out when NULL
        assert row["properties"]["tags"]["type"] == "array"
        done = await _schemathesis(suite.gateway_url, TOKEN, tmp_path)
    finally:
        await suite.stop()
    assert done.returncode == 0, done.stdout[-8000:] + done.stderr[-2000:]
    assert "5 selected / 5 total" in done.stdout  # its one pipe, in each format


# --- schemathesis against `pipit up` -----------------------------------------------------------


@pytest.fixture(scope="module", params=["tutorials", "datafiles"])
def pipit_up(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[PipitProcess]:
    """The built-in tutorials (native pipes), and the tutorials' Tinybird datafiles (template
    pipes)."""
    data = tmp_path_factory.mktemp("openapi-up")
    project = ["--project", str(TUTORIAL_DATAFILES)] if request.param == "datafiles" else []
    env = {
        "PIPIT_DATA_DIR": str(data / "data"),
        "PIPIT_INGEST_PORT": str(free_port()),
        "PIPIT_QUERY_PORT": str(free_port()),
        "PIPIT_GATEWAY_PORT": str(free_port()),
        "PIPIT_METRICS_PORT": str(free_port()),
        "PIPIT_ADMIN_TOKEN": UP_TOKEN,
        "PIPIT_CLICKHOUSE_URL": "",
    }
    running = start_pipit(["up", *project], env, {"gateway"}, cwd=str(data))
    yield running
    running.stop()


async def test_schemathesis_finds_nothing(pipit_up: PipitProcess, tmp_path: Path) -> None:
    url = pipit_up.listening["gateway"]
    headers = {"Authorization": f"Bearer {UP_TOKEN}"}
    async with aiohttp.ClientSession() as http:
        for name, rows in DATA.items():
            body = b"\n".join(map(orjson.dumps, rows))
            async with http.post(
                f"{url}/v0/events?name={name}&wait=true", data=body, headers=headers
            ) as response:
                assert response.status == 200, await response.text()
    done = await _schemathesis(url, UP_TOKEN, tmp_path)
    assert done.returncode == 0, done.stdout[-8000:] + done.stderr[-2000:]
    pipes = len((await _document(url, UP_TOKEN))["paths"])
    assert pipes > 0
    assert f"{pipes} selected / {pipes} total" in done.stdout  # every pipe was tried


async def _schemathesis(url: str, token: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """The schemathesis CLI run against the document `url` serves to `token`."""
    command = [
        sys.executable,
        "-m",
        "schemathesis.cli",
        "run",
        f"{url}/v0/pipes/openapi.json?token={token}",
        "--url",
        url,
        "--header",
        f"Authorization: Bearer {token}",
        "--checks",
        ",".join(CHECKS),
        "--max-examples",
        str(EXAMPLES_PER_OPERATION),
        "--seed",
        str(SCHEMATHESIS_SEED),
        "--workers",
        "1",
        "--generation-database",
        "none",
        "--no-color",
    ]
    return await asyncio.to_thread(
        subprocess.run,
        command,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=600,  # every pipe in every format, on a shared machine
        check=False,
    )
