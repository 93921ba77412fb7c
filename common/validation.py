"""Turns an incoming event (a JSON object from the Events API, or a typed proto
message) into a warehouse row, or into the reason it must go to quarantine.

Rows are dicts of column name to a value ClickHouse's JSONEachRow reads unambiguously:
DateTime as epoch seconds, so no time zone is ever guessed."""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import orjson
from google.protobuf import json_format
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message

from common.datasources import Column, Datasource

DATETIME_MIN = 0
DATETIME_MAX = 4_294_967_295  # ClickHouse DateTime is a UInt32 of seconds: up to 2106-02-07.

_INT_RANGES = {
    "UInt8": (0, 2**8 - 1),
    "UInt16": (0, 2**16 - 1),
    "UInt32": (0, 2**32 - 1),
    "UInt64": (0, 2**64 - 1),
    "Int8": (-(2**7), 2**7 - 1),
    "Int16": (-(2**15), 2**15 - 1),
    "Int32": (-(2**31), 2**31 - 1),
    "Int64": (-(2**63), 2**63 - 1),
}


class InvalidValue(ValueError):
    """A field's value cannot be stored in its column; the message names the field."""


def parse_datetime(value: Any) -> int:
    """Epoch seconds from `YYYY-MM-DD HH:MM:SS` (UTC), RFC 3339, or epoch seconds."""
    if isinstance(value, bool):
        raise ValueError("a boolean is not a date-time")
    if isinstance(value, int | float):
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError("not a finite number")
        seconds = int(value)
    elif isinstance(value, str):
        text = value.strip()
        if text.isdigit():
            seconds = int(text)
        else:
            try:
                parsed = datetime.fromisoformat(text)
            except ValueError:
                raise ValueError(
                    f"{value!r} is not a date-time (use YYYY-MM-DD HH:MM:SS in UTC, "
                    "RFC 3339, or epoch seconds)"
                ) from None
            if parsed.tzinfo is None:
                parsed = parsed.replace(tzinfo=UTC)
            seconds = math.floor(parsed.timestamp())
    else:
        raise ValueError(f"expected a date-time string or epoch seconds, got {_json_type(value)}")
    if not DATETIME_MIN <= seconds <= DATETIME_MAX:
        raise ValueError(f"{value!r} is outside DateTime's range (1970-01-01 .. 2106-02-07)")
    return seconds


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"


def _string(column: Column, max_bytes: int) -> Callable[[Any], str]:
    def limited(text: str) -> str:
        # Characters take 1-4 bytes in UTF-8; encode only when the count could be over.
        if len(text) * 4 > max_bytes and len(text.encode("utf-8", "surrogatepass")) > max_bytes:
            raise ValueError(f"longer than the {max_bytes}-byte limit for a field")
        return text

    def convert(value: Any) -> str:
        if isinstance(value, str):
            return limited(value)
        if column.json_text and isinstance(value, dict | list):
            try:
                text = orjson.dumps(value).decode()
            except TypeError as exc:  # orjson refuses nesting deeper than it can print
                raise ValueError(f"cannot store this JSON value: {exc}") from None
            return limited(text)
        expected = "a string or a JSON object" if column.json_text else "a string"
        raise ValueError(f"expected {expected}, got {_json_type(value)}")

    return convert


def _integer(type_name: str) -> Callable[[Any], int]:
    low, high = _INT_RANGES[type_name]

    def convert(value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError(f"expected an integer, got {_json_type(value)}")
        if isinstance(value, float):
            if not value.is_integer():
                raise ValueError(f"expected an integer, got {value!r}")
            value = int(value)
        if not low <= value <= high:
            raise ValueError(f"{value} is out of range for {type_name} ({low}..{high})")
        return value

    return convert


def _float(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"expected a number, got {_json_type(value)}")
    if not math.isfinite(value):
        raise ValueError(f"{value!r} is not a finite number")
    return float(value)


DEFAULT_MAX_STRING_BYTES = 64 * 1024


def converter(
    column: Column, max_string_bytes: int = DEFAULT_MAX_STRING_BYTES
) -> Callable[[Any], Any]:
    """The function that checks and normalises one column's JSON value."""
    if column.type == "String":
        return _string(column, max_string_bytes)
    if column.type == "DateTime":
        return parse_datetime
    if column.type in _INT_RANGES:
        return _integer(column.type)
    if column.type in ("Float32", "Float64"):
        return _float
    raise ValueError(f"column {column.name}: unsupported ClickHouse type {column.type}")


class RowValidator:
    """Validates events of one datasource; built once per datasource."""

    def __init__(
        self, datasource: Datasource, max_string_bytes: int = DEFAULT_MAX_STRING_BYTES
    ) -> None:
        self.datasource = datasource
        self._converters = [(c.name, converter(c, max_string_bytes)) for c in datasource.columns]
        self._timestamp_fields = {
            c.name
            for c in datasource.columns
            if c.field.type == FieldDescriptor.TYPE_MESSAGE
            and c.field.message_type.full_name == "google.protobuf.Timestamp"
        }

    def from_json(self, obj: Any) -> dict[str, Any]:
        """A row from a decoded JSON value. Unknown extra fields are ignored, as
        Tinybird does. Raises InvalidValue naming the first offending field."""
        if not isinstance(obj, dict):
            raise InvalidValue(f"expected a JSON object, got {_json_type(obj)}")
        row: dict[str, Any] = {}
        for name, convert in self._converters:
            if name not in obj or obj[name] is None:
                raise InvalidValue(f"missing required field '{name}'")
            try:
                row[name] = convert(obj[name])
            except ValueError as exc:
                raise InvalidValue(f"field '{name}': {exc}") from None
        return row

    def from_message(self, event: Message) -> dict[str, Any]:
        """A row from a typed event. proto3 cannot tell an empty string from an absent
        one, so only message fields (the timestamp) can be missing."""
        row: dict[str, Any] = {}
        for name, convert in self._converters:
            if name in self._timestamp_fields:
                if not event.HasField(name):
                    raise InvalidValue(f"missing required field '{name}'")
                value: Any = getattr(event, name).seconds
            else:
                value = getattr(event, name)
            try:
                row[name] = convert(value)
            except ValueError as exc:
                raise InvalidValue(f"field '{name}': {exc}") from None
        return row

    @staticmethod
    def message_text(event: Message) -> str:
        """The typed event as JSON text, for the quarantine table's `raw` column."""
        return json_format.MessageToJson(event, preserving_proto_field_name=True, indent=None)
