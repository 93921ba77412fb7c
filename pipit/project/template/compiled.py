"""A parsed template: its parameters, and `render` for one request."""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pipit.project.template.errors import RenderError, TemplateError
from pipit.project.template.expressions import Output, Render, Text
from pipit.project.template.parameters import Parameter
from pipit.project.template.parser import Parser
from pipit.project.template.values import SAMPLES, ValueType


@dataclass(frozen=True)
class Rendered:
    """A template rendered for one request."""

    sql: str
    """The SQL with a {placeholder:Type} for every value; never a value spliced in."""
    values: dict[str, str]
    """Placeholder -> the value as text ClickHouse parses for its type. Bind scalars as
    query parameters do (ClickHouse reads them in its escaped text format, so a backslash,
    tab or newline is escaped by the binder); an Array's text is already an array literal
    (`['a','b\\'c']`) and is bound as it is, unescaped."""
    types: dict[str, str] = field(default_factory=dict)
    """Placeholder -> its ClickHouse type, as in the SQL."""


class Template:
    """A parsed template: its parameters, and `render` for one request."""

    parameters: tuple[Parameter, ...]
    """Each name once, in order of first use."""

    def __init__(self) -> None:
        self.parameters = ()
        self.file = "<sql>"
        self._body: list[Any] = []
        self._types: dict[str, ValueType] = {}
        self._defaults: dict[str, object] = {}
        self._enums: dict[str, tuple[object, ...]] = {}
        self._placeholders: dict[tuple[str, str], str] = {}
        self._identifiers: list[tuple[str, int]] = []
        self._identifier_parameters: set[str] = set()

    @classmethod
    def parse(cls, text: str, *, file: str = "<sql>", line: int = 1) -> Template:
        """Parses `text`, whose first line is line `line` of `file`. Raises TemplateError."""
        template = cls()
        template.file = file
        parser = Parser(template, file, line)
        template._body = parser.parse(_drop_marker(text))
        parser.declarations.finish(parser.compares)
        return template

    def render(self, given: Mapping[str, object], *, columns: Collection[str]) -> Rendered:
        """The SQL and bound values for a request that sent `given` (values already of the
        Python type each parameter's type implies; an absent name is "not defined").
        `columns` are the identifiers column()/columns()/symbol() may produce. Raises
        RenderError for the caller."""
        missing = [p.name for p in self.parameters if p.required and given.get(p.name) is None]
        if missing:
            plural = "s" if len(missing) > 1 else ""
            raise RenderError(f"missing required parameter{plural}: {', '.join(missing)}")
        r = Render(self, given, columns)
        self._emit(self._body, r)
        return Rendered(sql="".join(r.parts), values=r.values, types=r.types)

    def check_columns(self, columns: Collection[str]) -> list[TemplateError]:
        """The identifiers the template itself writes (sql_and's columns, column() and
        columns() defaults and literals) that are not among `columns`: for a build to
        refuse before any request meets them."""
        known = frozenset(columns)
        return [
            TemplateError(self.file, line, f"{name!r} is not a column")
            for name, line in self._identifiers
            if name not in known
        ]

    def sample_requests(self, columns: Sequence[str]) -> list[dict[str, object]]:
        """Requests to render when checking the SQL at build time: every parameter given
        (its default, or a value of its type), and only the required ones."""
        everything: dict[str, object] = {}
        for p in self.parameters:
            if p.default is not None:
                everything[p.name] = p.default
            elif p.enum:
                everything[p.name] = p.enum[0]
            elif p.name in self._identifier_parameters and columns:
                everything[p.name] = columns[0]
            elif p.type.startswith("Array("):
                everything[p.name] = [SAMPLES[p.type.removeprefix("Array(")[:-1]]]
            else:
                everything[p.name] = SAMPLES[p.type]
        required = {p.name: everything[p.name] for p in self.parameters if p.required}
        return [everything, required]

    def _emit(self, body: list[Any], r: Render) -> None:
        for node in body:
            if isinstance(node, Text):
                r.parts.append(node.text)
            elif isinstance(node, Output):
                r.parts.append(node.expr.sql(r))
            else:
                for condition, branch in node.branches:
                    if condition.value(r):
                        self._emit(branch, r)
                        break
                else:
                    if node.otherwise is not None:
                        self._emit(node.otherwise, r)


def _drop_marker(text: str) -> str:
    """Tinybird's leading `%` line (or `% ` before the SQL) becomes a space, so that line
    numbers stay where they are."""
    match = re.match(r"\s*%(?=\s|$)", text)
    if match is None:
        return text
    return text[: match.end() - 1] + " " + text[match.end() :]
