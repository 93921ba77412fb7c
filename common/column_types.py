"""ClickHouse column types as Pipit reads them: what a type is made of (Nullable,
LowCardinality, Array wrappers around a base type), and which proto field carries a value
of it in a datasource's typed event, in a pipe's answer row and in a pipe's request. One
table, so the generated protos, the ingest validator and the binders agree."""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache

_WRAPPER = re.compile(r"^(Nullable|LowCardinality|Array)\((.*)\)$", re.DOTALL)
_NAME = re.compile(r"^([A-Za-z][A-Za-z0-9]*)")

_INTEGERS = {f"{p}Int{b}" for p in ("", "U") for b in (8, 16, 32, 64, 128, 256)}
# proto scalar of each integer that fits one: 64-bit and wider ones are read and printed as
# JSON numbers by Tinybird's clients, which proto3 JSON would print as strings (int64) —
# in answers they travel as double (exact to 2^53), in events and requests as the proto
# integer, and 128/256-bit ones as decimal text.
_EVENT_INTEGER = {
    "Int8": "int32",
    "Int16": "int32",
    "Int32": "int32",
    "Int64": "int64",
    "UInt8": "uint32",
    "UInt16": "uint32",
    "UInt32": "uint32",
    "UInt64": "uint64",
}


@dataclass(frozen=True)
class ColumnType:
    """A ClickHouse type, unwrapped."""

    text: str
    """As written, e.g. `Nullable(DateTime64(3, 'UTC'))`."""
    base: str
    """Inside the Nullable/LowCardinality/Array wrappers, e.g. `DateTime64(3, 'UTC')`."""
    name: str
    """The base type's name without arguments, e.g. `DateTime64`."""
    nullable: bool = False
    element: ColumnType | None = None
    """For an Array, the type of its elements."""

    @property
    def is_array(self) -> bool:
        return self.element is not None


@cache
def parse(text: str) -> ColumnType:
    """Reads a type; raises ValueError for text that is not one."""
    text = text.strip()
    nullable = False
    inner = text
    while match := _WRAPPER.match(inner):
        wrapper, inner = match.group(1), match.group(2).strip()
        if wrapper == "Array":
            return ColumnType(text, text, "Array", nullable, parse(inner))
        if wrapper == "Nullable":
            nullable = True
    name = _NAME.match(inner)
    if name is None:
        raise ValueError(f"{text!r} is not a ClickHouse type")
    return ColumnType(text, inner, name.group(1), nullable)


def _scalar(kind: ColumnType, answer: bool) -> str:
    if kind.name in ("Float32", "Float64"):
        return "double"
    if kind.name == "Bool":
        return "bool"
    if kind.name in _INTEGERS:
        if answer and kind.name not in ("Int8", "Int16", "Int32", "UInt8", "UInt16", "UInt32"):
            return "double" if kind.name in ("Int64", "UInt64") else "string"
        return _EVENT_INTEGER.get(kind.name, "string")
    # Strings, dates and times (as text), decimals (exact text), UUIDs, enums, IPs, and
    # composite values (Map, Tuple, JSON) as their JSON text.
    return "string"


def event_field(text: str) -> tuple[str, str]:
    """(label, proto type) of a datasource column's field in a typed event: `DateTime` is
    a `google.protobuf.Timestamp`, as in the built-in datasources."""
    kind = parse(text)
    if kind.element is not None:
        return "repeated", _scalar(kind.element, answer=False)
    if kind.name == "DateTime":
        return ("optional" if kind.nullable else ""), "google.protobuf.Timestamp"
    return ("optional" if kind.nullable else ""), _scalar(kind, answer=False)


def answer_field(text: str) -> tuple[str, str]:
    """(label, proto type) of a pipe's answer column in its row message."""
    kind = parse(text)
    if kind.element is not None:
        return "repeated", _scalar(kind.element, answer=True)
    return ("optional" if kind.nullable else ""), _scalar(kind, answer=True)


def parameter_field(text: str) -> tuple[str, str]:
    """(label, proto type) of a pipe parameter in its request message: `optional`, so that
    an absent parameter is told from a zero or an empty string."""
    kind = parse(text)
    if kind.element is not None:
        return "repeated", _scalar(kind.element, answer=False)
    return "optional", _scalar(kind, answer=False)
