"""A `*.pipe` datafile read into a PipeSpec: its nodes, each with its SQL and type (endpoint,
materialized, copy, sink) and what that type takes."""

from __future__ import annotations

from dataclasses import dataclass, field

from pipit.project.datafile_syntax import (
    IDENTIFIER,
    Lines,
    description_block,
    excerpt,
    split_lines,
    statements,
    unquote,
)
from pipit.project.model import (
    NodeSpec,
    PipeSpec,
    ProjectError,
)

_PIPE_WORDS = frozenset(
    {
        "DESCRIPTION",
        "NODE",
        "SQL",
        "TYPE",
        "DATASOURCE",
        "TARGET_DATASOURCE",
        "TOKEN",
        "TAGS",
        "INCLUDE",
        "VERSION",
        "CACHE",
        "COPY_SCHEDULE",
        "COPY_MODE",
        "FORWARD_QUERY",
        "DEPLOYMENT_METHOD",
    }
)
_PIPE_PREFIXES = ("ENGINE", "EXPORT_")

_NODE_TYPES = ("endpoint", "materialized", "copy", "sink")


def read_pipe(text: str, *, file: str, name: str) -> PipeSpec:
    """A `.pipe` file's declaration. Raises the first ProjectError found."""
    spec, problems = parse_pipe(text, file=file, name=name)
    if problems:
        raise problems[0]
    return spec


@dataclass
class _NodeDraft:
    name: str
    line: int
    description: str = ""
    sql: str = ""
    sql_line: int = 0
    type: str = ""
    type_line: int = 0
    datasource: str = ""
    datasource_line: int = 0
    seen: dict[str, int] = field(default_factory=dict)


def parse_pipe(text: str, *, file: str, name: str) -> tuple[PipeSpec, list[ProjectError]]:
    lines = Lines(file, split_lines(text), _PIPE_WORDS, _PIPE_PREFIXES)
    if not IDENTIFIER.fullmatch(name):
        lines.problem(1, f"pipe name {name!r} is not an identifier (letters, digits, _)")
    description = ""
    description_line = 0
    nodes: list[_NodeDraft] = []

    def handle(keyword: str, value: str | None, is_block: bool, line: int) -> None:
        nonlocal description, description_line
        node = nodes[-1] if nodes else None
        if keyword == "NODE":
            node_name = (value or "").strip()
            if is_block or not IDENTIFIER.fullmatch(node_name):
                lines.problem(
                    line, f"NODE needs a name (letters, digits, _), found {excerpt(node_name)}"
                )
                node_name = node_name or f"node_{len(nodes) + 1}"
            for other in nodes:
                if other.name == node_name:
                    lines.problem(
                        line, f"node {node_name!r} declared twice (first at line {other.line})"
                    )
            nodes.append(_NodeDraft(node_name, line))
            return
        if keyword == "TOKEN":
            if is_block or not value:
                lines.problem(line, "TOKEN takes a token name and a scope, e.g. TOKEN app READ")
            return  # accepted so a Tinybird project builds; Pipit's tokens are its own
        if keyword == "DESCRIPTION":
            if node is None:
                if description_line:
                    lines.problem(
                        line, f"DESCRIPTION given twice (first at line {description_line})"
                    )
                description_line = line
                description = description_block(lines, value, is_block, line)
            else:
                if "DESCRIPTION" in node.seen:
                    lines.problem(line, f"DESCRIPTION given twice in node {node.name!r}")
                node.seen["DESCRIPTION"] = line
                node.description = description_block(lines, value, is_block, line)
            return
        if node is None:
            lines.problem(line, f"{keyword} must follow a NODE line")
            if is_block:
                lines.block(value, line)
            return
        if keyword in node.seen:
            lines.problem(
                line,
                f"{keyword} given twice in node {node.name!r} (first at line {node.seen[keyword]})",
            )
            if is_block:
                lines.block(value, line)
            return
        node.seen[keyword] = line
        if keyword == "SQL":
            if not is_block:
                lines.problem(line, "SQL is a block: write `SQL >` and the query below")
                return
            body, start = lines.block(value, line)
            node.sql, node.sql_line = _node_sql(body, start)
            if not node.sql.strip():
                lines.problem(line, f"node {node.name!r} has no SQL")
        elif is_block:
            lines.problem(line, f"{keyword} is not a block keyword")
            lines.block(value, line)
        elif keyword == "TYPE":
            kind = unquote(value or "").lower()
            if kind not in _NODE_TYPES:
                lines.problem(
                    line, f"TYPE {excerpt(value or '')} is not one of {', '.join(_NODE_TYPES)}"
                )
            node.type, node.type_line = kind, line
        elif keyword in ("DATASOURCE", "TARGET_DATASOURCE"):
            target = unquote(value or "")
            if "DATASOURCE" in node.seen and "TARGET_DATASOURCE" in node.seen:
                lines.problem(line, "DATASOURCE and TARGET_DATASOURCE are the same thing: give one")
            if not IDENTIFIER.fullmatch(target):
                lines.problem(line, f"{keyword} needs a datasource name, found {excerpt(target)}")
            node.datasource, node.datasource_line = target, line
        else:
            lines.problem(line, f"{keyword} is not supported in a .pipe file")

    statements(lines, handle)

    if not nodes:
        lines.problem(1, "a pipe needs at least one NODE with SQL")
    endpoints = [n for n in nodes if n.type == "endpoint"]
    for extra in endpoints[1:]:
        lines.problem(
            extra.type_line,
            f"only one node can be TYPE endpoint (the first is {endpoints[0].name!r})",
        )
    for node in nodes:
        if "SQL" not in node.seen:
            lines.problem(node.line, f"node {node.name!r} has no SQL block")
        if node.type in ("materialized", "copy") and not node.datasource:
            lines.problem(node.type_line, f"a {node.type} node needs DATASOURCE <name>")
        if node.datasource and node.type not in ("materialized", "copy"):
            lines.problem(
                node.datasource_line, "DATASOURCE applies to TYPE materialized or copy nodes only"
            )

    spec = PipeSpec(
        name=name,
        nodes=tuple(
            NodeSpec(
                name=n.name,
                sql=n.sql,
                description=n.description,
                type=n.type,
                datasource=n.datasource,
                file=file,
                line=n.sql_line or n.line,
            )
            for n in nodes
        ),
        description=description,
        file=file,
        line=1,
    )
    return spec, sorted(lines.problems, key=lambda p: p.line)


def _node_sql(body: list[str], start: int) -> tuple[str, int]:
    """The SQL without Tinybird's leading `%` template marker, and its first line."""
    if body and body[0].strip() == "%":
        body = body[1:]
        start += 1
        while body and not body[0].strip():
            body = body[1:]
            start += 1
    elif body and body[0].lstrip().startswith("%") and not body[0].lstrip().startswith("%}"):
        first = body[0].lstrip()[1:]
        body = [first.lstrip(), *body[1:]]
    return "\n".join(body), start
