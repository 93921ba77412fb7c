"""What the project in service offers a token, in the shapes Tinybird's Pipes and Data Sources
APIs answer: its pipes (parameters, answer columns, nodes) and its datasources (columns,
engine, keys, row counts). Everything is read from the project's descriptors, so a listing
says what the RPCs actually accept and answer; the row counts come from the warehouse.

A pipe's entry is the same in `GET /v0/pipes` and in `GET /v0/pipes/<name>` (served by the
pipe reading RPC through `describe_pipe`). `parameters` and `columns` are Pipit's own fields
(the dashboard reads them); `nodes[].params` and `nodes[].columns` are where Tinybird's
clients look for the same facts."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from google.protobuf.descriptor import FieldDescriptor, MethodDescriptor

from common.column_types import parse
from common.datasources import Datasource
from common.tokens import ADMIN, allows
from common.warehouse.base import Warehouse
from pipit.clickhouse.v1 import options_pb2
from pipit.project.artifact import NATIVE
from pipit.project.runtime import Project
from services.query.binder import endpoint_name

# ClickHouse integer types whose defaults Tinybird's clients read as JSON numbers.
_INTEGER_TYPES = frozenset(f"{s}Int{b}" for s in ("", "U") for b in (8, 16, 32, 64))


def pipe_methods(project: Project) -> dict[str, MethodDescriptor]:
    """Each pipe of the project's query service by name, with the RPC that answers it."""
    service = project.query_service
    methods = {}
    for method in service.methods if service is not None else ():
        if name := endpoint_name(method):
            methods[name] = method
    return methods


def readable_pipes(project: Project, scopes: tuple[str, ...]) -> dict[str, MethodDescriptor]:
    """The pipes a token with `scopes` may read (PIPES:READ:<pipe>), by name."""
    return {
        name: method
        for name, method in pipe_methods(project).items()
        if allows(scopes, f"PIPES:READ:{name}")
    }


def parameter_fields(method: MethodDescriptor) -> list[tuple[FieldDescriptor, Any]]:
    """The request fields that are pipe parameters, with their `parameter` option."""
    found = []
    for field in method.input_type.fields:
        options = field.GetOptions()
        if options.HasExtension(options_pb2.parameter):
            found.append((field, options.Extensions[options_pb2.parameter]))
    return found


def row_fields(method: MethodDescriptor) -> list[FieldDescriptor]:
    """The fields of a pipe's answer row (`data`'s message)."""
    data = method.output_type.fields_by_name.get("data")
    if data is None or data.message_type is None:
        return []
    return list(data.message_type.fields)


def column_type(field: FieldDescriptor) -> str | None:
    """The ClickHouse type of an answer column, when its row field declares one."""
    return field.GetOptions().Extensions[options_pb2.column].type or None


def pipe_comments(project: Project, name: str) -> Callable[[str], str]:
    """The comments of a pipe's RPC and messages by full name, where its author wrote them
    (Pipit's native form); a Tinybird pipe's generated protos hold only boilerplate, and
    its descriptions are in its datafile."""
    pipe = project.pipes.get(name)
    if pipe is not None and pipe.form != NATIVE:
        return lambda _full_name: ""
    return project.comment


def pipe_description(project: Project, name: str, method: MethodDescriptor) -> str:
    """What a pipe answers: its datafile's DESCRIPTION, else its RPC's comment."""
    pipe = project.pipes.get(name)
    described = pipe.description if pipe is not None else ""
    return described or pipe_comments(project, name)(method.full_name)


def parameter_description(
    comments: Callable[[str], str], field: FieldDescriptor, option: Any
) -> str:
    """What a parameter means: its declared description, else its field's comment."""
    return option.description or comments(field.full_name)


def _typed_default(clickhouse_type: str, text: str) -> str | int | None:
    if not text:
        return None
    if parse(clickhouse_type).name in _INTEGER_TYPES:
        try:
            return int(text)
        except ValueError:
            return text
    return text


def describe_pipe(project: Project, name: str, *, with_sql: bool = False) -> dict[str, Any]:
    """A pipe as `GET /v0/pipes/<name>` answers it. `with_sql` adds each node's SQL (for
    ADMIN only: a PIPES:READ token often sits in a browser, and the SQL names tables and
    columns it may not read). KeyError when the project has no such pipe; the caller
    checks PIPES:READ:<name> first, so that a refusal does not tell whether it exists."""
    method = pipe_methods(project).get(name)
    if method is None:
        raise KeyError(name)
    comments = pipe_comments(project, name)
    parameters = []
    params = []
    for field, option in parameter_fields(method):
        description = parameter_description(comments, field, option)
        parameters.append(
            {
                "name": field.name,
                "type": option.type,
                "default_value": option.default_value,
                "required": option.required,
                "description": description,
                "allowed_values": list(option.allowed_values),
            }
        )
        params.append(
            {
                "name": field.name,
                "type": option.type,
                "default": _typed_default(option.type, option.default_value),
                "required": option.required,
                "description": description,
            }
        )
    columns = [
        {
            "name": field.name,
            "type": column_type(field),
            "description": comments(field.full_name),
        }
        for field in row_fields(method)
    ]
    source = project.pipes.get(name)
    node_names = [node.name for node in source.nodes] if source is not None else [name]
    nodes: list[dict[str, Any]] = []
    for index, node_name in enumerate(node_names):
        node: dict[str, Any] = {"name": node_name}
        if with_sql and source is not None:
            node["sql"] = source.nodes[index].sql
        if index == len(node_names) - 1:
            # The last node answers the endpoint: its parameters and columns are the pipe's.
            node.update(
                params=params, columns=[{"name": c["name"], "type": c["type"]} for c in columns]
            )
        nodes.append(node)
    return {
        "name": name,
        "description": pipe_description(project, name, method),
        "type": "endpoint",
        "endpoint": f"/v0/pipes/{name}.json",
        "parameters": parameters,
        "columns": columns,
        "nodes": nodes,
    }


def list_pipes(project: Project, scopes: tuple[str, ...]) -> dict[str, Any]:
    """`GET /v0/pipes`: every pipe the token may read, by name."""
    with_sql = ADMIN in scopes
    return {
        "pipes": [
            describe_pipe(project, name, with_sql=with_sql)
            for name in sorted(readable_pipes(project, scopes))
        ]
    }


def may_see_datasource(scopes: tuple[str, ...], name: str) -> bool:
    """A datasource is shown to a token that may read it or append to it."""
    return allows(scopes, f"DATASOURCES:READ:{name}") or allows(
        scopes, f"DATASOURCES:APPEND:{name}"
    )


def visible_datasources(project: Project, scopes: tuple[str, ...]) -> list[Datasource]:
    return [ds for name, ds in project.datasources.items() if may_see_datasource(scopes, name)]


async def row_counts(
    warehouse: Warehouse, datasources: Iterable[Datasource]
) -> dict[str, tuple[int, int]]:
    """(rows, quarantined rows) of each datasource, in one query."""
    listed = list(datasources)
    if not listed:
        return {}
    tables = [table for ds in listed for table in (ds.name, ds.quarantine_table)]
    # The names are the project's validated identifiers, never a request's.
    selects = [
        f"SELECT {index} AS i, count() AS n FROM `{table}`"  # noqa: S608
        for index, table in enumerate(tables)
    ]
    result = await warehouse.query(" UNION ALL ".join(selects), {})
    counts = {int(row["i"]): int(row["n"]) for row in result.data}
    return {ds.name: (counts[2 * i], counts[2 * i + 1]) for i, ds in enumerate(listed)}


def describe_datasource(ds: Datasource, rows: int, quarantined: int) -> dict[str, Any]:
    """A datasource as `GET /v0/datasources/<name>` answers it (and each entry of
    `GET /v0/datasources`), in Tinybird's shape."""
    return {
        "name": ds.name,
        "description": ds.description,
        "type": "ndjson",  # filled through the Events API
        "engine": {
            "engine": ds.engine,
            "engine_sorting_key": ds.sorting_key,
            "engine_partition_key": ds.partition_key,
            "engine_primary_key": ds.primary_key or ds.sorting_key,
            "engine_ttl": ds.ttl,
        },
        "columns": [
            {
                "name": column.name,
                "normalized_name": column.name,
                "type": column.type,
                "nullable": parse(column.type).nullable,
                "jsonpath": "$." + ".".join(column.json_path or (column.name,)),
                "default_value": column.default_expression or None,
                "codec": None,
            }
            for column in ds.columns
        ],
        "statistics": {"row_count": rows},
        "quarantine_rows": quarantined,
    }


def list_datasources(
    datasources: Iterable[Datasource], counts: Mapping[str, tuple[int, int]]
) -> dict[str, Any]:
    """`GET /v0/datasources`: the given datasources (those the token may see) with their
    counts."""
    return {"datasources": [describe_datasource(ds, *counts[ds.name]) for ds in datasources]}
