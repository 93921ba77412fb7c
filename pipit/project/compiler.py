"""`pipit build`: a project's files into an Artifact, validated whole against the engine.

Two forms, one result:
- Tinybird datafiles (`*.datasource`, `*.pipe`): read (datafiles.py), a message per
  datasource and the services generated (protos.py), the tables created in a scratch
  database, every endpoint pipe rendered with its defaults and described by the engine for
  its answer's columns, which become the row message.
- Pipit's native form (`*.proto` with datasource messages and query RPCs, `sql/<pipe>.sql`):
  compiled as written, the tables created, every pipe's SQL described the same way.

Either way the protos are compiled by protoc (grpcio-tools, in a subprocess so its
messages can be read back) with the platform's services beside them, and every problem is
reported as `file:line: message`; a project with any problem builds nothing."""

from __future__ import annotations

import asyncio
import re
import sys
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from google.protobuf import descriptor_pb2

from common.datasources import QUARANTINE_SUFFIX
from common.warehouse.base import Warehouse, WarehouseError
from pipit.clickhouse.v1 import options_pb2
from pipit.project import protos
from pipit.project.artifact import (
    NATIVE,
    TINYBIRD,
    Artifact,
    Materialization,
    NodeSource,
    PipeSource,
)
from pipit.project.model import DatasourceSpec, NodeSpec, PipeSpec, ProjectError
from pipit.project.runtime import Project
from pipit.protogen import PROTO_DIR, include_paths

PLATFORM_PROTOS = (
    "pipit/query/v1/pipe_service.proto",
    "pipit/query/v1/sql_service.proto",
    "pipit/deploy/v1/deploy_service.proto",
    "pipit/ingest/v1/datasources_service.proto",
    "pipit/tokens/v1/token_service.proto",
    "pipit/catalog/v1/catalog_service.proto",
)
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_PROTOC_PROBLEM = re.compile(r"^(?P<file>[^:\n]+):(?P<line>\d+):(?:\d+:)?\s*(?P<message>.*)$")
_RESERVED_PREFIX = "_pipit"
# Pipe names whose `/v0/pipes/<name>.json` the platform serves (the pipes' OpenAPI document).
_RESERVED_PIPES = frozenset({"openapi"})
_PLACEHOLDER_VALUES = {
    "String": "",
    "Bool": "false",
    "Date": "1970-01-01",
    "DateTime": "1970-01-01 00:00:00",
    "DateTime64": "1970-01-01 00:00:00",
    "UUID": "00000000-0000-0000-0000-000000000000",
}


class BuildFailed(Exception):
    """The project has problems; nothing of it was built."""

    def __init__(self, problems: Iterable[ProjectError]) -> None:
        self.problems = sorted(problems, key=lambda p: (p.file, p.line, p.message))
        super().__init__("\n".join(str(p) for p in self.problems))


def project_form(files: Mapping[str, str]) -> str:
    """TINYBIRD when the files hold datafiles, NATIVE when they hold protos."""
    if any(path.endswith((".datasource", ".pipe")) for path in files):
        return TINYBIRD
    if any(path.endswith(".proto") for path in files):
        return NATIVE
    raise BuildFailed(
        [ProjectError(".", 0, "no *.datasource, *.pipe or *.proto files: nothing to build")]
    )


def read_files(folder: Path) -> dict[str, str]:
    """A project folder's files by relative path (hidden folders and build output aside)."""
    found = {}
    for path in sorted(folder.rglob("*")):
        relative = path.relative_to(folder)
        if not path.is_file() or any(part.startswith(".") for part in relative.parts):
            continue
        if path.suffix in (".datasource", ".pipe", ".proto", ".sql"):
            found[relative.as_posix()] = path.read_text(encoding="utf-8")
    return found


async def protoc(sources: Mapping[str, str], compile_files: Iterable[str]) -> bytes:
    """The descriptor set of `compile_files` (paths in `sources`, written to a temporary
    folder beside the platform's protos), imports and source info included."""
    with tempfile.TemporaryDirectory(prefix="pipit-protoc-") as tmp:
        root = Path(tmp)
        for path, text in sources.items():
            target = root / "src" / path
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text, encoding="utf-8")
        out = root / "descriptor_set.binpb"
        command = [
            sys.executable,
            "-m",
            "grpc_tools.protoc",
            f"-I{root / 'src'}",
            *(f"-I{path}" for path in include_paths()),
            f"--descriptor_set_out={out}",
            "--include_imports",
            "--include_source_info",
            *compile_files,
        ]
        process = await asyncio.create_subprocess_exec(
            *command, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
        )
        _, stderr = await process.communicate()
        if process.returncode != 0:
            raise BuildFailed(_protoc_problems(stderr.decode("utf-8", "replace"), root))
        return out.read_bytes()


def _protoc_problems(text: str, root: Path) -> list[ProjectError]:
    problems = []
    for line in text.splitlines():
        match = _PROTOC_PROBLEM.match(line.strip())
        if match:
            file = match["file"].replace(str(root / "src") + "/", "")
            problems.append(ProjectError(file, int(match["line"]), match["message"]))
        elif line.strip():
            problems.append(ProjectError("protoc", 0, line.strip()))
    return problems or [ProjectError("protoc", 0, "protoc failed")]


def _check_names(
    datasources: Iterable[DatasourceSpec], pipes: Iterable[PipeSpec]
) -> list[ProjectError]:
    problems, seen = [], {}
    for kind, item in [*(("datasource", d) for d in datasources), *(("pipe", p) for p in pipes)]:
        where = (item.file, item.line or 1)
        if not _NAME.match(item.name):
            problems.append(
                ProjectError(*where, f"{kind} name {item.name!r} must be an identifier")
            )
        elif item.name.startswith(_RESERVED_PREFIX) or item.name.endswith(QUARANTINE_SUFFIX):
            problems.append(
                ProjectError(
                    *where,
                    f"{kind} name {item.name!r} is reserved (names starting `{_RESERVED_PREFIX}` "
                    f"or ending `{QUARANTINE_SUFFIX}` are Pipit's)",
                )
            )
        elif kind == "pipe" and item.name in _RESERVED_PIPES:
            problems.append(
                ProjectError(
                    *where,
                    f"pipe name {item.name!r} is reserved: /v0/pipes/{item.name}.json is Pipit's",
                )
            )
        camel = protos.camel(item.name)
        if (kind, camel) in seen:
            problems.append(
                ProjectError(*where, f"{kind} {item.name!r} clashes with {seen[(kind, camel)]!r}")
            )
        seen[(kind, camel)] = item.name
    return problems


def _engine_problem(exc: WarehouseError, file: str, line: int) -> ProjectError:
    from services.query.sql_api import engine_message  # the same words the Query API gives

    return ProjectError(file, line, engine_message(exc)[0])


async def _create_tables(project: Project, scratch: Warehouse, where: dict[str, tuple]) -> None:
    from common.validation import RowValidator

    problems = []
    for ds in project.datasources.values():
        try:
            if not ds.materialized_by:  # a materialized pipe's target takes no appends
                RowValidator(ds)  # every column a type ingest can check
        except ValueError as exc:
            problems.append(ProjectError(*where.get(ds.name, (ds.name, 1)), str(exc)))
            continue
        try:
            for statement in ds.schema_sql(scratch.database):
                await scratch.execute(statement)
        except WarehouseError as exc:
            problems.append(_engine_problem(exc, *where.get(ds.name, (ds.name, 1))))
    if problems:
        raise BuildFailed(problems)


async def _describe(scratch: Warehouse, sql: str, values: Mapping[str, str]) -> list[tuple]:
    result = await scratch.query(f"DESCRIBE ({sql})", values)
    return [(str(row["name"]), str(row["type"])) for row in result.data]


def _placeholder_value(kind: str) -> str:
    """A value of the type for describing a query whose parameter has no default."""
    if kind.startswith("Array("):
        return "[]"
    for prefix, value in _PLACEHOLDER_VALUES.items():
        if kind.startswith(prefix):
            return value
    return "0"


async def build(files: Mapping[str, str], scratch: Warehouse, name: str = "project") -> Artifact:
    """Builds and validates a project; raises BuildFailed with every problem found.
    `scratch` is an open warehouse in an empty database the build may fill."""
    if project_form(files) == TINYBIRD:
        return await _build_tinybird(files, scratch, name)
    return await _build_native(files, scratch, name)


# --- Tinybird datafiles ------------------------------------------------------------------


async def _build_tinybird(files: Mapping[str, str], scratch: Warehouse, name: str) -> Artifact:
    from pipit.project.datafiles import read_datasource, read_pipe
    from pipit.project.template import Template, TemplateError

    datasources: list[DatasourceSpec] = []
    pipes: list[PipeSpec] = []
    problems: list[ProjectError] = []
    for path, text in sorted(files.items()):
        stem = Path(path).stem
        try:
            if path.endswith(".datasource"):
                datasources.append(read_datasource(text, file=path, name=stem))
            elif path.endswith(".pipe"):
                pipes.append(read_pipe(text, file=path, name=stem))
        except ProjectError as exc:
            problems.append(exc)
    problems += _check_names(datasources, pipes)
    targets, found = _materialized_targets(datasources, pipes)
    problems += found
    if problems:
        raise BuildFailed(problems)
    datasources = [
        replace(ds, materialized_by=targets[ds.name]) if ds.name in targets else ds
        for ds in datasources
    ]

    sources = {
        protos.DATASOURCES_FILE: protos.datasources_proto(datasources),
        protos.INGEST_FILE: protos.ingest_proto(datasources),
    }
    first = await protoc(sources, [protos.DATASOURCES_FILE, protos.INGEST_FILE])
    schema = Project(Artifact(name, first, {}))
    where = {ds.name: (ds.file, ds.line or 1) for ds in datasources}
    await _create_tables(schema, scratch, where)

    interfaces, sources_by_pipe, materializations = [], {}, {}
    columns = sorted({c.name for ds in schema.datasources.values() for c in ds.columns})
    for pipe in pipes:
        materialized = _materialized_node(pipe)
        if materialized is not None:
            try:
                materializations[pipe.name] = await _materialize_tinybird(
                    pipe, materialized, schema, columns, scratch
                )
            except ProjectError as exc:
                problems.append(exc)
            except BuildFailed as exc:
                problems += exc.problems
            continue
        endpoint = pipe.endpoint
        # A pipe without an endpoint serves nothing, but is checked all the same.
        nodes = pipe.nodes[: pipe.nodes.index(endpoint) + 1] if endpoint else pipe.nodes
        if not nodes:
            problems.append(ProjectError(pipe.file, pipe.line or 1, "the pipe has no NODE"))
            continue
        for node in nodes:
            if node.type and node.type != "endpoint":
                problems.append(
                    ProjectError(
                        node.file or pipe.file,
                        node.line,
                        f"node {node.name!r}: TYPE {node.type} is not supported; "
                        "endpoint and materialized pipes are",
                    )
                )
        try:
            templates = [
                (node.name, Template.parse(node.sql, file=node.file or pipe.file, line=node.line))
                for node in nodes
            ]
        except TemplateError as exc:
            problems.append(exc)
            continue
        parameters: dict[str, Any] = {}
        for node, (_, template) in zip(nodes, templates, strict=True):
            problems += template.check_columns(columns)
            for parameter in template.parameters:
                known = parameters.setdefault(parameter.name, parameter)
                if known.type != parameter.type:
                    problems.append(
                        ProjectError(
                            node.file or pipe.file,
                            parameter.line,
                            f"parameter {parameter.name!r} is {parameter.type} here and "
                            f"{known.type} before",
                        )
                    )
        try:
            described = await _describe_pipe(pipe, nodes[-1], templates, columns, scratch)
        except ProjectError as exc:
            problems.append(exc)
            continue
        if endpoint is None:
            continue
        interfaces.append(
            protos.PipeInterface(
                name=pipe.name,
                description=pipe.description or endpoint.description,
                parameters=tuple(
                    protos.PipeParameterSpec(
                        p.name,
                        p.type,
                        "" if p.default is None else _default_text(p.default),
                        p.required,
                        p.description,
                    )
                    for p in parameters.values()
                ),
                columns=tuple(described),
            )
        )
        sources_by_pipe[pipe.name] = PipeSource(
            name=pipe.name,
            form=TINYBIRD,
            description=pipe.description,
            nodes=tuple(NodeSource(n.name, n.sql, n.file or pipe.file, n.line) for n in nodes),
        )
    if problems:
        raise BuildFailed(problems)
    sources[protos.QUERY_FILE] = protos.query_proto(interfaces)
    descriptor_set = await protoc(
        sources, [protos.DATASOURCES_FILE, protos.INGEST_FILE, protos.QUERY_FILE, *PLATFORM_PROTOS]
    )
    return _checked(
        Artifact(name, descriptor_set, sources_by_pipe, dict(sources), materializations)
    )


def _default_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return ",".join(str(v) for v in value)
    return str(value)


async def _describe_pipe(
    pipe: PipeSpec,
    last: Any,
    templates: list,
    columns: list[str],
    scratch: Warehouse,
) -> list[tuple[str, str]]:
    """The columns of the pipe's answer, as the engine describes its SQL rendered for the
    templates' sample requests (every parameter given, then only the required ones)."""
    from pipit.project.template import RenderError
    from services.query.template_binder import bindable, compose

    samples: list[dict[str, Any]] = [{}, {}]
    for _, template in templates:
        for merged, sample in zip(samples, template.sample_requests(columns), strict=False):
            merged.update(sample)
    where = (last.file or pipe.file, last.line)
    problem: ProjectError | None = None
    for given in samples:
        try:
            rendered, values = [], {}
            for node_name, template in templates:
                result = template.render(given, columns=columns)
                rendered.append((node_name, result.sql))
                values.update(bindable(result))
        except RenderError:
            continue  # a sample that meets an error() branch proves nothing
        try:
            described = await _describe(scratch, compose(rendered), values)
        except WarehouseError as exc:
            problem = problem or _engine_problem(exc, *where)
            continue
        for column, _ in described:
            if not _NAME.match(column):
                raise ProjectError(
                    *where,
                    f"answer column {column!r} needs a name (`… AS name`) made of letters, "
                    "digits and underscores",
                )
        return described
    raise problem or ProjectError(*where, "no request the pipe accepts could be checked")


# --- Materialized pipes ----------------------------------------------------------------------


def _materialized_node(pipe: PipeSpec) -> NodeSpec | None:
    return next((node for node in pipe.nodes if node.type == "materialized"), None)


def _materialized_targets(
    datasources: Sequence[DatasourceSpec], pipes: Sequence[PipeSpec]
) -> tuple[dict[str, str], list[ProjectError]]:
    """The datasource each materialized pipe fills (target -> pipe). A pipe either answers
    an endpoint or materializes, once; a target is filled by one pipe, so a changed pipe
    rebuilds its target from the source alone."""
    names = {ds.name for ds in datasources}
    targets: dict[str, str] = {}
    problems = []
    for pipe in pipes:
        nodes = [n for n in pipe.nodes if n.type == "materialized"]
        for extra in nodes[1:]:
            problems.append(
                ProjectError(extra.file or pipe.file, extra.line, "a pipe materializes once")
            )
        if not nodes:
            continue
        node = nodes[0]
        where = (node.file or pipe.file, node.line)
        if pipe.endpoint is not None:
            problems.append(ProjectError(*where, "a pipe is an endpoint or materialized, not both"))
        elif node.datasource not in names:
            problems.append(
                ProjectError(*where, f"DATASOURCE {node.datasource!r} is not a datasource here")
            )
        elif node.datasource in targets:
            problems.append(
                ProjectError(
                    *where,
                    f"datasource {node.datasource!r} is already filled by pipe "
                    f"{targets[node.datasource]!r}",
                )
            )
        else:
            targets[node.datasource] = pipe.name
    return targets, problems


async def _materialize_tinybird(
    pipe: PipeSpec, node: NodeSpec, schema: Project, columns: list[str], scratch: Warehouse
) -> Materialization:
    """The nodes up to the materialized one, rendered once: a materialized view runs on
    every insert with no request behind it, so its SQL takes no parameters."""
    from pipit.project.template import Template
    from services.query.template_binder import bindable

    nodes = pipe.nodes[: pipe.nodes.index(node) + 1]
    rendered = []
    for each in nodes:
        file = each.file or pipe.file
        template = Template.parse(each.sql, file=file, line=each.line)
        problems = template.check_columns(columns)
        if problems:
            raise BuildFailed(problems)
        if template.parameters:
            raise ProjectError(
                file,
                template.parameters[0].line,
                f"node {each.name!r}: a materialized pipe takes no parameters "
                f"({template.parameters[0].name!r})",
            )
        result = template.render({}, columns=columns)
        if bindable(result):
            raise ProjectError(file, each.line, f"node {each.name!r} binds values at request time")
        rendered.append(NodeSource(each.name, result.sql, file, each.line))
    return await _materialization(pipe.name, node.datasource, tuple(rendered), schema, scratch)


async def _materialization(
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
        described = await _describe(scratch, sql, {})
    except WarehouseError as exc:
        raise _engine_problem(exc, *where) from exc
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
        raise _engine_problem(exc, *where) from exc
    sources = [str(row["name"]) for row in found.data]
    if len(sources) != 1 or sources[0] not in schema.datasources:
        raise ProjectError(
            *where, "a materialized pipe must read a datasource of the project first (FROM …)"
        )
    if sources[0] == target:
        raise ProjectError(*where, f"a materialized pipe cannot read its own target {target!r}")
    return Materialization(name, target, sources[0], nodes, tuple(described))


# --- Pipit's native form -------------------------------------------------------------------


async def _build_native(files: Mapping[str, str], scratch: Warehouse, name: str) -> Artifact:
    own = [path for path in files if path.endswith(".proto")]
    platform = [p for p in PLATFORM_PROTOS if p not in files]
    sources = {path: text for path, text in files.items() if path.endswith(".proto")}
    for path in platform:
        sources[path] = (PROTO_DIR / path).read_text()
    descriptor_set = await protoc(sources, [*own, *platform])
    skeleton = Project(Artifact(name, descriptor_set, {}))
    lines = _declaration_lines(descriptor_set)
    await _create_tables(skeleton, scratch, lines)
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
            described = dict(await _describe(scratch, sql, values))
        except WarehouseError as exc:
            problems.append(_engine_problem(exc, path, 1))
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
        if not _NAME.match(pipe) or path not in files:
            problems.append(ProjectError(*where, f"{ds.name} is materialized by {path}: missing"))
            continue
        if pipe in pipes or pipe in materializations:
            problems.append(ProjectError(*where, f"{path} answers an endpoint or fills a table"))
            continue
        try:
            materializations[pipe] = await _materialization(
                pipe, ds.name, (NodeSource(pipe, files[path], path, 1),), skeleton, scratch
            )
        except ProjectError as exc:
            problems.append(exc)
        except BuildFailed as exc:
            problems += exc.problems
    if problems:
        raise BuildFailed(problems)
    return _checked(Artifact(name, descriptor_set, pipes, {}, materializations))


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


def _checked(artifact: Artifact) -> Artifact:
    """The artifact, once it loads as the services will load it."""
    project = Project(artifact)
    from services.query.service import endpoints

    endpoints(project, 1024)
    return artifact
