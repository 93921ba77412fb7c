"""Materialized pipes (issue 18 item 1): a `TYPE materialized` node fills its target
datasource through a ClickHouse materialized view; the rows already in the source are
backfilled on deploy, exactly once even while events keep arriving; a retried flush
(the same batch under the same token) counts once in the target too; a changed pipe
rebuilds its target and a removed one stops filling it. On chDB and on the ClickHouse
HTTP interface. Expected answers are plain Python over the events sent."""

from __future__ import annotations

import asyncio
import random
from collections import defaultdict
from collections.abc import AsyncIterator, Iterable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from conftest import unique_database
from harness import TOKEN, start_suite

from common.warehouse.base import Warehouse
from common.warehouse.clickhouse import ClickHouseWarehouse
from common.warehouse.embedded import EmbeddedWarehouse
from pipit.project import materialize
from pipit.project.artifact import builtin
from pipit.project.command import deploy as deploy_over_http
from pipit.project.compiler import BuildFailed, read_files
from pipit.project.deploy import Deployer
from pipit.project.runtime import CurrentProject, Project
from pipit.project.store import DeploymentStore

COLUMNS = ("timestamp", "user_id", "path")

PAGE_VIEWS = """DESCRIPTION >
    Page views.

SCHEMA >
    `timestamp` DateTime `json:$.timestamp`,
    `user_id` String `json:$.user_id`,
    `path` String `json:$.path`

ENGINE "MergeTree"
ENGINE_PARTITION_KEY "toYYYYMM(timestamp)"
ENGINE_SORTING_KEY "timestamp"
"""

DAILY_USERS = """SCHEMA >
    `day` Date,
    `users` AggregateFunction(uniqExact, String),
    `views` AggregateFunction(count)

ENGINE "AggregatingMergeTree"
ENGINE_SORTING_KEY "day"
"""

DAILY_USERS_MV = """NODE views
SQL >
    SELECT toDate(timestamp) AS day, user_id FROM page_views{where}

NODE daily
SQL >
    SELECT day, uniqExactState(user_id) AS users, countState() AS views
    FROM views
    GROUP BY day

TYPE materialized
DATASOURCE daily_users
"""

DAILY_UNIQUES = """NODE endpoint
SQL >
    %
    SELECT day, uniqExactMerge(users) AS users, countMerge(views) AS views
    FROM daily_users
    WHERE day >= {{Date(start_date, '2020-01-01')}}
    GROUP BY day
    ORDER BY day

TYPE endpoint
"""


def project(with_materialized: bool = True, where: str = "") -> dict[str, str]:
    files = {"datasources/page_views.datasource": PAGE_VIEWS}
    if with_materialized:
        files |= {
            "datasources/daily_users.datasource": DAILY_USERS,
            "pipes/daily_users_mv.pipe": DAILY_USERS_MV.format(where=where),
            "pipes/daily_uniques.pipe": DAILY_UNIQUES,
        }
    return files


def events(rng: random.Random, n: int) -> list[dict[str, Any]]:
    base = datetime(2026, 11, 1)
    return [
        {
            "timestamp": (base + timedelta(minutes=rng.randrange(5 * 24 * 60))).strftime(
                "%Y-%m-%d %H:%M:%S"
            ),
            "user_id": f"u{rng.randrange(40)}",
            "path": rng.choice(["/", "/pricing", "/docs", "/skip"]),
        }
        for _ in range(n)
    ]


def expected(sent: Iterable[dict[str, Any]], skip: str = "") -> dict[str, tuple[int, int]]:
    """Per day: (distinct users, views), as the materialized pipe defines them."""
    users: dict[str, set[str]] = defaultdict(set)
    views: dict[str, int] = defaultdict(int)
    for event in sent:
        if skip and event["path"] == skip:
            continue
        day = event["timestamp"][:10]
        users[day].add(event["user_id"])
        views[day] += 1
    return {day: (len(users[day]), views[day]) for day in views}


async def target(warehouse: Warehouse) -> dict[str, tuple[int, int]]:
    result = await warehouse.query(
        "SELECT toString(day) AS day, uniqExactMerge(users) AS users, "
        "countMerge(views) AS views FROM daily_users GROUP BY day",
        {},
    )
    return {row["day"]: (int(row["users"]), int(row["views"])) for row in result.data}


def body(rows: list[dict[str, Any]]) -> bytes:
    return b"\n".join(orjson.dumps(row) for row in rows)


# The ClickHouse HTTP fixture is a process of its own: e2e (tests/tiers.py).
@pytest.fixture(params=["chdb", pytest.param("clickhouse-http", marks=pytest.mark.e2e)])
async def warehouse(request, chdb_dir) -> AsyncIterator[Warehouse]:
    database = unique_database("mv")
    if request.param == "chdb":
        opened: Warehouse = EmbeddedWarehouse(chdb_dir, database)
    else:
        opened = ClickHouseWarehouse(request.getfixturevalue("clickhouse_url"), database)
    await opened.open()
    yield opened
    await opened.close()


@pytest.fixture
async def deployer(warehouse: Warehouse) -> Deployer:
    store = DeploymentStore(warehouse)
    await store.ensure()
    return Deployer(warehouse, CurrentProject(Project(builtin())), store, 7)


async def test_the_backfill_the_live_view_and_a_retried_flush(warehouse, deployer):
    rng = random.Random(18)
    await deployer.deploy(project(with_materialized=False))
    before = events(rng, 400)
    for i in range(0, 400, 100):
        await warehouse.insert_json_rows(
            "page_views", COLUMNS, body(before[i : i + 100]), dedup_token=f"before-{i}"
        )
    deployed = await deployer.deploy(project())
    assert "materialized pipe daily_users_mv fills daily_users (backfilled)" in deployed.changes
    assert await target(warehouse) == expected(before)

    after = events(rng, 300)
    for attempt in range(2):  # the second is a retried flush: the same batch, the same token
        await warehouse.insert_json_rows("page_views", COLUMNS, body(after), dedup_token="after")
        assert await target(warehouse) == expected(before + after), attempt
    source = await warehouse.query("SELECT count() AS n FROM page_views", {})
    assert int(source.data[0]["n"]) == 700
    # The ledger and the tokens taken for the backfill are gone; the chain stays.
    _, unfinished = await materialize.live(warehouse)
    assert unfinished == set()


async def test_a_changed_pipe_rebuilds_its_target_and_a_removed_one_stops(warehouse, deployer):
    rng = random.Random(7)
    await deployer.deploy(project())
    sent = events(rng, 300)
    await warehouse.insert_json_rows("page_views", COLUMNS, body(sent), dedup_token="one")
    assert await target(warehouse) == expected(sent)

    changed = await deployer.deploy(project(where="\n    WHERE path != '/skip'"))
    assert "rebuilt daily_users from materialized pipe daily_users_mv" in changed.changes
    assert await target(warehouse) == expected(sent, skip="/skip")
    more = events(rng, 200)
    await warehouse.insert_json_rows("page_views", COLUMNS, body(more), dedup_token="two")
    assert await target(warehouse) == expected(sent + more, skip="/skip")
    bases, _ = await materialize.live(warehouse)
    assert len(bases) == 1  # the old chain is gone

    removed = await deployer.deploy(project(with_materialized=False))
    assert "removed materialized pipe daily_users_mv" in removed.changes
    assert await materialize.live(warehouse) == (set(), set())
    kept = await target(warehouse)
    await warehouse.insert_json_rows("page_views", COLUMNS, body(events(rng, 50)), dedup_token="3")
    assert await target(warehouse) == kept == expected(sent + more, skip="/skip")


async def test_a_redeploy_of_the_same_pipe_leaves_the_target_alone(warehouse, deployer):
    rng = random.Random(3)
    await deployer.deploy(project())
    sent = events(rng, 200)
    await warehouse.insert_json_rows("page_views", COLUMNS, body(sent), dedup_token="x")
    files = project()
    files["pipes/daily_uniques.pipe"] += "\n"  # another version, the same materialized pipe
    again = await deployer.deploy(files)
    assert not [c for c in again.changes if "materialized" in c or "rebuilt" in c]
    assert await target(warehouse) == expected(sent)


async def test_a_deploy_that_died_during_its_backfill_is_finished_by_the_next(warehouse, deployer):
    rng = random.Random(5)
    await deployer.deploy(project(with_materialized=False))
    sent = events(rng, 200)
    await warehouse.insert_json_rows("page_views", COLUMNS, body(sent), dedup_token="x")
    files = project()
    artifact = await deployer.build(files, "p")
    built = Project(artifact)
    for statement in built.datasources["daily_users"].schema_sql(warehouse.database):
        await warehouse.execute(statement)
    chain = next(iter(materialize.chains(built, warehouse.database).values()))
    for statement in chain.create_sql():  # as far as a deploy gets before it dies
        await warehouse.execute(statement)
    await warehouse.execute(chain.snapshot_sql())
    await warehouse.insert_json_rows("page_views", COLUMNS, body(sent[:10]), dedup_token="y")
    deployed = await deployer.deploy(files)
    assert "rebuilt daily_users from materialized pipe daily_users_mv" in deployed.changes
    assert await target(warehouse) == expected(sent + sent[:10])


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            (
                "pipes/daily_users_mv.pipe",
                "FROM page_views",
                "FROM page_views WHERE path = {{String(p, '/')}}",
            ),
            "pipes/daily_users_mv.pipe:3: node 'views': a materialized pipe takes no parameters",
        ),
        (
            ("pipes/daily_users_mv.pipe", "countState()", "sumState(1)"),
            "answer column 'views' is AggregateFunction(sum, UInt8); daily_users.views is "
            "AggregateFunction(count)",
        ),
        (
            ("pipes/daily_users_mv.pipe", "DATASOURCE daily_users", "DATASOURCE nowhere"),
            "DATASOURCE 'nowhere' is not a datasource here",
        ),
        (
            (
                "pipes/daily_users_mv.pipe",
                "TYPE materialized",
                "TYPE endpoint\n\nNODE x\nSQL >\n    SELECT 1 AS one\n\nTYPE materialized",
            ),
            "a pipe is an endpoint or materialized, not both",
        ),
        (
            ("pipes/daily_users_mv.pipe", "user_id FROM page_views", "user_id FROM daily_users"),
            "unknown",  # the engine's own word: daily_users has no timestamp column
        ),
    ],
    ids=["parameter", "type", "target", "endpoint-too", "reads-its-target"],
)
async def test_a_broken_materialized_pipe_is_refused_with_its_place(
    module_warehouse, change, message
):
    store = DeploymentStore(module_warehouse)
    await store.ensure()
    deployer = Deployer(module_warehouse, CurrentProject(Project(builtin())), store, 7)
    files = project()
    path, old, new = change
    files[path] = files[path].replace(old, new)
    with pytest.raises(BuildFailed) as refused:
        await deployer.deploy(files)
    assert message.lower() in str(refused.value).lower(), str(refused.value)


async def test_the_target_takes_no_appends(module_warehouse):
    store = DeploymentStore(module_warehouse)
    await store.ensure()
    deployer = Deployer(module_warehouse, CurrentProject(Project(builtin())), store, 7)
    artifact = await deployer.build(project(), "p")
    ingest = artifact.protos["pipit/project/v1/ingest_service.proto"]
    assert "AppendPageViews" in ingest and "AppendDailyUsers" not in ingest
    assert Project(artifact).datasources["daily_users"].materialized_by == "daily_users_mv"


NATIVE_PROTO = """syntax = "proto3";

package shop.v1;

import "pipit/clickhouse/v1/options.proto";

// A page view.
message PageView {
  option (pipit.clickhouse.v1.table) = {name: "page_views" engine: "MergeTree"
    sorting_key: "timestamp"};
  // When.
  string timestamp = 1 [(pipit.clickhouse.v1.column) = {type: "DateTime"}];
  // Who.
  string user_id = 2 [(pipit.clickhouse.v1.column) = {type: "String"}];
  // Where.
  string path = 3 [(pipit.clickhouse.v1.column) = {type: "String"}];
}

// Distinct users and views per day.
message DailyUsers {
  option (pipit.clickhouse.v1.table) = {name: "daily_users" engine: "AggregatingMergeTree"
    sorting_key: "day" materialized_by: "daily_users_mv"};
  // The day.
  string day = 1 [(pipit.clickhouse.v1.column) = {type: "Date"}];
  // Its users.
  string users = 2 [(pipit.clickhouse.v1.column) = {type: "AggregateFunction(uniqExact, String)"}];
  // Its views.
  string views = 3 [(pipit.clickhouse.v1.column) = {type: "AggregateFunction(count)"}];
}
"""

NATIVE_SQL = """SELECT toDate(timestamp) AS day, uniqExactState(user_id) AS users,
    countState() AS views
FROM page_views
GROUP BY day
"""


async def test_a_native_project_materializes_too(warehouse, deployer):
    rng = random.Random(11)
    native = {"shop/v1/shop.proto": NATIVE_PROTO, "sql/daily_users_mv.sql": NATIVE_SQL}
    await deployer.deploy({"shop/v1/shop.proto": NATIVE_PROTO.split("// Distinct")[0]})
    sent = events(rng, 300)
    await warehouse.insert_json_rows("page_views", COLUMNS, body(sent), dedup_token="n1")
    deployed = await deployer.deploy(native)
    assert "materialized pipe daily_users_mv fills daily_users (backfilled)" in deployed.changes
    more = events(rng, 100)
    await warehouse.insert_json_rows("page_views", COLUMNS, body(more), dedup_token="n2")
    assert await target(warehouse) == expected(sent + more)


# --- under ingest load, through the Events API -------------------------------------------------


@pytest.mark.e2e
async def test_a_deploy_under_ingest_load_backfills_every_event_exactly_once(
    warehouse, tmp_path: Path
):
    folder = tmp_path / "shop"
    for path, text in project(with_materialized=False).items():
        (folder / path).parent.mkdir(parents=True, exist_ok=True)
        (folder / path).write_text(text)
    suite = await start_suite(warehouse, project=folder)
    acknowledged: list[dict[str, Any]] = []
    stop = asyncio.Event()
    progress = asyncio.Condition()
    headers = {"Authorization": f"Bearer {TOKEN}"}

    async def acknowledged_reach(n: int) -> None:
        async with progress:
            await progress.wait_for(lambda: len(acknowledged) >= n)

    async def writer(http: aiohttp.ClientSession, seed: int) -> None:
        rng = random.Random(seed)
        while not stop.is_set():
            rows = events(rng, 40)
            async with http.post(
                f"{suite.gateway_url}/v0/events",
                params={"name": "page_views"},
                data=body(rows),
                headers=headers,
            ) as response:
                if response.status == 202:
                    assert (await response.json())["successful_rows"] == len(rows)
                    acknowledged.extend(rows)
                    async with progress:
                        progress.notify_all()

    try:
        async with aiohttp.ClientSession() as http:
            writers = [asyncio.create_task(writer(http, seed)) for seed in range(3)]
            await acknowledged_reach(600)  # rows in the source before the view exists
            for path, text in project().items():
                (folder / path).parent.mkdir(parents=True, exist_ok=True)
                (folder / path).write_text(text)
            status, answer = await deploy_over_http(folder, suite.gateway_url, TOKEN)
            assert status == 200, answer
            await acknowledged_reach(len(acknowledged) + 600)  # and rows after it
            stop.set()
            await asyncio.gather(*writers)
            await suite.ingest.batcher.flush_all()
            want = expected(acknowledged)
            assert await target(warehouse) == want
            async with http.get(
                f"{suite.gateway_url}/v0/pipes/daily_uniques.json", headers=headers
            ) as response:
                assert response.status == 200, await response.text()
                data = (await response.json())["data"]
            assert {row["day"]: (row["users"], row["views"]) for row in data} == want
            async with http.post(
                f"{suite.gateway_url}/v0/events",
                params={"name": "daily_users"},
                data=b'{"day": "2026-11-01"}',
                headers=headers,
            ) as response:
                assert response.status == 400
                assert "materialized pipe 'daily_users_mv'" in (await response.json())["error"]
            async with http.post(
                f"{suite.gateway_url}/v0/datasources",
                params={"name": "daily_users", "format": "ndjson", "mode": "append"},
                data=b'{"day": "2026-11-01"}',
                headers=headers,
            ) as response:
                assert response.status == 400
                assert "materialized pipe 'daily_users_mv'" in (await response.json())["error"]
    finally:
        stop.set()
        await suite.stop()
    assert read_files(folder)  # the folder deployed is the one written


async def test_a_summing_target_works_the_same(warehouse, deployer):
    rng = random.Random(13)
    files = project(with_materialized=False) | {
        "datasources/daily_views.datasource": (
            "SCHEMA >\n    `day` Date,\n    `path` String,\n    `views` UInt64\n\n"
            'ENGINE "SummingMergeTree"\nENGINE_SORTING_KEY "day, path"\n'
        ),
        "pipes/daily_views_mv.pipe": (
            "NODE daily\nSQL >\n    SELECT toDate(timestamp) AS day, path, count() AS views\n"
            "    FROM page_views\n    GROUP BY day, path\n\n"
            "TYPE materialized\nDATASOURCE daily_views\n"
        ),
    }
    before = events(rng, 300)
    await deployer.deploy(project(with_materialized=False))
    await warehouse.insert_json_rows("page_views", COLUMNS, body(before), dedup_token="s1")
    await deployer.deploy(files)
    after = events(rng, 300)
    for _ in range(2):  # a retried flush
        await warehouse.insert_json_rows("page_views", COLUMNS, body(after), dedup_token="s2")
    result = await warehouse.query(
        "SELECT toString(day) AS day, path, sum(views) AS views FROM daily_views "
        "GROUP BY day, path",
        {},
    )
    want: dict[tuple[str, str], int] = defaultdict(int)
    for event in before + after:
        want[(event["timestamp"][:10], event["path"])] += 1
    assert {(r["day"], r["path"]): int(r["views"]) for r in result.data} == want


async def test_a_flush_first_tried_before_the_view_and_retried_after_counts_once(
    warehouse, deployer
):
    rng = random.Random(21)
    await deployer.deploy(project(with_materialized=False))
    straddling = events(rng, 150)
    await warehouse.insert_json_rows("page_views", COLUMNS, body(straddling), dedup_token="r")
    await deployer.deploy(project())
    # Its answer was lost, say: ingest sends it again, after the deploy and its backfill.
    await warehouse.insert_json_rows("page_views", COLUMNS, body(straddling), dedup_token="r")
    fresh = events(rng, 100)
    await warehouse.insert_json_rows("page_views", COLUMNS, body(fresh), dedup_token="f")
    assert await target(warehouse) == expected(straddling + fresh)
