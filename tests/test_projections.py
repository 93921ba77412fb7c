"""Aggregate projections (declared in the datasource protos) and their range views under
the endpoints whose raw-table cost grows with the data: their answers equal the
plain-Python reference over the rows for whole-hour, whole-day and cut ranges alike, on a
table whose parts were written partly before the projections existed (and which still
carried a projection Pipit has retired); and the whole hours of a range are really read
from the projection (so the cost claim is checked, not assumed)."""

from __future__ import annotations

import asyncio
import math
import re
from collections.abc import AsyncIterator, Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import expected
import orjson
import pytest
from conftest import unique_database
from datasource_protos import Spec, build
from endpoint_cases import DATA
from test_endpoint_sql import ENDPOINTS, _run

from common import page_moves
from common.datasources import Datasource, projection_name, registry
from common.range_views import EMPTY_PREFIX, WHOLE_SUFFIX, RangeView
from common.warehouse.base import WarehouseError
from common.warehouse.embedded import EmbeddedWarehouse
from pipit.project.artifact import builtin
from pipit.project.deploy import Deployer
from pipit.project.runtime import CurrentProject, Project
from pipit.project.store import DeploymentStore
from services.query.service import builtin_endpoints, endpoints, run_pipe

# endpoint -> (the projection it reads, the extra parameters it is run with). The whole
# hours inside any range are read from the projection, the cut ones at either end from
# the rows.
PROJECTED = {
    "test_summary": ("ab_variant_hours", [{}, {"test_id": "homepage_redesign"}]),
    "test_timeseries": (
        "ab_variant_hours",
        [
            {"interval": "hour"},
            {"interval": "day"},
            {"interval": "week", "test_id": "checkout_flow"},
        ],
    ),
    "test_segments": (
        "ab_segment_bitmap_hours",
        [{"segment": "device"}, {"segment": "country", "test_id": "checkout_flow"}],
    ),
    "user_activity_metrics": ("activity_bitmap_hours", [{}]),
    "feature_usage": ("feature_bitmap_hours", [{}, {"feature": "dashboard"}]),
    "active_users": (
        "app_bitmap_hours",
        [{"interval": "1 day"}, {"interval": "1 week"}, {"interval": "1 month"}],
    ),
    "get_popular_pages": ("page_view_hours", [{"limit": "5"}, {"limit": "100"}]),
    # Its users come from ab_variant_hours (as test_summary's); its buyers from ab_buyer_arms.
    "test_results": ("ab_buyer_arms", [{}, {"test_id": "checkout_flow", "control": "B"}]),
    # Each period's users from the day view of user_events' bitmaps (retention.sql).
    "retention": (
        "activity_bitmap_hours",
        [{"period": "day"}, {"period": "week"}, {"period": "month"}],
    ),
}
RANGES: list[dict[str, str]] = [
    {},  # the defaults: 1970-01-01 00:00:00 to the last DateTime
    {"start_date": "2023-06-01 00:00:00", "end_date": "2023-06-30 23:59:59"},
    {"start_date": "2023-06-03 00:00:00", "end_date": "2023-06-05 23:59:59"},
    {"start_date": "2023-06-03 00:00:00"},
    {"start_date": "2023-06-03 13:00:00", "end_date": "2023-06-07 08:59:59"},
    {"start_date": "2023-06-03 13:17:23", "end_date": "2023-06-07 08:41:09"},
    {"start_date": "2023-06-03 13:00:00", "end_date": "2023-06-07 08:41:09"},
    {"start_date": "2023-06-03 13:17:23", "end_date": "2023-06-07 08:59:59"},
    {"start_date": "2023-06-04 10:05:00", "end_date": "2023-06-04 10:50:00"},
    {"start_date": "2023-06-04 11:30:00", "end_date": "2023-06-04 12:29:59"},
    {"start_date": "2023-06-04 12:00:00", "end_date": "2023-06-04 12:59:59"},
]
LAST_DATETIME = datetime(2106, 2, 7, 6, 28, 15)


async def _projections_unknown() -> None:
    """`Warehouse.projection_names` of an engine that cannot say (as an older Pipit's
    start knew nothing of them): projections are added, not written into older parts."""
    return None


def _days_with_events(name: str, bounds: dict[str, str]) -> int:
    """How many UTC days the datasource's in-range events span, first to last, counted
    here from DATA."""
    start = bounds.get("start_date", "1970-01-01 00:00:00")
    end = bounds.get("end_date", str(LAST_DATETIME))
    days = [row["timestamp"][:10] for row in DATA[name] if start <= row["timestamp"] <= end]
    if not days:
        return 0
    return (datetime.fromisoformat(max(days)) - datetime.fromisoformat(min(days))).days + 1


def _holds_a_whole_hour(bounds: dict[str, str]) -> bool:
    """Whether `bounds` hold a whole hour, worked out here from the calendar (the last
    DateTime ends the hour it is in: nothing comes after it)."""
    start = datetime.fromisoformat(bounds.get("start_date", "1970-01-01 00:00:00"))
    end = datetime.fromisoformat(bounds.get("end_date", str(LAST_DATETIME)))
    floor = start.replace(minute=0, second=0)
    first = start if start == floor else floor + timedelta(hours=1)
    return first + timedelta(hours=1) - timedelta(seconds=1) <= end or first <= end == LAST_DATETIME


@pytest.fixture(scope="module")
async def warehouse(chdb_dir: Path) -> AsyncIterator[EmbeddedWarehouse]:
    """DATA in four parts per table: the first written to a table without projections
    (as a table created by an older Pipit), the projections then added by ensure_schema
    as an older Pipit's start did (leaving older parts to merge in their own time), the
    rest written after. The parts stay mixed, the case these tests
    are for: ensure_schema has the engine write a projection into older parts only when it
    adds the projection (test_a_start_writes_new_projections_into_older_parts)."""
    wh = EmbeddedWarehouse(chdb_dir, unique_database("projections"))
    await wh.open()
    for ds in registry().values():
        await wh.execute(_bare_table_sql(ds, wh.database))
        for retired in ds.retired_projections:
            await wh.execute(
                f"ALTER TABLE `{wh.database}`.`{ds.name}` ADD PROJECTION `{retired}` "
                "(SELECT toStartOfHour(timestamp), count() GROUP BY toStartOfHour(timestamp))"
            )
            # And its range view with a sibling, as the release that declared it made them
            # (once: two tables retire `by_session`).
            for view in (retired, retired + WHOLE_SUFFIX):
                await wh.execute(
                    f"CREATE VIEW IF NOT EXISTS `{wh.database}`.`{view}` AS SELECT "  # noqa: S608
                    "toStartOfHour(timestamp) "
                    f"AS hour, count() AS n FROM `{wh.database}`.`{ds.name}` GROUP BY hour"
                )
        # A projection the page moves now stand in for, as releases before them built it.
        for projection in ds.projections_for(numbered=False):
            if projection_name(projection) in ds.without_page_moves:
                await wh.execute(
                    f"ALTER TABLE `{wh.database}`.`{ds.name}` ADD PROJECTION {projection}"
                )
    for step in range(4):
        if step == 1:
            # As an older Pipit's start: the projections added, not written into the
            # older parts.
            with pytest.MonkeyPatch.context() as patch:
                patch.setattr(wh, "projection_names", _projections_unknown)
                for _ in range(2):  # idempotent
                    await wh.ensure_schema(list(registry().values()))
        for name, rows in DATA.items():
            part = rows[step::4]
            body = b"\n".join(orjson.dumps(row) for row in part)
            await wh.insert_json_rows(name, registry()[name].column_names, body)
    yield wh
    await wh.execute(f"DROP DATABASE IF EXISTS `{wh.database}`")
    await wh.close()


@pytest.fixture
async def own_warehouse(chdb_dir: Path) -> AsyncIterator[EmbeddedWarehouse]:
    """A database of the test's own, dropped after it: for a test that changes the schema
    or writes, which the module's shared `warehouse` must not see."""
    wh = EmbeddedWarehouse(chdb_dir, unique_database("projections_own"))
    await wh.open()
    yield wh
    await wh.execute(f"DROP DATABASE IF EXISTS `{wh.database}`")
    await wh.close()


def test_projections_are_declared_in_the_table_ddl() -> None:
    declared = {ds.name: list(ds.projection_names) for ds in registry().values()}
    assert declared == {
        "ab_test_events": [
            "ab_variant_hours",
            "ab_bitmap_days",
            "ab_segment_bitmap_hours",
            "ab_segment_bitmap_days",
            "ab_segment_bitmap_months",
            "ab_buyer_arms",
        ],
        "user_events": [
            "activity_bitmap_hours",
            "activity_bitmap_days",
            "by_session_number",
            "by_user",
        ],
        "app_events": [
            "feature_bitmap_hours",
            "feature_bitmap_days",
            "feature_bitmap_months",
            "app_bitmap_hours",
            "app_bitmap_days",
            "by_session_number",
        ],
        "clickstream_events": [
            "page_view_hours",
            "by_page",
            "by_session_rows",
            "by_user",
        ],
    }
    clickstream = registry()["clickstream_events"]
    ddl = clickstream.create_table_sql("pipit")
    assert "PROJECTION `page_view_hours` (SELECT toStartOfHour(timestamp) AS hour, page_url" in ddl
    # page_paths' server form reads `by_page`; on chDB the page moves answer it, so the
    # table there is built without it.
    assert "PROJECTION `by_page` (SELECT page_url, timestamp" in ddl
    assert "`by_page`" not in clickstream.create_table_sql("pipit", numbered=True)
    assert clickstream.projection_names_for(numbered=True) == (
        "page_view_hours",
        "by_session_rows",
        "by_user",
    )
    assert clickstream.projection_names_for(numbered=False) == clickstream.projection_names
    # A projection's own granularity on chDB; a server (25.8) has no projection settings.
    ab = registry()["ab_test_events"]
    assert (
        "GROUP BY test_id, variant, hour) WITH SETTINGS (index_granularity = 512)"
        in ab.create_table_sql("pipit", numbered=True)
    )
    assert "WITH SETTINGS" not in ab.create_table_sql("pipit")
    assert all("WITH SETTINGS" not in p for p in ab.projections_for(False))
    views = {ds.name: [v.name for v in ds.range_views] for ds in registry().values()}
    assert views == {
        "ab_test_events": [
            "ab_variant_hours",
            "ab_segment_bitmap_hours",
            "ab_buyer_arms",
            "ab_bitmap_range",
            "ab_bitmap_days",
            "ab_segment_bitmap_days",
        ],
        "user_events": ["activity_bitmap_hours", "activity_bitmap_days"],
        "app_events": [
            "feature_bitmap_hours",
            "app_bitmap_hours",
            "feature_bitmap_range",
            "feature_bitmap_days",
            "app_bitmap_days",
        ],
        "clickstream_events": ["page_view_hours"],
    }
    # A day projection is its hourly one's query per UTC day.
    assert (
        "PROJECTION `ab_segment_bitmap_days` (SELECT toStartOfDay(timestamp, 'UTC') AS day, "
        "test_id, variant, device, country, groupBitmapState(_pipit_user_id_number) AS user_ids, "
        "countIf(conversion = 1) AS conversion_events, sum(revenue) AS revenue_sum "
        "GROUP BY test_id, variant, device, country, day)"
    ) in registry()["ab_test_events"].create_table_sql("pipit", numbered=True)


async def test_the_range_views_of_retired_projections_are_dropped(
    warehouse: EmbeddedWarehouse,
) -> None:
    """The fixture's older tables came with a range view (and its sibling) for each
    projection since retired; the start left only the declared ones."""
    declared = {
        name
        for ds in registry().values()
        for view in ds.range_views
        for name in (view.name, *(sibling for sibling, _ in view.siblings))
    }
    result = await warehouse.query(
        "SELECT name FROM system.tables WHERE database = {d:String} AND engine = 'View'",
        {"d": warehouse.database},
    )
    assert {row["name"] for row in result.data} == declared


async def test_a_teams_table_or_view_named_like_a_retired_view_stays(
    own_warehouse: EmbeddedWarehouse,
) -> None:
    """Only a view of a retired projection's name that reads the datasource's table is
    Pipit's to drop: a team's view of that name over another table, or a table of that
    name, stays (DROP VIEW of a table would fail the start), and the start succeeds."""
    db = own_warehouse.database
    user_events = registry()["user_events"]
    await own_warehouse.ensure_schema([user_events])
    await own_warehouse.execute(
        f"CREATE TABLE `{db}`.`user_hours` (hour DateTime) ENGINE = MergeTree ORDER BY hour"
    )
    for view, table in (
        ("user_hours__whole", "user_events_quarantine"),
        ("activity_daily", "user_events"),
    ):
        await own_warehouse.execute(
            f"CREATE VIEW `{db}`.`{view}` AS SELECT count() AS n FROM `{db}`.`{table}`"  # noqa: S608
        )
    await own_warehouse.ensure_schema([user_events])
    result = await own_warehouse.query(
        "SELECT name, engine FROM system.tables WHERE database = {d:String} "
        "AND name IN ('user_hours', 'user_hours__whole', 'activity_daily') ORDER BY name",
        {"d": db},
    )
    assert result.data == [
        {"name": "user_hours", "engine": "MergeTree"},
        {"name": "user_hours__whole", "engine": "View"},
    ]


async def test_an_older_table_gets_the_projections(warehouse: EmbeddedWarehouse) -> None:
    result = await warehouse.query(
        "SELECT table, name FROM system.projections WHERE database = {d:String} "
        "ORDER BY table, name",
        {"d": warehouse.database},
    )
    # The retired projections the fixture gave the older tables are gone, and so is the
    # one chDB's page moves stand in for (`by_page`).
    assert [(r["table"], r["name"]) for r in result.data] == [
        # page_paths' moves (common/page_moves.py), made beside the older clickstream table.
        ("_pipit_page_move_counts_clickstream_events", "by_session"),
        ("_pipit_page_move_counts_clickstream_events", "by_to"),
        ("ab_test_events", "ab_bitmap_days"),
        ("ab_test_events", "ab_buyer_arms"),
        ("ab_test_events", "ab_segment_bitmap_days"),
        ("ab_test_events", "ab_segment_bitmap_hours"),
        ("ab_test_events", "ab_segment_bitmap_months"),
        ("ab_test_events", "ab_variant_hours"),
        ("app_events", "app_bitmap_days"),
        ("app_events", "app_bitmap_hours"),
        ("app_events", "by_session_number"),
        ("app_events", "feature_bitmap_days"),
        ("app_events", "feature_bitmap_hours"),
        ("app_events", "feature_bitmap_months"),
        ("clickstream_events", "by_session_rows"),
        ("clickstream_events", "by_user"),
        ("clickstream_events", "page_view_hours"),
        ("user_events", "activity_bitmap_days"),
        ("user_events", "activity_bitmap_hours"),
        ("user_events", "by_session_number"),
        ("user_events", "by_user"),
    ]
    parts = await warehouse.query(
        "SELECT table, countIf(length(projections) = 0) AS bare, "
        "countIf(length(projections) > 0) AS projected "
        "FROM system.parts WHERE database = {d:String} AND active GROUP BY table",
        {"d": warehouse.database},
    )
    # Mixed parts are the case to get right: the engine reads the bare parts' rows.
    assert {r["table"] for r in parts.data if r["bare"] and r["projected"]} == set(DATA)


# Every range view is made by one function (common/range_views.py), so the quick tier tries
# every range's boundaries on one endpoint, and on each other endpoint and parameter set the
# whole table and a range cut inside an hour at both ends. The other cases are slow: each is
# a query the engine spends about a tenth of a CPU-second analysing whatever the rows, and
# they were a third of the quick tier. `pytest` runs them all.
QUICK_RANGES = (RANGES[0], RANGES[5])


def _case(name: str, extra: dict[str, str], bounds: dict[str, str]) -> Any:
    given = {**extra, **bounds}
    quick = (name == "test_summary" and not extra) or bounds in QUICK_RANGES
    return pytest.param(
        (name, given),
        marks=[] if quick else [pytest.mark.slow],
        id=f"{name}[{','.join(f'{k}={v}' for k, v in given.items())}]",
    )


CASES = [
    _case(name, extra, bounds)
    for name, (_, extras) in PROJECTED.items()
    for extra in extras
    for bounds in RANGES
]


def _bare_table_sql(ds: Any, database: str) -> str:
    """The table's DDL without its projections, as an older Pipit made it."""
    bare = ds.create_table_sql(database).split("\n    PROJECTION")[0]
    if bare != ds.create_table_sql(database):
        bare += "\n)" + ds.create_table_sql(database).split("\n)", 1)[1]
    return bare


async def test_a_start_writes_new_projections_into_older_parts(
    own_warehouse: EmbeddedWarehouse,
) -> None:
    """A projection a start adds to a table with rows is written into the table's older
    parts in the background (else a range view's whole days would scan them until they
    merge), once: not again at the next start, and not where the table had it."""
    ab = registry()["ab_test_events"]
    await own_warehouse.execute(_bare_table_sql(ab, own_warehouse.database))
    # The table had this one already, in its form without the ids' numbers (the table
    # gets them at the start, which keeps a projection of a name it finds).
    kept = next(p for p in ab.projections_for(False) if p.startswith("`ab_buyer_arms`"))
    await own_warehouse.execute(
        f"ALTER TABLE `{own_warehouse.database}`.`{ab.name}` ADD PROJECTION {kept}"
    )
    rows = DATA["ab_test_events"]
    for half in (rows[::2], rows[1::2]):
        body = b"\n".join(orjson.dumps(row) for row in half)
        await own_warehouse.insert_json_rows(ab.name, ab.column_names, body)
    for _ in range(2):  # idempotent
        await own_warehouse.ensure_schema([ab])
    declared = ab.projection_names
    assert await _materialized(own_warehouse) == sorted(set(declared) - {"ab_buyer_arms"})
    assert await _parts_holding(own_warehouse, ab.name) == dict.fromkeys(
        declared, await _active_parts(own_warehouse, ab.name)
    )


async def _materialized(wh: EmbeddedWarehouse) -> list[str]:
    """The projections the engine was asked to write into older parts in `wh`'s database,
    once every such mutation is done."""
    query = (
        "SELECT command, is_done FROM system.mutations WHERE database = {d:String} "
        "AND command LIKE '%MATERIALIZE PROJECTION%'"
    )
    deadline = asyncio.get_running_loop().time() + 120
    while True:
        found = await wh.query(query, {"d": wh.database})
        if all(r["is_done"] for r in found.data):
            break
        assert asyncio.get_running_loop().time() < deadline, found.data
        await asyncio.sleep(0.05)
    return sorted(r["command"].strip("()").replace("`", "").split()[2] for r in found.data)


async def _parts_holding(wh: EmbeddedWarehouse, table: str) -> dict[str, int]:
    """How many active parts of `table` hold each projection."""
    holding = await wh.query(
        "SELECT name, count() AS parts FROM system.projection_parts "
        "WHERE database = {d:String} AND active AND table = {t:String} GROUP BY name",
        {"d": wh.database, "t": table},
    )
    return {r["name"]: r["parts"] for r in holding.data}


async def _active_parts(wh: EmbeddedWarehouse, table: str) -> int:
    parts = await wh.query(
        "SELECT count() AS n FROM system.parts WHERE database = {d:String} AND active "
        "AND table = {t:String}",
        {"d": wh.database, "t": table},
    )
    return parts.data[0]["n"]


PAGE_VIEWS_PROTO = """syntax = "proto3";

package shop.v1;

import "pipit/clickhouse/v1/options.proto";

// A page view.
message PageView {
  option (pipit.clickhouse.v1.table) = {name: "page_views" engine: "MergeTree"
    sorting_key: "timestamp"%s};
  // When.
  string timestamp = 1 [(pipit.clickhouse.v1.column) = {type: "DateTime"}];
  // Who.
  string user_id = 2 [(pipit.clickhouse.v1.column) = {type: "String"}];
  // Where.
  string path = 3 [(pipit.clickhouse.v1.column) = {type: "String"}];
}
"""
BY_USER = ' projections: {name: "by_user" query: "SELECT * ORDER BY user_id, timestamp"}'


async def test_a_deploy_writes_a_new_projection_into_the_rows_already_there(
    own_warehouse: EmbeddedWarehouse,
) -> None:
    """A team's deploy that adds a projection to its datasource has the engine write it
    into the parts inserted before (else a read the projection serves scans them until
    they merge), says so among the changes, and does it once: a second deploy of the
    same project asks for nothing."""
    store = DeploymentStore(own_warehouse)
    await store.ensure()
    deployer = Deployer(own_warehouse, CurrentProject(Project(builtin())), store, 7)
    await deployer.deploy({"shop/v1/shop.proto": PAGE_VIEWS_PROTO % ""})
    for part in range(2):
        rows = [
            {
                "timestamp": f"2023-06-0{part + 1} 0{i % 10}:00:00",
                "user_id": f"u{i}",
                "path": "/",
            }
            for i in range(50)
        ]
        body = b"\n".join(orjson.dumps(row) for row in rows)
        await own_warehouse.insert_json_rows("page_views", ("timestamp", "user_id", "path"), body)
    deployed = await deployer.deploy({"shop/v1/shop.proto": PAGE_VIEWS_PROTO % BY_USER})
    assert (
        "added projection page_views.by_user (written into the rows already there in the "
        "background)" in deployed.changes
    )
    assert await _materialized(own_warehouse) == ["by_user"]
    assert await _parts_holding(own_warehouse, "page_views") == {
        "by_user": await _active_parts(own_warehouse, "page_views")
    }
    again = await deployer.deploy({"shop/v1/shop.proto": PAGE_VIEWS_PROTO % BY_USER})
    assert again.changes == ()
    assert await _materialized(own_warehouse) == ["by_user"]


RANGE_PROTO = """syntax = "proto3";

package shop.v1;

import "google/api/annotations.proto";
import "pipit/clickhouse/v1/options.proto";
import "pipit/query/v1/pipe.proto";

// A page view.
message PageView {
  option (pipit.clickhouse.v1.table) = {name: "page_views" engine: "MergeTree"
    sorting_key: "timestamp"
    projections: {name: "path_hours" range_view: true
      query: "SELECT path, toStartOfHour(timestamp) AS hour, count() AS views "
             "GROUP BY path, hour"}};
  // When.
  string timestamp = 1 [(pipit.clickhouse.v1.column) = {type: "DateTime"}];
  // Where.
  string path = 2 [(pipit.clickhouse.v1.column) = {type: "String"}];
}

// The shop's pipes.
service ShopQueries {
  option (pipit.clickhouse.v1.role) = SERVICE_ROLE_QUERY;

  // Views per path in a range.
  rpc PathViews(PathViewsRequest) returns (PathViewsResponse) {
    option (google.api.http) = {get: "/v0/pipes/path_views.json"};
    option (pipit.clickhouse.v1.endpoint) = "path_views";
  }
}

// Request of PathViews.
message PathViewsRequest {
  // From.
  string start_date = 1 [(pipit.clickhouse.v1.parameter) = {type: "DateTime",
    default_value: "1970-01-01 00:00:00"}];
  // To.
  string end_date = 2 [(pipit.clickhouse.v1.parameter) = {type: "DateTime",
    default_value: "2106-02-07 06:28:15"}];
}

// One row of PathViewsResponse.
message PathViewsRow {
  // The path.
  string path = 1;
  // Its views.
  uint64 views = 2;
}

// Response of PathViews.
message PathViewsResponse {
  // Columns.
  repeated pipit.query.v1.ColumnMeta meta = 1;
  // Rows.
  repeated PathViewsRow data = 2;
  // Row count.
  uint32 rows = 3;
  // Cost.
  pipit.query.v1.Statistics statistics = 4;
}
"""
RANGE_SQL = (
    "SELECT path, sum(views) AS views "
    "FROM path_hours(start_date = {start_date:DateTime}, end_date = {end_date:DateTime}) "
    "GROUP BY path ORDER BY path"
)


async def test_a_deploy_that_retires_a_range_views_projection_drops_the_view(
    own_warehouse: EmbeddedWarehouse,
) -> None:
    """A team that retires a projection with a range view (and the pipe reading it) gets
    the projection, the view and its sibling dropped, said among the changes, once."""
    store = DeploymentStore(own_warehouse)
    await store.ensure()
    deployer = Deployer(own_warehouse, CurrentProject(Project(builtin())), store, 7)
    await deployer.deploy(
        {"shop/v1/shop.proto": RANGE_PROTO, "sql/path_views.sql": RANGE_SQL}, name="shop"
    )
    retired = PAGE_VIEWS_PROTO % ' retired_projections: ["path_hours"]'
    deployed = await deployer.deploy({"shop/v1/shop.proto": retired}, name="shop")
    views = await own_warehouse.view_selects()
    assert views is not None
    assert not {"path_hours", "path_hours__whole"} & views.keys()
    for name in ("path_hours", "path_hours__whole"):
        assert (
            f"dropped view {name} (the range view of a projection page_views no longer has)"
            in deployed.changes
        )
    again = await deployer.deploy({"shop/v1/shop.proto": retired}, name="shop")
    assert again.changes == ()


async def test_a_teams_range_view_answers_whole_ranges_from_its_sibling(
    own_warehouse: EmbeddedWarehouse,
) -> None:
    """A native project's own range view gets its sibling on deploy, its pipe's whole
    ranges are sent there, and every range answers as the rows do (plain Python)."""
    store = DeploymentStore(own_warehouse)
    await store.ensure()
    current = CurrentProject(Project(builtin()))
    deployer = Deployer(own_warehouse, current, store, 7)
    await deployer.deploy(
        {"shop/v1/shop.proto": RANGE_PROTO, "sql/path_views.sql": RANGE_SQL}, name="shop"
    )
    rows = [
        {
            "timestamp": f"2023-06-0{1 + i % 3} {i % 24:02}:{i * 7 % 60:02}:{i % 60:02}",
            "path": f"/p{i % 4}",
        }
        for i in range(600)
    ]
    body = b"\n".join(orjson.dumps(row) for row in rows)
    await own_warehouse.insert_json_rows("page_views", ("timestamp", "path"), body)
    (endpoint,) = endpoints(current.project, 1024).values()
    for start, end, whole in [
        ("2023-06-01 00:00:00", "2023-06-02 23:59:59", True),
        ("2023-06-01 13:00:00", "2023-06-03 08:59:59", True),
        ("1970-01-01 00:00:00", "2106-02-07 06:28:15", True),
        ("2023-06-01 13:17:00", "2023-06-03 08:59:59", False),
        ("2023-06-01 13:00:00", "2023-06-03 08:40:00", False),
    ]:
        sql, params = endpoint.prepare(endpoint.request_class(start_date=start, end_date=end))
        assert ("path_hours__whole(" in sql) is whole, (start, end)
        answered = await own_warehouse.query(sql, params)
        counted: dict[str, int] = {}
        for row in rows:
            if start <= row["timestamp"] <= end:
                counted[row["path"]] = counted.get(row["path"], 0) + 1
        assert {r["path"]: int(r["views"]) for r in answered.data} == counted, (start, end)


# The same project with a view that folds the hours and reads days and months, and counts
# distinct visitors as well.
MONTHS_PROTO = (
    RANGE_PROTO.replace(
        'projections: {name: "path_hours" range_view: true',
        'projections: {name: "path_hours" range_view: true fold_hours: true '
        'day_projection: "path_days" month_projection: "path_months"',
    )
    .replace(
        "count() AS views ",
        "count() AS views, uniqExactState(visitor) AS visitors ",
    )
    .replace(
        '  string path = 2 [(pipit.clickhouse.v1.column) = {type: "String"}];\n}',
        '  string path = 2 [(pipit.clickhouse.v1.column) = {type: "String"}];\n'
        '  // Who.\n  string visitor = 3 [(pipit.clickhouse.v1.column) = {type: "String"}];\n}',
    )
    .replace(
        "  uint64 views = 2;\n}",
        "  uint64 views = 2;\n  // Its distinct visitors.\n  uint64 visitors = 3;\n}",
    )
)
MONTHS_SQL = (
    "SELECT path, sum(views) AS views, uniqExactMerge(visitors) AS visitors "
    "FROM path_hours(start_date = {start_date:DateTime}, end_date = {end_date:DateTime}) "
    "GROUP BY path ORDER BY path"
)


async def test_a_view_with_months_answers_any_range_as_the_rows(
    own_warehouse: EmbeddedWarehouse,
) -> None:
    """A folded view that reads months: rows over three months (May to July), ranges that
    take whole months, cut months at either end by days, hours and seconds, and none; every
    answer equals plain Python's, whole months and whole days go to their siblings, and a
    whole month is read from the month projection, through the full view too."""
    assert MONTHS_PROTO.count("path_months") == 1 and MONTHS_PROTO.count("visitor") == 5
    store = DeploymentStore(own_warehouse)
    await store.ensure()
    current = CurrentProject(Project(builtin()))
    deployer = Deployer(own_warehouse, current, store, 7)
    await deployer.deploy(
        {"shop/v1/shop.proto": MONTHS_PROTO, "sql/path_views.sql": MONTHS_SQL}, name="shop"
    )
    first = datetime(2023, 5, 25)
    rows = [
        {
            # Every 37 minutes and some seconds, 25 May to 6 July.
            "timestamp": str(first + timedelta(seconds=i * 2237 + i * i % 59)),
            "path": f"/p{i % 3}",
            "visitor": f"v{i * 7 % 97}",
        }
        for i in range(1700)
    ]
    assert rows[-1]["timestamp"] > "2023-07-06"
    body = b"\n".join(orjson.dumps(row) for row in rows)
    # In two parts: the states of each month, day and hour merge across parts as well.
    await own_warehouse.insert_json_rows(
        "page_views", ("timestamp", "path", "visitor"), b"\n".join(body.split(b"\n")[::2])
    )
    await own_warehouse.insert_json_rows(
        "page_views", ("timestamp", "path", "visitor"), b"\n".join(body.split(b"\n")[1::2])
    )
    (endpoint,) = endpoints(current.project, 1024).values()
    for start, end, form in [
        ("1970-01-01 00:00:00", "2106-02-07 06:28:15", "__months"),
        ("2023-06-01 00:00:00", "2023-06-30 23:59:59", "__months"),
        ("2023-05-01 00:00:00", "2023-07-31 23:59:59", "__months"),
        ("2023-05-28 00:00:00", "2023-06-30 23:59:59", "__whole"),
        ("2023-06-01 00:00:00", "2023-07-02 23:59:59", "__whole"),
        ("2023-06-01 00:00:00", "2106-02-07 06:28:15", "__months"),
        ("2023-05-31 23:00:00", "2023-07-01 00:59:59", ""),
        ("2023-05-27 13:17:00", "2023-07-03 08:40:00", ""),
        ("2023-06-01 00:00:01", "2023-06-30 23:59:59", ""),
        ("2023-06-01 00:00:00", "2023-06-30 23:59:58", ""),
        ("2023-06-10 00:00:00", "2023-06-12 23:59:59", "__whole"),
        ("2023-06-10 05:00:00", "2023-06-10 05:59:59", ""),
    ]:
        sql, params = endpoint.prepare(endpoint.request_class(start_date=start, end_date=end))
        assert f"path_hours{form}(" in sql, (start, end)
        answered = await own_warehouse.query(sql, params)
        views: dict[str, int] = {}
        visitors: dict[str, set[str]] = {}
        for row in rows:
            if start <= row["timestamp"] <= end:
                views[row["path"]] = views.get(row["path"], 0) + 1
                visitors.setdefault(row["path"], set()).add(row["visitor"])
        assert views, (start, end)
        assert {r["path"]: int(r["views"]) for r in answered.data} == views, (start, end)
        assert {r["path"]: int(r["visitors"]) for r in answered.data} == {
            path: len(seen) for path, seen in visitors.items()
        }, (start, end)
    for start, end in [
        ("2023-06-01 00:00:00", "2023-06-30 23:59:59"),
        ("2023-05-31 13:00:00", "2023-07-01 08:59:59"),
    ]:
        sql, params = endpoint.prepare(endpoint.request_class(start_date=start, end_date=end))
        plan = await own_warehouse.query("EXPLAIN projections = 1 " + sql, params)
        assert "ReadFromMergeTree (path_months)" in "\n".join(r["explain"] for r in plan.data)


async def test_a_view_of_one_row_per_key_groups_a_key_seen_in_two_tiers(
    own_warehouse: EmbeddedWarehouse,
) -> None:
    """`ab_buyer_arms` gives one row per buyer for any range (`one_row_per_key`), which
    test_results' SQL relies on: a buyer seen in a whole hour and in a cut one is one buyer
    whose revenue adds up, not two. Here each tier holds such a buyer; the moments equal
    plain Python's."""
    ab = registry()["ab_test_events"]
    await own_warehouse.ensure_schema([ab])

    def event(time: str, user: str, variant: str, revenue: float, conversion: int = 0) -> dict:
        return {
            "timestamp": f"2023-06-05 {time}",
            "user_id": user,
            "test_id": "t1",
            "variant": variant,
            "event_type": "purchase" if revenue else "impression",
            "conversion": conversion,
            "revenue": revenue,
            "session_id": f"s_{user}",
            "device": "desktop",
            "country": "US",
        }

    rows = [
        event("10:15:00", "u1", "A", 10.0),  # a whole hour
        event("12:10:00", "u1", "A", 5.0, 1),  # the cut hour at the end
        event("13:05:00", "u1", "A", 100.0),  # out of range
        event("11:20:00", "u2", "A", 7.0),
        event("09:45:00", "u3", "B", 3.0),  # the cut hour at the start
        event("10:30:00", "u3", "B", 4.0),
        event("10:40:00", "u4", "B", 0.0),  # a user who is no buyer
    ]
    body = b"\n".join(orjson.dumps(row) for row in rows)
    await own_warehouse.insert_json_rows(ab.name, ab.column_names, body)
    results = builtin_endpoints(1024)["TestResults"]
    sql, params = results.prepare(
        results.request_class(
            test_id="t1", start_date="2023-06-05 09:30:00", end_date="2023-06-05 12:30:00"
        )
    )
    assert "ab_buyer_arms(" in sql  # the full view: a range cut inside its hours
    answered = {r["variant"]: r for r in (await own_warehouse.query(sql, params)).data}
    buyers = {"A": [15.0, 7.0], "B": [7.0]}  # u1's 10 + 5; u2; u3's 3 + 4
    for variant, revenue in buyers.items():
        mean = sum(revenue) / len(revenue)
        row = answered[variant]
        assert int(row["users"]) == 2
        assert int(row["buyers"]) == len(revenue)
        assert int(row["conversions"]) == (1 if variant == "A" else 0)
        assert math.isclose(row["buyer_revenue_mean"], mean, rel_tol=1e-12)
        variance = sum((r - mean) ** 2 for r in revenue) / len(revenue)
        assert math.isclose(row["buyer_revenue_variance"], variance, rel_tol=1e-12, abs_tol=1e-12)


USERS_ARM = "cityHash64(test_id, variant) AS arm,\n            test_id AS arm_test,"


@pytest.mark.parametrize("test_id", ["", "checkout_flow"])
async def test_test_results_matches_buyers_to_users_by_hash_or_refuses(
    warehouse: EmbeddedWarehouse, test_id: str
) -> None:
    """test_results matches each variant's buyers (`ab_buyer_arms`, keyed by hashes) to its
    users' row by the same hash: buyers of a hash with no users' row (another test's, where
    two tests' `test_key`s meet) are dropped, and two users' rows of one hash (two variants
    whose hashes meet) fail the query rather than add up. Hashes that meet cannot be made
    from names, so the users' branch is given other hashes here."""
    endpoint = ENDPOINTS["test_results"]
    params = endpoint.bound({"test_id": test_id})
    sql = endpoint.sql_for(params)
    assert sql.count(USERS_ARM) == 1
    # No users' row has a buyers' hash: every variant keeps its users, and no buyer.
    apart = sql.replace(USERS_ARM, USERS_ARM.replace("variant)", "variant, 'apart')"))
    rows = (await warehouse.query(apart, params)).data
    want = expected.test_results(DATA["ab_test_events"], **endpoint.bind({"test_id": test_id}))
    assert [(r["test_id"], r["variant"], int(r["users"])) for r in rows] == [
        (r["test_id"], r["variant"], r["users"]) for r in want
    ]
    assert all(int(r["buyers"]) == 0 and int(r["conversions"]) == 0 for r in rows)
    # Every variant of a test under one hash: refused.
    met = sql.replace(USERS_ARM, USERS_ARM.replace("test_id, variant)", "test_id)"))
    with pytest.raises(WarehouseError, match="two A/B variants share a hash"):
        await warehouse.query(met, params)


def test_one_row_per_key_takes_sums_counts_minima_and_maxima_only() -> None:
    query = (
        "SELECT k, toStartOfHour(timestamp) AS hour, count() AS n, max(x) AS m, "
        "if(a, b, 'c, d') AS e GROUP BY k, hour, e"
    )
    view = RangeView("v", query, fold_hours=True, one_row_per_key=True)
    assert view.create_sql("t", "v").startswith(
        "CREATE OR REPLACE VIEW v AS\nSELECT k, sum(n) AS n, max(m) AS m, e\nFROM (\n"
    )
    # A sibling reads one tier: nothing to group again.
    assert "FROM (" not in view.create_sql("t", "v", form="whole")
    with pytest.raises(ValueError, match="sums, counts, minima or maxima"):
        RangeView(
            "v",
            "SELECT k, toStartOfHour(timestamp) AS hour, uniqExactState(x) AS u GROUP BY k, hour",
            fold_hours=True,
            one_row_per_key=True,
        )
    with pytest.raises(ValueError, match="only a folded view"):
        RangeView("v", query, one_row_per_key=True)


async def test_a_call_whose_sibling_is_missing_is_answered_from_the_view(
    own_warehouse: EmbeddedWarehouse,
) -> None:
    """Where another process makes the schema (`pipit migrate` on a cluster), a service
    of this release may start before the siblings exist: its whole-range calls are
    answered from the views meanwhile, not failed."""
    ab = registry()["ab_test_events"]
    await own_warehouse.ensure_schema([ab])
    body = b"\n".join(orjson.dumps(row) for row in DATA["ab_test_events"])
    await own_warehouse.insert_json_rows(ab.name, ab.column_names, body)
    summary = builtin_endpoints(1024)["TestSummary"]
    sql, params = summary.prepare(summary.request_class())
    assert "ab_bitmap_range__whole(" in sql
    before = await run_pipe(own_warehouse, sql, params, "JSON")
    # Any other failure is the caller's to see.
    broken = sql.replace("GROUP BY", "GROUP BY no_such_column,", 1)
    with pytest.raises(WarehouseError, match="no_such_column"):
        await run_pipe(own_warehouse, broken, params, "JSON")
    await own_warehouse.execute(f"DROP VIEW `{own_warehouse.database}`.`ab_bitmap_range__whole`")
    after = await run_pipe(own_warehouse, sql, params, "JSON")
    assert orjson.loads(after)["data"] == orjson.loads(before)["data"]
    assert orjson.loads(after)["data"], "rows were compared"
    await own_warehouse.execute(f"DROP VIEW `{own_warehouse.database}`.`ab_bitmap_range`")
    with pytest.raises(WarehouseError):
        await run_pipe(own_warehouse, sql, params, "JSON")


async def test_a_call_whose_empty_table_is_missing_is_answered_from_the_view(
    own_warehouse: EmbeddedWarehouse,
) -> None:
    """retention replaces the call of the source it does not read by that view's empty
    table; a schema of an older release has none, and the call is answered from the views
    meanwhile, alike."""
    sources = [registry()["user_events"], registry()["app_events"]]
    await own_warehouse.ensure_schema(sources)
    for ds in sources:
        body = b"\n".join(orjson.dumps(row) for row in DATA[ds.name])
        await own_warehouse.insert_json_rows(ds.name, ds.column_names, body)
    retention = builtin_endpoints(1024)["Retention"]
    request = retention.request_class(period="week", source="app_events")
    sql, params = retention.prepare(request)
    assert f"{EMPTY_PREFIX}activity_bitmap_days/*(" in sql
    before = orjson.loads(await run_pipe(own_warehouse, sql, params, "JSON"))["data"]
    assert before == expected.retention(DATA, **params)
    await own_warehouse.execute(
        f"DROP TABLE `{own_warehouse.database}`.`{EMPTY_PREFIX}activity_bitmap_days`"
    )
    after = orjson.loads(await run_pipe(own_warehouse, sql, params, "JSON"))["data"]
    assert after == before and after, "rows were compared"


async def test_each_tier_reads_its_own_projection_whatever_order_they_were_added_in(
    own_warehouse: EmbeddedWarehouse,
) -> None:
    """The engine picks among a table's projections by the marks each would read, and on a
    tie by the order they were added, which an upgraded table's history sets. Here the day
    projection is added after the segments' one, of as many marks on this data: the tier
    still reads its own, as it names it, where the same SQL without its SETTINGS reads the
    segments' (30x the rows at 10 M events)."""
    ab = registry()["ab_test_events"]
    await own_warehouse.ensure_schema([ab])
    table = f"`{own_warehouse.database}`.`{ab.name}`"
    day = next(p for p in ab.projections if p.startswith("`ab_bitmap_days`"))
    await own_warehouse.execute(f"ALTER TABLE {table} DROP PROJECTION `ab_bitmap_days`")
    await own_warehouse.execute(f"ALTER TABLE {table} ADD PROJECTION {day}")
    body = b"\n".join(orjson.dumps(row) for row in DATA["ab_test_events"])
    await own_warehouse.insert_json_rows(ab.name, ab.column_names, body)
    view = next(v for v in ab.range_views if v.name == "ab_bitmap_range")
    tier = view.create_sql(table, "`unused`", form="whole").split(" AS\n", 1)[1]
    assert tier.endswith("SETTINGS preferred_optimize_projection_name = 'ab_bitmap_days'")
    bounds = {"start_date": "2023-06-01 00:00:00", "end_date": "2023-06-30 23:59:59"}

    async def reads(sql: str) -> str:
        plan = await own_warehouse.query("EXPLAIN projections = 1 " + sql, bounds)
        return "\n".join(str(row["explain"]) for row in plan.data)

    assert "ReadFromMergeTree (ab_bitmap_days)" in await reads(tier)
    unpinned = tier.rpartition("\nSETTINGS")[0]
    assert "ReadFromMergeTree (ab_segment_bitmap_days)" in await reads(unpinned)


async def test_a_projection_keeps_its_own_granularity(own_warehouse: EmbeddedWarehouse) -> None:
    """`ab_variant_hours` declares 512 rows a granule: its parts hold a granule per 512
    rows, so a test's hours are read without the other tests' (its table's are 8,192)."""
    ab = registry()["ab_test_events"]
    await own_warehouse.ensure_schema([ab])
    declared = await own_warehouse.query(
        "SELECT name, settings FROM system.projections WHERE database = {d:String} "
        "AND table = 'ab_test_events' AND name IN ('ab_variant_hours', 'ab_bitmap_days')",
        {"d": own_warehouse.database},
    )
    assert {r["name"]: r["settings"] for r in declared.data} == {
        "ab_variant_hours": {"index_granularity": "512"},
        "ab_bitmap_days": {},
    }
    hours = [f"2023-06-{d:02} {h:02}:00:00" for d in range(1, 31) for h in range(24)]
    rows = [
        {**DATA["ab_test_events"][0], "test_id": f"t{t}", "timestamp": hour}
        for hour in hours
        for t in range(4)
    ]
    body = b"\n".join(orjson.dumps(row) for row in rows)
    await own_warehouse.insert_json_rows(ab.name, ab.column_names, body)
    parts = await own_warehouse.query(
        "SELECT sum(rows) AS rows, sum(marks) AS marks FROM system.projection_parts "
        "WHERE database = {d:String} AND name = 'ab_variant_hours' AND active",
        {"d": own_warehouse.database},
    )
    # 2,880 keys (4 tests x 720 hours): a granule per 512 of them, not one for all.
    assert parts.data[0]["rows"] == 2880
    assert parts.data[0]["marks"] >= 2880 // 512


async def test_a_start_with_nothing_to_change_records_no_mutation(
    warehouse: EmbeddedWarehouse,
) -> None:
    """Every start runs ensure_schema; on tables already up to date it must leave the
    engine nothing to do: a DROP PROJECTION IF EXISTS of a retired projection is recorded as
    a mutation of every part even when there is nothing to drop."""
    count = "SELECT count() AS n FROM system.mutations WHERE database = {d:String}"
    before = await warehouse.query(count, {"d": warehouse.database})
    await warehouse.ensure_schema(list(registry().values()))
    after = await warehouse.query(count, {"d": warehouse.database})
    assert after.data == before.data


@pytest.mark.parametrize("case", CASES)
async def test_answers_equal_the_rows_answers(
    warehouse: EmbeddedWarehouse, case: tuple[str, dict[str, str]]
) -> None:
    name, given = case
    datasource, reference = expected.ENDPOINTS[name]
    actual = await _run(warehouse, name, given)
    want = reference(DATA[datasource] if datasource else DATA, **ENDPOINTS[name].bind(given))
    if not {"test_id", "feature"} & set(given):
        assert want, "a range with no rows checks nothing"
    tolerances = expected.FLOAT_TOLERANCES.get(name, {})
    expected.assert_rows_match(actual, want, tolerances)
    # As in test_endpoint_sql: an analysis's statistics are not rounded at all.
    rounded = tolerances if ENDPOINTS[name].analysis is None else {}
    for column, tolerance in rounded.items():
        digits = round(-math.log10(tolerance))
        assert all(round(row[column], digits) == row[column] for row in actual), column


def _sql_of(case: tuple[str, dict[str, str]], *, inline: bool = True) -> str:
    name, given = case
    return ENDPOINTS[name].sql_for(ENDPOINTS[name].bound(given), inline=inline)


# The cases whose range is whole for some view the endpoint calls: the query service sends
# those calls to the views' siblings (services/query/whole_ranges.py).
WHOLE_CASES = [
    case
    for case in CASES
    if _sql_of(case.values[0], inline=False) != ENDPOINTS[case.values[0][0]].sql
]


def test_whole_ranges_of_both_periods_are_among_the_cases() -> None:
    """Days (a view with a day projection) and hours alone (one without): both kinds of
    sibling are held to the views' answers below."""
    chosen = {
        name
        for case in WHOLE_CASES
        for name in re.findall(r"(\w+)__whole\(", _sql_of(case.values[0], inline=False))
    }
    views = {v.name: v for ds in registry().values() for v in ds.range_views}
    assert {views[name].period_seconds for name in chosen} == {3600, 86400}


@pytest.mark.parametrize("case", WHOLE_CASES)
async def test_a_whole_range_answers_alike_from_both_views(
    warehouse: EmbeddedWarehouse, case: tuple[str, dict[str, str]]
) -> None:
    """The siblings' answers, called by name (as the Query API runs a pipe) and inlined
    (as the query service does; test_answers_equal_the_rows_answers holds those to the
    reference), equal the full views', whose other tiers are empty for such a range."""
    name, given = case
    params = ENDPOINTS[name].bound(given)
    views = await warehouse.query(ENDPOINTS[name].sql, params)
    for inline in (False, True):
        siblings = await warehouse.query(_sql_of(case, inline=inline), params)
        assert siblings.data == views.data, inline


# get_popular_pages reads its view in a scalar subquery, which the engine runs while it
# analyses the query, so the query's EXPLAIN shows only what follows: that subquery, cut
# from the file, is explained instead.
SCALAR_READS = {
    "get_popular_pages": re.compile(
        r"SELECT page_url, sum\(event_count\).*?ORDER BY view_count DESC, page_url ASC", re.S
    )
}


async def _reads(warehouse: EmbeddedWarehouse, name: str, given: dict[str, str]) -> str:
    endpoint = ENDPOINTS[name]
    sql = endpoint.sql
    if name in SCALAR_READS:
        found = SCALAR_READS[name].search(sql)
        assert found, f"{name}.sql no longer has the subquery this test explains"
        sql = found.group(0)
    plan = await warehouse.query("EXPLAIN projections = 1 " + sql, endpoint.bind(given))
    return "\n".join(str(row["explain"]) for row in plan.data)


# The day projection an endpoint's folded view or view by day reads the range's whole
# days from.
DAY_TIERS = {
    "test_summary": "ab_bitmap_days",
    "test_segments": "ab_segment_bitmap_days",
    "feature_usage": "feature_bitmap_days",
    "user_activity_metrics": "activity_bitmap_days",
    "active_users": "app_bitmap_days",
    "retention": "activity_bitmap_days",
}


# The month projection a folded view reads the range's whole months from, where it has one.
MONTH_TIERS = {
    "test_segments": "ab_segment_bitmap_months",
    "feature_usage": "feature_bitmap_months",
}


def _whole_months(bounds: dict[str, str]) -> tuple[bool, bool]:
    """Whether `bounds` hold a whole UTC month, and a whole UTC day outside every whole
    month, from the calendar. Such a day lies within a month of either bound."""
    start = datetime.fromisoformat(bounds.get("start_date", "1970-01-01 00:00:00"))
    end = datetime.fromisoformat(bounds.get("end_date", str(LAST_DATETIME)))

    def whole(first: datetime, after: datetime) -> bool:
        return first >= start and (
            after - timedelta(seconds=1) <= end or first <= end == LAST_DATETIME
        )

    def month_of(moment: datetime) -> datetime:
        return moment.replace(day=1, hour=0, minute=0, second=0)

    def next_month(first: datetime) -> datetime:
        return (first + timedelta(days=32)).replace(day=1)

    first = month_of(start) if start == month_of(start) else next_month(month_of(start))
    months = whole(first, next_month(first))
    day = timedelta(days=1)
    near = [start.replace(hour=0, minute=0, second=0) + i * day for i in range(33)]
    near += [end.replace(hour=0, minute=0, second=0) - i * day for i in range(33)]
    days = any(
        whole(d, d + day) and not whole(month_of(d), next_month(month_of(d)))
        for d in near
        if d <= end
    )
    return months, days


def _whole_periods(bounds: dict[str, str]) -> tuple[bool, bool]:
    """Whether `bounds` hold a whole UTC day, and a whole hour outside every whole day,
    worked out here from the calendar. Such an hour lies within a day of either bound."""
    start = datetime.fromisoformat(bounds.get("start_date", "1970-01-01 00:00:00"))
    end = datetime.fromisoformat(bounds.get("end_date", str(LAST_DATETIME)))

    def whole(first: datetime, length: timedelta) -> bool:
        return first >= start and (
            first + length - timedelta(seconds=1) <= end or (first <= end == LAST_DATETIME)
        )

    def day_of(moment: datetime) -> datetime:
        return moment.replace(hour=0, minute=0, second=0)

    hour = timedelta(hours=1)
    first_hour = start.replace(minute=0, second=0) + (
        hour if start.minute or start.second else 0 * hour
    )
    first_day = day_of(start) + (timedelta(days=1) if start != day_of(start) else 0 * hour)
    days = whole(first_day, timedelta(days=1))
    near = [first_hour + i * hour for i in range(48)]
    near += [end.replace(minute=0, second=0) - i * hour for i in range(48)]
    hours = any(
        whole(h, hour) and not whole(day_of(h), timedelta(days=1)) for h in near if h <= end
    )
    return days, hours


@pytest.mark.parametrize("name", PROJECTED)
async def test_whole_hours_are_read_from_the_projection(
    warehouse: EmbeddedWarehouse, name: str
) -> None:
    """The whole hours in range come from the hourly projection; where the view has a day
    tier, the whole days from the day projection and only the other whole hours from the
    hourly one."""
    projection, extras = PROJECTED[name]
    day_projection = DAY_TIERS.get(name)
    month_projection = MONTH_TIERS.get(name)
    outcomes = []
    for bounds in RANGES:
        plan = await _reads(warehouse, name, {**extras[0], **bounds})
        uses = f"ReadFromMergeTree ({projection})" in plan
        if day_projection is None:
            if _holds_a_whole_hour(bounds):
                assert uses, (bounds, plan)
        else:
            days, hours = _whole_periods(bounds)
            if month_projection:
                months, days = _whole_months(bounds)
                if months:
                    assert f"ReadFromMergeTree ({month_projection})" in plan, (bounds, plan)
                    uses = True
            if days:
                assert f"ReadFromMergeTree ({day_projection})" in plan, (bounds, plan)
                uses = True
            if hours:
                assert f"ReadFromMergeTree ({projection})" in plan, (bounds, plan)
        # else nothing whole is in range: the engine may still scan an empty slice of
        # the projection rather than none.
        outcomes.append(uses)
    assert any(outcomes)


_DAYS, _MONTHS = _whole_periods, _whole_months


@pytest.mark.parametrize(
    "reckon,bounds,expected",
    [
        (_DAYS, {}, (True, False)),
        (
            _DAYS,
            {"start_date": "2023-06-03 00:00:00", "end_date": "2023-06-05 23:59:59"},
            (True, False),
        ),
        (
            _DAYS,
            {"start_date": "2023-06-03 13:17:23", "end_date": "2023-06-07 08:41:09"},
            (True, True),
        ),
        (
            _DAYS,
            {"start_date": "2023-06-04 11:30:00", "end_date": "2023-06-04 12:29:59"},
            (False, False),
        ),
        (
            _DAYS,
            {"start_date": "2023-06-04 12:00:00", "end_date": "2023-06-04 12:59:59"},
            (False, True),
        ),
        (_DAYS, {"start_date": "2023-06-03 00:00:00"}, (True, False)),
        (_MONTHS, {}, (True, False)),
        (
            _MONTHS,
            {"start_date": "2023-06-01 00:00:00", "end_date": "2023-06-30 23:59:59"},
            (True, False),
        ),
        (
            _MONTHS,
            {"start_date": "2023-06-03 00:00:00", "end_date": "2023-06-05 23:59:59"},
            (False, True),
        ),
        (
            _MONTHS,
            {"start_date": "2023-05-31 00:00:00", "end_date": "2023-06-30 23:59:59"},
            (True, True),
        ),
        (
            _MONTHS,
            {"start_date": "2023-06-01 00:00:00", "end_date": "2023-06-30 23:59:58"},
            (False, True),
        ),
        (
            _MONTHS,
            {"start_date": "2023-06-30 12:00:00", "end_date": "2023-07-01 11:59:59"},
            (False, False),
        ),
        (_MONTHS, {"start_date": "2023-12-01 00:00:00"}, (True, False)),
    ],
)
def test_the_calendar_of_whole_periods(
    reckon: Callable[[dict[str, str]], tuple[bool, bool]],
    bounds: dict[str, str],
    expected: tuple[bool, bool],
) -> None:
    """The test's own reckoning (whole days and the hours outside them; whole months and the
    days outside them), on ranges whose answer is plain."""
    assert reckon(bounds) == expected


# The one-entity lookups read the entity's rows in its order (`by_user`,
# `by_session_rows`). Sorted by the bare `timestamp`, the engine reads the table in its own
# order instead and never weighs the projection (it finds the entity through the bloom
# filter, a granule every few minutes of it): `identity` in their ORDER BY keeps it off
# that path, which this test catches if it goes. Which read the engine then picks is its
# cost choice — on these few granules the table, at 10 M the projection (bench.query) —
# so the plan is checked for the projection being weighed. On this table, with parts
# written before the projection existed, the answers equal the rows' answers.
LOOKUPS = {
    "get_user_journey": ("clickstream_events", "user_id", "by_user", {}),
    "user_event_timeline": ("user_events", "user_id", "by_user", {"limit": "1000"}),
    "get_session_events": ("clickstream_events", "session_id", "by_session_rows", {}),
}
IN_ORDER = re.compile(r"Read type: In(Reverse)?Order")


@pytest.mark.parametrize("name", LOOKUPS)
async def test_a_lookup_weighs_its_projection(warehouse: EmbeddedWarehouse, name: str) -> None:
    datasource, key, projection, extra = LOOKUPS[name]
    weighed = f"Projection {projection} is usable"
    ids = sorted({row[key] for row in DATA[datasource]})
    given = {key: ids[len(ids) // 2], **extra}
    plan = await _reads(warehouse, name, given)
    assert weighed in plan and not IN_ORDER.search(plan), plan
    in_table_order = ENDPOINTS[name].sql.replace("identity(timestamp)", "timestamp")
    assert in_table_order != ENDPOINTS[name].sql
    explained = await warehouse.query(
        "EXPLAIN projections = 1 " + in_table_order, ENDPOINTS[name].bind(given)
    )
    plan = "\n".join(str(row["explain"]) for row in explained.data)
    assert weighed not in plan and IN_ORDER.search(plan), plan
    for entity in ids[:: max(1, len(ids) // 7)]:
        given[key] = entity
        want = expected.ENDPOINTS[name][1](DATA[datasource], **ENDPOINTS[name].bind(given))
        assert want
        expected.assert_rows_match(await _run(warehouse, name, given), want, {})


def _views_table(*, keeps_moves: bool) -> Datasource:
    """A table of page views with a projection built only without page moves, which it
    keeps (`keeps_moves`) or not."""

    def options(table: Any) -> None:
        table.page_moves = keeps_moves
        table.projections.add(
            name="by_page",
            query="SELECT page_url, timestamp ORDER BY page_url, timestamp",
            without_page_moves=True,
        )

    columns = [
        Spec(c, "DateTime" if c == "timestamp" else "String") for c in page_moves.SOURCE_COLUMNS
    ]
    return build("views", columns, "timestamp", table_options=options)


def test_a_projection_built_without_page_moves_is_chdbs_only_where_they_are_kept() -> None:
    views = _views_table(keeps_moves=True)
    assert views.projection_names_for(numbered=True) == ()
    assert views.projection_names_for(numbered=False) == ("by_page",)
    # An older chDB table that has it drops it; a server's keeps it.
    assert any(
        s.endswith("DROP PROJECTION IF EXISTS `by_page`")
        for s in views.upgrade_sql("t", "db", numbered=True, present={"by_page"})
    )
    assert not any(
        "DROP PROJECTION" in s
        for s in views.upgrade_sql("t", "db", numbered=False, present={"by_page"})
    )
    # Without page moves kept anywhere, the flag means nothing: refused, the projection named.
    with pytest.raises(ValueError, match="projection by_page is built without page moves"):
        _views_table(keeps_moves=False)


@pytest.mark.parametrize(
    "query",
    [
        # No hour to cut the range at.
        "SELECT feature, count() AS n GROUP BY feature",
        # An hour, but the projection does not group by it.
        "SELECT feature, toStartOfHour(timestamp) AS hour, count() AS n GROUP BY feature",
        # Not a SELECT … GROUP BY.
        "SELECT session_id, timestamp ORDER BY session_id",
    ],
)
def test_a_range_view_needs_an_hourly_aggregate(query: str) -> None:
    with pytest.raises(ValueError, match="range view"):
        RangeView("v", query)


@pytest.mark.parametrize(
    "query",
    [
        # The hour spelt otherwise than the one item the view cuts without parsing.
        "SELECT user_id, toStartOfHour(timestamp, 'UTC') AS hour, count() AS n "
        "GROUP BY hour, user_id",
        # Nothing but the hour to group by once it is folded.
        "SELECT toStartOfHour(timestamp) AS hour, count() AS n GROUP BY hour",
    ],
)
def test_a_view_that_folds_the_hours_needs_another_key(query: str) -> None:
    RangeView("v", query)  # an hourly view of it is fine
    with pytest.raises(ValueError, match="folds the hours"):
        RangeView("v", query, fold_hours=True)


@pytest.mark.parametrize(
    "query",
    [
        "SELECT toStartOfHour(timestamp) AS hour, user_id, count() AS n GROUP BY hour, user_id",
        "SELECT user_id, toStartOfHour(timestamp) AS hour, count() AS n GROUP BY user_id, hour",
    ],
)
def test_a_view_that_folds_the_hours_has_no_hour_column(query: str) -> None:
    view = RangeView("v", query, fold_hours=True)
    sql = view.create_sql("`d`.`t`", "`d`.`v`")
    halves = sql.split("UNION ALL")
    assert len(halves) == 2
    for half in halves:
        assert "SELECT user_id, count() AS n FROM `d`.`t`" in half
    # The whole hours read the projection (named for the view here), the cut hours the rows.
    assert (
        halves[0]
        .rstrip()
        .endswith("GROUP BY user_id\nSETTINGS preferred_optimize_projection_name = 'v'")
    )
    assert halves[1].rstrip().endswith("GROUP BY user_id")


# retention merges each period's users as bitmaps and intersects every cohort with every
# later period, so a long span is many periods: these ranges hold more than 256 days with
# events (DATA has events on every day around the end), whole days and cut hours.
LONG_SPANS = [
    {"start_date": "2023-06-01 00:00:00", "end_date": "2024-02-12 23:59:59"},
    {"start_date": "2023-06-01 10:17:00", "end_date": "2024-02-12 13:41:00"},
]


@pytest.mark.parametrize("source", ["user_events", "app_events"])
@pytest.mark.parametrize("period", ["day", "week", "month"])
@pytest.mark.parametrize("bounds", LONG_SPANS)
async def test_retention_over_a_long_span_from_either_source(
    warehouse: EmbeddedWarehouse, bounds: dict[str, str], period: str, source: str
) -> None:
    given = {"period": period, "source": source, **bounds}
    assert _days_with_events(source, bounds) > 256
    actual = await _run(warehouse, "retention", given)
    want = expected.retention(DATA, **ENDPOINTS["retention"].bind(given))
    assert want
    expected.assert_rows_match(actual, want, expected.FLOAT_TOLERANCES["retention"])
    # Each period's users come from the source's day projection; the other source's view
    # is given an empty range and replaced by its empty table, which the engine reads no
    # part of.
    sql = ENDPOINTS["retention"].sql_for(ENDPOINTS["retention"].bound(given))
    read, unread = ("activity", "app") if source == "user_events" else ("app", "activity")
    assert f"{EMPTY_PREFIX}{unread}_bitmap_days/*(" in sql
    plan = await _reads(warehouse, "retention", given)
    assert f"ReadFromMergeTree ({read}_bitmap_days)" in plan, plan
    explained = await warehouse.query(
        "EXPLAIN projections = 1 " + sql, ENDPOINTS["retention"].bind(given)
    )
    steps = "\n".join(str(row["explain"]) for row in explained.data)
    assert f"ReadFromMergeTree ({read}_bitmap_days)" in steps, steps
    assert f"({unread}_bitmap" not in steps, steps  # nothing of the other source's table
