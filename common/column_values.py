"""ClickHouse column types as ingest reads their values: for each type (its text read by
common/clickhouse_type.py) the function that checks a present JSON value and returns what
ClickHouse's JSON input formats read back exactly (so nothing that passes can fail an insert,
which would be retried for ever, and nothing is silently changed on the way).

Per type, what a JSON value may be -> what is stored:

- String: a string (a `json_text` column also an object or array -> its JSON text).
- FixedString(N): a string of at most N UTF-8 bytes (ClickHouse pads it with zero bytes).
- Int8 .. Int64, UInt8 .. UInt64: an integer (or an integral float) in range.
- Int128, Int256, UInt128, UInt256: an integer or its decimal text, in range -> decimal
  text; a JSON number past 2^53 has been through a double, so it must come as text.
- Float32, Float64: a finite number (within Float32's range, which would store infinity).
- Decimal(P, S), Decimal32/64/128/256(S): a number or numeric text (exponent allowed) with
  at most P-S digits before the point and S after (more is refused, never rounded) ->
  exact decimal text; a JSON number with more than 15 significant digits must be text.
- Bool: true or false, or the integers 0 and 1.
- Date, Date32: `YYYY-MM-DD`, or a date-time text (its UTC date) -> `YYYY-MM-DD`, range
  checked (ClickHouse would clamp); numbers are refused (days or seconds?).
- DateTime, DateTime('tz'): `YYYY-MM-DD HH:MM:SS` (UTC), RFC 3339, epoch seconds -> epoch
  seconds.
- DateTime64(p[, 'tz']): as DateTime, each with fractional seconds, floored to p digits
  (as DateTime floors to the second) -> exact epoch seconds as a JSON number; 1900-01-01
  .. 2299-12-31 (2262-04-11 at p = 9).
- UUID: 32 hex digits, hyphens and braces optional -> lower-case 8-4-4-4-12.
- IPv4, IPv6: the address text (an IPv4 one in an IPv6 column too) -> canonical text.
- Enum8, Enum16: one of its names (not its numbers).
- Array(T): an array of T. Map(K, V): an object (keys as K reads text: strings, integers,
  UUIDs, dates, enums, IPs). Tuple(T1, ..): an array of its length; a named tuple also an
  object (a missing element is null if Nullable) -> array, or object when named.
- JSON, Object('json'): an object whose paths (keys split at dots) are unique, within
  PIPIT_MAX_FIELD_BYTES -> the object (ClickHouse refuses a path twice).
- Nullable(T): T, or null -> NULL (a missing field too). LowCardinality(T): as T.

Text without an offset is UTC whatever time zone a DateTime column displays in; a
date-time number is epoch seconds, never days. Anything else (AggregateFunction, Nested,
Variant, Dynamic, JSON with parameters, a Map key of another type…) is refused when the
converter is built, naming what cannot be read."""

from __future__ import annotations

import ipaddress
import math
import re
import uuid
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import orjson

from common.clickhouse_type import (
    ClickHouseType,
    EnumValue,
    NamedElement,
    argument_count,
    enum_names,
    int_argument,
    is_type,
    time_zone_argument,
    unwrap,
)
from common.composite_values import Converter, array_of, json_object, map_of, tuple_of
from common.timeparse import DATE_RANGES, date_converter, datetime64_converter, parse_datetime
from common.value_messages import json_type, shown

INT_RANGES = {
    "UInt8": (0, 2**8 - 1),
    "UInt16": (0, 2**16 - 1),
    "UInt32": (0, 2**32 - 1),
    "UInt64": (0, 2**64 - 1),
    "Int8": (-(2**7), 2**7 - 1),
    "Int16": (-(2**15), 2**15 - 1),
    "Int32": (-(2**31), 2**31 - 1),
    "Int64": (-(2**63), 2**63 - 1),
}
# Wider than a JSON number carries exactly, so stored as decimal text (ClickHouse reads it).
_BIG_INT_RANGES = {
    "UInt128": (0, 2**128 - 1),
    "UInt256": (0, 2**256 - 1),
    "Int128": (-(2**127), 2**127 - 1),
    "Int256": (-(2**255), 2**255 - 1),
}


# --- Converters: one per ClickHouse type, for a present, non-null JSON value -------------


@dataclass(frozen=True)
class _Limits:
    max_string_bytes: int
    json_text: bool = False
    """Whether a top-level String column also takes objects and arrays (their JSON text)."""


def _string(max_bytes: int, json_text: bool) -> Converter:
    def limited(text: str) -> str:
        # Characters take 1-4 bytes in UTF-8; encode only when the count could be over.
        if len(text) * 4 > max_bytes and len(text.encode("utf-8", "surrogatepass")) > max_bytes:
            raise ValueError(f"longer than the {max_bytes}-byte limit for a field")
        return text

    def convert(value: Any) -> str:
        if isinstance(value, str):
            return limited(value)
        if json_text and isinstance(value, dict | list):
            try:
                text = orjson.dumps(value).decode()
            except TypeError as exc:  # orjson refuses nesting deeper than it can print
                raise ValueError(f"cannot store this JSON value: {exc}") from None
            return limited(text)
        expected = "a string or a JSON object" if json_text else "a string"
        raise ValueError(f"expected {expected}, got {json_type(value)}")

    return convert


def _fixed_string(size: int) -> Converter:
    def convert(value: Any) -> str:
        if not isinstance(value, str):
            raise ValueError(f"expected a string, got {json_type(value)}")
        if len(value) > size or len(value.encode("utf-8", "surrogatepass")) > size:
            raise ValueError(f"longer than the {size} bytes of FixedString({size})")
        return value

    return convert


def _integer(type_name: str) -> Converter:
    low, high = INT_RANGES[type_name]

    def convert(value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError(f"expected an integer, got {json_type(value)}")
        if isinstance(value, float):
            if not value.is_integer():
                raise ValueError(f"expected an integer, got {value!r}")
            value = int(value)
        if not low <= value <= high:
            raise ValueError(f"{value} is out of range for {type_name} ({low}..{high})")
        return value

    return convert


_INTEGER_TEXT = re.compile(r"[+-]?[0-9]{1,80}")
# A JSON number beyond 2^53 has been through a double on its way here (orjson reads
# integers past 64 bits as floats), so its digits are not necessarily the ones sent.
_EXACT_FLOAT = 2**53
_EXACT_FLOAT_DIGITS = 15


def _big_integer(type_name: str) -> Converter:
    low, high = _BIG_INT_RANGES[type_name]

    def convert(value: Any) -> str:
        if isinstance(value, bool):
            raise ValueError(f"expected an integer, got {json_type(value)}")
        if isinstance(value, int):
            number = value
        elif isinstance(value, float):
            if not value.is_integer():
                raise ValueError(f"expected an integer, got {shown(value)}")
            if abs(value) > _EXACT_FLOAT:
                raise ValueError(
                    f"{value!r} is too large for a JSON number to carry exactly; "
                    "send it as decimal text"
                )
            number = int(value)
        elif isinstance(value, str):
            if not _INTEGER_TEXT.fullmatch(value):
                raise ValueError(f"expected an integer or its decimal text, got {shown(value)}")
            number = int(value)
        else:
            raise ValueError(f"expected an integer or its decimal text, got {json_type(value)}")
        if not low <= number <= high:
            raise ValueError(f"{number} is out of range for {type_name} ({low}..{high})")
        return str(number)

    return convert


FLOAT32_MAX = 3.4028234663852886e38  # past it ClickHouse stores a Float32 as infinity


def _float(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"expected a number, got {json_type(value)}")
    try:
        number = float(value)
    except OverflowError:  # an integer past any double
        raise ValueError(f"{shown(value)} is out of range for a float") from None
    if not math.isfinite(number):
        raise ValueError(f"{value!r} is not a finite number")
    return number


def _float32(value: Any) -> float:
    number = _float(value)
    if abs(number) > FLOAT32_MAX:
        raise ValueError(f"{shown(value)} is out of range for Float32 (±{FLOAT32_MAX:.8g})")
    return number


def _bool(value: Any) -> bool:
    if value is True or value is False:
        return value
    # 0 and 1 are how many producers (and ClickHouse's own formats) write a flag.
    if type(value) is int and value in (0, 1):
        return value == 1
    got = shown(value) if isinstance(value, int | float) else json_type(value)
    raise ValueError(f"expected true or false (or 0 or 1), got {got}")


_NUMERIC_TEXT = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]{1,6})?")


def _plain_decimal(sign: int, digits: tuple[int, ...], exponent: int) -> str:
    text = "".join(map(str, digits))
    if exponent >= 0:
        text += "0" * exponent
    else:
        point = len(text) + exponent
        text = (
            (text[:point] if point > 0 else "0")
            + "."
            + "0" * max(0, -point)
            + text[max(point, 0) :]
        )
    return ("-" if sign else "") + text


def _decimal(precision: int, scale: int) -> Converter:
    name = f"Decimal({precision}, {scale})"

    def convert(value: Any) -> str:
        if isinstance(value, bool):
            raise ValueError(f"expected a number, got {json_type(value)}")
        if isinstance(value, int):
            number = Decimal(value)
        elif isinstance(value, float):
            if not math.isfinite(value):
                raise ValueError(f"{value!r} is not a finite number")
            number = Decimal(repr(value))  # the shortest text that reads back as this double
            if len(number.as_tuple().digits) > _EXACT_FLOAT_DIGITS:
                raise ValueError(
                    f"{value!r} has more digits than a JSON number carries exactly; send it as text"
                )
        elif isinstance(value, str):
            if len(value) > 200 or not _NUMERIC_TEXT.fullmatch(value):
                raise ValueError(f"expected a number or numeric text, got {shown(value)}")
            number = Decimal(value)
        else:
            raise ValueError(f"expected a number or numeric text, got {json_type(value)}")
        sign, digits, exponent = number.as_tuple()
        assert isinstance(exponent, int)  # finite: checked above
        digits = tuple(digits)
        while len(digits) > 1 and digits[-1] == 0:
            digits, exponent = digits[:-1], exponent + 1
        if digits == (0,):
            return "0"
        if max(0, -exponent) > scale:
            raise ValueError(
                f"{shown(value)} has more than {scale} digits after the point for {name}"
            )
        if max(0, len(digits) + exponent) > precision - scale:
            raise ValueError(
                f"{shown(value)} is out of range for {name} "
                f"(at most {precision - scale} digits before the point)"
            )
        return _plain_decimal(sign, digits, exponent)

    return convert


_UUID_TEXT = re.compile(
    r"\{?[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}\}?"
)


def _uuid(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError(f"expected a UUID string, got {json_type(value)}")
    if not _UUID_TEXT.fullmatch(value) or value.startswith("{") != value.endswith("}"):
        raise ValueError(f"{shown(value)} is not a UUID")
    return str(uuid.UUID(value))


def _ipv4(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError(f"expected an IPv4 address string, got {json_type(value)}")
    try:
        return str(ipaddress.IPv4Address(value))
    except ValueError:
        raise ValueError(f"{shown(value)} is not an IPv4 address") from None


def _ipv6(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError(f"expected an IP address string, got {json_type(value)}")
    try:
        address = ipaddress.ip_address(value)
    except ValueError:
        raise ValueError(f"{shown(value)} is not an IP address") from None
    if isinstance(address, ipaddress.IPv4Address):
        return f"::ffff:{address}"
    if address.scope_id is not None:
        raise ValueError(f"{shown(value)} has a scope, which IPv6 columns cannot store")
    if address.ipv4_mapped is not None:  # Python versions print these differently
        return f"::ffff:{address.ipv4_mapped}"
    return str(address)


def _enum(names: tuple[str, ...]) -> Converter:
    known = frozenset(names)
    listed = ", ".join(map(repr, names[:10])) + (", …" if len(names) > 10 else "")

    def convert(value: Any) -> str:
        if isinstance(value, str) and value in known:
            return value
        got = shown(value) if isinstance(value, str) else json_type(value)
        raise ValueError(f"expected one of {listed}, got {got}")

    return convert


def _nullable(inner: Converter) -> Converter:
    def convert(value: Any) -> Any:
        return None if value is None else inner(value)

    return convert


def _map_key(kind: ClickHouseType, limits: _Limits) -> Converter:
    """Map keys arrive as JSON object keys, so as text: each is checked as its type reads
    it and kept as text."""
    _, base = unwrap(kind)
    if base.name in INT_RANGES or base.name in _BIG_INT_RANGES:
        low, high = {**INT_RANGES, **_BIG_INT_RANGES}[base.name]

        def integer(key: str) -> str:
            if not _INTEGER_TEXT.fullmatch(key):
                raise ValueError(f"key {shown(key)} is not an integer")
            number = int(key)
            if not low <= number <= high:
                raise ValueError(f"key {number} is out of range for {base.name} ({low}..{high})")
            return str(number)

        return integer
    if base.name in (
        "String",
        "FixedString",
        "UUID",
        "Date",
        "Date32",
        "Enum8",
        "Enum16",
        "IPv4",
        "IPv6",
    ):
        return _build(kind, _Limits(limits.max_string_bytes))
    raise ValueError(f"Map keys of type {base.name} are not supported")


_DECIMAL_PRECISION = {"Decimal32": 9, "Decimal64": 18, "Decimal128": 38, "Decimal256": 76}
_KNOWN = frozenset(
    {
        *("Nullable", "LowCardinality", "Array", "Map", "Tuple", "JSON", "Object"),
        *("String", "FixedString", "Float32", "Float64", "Bool", "Boolean", "UUID"),
        *("IPv4", "IPv6", "Date", "Date32", "DateTime", "DateTime64", "Decimal"),
        *("Enum", "Enum8", "Enum16"),
        *INT_RANGES,
        *_BIG_INT_RANGES,
        *_DECIMAL_PRECISION,
    }
)


def _build(kind: ClickHouseType, limits: _Limits) -> Converter:
    """The converter of a type's present, non-null JSON values; ValueError names what in the
    type cannot be read or is not supported."""
    name = kind.name
    if name not in _KNOWN:
        raise ValueError(f"{name} is not a type Pipit can ingest")
    if name in ("Nullable", "LowCardinality"):
        argument_count(kind, 1, 1)
        if not isinstance(kind.args[0], ClickHouseType):
            raise ValueError(f"{name} takes a type")
        inner = _build(kind.args[0], limits)
        return _nullable(inner) if name == "Nullable" else inner
    if name in ("Array", "Map", "Tuple") and not all(map(is_type, kind.args)):
        raise ValueError(f"{name} takes types")
    element_limits = _Limits(limits.max_string_bytes)
    if name == "Array":
        argument_count(kind, 1, 1)
        return array_of(_build(kind.args[0], element_limits))
    if name == "Map":
        argument_count(kind, 2, 2)
        key, value = kind.types()
        return map_of(_map_key(key, limits), _build(value, element_limits))
    if name == "Tuple":
        argument_count(kind, 1, 10_000)
        names = [a.name if isinstance(a, NamedElement) else None for a in kind.args]
        if any(names) and not all(names):
            raise ValueError("a Tuple names all its elements or none")
        return tuple_of(
            [
                (element_name, _build(element, element_limits), unwrap(element)[0])
                for element_name, element in zip(names, kind.types(), strict=True)
            ]
        )
    if name == "DateTime64":
        argument_count(kind, 1, 2)
        precision = int_argument(kind, 0, 0, 9)
        time_zone_argument(kind, 1)
        return datetime64_converter(precision)
    if name == "DateTime":
        argument_count(kind, 0, 1)
        time_zone_argument(kind, 0)
        return parse_datetime
    if name == "FixedString":
        argument_count(kind, 1, 1)
        return _fixed_string(int_argument(kind, 0, 1, 1_000_000))
    if name == "Decimal":
        argument_count(kind, 1, 2)
        precision = int_argument(kind, 0, 1, 76)
        scale = int_argument(kind, 1, 0, precision) if len(kind.args) == 2 else 0
        return _decimal(precision, scale)
    if name in _DECIMAL_PRECISION:
        argument_count(kind, 1, 1)
        precision = _DECIMAL_PRECISION[name]
        return _decimal(precision, int_argument(kind, 0, 0, precision))
    if name in ("Enum8", "Enum16", "Enum"):
        if not kind.args or not all(isinstance(a, str | EnumValue) for a in kind.args):
            raise ValueError(f"{name} takes 'name' = value pairs")
        names = enum_names(kind)
        if len(set(names)) != len(names):
            raise ValueError(f"{name} names a value twice")
        return _enum(names)
    if name == "Object":
        if kind.args != ("json",):
            raise ValueError("only Object('json') is supported")
        return json_object(limits.max_string_bytes)
    if kind.args:
        raise ValueError(f"{name} takes no arguments")
    if name == "String":
        return _string(limits.max_string_bytes, limits.json_text)
    if name in INT_RANGES:
        return _integer(name)
    if name in _BIG_INT_RANGES:
        return _big_integer(name)
    simple: dict[str, Converter] = {
        "Float32": _float32,
        "Float64": _float,
        "Bool": _bool,
        "Boolean": _bool,
        "UUID": _uuid,
        "IPv4": _ipv4,
        "IPv6": _ipv6,
        "JSON": json_object(limits.max_string_bytes),
    }
    if name in DATE_RANGES:
        return date_converter(name)
    return simple[name]


DEFAULT_MAX_STRING_BYTES = 64 * 1024

Columns = list[list[Any]]
"""A batch as one list of values per column, in column order."""


def _json_text(text: Any) -> Any:
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise ValueError(f"expected JSON text, got {shown(text)} ({exc})") from None


def json_text_of(convert: Converter) -> Converter:
    def parsed(value: Any) -> Any:
        return convert(_json_text(value) if isinstance(value, str) else value)

    return parsed


def value_converter(
    kind: ClickHouseType, max_string_bytes: int, json_text: bool = False
) -> Converter:
    """The converter of a type's present JSON values (null too, inside a Nullable):
    returns what is stored, raises ValueError (a ValueAt inside composites) saying why a
    value cannot be. `json_text` lets a String column take objects and arrays as their
    JSON text. Raises ValueError, saying what, for a type that cannot be ingested."""
    return _build(kind, _Limits(max_string_bytes, json_text))
