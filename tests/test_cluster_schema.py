"""Cluster DDL (common/cluster_schema.py) and `pipit migrate`: for every datasource, the
ON CLUSTER statements name the cluster, replicate through Keeper paths keyed by the
{shard}/{replica} macros, and put a Distributed table sharded by user_id in front of the
local one, with the columns, keys and settings of the single-node declaration. ClickHouse's
own parser (chDB's formatQuery) reads every statement; the single-node DDL still runs on
chDB."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest
from conftest import unique_database

from common import config, id_numbers, page_moves
from common.cluster_schema import (
    LOCAL_SUFFIX,
    QUARANTINE_SHARDING_KEY,
    SHARDING_KEY,
    ClusterSchema,
    SingleNodeTable,
    replicated_engine,
    sharding_key,
)
from common.config import Settings
from common.datasources import (
    DEDUPLICATION_SETTING,
    INSERT_COLUMN,
    Column,
    Datasource,
    registry,
)
from common.range_views import EMPTY_PREFIX
from common.warehouse.embedded import EmbeddedWarehouse
from common.warehouse.factory import open_warehouse
from pipit import cli
from pipit import migrate as migrate_command
from pipit.migrate import INTERNAL_TABLES, apply, single_node_statements
from pipit.startup import load_project

CLUSTER = "pipit_cluster"
DATABASE = "analytics"
DATASOURCES = list(registry().values())


def _schema() -> ClusterSchema:
    return ClusterSchema(CLUSTER, DATABASE)


def _tables() -> list[tuple[str, str, str]]:
    """(table, single-node DDL, sharding key) for every datasource and quarantine table."""
    out = []
    for ds in DATASOURCES:
        out.append((ds.name, ds.create_table_sql(DATABASE), SHARDING_KEY))
        out.append(
            (ds.quarantine_table, ds.create_quarantine_sql(DATABASE), QUARANTINE_SHARDING_KEY)
        )
    return out


def _statement(statements: list[str], table: str) -> str:
    found = [
        s for s in statements if s.startswith(f"CREATE TABLE IF NOT EXISTS `{DATABASE}`.`{table}` ")
    ]
    assert len(found) == 1, table
    return found[0]


def test_every_datasource_has_a_local_and_a_distributed_table_and_nothing_else() -> None:
    statements = _schema().statements(DATASOURCES)
    assert statements[0] == f"CREATE DATABASE IF NOT EXISTS `{DATABASE}` ON CLUSTER `{CLUSTER}`"
    created = [
        re.match(r"CREATE TABLE IF NOT EXISTS `\w+`\.`(\w+)`", s)[1]
        for s in statements[1:]
        # Projections added to older local tables; range views and their empty tables, below.
        if not s.startswith(("ALTER TABLE ", "CREATE OR REPLACE VIEW ", "CREATE OR REPLACE TABLE "))
    ]
    expected = []
    for table, _, _ in _tables():
        # The local table first: a Distributed insert fails until it exists.
        expected += [table + LOCAL_SUFFIX, table]
    assert created == expected


def test_range_views_read_the_distributed_tables_on_every_node() -> None:
    statements = _schema().statements(DATASOURCES)
    views = [s for s in statements if s.startswith("CREATE OR REPLACE VIEW ")]
    # Each view (whole months, days, hours where it has them, then the cut hours), then its
    # siblings, one tier each (whole days or hours; whole months).
    declared = [
        (
            ds.name,
            name,
            2 + bool(v.day_projection) + bool(v.month_projection) if form == "full" else 1,
        )
        for ds in DATASOURCES
        for v in ds.range_views
        for name, form in ((v.name, "full"), *v.siblings)
    ]
    assert declared and len(views) == len(declared)
    assert any(view.month_projection for ds in DATASOURCES for view in ds.range_views)
    for (table, name, tiers), sql in zip(declared, views, strict=True):
        assert sql.startswith(
            f"CREATE OR REPLACE VIEW `{DATABASE}`.`{name}` ON CLUSTER `{CLUSTER}` AS\n"
        )
        # Every tier (whole months and days where the view has them, whole hours, cut
        # hours) reads the Distributed table, never one node's local table.
        # (A view of one row per key reads them in a subquery it groups once more.)
        tables = sql.count(f"FROM `{DATABASE}`.`{table}`\n")
        assert tables == tiers == sql.count("FROM ") - sql.count("FROM (\n")
        assert LOCAL_SUFFIX not in sql


def test_every_range_view_has_an_empty_table_on_every_node_after_its_sibling() -> None:
    statements = _schema().statements(DATASOURCES)
    views = [v for ds in DATASOURCES for v in ds.range_views]
    empties = [s for s in statements if s.startswith("CREATE OR REPLACE TABLE ")]
    assert len(empties) == len(views)
    for view, sql in zip(views, empties, strict=True):
        # The sibling's columns, taken on each node from its own sibling, made before it.
        sibling = f"`{DATABASE}`.`{view.whole_name}`"
        assert sql == (
            f"CREATE OR REPLACE TABLE `{DATABASE}`.`{view.empty_name}` ON CLUSTER `{CLUSTER}` "  # noqa: S608 - ours
            f"ENGINE = Null EMPTY AS SELECT * FROM {sibling}"
            "(start_date = toDateTime(0), end_date = toDateTime(0))"
        )
        made = next(
            i for i, s in enumerate(statements) if s.startswith(f"CREATE OR REPLACE VIEW {sibling}")
        )
        assert made < statements.index(sql)


@pytest.mark.parametrize("table,single_node,sharding_key", _tables(), ids=[t[0] for t in _tables()])
def test_cluster_ddl_replicates_and_distributes_the_single_node_table(
    table: str, single_node: str, sharding_key: str
) -> None:
    statements = _schema().statements(DATASOURCES)
    local_sql = _statement(statements, table + LOCAL_SUFFIX)
    distributed_sql = _statement(statements, table)
    single = SingleNodeTable.parse(single_node)
    local = SingleNodeTable.parse(local_sql.replace(f" ON CLUSTER `{CLUSTER}`", ""))
    distributed = SingleNodeTable.parse(
        distributed_sql.replace(f" ON CLUSTER `{CLUSTER}`", "") + "\n"
    )

    for sql in (local_sql, distributed_sql):
        assert f" ON CLUSTER `{CLUSTER}` " in sql
    # Same columns on all three (skipping indexes only where parts are); same partition
    # key, sorting key on the local table.
    assert local.columns == single.columns
    assert distributed.columns == single.columns_without_indexes
    assert "INDEX" not in distributed.columns
    keeper_path = f"/clickhouse/tables/{{shard}}/{DATABASE}/{table}{LOCAL_SUFFIX}"
    assert local.engine == f"Replicated{single.engine}('{keeper_path}', '{{replica}}')"
    assert local.tail == single.tail.replace(
        DEDUPLICATION_SETTING, "replicated_deduplication_window = 10000"
    )
    assert distributed.engine == (
        f"Distributed('{CLUSTER}', '{DATABASE}', '{table}{LOCAL_SUFFIX}', {sharding_key})"
    )


def test_projections_are_on_the_local_tables_only() -> None:
    statements = _schema().statements(DATASOURCES)
    projected = [ds for ds in DATASOURCES if ds.projections]
    assert projected
    for ds in projected:
        local = _statement(statements, ds.name + LOCAL_SUFFIX)
        distributed = _statement(statements, ds.name)
        added = [s for s in statements if s.startswith("ALTER TABLE ") and ds.name + "_" in s]
        # A cluster numbers no ids: its projections keep uniqExact sets (id_numbers.py).
        for projection in ds.projections_for(numbered=False):
            assert f"PROJECTION {projection}" in local
            on_local = f"`{DATABASE}`.`{ds.name}{LOCAL_SUFFIX}` ON CLUSTER `{CLUSTER}`"
            assert f"ALTER TABLE {on_local} ADD PROJECTION IF NOT EXISTS {projection}" in added
        for index in ds.skip_indexes:  # older local tables get the indexes as well
            assert f"ALTER TABLE {on_local} ADD INDEX IF NOT EXISTS {index}" in added
        assert "PROJECTION" not in distributed
        # Each ALTER follows the CREATE of the table it alters.
        assert statements.index(local) < min(statements.index(s) for s in added)


def _node_before_upgrade() -> tuple[frozenset[str], dict[str, frozenset[str]]]:
    """What a node holds before a release that declared projections: every local table but
    the last datasource's (a table new to the cluster), each with only its first
    projection (where it has any)."""
    existing = frozenset(ds.name + LOCAL_SUFFIX for ds in DATASOURCES[:-1])
    projections = {
        ds.name + LOCAL_SUFFIX: frozenset(ds.projection_names[:1])
        for ds in DATASOURCES[:-1]
        if ds.projections
    }
    return existing, projections


def _materialized(statements: list[str]) -> list[tuple[str, str]]:
    found = []
    for s in statements:
        match = re.fullmatch(
            rf"ALTER TABLE `{DATABASE}`\.`(\w+)` ON CLUSTER `{CLUSTER}` "
            r"MATERIALIZE PROJECTION `(\w+)` SETTINGS mutations_sync = 0",
            s,
        )
        if match:
            found.append((match.group(1), match.group(2)))
        else:
            assert "MATERIALIZE PROJECTION" not in s, s
    return found


def test_a_projection_new_to_an_existing_local_table_is_written_into_its_parts() -> None:
    """Else a cluster upgraded to a release with more projections reads them from the
    older parts' rows until those merge; once only (the node's projections say which are
    new), never on a table new to the cluster, nor where the node was not read (--print)."""
    existing, projections = _node_before_upgrade()
    statements = _schema().statements(DATASOURCES, existing=existing, projections=projections)
    expected = [
        (ds.name + LOCAL_SUFFIX, name)
        for ds in DATASOURCES[:-1]
        for name in ds.projection_names[1:]
    ]
    assert expected
    assert _materialized(statements) == expected
    for table, name in expected:  # after the projection is added to the table
        added = next(
            s
            for s in statements
            if f"`{table}`" in s and f"ADD PROJECTION IF NOT EXISTS `{name}`" in s
        )
        materialize = next(
            s for s in statements if f"`{table}`" in s and f"MATERIALIZE PROJECTION `{name}`" in s
        )
        assert statements.index(added) < statements.index(materialize)
    everything = {ds.name + LOCAL_SUFFIX: frozenset(ds.projection_names) for ds in DATASOURCES}
    again = _schema().statements(
        DATASOURCES, existing=frozenset(everything), projections=everything
    )
    assert _materialized(again) == []
    assert _materialized(_schema().statements(DATASOURCES)) == []


async def test_pipit_migrate_reads_the_node_before_upgrading_the_cluster(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`pipit migrate --cluster` asks the node it reaches which tables and projections it
    holds, and runs the statements that follow from them."""
    existing, projections = _node_before_upgrade()
    ran: list[str] = []

    class Node:
        async def open(self) -> None: ...

        async def close(self) -> None: ...

        async def table_names(self) -> frozenset[str]:
            return existing

        async def projection_names(self) -> dict[str, frozenset[str]]:
            return projections

        async def view_selects(self) -> dict[str, str]:
            return STALE_VIEWS

        async def execute(self, statement: str) -> None:
            ran.append(statement)

    monkeypatch.setattr(migrate_command, "open_warehouse", lambda settings: Node())
    settings = Settings(clickhouse_url="http://node:8123", database=DATABASE)
    assert await migrate_command.migrate(settings, CLUSTER) == 0
    assert ran == migrate_command.statements(
        settings, CLUSTER, existing=existing, projections=projections, views=STALE_VIEWS
    )
    assert _materialized(ran)
    assert [s for s in ran if s.startswith("DROP VIEW")] == [
        f"DROP VIEW IF EXISTS `{DATABASE}`.`user_hours` ON CLUSTER `{CLUSTER}`",
        f"DROP VIEW IF EXISTS `{DATABASE}`.`user_hours__whole` ON CLUSTER `{CLUSTER}`",
    ]


# A node's views after an older release: the range view of user_events' retired
# `user_hours` and its sibling (over the Distributed table, as the cluster's views read),
# a team's view of a retired name over another table, and a declared view.
STALE_VIEWS = {
    name: select.format(db=DATABASE)
    for name, select in {
        "user_hours": "SELECT hour, count() FROM {db}.user_events GROUP BY hour",
        "user_hours__whole": "SELECT hour FROM `{db}`.`user_events` WHERE 1",
        "app_user_hours": "SELECT 1 FROM {db}.user_events_quarantine",
        "activity_bitmap_hours": "SELECT hour FROM {db}.user_events",
    }.items()
}


def test_datasources_are_sharded_by_user_id() -> None:
    # Per-user endpoints then read one shard, and one user's rows stay together.
    assert SHARDING_KEY == "cityHash64(user_id)"
    for ds in DATASOURCES:
        assert "user_id" in ds.column_names
        assert _schema().datasource_sql(ds)[1].endswith(f", {SHARDING_KEY})")


async def test_every_statement_parses_as_clickhouse_sql(
    module_warehouse: EmbeddedWarehouse,
) -> None:
    # Through the session's chDB (one per process): ClickHouse's parser reformats each
    # statement without running it, so a syntax error fails here, not on the cluster.
    internal = [_schema().everywhere_sql(create(DATABASE)) for create in INTERNAL_TABLES]
    existing, projections = _node_before_upgrade()
    upgrade = _schema().statements(
        DATASOURCES, existing=existing, projections=projections, views=STALE_VIEWS
    )
    assert any(s.startswith("DROP VIEW") for s in upgrade)
    # A stale range view's empty table goes with it.
    dropped = f"DROP TABLE IF EXISTS `{DATABASE}`.`{EMPTY_PREFIX}user_hours` ON CLUSTER `{CLUSTER}`"
    assert dropped in upgrade
    for statement in [*upgrade, *internal]:
        result = await module_warehouse.query(
            "SELECT formatQuery({q:String}) AS formatted", {"q": statement}
        )
        formatted = result.data[0]["formatted"]
        assert formatted.startswith(("CREATE", "ALTER TABLE", "DROP VIEW", "DROP TABLE")), formatted
        assert f"ON CLUSTER {CLUSTER}" in formatted


@pytest.mark.parametrize(
    "engine,expected",
    [
        ("MergeTree", "ReplicatedMergeTree('/p', '{replica}')"),
        ("MergeTree()", "ReplicatedMergeTree('/p', '{replica}')"),
        ("ReplacingMergeTree(version)", "ReplicatedReplacingMergeTree('/p', '{replica}', version)"),
        ("SummingMergeTree((a, b))", "ReplicatedSummingMergeTree('/p', '{replica}', (a, b))"),
    ],
)
def test_replicated_engine_keeps_the_declared_engine_arguments(engine: str, expected: str) -> None:
    assert replicated_engine(engine, "/p") == expected


@pytest.mark.parametrize("engine", ["Log", "Memory", "ReplicatedMergeTree('/x', '{replica}')"])
def test_replicated_engine_refuses_what_it_cannot_replicate(engine: str) -> None:
    with pytest.raises(ValueError):
        replicated_engine(engine, "/p")


@pytest.mark.parametrize("cluster,database", [("a b", "pipit"), ("pipit", "x`; DROP"), ("", "p")])
def test_cluster_and_database_must_be_identifiers(cluster: str, database: str) -> None:
    with pytest.raises(ValueError):
        ClusterSchema(cluster, database)


async def test_single_node_migration_runs_on_chdb_and_is_idempotent(
    module_warehouse: EmbeddedWarehouse,
) -> None:
    """Every statement of the migration, upgrade steps included, runs again on the tables
    the fixture's ensure_schema created (leaving those steps out, as it does for new
    tables) and changes nothing: the tables were complete."""

    async def definitions() -> dict[str, tuple[str, str]]:
        result = await module_warehouse.query(
            "SELECT name, engine, create_table_query FROM system.tables "
            "WHERE database = {db:String}",
            {"db": module_warehouse.database},
        )
        return {row["name"]: (row["engine"], row["create_table_query"]) for row in result.data}

    created = await definitions()
    statements = single_node_statements(module_warehouse.database, DATASOURCES)
    await apply(module_warehouse, statements)
    assert await definitions() == created
    views = {
        name: "View"
        for ds in DATASOURCES
        for v in ds.range_views
        for name in (v.name, *(sibling for sibling, _ in v.siblings))
    }
    # Each with a table of its columns that holds no row, for a call of no range.
    empties = {v.empty_name: "Null" for ds in DATASOURCES for v in ds.range_views}
    # chDB numbers ids for the bitmaps of distinct counts (common/id_numbers.py).
    numbering = {
        id_numbers.NUMBERS: "MergeTree",
        id_numbers.NUMBER_OF: "Join",
        id_numbers.FEED: "MaterializedView",
    }
    # And keeps clickstream's page moves (common/page_moves.py): the moves (summed as
    # their parts merge), the sessions waiting for a reconcile with their new views' span,
    # and the view that records them; each session's span of views reconciled.
    moves = {
        name: engine
        for ds in DATASOURCES
        if ds.page_moves
        for name, engine in (
            (page_moves.table(ds.name), "SummingMergeTree"),
            (page_moves.pending_table(ds.name), "MergeTree"),
            (page_moves.pending_view(ds.name), "MaterializedView"),
            (page_moves.spans_table(ds.name), "AggregatingMergeTree"),
        )
    }
    assert moves
    assert {name: engine for name, (engine, _) in created.items()} == {
        t: "MergeTree" for t, _, _ in _tables()
    } | views | empties | numbering | moves


async def test_single_node_migration_is_what_the_services_run() -> None:
    """`pipit migrate --print` shows exactly the statements ensure_schema executes on a
    database that holds the tables already (of whatever release), where the engine does not
    say which projections they have (a server without system.projections: every retired
    one is dropped) and their number columns exist (nothing to write into older parts)."""

    class Recording(EmbeddedWarehouse):
        def __init__(self) -> None:
            super().__init__(Path("unused"), DATABASE)
            self.executed: list[str] = []

        async def execute(self, sql: str) -> None:
            self.executed.append(sql)

        async def table_names(self) -> frozenset[str]:
            return frozenset(name for name, _, _ in _tables())

        async def projection_names(self) -> dict[str, frozenset[str]] | None:
            return None

        async def _unnumbered(self, datasources: object) -> list[tuple[str, str]]:
            return []

    recording = Recording()
    await recording.ensure_schema(DATASOURCES)
    assert single_node_statements(DATABASE, DATASOURCES)[1:] == recording.executed


async def test_services_skip_table_creation_when_the_schema_is_managed_elsewhere(
    module_warehouse: EmbeddedWarehouse,
) -> None:
    database = module_warehouse.database + "_unmanaged"
    settings = Settings(data_dir=module_warehouse.data_dir, database=database, manage_schema=False)
    warehouse = open_warehouse(settings)
    current = await load_project(settings, warehouse)
    assert current.project.name == "tutorials"  # no deployment yet: the built-in project
    try:
        result = await warehouse.query(
            "SELECT count() AS n FROM system.tables WHERE database = {db:String}", {"db": database}
        )
    finally:
        await warehouse.close()
    assert result.data == [{"n": 0}]


def test_manage_schema_is_read_from_the_environment() -> None:
    assert config.load(environ={}).manage_schema is True
    assert config.load(environ={"PIPIT_MANAGE_SCHEMA": "false"}).manage_schema is False
    assert config.load(environ={"PIPIT_MANAGE_SCHEMA": "TRUE"}).manage_schema is True
    with pytest.raises(SystemExit, match="PIPIT_MANAGE_SCHEMA"):
        config.load(environ={"PIPIT_MANAGE_SCHEMA": "sometimes"})


def test_pipit_migrate_print_shows_the_cluster_ddl(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["migrate", "--cluster", CLUSTER, "--database", DATABASE, "--print"]) == 0
    out = capsys.readouterr().out
    # Then Pipit's own tables, whole on every node.
    internal = [_schema().everywhere_sql(create(DATABASE)) for create in INTERNAL_TABLES]
    expected = [*_schema().statements(DATASOURCES), *internal]
    assert out == ";\n\n".join(expected) + ";\n"


def test_pipit_migrate_print_shows_the_single_node_ddl(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["migrate", "--database", DATABASE, "--print"]) == 0
    out = capsys.readouterr().out
    assert "ON CLUSTER" not in out
    for ds in DATASOURCES:  # no ClickHouse URL: chDB's DDL, ids numbered
        assert ds.create_table_sql(DATABASE, numbered=True) in out


def test_pipit_migrate_refuses_a_cluster_without_a_clickhouse_server() -> None:
    with pytest.raises(SystemExit, match="needs a ClickHouse server"):
        cli.main(["migrate", "--cluster", CLUSTER, "--clickhouse-url", ""])
    with pytest.raises(SystemExit, match="plain identifier"):
        cli.main(["migrate", "--cluster", "no such", "--print"])


def _distributed_engines() -> dict[str, str]:
    return {
        re.match(r"CREATE TABLE IF NOT EXISTS `\w+`\.`(\w+)`", s)[1]: s.rsplit("ENGINE = ", 1)[1]
        for s in _schema().statements(DATASOURCES)
        if "ENGINE = Distributed(" in s
    }


def test_every_sharding_key_is_a_function_of_the_row() -> None:
    # Every insert carries a deduplication token: a retried flush must split its rows
    # across shards exactly as the first attempt did, or each shard drops rows it never
    # had under that token (and keeps others twice).
    engines = _distributed_engines()
    assert set(engines) == {t for t, _, _ in _tables()}
    for table, engine in engines.items():
        key = engine.rsplit(", ", 1)[1].rstrip(")")
        assert key.startswith("cityHash64(") and "rand" not in key, (table, key)
    assert QUARANTINE_SHARDING_KEY == "cityHash64(raw)"


def test_a_datasource_without_user_id_is_sharded_by_its_sorting_key() -> None:
    ds = DATASOURCES[0]
    anonymous = dataclasses.replace(ds, columns=tuple(c for c in ds.columns if c.name != "user_id"))
    assert sharding_key(anonymous) == f"cityHash64({ds.sorting_key})"
    assert sharding_key(ds) == SHARDING_KEY


def test_quarantine_local_tables_expire_rows_and_older_ones_get_the_ttl() -> None:
    schema = ClusterSchema(CLUSTER, DATABASE, quarantine_ttl_days=9)
    statements = schema.statements(DATASOURCES)
    ttl = "toDateTime(arrived_at) + INTERVAL 9 DAY"
    for ds in DATASOURCES:
        local = _statement(statements, ds.quarantine_table + LOCAL_SUFFIX)
        assert f"\nTTL {ttl}\n" in local
        assert "TTL" not in _statement(statements, ds.quarantine_table)  # Distributed
        alter = (
            f"ALTER TABLE `{DATABASE}`.`{ds.quarantine_table}{LOCAL_SUFFIX}` "
            f"ON CLUSTER `{CLUSTER}` MODIFY TTL {ttl}"
        )
        assert statements.index(alter) > statements.index(local)
        assert "TTL" not in _statement(statements, ds.name + LOCAL_SUFFIX)  # data is kept


def test_pipits_own_tables_are_replicated_whole_on_every_node(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The services create them only where they manage the schema, so on a cluster the
    migration must: each on every node, one Keeper path for all shards (every node a
    replica of the whole table), with the single-node table's columns and keys."""
    assert cli.main(["migrate", "--cluster", CLUSTER, "--database", DATABASE, "--print"]) == 0
    printed = capsys.readouterr().out
    names = {"_pipit_tokens", "_pipit_deployments", "_pipit_jobs", "_pipit_s3_ledger"}
    singles = {
        SingleNodeTable.parse(create(DATABASE)).table: create(DATABASE)
        for create in INTERNAL_TABLES
    }
    assert set(singles) == names
    for name, single_sql in singles.items():
        statement = _statement(
            _schema().statements(DATASOURCES) + [_schema().everywhere_sql(single_sql)], name
        )
        assert statement in printed
        cluster = SingleNodeTable.parse(statement.replace(f" ON CLUSTER `{CLUSTER}`", ""))
        single = SingleNodeTable.parse(single_sql)
        assert f"`{DATABASE}`.`{name}` ON CLUSTER `{CLUSTER}` (" in statement
        assert (cluster.columns, cluster.tail) == (single.columns, single.tail)
        keeper_path = f"/clickhouse/tables/all/{DATABASE}/{name}"
        assert cluster.engine == replicated_engine(single.engine, keeper_path)
        assert "{shard}" not in statement


def test_older_tables_get_new_columns_on_both_cluster_tables() -> None:
    statements = _schema().statements(DATASOURCES)
    for ds in DATASOURCES:
        for table in (ds.name + LOCAL_SUFFIX, ds.name):
            alters = [
                s
                for s in statements
                if s.startswith(
                    f"ALTER TABLE `{DATABASE}`.`{table}` ON CLUSTER `{CLUSTER}` ADD COLUMN"
                )
                # The hidden insert-token column (materialized pipes) has its own statement.
                and INSERT_COLUMN not in s
            ]
            assert len(alters) == 1, table
            for i, column in enumerate(ds.columns):
                after = f"AFTER `{ds.columns[i - 1].name}`" if i else "FIRST"
                assert f"ADD COLUMN IF NOT EXISTS {column.definition} {after}" in alters[0]
            # After the table it alters is created.
            assert statements.index(alters[0]) > statements.index(_statement(statements, table))


def _added_later(ds: Datasource) -> Column:
    """A column of `ds` that no key, index, projection or TTL uses: one a release could add."""
    used = " ".join(
        [
            ds.sorting_key,
            ds.partition_key,
            ds.primary_key,
            ds.ttl,
            *ds.skip_indexes,
            *ds.projections,
        ]
    )
    return next(c for c in reversed(ds.columns) if c.name not in used)


def test_pipit_migrate_adds_a_column_an_older_release_lacked(clickhouse_url: str) -> None:
    """Against a ClickHouse HTTP endpoint: a table created without a column gets it, in its
    declared place, and an insert naming it works."""
    import clickhouse_connect

    ds = DATASOURCES[0]
    new = _added_later(ds)
    older = dataclasses.replace(ds, columns=tuple(c for c in ds.columns if c is not new))
    database = unique_database("migrate_columns")
    client = clickhouse_connect.get_client(dsn=clickhouse_url)
    try:
        client.command(f"CREATE DATABASE `{database}`")
        client.command(older.create_table_sql(database))
        assert (
            cli.main(["migrate", "--clickhouse-url", clickhouse_url, "--database", database]) == 0
        )
        described = client.query(
            "SELECT name FROM system.columns WHERE database = {db:String} AND table = {t:String} "
            "ORDER BY position",
            parameters={"db": database, "t": ds.name},
        ).result_rows
        # Pipit's hidden `_pipit_*` columns (the insert token) are not the datasource's.
        declared = [row[0] for row in described if not row[0].startswith("_pipit_")]
        assert declared == list(ds.column_names)
        names = ", ".join(f"`{c}`" for c in ds.column_names)
        client.command(f"INSERT INTO `{database}`.`{ds.name}` ({names}) FORMAT JSONEachRow {{}}")
        count = client.query(f"SELECT count() FROM `{database}`.`{ds.name}`").result_rows  # noqa: S608 - names from the protos
        assert count == [(1,)]
        # Run again: nothing to add, nothing changes.
        assert (
            cli.main(["migrate", "--clickhouse-url", clickhouse_url, "--database", database]) == 0
        )
        # Pipit's own tables too: services that do not manage the schema never make them.
        tables = client.query(
            "SELECT name FROM system.tables "
            "WHERE database = {db:String} AND startsWith(name, '_pipit_')",
            parameters={"db": database},
        ).result_rows
        assert {row[0] for row in tables} == {
            SingleNodeTable.parse(create(database)).table for create in INTERNAL_TABLES
        } | {view.empty_name for ds in DATASOURCES for view in ds.range_views}
    finally:
        client.command(f"DROP DATABASE IF EXISTS `{database}`")
        client.close()
