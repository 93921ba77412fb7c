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
from openapi_spec_validator import validate
from processes import PipitProcess, start_pipit

from common.datasources import registry
from common.tokens import TokenFile
from common.warehouse.embedded import EmbeddedWarehouse

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
        f"/v0/pipes/{name}.json" for name in suite.current.project.pipes
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
    assert list(document["paths"]) == ["/v0/pipes/user_event_timeline.json"]
    nothing = await _document(suite.gateway_url, scoped["datasources"])
    validate(nothing)
    assert nothing["paths"] == {}


async def test_parameters_and_answer_as_the_tutorial_declares_them(suite: Suite) -> None:
    document = await _document(suite.gateway_url, TOKEN)
    operation = document["paths"]["/v0/pipes/user_event_timeline.json"]["get"]
    parameters = {p["name"]: p for p in operation["parameters"]}
    # From protos/pipit/query/v1/query_service.proto's UserEventTimelineRequest, read by eye.
    assert list(parameters) == ["user_id", "start_date", "end_date", "event_type", "limit"]
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
    answer = operation["responses"]["200"]["content"]["application/json"]["schema"]["$ref"]
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
    command = [
        sys.executable,
        "-m",
        "schemathesis.cli",
        "run",
        f"{url}/v0/pipes/openapi.json?token={UP_TOKEN}",
        "--url",
        url,
        "--header",
        f"Authorization: Bearer {UP_TOKEN}",
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
    done = await asyncio.to_thread(
        subprocess.run,
        command,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-8000:] + done.stderr[-2000:]
    pipes = len((await _document(url, UP_TOKEN))["paths"])
    assert pipes > 0
    assert f"{pipes} selected / {pipes} total" in done.stdout  # every pipe was tried
