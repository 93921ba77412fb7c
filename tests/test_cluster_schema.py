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

from common import config, token_table
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
from common.datasources import DEDUPLICATION_SETTING, registry
from common.warehouse.embedded import EmbeddedWarehouse
from common.warehouse.factory import open_warehouse
from pipit import cli
from pipit.migrate import apply, single_node_statements
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
        if not s.startswith("ALTER TABLE ")  # projections added to older local tables
    ]
    expected = []
    for table, _, _ in _tables():
        # The local table first: a Distributed insert fails until it exists.
        expected += [table + LOCAL_SUFFIX, table]
    assert created == expected


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
        for projection in ds.projections:
            assert f"PROJECTION {projection}" in local
            on_local = f"`{DATABASE}`.`{ds.name}{LOCAL_SUFFIX}` ON CLUSTER `{CLUSTER}`"
            assert f"ALTER TABLE {on_local} ADD PROJECTION IF NOT EXISTS {projection}" in added
        for index in ds.skip_indexes:  # older local tables get the indexes as well
            assert f"ALTER TABLE {on_local} ADD INDEX IF NOT EXISTS {index}" in added
        assert "PROJECTION" not in distributed
        # Each ALTER follows the CREATE of the table it alters.
        assert statements.index(local) < min(statements.index(s) for s in added)


def test_datasources_are_sharded_by_user_id() -> None:
    # Per-user endpoints then read one shard, and one user's rows stay together.
    assert SHARDING_KEY == "cityHash64(user_id)"
    for ds in DATASOURCES:
        assert "user_id" in ds.column_names
        assert _schema().datasource_sql(ds)[1].endswith(f", {SHARDING_KEY})")


async def test_every_statement_parses_as_clickhouse_sql(
    embedded_warehouse: EmbeddedWarehouse,
) -> None:
    # Through the session's chDB (one per process): ClickHouse's parser reformats each
    # statement without running it, so a syntax error fails here, not on the cluster.
    tokens = token_table.create_sql(DATABASE, CLUSTER)
    for statement in [*_schema().statements(DATASOURCES), tokens]:
        result = await embedded_warehouse.query(
            "SELECT formatQuery({q:String}) AS formatted", {"q": statement}
        )
        formatted = result.data[0]["formatted"]
        assert formatted.startswith(("CREATE", "ALTER TABLE")), formatted
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
    embedded_warehouse: EmbeddedWarehouse,
) -> None:
    statements = single_node_statements(embedded_warehouse.database, DATASOURCES)
    # The fixture already created the tables; running the migration again is harmless.
    await apply(embedded_warehouse, statements)
    await apply(embedded_warehouse, statements)
    result = await embedded_warehouse.query(
        "SELECT name, engine FROM system.tables WHERE database = {db:String} ORDER BY name",
        {"db": embedded_warehouse.database},
    )
    tables = {row["name"]: row["engine"] for row in result.data}
    assert tables == {t: "MergeTree" for t, _, _ in _tables()}


async def test_single_node_migration_is_what_the_services_run() -> None:
    """`pipit migrate --print` shows exactly the statements ensure_schema executes."""

    class Recording(EmbeddedWarehouse):
        def __init__(self) -> None:
            super().__init__(Path("unused"), DATABASE)
            self.executed: list[str] = []

        async def execute(self, sql: str) -> None:
            self.executed.append(sql)

    recording = Recording()
    await recording.ensure_schema(DATASOURCES)
    assert single_node_statements(DATABASE, DATASOURCES)[1:] == recording.executed


async def test_services_skip_table_creation_when_the_schema_is_managed_elsewhere(
    embedded_warehouse: EmbeddedWarehouse,
) -> None:
    database = embedded_warehouse.database + "_unmanaged"
    settings = Settings(
        data_dir=embedded_warehouse.data_dir, database=database, manage_schema=False
    )
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
    # Then the Tokens API's table, whole on every node.
    expected = [*_schema().statements(DATASOURCES), token_table.create_sql(DATABASE, CLUSTER)]
    assert out == ";\n\n".join(expected) + ";\n"


def test_pipit_migrate_print_shows_the_single_node_ddl(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["migrate", "--database", DATABASE, "--print"]) == 0
    out = capsys.readouterr().out
    assert "ON CLUSTER" not in out
    for ds in DATASOURCES:
        assert ds.create_table_sql(DATABASE) in out


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
