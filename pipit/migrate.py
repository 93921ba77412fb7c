"""`pipit migrate`: creates the datasource tables, and Pipit's own, on the configured
warehouse.

On one node (embedded chDB or a single ClickHouse server) these are the tables the
services create for themselves at start-up. With `--cluster NAME` they are the ON CLUSTER
tables of a sharded, replicated ClickHouse (`common.cluster_schema`): a Replicated
`<name>_local` table per shard and a Distributed `<name>` in front of it. Services that
run against a cluster are started with PIPIT_MANAGE_SCHEMA=false, so that this command
(a Kubernetes Job) is the only one that creates tables there. Every statement is
idempotent, so running it again is harmless."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Callable, Mapping, Sequence

from common import config, token_table
from common.cluster_schema import ClusterSchema
from common.config import Settings
from common.datasources import QUARANTINE_TTL_DAYS, Datasource, registry
from common.telemetry import configure_logging
from common.warehouse.base import Warehouse, WarehouseError
from common.warehouse.factory import open_warehouse
from pipit.project import store
from services.ingest import jobs, s3_source

MIGRATE_SETTINGS = [
    "clickhouse_url",
    "clickhouse_user",
    "clickhouse_ca",
    "database",
    "data_dir",
    "log_level",
    "quarantine_ttl_days",
]


def single_node_statements(
    database: str,
    datasources: Sequence[Datasource],
    quarantine_ttl_days: int = QUARANTINE_TTL_DAYS,
    *,
    numbered: bool = True,
) -> list[str]:
    """The same statements `Warehouse.ensure_schema` runs, for printing (`numbered`: as
    chDB runs them, with dense id numbers; a ClickHouse server's have none)."""
    out = [f"CREATE DATABASE IF NOT EXISTS `{database}`"]
    for ds in datasources:
        out += ds.schema_sql(database, quarantine_ttl_days, numbered=numbered)
    return out


# Pipit's own tables, which the services create for themselves only where they manage the
# schema: the Tokens API's tokens, deployed projects, the Data Sources API's jobs and the S3
# connector's ledger.
INTERNAL_TABLES: tuple[Callable[[str], str], ...] = (
    token_table.create_sql,
    store.create_sql,
    jobs.create_sql,
    s3_source.ledger_sql,
)


def statements(
    settings: Settings,
    cluster: str | None,
    *,
    existing: frozenset[str] | None = None,
    projections: Mapping[str, frozenset[str]] | None = None,
    views: Mapping[str, str] | None = None,
) -> list[str]:
    """What `pipit migrate` runs (`existing`, `projections`, `views`: what the node it
    reaches holds, where known; ClusterSchema.statements)."""
    datasources = list(registry().values())
    if cluster:
        schema = ClusterSchema(cluster, settings.database, settings.quarantine_ttl_days)
        internal = [schema.everywhere_sql(create(settings.database)) for create in INTERNAL_TABLES]
        return [
            *schema.statements(
                datasources, existing=existing, projections=projections, views=views
            ),
            *internal,
        ]
    # On one node too: k8s/ runs the services with PIPIT_MANAGE_SCHEMA=false everywhere.
    internal = [create(settings.database) for create in INTERNAL_TABLES]
    return [
        *single_node_statements(
            settings.database,
            datasources,
            settings.quarantine_ttl_days,
            numbered=not settings.clickhouse_url,
        ),
        *internal,
    ]


async def apply(warehouse: Warehouse, sql: Sequence[str]) -> None:
    """Runs the statements in order on an open warehouse."""
    for statement in sql:
        await warehouse.execute(statement)


async def migrate(settings: Settings, cluster: str | None) -> int:
    """Connects, creates the tables, and reports how many statements ran."""
    warehouse = open_warehouse(settings)
    await warehouse.open()
    try:
        if cluster:
            # The node's tables say which projections are new to the cluster's: those are
            # written into the parts that older releases' inserts left.
            sql = statements(
                settings,
                cluster,
                existing=await warehouse.table_names(),
                projections=await warehouse.projection_names(),
                views=await warehouse.view_selects(),
            )
            await apply(warehouse, sql)
        else:
            sql = statements(settings, cluster)
            await warehouse.ensure_schema(
                list(registry().values()), quarantine_ttl_days=settings.quarantine_ttl_days
            )
            await apply(warehouse, [create(settings.database) for create in INTERNAL_TABLES])
    finally:
        await warehouse.close()
    where = f"cluster {cluster}" if cluster else "the warehouse"
    print(f"pipit migrate: {len(sql)} statements applied to {where}", flush=True)
    return 0


def add_migrate_command(commands: argparse._SubParsersAction) -> None:
    sub = commands.add_parser(
        "migrate",
        help="create the datasource tables (single node, or ON CLUSTER with --cluster)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub.add_argument(
        "--cluster",
        metavar="NAME",
        default=None,
        help="ClickHouse cluster (remote_servers) to create Replicated + Distributed tables on",
    )
    sub.add_argument(
        "--print",
        dest="print_only",
        action="store_true",
        help="print the DDL and exit without connecting",
    )
    config.add_arguments(sub, MIGRATE_SETTINGS)
    sub.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    settings = config.load(args)
    try:
        if args.cluster:
            # Validates the cluster name before anything is printed or sent.
            ClusterSchema(args.cluster, settings.database)
    except ValueError as exc:
        raise SystemExit(f"pipit migrate: {exc}") from exc
    if args.print_only:
        print(";\n\n".join(statements(settings, args.cluster)) + ";")
        return 0
    if args.cluster and settings.embedded:
        raise SystemExit("pipit migrate: --cluster needs a ClickHouse server (--clickhouse-url)")
    configure_logging(settings.log_level)
    try:
        return asyncio.run(migrate(settings, args.cluster))
    except WarehouseError as exc:
        print(f"pipit migrate: {exc}", file=sys.stderr)
        return 1
