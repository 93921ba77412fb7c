"""The generic binder between a query RPC and its SQL file: request fields become SQL
parameters (validated by the `pipit.clickhouse.v1.parameter` option each field carries)
and result columns fill the response's row fields, both by name. An endpoint is a
proto RPC plus a SQL file; nothing here knows any endpoint by name."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cached_property, lru_cache
from typing import Any

import orjson
from google.protobuf import message_factory
from google.protobuf.descriptor import Descriptor, FieldDescriptor, MethodDescriptor
from google.protobuf.message import Message

from common.range_views import RangeView
from common.timeparse import parse_datetime
from common.warehouse.base import Literal, QueryResult, quoted_string
from pipit.clickhouse.v1 import options_pb2
from services.query.whole_ranges import WholeRanges

_UINT32_MAX = 2**32 - 1
# Tinybird's pipe JSON field for the rows a LIMIT cut, when a response message has it.
_BEFORE_LIMIT = "rows_before_limit_at_least"


class InvalidParameter(ValueError):
    """A request parameter is missing or malformed; the message names it."""


class ResultMismatch(RuntimeError):
    """The SQL's answer does not fit the response message (a bug in the endpoint)."""


@dataclass(frozen=True)
class Parameter:
    """One request field bound to the SQL placeholder of the same name."""

    name: str
    field: FieldDescriptor
    option: options_pb2.Parameter
    max_length: int

    def bind(self, request: Message) -> str | Literal:
        """The value to bind, as text; ClickHouse parses it as `option.type`. A repeated
        field (an `Array(String)` parameter) binds as an array literal."""
        if self.field.is_repeated:
            return self._array(list(getattr(request, self.name)))
        if self.field.has_presence:
            present = request.HasField(self.name)
        else:
            present = getattr(request, self.name) != self.field.default_value
        if not present:
            if self.option.required:
                raise InvalidParameter(f"parameter '{self.name}' is required")
            return self.option.default_value
        value = getattr(request, self.name)
        if self.option.type == "DateTime":
            return self._datetime(value)
        if isinstance(value, bool):  # ClickHouse's Bool text, not Python's
            return "true" if value else "false"
        if isinstance(value, int):
            return self._integer(value)
        return self._string(str(value))

    def _datetime(self, value: str) -> str:
        # Only ASCII is stripped or completed: parse_datetime refuses any other text, which
        # Python's parsers would read with Unicode digits and spaces.
        text = value.strip() if value.isascii() else value
        if len(text) == 10:  # A bare date means its first second.
            text += " 00:00:00"
        try:
            return _engine_datetime(text)
        except ValueError as exc:
            raise InvalidParameter(
                f"parameter '{self.name}': {value!r} is not a date-time "
                f"(use YYYY-MM-DD HH:MM:SS in UTC): {exc}"
            ) from None

    def _integer(self, value: int) -> str:
        opt = self.option
        if (opt.HasField("min") and value < opt.min) or (opt.HasField("max") and value > opt.max):
            low = opt.min if opt.HasField("min") else "-∞"
            high = opt.max if opt.HasField("max") else "∞"
            raise InvalidParameter(
                f"parameter '{self.name}' must be between {low} and {high}, got {value}"
            )
        return str(value)

    def _array(self, items: list[str]) -> Literal:
        opt = self.option
        if len(items) == 1:
            # Tinybird's form, `steps=a,b`; `steps=a&steps=b` (each value one item) works too.
            items = items[0].split(",")
        if not items and opt.required:
            raise InvalidParameter(f"parameter '{self.name}' is required")
        if (opt.HasField("min") and len(items) < opt.min) or (
            opt.HasField("max") and len(items) > opt.max
        ):
            low = opt.min if opt.HasField("min") else 0
            high = opt.max if opt.HasField("max") else "∞"
            raise InvalidParameter(
                f"parameter '{self.name}' takes {low} to {high} values, got {len(items)}"
            )
        # Only Array(String) is declared by a native pipe; its items are checked as strings.
        return Literal("[" + ",".join(quoted_string(self._string(item)) for item in items) + "]")

    def _string(self, value: str) -> str:
        if len(value) > self.max_length:
            raise InvalidParameter(
                f"parameter '{self.name}' is longer than {self.max_length} characters"
            )
        allowed = self._allowed
        if allowed and value not in allowed:
            listed = ", ".join(self.option.allowed_values)
            raise InvalidParameter(
                f"parameter '{self.name}' must be one of {listed}; got {value!r}"
            )
        return value

    @cached_property
    def _allowed(self) -> frozenset[str]:
        # Read once: copying the option's list out of its message on every call was a
        # tenth of the query service's own Python per request.
        return frozenset(self.option.allowed_values)


# A dashboard sends the same few ranges again and again; parsing and printing them was a
# twentieth of the query service's Python per request. Only answers are kept (a refused
# text raises each time), each a short text.
_seconds = lru_cache(maxsize=4096, typed=True)(parse_datetime)


@lru_cache(maxsize=4096)
def _engine_datetime(text: str) -> str:
    """`text` (a date-time parse_datetime reads) as the engine's `YYYY-MM-DD HH:MM:SS`."""
    return datetime.fromtimestamp(_seconds(text), UTC).strftime("%Y-%m-%d %H:%M:%S")


def _row_field(response: Descriptor) -> FieldDescriptor:
    return response.fields_by_name["data"]


@dataclass(frozen=True)
class Endpoint:
    """A query RPC, its SQL and how its messages map to the SQL."""

    name: str
    method: MethodDescriptor
    sql: str
    parameters: tuple[Parameter, ...]
    request_class: type[Message]
    response_class: type[Message]
    # Its calls of range views, sent to their siblings for whole ranges.
    ranges: WholeRanges | None = None

    @classmethod
    def from_method(
        cls,
        method: MethodDescriptor,
        sql: str,
        max_string_length: int,
        range_views: Iterable[RangeView] = (),
    ) -> Endpoint:
        """The endpoint of a native query RPC whose SQL (with `{name:Type}` placeholders
        for its request fields) is `sql`, over a project whose range views are
        `range_views`."""
        name = endpoint_name(method)
        parameters = []
        for f in method.input_type.fields:
            opts = f.GetOptions()
            if not opts.HasExtension(options_pb2.parameter):
                continue
            option = opts.Extensions[options_pb2.parameter]
            parameters.append(Parameter(f.name, f, option, option.max_length or max_string_length))
        return cls(
            name=name,
            method=method,
            sql=sql,
            parameters=tuple(parameters),
            request_class=message_factory.GetMessageClass(method.input_type),
            response_class=message_factory.GetMessageClass(method.output_type),
            ranges=WholeRanges.of(sql, range_views),
        )

    def prepare(
        self, request: Message, *, inline: bool = False, numbered: bool = True
    ) -> tuple[str, dict[str, str | Literal]]:
        """The SQL to run for the request and the values of its placeholders (`sql_for`)."""
        values = self.bind(request)
        return self.sql_for(values, inline=inline, numbered=numbered), values

    def sql_for(
        self, values: Mapping[str, Any], *, inline: bool = False, numbered: bool = True
    ) -> str:
        """The SQL to run for bound `values`: range views of whole ranges answered by
        their siblings; with `inline`, the views' SELECTs in place of their calls, over
        `numbered` ids or a server's (services/query/whole_ranges.py)."""
        if self.ranges is None:
            return self.sql
        return self.ranges.sql_for(values, inline=inline, numbered=numbered)

    def bind(self, request: Message) -> dict[str, str | Literal]:
        """SQL parameters from the request. Raises InvalidParameter naming the field."""
        values = {p.name: p.bind(request) for p in self.parameters}
        for p in self.parameters:
            other = p.option.not_before
            if other and _seconds(values[p.name]) < _seconds(values[other]):
                raise InvalidParameter(
                    f"parameter '{p.name}' ({values[p.name]}) is before '{other}' ({values[other]})"
                )
        return values

    def response(self, result: QueryResult) -> Message:
        return self._responder.response(result)

    @cached_property
    def _responder(self) -> Responder:
        return Responder(self.name, self.method, self.response_class)


def endpoint_name(method: MethodDescriptor) -> str:
    """The pipe a query RPC answers (its `endpoint` option), or "" for none."""
    return method.GetOptions().Extensions[options_pb2.endpoint]


@dataclass(frozen=True)
class Responder:
    """Fills a pipe's response message from the SQL's answer, columns matched to the row
    message's fields by name."""

    name: str
    method: MethodDescriptor
    response_class: type[Message]

    def response(self, result: QueryResult) -> Message:
        row_field = _row_field(self.method.output_type)
        row_fields = row_field.message_type.fields
        response = self.response_class()
        for column in result.meta:
            response.meta.add(name=column["name"], type=column["type"])
        rows = getattr(response, row_field.name)
        if self._row_names == {column["name"] for column in result.meta}:
            # Columns and fields match by name and, nearly always, by type: the message
            # takes each row whole, checked in C. A value that does not fit as it is
            # (a number for a string, an overflow) sends the rows the careful way below.
            add = rows.add
            try:
                for record in result.data:
                    add(**record)
            except (TypeError, ValueError):
                del rows[:]
            else:
                return self._finish(response, result)
        for record in result.data:
            row = rows.add()
            for f in row_fields:
                if f.name not in record:
                    raise ResultMismatch(f"{self.name} returns no column '{f.name}'")
                value = record[f.name]
                if value is None:  # NULL of a Nullable column: the field stays unset
                    continue
                if f.is_repeated:
                    getattr(row, f.name).extend(_convert(f, item, self.name) for item in value)
                else:
                    setattr(row, f.name, _convert(f, value, self.name))
        return self._finish(response, result)

    @cached_property
    def _row_names(self) -> frozenset[str]:
        return frozenset(f.name for f in _row_field(self.method.output_type).message_type.fields)

    @staticmethod
    def _finish(response: Message, result: QueryResult) -> Message:
        response.rows = len(result.data)
        before_limit = result.rows_before_limit_at_least
        # A project's own (native) response messages may not carry the field.
        if before_limit is not None and _BEFORE_LIMIT in response.DESCRIPTOR.fields_by_name:
            setattr(response, _BEFORE_LIMIT, float(before_limit))
        stats = result.statistics
        response.statistics.elapsed = float(stats.get("elapsed", 0.0))
        response.statistics.rows_read = float(stats.get("rows_read", 0))
        response.statistics.bytes_read = float(stats.get("bytes_read", 0))
        return response


def _convert(field: FieldDescriptor, value: Any, endpoint: str) -> Any:
    kind = field.type
    if kind == FieldDescriptor.TYPE_STRING:
        if isinstance(value, dict | list):  # a Map, Tuple or JSON column: its JSON text
            return orjson.dumps(value).decode()
        return value if isinstance(value, str) else str(value)
    if kind in (FieldDescriptor.TYPE_DOUBLE, FieldDescriptor.TYPE_FLOAT):
        return float(value)
    if kind == FieldDescriptor.TYPE_UINT32:
        number = int(value)
        if not 0 <= number <= _UINT32_MAX:
            raise ResultMismatch(f"{endpoint}: column '{field.name}' value {number} overflows")
        return number
    if kind == FieldDescriptor.TYPE_BOOL:
        return bool(value)
    return int(value)
