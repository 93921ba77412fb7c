"""Turns an incoming event (a JSON object from the Events API, or a typed proto
message) into a warehouse row, or into the reason it must go to quarantine.

Rows are dicts of column name to a value ClickHouse's JSON formats read unambiguously
(what each column type accepts and stores: common/column_values.py). A field is found by
its column's `json_path` (keys walked from the event's root) or else by its name; a
missing key anywhere on the way is a missing field. A missing field, or a null, is NULL in
a Nullable column; in a column with a DEFAULT expression a missing field (or a null, when
the column is not Nullable) is OMITTED, which the block encoder leaves out of the row so
that the table computes the default; anywhere else it is an error.

Typed events carry each column in the field `common.column_types.event_field` gives it:
the same values, with 128/256-bit integers, decimals, dates, DateTime64, UUIDs, IPs and
enums as text, Map/Tuple/JSON values as JSON text, DateTime as a Timestamp, Nullable
columns as `optional` fields and Array(T) as a repeated field. proto3 cannot tell an unset
field from a zero, so only message and `optional` fields can be unset, and so can a text
field whose column no empty text is a value of (anything but String, FixedString and an
Enum with an empty name).

A batch is validated a column at a time (`RowValidator.columns_from_json`,
`columns_from_messages`): each column's values are checked with a few C-level passes
(their types, their range, their length) instead of a Python call per value. A batch
in which any check fails is validated again row by row, which names the first offending
field of each bad row; so the fast path never changes an answer, it only skips work."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from operator import attrgetter, itemgetter, methodcaller
from typing import Any

from google.protobuf import json_format
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message

from common.clickhouse_type import ClickHouseType, blank_is_value, is_composite, read_type, unwrap
from common.column_values import (
    FLOAT32_MAX,
    INT_RANGES,
    Converter,
    array_of,
    json_text_of,
    value_converter,
)
from common.datasources import Column, Datasource
from common.timeparse import (
    DATETIME_MAX,
    DATETIME_MIN,
    Instant,
    parse_datetime_fast,
)
from common.value_messages import ValueAt, json_type

DEFAULT_MAX_STRING_BYTES = 64 * 1024

Columns = list[list[Any]]
"""A batch as one list of values per column, in column order."""


class InvalidValue(ValueError):
    """A field's value cannot be stored in its column; the message names the field."""


class _Omitted:
    __slots__ = ()

    def __repr__(self) -> str:
        return "OMITTED"


OMITTED: Any = _Omitted()
"""The value of a field an event left out, in a column with a DEFAULT expression: the
row is written without it, so the table computes the default. orjson refuses to encode it,
so a block holding one is never written as if it were a value."""

_MISSING: Any = object()  # a field the event does not have (before its column decides)


def _column_type(column: Column) -> ClickHouseType:
    try:
        return read_type(column.type)
    except ValueError as exc:
        raise ValueError(
            f"column {column.name}: unsupported ClickHouse type {column.type}: {exc}"
        ) from None


def _converter(column: Column, kind: ClickHouseType, max_string_bytes: int) -> Converter:
    try:
        return value_converter(kind, max_string_bytes, column.json_text)
    except ValueError as exc:
        raise ValueError(
            f"column {column.name}: unsupported ClickHouse type {column.type}: {exc}"
        ) from None


def converter(
    column: Column, max_string_bytes: int = DEFAULT_MAX_STRING_BYTES
) -> Callable[[Any], Any]:
    """The function that checks and normalises one column's present JSON value (null too,
    for a Nullable column). Raises ValueError, naming the column, for a type it cannot
    ingest."""
    return _converter(column, _column_type(column), max_string_bytes)


class _Rejected(Exception):
    """A column's fast check failed: validate the batch row by row instead."""


Check = Callable[[list[Any]], list[Any]]


def _fast_check(
    base: ClickHouseType, convert: Converter, json_text: bool, max_string_bytes: int
) -> Check | None:
    """A whole-column check of a required column's values, as `convert` would answer for
    each one, raising _Rejected when any value needs a closer look; None when the type has
    no faster way than converting each value."""

    def check_lengths(values: list[Any]) -> None:
        # Characters take 1-4 bytes in UTF-8: only strings that could be over are encoded.
        if values and max(map(len, values)) * 4 > max_string_bytes:
            for value in values:
                if len(value) * 4 > max_string_bytes and (
                    len(value.encode("utf-8", "surrogatepass")) > max_string_bytes
                ):
                    raise _Rejected

    if base.name == "String":

        def strings(values: list[Any]) -> list[Any]:
            kinds = set(map(type, values))
            if not kinds <= {str}:
                if not (json_text and kinds <= {str, dict, list}):
                    raise _Rejected
                try:
                    values = [v if type(v) is str else convert(v) for v in values]
                except ValueError:
                    raise _Rejected from None
            check_lengths(values)
            return values

        return strings
    if base.name == "DateTime":

        def datetimes(values: list[Any]) -> list[Any]:
            if set(map(type, values)) <= {int}:
                if values and (min(values) < DATETIME_MIN or max(values) > DATETIME_MAX):
                    raise _Rejected
                return values
            try:
                return list(map(parse_datetime_fast, values))
            except ValueError:
                raise _Rejected from None

        return datetimes
    if base.name in INT_RANGES:
        low, high = INT_RANGES[base.name]

        def integers(values: list[Any]) -> list[Any]:
            if not set(map(type, values)) <= {int}:
                raise _Rejected
            if values and (min(values) < low or max(values) > high):
                raise _Rejected
            return values

        return integers
    if base.name in ("Float32", "Float64"):
        float32 = base.name == "Float32"

        def floats(values: list[Any]) -> list[Any]:
            kinds = set(map(type, values))
            if not kinds <= {float, int}:
                raise _Rejected
            try:
                if not all(map(math.isfinite, values)):
                    raise _Rejected
            except OverflowError:  # an integer too large for a float
                raise _Rejected from None
            if float32 and values and max(map(abs, values)) > FLOAT32_MAX:
                raise _Rejected
            return values if kinds <= {float} else list(map(float, values))

        return floats
    return None


def _settler(label: str, nullable: bool, has_default: bool) -> Callable[[Any], Any]:
    """What a column stores for a missing field (_MISSING) or a null."""

    def settle(value: Any) -> Any:
        if value is None and nullable:
            return None
        if has_default:
            return OMITTED
        if nullable:
            return None
        raise InvalidValue(f"missing required field '{label}'")

    return settle


def _each(convert: Converter, settle: Callable[[Any], Any]) -> Check:
    """The general whole-column check: each value converted, absent ones settled."""

    def check(values: list[Any]) -> list[Any]:
        try:
            return [
                settle(value) if value is None or value is _MISSING else convert(value)
                for value in values
            ]
        except ValueError:  # InvalidValue too: the row-by-row pass says which and why
            raise _Rejected from None

    return check


def _walk(path: tuple[str, ...]) -> Callable[[dict[str, Any]], Any]:
    def get(obj: dict[str, Any]) -> Any:
        for key in path:
            if type(obj) is not dict:
                return _MISSING
            obj = obj.get(key, _MISSING)
        return obj

    return get


def _field_error(label: str, exc: ValueError) -> str:
    if isinstance(exc, ValueAt):
        return f"field '{label}{exc.where}': {exc.reason}"
    return f"field '{label}': {exc}"


@dataclass(frozen=True)
class _Reader:
    """How one column's values are read from one kind of event: `one` gives an event's
    value (_MISSING when it has none), `column` a whole batch's (raising _Rejected where
    a missing value would be an error), `convert` checks a present one, `check` a whole
    column of them, `settle` answers for a missing one or a null."""

    one: Callable[[Any], Any]
    column: Callable[[Sequence[Any]], list[Any]]
    convert: Converter
    check: Check
    settle: Callable[[Any], Any]
    label: str

    def error(self, exc: ValueError) -> str:
        return _field_error(self.label, exc)


def _with_missing(one: Callable[[Any], Any], required: bool) -> Callable[[Sequence[Any]], list]:
    def column(items: Sequence[Any]) -> list[Any]:
        values = list(map(one, items))
        if required and any(value is _MISSING for value in values):
            raise _Rejected
        return values

    return column


def _by_key(name: str) -> Callable[[Sequence[Any]], list[Any]]:
    """The commonest column: a required field at the top of the event, in one C-level
    pass."""
    get = itemgetter(name)

    def column(values: Sequence[Any]) -> list[Any]:
        try:
            return list(map(get, values))
        except KeyError:
            raise _Rejected from None

    return column


@dataclass(frozen=True)
class _ColumnRules:
    """What every reader of a column shares."""

    column: Column
    base: ClickHouseType
    nullable: bool
    required: bool
    convert: Converter
    """For present, non-null values (a Nullable column settles nulls itself)."""
    fast: Check | None


def _json_reader(rules: _ColumnRules) -> _Reader:
    column = rules.column
    label = ".".join(column.json_path) if column.json_path else column.name
    settle = _settler(label, rules.nullable, bool(column.default_expression))
    if column.json_path:
        one = _walk(column.json_path)
    else:
        one = methodcaller("get", column.name, _MISSING)
    if rules.required and not column.json_path:
        batch = _by_key(column.name)
    else:
        batch = _with_missing(one, rules.required)
    check = rules.fast if rules.fast is not None else _each(rules.convert, settle)
    return _Reader(one, batch, rules.convert, check, settle, label)


_TIMESTAMP = "google.protobuf.Timestamp"


def _instant_of(stamp: Message) -> Instant:
    return Instant(stamp.seconds) + Instant(stamp.nanos).scaleb(-9)  # type: ignore[attr-defined]


def _message_reader(rules: _ColumnRules, max_string_bytes: int) -> _Reader:
    column, base = rules.column, rules.base
    field = column.field
    name = column.name
    settle = _settler(name, rules.nullable, bool(column.default_expression))
    timestamp = field.message_type is not None and field.message_type.full_name == _TIMESTAMP
    moments = unwrap(base.args[0])[1] if base.name == "Array" and field.is_repeated else base
    if timestamp and moments.name not in ("DateTime", "DateTime64", "Date", "Date32"):
        raise ValueError(f"column {name}: a Timestamp field cannot carry {column.type}")
    seconds_only = moments.name == "DateTime"
    text = field.type == FieldDescriptor.TYPE_STRING
    blank_is_unset = text and not field.is_repeated and not blank_is_value(base)
    convert = rules.convert
    if field.is_repeated and base.name == "Array" and is_composite(unwrap(base.args[0])[1]):
        convert = array_of(json_text_of(value_converter(base.args[0], max_string_bytes)))
    elif text and is_composite(base):
        convert = json_text_of(convert)
    get = attrgetter(name)
    has = methodcaller("HasField", name) if field.has_presence else None

    def stamp(value: Message) -> Any:
        return value.seconds if seconds_only else _instant_of(value)

    def one(event: Message) -> Any:
        if has is not None and not has(event):
            return _MISSING
        value = get(event)
        if field.is_repeated:
            return list(map(stamp, value)) if timestamp else list(value)
        if timestamp:
            return stamp(value)
        if blank_is_unset and value == "":
            return _MISSING
        return value

    simple = not timestamp and not field.is_repeated and has is None and not blank_is_unset
    batch: Callable[[Sequence[Any]], list[Any]]
    if rules.required and simple:
        batch = _attribute_of(get)
    elif rules.required and timestamp and seconds_only and not field.is_repeated:
        batch = _seconds_of(has, attrgetter(f"{name}.seconds"))
    else:
        batch = _with_missing(one, rules.required)
    if convert is rules.convert and rules.fast is not None:
        check = rules.fast
    else:
        check = _each(convert, settle)
    return _Reader(one, batch, convert, check, settle, name)


def _attribute_of(get: Callable[[Message], Any]) -> Callable[[Sequence[Message]], list]:
    """The commonest typed column: a plain field, in one C-level pass."""

    def column(events: Sequence[Message]) -> list[Any]:
        return list(map(get, events))

    return column


def _seconds_of(has: Any, seconds: Callable[[Message], int]) -> Callable[[Sequence[Message]], list]:
    def column(events: Sequence[Message]) -> list[Any]:
        if not all(map(has, events)):
            raise _Rejected
        return list(map(seconds, events))

    return column


def _rules(column: Column, max_string_bytes: int) -> _ColumnRules:
    kind = _column_type(column)
    _converter(column, kind, max_string_bytes)  # refuses, naming it, what cannot be ingested
    nullable, base = unwrap(kind)
    convert = _converter(column, base, max_string_bytes)  # nulls are settled before it
    required = not nullable and not column.default_expression
    fast = _fast_check(base, convert, column.json_text, max_string_bytes) if required else None
    return _ColumnRules(column, base, nullable, required, convert, fast)


def _transpose(rows: list[list[Any]], width: int) -> Columns:
    if not rows:
        return [[] for _ in range(width)]
    return [list(column) for column in zip(*rows, strict=True)]


class RowValidator:
    """Validates events of one datasource; built once per datasource. Raises ValueError
    naming the column when a column's type cannot be ingested."""

    def __init__(
        self, datasource: Datasource, max_string_bytes: int = DEFAULT_MAX_STRING_BYTES
    ) -> None:
        self.datasource = datasource
        rules = [_rules(c, max_string_bytes) for c in datasource.columns]
        self._names = [c.name for c in datasource.columns]
        self._json = [_json_reader(r) for r in rules]
        self._messages = [_message_reader(r, max_string_bytes) for r in rules]
        # The batch paths' steps, looked up once: they run per column of every batch.
        self._json_batch = [(r.column, r.check) for r in self._json]
        self._message_batch = [(r.column, r.check) for r in self._messages]
        # Columns a reader can hand over whole (a CSV file's): top-level fields only.
        self._top_level = all(not c.json_path for c in datasource.columns)
        self._checks = [r.check for r in self._json]

    def columns_from_json(self, values: Sequence[Any]) -> tuple[Columns, list[tuple[int, str]]]:
        """The valid events of a batch of decoded JSON values as columns, and (index,
        reason) for each invalid one. Same answers as `from_json` on each value."""
        try:
            if not all(type(v) is dict for v in values):
                raise _Rejected
            return [check(column(values)) for column, check in self._json_batch], []
        except _Rejected:
            return self._row_by_row(values, self.from_json)

    def checked_columns(self, given: Mapping[str, list[Any]]) -> Columns | None:
        """A batch already a column at a time (every column of the datasource, each value as
        JSON would decode it) checked whole: the columns, or None when some value needs a
        closer look (then validate the batch as JSON values, which names each bad one)."""
        if not self._top_level or not all(name in given for name in self._names):
            return None
        try:
            return [
                check(given[name]) for name, check in zip(self._names, self._checks, strict=True)
            ]
        except _Rejected:
            return None

    def columns_from_messages(
        self, events: Sequence[Message]
    ) -> tuple[Columns, list[tuple[int, str]]]:
        """As `columns_from_json`, for typed events (`from_message` on each)."""
        # A repeated field makes a new Python object for an element each time it is
        # iterated; listed once, the columns below reuse them (three times faster).
        events = list(events)
        try:
            return [check(column(events)) for column, check in self._message_batch], []
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
        return _transpose(rows, len(self._names)), bad

    def from_json(self, obj: Any) -> dict[str, Any]:
        """A row from a decoded JSON value. Unknown extra fields are ignored, as
        Tinybird does. Raises InvalidValue naming the first offending field."""
        if not isinstance(obj, dict):
            raise InvalidValue(f"expected a JSON object, got {json_type(obj)}")
        return self._row(obj, self._json)

    def from_message(self, event: Message) -> dict[str, Any]:
        """A row from a typed event (see the module's notes on unset fields)."""
        return self._row(event, self._messages)

    def _row(self, event: Any, readers: list[_Reader]) -> dict[str, Any]:
        row: dict[str, Any] = {}
        for name, reader in zip(self._names, readers, strict=True):
            value = reader.one(event)
            if value is None or value is _MISSING:
                row[name] = reader.settle(value)
                continue
            try:
                row[name] = reader.convert(value)
            except ValueError as exc:
                raise InvalidValue(reader.error(exc)) from None
        return row

    @staticmethod
    def message_text(event: Message) -> str:
        """The typed event as JSON text, for the quarantine table's `raw` column."""
        return json_format.MessageToJson(event, preserving_proto_field_name=True, indent=None)
