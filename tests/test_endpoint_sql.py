"""The endpoints' SQL files, run on chDB, against the plain-Python reference answers.

Each datasource gets a few thousand generated events plus hand-written ones for the edge
cases (the tutorials' samples, single events, one-event and zero-length sessions, tied
timestamps, a renamed page, the `pageview` spelling). Parameters are bound the way the
binder binds them: every request field with a parameter option, as a string, defaults
applied, optional strings without a default as ''."""

from __future__ import annotations

import math
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import expected
import orjson
import pytest
from conftest import unique_database
from endpoint_cases import CASES, CUT, DATA, at, case_id

from common.datasources import registry
from common.warehouse.base import Literal
from common.warehouse.embedded import EmbeddedWarehouse
from pipit.clickhouse.v1 import options_pb2
from pipit.query.v1 import query_service_pb2
from pipit.seed.generator import DATASOURCES, generate
from services.query.analysis import Analysis, analysis_of
from services.query.whole_ranges import WholeRanges

SQL_DIR = Path(__file__).resolve().parent.parent / "services" / "query" / "sql"
RANGE_VIEWS = [view for ds in registry().values() for view in ds.range_views]
PLACEHOLDER = re.compile(r"\{(\w+):(\w+|Array\(\w+\))\}")


# --- the endpoints as the protos declare them ---------------------------------------------


@dataclass(frozen=True)
class Endpoint:
    name: str
    parameters: dict[str, Any]  # field name -> pipit.clickhouse.v1.Parameter
    columns: list[str]  # row message fields, in order
    analysis: Analysis | None  # what finishes the SQL's rows, if anything

    @property
    def sql(self) -> str:
        return (SQL_DIR / f"{self.name}.sql").read_text()

    def sql_for(self, params: dict[str, Any], *, inline: bool = True) -> str:
        """The SQL the query service runs for `params`: a whole range's range views are
        their siblings, each call replaced by that form's SELECT (`inline`; without it,
        called by name, as the Query API runs a pipe) (services/query/whole_ranges.py)."""
        ranges = WholeRanges.of(self.sql, RANGE_VIEWS)
        return self.sql if ranges is None else ranges.sql_for(params, inline=inline)

    def bind(self, given: dict[str, Any]) -> dict[str, Any]:
        """What the binder sends: every parameter, defaults applied, '' when none."""
        unknown = set(given) - set(self.parameters)
        assert not unknown, f"{self.name} has no parameters {unknown}"
        return {
            field: given.get(field, parameter.default_value)
            for field, parameter in self.parameters.items()
        }

    def bound(self, given: dict[str, Any]) -> dict[str, Any]:
        """bind()'s values as the warehouse takes them: a list as ClickHouse's array literal
        (its strings quoted with only backslash and quote escaped)."""

        def quoted(text: str) -> str:
            return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"

        return {
            field: Literal("[" + ",".join(map(quoted, value)) + "]")
            if isinstance(value, list)
            else value
            for field, value in self.bind(given).items()
        }


def _endpoints() -> dict[str, Endpoint]:
    service = query_service_pb2.DESCRIPTOR.services_by_name["QueryService"]
    found = {}
    for method in service.methods:
        name = method.GetOptions().Extensions[options_pb2.endpoint]
        parameters = {}
        for field in method.input_type.fields:
            options = field.GetOptions()
            if options.HasExtension(options_pb2.parameter):
                parameters[field.name] = options.Extensions[options_pb2.parameter]
        row = method.output_type.fields_by_name["data"].message_type
        columns = [f.name for f in row.fields]
        found[name] = Endpoint(name, parameters, columns, analysis_of(method))
    return found


ENDPOINTS = _endpoints()


@pytest.fixture(scope="module")
async def warehouse(chdb_dir: Path) -> AsyncIterator[EmbeddedWarehouse]:
    """One database holding DATA, shared by the module's tests (they only read)."""
    wh = EmbeddedWarehouse(chdb_dir, unique_database("sql"))
    await wh.open()
    await wh.ensure_schema(list(registry().values()))
    for name, rows in DATA.items():
        body = b"\n".join(orjson.dumps(row) for row in rows)
        await wh.insert_json_rows(name, registry()[name].column_names, body)
    yield wh
    await wh.execute(f"DROP DATABASE IF EXISTS `{wh.database}`")
    await wh.close()


async def _run(warehouse: EmbeddedWarehouse, name: str, given: dict[str, Any]) -> list[dict]:
    endpoint = ENDPOINTS[name]
    params = endpoint.bound(given)
    result = await warehouse.query(endpoint.sql_for(params), params)
    if endpoint.analysis is not None:
        result = await endpoint.analysis.run(result, params)
    assert [column["name"] for column in result.meta] == endpoint.columns
    types = {column["name"]: column["type"] for column in result.meta}
    for column in ("session_start", "session_end", "timestamp", "period"):
        if column in types:
            assert types[column] == "DateTime", (column, types[column])
    if "date" in types:
        assert types["date"] == "Date"
    assert result.rows == len(result.data)
    return result.data


# --- tests ----------------------------------------------------------------------------


def _tiered(case: tuple[str, dict[str, Any]]) -> Any:
    # Every funnel call pays the engine's parse and analysis of its long SQL, whatever the
    # rows (about 60 CPU-ms now, half a second when this mark was set): its many cases stay in
    # the slow tier. tests/test_journeys.py keeps funnel in the quick one.
    marks = [pytest.mark.slow] if case[0] == "funnel" else []
    return pytest.param(case, marks=marks, id=case_id(case))


@pytest.mark.parametrize("case", [_tiered(case) for case in CASES])
async def test_endpoint_matches_reference(
    warehouse: EmbeddedWarehouse, case: tuple[str, dict[str, Any]]
) -> None:
    name, given = case
    datasource, reference = expected.ENDPOINTS[name]
    actual = await _run(warehouse, name, given)
    want = reference(DATA[datasource] if datasource else DATA, **ENDPOINTS[name].bind(given))
    tolerances = expected.FLOAT_TOLERANCES.get(name, {})
    expected.assert_rows_match(actual, want, tolerances)
    # The tolerance absorbs rounding ties, not missing rounding: rounded columns carry
    # no more decimals than promised (an analysis's statistics are not rounded at all).
    rounded = tolerances if ENDPOINTS[name].analysis is None else {}
    for column, tolerance in rounded.items():
        digits = round(-math.log10(tolerance))
        assert all(round(row[column], digits) == row[column] for row in actual), column


def test_every_endpoint_has_one_sql_file() -> None:
    assert sorted(p.stem for p in SQL_DIR.glob("*.sql")) == sorted(ENDPOINTS)
    assert sorted(ENDPOINTS) == sorted(expected.ENDPOINTS)


@pytest.mark.parametrize("name", sorted(ENDPOINTS))
def test_sql_placeholders_are_the_request_parameters(name: str) -> None:
    endpoint = ENDPOINTS[name]
    sql = endpoint.sql
    assert sql.startswith("--"), "each SQL file opens with a comment header"
    placeholders = set(PLACEHOLDER.findall(sql))
    declared = {(field, parameter.type) for field, parameter in endpoint.parameters.items()}
    if endpoint.analysis is None:
        assert placeholders == declared
    else:  # some parameters are the analysis's alone
        assert placeholders < declared


def test_every_endpoint_is_exercised() -> None:
    assert {name for name, _ in CASES} == set(ENDPOINTS)


def test_edge_cases_are_present_in_the_reference() -> None:
    """The cases above really contain what they claim to."""
    stats = expected.user_session_stats(DATA["user_events"], limit="10000")
    assert any(row["event_count"] == 1 for row in stats), "one-event sessions"
    assert any(row["event_count"] > 3 for row in stats)
    cut = expected.user_session_stats(DATA["user_events"], limit="10000", **CUT)
    full = {row["session_id"]: row["event_count"] for row in stats}
    assert any(row["event_count"] < full[row["session_id"]] for row in cut), "cut sessions"
    tie = expected.user_session_stats(DATA["user_events"], user_id="user_tie")
    assert [row["session_id"] for row in tie] == ["s_tia", "s_tie"]  # same start
    assert tie[1]["device_type"] == "tablet"  # ev_tie_a < ev_tie_b in the same second
    insights = expected.session_insights(DATA["app_events"], user_id="user_tie")
    assert [row["session_id"] for row in insights] == ["sess_tia", "sess_tie"]
    assert (insights[1]["device_type"], insights[1]["os"]) == ("mobile", "iOS")
    assert expected.session_insights(DATA["app_events"], user_id="user_zero") == []
    pages = {
        row["page_url"]: row
        for row in expected.get_popular_pages(DATA["clickstream_events"], limit="10000")
    }
    assert pages["https://example.com/legacy"]["view_count"] == 2
    assert pages["https://example.com/pricing"]["page_title"] == "Plans & Pricing"
    activity = expected.user_activity_metrics(DATA["user_events"])
    assert any(row["page_views"] == 0 for row in activity), "a day without page views"


async def test_tutorial_acceptance_call(warehouse: EmbeddedWarehouse) -> None:
    """Issue 2's acceptance numbers, on a test holding only the tutorial's sample."""
    rows = await _run(
        warehouse,
        "test_summary",
        {
            "test_id": "solo_test",
            "start_date": "2023-07-01 00:00:00",
            "end_date": "2023-07-31 23:59:59",
        },
    )
    assert rows == [
        {
            "test_id": "solo_test",
            "variant": "B",
            "users": 1,
            "conversions": 1,
            "conversion_rate": 1,
            "total_revenue": 29.99,
            "revenue_per_user": 29.99,
        }
    ]


async def test_day_without_page_views_has_zero_click_through_rate(
    warehouse: EmbeddedWarehouse,
) -> None:
    rows = await _run(warehouse, "user_activity_metrics", at("2025-05-11 17:49:55"))
    assert rows == [
        {
            "date": "2025-05-11",
            "unique_users": 1,
            "sessions": 1,
            "total_events": 1,
            "page_views": 0,
            "clicks": 0,
            "click_through_rate": 0,
        }
    ]


# --- the generator ------------------------------------------------------------------------


@pytest.mark.parametrize("name", DATASOURCES)
def test_generator_rows_have_exactly_the_datasource_columns(name: str) -> None:
    columns = registry()[name].column_names
    rows = list(generate(name, 500, days=3, seed=1))
    assert len(rows) == 500
    assert all(tuple(row) == columns for row in rows)
    assert rows == list(generate(name, 500, days=3, seed=1))
    assert rows != list(generate(name, 500, days=3, seed=2))
    assert all("2023-06-01 00:00:00" <= row["timestamp"] <= "2023-06-03 23:59:59" for row in rows)
    assert len({row["session_id"] for row in rows}) < len(rows)
