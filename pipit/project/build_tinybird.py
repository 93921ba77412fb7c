"""Building a project of Tinybird datafiles (`*.datasource`, `*.pipe`): read
(datafiles.py), a message per datasource and the services generated (protos.py), the tables
created in the scratch database, every endpoint pipe rendered with its defaults and described
by the engine for its answer's columns, which become the row message; materialized pipes
rendered once (they take no parameters) and checked against their targets."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from common.datasources import QUARANTINE_SUFFIX
from common.warehouse.base import Warehouse, WarehouseError
from pipit.project import protos
from pipit.project.artifact import (
    TINYBIRD,
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
from pipit.project.model import BuildFailed, DatasourceSpec, NodeSpec, PipeSpec, ProjectError
from pipit.project.protoc import PLATFORM_PROTOS, protoc
from pipit.project.runtime import Project

_RESERVED_PREFIX = "_pipit"

# Pipe names whose `/v0/pipes/<name>.json` the platform serves (the pipes' OpenAPI document).
_RESERVED_PIPES = frozenset({"openapi"})


async def build_tinybird(files: Mapping[str, str], scratch: Warehouse, name: str) -> Artifact:
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
    await create_tables(schema, scratch, where)

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
    return Artifact(name, descriptor_set, sources_by_pipe, dict(sources), materializations)


def _check_names(
    datasources: Iterable[DatasourceSpec], pipes: Iterable[PipeSpec]
) -> list[ProjectError]:
    problems, seen = [], {}
    for kind, item in [*(("datasource", d) for d in datasources), *(("pipe", p) for p in pipes)]:
        where = (item.file, item.line or 1)
        if not NAME.match(item.name):
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
            described = await describe(scratch, compose(rendered), values)
        except WarehouseError as exc:
            problem = problem or engine_problem(exc, *where)
            continue
        for column, _ in described:
            if not NAME.match(column):
                raise ProjectError(
                    *where,
                    f"answer column {column!r} needs a name (`… AS name`) made of letters, "
                    "digits and underscores",
                )
        return described
    raise problem or ProjectError(*where, "no request the pipe accepts could be checked")


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
    return await check_materialization(pipe.name, node.datasource, tuple(rendered), schema, scratch)
