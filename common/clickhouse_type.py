"""ClickHouse type text (`Nullable(DateTime64(3, 'UTC'))`, `Tuple(a String, b Int8)`) read
into a tree that ingest's converters are built from."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError


@dataclass(frozen=True)
class ClickHouseType:
    """A ClickHouse type: its name and its arguments (types, numbers, quoted text, named
    tuple elements, enum values)."""

    name: str
    args: tuple[Any, ...] = ()

    def types(self) -> list[ClickHouseType]:
        return [a.type if isinstance(a, NamedElement) else a for a in self.args if is_type(a)]


@dataclass(frozen=True)
class NamedElement:
    """`name Type`, an element of a named Tuple."""

    name: str
    type: ClickHouseType


@dataclass(frozen=True)
class EnumValue:
    """`'name' = value` in an Enum."""

    name: str
    value: int


def is_type(arg: Any) -> bool:
    return isinstance(arg, ClickHouseType | NamedElement)


_TOKEN = re.compile(
    r"\s*(?:(?P<ident>[A-Za-z_][A-Za-z0-9_]*)|(?P<text>'(?:[^'\\]|\\.|'')*')"
    r"|(?P<quoted>`(?:[^`\\]|\\.|``)*`)|(?P<int>[+-]?[0-9]+)|(?P<punct>[(),=]))"
)
_ESCAPE = re.compile(r"\\(.)|''|``")


def _unquote(token: str) -> str:
    return _ESCAPE.sub(
        lambda m: m.group(1) if m.group(1) is not None else m.group(0)[0], token[1:-1]
    )


class _TypeReader:
    """Reads ClickHouse type text into a ClickHouseType, refusing anything it cannot read."""

    def __init__(self, text: str) -> None:
        self.tokens: list[tuple[str, Any]] = []
        text = text.strip()
        pos = 0
        while pos < len(text):
            match = _TOKEN.match(text, pos)
            if match is None:
                raise ValueError(f"cannot read {text[pos:].strip()!r}")
            kind = match.lastgroup or ""
            raw = match.group(kind)
            value: Any = raw
            if kind in ("text", "quoted"):
                value = _unquote(raw)
            elif kind == "int":
                value = int(raw)
            self.tokens.append((kind, value))
            pos = match.end()
        self.pos = 0

    def _peek(self, offset: int = 0) -> tuple[str, Any]:
        index = self.pos + offset
        return self.tokens[index] if index < len(self.tokens) else ("end", None)

    def _take(self, kind: str, value: Any = None) -> Any:
        token = self._peek()
        if token[0] != kind or (value is not None and token[1] != value):
            wanted = repr(value) if value is not None else kind
            got = "the end" if token[0] == "end" else repr(token[1])
            raise ValueError(f"expected {wanted}, found {got}")
        self.pos += 1
        return token[1]

    def read(self) -> ClickHouseType:
        kind = self.type()
        if self._peek()[0] != "end":
            raise ValueError(f"unexpected {self._peek()[1]!r} after the type")
        return kind

    def type(self) -> ClickHouseType:
        name = self._take("ident")
        if self._peek() != ("punct", "("):
            return ClickHouseType(name)
        if name == "JSON":
            raise ValueError("JSON with parameters (typed paths, SKIP, limits) is not supported")
        self._take("punct", "(")
        args: list[Any] = []
        if self._peek() != ("punct", ")"):
            args.append(self._argument())
            while self._peek() == ("punct", ","):
                self.pos += 1
                args.append(self._argument())
        self._take("punct", ")")
        return ClickHouseType(name, tuple(args))

    def _argument(self) -> Any:
        kind, value = self._peek()
        if kind == "text":
            self.pos += 1
            if self._peek() == ("punct", "="):
                self.pos += 1
                return EnumValue(value, self._take("int"))
            return value
        if kind == "int":
            self.pos += 1
            return value
        if kind == "quoted" or (kind == "ident" and self._peek(1)[0] == "ident"):
            self.pos += 1
            return NamedElement(value, self.type())
        return self.type()


def read_type(text: str) -> ClickHouseType:
    """A ClickHouse type's text as a tree; ValueError says what cannot be read."""
    return _TypeReader(text).read()


def unwrap(kind: ClickHouseType) -> tuple[bool, ClickHouseType]:
    """(nullable, the type inside any Nullable and LowCardinality wrappers)."""
    nullable = False
    while (
        kind.name in ("Nullable", "LowCardinality")
        and len(kind.args) == 1
        and isinstance(kind.args[0], ClickHouseType)
    ):
        nullable = nullable or kind.name == "Nullable"
        kind = kind.args[0]
    return nullable, kind


def enum_names(kind: ClickHouseType) -> tuple[str, ...]:
    return tuple(a.name if isinstance(a, EnumValue) else a for a in kind.args)


_COMPOSITE = frozenset({"Array", "Map", "Tuple", "JSON", "Object"})
# Types whose values include the empty text, so an empty text field in a typed event is a
# value, not an unset field.
_TEXT = frozenset({"String", "FixedString"})


def argument_count(kind: ClickHouseType, low: int, high: int) -> None:
    if not low <= len(kind.args) <= high:
        wanted = "1 argument" if low == high == 1 else f"{low} to {high} arguments"
        raise ValueError(f"{kind.name} takes {wanted}, got {len(kind.args)}")


def int_argument(kind: ClickHouseType, index: int, low: int, high: int) -> int:
    value = kind.args[index]
    if not isinstance(value, int) or not low <= value <= high:
        raise ValueError(f"argument {index + 1} of {kind.name} must be an integer in {low}..{high}")
    return value


def time_zone_argument(kind: ClickHouseType, index: int) -> None:
    if len(kind.args) <= index:
        return
    zone = kind.args[index]
    if not isinstance(zone, str):
        raise ValueError(f"the time zone of {kind.name} must be quoted text")
    try:
        ZoneInfo(zone)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {zone!r}") from None


def is_composite(kind: ClickHouseType) -> bool:
    """Whether a value of the (unwrapped) type is a JSON array or object, which a typed
    event carries as JSON text."""
    return kind.name in _COMPOSITE


def blank_is_value(kind: ClickHouseType) -> bool:
    """Whether the empty text is a value of the (unwrapped) type."""
    if kind.name in _TEXT:
        return True
    return kind.name in ("Enum8", "Enum16", "Enum") and "" in enum_names(kind)
