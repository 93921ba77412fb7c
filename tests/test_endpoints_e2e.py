"""Every endpoint, end to end, against the plain-Python reference answers: events go in
through the Events API over HTTP (gateway → ingest → warehouse), answers come back both
over HTTP (gateway → query) and straight from the gRPC stubs — on embedded chDB and on
the ClickHouse HTTP path (clickhouse-connect against the test fixture, or the real
server named by PIPIT_TEST_CLICKHOUSE_URL)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import expected
import orjson
import pytest
from conftest import unique_database
from endpoint_cases import CASES, DATA, case_id
from google.protobuf import json_format
from harness import AUTH, TOKEN, Suite, start_suite

from common.datasources import registry
from common.warehouse.base import Warehouse
from common.warehouse.clickhouse import ClickHouseWarehouse
from common.warehouse.embedded import EmbeddedWarehouse
from services.query.service import builtin_endpoints

pytestmark = pytest.mark.e2e

RPCS = {endpoint.name: (rpc, endpoint) for rpc, endpoint in builtin_endpoints(1024).items()}


async def _open(backend: str, chdb_dir: Path, clickhouse_url: str) -> Warehouse:
    database = unique_database("e2e")
    if backend == "chdb":
        warehouse: Warehouse = EmbeddedWarehouse(chdb_dir, database)
    else:
        warehouse = ClickHouseWarehouse(clickhouse_url, database)
    await warehouse.open()
    await warehouse.ensure_schema(list(registry().values()))
    return warehouse


@pytest.fixture(scope="module", params=["chdb", "clickhouse"])
async def seeded(request, chdb_dir: Path, clickhouse_url: str) -> AsyncIterator[Suite]:
    """A suite whose warehouse holds DATA, ingested over HTTP through the gateway."""
    warehouse = await _open(request.param, chdb_dir, clickhouse_url)
    suite = await start_suite(warehouse)
    async with aiohttp.ClientSession() as http:
        for name, rows in DATA.items():
            body = b"\n".join(orjson.dumps(row) for row in rows)
            async with http.post(
                f"{suite.gateway_url}/v0/events",
                params={"name": name, "wait": "true"},
                data=body,
                headers={"Authorization": f"Bearer {TOKEN}"},
            ) as response:
                assert response.status == 200, await response.text()
                assert await response.json() == {
                    "successful_rows": len(rows),
                    "quarantined_rows": 0,
                }
    yield suite
    await suite.stop()
    await warehouse.execute(f"DROP DATABASE IF EXISTS `{warehouse.database}`")
    await warehouse.close()


def _reference(name: str, given: dict[str, str]) -> list[dict[str, Any]]:
    datasource, reference = expected.ENDPOINTS[name]
    _, endpoint = RPCS[name]
    params = {p.name: given.get(p.name, p.option.default_value) for p in endpoint.parameters}
    return reference(DATA[datasource] if datasource else DATA, **params)


def _columns(name: str) -> list[str]:
    _, endpoint = RPCS[name]
    return [f.name for f in endpoint.method.output_type.fields_by_name["data"].message_type.fields]


def _query(given: dict[str, Any]) -> list[tuple[str, str]]:
    """The query string: a list parameter once per item (`steps=a&steps=b`)."""
    pairs = [("token", TOKEN)]
    for key, value in given.items():
        pairs.extend((key, item) for item in (value if isinstance(value, list) else [value]))
    return pairs


@pytest.mark.parametrize("case", CASES, ids=[case_id(case) for case in CASES])
async def test_http_answers_match_reference(seeded: Suite, case) -> None:
    name, given = case
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"{seeded.gateway_url}/v0/pipes/{name}.json", params=_query(given)) as response,
    ):
        assert response.status == 200, await response.text()
        body = await response.json()
    # rows_before_limit_at_least only from a pipe whose SQL has a LIMIT, as in Tinybird.
    assert sorted(set(body) - {"rows_before_limit_at_least"}) == [
        "data",
        "meta",
        "rows",
        "statistics",
    ]
    if "rows_before_limit_at_least" in body:
        assert body["rows_before_limit_at_least"] >= body["rows"]
    assert [column["name"] for column in body["meta"]] == _columns(name)
    assert body["rows"] == len(body["data"])
    assert sorted(body["statistics"]) == ["bytes_read", "elapsed", "rows_read"]
    want = _reference(name, given)
    expected.assert_rows_match(body["data"], want, expected.FLOAT_TOLERANCES.get(name, {}))


def _typed(field, value: str):
    """A query parameter's text as its request field holds it."""
    if field.cpp_type == field.CPPTYPE_INT32:
        return int(value)
    if field.cpp_type == field.CPPTYPE_BOOL:
        return value == "true"
    return value


@pytest.mark.parametrize("case", CASES, ids=[case_id(case) for case in CASES])
async def test_grpc_answers_match_reference(seeded: Suite, case) -> None:
    name, given = case
    rpc, endpoint = RPCS[name]
    fields = endpoint.method.input_type.fields_by_name
    request = endpoint.request_class(**{key: _typed(fields[key], v) for key, v in given.items()})
    stub = seeded.query_stub()
    response = await getattr(stub, rpc)(request, metadata=AUTH)
    printed = json_format.MessageToDict(
        response, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
    )
    # MessageToDict puts unset (zero) fields last; compare in declaration order.
    data = [{column: row[column] for column in _columns(name)} for row in printed["data"]]
    want = _reference(name, given)
    expected.assert_rows_match(data, want, expected.FLOAT_TOLERANCES.get(name, {}))
