"""Building a project in Pipit's native form (`*.proto` with datasource messages and query
RPCs, `sql/<pipe>.sql`): compiled as written, the tables created, every pipe's SQL described
for the columns its row message names, materialized pipes checked against their targets."""

from __future__ import annotations

from collections.abc import Mapping

from google.protobuf import descriptor_pb2

from common.warehouse.base import Warehouse, WarehouseError
from pipit.clickhouse.v1 import options_pb2
from pipit.project.artifact import (
    NATIVE,
    Artifact,
    Materialization,
    NodeSource,
    PipeSource,
)
from pipit.project.engine_checks import (
    NAME,
    check_materialization,
    create_tables,
    describe,
    engine_problem,
)
from pipit.project.model import BuildFailed, ProjectError
from pipit.project.protoc import PLATFORM_PROTOS, protoc
from pipit.project.runtime import Project
from pipit.protogen import PROTO_DIR

_PLACEHOLDER_VALUES = {
    "String": "",
    "Bool": "false",
    "Date": "1970-01-01",
    "DateTime": "1970-01-01 00:00:00",
    "DateTime64": "1970-01-01 00:00:00",
    "UUID": "00000000-0000-0000-0000-000000000000",
}


async def build_native(files: Mapping[str, str], scratch: Warehouse, name: str) -> Artifact:
    own = [path for path in files if path.endswith(".proto")]
    platform = [p for p in PLATFORM_PROTOS if p not in files]
    sources = {path: text for path, text in files.items() if path.endswith(".proto")}
    for path in platform:
        sources[path] = (PROTO_DIR / path).read_text()
    descriptor_set = await protoc(sources, [*own, *platform])
    skeleton = Project(Artifact(name, descriptor_set, {}))
    lines = _declaration_lines(descriptor_set)
    await create_tables(skeleton, scratch, lines)
    problems: list[ProjectError] = []
    pipes: dict[str, PipeSource] = {}
    service = skeleton.query_service
    for method in service.methods if service is not None else ():
        endpoint = method.GetOptions().Extensions[options_pb2.endpoint]
        if not endpoint:
            continue
        where = lines.get(method.full_name, (service.file.name, 1))
        path = f"sql/{endpoint}.sql"
        if path not in files:
            problems.append(
                ProjectError(*where, f"{method.name} answers pipe {endpoint!r}: {path} is missing")
            )
            continue
        sql = files[path]
        values = {}
        for field in method.input_type.fields:
            option = field.GetOptions().Extensions[options_pb2.parameter]
            if option.type:
                values[field.name] = option.default_value or _placeholder_value(option.type)
        try:
            described = dict(await describe(scratch, sql, values))
        except WarehouseError as exc:
            problems.append(engine_problem(exc, path, 1))
            continue
        rows = method.output_type.fields_by_name.get("data")
        for field in rows.message_type.fields if rows is not None else ():
            if field.name not in described:
                problems.append(
                    ProjectError(
                        path, 1, f"the answer has no column {field.name!r} for {field.full_name}"
                    )
                )
        pipes[endpoint] = PipeSource(endpoint, NATIVE, (NodeSource(endpoint, sql, path, 1),))
    materializations: dict[str, Materialization] = {}
    for ds in skeleton.datasources.values():
        pipe = ds.materialized_by
        if not pipe:
            continue
        where = lines.get(ds.name, (ds.descriptor.file.name, 1))
        path = f"sql/{pipe}.sql"
        if not NAME.match(pipe) or path not in files:
            problems.append(ProjectError(*where, f"{ds.name} is materialized by {path}: missing"))
            continue
        if pipe in pipes or pipe in materializations:
            problems.append(ProjectError(*where, f"{path} answers an endpoint or fills a table"))
            continue
        try:
            materializations[pipe] = await check_materialization(
                pipe, ds.name, (NodeSource(pipe, files[path], path, 1),), skeleton, scratch
            )
        except ProjectError as exc:
            problems.append(exc)
        except BuildFailed as exc:
            problems += exc.problems
    if problems:
        raise BuildFailed(problems)
    return Artifact(name, descriptor_set, pipes, {}, materializations)


def _declaration_lines(descriptor_set: bytes) -> dict[str, tuple[str, int]]:
    """Where each datasource (by table name) and each RPC (by full name) is declared, from
    the protos' source info."""
    found: dict[str, tuple[str, int]] = {}
    for file in descriptor_pb2.FileDescriptorSet.FromString(descriptor_set).file:
        spans = {tuple(loc.path): loc.span[0] + 1 for loc in file.source_code_info.location}
        for index, message in enumerate(file.message_type):
            if message.options.HasExtension(options_pb2.table):
                table = message.options.Extensions[options_pb2.table]
                found[table.name] = (file.name, spans.get((4, index), 1))
        for s_index, service in enumerate(file.service):
            for m_index, method in enumerate(service.method):
                full = f"{file.package}.{service.name}.{method.name}"
                found[full] = (file.name, spans.get((6, s_index, 2, m_index), 1))
    return found


def _placeholder_value(kind: str) -> str:
    """A value of the type for describing a query whose parameter has no default."""
    if kind.startswith("Array("):
        return "[]"
    for prefix, value in _PLACEHOLDER_VALUES.items():
        if kind.startswith(prefix):
            return value
    return "0"
