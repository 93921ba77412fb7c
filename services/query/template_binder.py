"""The binder of a pipe written in Tinybird's template language: the request's fields (one
per template parameter, generated with the pipe) become the values the templates render
with, every node is rendered, and the nodes before the last become its CTEs, so a later
node reads an earlier one by name as in Tinybird. Values only ever reach the engine as
bound `{name:Type}` parameters (pipit/project/template/)."""

from __future__ import annotations

import re
from collections.abc import Collection
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cached_property
from typing import Any

from google.protobuf import message_factory
from google.protobuf.descriptor import FieldDescriptor, MethodDescriptor
from google.protobuf.message import Message

from common.timeparse import parse_datetime
from common.warehouse.base import Literal, QueryResult
from pipit.project.artifact import PipeSource
from pipit.project.template import Parameter, Rendered, RenderError, Template
from services.query.binder import InvalidParameter, Responder, endpoint_name

_WITH = re.compile(r"^\s*WITH\b", re.IGNORECASE)
_INTEGER_RANGES = {
    f"{prefix}Int{bits}": (
        (0, 2**bits - 1) if prefix else (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1)
    )
    for prefix in ("", "U")
    for bits in (8, 16, 32, 64, 128, 256)
}


def bindable(rendered: Rendered) -> dict[str, Any]:
    """The rendered values as the warehouse binds them: an Array's text is a literal."""
    return {
        name: Literal(value) if rendered.types.get(name, "").startswith("Array(") else value
        for name, value in rendered.values.items()
    }


def compose(nodes: list[tuple[str, str]]) -> str:
    """One statement from rendered nodes (name, SQL): the last node's query with the
    earlier ones as its CTEs."""
    *earlier, (_, last) = nodes
    if not earlier:
        return last
    ctes = ", ".join(f"`{name}` AS ({sql})" for name, sql in earlier)
    if match := _WITH.match(last):
        return f"WITH {ctes}, {last[match.end() :]}"
    return f"WITH {ctes} {last}"


@dataclass(frozen=True)
class TemplateEndpoint:
    """A pipe in Tinybird's template language, behind its generated RPC."""

    name: str
    method: MethodDescriptor
    nodes: tuple[tuple[str, Template], ...]
    columns: frozenset[str]
    max_string_length: int

    @classmethod
    def from_method(
        cls,
        method: MethodDescriptor,
        pipe: PipeSource,
        columns: Collection[str],
        max_string_length: int,
    ) -> TemplateEndpoint:
        nodes = tuple(
            (node.name, Template.parse(node.sql, file=node.file, line=node.line))
            for node in pipe.nodes
        )
        return cls(endpoint_name(method), method, nodes, frozenset(columns), max_string_length)

    @cached_property
    def parameters(self) -> dict[str, Parameter]:
        found: dict[str, Parameter] = {}
        for _, template in self.nodes:
            for parameter in template.parameters:
                found.setdefault(parameter.name, parameter)
        return found

    @cached_property
    def request_class(self) -> type[Message]:
        return message_factory.GetMessageClass(self.method.input_type)

    @cached_property
    def response_class(self) -> type[Message]:
        return message_factory.GetMessageClass(self.method.output_type)

    def prepare(
        self, request: Message, *, inline: bool = False, numbered: bool = True
    ) -> tuple[str, dict[str, str]]:
        """The SQL to run for the request and the values of its placeholders. Raises
        InvalidParameter, naming the parameter, for a value the pipe refuses. (`inline` and
        `numbered` are a native pipe's: a template's SQL is rendered, no range view's call
        in it is known.)"""
        given: dict[str, Any] = {}
        fields = self.method.input_type.fields_by_name
        for name, parameter in self.parameters.items():
            field = fields.get(name)
            if field is None:
                continue
            if field.is_repeated:
                items = list(getattr(request, name))
                if items:
                    given[name] = [self._value(parameter, field, item) for item in items]
            elif request.HasField(name):
                given[name] = self._value(parameter, field, getattr(request, name))
        rendered: list[tuple[str, str]] = []
        values: dict[str, str] = {}
        for node, template in self.nodes:
            try:
                result = template.render(given, columns=self.columns)
            except RenderError as exc:
                raise InvalidParameter(str(exc)) from None
            rendered.append((node, result.sql))
            values.update(bindable(result))
        return compose(rendered), values

    def _value(self, parameter: Parameter, field: FieldDescriptor, value: Any) -> Any:
        kind = parameter.type
        element = kind[len("Array(") : -1] if kind.startswith("Array(") else kind
        if element in _INTEGER_RANGES:
            number = int(value)  # big integers travel as strings
            low, high = _INTEGER_RANGES[element]
            if not low <= number <= high:
                raise InvalidParameter(
                    f"parameter '{parameter.name}' must be between {low} and {high}, got {number}"
                )
            return number
        if field.type == FieldDescriptor.TYPE_STRING:
            if len(value) > self.max_string_length:
                raise InvalidParameter(
                    f"parameter '{parameter.name}' is longer than {self.max_string_length} "
                    "characters"
                )
            if element.startswith("DateTime") or element == "Date":
                return self._time(parameter, element, value)
        return value

    @staticmethod
    def _time(parameter: Parameter, kind: str, value: str) -> str:
        """The value as ClickHouse reads its type, whatever form the caller sent (a bare
        date is its first second; RFC 3339 is accepted)."""
        # Only ASCII is stripped or completed: parse_datetime refuses any other text.
        text = value.strip() if value.isascii() else value
        try:
            seconds = parse_datetime(text + " 00:00:00" if len(text) == 10 else text)
        except ValueError as exc:
            shape = "YYYY-MM-DD" if kind == "Date" else "YYYY-MM-DD HH:MM:SS"
            raise InvalidParameter(
                f"parameter '{parameter.name}': {value!r} is not a {kind} (use {shape}): {exc}"
            ) from None
        moment = datetime.fromtimestamp(seconds, UTC)
        return moment.strftime("%Y-%m-%d" if kind == "Date" else "%Y-%m-%d %H:%M:%S")

    def response(self, result: QueryResult) -> Message:
        return Responder(self.name, self.method, self.response_class).response(result)
