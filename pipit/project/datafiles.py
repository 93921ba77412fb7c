"""Tinybird's datafiles: `*.datasource` and `*.pipe` read into the project model.

A datafile is a sequence of keyword lines (`ENGINE "MergeTree"`, `NODE name`, `TYPE
endpoint`) and blocks (`SCHEMA >`, `SQL >`, `DESCRIPTION >`, `INDEXES >`). A block's text
is either indented under its keyword, as Tinybird writes it, and then runs while lines are
indented or blank; or unindented, as the tutorials print it, and then runs until the next
line that starts with a datafile keyword. A block may also start on the keyword's own line
(`DESCRIPTION > text`).

Every problem is a ProjectError naming the file and line. `read_datasource` and
`read_pipe` raise the first one; `read_folder` collects all of them, from every file, in
`ProjectSpec.problems`. Only `read_folder` touches the file system."""

from __future__ import annotations

import re
import textwrap
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from pipit.project.model import (
    ColumnSpec,
    DatasourceSpec,
    NodeSpec,
    PipeSpec,
    ProjectError,
    ProjectSpec,
)

MAX_DATAFILE_BYTES = 1 << 20
"""A datafile larger than this is refused unread: a project is code, not data."""

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_KEYWORD_LINE = re.compile(r"([A-Z][A-Z0-9_]*)(?:\s+(.*?))?\s*$")
_BLOCK_VALUE = re.compile(r">(?:\s+(.*?))?\s*$")

# Words that start a new statement when a block is written unindented. Tinybird keywords
# Pipit does not support are here too, so that an unindented block stops before them and
# they are reported by name rather than read as SQL or as a column.
_DATASOURCE_WORDS = frozenset(
    {
        "DESCRIPTION",
        "SCHEMA",
        "INDEXES",
        "TOKEN",
        "TAGS",
        "VERSION",
        "SHARED_WITH",
        "FORWARD_QUERY",
        "BACKFILL",
        "PROJECTIONS",
    }
)
_DATASOURCE_PREFIXES = ("ENGINE", "KAFKA_", "IMPORT_", "S3_", "GCS_")
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

# ENGINE_VER, ENGINE_SIGN, ... go into the engine's parentheses in the order each engine
# takes them.
_ENGINE_ARGUMENTS: dict[str, tuple[str, ...]] = {
    "MergeTree": (),
    "ReplacingMergeTree": ("ENGINE_VER", "ENGINE_IS_DELETED"),
    "SummingMergeTree": ("ENGINE_SUMMING_COLUMNS",),
    "AggregatingMergeTree": (),
    "CollapsingMergeTree": ("ENGINE_SIGN",),
    "VersionedCollapsingMergeTree": ("ENGINE_SIGN", "ENGINE_VER"),
}
_ENGINE_ARGUMENT_KEYS = frozenset(k for keys in _ENGINE_ARGUMENTS.values() for k in keys)
_ENGINE_KEYS = {
    "ENGINE_PARTITION_KEY": "partition_key",
    "ENGINE_SORTING_KEY": "sorting_key",
    "ENGINE_PRIMARY_KEY": "primary_key",
    "ENGINE_TTL": "ttl",
    "ENGINE_SETTINGS": "settings",
}
_INDEX = re.compile(
    r"(?:INDEX\s+)?(?P<name>[A-Za-z_][A-Za-z0-9_]*)\s+(?P<expr>.+?)\s+TYPE\s+(?P<type>.+?)"
    r"\s+GRANULARITY\s+(?P<granularity>[0-9]+)\s*,?\s*$",
    re.DOTALL | re.IGNORECASE,
)


@dataclass
class _Lines:
    """A datafile's lines and a cursor over them; problems found so far."""

    file: str
    lines: list[str]
    words: frozenset[str]
    prefixes: tuple[str, ...]
    problems: list[ProjectError] = field(default_factory=list)
    index: int = 0

    def problem(self, line: int, message: str) -> None:
        self.problems.append(ProjectError(self.file, line, message))

    def starts_statement(self, text: str) -> bool:
        word = text.split(maxsplit=1)[0] if text.strip() else ""
        return text[:1].strip() != "" and (word in self.words or word.startswith(self.prefixes))

    def block(self, first: str | None, line: int) -> tuple[list[str], int]:
        """The block after a `KEYWORD >` on `line` (1-based); `first` is any text on that
        line after the `>`. Returns the block's lines (trailing blank lines dropped) and
        the line number of its first line. Leaves the cursor after the block."""
        body: list[str] = [first] if first else []
        start = line if first else 0
        i = self.index
        lines = self.lines
        # Indented or not: decided by the block's first non-blank line below the keyword.
        j = i
        while j < len(lines) and not lines[j].strip():
            j += 1
        indented = j < len(lines) and lines[j][:1] in (" ", "\t")
        while i < len(lines):
            text = lines[i]
            if text.strip():
                if indented and text[:1] not in (" ", "\t"):
                    break
                if not indented and self.starts_statement(text):
                    break
            if not body and not text.strip():
                i += 1  # blank lines before the block's first line are not part of it
                continue
            if not body:
                start = i + 1
            body.append(text)
            i += 1
        self.index = i
        while body and not body[-1].strip():
            body.pop()
        if indented:
            below = body[1:] if first else body
            dedented = textwrap.dedent("\n".join(below)).split("\n") if below else []
            body = [first, *dedented] if first else dedented
        return body, start


def _unquote(value: str) -> str:
    value = value.strip()
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
        return value[1:-1]
    return value


def _statements(lines: _Lines, handle: Callable[[str, str | None, bool, int], None]) -> None:
    """Calls `handle(keyword, value, is_block, line)` for each statement of the file,
    where value is the rest of the line (for a block: the text after `>`, if any)."""
    while lines.index < len(lines.lines):
        number = lines.index + 1
        text = lines.lines[lines.index]
        lines.index += 1
        stripped = text.strip()
        if not stripped or stripped.startswith("#"):
            continue
        match = _KEYWORD_LINE.fullmatch(stripped)
        if match is None:
            lines.problem(number, f"expected a datafile keyword, found {_excerpt(stripped)}")
            continue
        keyword, rest = match.group(1), match.group(2)
        block = _BLOCK_VALUE.fullmatch(rest) if rest is not None else None
        if rest is not None and rest.startswith(">") and block is not None:
            handle(keyword, block.group(1), True, number)
        else:
            handle(keyword, rest, False, number)


def _excerpt(text: str, limit: int = 60) -> str:
    return repr(text if len(text) <= limit else text[: limit - 1] + "…")


# ---------------------------------------------------------------------------- datasources


def read_datasource(text: str, *, file: str, name: str) -> DatasourceSpec:
    """A `.datasource` file's declaration. Raises the first ProjectError found."""
    spec, problems = _datasource(text, file=file, name=name)
    if problems:
        raise problems[0]
    return spec


def _datasource(text: str, *, file: str, name: str) -> tuple[DatasourceSpec, list[ProjectError]]:
    lines = _Lines(file, _split_lines(text), _DATASOURCE_WORDS, _DATASOURCE_PREFIXES)
    if not _IDENTIFIER.fullmatch(name):
        lines.problem(1, f"datasource name {name!r} is not an identifier (letters, digits, _)")
    fields: dict[str, str] = {}
    seen: dict[str, int] = {}
    columns: list[ColumnSpec] = []
    indexes: list[str] = []
    engine = "MergeTree"
    engine_inline_args = ""
    engine_line = 0
    arguments: dict[str, tuple[str, int]] = {}

    def handle(keyword: str, value: str | None, is_block: bool, line: int) -> None:
        nonlocal engine, engine_inline_args, engine_line
        if keyword in seen and keyword != "TOKEN":
            lines.problem(line, f"{keyword} given twice (first at line {seen[keyword]})")
            if is_block:
                lines.block(value, line)
            return
        seen[keyword] = line
        if keyword == "DESCRIPTION":
            fields["description"] = _description(lines, value, is_block, line)
        elif keyword == "SCHEMA":
            if not is_block:
                lines.problem(line, "SCHEMA is a block: write `SCHEMA >` and the columns below")
                return
            body, start = lines.block(value, line)
            columns.extend(_schema(lines, body, start))
        elif keyword == "INDEXES":
            if not is_block:
                lines.problem(line, "INDEXES is a block: write `INDEXES >` and the indexes below")
                return
            body, start = lines.block(value, line)
            indexes.extend(_indexes(lines, body, start))
        elif keyword == "TOKEN":
            if is_block or not value:
                lines.problem(line, "TOKEN takes a token name and a scope, e.g. TOKEN app READ")
            # Tokens are Pipit's own (pipit token); a datafile's TOKEN lines are accepted
            # so that a Tinybird project builds unchanged, and grant nothing.
        elif is_block:
            lines.problem(line, f"{keyword} is not a block keyword")
            lines.block(value, line)
        elif keyword == "ENGINE":
            engine_line = line
            raw = _unquote(value or "")
            match = re.fullmatch(r"([A-Za-z]+)\s*(?:\((.*)\))?", raw, re.DOTALL)
            if match is None or match.group(1) not in _ENGINE_ARGUMENTS:
                known = ", ".join(_ENGINE_ARGUMENTS)
                lines.problem(line, f"ENGINE {_excerpt(raw)} is not supported (one of {known})")
                return
            engine = match.group(1)
            engine_inline_args = (match.group(2) or "").strip()
        elif keyword in _ENGINE_KEYS:
            text_value = _unquote(value or "")
            if not text_value:
                lines.problem(line, f"{keyword} needs a value")
            fields[_ENGINE_KEYS[keyword]] = text_value
        elif keyword in _ENGINE_ARGUMENT_KEYS:
            text_value = _unquote(value or "")
            if not text_value:
                lines.problem(line, f"{keyword} needs a value")
            arguments[keyword] = (text_value, line)
        else:
            lines.problem(line, f"{keyword} is not supported in a .datasource file")

    _statements(lines, handle)

    takes = _ENGINE_ARGUMENTS[engine]
    for keyword, (_, line) in arguments.items():
        if keyword not in takes:
            lines.problem(line, f"{keyword} does not apply to ENGINE {engine}")
    given = [arguments[k][0] for k in takes if k in arguments]
    if given and engine_inline_args:
        lines.problem(engine_line, f"ENGINE {engine} has arguments both inline and as ENGINE_*")
    if engine == "CollapsingMergeTree" and not (given or engine_inline_args):
        lines.problem(engine_line, "ENGINE CollapsingMergeTree needs ENGINE_SIGN")
    if engine == "VersionedCollapsingMergeTree" and len(given) < 2 and not engine_inline_args:
        lines.problem(
            engine_line, "ENGINE VersionedCollapsingMergeTree needs ENGINE_SIGN and ENGINE_VER"
        )
    if "ENGINE_IS_DELETED" in arguments and "ENGINE_VER" not in arguments:
        lines.problem(arguments["ENGINE_IS_DELETED"][1], "ENGINE_IS_DELETED needs ENGINE_VER")
    if "SCHEMA" not in seen:
        lines.problem(1, "a datasource needs a SCHEMA")
    elif not columns and not any(p.line >= seen["SCHEMA"] for p in lines.problems):
        lines.problem(seen["SCHEMA"], "SCHEMA declares no columns")

    spec = DatasourceSpec(
        name=name,
        columns=tuple(columns),
        description=fields.get("description", ""),
        engine=engine,
        engine_arguments=engine_inline_args or ", ".join(given),
        partition_key=fields.get("partition_key", ""),
        sorting_key=fields.get("sorting_key", ""),
        primary_key=fields.get("primary_key", ""),
        ttl=fields.get("ttl", ""),
        settings=fields.get("settings", ""),
        indexes=tuple(indexes),
        file=file,
        line=1,
    )
    return spec, sorted(lines.problems, key=lambda p: p.line)


def _description(lines: _Lines, value: str | None, is_block: bool, line: int) -> str:
    if is_block:
        body, _ = lines.block(value, line)
        return "\n".join(body).strip()
    return _unquote(value or "")


def _split_top_level(text: str, start_line: int) -> list[tuple[str, int]]:
    """`text` cut at the commas outside parentheses, quotes and backquotes, each piece
    with the line its first non-blank character is on."""
    pieces: list[tuple[str, int]] = []
    depth = 0
    quote = ""
    current: list[str] = []
    line = start_line
    piece_line = 0
    i = 0
    while i < len(text):
        char = text[i]
        if char == "\n":
            line += 1
        elif not piece_line and not char.isspace():
            piece_line = line
        if quote:
            current.append(char)
            if char == "\\" and i + 1 < len(text):
                current.append(text[i + 1])
                if text[i + 1] == "\n":
                    line += 1
                i += 2
                continue
            if char == quote:
                quote = ""
        elif char in "'\"`":
            quote = char
            current.append(char)
        elif char in "([":
            depth += 1
            current.append(char)
        elif char in ")]":
            depth -= 1
            current.append(char)
        elif char == "," and depth == 0:
            pieces.append(("".join(current), piece_line))
            current, piece_line = [], 0
        else:
            current.append(char)
        i += 1
    pieces.append(("".join(current), piece_line))
    return pieces


_COLUMN_NAME = re.compile(r"\s*(?:`((?:[^`\\]|\\.)+)`|([A-Za-z_][A-Za-z0-9_.]*))\s+", re.DOTALL)
_JSON_PATH = re.compile(r"`json:([^`]*)`")


def _schema(lines: _Lines, body: list[str], start: int) -> list[ColumnSpec]:
    columns: list[ColumnSpec] = []
    names: dict[str, int] = {}
    pieces = _split_top_level("\n".join(body), start)
    for index, (piece, line) in enumerate(pieces):
        if not piece.strip():
            if index < len(pieces) - 1:
                lines.problem(line or start, "empty column (two commas in a row?)")
            continue  # a trailing comma after the last column
        column = _column(lines, piece, line)
        if column is None:
            continue
        if column.name in names:
            lines.problem(
                line, f"column {column.name!r} declared twice (first at line {names[column.name]})"
            )
            continue
        names[column.name] = line
        columns.append(column)
    return columns


def _column(lines: _Lines, piece: str, line: int) -> ColumnSpec | None:
    match = _COLUMN_NAME.match(piece)
    if match is None:
        lines.problem(line, f"expected `name` Type, found {_excerpt(piece.strip())}")
        return None
    name = match.group(1) if match.group(1) is not None else match.group(2)
    if match.group(1) is not None:
        name = re.sub(r"\\(.)", r"\1", name)
    rest = piece[match.end() :]
    type_text, rest, balanced = _take_type(rest)
    if not type_text:
        lines.problem(line, f"column {name!r} has no type")
        return None
    if not balanced:
        lines.problem(
            line, f"column {name!r}: unbalanced parentheses in type {_excerpt(type_text)}"
        )
        return None
    json_path = ""
    default = ""
    codec = ""
    while rest.strip():
        rest = rest.lstrip()
        path = _JSON_PATH.match(rest)
        if path is not None:
            if json_path:
                lines.problem(line, f"column {name!r} has two json paths")
            json_path = path.group(1).strip()
            if not json_path.startswith("$"):
                lines.problem(line, f"column {name!r}: json path {json_path!r} must start with $")
            rest = rest[path.end() :]
            continue
        word = re.match(r"(DEFAULT|CODEC)\b", rest, re.IGNORECASE)
        if word is None:
            lines.problem(
                line,
                f"column {name!r}: unexpected {_excerpt(rest.strip())} after the type"
                " (a missing comma?)",
            )
            return None
        expression, rest = _take_expression(rest[word.end() :])
        if not expression:
            lines.problem(line, f"column {name!r}: {word.group(1).upper()} needs an expression")
            return None
        if word.group(1).upper() == "DEFAULT":
            default = expression
        elif expression.startswith("(") and _balanced_end(expression, 0) == len(expression):
            codec = expression[1:-1].strip()
        else:
            lines.problem(line, f"column {name!r}: CODEC takes its codecs in parentheses")
            return None
    return ColumnSpec(
        name=name,
        type=type_text,
        json_path=json_path or f"$.{name}",
        default=default,
        codec=codec,
        line=line,
    )


def _take_type(text: str) -> tuple[str, str, bool]:
    """The leading ClickHouse type of `text` (a word and any balanced parentheses after
    it), what follows it, and whether its parentheses close."""
    match = re.match(r"\s*[A-Za-z_][A-Za-z0-9_]*", text)
    if match is None:
        return "", text, True
    end = match.end()
    probe = end
    while probe < len(text) and text[probe] in " \t":
        probe += 1
    if probe < len(text) and text[probe] == "(":
        end = _balanced_end(text, probe)
        if end < 0:
            return text.strip(), "", False
    return text[:end].strip(), text[end:], True


def _balanced_end(text: str, open_at: int) -> int:
    """Index after the parenthesis closing the one at `open_at`; -1 if none does."""
    depth = 0
    quote = ""
    i = open_at
    while i < len(text):
        char = text[i]
        if quote:
            if char == "\\":
                i += 1
            elif char == quote:
                quote = ""
        elif char in "'\"`":
            quote = char
        elif char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
            if depth == 0:
                return i + 1
        i += 1
    return -1


def _take_expression(text: str) -> tuple[str, str]:
    """An expression up to the next json path or DEFAULT/CODEC at the top level."""
    depth = 0
    quote = ""
    i = 0
    while i < len(text):
        char = text[i]
        if quote:
            if char == "\\":
                i += 1
            elif char == quote:
                quote = ""
        elif char == "`" and text.startswith("`json:", i) and depth == 0:
            break
        elif char in "'\"`":
            quote = char
        elif char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        elif depth == 0 and (i == 0 or text[i - 1].isspace()):
            if re.match(r"(DEFAULT|CODEC)\b", text[i:], re.IGNORECASE) and i > 0:
                break
        i += 1
    return text[:i].strip(), text[i:]


def _indexes(lines: _Lines, body: list[str], start: int) -> list[str]:
    indexes: list[str] = []
    for offset, text in enumerate(body):
        if not text.strip():
            continue
        match = _INDEX.match(text.strip())
        if match is None:
            lines.problem(
                start + offset,
                "expected `name expression TYPE type GRANULARITY n`,"
                f" found {_excerpt(text.strip())}",
            )
            continue
        indexes.append(
            f"{match['name']} {match['expr'].strip()} TYPE {match['type'].strip()} "
            f"GRANULARITY {match['granularity']}"
        )
    return indexes


# ---------------------------------------------------------------------------------- pipes


def read_pipe(text: str, *, file: str, name: str) -> PipeSpec:
    """A `.pipe` file's declaration. Raises the first ProjectError found."""
    spec, problems = _pipe(text, file=file, name=name)
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


def _pipe(text: str, *, file: str, name: str) -> tuple[PipeSpec, list[ProjectError]]:
    lines = _Lines(file, _split_lines(text), _PIPE_WORDS, _PIPE_PREFIXES)
    if not _IDENTIFIER.fullmatch(name):
        lines.problem(1, f"pipe name {name!r} is not an identifier (letters, digits, _)")
    description = ""
    description_line = 0
    nodes: list[_NodeDraft] = []

    def handle(keyword: str, value: str | None, is_block: bool, line: int) -> None:
        nonlocal description, description_line
        node = nodes[-1] if nodes else None
        if keyword == "NODE":
            node_name = (value or "").strip()
            if is_block or not _IDENTIFIER.fullmatch(node_name):
                lines.problem(
                    line, f"NODE needs a name (letters, digits, _), found {_excerpt(node_name)}"
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
                description = _description(lines, value, is_block, line)
            else:
                if "DESCRIPTION" in node.seen:
                    lines.problem(line, f"DESCRIPTION given twice in node {node.name!r}")
                node.seen["DESCRIPTION"] = line
                node.description = _description(lines, value, is_block, line)
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
            kind = _unquote(value or "").lower()
            if kind not in _NODE_TYPES:
                lines.problem(
                    line, f"TYPE {_excerpt(value or '')} is not one of {', '.join(_NODE_TYPES)}"
                )
            node.type, node.type_line = kind, line
        elif keyword in ("DATASOURCE", "TARGET_DATASOURCE"):
            target = _unquote(value or "")
            if "DATASOURCE" in node.seen and "TARGET_DATASOURCE" in node.seen:
                lines.problem(line, "DATASOURCE and TARGET_DATASOURCE are the same thing: give one")
            if not _IDENTIFIER.fullmatch(target):
                lines.problem(line, f"{keyword} needs a datasource name, found {_excerpt(target)}")
            node.datasource, node.datasource_line = target, line
        else:
            lines.problem(line, f"{keyword} is not supported in a .pipe file")

    _statements(lines, handle)

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


# ------------------------------------------------------------------------------- projects


def read_folder(path: Path) -> ProjectSpec:
    """Every `*.datasource` and `*.pipe` below `path`, in path order. Files are named
    as `path / relative` (so as the caller spelled the folder); a resource's name is its
    file's stem. Problems from every file are collected, not raised."""
    problems: list[ProjectError] = []
    if not path.is_dir():
        return ProjectSpec(problems=(ProjectError(str(path), 0, "not a folder"),))
    files = sorted(
        (p for p in path.rglob("*") if p.suffix in (".datasource", ".pipe") and p.is_file()),
        key=lambda p: p.relative_to(path).as_posix(),
    )
    datasources: list[DatasourceSpec] = []
    pipes: list[PipeSpec] = []
    names: dict[str, str] = {}
    for file_path in files:
        file = (path / file_path.relative_to(path)).as_posix()
        name = file_path.stem
        try:
            if file_path.stat().st_size > MAX_DATAFILE_BYTES:
                problems.append(ProjectError(file, 0, f"larger than {MAX_DATAFILE_BYTES} bytes"))
                continue
            text = file_path.read_bytes().decode("utf-8")
        except UnicodeDecodeError as exc:
            line = file_path.read_bytes()[: exc.start].count(b"\n") + 1
            problems.append(ProjectError(file, line, "not UTF-8 text"))
            continue
        except OSError as exc:
            problems.append(ProjectError(file, 0, f"cannot be read: {exc.strerror}"))
            continue
        if name in names:
            problems.append(ProjectError(file, 1, f"{name!r} is already declared by {names[name]}"))
            continue
        names[name] = file
        if file_path.suffix == ".datasource":
            datasource, found = _datasource(text, file=file, name=name)
            datasources.append(datasource)
        else:
            pipe, found = _pipe(text, file=file, name=name)
            pipes.append(pipe)
        problems.extend(found)
    return ProjectSpec(datasources=tuple(datasources), pipes=tuple(pipes), problems=tuple(problems))


def _split_lines(text: str) -> list[str]:
    return text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
