"""The Query API as Tinybird's clients call it: `GET` and `POST /v0/sql` in every output
format, each byte for byte what chDB itself prints for the same query on the same data (a
session of its own with the ad-hoc lane's settings; only `elapsed` masked); 64-bit integers,
Decimal, Nullable, Array, Map and times exact in the JSON formats (checked against values
written out in Python); the row cap an error that names it, never a silent cut; constant
queries, quarantine tables, `pipeline=` and pipes as tables under their scopes; and engine
errors that never quote the statement Pipit wrapped the query in. The ClickHouse HTTP path
(the test fixture, or PIPIT_TEST_CLICKHOUSE_URL) is held to the same answers."""

from __future__ import annotations

import gzip
import json
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import aiohttp
import grpc
import orjson
import pyarrow.parquet as pq
import pytest
from conftest import unique_database
from harness import TOKEN, Suite, start_suite

from common.datasources import registry
from common.tokens import TokenFile
from common.warehouse.base import AdhocLimits, Warehouse
from common.warehouse.clickhouse import ClickHouseWarehouse
from common.warehouse.embedded import EmbeddedWarehouse, adhoc_lane_settings, session_setup
from pipit.query.v1 import sql_service_pb2, sql_service_pb2_grpc
from services.query.admission import Admission
from services.query.sql_api import SqlApi, SqlFailure, _with_clause

pytestmark = pytest.mark.e2e

CAP = 100
ROWS = 150  # more than the cap
LIMITS = AdhocLimits(max_result_rows=CAP)
TESTS = ("checkout", "homepage")
VARIANTS = ("A", "B")


def _event(i: int) -> dict[str, Any]:
    return {
        "timestamp": f"2023-06-15 {10 + i // 60:02d}:{i % 60:02d}:00",
        "user_id": f"u{i % 40}",
        "test_id": TESTS[i % 2],
        "variant": VARIANTS[(i // 2) % 2],
        "event_type": "page_view",
        "conversion": int(i % 3 == 0),
        "revenue": i * 0.25,
        "session_id": f"s{i}",
        "device": "mobile",
        "country": "US",
    }


EVENTS = [_event(i) for i in range(ROWS)]


@dataclass(frozen=True)
class Reply:
    status: int
    content_type: str
    body: bytes


@dataclass
class Api:
    suite: Suite
    warehouse: Warehouse
    tokens: dict[str, str]

    async def get(self, q: str, token: str = TOKEN, **params: str) -> Reply:
        async with (
            aiohttp.ClientSession() as http,
            http.get(
                f"{self.suite.gateway_url}/v0/sql", params={"q": q, "token": token, **params}
            ) as response,
        ):
            return Reply(response.status, response.content_type, await response.read())

    async def post(self, body: bytes, headers: dict[str, str], token: str = TOKEN) -> Reply:
        async with (
            aiohttp.ClientSession() as http,
            http.post(
                f"{self.suite.gateway_url}/v0/sql",
                data=body,
                headers={"Authorization": f"Bearer {token}", **headers},
            ) as response,
        ):
            return Reply(response.status, response.content_type, await response.read())


async def _start(warehouse: Warehouse, tmp: Path) -> AsyncIterator[Api]:
    await warehouse.open()
    await warehouse.ensure_schema(list(registry().values()))
    body = b"\n".join(orjson.dumps(event) for event in EVENTS)
    await warehouse.insert_json_rows(
        "ab_test_events", registry()["ab_test_events"].column_names, body
    )
    token_file = TokenFile(tmp / "tokens.json")
    tokens = {
        "reader": token_file.create("reader", ["DATASOURCES:READ:ab_test_events"]),
        "summary": token_file.create("summary", ["PIPES:READ:test_summary"]),
        "appender": token_file.create("appender", ["DATASOURCES:APPEND:ab_test_events"]),
    }
    suite = await start_suite(warehouse, tokens_file=token_file.path)
    # One event the validator refuses: the quarantine table holds exactly that one row.
    async with (
        aiohttp.ClientSession() as http,
        http.post(
            f"{suite.gateway_url}/v0/events?name=ab_test_events&wait=true&token={TOKEN}",
            data=orjson.dumps({**EVENTS[0], "conversion": "not a number"}),
        ) as response,
    ):
        assert (await response.json())["quarantined_rows"] == 1
    yield Api(suite, warehouse, tokens)
    await suite.stop()
    await warehouse.execute(f"DROP DATABASE IF EXISTS `{warehouse.database}`")
    await warehouse.close()


@pytest.fixture(scope="module")
async def api(chdb_dir: Path, tmp_path_factory) -> AsyncIterator[Api]:
    warehouse = EmbeddedWarehouse(chdb_dir, unique_database("sqlfmt"), LIMITS)
    async for running in _start(warehouse, tmp_path_factory.mktemp("sqlfmt")):
        yield running


@pytest.fixture(scope="module")
async def both(request, api: Api, tmp_path_factory) -> AsyncIterator[Api]:
    """The suite on chDB (`api`), then on the ClickHouse HTTP path."""
    if request.param == "chdb":
        yield api
        return
    url = request.getfixturevalue("clickhouse_url")
    warehouse = ClickHouseWarehouse(url, unique_database("sqlfmt_ch"), LIMITS)
    async for running in _start(warehouse, tmp_path_factory.mktemp("sqlfmt-ch")):
        yield running


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "both" in metafunc.fixturenames:
        metafunc.parametrize("both", ["chdb", "clickhouse"], indirect=True, scope="module")


@pytest.fixture(scope="module")
def engine(api: Api, chdb_dir: Path):
    """chDB's own output of a query: a session of its own on the same data, with the ad-hoc
    lane's settings, running the query exactly as the caller wrote it."""
    from chdb import session

    own = session.Session(str(chdb_dir / "chdb"))
    own.query(f"USE `{api.warehouse.database}`")
    for statement in [*session_setup(), *adhoc_lane_settings(LIMITS)]:
        own.query(statement)

    def run(q: str) -> bytes:
        # The query's own FORMAT clause decides; JSON when it has none, as the Query API.
        return own.query(q, "JSON").bytes()

    return run


def _masked(body: bytes) -> bytes:
    return re.sub(rb'"elapsed": [0-9.e+-]+', b'"elapsed": 0', body)


def _exact(body: bytes) -> Any:
    """JSON with integers exact and decimals as Decimal, as a careful client reads it."""
    return json.loads(body, parse_float=Decimal)


# --- every format, byte for byte ------------------------------------------------------------

FORMATS = {
    "JSON": "application/json",
    "JSONEachRow": "application/x-ndjson",
    "JSONCompact": "application/json",
    "CSV": "text/csv",
    "CSVWithNames": "text/csv",
    "TSV": "text/tab-separated-values",
    "TSVWithNames": "text/tab-separated-values",
    "TabSeparated": "text/tab-separated-values",
    "Parquet": "application/octet-stream",
}
TYPES = (
    "SELECT toUInt64(18446744073709551615) AS u64_max, toInt64(-9223372036854775808) AS i64_min, "
    "toInt64(9007199254740993) AS i53, toDecimal64('1234567.891', 3) AS dec, "
    "CAST(NULL AS Nullable(Int64)) AS nothing, toNullable(toInt64(-7)) AS something, "
    "[toUInt64(18446744073709551615), 1] AS arr, map('a', toInt64(-9223372036854775808)) AS m, "
    "toDate('2023-06-15') AS d, toDateTime('2023-06-15 14:30:00') AS dt, "
    "toDateTime64('2023-06-15 14:30:00.123', 3) AS dt64"
)
QUERIES = {
    "rows": "SELECT user_id, test_id, variant, revenue, conversion, timestamp "
    "FROM ab_test_events ORDER BY timestamp, user_id LIMIT 5",
    "aggregate": "SELECT variant, count() AS n, sum(revenue) AS r, uniqExact(user_id) AS u "
    "FROM ab_test_events GROUP BY variant ORDER BY variant",
    "types": TYPES,
}


@pytest.mark.parametrize("query", list(QUERIES))
@pytest.mark.parametrize("fmt", list(FORMATS))
async def test_each_format_is_the_engines_own_output(api: Api, engine, fmt: str, query: str):
    q = f"{QUERIES[query]} FORMAT {fmt}"
    response = await api.get(q)
    body = response.body
    assert response.status == 200, body
    assert response.content_type == FORMATS[fmt]
    assert _masked(body) == _masked(engine(q))


async def test_no_format_clause_is_json(api: Api, engine):
    q = QUERIES["aggregate"]
    response = await api.get(q)
    assert response.content_type == "application/json"
    assert _masked(response.body) == _masked(engine(q + " FORMAT JSON"))


async def test_parquet_reads_back_as_the_json_rows(api: Api):
    import io

    parquet = (await api.get(QUERIES["aggregate"] + " FORMAT Parquet")).body
    rows = json.loads((await api.get(QUERIES["aggregate"])).body)["data"]
    table = pq.read_table(io.BytesIO(parquet)).to_pylist()
    decoded = [{k: v.decode() if isinstance(v, bytes) else v for k, v in r.items()} for r in table]
    assert decoded == rows


# --- exact values in every JSON format ---------------------------------------------------------

EXPECTED_TYPES = {
    "u64_max": ("UInt64", 2**64 - 1),
    "i64_min": ("Int64", -(2**63)),
    "i53": ("Int64", 2**53 + 1),
    "dec": ("Decimal(18, 3)", Decimal("1234567.891")),
    "nothing": ("Nullable(Int64)", None),
    "something": ("Nullable(Int64)", -7),
    "arr": ("Array(UInt64)", [2**64 - 1, 1]),
    "m": ("Map(String, Int64)", {"a": -(2**63)}),
    "d": ("Date", "2023-06-15"),
    "dt": ("DateTime", "2023-06-15 14:30:00"),
    "dt64": ("DateTime64(3)", "2023-06-15 14:30:00.123"),
}


async def test_json_keeps_every_type_exact(both: Api):
    body = _exact((await both.get(TYPES + " FORMAT JSON")).body)
    assert {m["name"]: m["type"] for m in body["meta"]} == {
        name: kind for name, (kind, _) in EXPECTED_TYPES.items()
    }
    assert body["data"] == [{name: value for name, (_, value) in EXPECTED_TYPES.items()}]
    assert body["rows"] == 1


async def test_json_compact_and_each_row_keep_every_type_exact(both: Api):
    expected = [value for _, value in EXPECTED_TYPES.values()]
    compact = _exact((await both.get(TYPES + " FORMAT JSONCompact")).body)
    assert compact["data"] == [expected]
    lines = ((await both.get(TYPES + " FORMAT JSONEachRow")).body).splitlines()
    assert [_exact(line) for line in lines] == [dict(zip(EXPECTED_TYPES, expected, strict=True))]


async def test_counts_are_integers(both: Api):
    body = _exact((await both.get("SELECT count() AS n, [1, 2] AS a FROM ab_test_events")).body)
    assert body["data"] == [{"n": ROWS, "a": [1, 2]}]


# --- how clients send the SQL ------------------------------------------------------------------

COUNT = "SELECT variant, count() AS n FROM ab_test_events GROUP BY variant ORDER BY variant"
FORM = "application/x-www-form-urlencoded"
POSTS = {
    "text/plain (the SDKs)": ({"Content-Type": "text/plain"}, COUNT.encode()),
    "form q": ({"Content-Type": FORM}, b"q=" + COUNT.replace(" ", "+").encode()),
    "curl --data SQL": ({"Content-Type": FORM}, COUNT.encode()),
    "json": ({"Content-Type": "application/json"}, orjson.dumps({"q": COUNT})),
    "gzip": (
        {"Content-Type": "text/plain", "Content-Encoding": "gzip"},
        gzip.compress(COUNT.encode(), mtime=0),
    ),
}


@pytest.mark.parametrize("case", list(POSTS))
async def test_post_answers_as_get_does(api: Api, case: str):
    headers, body = POSTS[case]
    posted = await api.post(body, headers)
    assert posted.status == 200, posted.body
    expected = {"A": sum(e["variant"] == "A" for e in EVENTS), "B": 0}
    expected["B"] = ROWS - expected["A"]
    data = json.loads(posted.body)["data"]
    assert {row["variant"]: row["n"] for row in data} == expected
    got = await api.get(COUNT)
    assert _masked(posted.body) == _masked(got.body)


async def test_post_form_pipeline_and_body_wins_over_query_string(api: Api):
    form = b"q=SELECT+count()+AS+n+FROM+_&pipeline=test_summary"
    response = await api.post(form, {"Content-Type": FORM})
    assert json.loads(response.body)["data"] == [{"n": len(TESTS) * len(VARIANTS)}]


# --- the row cap -------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["JSON", "CSV", "Parquet"])
async def test_a_result_over_the_cap_is_an_error_naming_it(both: Api, fmt: str):
    response = await both.get(f"SELECT * FROM ab_test_events FORMAT {fmt}")  # noqa: S608
    body = json.loads(response.body)
    assert response.status == 400, body
    assert f"more than {CAP} rows" in body["message"]
    assert "LIMIT" in body["message"]


async def test_a_limit_reads_up_to_the_cap_and_says_what_it_left(both: Api):
    response = await both.get(f"SELECT user_id FROM ab_test_events LIMIT {CAP}")  # noqa: S608
    body = json.loads(response.body)
    assert response.status == 200, body
    assert body["rows"] == CAP
    assert body["rows_before_limit_at_least"] >= ROWS
    unlimited = json.loads(
        (await both.get("SELECT 1 AS x FROM ab_test_events WHERE revenue < 5")).body
    )
    assert unlimited["rows"] == sum(e["revenue"] < 5 for e in EVENTS)
    assert "rows_before_limit_at_least" not in unlimited


async def test_the_cap_counts_the_answer_not_what_subqueries_read(both: Api):
    q = (
        "SELECT count() AS n FROM ab_test_events "
        "WHERE user_id IN (SELECT user_id FROM ab_test_events)"
    )
    body = json.loads((await both.get(q)).body)
    assert body["data"] == [{"n": ROWS}]


# --- what may be read --------------------------------------------------------------------------


@pytest.mark.parametrize("q", ["SELECT 1", "SELECT now() AS t", "SELECT 1 + 1 AS two FORMAT CSV"])
@pytest.mark.parametrize("who", ["admin", "appender", "summary"])
async def test_constant_queries_need_no_scope(both: Api, q: str, who: str):
    token = TOKEN if who == "admin" else both.tokens[who]
    response = await both.get(q, token)
    assert response.status == 200, response.body


@pytest.mark.parametrize(("who", "status"), [("admin", 200), ("reader", 200), ("summary", 403)])
async def test_quarantine_reads_with_the_datasources_read_scope(both: Api, who: str, status: int):
    token = TOKEN if who == "admin" else both.tokens[who]
    response = await both.get("SELECT count() AS n FROM ab_test_events_quarantine", token)
    body = json.loads(response.body)
    assert response.status == status, body
    if status == 200:
        assert body["data"] == [{"n": 1}]
    else:
        assert "DATASOURCES:READ:ab_test_events" in body["message"]


def _summary_users(test_id: str) -> dict[str, int]:
    """test_summary's `users` per variant, by hand: distinct users of the test's events."""
    users: dict[str, set[str]] = {}
    for event in EVENTS:
        if event["test_id"] == test_id:
            users.setdefault(event["variant"], set()).add(event["user_id"])
    return {variant: len(ids) for variant, ids in users.items()}


@pytest.mark.parametrize("who", ["admin", "summary"])
async def test_pipes_read_as_tables_and_as_the_pipeline(both: Api, who: str):
    token = TOKEN if who == "admin" else both.tokens["summary"]
    q = "SELECT variant, users FROM test_summary WHERE test_id = 'homepage' ORDER BY variant"
    response = await both.get(q + " FORMAT JSONEachRow", token)
    assert response.status == 200, response.body
    rows = [json.loads(line) for line in (response.body).splitlines()]
    assert {row["variant"]: row["users"] for row in rows} == _summary_users("homepage")
    counted = await both.get("SELECT count() AS n FROM _", token, pipeline="test_summary")
    assert json.loads(counted.body)["data"] == [{"n": len(TESTS) * len(VARIANTS)}]


@pytest.mark.parametrize(
    ("who", "q", "params", "status", "message"),
    [
        ("reader", "SELECT count() FROM test_summary", {}, 403, "PIPES:READ:test_summary"),
        ("reader", "SELECT 1 FROM _", {"pipeline": "test_summary"}, 403, "PIPES:READ:test_summary"),
        (
            "summary",
            "SELECT 1 FROM _",
            {"pipeline": "test_segments"},
            403,
            "PIPES:READ:test_segments",
        ),
        (
            "summary",
            "SELECT count() FROM ab_test_events",
            {},
            403,
            "DATASOURCES:READ:ab_test_events",
        ),
        (
            "summary",
            "SELECT count() FROM test_summary "
            "WHERE test_id IN (SELECT test_id FROM ab_test_events)",
            {},
            403,
            "DATASOURCES:READ:ab_test_events",
        ),
        ("admin", "SELECT 1 FROM _", {"pipeline": "nope"}, 404, "pipe 'nope' does not exist"),
        ("admin", "SELECT 1 FROM _", {}, 400, "_"),
    ],
)
async def test_pipe_refusals(both: Api, who: str, q: str, params: dict, status: int, message: str):
    token = TOKEN if who == "admin" else both.tokens[who]
    response = await both.get(q, token, **params)
    body = json.loads(response.body)
    assert response.status == status, body
    assert message in body["message"]


# --- errors ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("q", "status", "message"),
    [
        ("SELECT nope FROM ab_test_events", 400, "nope"),
        ("SELECT nope FROM test_summary", 400, "nope"),
        ("SELECT 1 FORMAT XML", 400, "format XML is not supported"),
        ("SELECT 1 FORMAT CSV SETTINGS max_threads = 2", 403, "SETTINGS"),
        # The caller's own text is no statement: the engine's words, about that text.
        ("SELECT * FROM (SELECT 1 FORMAT CSV)", 400, "Syntax error: failed at position 32"),
        ("SELECT 1 INTO OUTFILE 'x.csv' FORMAT CSV", 403, "INTO OUTFILE"),
        ("SELECT toInt8('x') FROM ab_test_events", 400, ""),
    ],
)
async def test_errors_never_quote_the_wrapped_statement(
    both: Api, q: str, status: int, message: str
):
    response = await both.get(q)
    body = json.loads(response.body)
    assert response.status == status, body
    assert message in body["message"]
    for internal in ("SELECT * FROM (", "SETTINGS max_", "readonly", "WITH `", "max_result_rows"):
        assert internal not in body["message"], body


# --- gRPC callers and the interface for a pipe's q= -------------------------------------------


async def test_grpc_callers_get_bytes_or_a_typed_answer(api: Api):
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{api.suite.query.port}")
    stub = sql_service_pb2_grpc.SqlServiceStub(channel)
    auth = (("authorization", f"Bearer {TOKEN}"),)
    try:
        raw = await stub.RunQuery(
            sql_service_pb2.RunQueryRequest(q="SELECT count() AS n FROM ab_test_events FORMAT CSV"),
            metadata=auth,
        )
        assert (raw.content_type, raw.data) == ("text/csv; charset=UTF-8", f"{ROWS}\n".encode())
        typed = await stub.Query(
            sql_service_pb2.QueryRequest(q="SELECT count() AS n FROM ab_test_events FORMAT CSV"),
            metadata=auth,
        )
        assert [m.name for m in typed.meta] == ["n"]
        assert typed.data[0]["n"] == float(ROWS)
    finally:
        await channel.close()


async def test_answer_binds_the_callers_sources_without_their_scopes(api: Api):
    sql_api = SqlApi(api.warehouse, Admission(4, 2), api.suite.current, 1024)
    pipe = ("SELECT number AS x FROM system.numbers LIMIT {n:UInt8}", {"n": "3"})
    body, content_type = await sql_api.answer(
        "SELECT sum(x) AS total FROM _ FORMAT JSONEachRow",
        scopes=(),
        token_key="k",
        sources={"_": pipe},
    )
    assert (body, content_type) == (b'{"total":3}\n', "application/x-ndjson; charset=UTF-8")
    with pytest.raises(SqlFailure) as refused:
        await sql_api.answer(
            "SELECT * FROM ab_test_events", scopes=(), token_key="k", sources={"_": pipe}
        )
    assert refused.value.code == grpc.StatusCode.PERMISSION_DENIED


def test_two_pipes_binding_one_parameter_differently_cannot_run_together():
    with pytest.raises(SqlFailure) as clash:
        _with_clause({"a": ("SELECT {n:UInt8}", {"n": "1"}), "b": ("SELECT {n:UInt8}", {"n": "2"})})
    assert clash.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert "'n'" in clash.value.message
    prefix, params = _with_clause(
        {"a": ("SELECT {n:UInt8}", {"n": "1"}), "b": ("SELECT 2", {"n": "1"})}
    )
    assert params == {"n": "1"}
    assert prefix.startswith("WITH `a` AS (\nSELECT {n:UInt8}\n), `b` AS (")


# --- a deployed Tinybird project's pipes ---------------------------------------------------

TUTORIALS = Path(__file__).parent / "projects" / "tutorials"
PAGES = {"/a": 3, "/b": 2, "/c": 1}


@pytest.fixture(scope="module")
async def tinybird(chdb_dir: Path) -> AsyncIterator[Suite]:
    warehouse = EmbeddedWarehouse(chdb_dir, unique_database("sqltb"), LIMITS)
    await warehouse.open()
    suite = await start_suite(warehouse, project=TUTORIALS)
    views = [
        {"event_type": "pageview", "page_url": url, "page_title": url.upper()}
        for url, count in PAGES.items()
        for _ in range(count)
    ]
    events = [{"event_type": "click", "page_url": "/a", "page_title": "/A"}, *views]
    body = b"\n".join(
        orjson.dumps(
            {
                **dict.fromkeys(
                    ("event_id", "session_id", "referrer", "device_type", "browser"), "x"
                ),
                **event,
                "user_id": "u",
                "properties": "{}",
                "timestamp": "2023-06-15 10:00:00",
            }
        )
        for event in events
    )
    async with (
        aiohttp.ClientSession() as http,
        http.post(
            f"{suite.gateway_url}/v0/events?name=clickstream_events&wait=true&token={TOKEN}",
            data=body,
        ) as response,
    ):
        assert (await response.json())["successful_rows"] == len(events)
    yield suite
    await suite.stop()
    await warehouse.execute(f"DROP DATABASE IF EXISTS `{warehouse.database}`")
    await warehouse.close()


async def test_a_tinybird_projects_pipes_read_as_tables(tinybird: Suite):
    api = Api(tinybird, tinybird.warehouse, {})
    q = "SELECT page_url, view_count FROM get_popular_pages ORDER BY page_url FORMAT JSONEachRow"
    response = await api.get(q)
    assert response.status == 200, response.body
    rows = [json.loads(line) for line in response.body.splitlines()]
    assert {row["page_url"]: row["view_count"] for row in rows} == PAGES
    total = await api.get("SELECT sum(view_count) AS n FROM _", pipeline="get_popular_pages")
    assert json.loads(total.body)["data"] == [{"n": sum(PAGES.values())}]
    # A pipe whose parameter has no default cannot be read with its defaults.
    needs = await api.get("SELECT count() FROM session_insights")
    assert needs.status == 400
    assert "session_insights" in json.loads(needs.body)["message"]
    assert "user_id" in json.loads(needs.body)["message"]


async def test_pipes_whose_view_lacks_its_sibling_are_answered_from_the_view(
    chdb_dir: Path, tmp_path: Path
) -> None:
    """Where another process makes the schema (`pipit migrate` on a cluster) a service of
    this release may run before the views' siblings exist: a query reading a pipe, with an
    analysis or without, is answered from the views meanwhile, as the pipe's own RPC is."""
    warehouse = EmbeddedWarehouse(chdb_dir, unique_database("sqlfmt_views"), LIMITS)
    queries = [
        "SELECT * FROM test_summary ORDER BY test_id, variant",
        "SELECT test_id, variant, users, p_value FROM test_results ORDER BY test_id, variant",
    ]
    async for api in _start(warehouse, tmp_path):
        before = [await api.get(q) for q in queries]
        assert all(reply.status == 200 for reply in before), [r.body for r in before]
        assert all(json.loads(reply.body)["data"] for reply in before), "rows were compared"
        await warehouse.execute(f"DROP VIEW `{warehouse.database}`.`ab_bitmap_range__whole`")
        await warehouse.execute(f"DROP VIEW `{warehouse.database}`.`ab_buyer_arms__whole`")
        for q, reply in zip(queries, before, strict=True):
            after = await api.get(q)
            assert after.status == 200, after.body
            assert json.loads(after.body)["data"] == json.loads(reply.body)["data"]
        # Any other failure is the caller's to see: without the view there is no answer.
        await warehouse.execute(f"DROP VIEW `{warehouse.database}`.`ab_bitmap_range`")
        assert (await api.get(queries[0])).status >= 400
