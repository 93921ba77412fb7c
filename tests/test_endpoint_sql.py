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

from common.datasources import registry
from common.warehouse.embedded import EmbeddedWarehouse
from pipit.clickhouse.v1 import options_pb2
from pipit.query.v1 import query_service_pb2
from pipit.seed.generator import DATASOURCES, generate, generate_all

SQL_DIR = Path(__file__).resolve().parent.parent / "services" / "query" / "sql"
PLACEHOLDER = re.compile(r"\{(\w+):(\w+)\}")


# --- the endpoints as the protos declare them ---------------------------------------------


@dataclass(frozen=True)
class Endpoint:
    name: str
    parameters: dict[str, Any]  # field name -> pipit.clickhouse.v1.Parameter
    columns: list[str]  # row message fields, in order

    @property
    def sql(self) -> str:
        return (SQL_DIR / f"{self.name}.sql").read_text()

    def bind(self, given: dict[str, str]) -> dict[str, str]:
        """What the binder sends: every parameter, defaults applied, '' when none."""
        unknown = set(given) - set(self.parameters)
        assert not unknown, f"{self.name} has no parameters {unknown}"
        return {
            field: given.get(field, parameter.default_value)
            for field, parameter in self.parameters.items()
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
        found[name] = Endpoint(name, parameters, [f.name for f in row.fields])
    return found


ENDPOINTS = _endpoints()


# --- the data -----------------------------------------------------------------------------

GENERATED_EVENTS = 3000
GENERATED_DAYS = 10  # 2023-06-01 .. 2023-06-10

_EXTRA: dict[str, list[dict[str, Any]]] = {
    "ab_test_events": [
        # The tutorial's POST sample (joins the generated homepage_redesign test).
        {
            "timestamp": "2023-06-15 14:30:00",
            "user_id": "user_12345",
            "test_id": "homepage_redesign",
            "variant": "B",
            "event_type": "page_view",
            "conversion": 1,
            "revenue": 29.99,
            "session_id": "session_789012",
            "device": "mobile",
            "country": "US",
        },
        # A test with a single event.
        {
            "timestamp": "2023-07-20 09:00:00",
            "user_id": "user_solo",
            "test_id": "solo_test",
            "variant": "B",
            "event_type": "page_view",
            "conversion": 1,
            "revenue": 29.99,
            "session_id": "session_solo",
            "device": "mobile",
            "country": "US",
        },
        # The tutorial's data sample, years after the generated window.
        {
            "timestamp": "2025-04-28 18:42:22",
            "user_id": "user_455",
            "test_id": "test_5",
            "variant": "variant_a",
            "event_type": "click",
            "conversion": 1,
            "revenue": 84.55,
            "session_id": "session_3455",
            "device": "desktop",
            "country": "AU",
        },
    ],
    "user_events": [
        # The tutorial's data sample: a single event of a user seen nowhere else.
        {
            "event_id": "ev_73902",
            "user_id": "user_902",
            "session_id": "session_3902",
            "event_type": "scroll",
            "page_url": "https://example.com/about",
            "referrer": "https://twitter.com",
            "device_type": "tablet",
            "browser": "Safari",
            "country": "Canada",
            "city": "Toronto",
            "properties": '{"button_id":"btn_2","page_section":"main"}',
            "timestamp": "2025-05-11 17:49:55",
        },
        # A session whose first second holds two events: the smaller event_id is first.
        *(
            {
                "event_id": event_id,
                "user_id": "user_tie",
                "session_id": "s_tie",
                "event_type": event_type,
                "page_url": "https://example.com/" + page,
                "referrer": "",
                "device_type": device,
                "browser": browser,
                "country": country,
                "city": "",
                "properties": "{}",
                "timestamp": timestamp,
            }
            for event_id, event_type, page, device, browser, country, timestamp in (
                (
                    "ev_tie_b",
                    "page_view",
                    "",
                    "desktop",
                    "Chrome",
                    "Germany",
                    "2023-06-04 10:00:00",
                ),
                ("ev_tie_a", "click", "", "tablet", "Safari", "France", "2023-06-04 10:00:00"),
                (
                    "ev_tie_c",
                    "page_view",
                    "pricing",
                    "mobile",
                    "Firefox",
                    "Spain",
                    "2023-06-04 10:05:00",
                ),
            )
        ),
        # A second session starting in the same second: ties by session_id.
        {
            "event_id": "ev_tie_d",
            "user_id": "user_tie",
            "session_id": "s_tia",
            "event_type": "page_view",
            "page_url": "https://example.com/docs",
            "referrer": "",
            "device_type": "mobile",
            "browser": "Chrome",
            "country": "Japan",
            "city": "Tokyo",
            "properties": "{}",
            "timestamp": "2023-06-04 10:00:00",
        },
    ],
    "app_events": [
        # The tutorial's data sample: a one-event session (0 s, so no session insight).
        {
            "event_id": "evt_372713",
            "user_id": "user_2713",
            "session_id": "sess_22713",
            "event_type": "login",
            "feature": "billing",
            "timestamp": "2025-05-11 21:25:07",
            "device_type": "mobile",
            "browser": "Firefox",
            "os": "iOS",
            "location": "UK",
            "metadata": '{"subscription_tier":"basic","duration":323}',
        },
        # Three events in the same second: a 0 s session.
        *(
            {
                "event_id": f"evt_zero_{n}",
                "user_id": "user_zero",
                "session_id": "sess_zero",
                "event_type": "click",
                "feature": "reports",
                "timestamp": "2023-06-05 12:00:00",
                "device_type": "desktop",
                "browser": "Chrome",
                "os": "Linux",
                "location": "DE",
                "metadata": "{}",
            }
            for n in range(3)
        ),
        # Tied first second with different devices; one event without a feature.
        *(
            {
                "event_id": event_id,
                "user_id": "user_tie",
                "session_id": "sess_tie",
                "event_type": "view",
                "feature": feature,
                "timestamp": timestamp,
                "device_type": device,
                "browser": browser,
                "os": os_,
                "location": location,
                "metadata": "{}",
            }
            for event_id, feature, device, browser, os_, location, timestamp in (
                (
                    "evt_tie_b",
                    "dashboard",
                    "desktop",
                    "Edge",
                    "Windows",
                    "US",
                    "2023-06-06 08:00:00",
                ),
                ("evt_tie_a", "", "mobile", "Safari", "iOS", "FR", "2023-06-06 08:00:00"),
                (
                    "evt_tie_c",
                    "billing",
                    "tablet",
                    "Chrome",
                    "Android",
                    "ES",
                    "2023-06-06 08:30:00",
                ),
            )
        ),
        # A second session starting in the same second: ties by session_id.
        *(
            {
                "event_id": event_id,
                "user_id": "user_tie",
                "session_id": "sess_tia",
                "event_type": "view",
                "feature": "search",
                "timestamp": timestamp,
                "device_type": "desktop",
                "browser": "Firefox",
                "os": "Linux",
                "location": "JP",
                "metadata": "{}",
            }
            for event_id, timestamp in (
                ("evt_tie_d", "2023-06-06 08:00:00"),
                ("evt_tie_e", "2023-06-06 08:00:09"),
            )
        ),
    ],
    "clickstream_events": [
        # The tutorial's data sample: a one-event session of a user seen nowhere else.
        {
            "event_id": "ev_14742",
            "user_id": "user_742",
            "session_id": "sess_4742",
            "event_type": "page_view",
            "page_url": "https://example.com/contact",
            "page_title": "Contact Page",
            "referrer": "https://google.com",
            "timestamp": "2025-05-07 11:02:40",
            "device_type": "desktop",
            "browser": "Safari",
            "properties": '{"browser_version":"13.0", "screen_size":"1766x1010"}',
        },
        # The tutorial SQL's `pageview` spelling, and a page renamed after the window.
        *(
            {
                "event_id": event_id,
                "user_id": "user_legacy",
                "session_id": "sess_legacy",
                "event_type": event_type,
                "page_url": "https://example.com/" + page,
                "page_title": title,
                "referrer": "",
                "timestamp": timestamp,
                "device_type": "desktop",
                "browser": "Firefox",
                "properties": "{}",
            }
            for event_id, event_type, page, title, timestamp in (
                # Same second, inserted out of event_id order.
                ("ev_legacy_2", "pageview", "legacy", "Legacy Page", "2023-06-02 09:00:00"),
                ("ev_legacy_1", "pageview", "legacy", "Legacy Page", "2023-06-02 09:00:00"),
                ("ev_legacy_3", "pageview", "pricing", "Pricing", "2023-06-02 09:01:00"),
                ("ev_legacy_4", "page_view", "pricing", "Plans & Pricing", "2023-06-12 12:00:00"),
            )
        ),
    ],
}

DATA: dict[str, list[dict[str, Any]]] = {
    name: [*rows, *_EXTRA[name]]
    for name, rows in generate_all(GENERATED_EVENTS, days=GENERATED_DAYS, seed=7).items()
}


def _busiest(datasource: str, column: str) -> str:
    counts: dict[str, int] = {}
    for event in DATA[datasource]:
        counts[event[column]] = counts.get(event[column], 0) + 1
    return max(sorted(counts), key=counts.__getitem__)


def _session_with_tied_timestamps(datasource: str) -> str:
    seen: set[tuple[str, str]] = set()
    for event in DATA[datasource]:
        key = (event["session_id"], event["timestamp"])
        if key in seen:
            return event["session_id"]
        seen.add(key)
    raise AssertionError(f"no session of {datasource} has two events in one second")


# Bounds in the middle of days, so that sessions (and days, hours, weeks) get cut.
CUT = {"start_date": "2023-06-03 13:17:23", "end_date": "2023-06-07 08:41:09"}
EMPTY = {"start_date": "2001-01-01 00:00:00", "end_date": "2001-01-02 00:00:00"}
JUNE = {"start_date": "2023-06-01 00:00:00", "end_date": "2023-06-30 23:59:59"}


def _at(timestamp: str) -> dict[str, str]:
    """Both bounds on one second: inclusive bounds keep that second's events."""
    return {"start_date": timestamp, "end_date": timestamp}


AB_USER = _busiest("ab_test_events", "user_id")
UE_USER = _busiest("user_events", "user_id")
APP_USER = _busiest("app_events", "user_id")
CS_USER = _busiest("clickstream_events", "user_id")
CS_SESSION = _busiest("clickstream_events", "session_id")
CS_TIED_SESSION = _session_with_tied_timestamps("clickstream_events")

CASES: list[tuple[str, dict[str, str]]] = [
    # A/B testing
    ("test_summary", {}),
    ("test_summary", {"test_id": "homepage_redesign", **JUNE}),
    ("test_summary", {"test_id": "checkout_flow"}),
    ("test_summary", {"test_id": "solo_test"}),
    ("test_summary", {"test_id": "no_such_test"}),
    ("test_summary", CUT),
    ("test_summary", EMPTY),
    ("test_summary", _at("2023-07-20 09:00:00")),
    ("test_segments", {}),
    ("test_segments", {"segment": "device"}),
    ("test_segments", {"segment": "country"}),
    ("test_segments", {"segment": "country", "test_id": "checkout_flow", **CUT}),
    ("test_segments", EMPTY),
    ("test_timeseries", {}),
    ("test_timeseries", {"interval": "hour"}),
    ("test_timeseries", {"interval": "day", "test_id": "pricing_page"}),
    ("test_timeseries", {"interval": "week"}),
    ("test_timeseries", {"interval": "hour", **CUT}),
    ("test_timeseries", {"interval": "week", **CUT}),
    ("test_timeseries", EMPTY),
    ("test_timeseries", _at("2025-04-28 18:42:22")),
    # user behavior
    ("user_session_stats", {}),
    ("user_session_stats", {"limit": "10000"}),
    ("user_session_stats", {"limit": "1"}),
    ("user_session_stats", {"user_id": UE_USER}),
    ("user_session_stats", {"user_id": UE_USER, **CUT}),
    ("user_session_stats", {"limit": "10000", **CUT}),
    ("user_session_stats", {"user_id": "user_tie"}),
    ("user_session_stats", {"user_id": "user_902"}),
    ("user_session_stats", EMPTY),
    ("user_session_stats", _at("2025-05-11 17:49:55")),
    ("user_event_timeline", {"user_id": UE_USER}),
    ("user_event_timeline", {"user_id": UE_USER, "event_type": "click"}),
    ("user_event_timeline", {"user_id": UE_USER, "event_type": "no_such_type"}),
    ("user_event_timeline", {"user_id": UE_USER, "limit": "5"}),
    ("user_event_timeline", {"user_id": UE_USER, "limit": "10000", **CUT}),
    ("user_event_timeline", {"user_id": "user_tie"}),
    ("user_event_timeline", {"user_id": "user_902"}),
    ("user_event_timeline", {"user_id": "no_such_user"}),
    ("user_event_timeline", {"user_id": UE_USER, **EMPTY}),
    ("user_activity_metrics", {}),
    ("user_activity_metrics", CUT),
    ("user_activity_metrics", EMPTY),
    ("user_activity_metrics", _at("2025-05-11 17:49:55")),
    # SaaS
    ("session_insights", {}),
    ("session_insights", {"limit": "10000"}),
    ("session_insights", {"limit": "1"}),
    ("session_insights", {"user_id": APP_USER}),
    ("session_insights", {"limit": "10000", **CUT}),
    ("session_insights", {"user_id": "user_tie"}),
    ("session_insights", {"user_id": "user_zero"}),
    ("session_insights", {"user_id": "user_2713"}),
    ("session_insights", EMPTY),
    ("feature_usage", {}),
    ("feature_usage", {"feature": "billing"}),
    ("feature_usage", {"feature": "no_such_feature"}),
    ("feature_usage", CUT),
    ("feature_usage", EMPTY),
    ("feature_usage", _at("2025-05-11 21:25:07")),
    *(("active_users", {"interval": interval}) for interval in ("1 day", "1 week", "1 month")),
    *(("active_users", {"interval": interval}) for interval in ("day", "week", "month")),
    ("active_users", {}),
    *(("active_users", {"interval": interval, **CUT}) for interval in ("1 day", "week", "month")),
    ("active_users", EMPTY),
    # clickstream
    ("get_user_journey", {"user_id": CS_USER}),
    ("get_user_journey", {"user_id": CS_USER, **CUT}),
    ("get_user_journey", {"user_id": "user_742"}),
    ("get_user_journey", {"user_id": "user_legacy"}),
    ("get_user_journey", {"user_id": "no_such_user"}),
    ("get_user_journey", {"user_id": CS_USER, **EMPTY}),
    ("get_session_events", {"session_id": CS_SESSION}),
    ("get_session_events", {"session_id": CS_TIED_SESSION}),
    ("get_session_events", {"session_id": "sess_4742"}),
    ("get_session_events", {"session_id": "sess_legacy"}),
    ("get_session_events", {"session_id": "no_such_session"}),
    ("get_popular_pages", {}),
    ("get_popular_pages", {"limit": "1"}),
    ("get_popular_pages", {"limit": "10000"}),
    ("get_popular_pages", {"limit": "10000", **CUT}),
    ("get_popular_pages", {"end_date": "2023-06-11 00:00:00", "limit": "10000"}),
    ("get_popular_pages", EMPTY),
    ("get_popular_pages", _at("2025-05-07 11:02:40")),
]


def _case_id(case: tuple[str, dict[str, str]]) -> str:
    name, given = case
    return name + ("[" + ",".join(f"{k}={v}" for k, v in given.items()) + "]" if given else "")


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


async def _run(warehouse: EmbeddedWarehouse, name: str, given: dict[str, str]) -> list[dict]:
    endpoint = ENDPOINTS[name]
    result = await warehouse.query(endpoint.sql, endpoint.bind(given))
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


@pytest.mark.parametrize("case", CASES, ids=[_case_id(case) for case in CASES])
async def test_endpoint_matches_reference(
    warehouse: EmbeddedWarehouse, case: tuple[str, dict[str, str]]
) -> None:
    name, given = case
    datasource, reference = expected.ENDPOINTS[name]
    actual = await _run(warehouse, name, given)
    want = reference(DATA[datasource], **ENDPOINTS[name].bind(given))
    tolerances = expected.FLOAT_TOLERANCES.get(name, {})
    expected.assert_rows_match(actual, want, tolerances)
    # The tolerance absorbs rounding ties, not missing rounding: rounded columns carry
    # no more decimals than promised.
    for column, tolerance in tolerances.items():
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
    assert placeholders == declared


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
    rows = await _run(warehouse, "user_activity_metrics", _at("2025-05-11 17:49:55"))
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
