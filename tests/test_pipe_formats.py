"""Every pipe in every format Tinybird serves (PipeService.ReadPipe through our gateway): each
format is the engine's own output for the pipe's SQL bound as its typed RPC binds it, byte
for byte (a JSON answer's timings aside); Parquet reads back as the JSON rows; POST bodies
(JSON or form) answer as the query string does; `q=` runs over the pipe's result as `_` under
the Query API's policy; scopes, unknown pipes and formats, bad parameters. Envoy answers the
same requests alike (tests/test_envoy_conformance.py)."""

from __future__ import annotations

import io
import re
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import quote_plus, urlencode

import aiohttp
import orjson
import pyarrow.parquet as pq
import pytest
from conftest import unique_database
from endpoint_cases import CS_SESSION, DATA, UE_USER
from google.protobuf import json_format
from harness import TOKEN, Suite, start_suite

from common.datasources import registry
from common.tokens import TokenFile
from common.warehouse.embedded import EmbeddedWarehouse
from services.query.pipe_api import EXTENSIONS
from services.query.service import builtin_endpoints, endpoints

pytestmark = pytest.mark.e2e

ENDPOINTS = {endpoint.name: endpoint for endpoint in builtin_endpoints(1024).values()}
ENGINE_FORMATS = {
    "json": "JSON",
    "csv": "CSV",
    "csvwithnames": "CSVWithNames",
    "ndjson": "JSONEachRow",
    "parquet": "Parquet",
}
CONTENT_TYPES = {
    "json": "application/json; charset=UTF-8",
    "csv": "text/csv; charset=UTF-8",
    "csvwithnames": "text/csv; charset=UTF-8",
    "ndjson": "application/x-ndjson; charset=UTF-8",
    "parquet": "application/octet-stream",
}
# A pipe of each tutorial, with a LIMIT or a required parameter among them.
PIPES = [
    ("test_summary", {}),
    ("test_segments", {"segment": "country", "start_date": "2023-06-03 13:17:23"}),
    ("user_event_timeline", {"user_id": UE_USER, "limit": "7"}),
    ("active_users", {"interval": "1 week"}),
    ("get_session_events", {"session_id": CS_SESSION}),
    ("get_popular_pages", {"limit": "3"}),
    ("funnel", {"steps": ["page_view", "click", "form_submit"], "window_seconds": "3600"}),
]
_TIMING = re.compile(rb'("(?:elapsed|rows_read|bytes_read)": )[0-9.e+-]+')


@pytest.fixture(scope="module")
def tokens(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    file = TokenFile(tmp_path_factory.mktemp("pipe-tokens") / "tokens.json")
    return {
        "path": file.path,
        "summary": file.create("summary-reader", ["PIPES:READ:test_summary"]),
        "pages": file.create(
            "pages-reader", ["PIPES:READ:get_popular_pages", "DATASOURCES:READ:user_events"]
        ),
    }


@pytest.fixture(scope="module")
async def suite(chdb_dir: Path, tokens: dict[str, Any]) -> AsyncIterator[Suite]:
    warehouse = EmbeddedWarehouse(chdb_dir, unique_database("pipefmt"))
    await warehouse.open()
    await warehouse.ensure_schema(list(registry().values()))
    running = await start_suite(warehouse, tokens_file=tokens["path"])
    async with aiohttp.ClientSession() as http:
        for name, rows in DATA.items():
            async with http.post(
                f"{running.gateway_url}/v0/events?name={name}&wait=true&token={TOKEN}",
                data=b"\n".join(orjson.dumps(row) for row in rows),
            ) as response:
                assert response.status == 200, await response.text()
    yield running
    await running.stop()
    await warehouse.execute(f"DROP DATABASE IF EXISTS `{warehouse.database}`")
    await warehouse.close()


@pytest.fixture(scope="module")
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def _call(
    http: aiohttp.ClientSession,
    suite: Suite,
    method: str,
    path: str,
    given: dict[str, str] | None = None,
    *,
    data: bytes | None = None,
    content_type: str = "",
    token: str = TOKEN,
) -> tuple[int, str, bytes]:
    query = "?" + urlencode(given, quote_via=quote_plus, doseq=True) if given else ""
    headers = {"Authorization": f"Bearer {token}"}
    if content_type:
        headers["Content-Type"] = content_type
    async with http.request(
        method, f"{suite.gateway_url}{path}{query}", data=data, headers=headers
    ) as response:
        return response.status, response.headers.get("Content-Type", ""), await response.read()


async def _engine(suite: Suite, name: str, given: dict[str, str], fmt: str) -> bytes:
    """chDB's own output of the pipe's SQL, bound from a typed request as its RPC binds it."""
    endpoint = ENDPOINTS[name]
    request = json_format.ParseDict(given, endpoint.request_class())
    sql, params = endpoint.prepare(request)
    return await suite.warehouse.query_raw(sql, params, fmt)


def _masked(body: bytes) -> bytes:
    return _TIMING.sub(rb"\1_", body)


def _rows(body: bytes) -> list[dict[str, Any]]:
    return orjson.loads(body)["data"]


# --- every format is the engine's own --------------------------------------------------------


@pytest.mark.parametrize("extension", EXTENSIONS)
@pytest.mark.parametrize(("name", "given"), PIPES, ids=[name for name, _ in PIPES])
async def test_every_format_is_the_engines_own_output(
    suite: Suite, http: aiohttp.ClientSession, name: str, given: dict, extension: str
) -> None:
    # GET .json is the pipe's typed RPC (tests/test_endpoints_e2e.py); a POST reaches ReadPipe.
    method = "POST" if extension == "json" else "GET"
    status, content_type, body = await _call(
        http, suite, method, f"/v0/pipes/{name}.{extension}", given
    )
    assert status == 200, body
    assert content_type == CONTENT_TYPES[extension]
    expected = await _engine(suite, name, given, ENGINE_FORMATS[extension])
    if extension == "parquet":
        # The file's own metadata names the writer; the columns and values must be the same.
        assert pq.read_table(io.BytesIO(body)).equals(pq.read_table(io.BytesIO(expected)))
    else:
        assert _masked(body) == _masked(expected)


@pytest.mark.parametrize(("name", "given"), PIPES, ids=[name for name, _ in PIPES])
async def test_parquet_reads_back_as_the_json_rows(
    suite: Suite, http: aiohttp.ClientSession, name: str, given: dict
) -> None:
    _, _, parquet = await _call(http, suite, "GET", f"/v0/pipes/{name}.parquet", given)
    _, _, json_body = await _call(http, suite, "POST", f"/v0/pipes/{name}.json", given)
    document = orjson.loads(json_body)
    table = pq.read_table(io.BytesIO(parquet))
    assert table.column_names == [column["name"] for column in document["meta"]]
    read_back = [{key: _as_json(value) for key, value in row.items()} for row in table.to_pylist()]
    assert read_back == document["data"]
    assert len(read_back) == document["rows"]


def _as_json(value: Any) -> Any:
    # Parquet keeps a DateTime as a timestamp and a String as bytes; JSON writes both as text.
    if isinstance(value, bytes):
        return value.decode()
    if hasattr(value, "strftime"):
        return value.strftime("%Y-%m-%d %H:%M:%S" if hasattr(value, "hour") else "%Y-%m-%d")
    return value


async def test_the_typed_json_route_and_readpipe_agree_on_rows(
    suite: Suite, http: aiohttp.ClientSession
) -> None:
    # GET .json is the typed RPC; POST .json is ReadPipe: the same rows either way.
    given = {"limit": "3"}
    _, _, typed = await _call(http, suite, "GET", "/v0/pipes/get_popular_pages.json", given)
    _, _, engine = await _call(http, suite, "POST", "/v0/pipes/get_popular_pages.json", given)
    assert _rows(typed) == _rows(engine)


@pytest.mark.parametrize(
    ("name", "given", "count"),
    [
        # Every page viewed in the data, and every event of the busiest user: the rows the
        # pipes' LIMIT cuts from, counted in plain Python.
        ("get_popular_pages", {"limit": "2"},
         lambda: len({r["page_url"] for r in DATA["clickstream_events"]
                      if r["event_type"] in ("page_view", "pageview")})),
        ("user_event_timeline", {"user_id": UE_USER, "limit": "2"},
         lambda: sum(r["user_id"] == UE_USER for r in DATA["user_events"])),
    ],
)  # fmt: skip
async def test_typed_json_has_rows_before_limit(
    suite: Suite, http: aiohttp.ClientSession, name: str, given: dict, count
) -> None:
    status, _, body = await _call(http, suite, "GET", f"/v0/pipes/{name}.json", given)
    assert status == 200, body
    document = orjson.loads(body)
    assert list(document) == ["meta", "data", "rows", "rows_before_limit_at_least", "statistics"]
    assert document["rows"] == 2
    assert document["rows_before_limit_at_least"] == count()
    # The engine's JSON (ReadPipe) says the same.
    _, _, engine = await _call(http, suite, "POST", f"/v0/pipes/{name}.json", given)
    assert orjson.loads(engine)["rows_before_limit_at_least"] == count()


async def test_no_limit_no_rows_before_limit(suite: Suite, http: aiohttp.ClientSession) -> None:
    _, _, body = await _call(http, suite, "GET", "/v0/pipes/test_summary.json")
    assert "rows_before_limit_at_least" not in orjson.loads(body)


async def test_rows_before_limit_at_least(suite: Suite, http: aiohttp.ClientSession) -> None:
    every = {"limit": "10000"}
    _, _, all_pages = await _call(http, suite, "POST", "/v0/pipes/get_popular_pages.json", every)
    pages = len(_rows(all_pages))
    assert pages > 3
    _, _, three = await _call(
        http, suite, "POST", "/v0/pipes/get_popular_pages.json", {"limit": "3"}
    )
    document = orjson.loads(three)
    assert document["rows"] == 3
    assert document["rows_before_limit_at_least"] == pages


# --- parameters from a body ------------------------------------------------------------------


@pytest.mark.parametrize("extension", ["json", "csv"])
async def test_post_bodies_answer_as_the_query_string_does(
    suite: Suite, http: aiohttp.ClientSession, extension: str
) -> None:
    given = {"user_id": UE_USER, "limit": "4", "event_type": "click"}
    path = f"/v0/pipes/user_event_timeline.{extension}"
    # POST with a query string: on .json, GET would be the typed RPC.
    _, _, by_query = await _call(http, suite, "POST", path, given)
    as_json = orjson.dumps({"user_id": UE_USER, "limit": 4, "event_type": "click"})
    _, _, by_json = await _call(
        http, suite, "POST", path, data=as_json, content_type="application/json"
    )
    form = urlencode(given, quote_via=quote_plus).encode()
    _, _, by_form = await _call(
        http, suite, "POST", path, data=form, content_type="application/x-www-form-urlencoded"
    )
    assert _masked(by_json) == _masked(by_query) == _masked(by_form)
    assert b"click" in by_query


async def test_a_body_parameter_wins_over_the_query_string(
    suite: Suite, http: aiohttp.ClientSession
) -> None:
    path = "/v0/pipes/get_popular_pages.csv"
    _, _, one = await _call(http, suite, "GET", path, {"limit": "1"})
    status, _, body = await _call(
        http,
        suite,
        "POST",
        path,
        {"limit": "5"},
        data=b'{"limit": 1}',
        content_type="application/json",
    )
    assert status == 200 and body == one and body.count(b"\n") == 1


@pytest.mark.parametrize(
    ("method", "given", "data", "content_type", "message"),
    [
        ("GET", {"limit": "many"}, None, "",
         "invalid value for query parameter 'limit': 'many' is not an int32"),
        ("GET", {"limit": "10001"}, None, "",
         "parameter 'limit' must be between 1 and 10000, got 10001"),
        ("POST", None, b'{"limit": "many"}', "application/json",
         "invalid value for body parameter 'limit': 'many' is not an int32"),
        ("POST", None, b"limit=1.5", "application/x-www-form-urlencoded",
         "invalid value for body parameter 'limit': '1.5' is not an int32"),
        ("POST", None, b'{"limit": {"a": 1}}', "application/json",
         "body parameter 'limit' must be a string, a number or a list"),
        ("POST", None, b"[1]", "application/json", "the body must be a JSON object of parameters"),
        ("POST", None, b"{nope", "application/json", "the body must be a JSON object or a form"),
    ],
)  # fmt: skip
async def test_a_bad_parameter_is_a_400_naming_it(
    suite: Suite,
    http: aiohttp.ClientSession,
    method: str,
    given: dict | None,
    data: bytes | None,
    content_type: str,
    message: str,
) -> None:
    status, _, body = await _call(
        http,
        suite,
        method,
        "/v0/pipes/get_popular_pages.csv",
        given,
        data=data,
        content_type=content_type,
    )
    assert status == 400
    assert orjson.loads(body)["message"].startswith(message)


async def test_a_required_parameter_is_named(suite: Suite, http: aiohttp.ClientSession) -> None:
    status, _, body = await _call(http, suite, "GET", "/v0/pipes/get_session_events.ndjson")
    assert status == 400
    assert orjson.loads(body)["message"] == "parameter 'session_id' is required"


# --- q over the pipe's result ----------------------------------------------------------------


async def test_q_counts_the_pipes_rows(suite: Suite, http: aiohttp.ClientSession) -> None:
    given = {"limit": "10000"}
    _, _, plain = await _call(http, suite, "GET", "/v0/pipes/get_popular_pages.json", given)
    rows = _rows(plain)
    # The typed GET .json route: with q, both gateways send it to ReadPipe instead.
    status, _, counted = await _call(
        http,
        suite,
        "GET",
        "/v0/pipes/get_popular_pages.json",
        {**given, "q": "select count() as n from _"},
    )
    assert status == 200, counted
    assert _rows(counted) == [{"n": len(rows)}]


async def test_q_filters_and_aggregates(suite: Suite, http: aiohttp.ClientSession) -> None:
    given = {"segment": "device"}
    _, _, plain = await _call(http, suite, "GET", "/v0/pipes/test_segments.json", given)
    expected = Counter()
    for row in _rows(plain):
        if row["variant"] == "B":
            expected[row["segment"]] += row["users"]
    q = (
        "select segment, sum(users) as users from _ where variant = 'B' "
        "group by segment order by segment"
    )
    status, content_type, body = await _call(
        http, suite, "GET", "/v0/pipes/test_segments.csv", {**given, "q": q}
    )
    assert status == 200, body
    assert content_type == CONTENT_TYPES["csv"]  # the extension's format, as the pipe's own
    assert body.decode() == "".join(f'"{s}",{n}\n' for s, n in sorted(expected.items()))


async def test_q_in_a_post_body(suite: Suite, http: aiohttp.ClientSession) -> None:
    _, _, plain = await _call(http, suite, "GET", "/v0/pipes/test_summary.json")
    body = orjson.dumps({"q": "select count() as n from _"})
    status, _, counted = await _call(
        http,
        suite,
        "POST",
        "/v0/pipes/test_summary.json",
        data=body,
        content_type="application/json",
    )
    assert status == 200, counted
    assert _rows(counted) == [{"n": len(_rows(plain))}]


@pytest.mark.parametrize(
    ("q", "token", "status", "words"),
    [
        # A datasource the pipe reads is not readable through q without its own scope.
        ("select count() from clickstream_events", "pages", 403,
         "DATASOURCES:READ:clickstream_events"),
        ("select count() from user_events", "summary", 403, "PIPES:READ:get_popular_pages"),
        ("select * from numbers(10)", "pages", 403, "table functions are not allowed"),
        ("select * from file('/etc/passwd')", "pages", 403, "table functions are not allowed"),
        ("select * from system.tables", "pages", 403, ""),
        ("insert into user_events select * from user_events", "pages", 403, "only SELECT"),
        ("select count() from _ settings max_threads = 64", "pages", 403, "SETTINGS"),
    ],
)  # fmt: skip
async def test_q_cannot_escape(
    suite: Suite,
    http: aiohttp.ClientSession,
    tokens: dict[str, Any],
    q: str,
    token: str,
    status: int,
    words: str,
) -> None:
    answer = await _call(
        http, suite, "GET", "/v0/pipes/get_popular_pages.csv", {"q": q}, token=tokens[token]
    )
    assert answer[0] == status, answer
    assert words in orjson.loads(answer[2])["message"]


async def test_q_reads_a_datasource_with_its_scope(
    suite: Suite, http: aiohttp.ClientSession, tokens: dict[str, Any]
) -> None:
    q = "select count() as n from user_events"
    status, _, body = await _call(
        http, suite, "GET", "/v0/pipes/get_popular_pages.json", {"q": q}, token=tokens["pages"]
    )
    assert status == 200, body
    assert _rows(body) == [{"n": len(DATA["user_events"])}]


# --- scopes, unknown pipes and formats -------------------------------------------------------


async def test_a_pipe_needs_its_read_scope(
    suite: Suite, http: aiohttp.ClientSession, tokens: dict[str, Any]
) -> None:
    summary = tokens["summary"]
    allowed = await _call(http, suite, "GET", "/v0/pipes/test_summary.csv", token=summary)
    assert allowed[0] == 200
    refused = await _call(http, suite, "GET", "/v0/pipes/get_popular_pages.csv", token=summary)
    assert refused[0] == 403
    assert "PIPES:READ:get_popular_pages" in orjson.loads(refused[2])["message"]
    # Refused before anything is looked at: an unknown pipe too.
    unknown = await _call(http, suite, "GET", "/v0/pipes/no_such_pipe.csv", token=summary)
    assert unknown[0] == 403
    anonymous = await _call(http, suite, "GET", "/v0/pipes/test_summary.csv", token="")
    assert anonymous[0] == 403  # Tinybird answers a missing token 403


async def test_unknown_pipes_and_formats_are_404(suite: Suite, http: aiohttp.ClientSession) -> None:
    status, _, body = await _call(http, suite, "GET", "/v0/pipes/no_such_pipe.csv")
    assert (status, orjson.loads(body)["message"]) == (404, "pipe 'no_such_pipe' not found")
    status, _, body = await _call(http, suite, "GET", "/v0/pipes/test_summary.xml")
    message = orjson.loads(body)["message"]
    assert status == 404
    assert all(f".{extension}" in message for extension in EXTENSIONS)


# --- a deployed project -------------------------------------------------------------------------


TUTORIALS = Path(__file__).parent / "projects" / "tutorials"


@pytest.fixture
async def deployed(embedded_warehouse: EmbeddedWarehouse) -> AsyncIterator[Suite]:
    running = await start_suite(embedded_warehouse, project=TUTORIALS)
    async with aiohttp.ClientSession() as http:
        rows = DATA["clickstream_events"]
        async with http.post(
            f"{running.gateway_url}/v0/events?name=clickstream_events&wait=true&token={TOKEN}",
            data=b"\n".join(orjson.dumps(row) for row in rows),
        ) as response:
            assert response.status == 200, await response.text()
    yield running
    await running.stop()


async def test_a_deployed_tinybird_pipe_in_every_format(
    deployed: Suite, http: aiohttp.ClientSession
) -> None:
    project = deployed.current.project
    assert project.query_service is not None
    assert project.query_service.full_name.startswith("pipit.project.v1.")
    pipes = {e.name: e for e in endpoints(project, 1024).values()}
    given = {"limit": "4"}
    endpoint = pipes["get_popular_pages"]
    request = json_format.ParseDict(given, endpoint.request_class())
    sql, params = endpoint.prepare(request)
    answers: dict[str, bytes] = {}
    for extension in EXTENSIONS:
        method = "POST" if extension == "json" else "GET"  # as above: GET .json is typed
        status, _, body = await _call(
            http, deployed, method, f"/v0/pipes/get_popular_pages.{extension}", given
        )
        assert status == 200, body
        answers[extension] = body
        expected = await deployed.warehouse.query_raw(sql, params, ENGINE_FORMATS[extension])
        if extension == "parquet":
            assert pq.read_table(io.BytesIO(body)).equals(pq.read_table(io.BytesIO(expected)))
        else:
            assert _masked(body) == _masked(expected)
    status, _, body = await _call(
        http,
        deployed,
        "GET",
        "/v0/pipes/get_popular_pages.json",
        {**given, "q": "select count() as n from _"},
    )
    assert status == 200, body
    assert _rows(answers["json"]), "the deployed pipe answers rows"
    assert _rows(body) == [{"n": len(_rows(answers["json"]))}]


# A native project (protos + SQL): its pipe in every format too, with no protos of its own for it.
NATIVE_PROTO = """syntax = "proto3";

package shop.v1;

import "google/api/annotations.proto";
import "pipit/clickhouse/v1/options.proto";
import "pipit/query/v1/pipe.proto";

// One sale.
message Sale {
  option (pipit.clickhouse.v1.table) = {
    name: "sales"
    engine: "MergeTree"
    sorting_key: "sku"
  };

  // The product.
  string sku = 1 [(pipit.clickhouse.v1.column).type = "String"];
  // Units sold.
  uint32 units = 2 [(pipit.clickhouse.v1.column).type = "UInt32"];
}

// The shop's pipes.
service ShopQueries {
  option (pipit.clickhouse.v1.role) = SERVICE_ROLE_QUERY;

  // Units per product.
  rpc TopSkus(TopSkusRequest) returns (TopSkusResponse) {
    option (google.api.http) = {get: "/v0/pipes/top_skus.json"};
    option (pipit.clickhouse.v1.endpoint) = "top_skus";
  }
}

// Request of TopSkus.
message TopSkusRequest {
  // How many products.
  int32 limit = 1 [(pipit.clickhouse.v1.parameter) = {type: "Int32", default_value: "10"}];
}

// One row of TopSkusResponse.
message TopSkusRow {
  // The product.
  string sku = 1;
  // Units sold.
  uint64 units = 2;
}

// Response of TopSkus.
message TopSkusResponse {
  // Columns.
  repeated pipit.query.v1.ColumnMeta meta = 1;
  // Rows.
  repeated TopSkusRow data = 2;
  // Row count.
  uint32 rows = 3;
  // Cost.
  pipit.query.v1.Statistics statistics = 4;
}
"""
NATIVE_SQL = (
    "SELECT sku, sum(units) AS units FROM sales GROUP BY sku ORDER BY units DESC, sku "
    "LIMIT {limit:Int32}"
)


@pytest.fixture
async def native(embedded_warehouse: EmbeddedWarehouse, tmp_path: Path) -> AsyncIterator[Suite]:
    (tmp_path / "sql").mkdir()
    (tmp_path / "shop.proto").write_text(NATIVE_PROTO)
    (tmp_path / "sql" / "top_skus.sql").write_text(NATIVE_SQL)
    running = await start_suite(embedded_warehouse, project=tmp_path)
    # The project has no ingest service: its rows go straight in.
    rows = [{"sku": f"sku_{n % 7}", "units": n} for n in range(50)]
    await embedded_warehouse.insert_json_rows(
        "sales", ["sku", "units"], b"\n".join(orjson.dumps(row) for row in rows)
    )
    yield running
    await running.stop()


async def test_a_deployed_native_pipe_in_every_format(
    native: Suite, http: aiohttp.ClientSession
) -> None:
    endpoint = next(iter(endpoints(native.current.project, 1024).values()))
    given = {"limit": "3"}
    sql, params = endpoint.prepare(json_format.ParseDict(given, endpoint.request_class()))
    for extension in EXTENSIONS:
        method = "POST" if extension == "json" else "GET"  # GET .json is the typed RPC
        status, _, body = await _call(
            http, native, method, f"/v0/pipes/top_skus.{extension}", given
        )
        assert status == 200, body
        expected = await native.warehouse.query_raw(sql, params, ENGINE_FORMATS[extension])
        if extension == "parquet":
            assert pq.read_table(io.BytesIO(body)).equals(pq.read_table(io.BytesIO(expected)))
        else:
            assert _masked(body) == _masked(expected)
    # Plain Python: units per sku, the three largest.
    totals = Counter()
    for n in range(50):
        totals[f"sku_{n % 7}"] += n
    top = sorted(totals.items(), key=lambda item: (-item[1], item[0]))[:3]
    _, _, csv = await _call(http, native, "GET", "/v0/pipes/top_skus.csv", given)
    assert csv.decode() == "".join(f'"{sku}",{units}\n' for sku, units in top)
