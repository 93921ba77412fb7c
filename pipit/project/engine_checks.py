"""A build's checks against the engine, in the scratch database it may fill: the tables
created, a query described for its answer's columns, a materialized pipe checked against its
target; the engine's errors as the Query API words them."""

from __future__ import annotations

import re
from collections.abc import Mapping

from common.warehouse.base import Warehouse, WarehouseError
from pipit.project.artifact import (
    Materialization,
    NodeSource,
)
from pipit.project.model import BuildFailed, ProjectError
from pipit.project.runtime import Project

NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def engine_problem(exc: WarehouseError, file: str, line: int) -> ProjectError:
    from services.query.sql_failure import engine_message  # the same words the Query API gives

    return ProjectError(file, line, engine_message(exc)[0])


async def create_tables(project: Project, scratch: Warehouse, where: dict[str, tuple]) -> None:
    from common.validation import RowValidator

    problems = []
    existing = await scratch.table_names()
    for ds in project.datasources.values():
        try:
            if not ds.materialized_by:  # a materialized pipe's target takes no appends
                RowValidator(ds)  # every column a type ingest can check
        except ValueError as exc:
            problems.append(ProjectError(*where.get(ds.name, (ds.name, 1)), str(exc)))
            continue
        try:
            for statement in ds.schema_sql(
                scratch.database, existing=existing, numbered=scratch.numbers_ids
            ):
                await scratch.execute(statement)
        except WarehouseError as exc:
            problems.append(engine_problem(exc, *where.get(ds.name, (ds.name, 1))))
    if problems:
        raise BuildFailed(problems)


async def describe(scratch: Warehouse, sql: str, values: Mapping[str, str]) -> list[tuple]:
    result = await scratch.query(f"DESCRIBE ({sql})", values)
    return [(str(row["name"]), str(row["type"])) for row in result.data]


async def check_materialization(
    name: str,
    target: str,
    nodes: tuple[NodeSource, ...],
    schema: Project,
    scratch: Warehouse,
) -> Materialization:
    """Checks a materialized pipe against its target in the scratch database: every answer
    column is one of the target's, of the very same type (an insert the target cannot take
    would fail the source's insert too, and ingest would retry it for ever), and the table
    it reads first is a datasource of the project (the one whose inserts drive it)."""
    from services.query.template_binder import compose

    last = nodes[-1]
    where = (last.file, last.line)
    sql = compose([(n.name, n.sql) for n in nodes])
    try:
        described = await describe(scratch, sql, {})
    except WarehouseError as exc:
        raise engine_problem(exc, *where) from exc
    target_types = {
        str(row["name"]): str(row["type"])
        for row in (
            await scratch.query(
                "SELECT name, type FROM system.columns "
                "WHERE database = {database:String} AND table = {table:String}",
                {"database": scratch.database, "table": target},
            )
        ).data
    }
    problems = []
    for column, kind in described:
        if column not in target_types:
            problems.append(
                ProjectError(*where, f"answer column {column!r} is not a column of {target!r}")
            )
        elif target_types[column] != kind:
            problems.append(
                ProjectError(
                    *where,
                    f"answer column {column!r} is {kind}; {target}.{column} is "
                    f"{target_types[column]} (cast it, or declare the column so)",
                )
            )
    if problems:
        raise BuildFailed(problems)
    probe = f"_pipit_probe_{name}"
    try:
        await scratch.execute(
            f"CREATE MATERIALIZED VIEW `{scratch.database}`.`{probe}` "
            f"TO `{scratch.database}`.`{target}` AS {sql}"
        )
        found = await scratch.query(
            "SELECT name FROM system.tables WHERE database = {database:String} "
            "AND has(dependencies_table, {view:String})",
            {"database": scratch.database, "view": probe},
        )
        await scratch.execute(f"DROP VIEW `{scratch.database}`.`{probe}`")
    except WarehouseError as exc:
        raise engine_problem(exc, *where) from exc
    sources = [str(row["name"]) for row in found.data]
    if len(sources) != 1 or sources[0] not in schema.datasources:
        raise ProjectError(
            *where, "a materialized pipe must read a datasource of the project first (FROM …)"
        )
    if sources[0] == target:
        raise ProjectError(*where, f"a materialized pipe cannot read its own target {target!r}")
    return Materialization(name, target, sources[0], nodes, tuple(described))
