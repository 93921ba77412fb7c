"""The Data Sources API and the Jobs API through our gateway and the real Envoy, in front of the
same services (tests/gateway_pair.py): multipart and raw imports (one larger than the Events
API's body limit but within the imports' own), gzip files passed on as sent, the jobs they
start, truncate, delete and their refusals answer alike. Each gateway imports rows marked with
its own name, so both writes are counted apart."""

from __future__ import annotations

import gzip
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from conftest import unique_database
from gateway_pair import GATEWAYS, Answer, GatewayPair, assert_same, service_targets, start_pair
from harness import TOKEN, Suite, start_suite
from raw_http import RawConnection

from common.datasources import registry
from common.warehouse.embedded import EmbeddedWarehouse

pytestmark = [pytest.mark.envoy, pytest.mark.e2e]

MAX_BODY = 1024 * 1024
IMPORT_MAX_BODY = 24 * 1024 * 1024
AUTH = {"Authorization": f"Bearer {TOKEN}"}
DS = "user_events"
# Fields of a job that differ between two jobs doing the same thing.
_OWN = ("id", "job_id", "import_id", "delete_id", "job_url", "created_at", "updated_at")


@pytest.fixture(scope="module")
async def suite(chdb_dir: Path) -> AsyncIterator[Suite]:
    warehouse = EmbeddedWarehouse(chdb_dir, unique_database("bulk_envoy"))
    await warehouse.open()
    await warehouse.ensure_schema(list(registry().values()))
    running = await start_suite(
        warehouse,
        gateway=False,
        max_body_bytes=MAX_BODY,
        import_max_body_bytes=IMPORT_MAX_BODY,
        import_batch_rows=5000,
    )
    yield running
    await running.stop()
    await warehouse.execute(f"DROP DATABASE IF EXISTS `{warehouse.database}`")
    await warehouse.close()


@pytest.fixture(scope="module")
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(auto_decompress=False) as session:
        yield session


@pytest.fixture(scope="module")
async def pair(
    suite: Suite, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[GatewayPair]:
    running = await start_pair(
        service_targets(suite.ingest.grpc, suite.query),
        tmp_path_factory.mktemp("envoy-logs"),
        max_body_bytes=MAX_BODY,
        import_max_body_bytes=IMPORT_MAX_BODY,
    )
    yield running
    await running.stop()


def _event(marker: str, i: int) -> dict[str, Any]:
    return {
        "event_id": f"e{i}",
        "user_id": f"u{i % 97}",
        "session_id": marker,
        "event_type": "page_view",
        "page_url": f"/p/{i}",
        "referrer": "",
        "device_type": "mobile",
        "browser": "firefox",
        "country": "ES",
        "city": "Madrid",
        "properties": {"n": i},
        "timestamp": f"2024-02-{1 + i % 28:02d} 10:{i % 60:02d}:00",
    }


def _ndjson(marker: str, count: int) -> bytes:
    return b"\n".join(orjson.dumps(_event(marker, i)) for i in range(count)) + b"\n"


def _multipart(boundary: str, field: str, filename: str, data: bytes) -> bytes:
    return (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="{field}"; filename="{filename}"'
            "\r\nContent-Type: application/octet-stream\r\n\r\n"
        ).encode()
        + data
        + f"\r\n--{boundary}--\r\n".encode()
    )


def _normalized(answer: Answer) -> tuple[int, Any]:
    def scrub(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: ("<own>" if k in _OWN else scrub(v)) for k, v in value.items()}
        if isinstance(value, list):
            return [scrub(v) for v in value]
        return value

    return answer.status, scrub(answer.json)


async def _rows(suite: Suite, marker: str) -> int:
    result = await suite.warehouse.query(
        "SELECT count() AS n FROM user_events WHERE session_id = {m:String}", {"m": marker}
    )
    return result.data[0]["n"]


async def _job(pair: GatewayPair, http: aiohttp.ClientSession, suite: Suite, answers) -> list:
    """Each gateway's own job, read through that gateway once it is over."""
    jobs = []
    for gateway, answer in zip(GATEWAYS, answers, strict=True):
        await suite.ingest.importer.wait(answer.json["id"])
        async with http.get(f"{pair.urls[gateway]}/v0/jobs/{answer.json['id']}", headers=AUTH) as r:
            jobs.append(Answer(r.status, r.headers, await r.read()))
    assert _normalized(jobs[0]) == _normalized(jobs[1])
    return [j.json for j in jobs]


@pytest.mark.parametrize("count", [300, 60_000])
async def test_multipart_imports_answer_alike_and_land_whole(
    pair: GatewayPair, suite: Suite, http: aiohttp.ClientSession, count: int
) -> None:
    boundary = "pipit-boundary-7d3"
    files = {g: _ndjson(f"mp-{count}-{g}", count) for g in GATEWAYS}
    if count > 1000:
        # Larger than the Events API's limit, within the imports' own.
        assert MAX_BODY < len(files["pipit"]) < IMPORT_MAX_BODY
    ours, envoy = await pair.send(
        http,
        "POST",
        f"/v0/datasources?name={DS}&mode=append",
        data=lambda g: _multipart(boundary, "ndjson", "events.ndjson", files[g]),
        headers={**AUTH, "Content-Type": f"multipart/form-data; boundary={boundary}"},
    )
    assert ours.status == 200, ours.body
    assert _normalized(ours) == _normalized(envoy)
    jobs = await _job(pair, http, suite, (ours, envoy))
    assert [(j["status"], j["statistics"]["row_count"]) for j in jobs] == [("done", count)] * 2
    for gateway in GATEWAYS:
        assert await _rows(suite, f"mp-{count}-{gateway}") == count


async def test_a_gzip_file_reaches_the_service_as_sent(
    pair: GatewayPair, suite: Suite, http: aiohttp.ClientSession
) -> None:
    ours, envoy = await pair.send(
        http,
        "POST",
        f"/v0/datasources?name={DS}&format=ndjson",
        data=lambda g: gzip.compress(_ndjson(f"gz-{g}", 250)),
        headers=AUTH,
    )
    assert ours.status == 200, ours.body
    assert _normalized(ours) == _normalized(envoy)
    await _job(pair, http, suite, (ours, envoy))
    assert [await _rows(suite, f"gz-{g}") for g in GATEWAYS] == [250, 250]


async def test_a_declared_length_over_the_import_limit_is_refused_before_the_body(
    pair: GatewayPair,
) -> None:
    answers = []
    for gateway in GATEWAYS:
        connection = await RawConnection.open(pair.urls[gateway])
        await connection.send_head(
            "POST",
            f"/v0/datasources?name={DS}",
            {**AUTH, "Content-Length": str(IMPORT_MAX_BODY + 1)},
        )
        answers.append(await connection.read_answer())
        connection.close()
    assert [(a.status, a.json["message"]) for a in answers] == [
        (413, f"request body exceeds the limit of {IMPORT_MAX_BODY} bytes")
    ] * 2


@pytest.mark.parametrize(
    ("path", "data"),
    [
        (f"/v0/datasources?name={DS}", b""),
        ("/v0/datasources?name=nope", b"a,b"),
        (f"/v0/datasources?name={DS}&mode=upsert", b"a,b"),
        (f"/v0/datasources?name={DS}&format=xml", b"a,b"),
        (f"/v0/datasources?name={DS}&url=file:///etc/passwd", b""),
        (f"/v0/datasources/{DS}/delete", b"delete_condition=1%3D1)+OR+(1%3D1"),
        (f"/v0/datasources/{DS}/delete", b"delete_condition=hostName()%3D''"),
        ("/v0/datasources/nope/delete", b"delete_condition=1"),
        ("/v0/datasources/nope/truncate", b""),
    ],
)
async def test_refusals_answer_alike(
    pair: GatewayPair, http: aiohttp.ClientSession, path: str, data: bytes
) -> None:
    ours, envoy = await pair.send(
        http,
        "POST",
        path,
        data=data,
        headers={**AUTH, "Content-Type": "application/x-www-form-urlencoded"},
    )
    assert ours.status in (400, 404), ours.body
    assert_same(ours, envoy)


async def _import(
    pair: GatewayPair, http: aiohttp.ClientSession, suite: Suite, marker: str, count: int
) -> list[str]:
    """`count` rows marked `<marker>-<gateway>` imported through each gateway, landed; the
    two jobs' ids. Each test that reads rows imports its own, so none leans on another's."""
    ours, envoy = await pair.send(
        http,
        "POST",
        f"/v0/datasources?name={DS}&format=ndjson",
        data=lambda g: _ndjson(f"{marker}-{g}", count),
        headers=AUTH,
    )
    assert ours.status == 200, ours.body
    return [job["id"] for job in await _job(pair, http, suite, (ours, envoy))]


async def test_delete_dry_run_and_jobs_list_answer_alike(
    pair: GatewayPair, suite: Suite, http: aiohttp.ClientSession
) -> None:
    imported = await _import(pair, http, suite, "dry", 250)
    ours, envoy = await pair.send(
        http,
        "POST",
        f"/v0/datasources/{DS}/delete",
        data=b"delete_condition=session_id+%3D+'dry-pipit'&dry_run=true",
        headers={**AUTH, "Content-Type": "application/x-www-form-urlencoded"},
    )
    assert (ours.status, ours.json["rows_to_be_deleted"]) == (200, 250), ours.body
    assert_same(ours, envoy)
    ours, envoy = await pair.send(http, "GET", "/v0/jobs?kind=import&status=done", headers=AUTH)
    assert ours.status == 200
    assert_same(ours, envoy)
    # The other tests' imports are listed too, whichever of them ran before this one.
    assert set(imported) <= {job["id"] for job in ours.json["jobs"]}


async def test_delete_then_truncate_through_each(
    pair: GatewayPair, suite: Suite, http: aiohttp.ClientSession
) -> None:
    await _import(pair, http, suite, "del", 250)
    await _import(pair, http, suite, "kept", 300)
    ours, envoy = await pair.send(
        http,
        "POST",
        lambda g: f"/v0/datasources/{DS}/delete?delete_condition=session_id+%3D+'del-{g}'",
        headers=AUTH,
    )
    assert ours.status == 200, ours.body
    assert _normalized(ours)[1]["job"]["delete_condition"] != ""
    await suite.ingest.datasources.wait_deletes()
    assert [await _rows(suite, f"del-{g}") for g in GATEWAYS] == [0, 0]
    assert await _rows(suite, "kept-pipit") == 300
    ours, envoy = await pair.send(http, "POST", f"/v0/datasources/{DS}/truncate", headers=AUTH)
    assert ours.status == 200, ours.body
    assert _normalized(ours) == _normalized(envoy)
    assert await _rows(suite, "kept-pipit") == 0
