"""A `*.datasource` datafile read into a DatasourceSpec: its schema (columns, types, JSON paths,
defaults, codecs), engine and its keys, indexes and description."""

from __future__ import annotations

import re

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
    ColumnSpec,
    DatasourceSpec,
    ProjectError,
)

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


def read_datasource(text: str, *, file: str, name: str) -> DatasourceSpec:
    """A `.datasource` file's declaration. Raises the first ProjectError found."""
    spec, problems = parse_datasource(text, file=file, name=name)
    if problems:
        raise problems[0]
    return spec


def parse_datasource(
    text: str, *, file: str, name: str
) -> tuple[DatasourceSpec, list[ProjectError]]:
    lines = Lines(file, split_lines(text), _DATASOURCE_WORDS, _DATASOURCE_PREFIXES)
    if not IDENTIFIER.fullmatch(name):
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
            fields["description"] = description_block(lines, value, is_block, line)
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
            raw = unquote(value or "")
            match = re.fullmatch(r"([A-Za-z]+)\s*(?:\((.*)\))?", raw, re.DOTALL)
            if match is None or match.group(1) not in _ENGINE_ARGUMENTS:
                known = ", ".join(_ENGINE_ARGUMENTS)
                lines.problem(line, f"ENGINE {excerpt(raw)} is not supported (one of {known})")
                return
            engine = match.group(1)
            engine_inline_args = (match.group(2) or "").strip()
        elif keyword in _ENGINE_KEYS:
            text_value = unquote(value or "")
            if not text_value:
                lines.problem(line, f"{keyword} needs a value")
            fields[_ENGINE_KEYS[keyword]] = text_value
        elif keyword in _ENGINE_ARGUMENT_KEYS:
            text_value = unquote(value or "")
            if not text_value:
                lines.problem(line, f"{keyword} needs a value")
            arguments[keyword] = (text_value, line)
        else:
            lines.problem(line, f"{keyword} is not supported in a .datasource file")

    statements(lines, handle)

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


def _schema(lines: Lines, body: list[str], start: int) -> list[ColumnSpec]:
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


def _column(lines: Lines, piece: str, line: int) -> ColumnSpec | None:
    match = _COLUMN_NAME.match(piece)
    if match is None:
        lines.problem(line, f"expected `name` Type, found {excerpt(piece.strip())}")
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
        lines.problem(line, f"column {name!r}: unbalanced parentheses in type {excerpt(type_text)}")
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
                f"column {name!r}: unexpected {excerpt(rest.strip())} after the type"
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


def _indexes(lines: Lines, body: list[str], start: int) -> list[str]:
    indexes: list[str] = []
    for offset, text in enumerate(body):
        if not text.strip():
            continue
        match = _INDEX.match(text.strip())
        if match is None:
            lines.problem(
                start + offset,
                "expected `name expression TYPE type GRANULARITY n`,"
                f" found {excerpt(text.strip())}",
            )
            continue
        indexes.append(
            f"{match['name']} {match['expr'].strip()} TYPE {match['type'].strip()} "
            f"GRANULARITY {match['granularity']}"
        )
    return indexes
