"""Putting a project into service on a running suite.

A deploy builds the project whole in a scratch database (so the engine parses and plans
every pipe against the new schema), compares the tables it would have with the live ones,
refuses a change that loses data unless asked for explicitly, applies the rest (new
tables, added columns, indexes, projections), and records the build where every replica
reads it. Only then does anything serve it: a project with a problem changes nothing."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Mapping
from dataclasses import dataclass

import structlog

from common.cluster_schema import sharded_tables
from common.warehouse.base import Warehouse
from pipit.project import materialize
from pipit.project.artifact import Artifact
from pipit.project.compiler import BuildFailed, build
from pipit.project.model import ProjectError
from pipit.project.runtime import CurrentProject, Project
from pipit.project.store import DeploymentStore

log = structlog.get_logger("deploy")

_COLUMNS = (
    "SELECT table, name, type, default_expression FROM system.columns "
    "WHERE database = {database:String} ORDER BY table, position"
)
_TABLES = (
    "SELECT name, sorting_key, partition_key FROM system.tables WHERE database = {database:String}"
)


class DeployRefused(Exception):
    """The warehouse cannot take a deploy (nothing was built or changed)."""


@dataclass(frozen=True)
class Deployed:
    """What a deploy did (or, dry, would do)."""

    version: str
    changes: tuple[str, ...]
    applied: bool


async def _schema(warehouse: Warehouse, database: str) -> tuple[dict, dict]:
    columns: dict[str, dict[str, tuple[str, str]]] = {}
    for row in (await warehouse.query(_COLUMNS, {"database": database})).data:
        columns.setdefault(row["table"], {})[row["name"]] = (row["type"], row["default_expression"])
    tables = {
        row["name"]: (row["sorting_key"], row["partition_key"])
        for row in (await warehouse.query(_TABLES, {"database": database})).data
    }
    return columns, tables


class Deployer:
    """Deploys projects into one warehouse database and the process's current project."""

    def __init__(
        self,
        warehouse: Warehouse,
        current: CurrentProject,
        store: DeploymentStore,
        quarantine_ttl_days: int,
    ) -> None:
        self._warehouse = warehouse
        self._current = current
        self._store = store
        self._quarantine_ttl_days = quarantine_ttl_days
        self._lock = asyncio.Lock()

    async def build(self, files: Mapping[str, str], name: str) -> Artifact:
        """Builds and validates `files` in a scratch database of this warehouse."""
        scratch = self._warehouse.sibling(f"_pipit_build_{secrets.token_hex(6)}")
        await scratch.open()
        try:
            return await build(files, scratch, name)
        finally:
            await scratch.execute(f"DROP DATABASE IF EXISTS `{scratch.database}`")
            await scratch.close()

    async def deploy(
        self,
        files: Mapping[str, str],
        *,
        name: str = "project",
        allow_destructive: bool = False,
        dry_run: bool = False,
    ) -> Deployed:
        """Builds, checks and applies a project; raises BuildFailed with every problem, and
        DeployRefused where the warehouse is a cluster."""
        async with self._lock:
            await self._refuse_on_cluster()
            artifact = await self.build(files, name)
            project = Project(artifact)
            statements, changes, destructive = await self._plan(project)
            changes += await materialize.plan(self._warehouse, project)
            if artifact.version == self._current.project.version and not destructive:
                # Already in service: nothing to record (tables and materialized pipes are
                # brought up to date all the same, cheaply, since every step is idempotent).
                if not dry_run:
                    for statement in statements:
                        await self._warehouse.execute(statement)
                    await materialize.apply(self._warehouse, project)
                return Deployed(artifact.version, (), applied=False)
            if destructive and not allow_destructive:
                raise BuildFailed(
                    ProjectError(
                        file,
                        line,
                        f"{change} would lose data; deploy with "
                        "--allow-destructive to do it anyway",
                    )
                    for change, (file, line) in destructive
                )
            if dry_run:
                return Deployed(artifact.version, tuple(changes), applied=False)
            for statement in statements:
                await self._warehouse.execute(statement)
            # Before the project is recorded: a pipe that reads a target is served only once
            # the target holds the backfilled rows.
            await materialize.apply(self._warehouse, project)
            await self._store.record(artifact)
            self._current.swap(project)
            log.info("deployed", version=artifact.version, project=name, changes=changes)
            return Deployed(artifact.version, tuple(changes), applied=True)

    async def _refuse_on_cluster(self) -> None:
        """Refuses, before anything runs, a deploy into a cluster's database: its datasources
        are Distributed tables over every shard's Replicated `_local` one (`pipit migrate
        --cluster`), while a deploy builds in a scratch database and creates and alters
        tables on the one node a connection reaches (behind the cluster's Service, a
        different node from one statement to the next). It would fail part-way, on the
        first ALTER of a Distributed table, or worse, leave a new datasource's table
        unreplicated on one node."""
        sharded = await sharded_tables(self._warehouse)
        if sharded:
            table, rows = next(iter(sharded.items()))  # the first by name
            raise DeployRefused(
                f"datasource {table} is a Distributed table over cluster "
                f"{rows.cluster!r} (made by `pipit migrate --cluster`), and a deploy "
                "creates and alters tables on one node: deploys to a cluster are not "
                "supported yet, and nothing was built or changed (a cluster serves the "
                "built-in project, whose tables `pipit migrate --cluster` makes)"
            )

    async def _plan(
        self, project: Project
    ) -> tuple[list[str], list[str], list[tuple[str, tuple[str, int]]]]:
        """The statements that bring the live tables to `project`'s, what they change, and
        the changes that lose data (with where they are declared)."""
        database = self._warehouse.database
        live_columns, live_tables = await _schema(self._warehouse, database)
        live_projections = await self._warehouse.projection_names()
        live_views = await self._warehouse.view_selects()
        statements: list[str] = []
        changes: list[str] = []
        destructive: list[tuple[str, tuple[str, int]]] = []
        scratch = self._warehouse.sibling(f"_pipit_plan_{secrets.token_hex(6)}")
        await scratch.open()
        try:
            existing = await scratch.table_names()
            for ds in project.datasources.values():
                schema = ds.schema_sql(
                    scratch.database,
                    self._quarantine_ttl_days,
                    existing=existing,
                    numbered=scratch.numbers_ids,
                )
                for statement in schema:
                    await scratch.execute(statement)
            wanted_columns, wanted_tables = await _schema(scratch, scratch.database)
        finally:
            await scratch.execute(f"DROP DATABASE IF EXISTS `{scratch.database}`")
            await scratch.close()
        for ds in project.datasources.values():
            where = (ds.descriptor.file.name, 1)
            schema = ds.schema_sql(
                database,
                self._quarantine_ttl_days,
                existing=frozenset(live_tables),
                numbered=self._warehouse.numbers_ids,
                projections=live_projections,
                views=live_views,
            )
            if ds.name not in live_tables:
                statements += schema
                changes.append(f"created datasource {ds.name}")
                continue
            table = f"`{database}`.`{ds.name}`"
            live, wanted = live_columns.get(ds.name, {}), wanted_columns.get(ds.name, {})
            if live_tables[ds.name] != wanted_tables.get(ds.name, live_tables[ds.name]):
                destructive.append(
                    (f"changing the sorting or partition key of datasource {ds.name}", where)
                )
            for column, (kind, default) in wanted.items():
                # Pipit's own hidden columns come with the upgrade statements, as they are.
                if column not in live and not column.startswith("_pipit_"):
                    definition = f"`{column}` {kind}" + (f" DEFAULT {default}" if default else "")
                    statements.append(f"ALTER TABLE {table} ADD COLUMN IF NOT EXISTS {definition}")
                    changes.append(f"added column {ds.name}.{column} {kind}")
                elif live[column][0] != kind:
                    destructive.append(
                        (
                            f"changing column {ds.name}.{column} from {live[column][0]} to {kind}",
                            where,
                        )
                    )
                    statements.append(f"ALTER TABLE {table} MODIFY COLUMN `{column}` {kind}")
                    changes.append(f"changed column {ds.name}.{column} to {kind}")
            for column in live:
                # Pipit's own hidden columns (materialize.INSERT_COLUMN) are not declared.
                if column not in wanted and not column.startswith("_pipit_"):
                    destructive.append((f"dropping column {ds.name}.{column}", where))
                    statements.append(f"ALTER TABLE {table} DROP COLUMN `{column}`")
                    changes.append(f"dropped column {ds.name}.{column}")
            # Indexes, projections, the quarantine table and its TTL: idempotent. A
            # projection the table lacked is also written into the rows it holds.
            statements += schema[1:]
            had = None if live_projections is None else live_projections.get(ds.name, ())
            changes += [
                f"added projection {ds.name}.{name} (written into the rows already there "
                "in the background)"
                for name in ds.missing_projections(had, numbered=self._warehouse.numbers_ids)
            ]
            changes += [
                f"dropped view {name} (the range view of a projection {ds.name} no longer has)"
                for name in ds.stale_views(database, live_views)
            ]
        served = set(self._current.project.datasources)
        for name in sorted(served - set(project.datasources)):
            changes.append(f"datasource {name} is no longer served (its table is kept)")
        old_pipes, new_pipes = set(self._current.project.pipes), set(project.pipes)
        changes += [f"added pipe {name}" for name in sorted(new_pipes - old_pipes)]
        changes += [f"removed pipe {name}" for name in sorted(old_pipes - new_pipes)]
        changes += [
            f"updated pipe {name}"
            for name in sorted(old_pipes & new_pipes)
            if project.pipes[name] != self._current.project.pipes[name]
        ]
        return statements, changes, destructive
