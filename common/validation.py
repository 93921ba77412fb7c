"""Turns an incoming event (a JSON object from the Events API, or a typed proto
message) into a warehouse row, or into the reason it must go to quarantine.

Rows are dicts of column name to a value ClickHouse's JSON formats read unambiguously:
DateTime as epoch seconds, so no time zone is ever guessed.

A batch is validated a column at a time (`RowValidator.columns_from_json`,
`columns_from_messages`): each column's values are checked with a few C-level passes
(their types, their range, their length) instead of a Python call per value. A batch
in which any check fails is validated again row by row, which names the first offending
field of each bad row; so the fast path never changes an answer, it only skips work."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from operator import attrgetter, itemgetter, methodcaller
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


_DATETIME_FORMS = "use YYYY-MM-DD HH:MM:SS in UTC, RFC 3339, or epoch seconds"


def parse_datetime(value: Any) -> int:
    """Epoch seconds from `YYYY-MM-DD HH:MM:SS` (UTC), RFC 3339, or epoch seconds.

    Text must be ASCII: Python's int(), str.isdigit() and strip() take any Unicode digit
    or space ("１６８６" would be 1686 seconds), and every form above is ASCII."""
    if isinstance(value, bool):
        raise ValueError("a boolean is not a date-time")
    if isinstance(value, int | float):
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError("not a finite number")
        seconds = int(value)
    elif isinstance(value, str):
        if not value.isascii():
            raise ValueError(
                f"{value!r} is not a date-time: only ASCII digits are read ({_DATETIME_FORMS})"
            )
        text = value.strip()
        if text.isdigit():
            seconds = int(text)
        else:
            try:
                parsed = datetime.fromisoformat(text)
            except ValueError:
                raise ValueError(f"{value!r} is not a date-time ({_DATETIME_FORMS})") from None
            if parsed.tzinfo is None:
                parsed = parsed.replace(tzinfo=UTC)
            seconds = math.floor(parsed.timestamp())
    else:
        raise ValueError(f"expected a date-time string or epoch seconds, got {_json_type(value)}")
    if not DATETIME_MIN <= seconds <= DATETIME_MAX:
        raise ValueError(f"{value!r} is outside DateTime's range (1970-01-01 .. 2106-02-07)")
    return seconds


# The tutorials' `YYYY-MM-DD HH:MM:SS` is by far the commonest form: it is split into a
# date and a time of day, each looked up in a cache filled by parse_datetime itself, so
# its answers are parse_datetime's. Anything else (or anything odd) takes the full parse.
_DAYS: dict[str, int] = {}
_TIMES_OF_DAY: dict[str, int] = {}
_CACHE_LIMIT = 100_000


def _time_of_day(text: str) -> int | None:
    if len(text) == 8 and text[2] == ":" and text[5] == ":" and text.isascii():
        hours, minutes, seconds = text[0:2], text[3:5], text[6:8]
        if hours.isdigit() and minutes.isdigit() and seconds.isdigit():
            h, m, s = int(hours), int(minutes), int(seconds)
            if h < 24 and m < 60 and s < 60:
                return h * 3600 + m * 60 + s
    return None


def _parse_fast(value: Any) -> int:
    if type(value) is str and len(value) == 19 and value[10] == " ":
        day = _DAYS.get(value[:10])
        if day is None:
            try:
                day = parse_datetime(value[:10] + " 00:00:00")
            except ValueError:
                return parse_datetime(value)  # for its message
            if len(_DAYS) > _CACHE_LIMIT:
                _DAYS.clear()
            _DAYS[value[:10]] = day
        tod = _TIMES_OF_DAY.get(value[11:])
        if tod is None:
            tod = _time_of_day(value[11:])
            if tod is None:
                return parse_datetime(value)
            if len(_TIMES_OF_DAY) > _CACHE_LIMIT:
                _TIMES_OF_DAY.clear()
            _TIMES_OF_DAY[value[11:]] = tod
        seconds = day + tod
        if seconds <= DATETIME_MAX:
            return seconds
    return parse_datetime(value)


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

Columns = list[list[Any]]
"""A batch as one list of values per column, in column order."""


class _Rejected(Exception):
    """A column's fast check failed: validate the batch row by row instead."""


def _fast_column(column: Column, max_string_bytes: int) -> Callable[[list[Any]], list[Any]]:
    """Checks (and normalises) a whole column of values as `converter` would each one,
    or raises _Rejected when any value needs a closer look."""
    convert = converter(column, max_string_bytes)

    def check_lengths(values: list[Any]) -> None:
        # Characters take 1-4 bytes in UTF-8: only strings that could be over are encoded.
        if values and max(map(len, values)) * 4 > max_string_bytes:
            for value in values:
                if len(value) * 4 > max_string_bytes and (
                    len(value.encode("utf-8", "surrogatepass")) > max_string_bytes
                ):
                    raise _Rejected

    if column.type == "String":

        def strings(values: list[Any]) -> list[Any]:
            kinds = set(map(type, values))
            if not kinds <= {str}:
                if not (column.json_text and kinds <= {str, dict, list}):
                    raise _Rejected
                try:
                    values = [v if type(v) is str else convert(v) for v in values]
                except ValueError:
                    raise _Rejected from None
            check_lengths(values)
            return values

        return strings
    if column.type == "DateTime":

        def datetimes(values: list[Any]) -> list[Any]:
            if set(map(type, values)) <= {int}:
                if values and (min(values) < DATETIME_MIN or max(values) > DATETIME_MAX):
                    raise _Rejected
                return values
            try:
                return list(map(_parse_fast, values))
            except ValueError:
                raise _Rejected from None

        return datetimes
    if column.type in _INT_RANGES:
        low, high = _INT_RANGES[column.type]

        def integers(values: list[Any]) -> list[Any]:
            if not set(map(type, values)) <= {int}:
                raise _Rejected
            if values and (min(values) < low or max(values) > high):
                raise _Rejected
            return values

        return integers

    def floats(values: list[Any]) -> list[Any]:
        kinds = set(map(type, values))
        if not kinds <= {float, int}:
            raise _Rejected
        try:
            if not all(map(math.isfinite, values)):
                raise _Rejected
        except OverflowError:  # an integer too large for a float
            raise _Rejected from None
        return values if kinds <= {float} else list(map(float, values))

    return floats


def _transpose(rows: list[list[Any]], width: int) -> Columns:
    if not rows:
        return [[] for _ in range(width)]
    return [list(column) for column in zip(*rows, strict=True)]


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
        self._fast = [_fast_column(c, max_string_bytes) for c in datasource.columns]
        self._json_getters = [itemgetter(c.name) for c in datasource.columns]
        self._message_getters: list[Callable[[Sequence[Message]], list[Any]]] = []
        for c in datasource.columns:
            if c.name in self._timestamp_fields:
                self._message_getters.append(self._timestamp_getter(c.name))
            else:
                self._message_getters.append(
                    lambda events, get=attrgetter(c.name): list(map(get, events))
                )

    @staticmethod
    def _timestamp_getter(name: str) -> Callable[[Sequence[Message]], list[Any]]:
        has = methodcaller("HasField", name)
        seconds = attrgetter(f"{name}.seconds")

        def get(events: Sequence[Message]) -> list[Any]:
            if not all(map(has, events)):
                raise _Rejected
            return list(map(seconds, events))

        return get

    def columns_from_json(self, values: Sequence[Any]) -> tuple[Columns, list[tuple[int, str]]]:
        """The valid events of a batch of decoded JSON values as columns, and (index,
        reason) for each invalid one. Same answers as `from_json` on each value."""
        try:
            if not all(type(v) is dict for v in values):
                raise _Rejected
            columns = []
            for get, check in zip(self._json_getters, self._fast, strict=True):
                try:
                    column = list(map(get, values))
                except KeyError:
                    raise _Rejected from None
                columns.append(check(column))
            return columns, []
        except _Rejected:
            return self._row_by_row(values, self.from_json)

    def columns_from_messages(
        self, events: Sequence[Message]
    ) -> tuple[Columns, list[tuple[int, str]]]:
        """As `columns_from_json`, for typed events (`from_message` on each)."""
        # A repeated field makes a new Python object for an element each time it is
        # iterated; listed once, the columns below reuse them (three times faster).
        events = list(events)
        try:
            return [
                check(get(events))
                for get, check in zip(self._message_getters, self._fast, strict=True)
            ], []
        except _Rejected:
            return self._row_by_row(events, self.from_message)

    def _row_by_row(
        self, items: Sequence[Any], validate: Callable[[Any], dict[str, Any]]
    ) -> tuple[Columns, list[tuple[int, str]]]:
        rows: list[list[Any]] = []
        bad: list[tuple[int, str]] = []
        for index, item in enumerate(items):
            try:
                rows.append(list(validate(item).values()))
            except InvalidValue as exc:
                bad.append((index, str(exc)))
        return _transpose(rows, len(self._converters)), bad

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
