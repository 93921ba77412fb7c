"""One table of the column types an event may fill: per type, good JSON values with the
JSON the validator hands ClickHouse and what ClickHouse then stores (`toString` of the
column, in UTC; None for NULL), and bad values with the reason they are quarantined."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import orjson
from datasource_protos import Spec, build
from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp
from hypothesis import strategies as st

from common.column_types import event_field, parse
from common.datasources import Datasource
from common.timeparse import parse_datetime

MAX_INT128 = 2**127 - 1
MAX_UINT256 = 2**256 - 1


@dataclass(frozen=True)
class Case:
    type: str
    good: list[tuple[Any, str, str | None]]
    """(JSON value, the JSON the validator makes of it, what ClickHouse stores)."""
    bad: list[tuple[Any, str]] = field(default_factory=list)
    """(JSON value, the reason after `field 'c…': `; a leading `[…]` is inside the field)."""
    stored: bool = True
    """False for a type the engine under test cannot create (Object('json') is gone from
    ClickHouse 25+ in favour of JSON)."""

    @property
    def id(self) -> str:
        return self.type


CASES = [
    Case(
        "Nullable(Int32)",
        [(5, "5", "5"), (None, "null", None)],
        [("x", "expected an integer, got a string")],
    ),
    Case("LowCardinality(String)", [("a", '"a"', "a")], [(1, "expected a string, got a number")]),
    Case(
        "LowCardinality(Nullable(String))",
        [("b", '"b"', "b"), (None, "null", None)],
        [(["b"], "expected a string, got an array")],
    ),
    Case("Int64", [(-(2**63), str(-(2**63)), str(-(2**63)))], [(2**63, "out of range")]),
    Case("UInt64", [(2**64 - 1, str(2**64 - 1), str(2**64 - 1))], [(-1, "out of range")]),
    Case(
        "Float32",
        [(1.5, "1.5", "1.5"), (-3.4e38, "-3.4e+38", "-3.4e38")],
        [
            ("1.5", "expected a number, got a string"),
            (1e300, "1e+300 is out of range for Float32"),
            (2**200, "is out of range for Float32"),
            (2**2000, "is out of range for a float"),
        ],
    ),
    Case(
        "Date",
        [
            ("2024-02-29", '"2024-02-29"', "2024-02-29"),
            ("2024-03-01T01:30:00+02:00", '"2024-02-29"', "2024-02-29"),
            ("2024-03-01 23:59:59", '"2024-03-01"', "2024-03-01"),
            ("1970-01-01", '"1970-01-01"', "1970-01-01"),
            ("2149-06-06", '"2149-06-06"', "2149-06-06"),
        ],
        [
            ("2149-06-07", "outside Date's range (1970-01-01 .. 2149-06-06)"),
            ("1969-12-31", "outside Date's range"),
            ("2024-02-30", "is not a date"),
            (19000, "expected a date string, got a number"),
            ("1718000000", "is not a date-time"),
            ("２０２４-01-01", "only ASCII digits are read"),
        ],
    ),
    Case(
        "Date32",
        [
            ("1900-01-01", '"1900-01-01"', "1900-01-01"),
            ("2299-12-31", '"2299-12-31"', "2299-12-31"),
        ],
        [("1899-12-31", "outside Date32's range (1900-01-01 .. 2299-12-31)")],
    ),
    Case(
        "DateTime",
        [
            ("2023-06-15 14:30:00", "1686839400", "2023-06-15 14:30:00"),
            ("2023-06-15T16:30:00+02:00", "1686839400", "2023-06-15 14:30:00"),
            (1686839400, "1686839400", "2023-06-15 14:30:00"),
        ],
        [("tomorrow", "is not a date-time"), (-1, "outside DateTime's range")],
    ),
    # Text without an offset is UTC; the column's zone only says how it is shown.
    Case(
        "DateTime('Asia/Tokyo')",
        [("2023-06-15 14:30:00", "1686839400", "2023-06-15 23:30:00")],
        [(2**33, "outside DateTime's range")],
    ),
    Case(
        "DateTime64(3)",
        [
            ("2023-06-15 14:30:00.123", "1686839400.123", "2023-06-15 14:30:00.123"),
            ("2023-06-15T14:30:00.1239Z", "1686839400.123", "2023-06-15 14:30:00.123"),
            ("2023-06-15T16:30:00,5+02:00", "1686839400.500", "2023-06-15 14:30:00.500"),
            ("2023-06-15 14:30:00", "1686839400.000", "2023-06-15 14:30:00.000"),
            (1686839400.25, "1686839400.250", "2023-06-15 14:30:00.250"),
            (1686839400, "1686839400.000", "2023-06-15 14:30:00.000"),
            ("1686839400.0019", "1686839400.001", "2023-06-15 14:30:00.001"),
            ("1969-12-31 23:59:59.5", "-0.500", "1969-12-31 23:59:59.500"),
            ("1900-01-01 00:00:00", "-2208988800.000", "1900-01-01 00:00:00.000"),
            ("2299-12-31 23:59:59.999", "10413791999.999", "2299-12-31 23:59:59.999"),
        ],
        [
            ("1899-12-31 23:59:59.999", "outside DateTime64's range"),
            ("2300-01-01 00:00:00", "outside DateTime64's range"),
            (1e300, "outside DateTime64's range"),
            ("soon", "is not a date-time"),
            (True, "a boolean is not a date-time"),
            ({"t": 1}, "expected a date-time string or epoch seconds, got an object"),
        ],
    ),
    Case(
        "DateTime64(9, 'UTC')",
        [
            (
                "2023-06-15T14:30:00.123456789+00:00",
                "1686839400.123456789",
                "2023-06-15 14:30:00.123456789",
            ),
            (
                "2262-04-11 23:47:16.854775807",
                "9223372036.854775807",
                "2262-04-11 23:47:16.854775807",
            ),
        ],
        [("2262-04-11 23:47:16.854775808", "outside DateTime64's range")],
    ),
    Case(
        "DateTime64(0)",
        [("2023-06-15 14:30:00.9", "1686839400", "2023-06-15 14:30:00")],
    ),
    Case(
        "Bool",
        [
            (True, "true", "true"),
            (False, "false", "false"),
            (0, "false", "false"),
            (1, "true", "true"),
        ],
        [
            (2, "expected true or false (or 0 or 1), got 2"),
            (1.0, "got 1.0"),
            ("true", "got a string"),
        ],
    ),
    Case(
        "Int128",
        [
            (2**63, f'"{2**63}"', str(2**63)),
            (str(MAX_INT128), f'"{MAX_INT128}"', str(MAX_INT128)),
            (str(-MAX_INT128 - 1), f'"{-MAX_INT128 - 1}"', str(-MAX_INT128 - 1)),
            (12.0, '"12"', "12"),
            ("+7", '"7"', "7"),
        ],
        [
            (str(MAX_INT128 + 1), "out of range for Int128"),
            (1e20, "too large for a JSON number to carry exactly; send it as decimal text"),
            ("12.5", "expected an integer or its decimal text, got '12.5'"),
            (" 1", "expected an integer or its decimal text"),
            (1.5, "expected an integer, got 1.5"),
            (True, "expected an integer, got a boolean"),
        ],
    ),
    Case("UInt128", [(0, '"0"', "0")], [(-1, "-1 is out of range for UInt128")]),
    Case(
        "Int256",
        [(str(-(2**255)), f'"{-(2**255)}"', str(-(2**255)))],
        [(str(2**255), "out of range for Int256")],
    ),
    Case(
        "UInt256",
        [(str(MAX_UINT256), f'"{MAX_UINT256}"', str(MAX_UINT256))],
        [(str(MAX_UINT256 + 1), "out of range for UInt256")],
    ),
    Case(
        "Decimal(10, 2)",
        [
            ("12345678.91", '"12345678.91"', "12345678.91"),
            (12.5, '"12.5"', "12.5"),
            ("1.500", '"1.5"', "1.5"),
            ("-0.00", '"0"', "0"),
            ("1e2", '"100"', "100"),
            (".5", '"0.5"', "0.5"),
            (3, '"3"', "3"),
            ("-99999999.99", '"-99999999.99"', "-99999999.99"),
        ],
        [
            ("123456789.1", "out of range for Decimal(10, 2) (at most 8 digits before the point)"),
            ("0.001", "has more than 2 digits after the point"),
            ("1e-3", "has more than 2 digits after the point"),
            ("1e999999", "out of range for Decimal(10, 2)"),
            ("abc", "expected a number or numeric text, got 'abc'"),
            ("NaN", "expected a number or numeric text"),
            (0.1234567890123456, "more digits than a JSON number carries exactly"),
            (True, "expected a number, got a boolean"),
        ],
    ),
    Case(
        "Decimal32(4)",
        [("12345.6789", '"12345.6789"', "12345.6789")],
        [("123456", "out of range for Decimal(9, 4)")],
    ),
    Case(
        "Decimal128(20)",
        [
            (
                "123456789012345678.12345678901234567890",
                '"123456789012345678.1234567890123456789"',
                "123456789012345678.1234567890123456789",
            )
        ],
    ),
    Case(
        "Decimal256(40)",
        [
            (
                "1.0000000000000000000000000000000000000001",
                '"1.0000000000000000000000000000000000000001"',
                "1.0000000000000000000000000000000000000001",
            )
        ],
    ),
    Case(
        "UUID",
        [
            (
                "61F0C404-5CB3-11E7-907B-A6006AD3DBA0",
                '"61f0c404-5cb3-11e7-907b-a6006ad3dba0"',
                "61f0c404-5cb3-11e7-907b-a6006ad3dba0",
            ),
            (
                "{61f0c404-5cb3-11e7-907b-a6006ad3dba0}",
                '"61f0c404-5cb3-11e7-907b-a6006ad3dba0"',
                "61f0c404-5cb3-11e7-907b-a6006ad3dba0",
            ),
            (
                "61f0c4045cb311e7907ba6006ad3dba0",
                '"61f0c404-5cb3-11e7-907b-a6006ad3dba0"',
                "61f0c404-5cb3-11e7-907b-a6006ad3dba0",
            ),
        ],
        [
            ("61f0c404-5cb3-11e7-907b", "is not a UUID"),
            ("{61f0c404-5cb3-11e7-907b-a6006ad3dba0", "is not a UUID"),
            (5, "expected a UUID string, got a number"),
        ],
    ),
    Case(
        "IPv4",
        [("192.168.0.1", '"192.168.0.1"', "192.168.0.1")],
        [("256.1.1.1", "is not an IPv4 address"), ("01.2.3.4", "is not an IPv4 address")],
    ),
    Case(
        "IPv6",
        [
            ("2001:DB8::1", '"2001:db8::1"', "2001:db8::1"),
            ("1.2.3.4", '"::ffff:1.2.3.4"', "::ffff:1.2.3.4"),
            ("::ffff:102:304", '"::ffff:1.2.3.4"', "::ffff:1.2.3.4"),
        ],
        [("fe80::1%eth0", "has a scope"), ("::g", "is not an IP address")],
    ),
    Case(
        "Enum8('a' = 1, 'b c' = -2, 'it''s' = 3)",
        [("a", '"a"', "a"), ("b c", '"b c"', "b c"), ("it's", '"it\'s"', "it's")],
        [
            ("c", "expected one of 'a', 'b c', \"it's\", got 'c'"),
            (1, "expected one of 'a', 'b c', \"it's\", got a number"),
        ],
    ),
    Case("Enum16('x' = 1000)", [("x", '"x"', "x")], [("", "expected one of 'x', got ''")]),
    Case(
        "FixedString(3)",
        # Stored padded with zero bytes, which toString leaves out.
        [("ab", '"ab"', "ab"), ("é", '"é"', "é"), ("abc", '"abc"', "abc")],
        [
            ("abcd", "longer than the 3 bytes of FixedString(3)"),
            ("éé", "longer than the 3 bytes of FixedString(3)"),
        ],
    ),
    Case(
        "Array(Nullable(Int8))",
        [([1, None, -128], "[1,null,-128]", "[1,NULL,-128]"), ([], "[]", "[]")],
        [
            ([1, 128], "[1]: 128 is out of range for Int8 (-128..127)"),
            ("x", "expected an array, got a string"),
            ([[1]], "[0]: expected an integer, got an array"),
        ],
    ),
    Case(
        "Array(Array(String))",
        [([["a"], []], '[["a"],[]]', "[['a'],[]]")],
        [([["a", None]], "[0][1]: expected a string, got null")],
    ),
    Case(
        "Map(String, UInt8)",
        [({"a": 1}, '{"a":1}', "{'a':1}"), ({}, "{}", "{}")],
        [
            ({"a": 300}, "['a']: 300 is out of range for UInt8"),
            ([1], "expected an object, got an array"),
        ],
    ),
    Case(
        "Map(UInt32, Nullable(String))",
        [({"1": "x", "007": None}, '{"1":"x","7":null}', "{1:'x',7:NULL}")],
        [
            ({"x": "y"}, "['x']: key 'x' is not an integer"),
            ({"1": "a", "01": "b"}, "['01']: the same key as '1'"),
            ({"4294967296": "a"}, "['4294967296']: key 4294967296 is out of range for UInt32"),
        ],
    ),
    Case(
        "Map(LowCardinality(String), Array(Int32))",
        [({"k": [1, 2]}, '{"k":[1,2]}', "{'k':[1,2]}")],
    ),
    Case(
        "Tuple(String, Int32)",
        [(["a", 1], '["a",1]', "('a',1)")],
        [
            (["a"], "expected an array of 2 elements, got an array of 1"),
            (["a", "b"], "[1]: expected an integer, got a string"),
            ({"a": 1}, "expected an array of 2 elements, got an object"),
        ],
    ),
    Case(
        "Tuple(name String, n Nullable(Int32))",
        [
            ({"name": "x", "n": 5}, '{"name":"x","n":5}', "('x',5)"),
            ({"name": "y", "extra": 1}, '{"name":"y","n":null}', "('y',NULL)"),
            (["z", None], '{"name":"z","n":null}', "('z',NULL)"),
        ],
        [
            ({"n": 1}, "missing tuple element 'name'"),
            ({"name": 1, "n": 1}, ".name: expected a string, got a number"),
        ],
    ),
    Case(
        "JSON",
        [
            (
                {"a": {"b": 1}, "s": "x", "a.c": 2},
                '{"a":{"b":1},"s":"x","a.c":2}',
                '{"a":{"b":1,"c":2},"s":"x"}',
            ),
            ({}, "{}", "{}"),
        ],
        [
            ([1], "expected a JSON object, got an array"),
            ({"a": {"b": 1}, "a.b": 2}, "the path 'a.b' appears twice (keys are split at dots)"),
            ({"a": [{"x.y": 1, "x": {"y": 2}}]}, "the path 'x.y' appears twice"),
            ("{}", "expected a JSON object, got a string"),
        ],
    ),
    Case("Object('json')", [({"a": 1}, '{"a":1}', '{"a":1}')], [(1, "got a number")], stored=False),
    Case("Nullable(Float64)", [(None, "null", None), (2.5, "2.5", "2.5")]),
]
STORED = [case for case in CASES if case.stored]
ALL_TYPES = build(
    "all_types",
    [Spec("id", "UInt32"), *(Spec(f"c{i}", case.type) for i, case in enumerate(STORED))],
    sorting_key="id",
)
"""A datasource with a column `c<i>` of each type ClickHouse can create, and an `id`."""

UNSUPPORTED = [
    ("AggregateFunction(sum, UInt64)", "AggregateFunction is not a type Pipit can ingest"),
    ("Nested(a String)", "Nested is not a type Pipit can ingest"),
    ("Variant(String, UInt8)", "Variant is not a type Pipit can ingest"),
    ("Decimal(77, 2)", "argument 1 of Decimal must be an integer in 1..76"),
    ("Decimal(5, 6)", "argument 2 of Decimal must be an integer in 0..5"),
    ("DateTime64(10)", "argument 1 of DateTime64 must be an integer in 0..9"),
    ("DateTime('Mars/Olympus_Mons')", "unknown time zone 'Mars/Olympus_Mons'"),
    ("FixedString(0)", "argument 1 of FixedString must be an integer"),
    ("Enum8()", "Enum8 takes 'name' = value pairs"),
    ("Enum8('a' = 1, 'a' = 2)", "Enum8 names a value twice"),
    ("Map(Float64, String)", "Map keys of type Float64 are not supported"),
    ("Tuple(a String, Int8)", "a Tuple names all its elements or none"),
    ("JSON(max_dynamic_paths = 10)", "JSON with parameters"),
    ("Array(String", "expected ')', found the end"),
    ("Strin", "Strin is not a type Pipit can ingest"),
    ("String(5)", "String takes no arguments"),
    ("Object('other')", "only Object('json') is supported"),
    ("LowCardinality(String, String)", "LowCardinality takes 1 argument, got 2"),
    ("Nullable(1)", "Nullable takes a type"),
    ("UInt8 UInt8", "unexpected 'UInt8' after the type"),
    ("Array(String) ;", "cannot read ';'"),
]


# --- events mixing every case's values with anything --------------------------------------

ANYTHING = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(),
    st.text(max_size=12),
    st.sampled_from(["", "2023-06-15 14:30:00", "1.5", "::1", "a", "x" * 70_000, math.nan]),
    st.lists(st.one_of(st.integers(), st.text(max_size=3), st.none()), max_size=3),
    st.dictionaries(st.text(max_size=3), st.one_of(st.integers(), st.text(max_size=3)), max_size=3),
)


def case_events(
    columns: dict[str, Case], always: dict[str, st.SearchStrategy] | None = None
) -> st.SearchStrategy[list[Any]]:
    """Batches of events whose fields are mostly their case's good and bad values, some
    anything, some left out; `always` fields are always there; sometimes a non-object."""

    @st.composite
    def batches(draw: st.DrawFn) -> list[Any]:
        events: list[Any] = []
        for _ in range(draw(st.integers(0, 6))):
            event = {name: draw(strategy) for name, strategy in (always or {}).items()}
            for name, case in columns.items():
                values = [value for value, _, _ in case.good] + [value for value, _ in case.bad]
                choice = draw(st.integers(0, 9))
                if choice < 7:
                    event[name] = values[draw(st.integers(0, len(values) - 1))]
                elif choice < 9:
                    event[name] = draw(ANYTHING)
            events.append(event)
        if draw(st.booleans()):
            events.append(draw(st.sampled_from([1, "event", None, []])))
        return events

    return batches()


# --- the same values in typed events --------------------------------------------------


def typed_value(case_type: str, value: Any) -> Any:
    """The value a typed event's field carries for a JSON value (see event_field), or
    `...` when the field's proto type cannot carry it."""
    label, proto = event_field(case_type)
    kind = parse(case_type)
    if value is None:
        return None if label == "optional" else ...
    if proto == "google.protobuf.Timestamp":
        try:
            return Timestamp(seconds=parse_datetime(value))
        except ValueError:
            return ...
    if label == "repeated":
        items = [_typed_scalar(kind.element.text, proto, item) for item in value]
        return ... if any(item is ... for item in items) else items
    return _typed_scalar(case_type, proto, value)


def _typed_scalar(case_type: str, proto: str, value: Any) -> Any:
    if value is None or (isinstance(value, bool) and proto not in ("bool", "string")):
        return ...
    if proto == "string":
        if isinstance(value, dict | list):
            return orjson.dumps(value).decode()
        whole = parse(case_type).name.startswith(("Int", "UInt"))
        if isinstance(value, bool) or (isinstance(value, float) and whole):
            return ...
        return value if isinstance(value, str) else str(value)
    if proto == "bool":
        return bool(value) if type(value) in (bool, int) and value in (0, 1) else ...
    if proto.startswith(("int", "uint")):
        return value if type(value) is int else ...
    return float(value) if isinstance(value, int | float) else ...


def set_timestamp(event: Message, name: str, seconds: int, nanos: int = 0) -> None:
    # The datasource's pool has its own Timestamp class.
    field = getattr(event, name)
    field.CopyFrom(type(field)(seconds=seconds, nanos=nanos))


def typed_event(ds: Datasource, value: Any) -> Message:
    event = ds.message_class()
    if isinstance(value, Timestamp):
        set_timestamp(event, "c", value.seconds)
    elif isinstance(value, list):
        event.c.extend(value)
    elif value is not None:
        event.c = value
    return event
