"""The syntax every Tinybird datafile shares: keyword lines (`ENGINE "MergeTree"`, `NODE
name`) and blocks (`SCHEMA >`, `SQL >`), read a statement at a time with the line each starts on.

A block's text is either indented under its keyword, as Tinybird writes it, and then runs while
lines are indented or blank; or unindented, as the tutorials print it, and then runs until the
next line that starts with a keyword of that kind of file. A block may also start on the
keyword's own line (`DESCRIPTION > text`)."""

from __future__ import annotations

import re
import textwrap
from collections.abc import Callable
from dataclasses import dataclass, field

from pipit.project.model import (
    ProjectError,
)

MAX_DATAFILE_BYTES = 1 << 20
"""A datafile larger than this is refused unread: a project is code, not data."""

IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_KEYWORD_LINE = re.compile(r"([A-Z][A-Z0-9_]*)(?:\s+(.*?))?\s*$")
_BLOCK_VALUE = re.compile(r">(?:\s+(.*?))?\s*$")


@dataclass
class Lines:
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


def unquote(value: str) -> str:
    value = value.strip()
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
        return value[1:-1]
    return value


def statements(lines: Lines, handle: Callable[[str, str | None, bool, int], None]) -> None:
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
            lines.problem(number, f"expected a datafile keyword, found {excerpt(stripped)}")
            continue
        keyword, rest = match.group(1), match.group(2)
        block = _BLOCK_VALUE.fullmatch(rest) if rest is not None else None
        if rest is not None and rest.startswith(">") and block is not None:
            handle(keyword, block.group(1), True, number)
        else:
            handle(keyword, rest, False, number)


def excerpt(text: str, limit: int = 60) -> str:
    return repr(text if len(text) <= limit else text[: limit - 1] + "…")


def split_lines(text: str) -> list[str]:
    return text.replace("\r\n", "\n").replace("\r", "\n").split("\n")


def description_block(lines: Lines, value: str | None, is_block: bool, line: int) -> str:
    if is_block:
        body, _ = lines.block(value, line)
        return "\n".join(body).strip()
    return unquote(value or "")
