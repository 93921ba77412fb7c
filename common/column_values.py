"""ClickHouse column types as ingest reads their values: a type's text read into a tree,
and for each type the function that checks a present JSON value and returns what
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
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_FLOOR, Decimal, localcontext
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import orjson

DATETIME_MIN = 0
DATETIME_MAX = 4_294_967_295  # ClickHouse DateTime is a UInt32 of seconds: up to 2106-02-07.

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
        raise ValueError(f"expected a date-time string or epoch seconds, got {json_type(value)}")
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


def parse_datetime_fast(value: Any) -> int:
    """parse_datetime's answer, from caches for `YYYY-MM-DD HH:MM:SS`."""
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


def json_type(value: Any) -> str:
    """What a decoded JSON value is, in words, for error messages."""
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


def shown(value: Any) -> str:
    """A value in an error message: short, whatever was sent."""
    text = str(value) if isinstance(value, Decimal) else repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


class ValueAt(ValueError):
    """A value inside a composite one is wrong; `where` says which (`[2]`, `['key']`,
    `.name`), so the message names it: `field 'tags[2]': …`."""

    def __init__(self, where: str, error: ValueError) -> None:
        if isinstance(error, ValueAt):
            where, reason = where + error.where, error.reason
        else:
            reason = str(error)
        super().__init__(f"{where}: {reason}")
        self.where = where
        self.reason = reason


# --- ClickHouse types, read into a tree -------------------------------------------------


@dataclass(frozen=True)
class ClickHouseType:
    """A ClickHouse type: its name and its arguments (types, numbers, quoted text, named
    tuple elements, enum values)."""

    name: str
    args: tuple[Any, ...] = ()

    def types(self) -> list[ClickHouseType]:
        return [a.type if isinstance(a, _Named) else a for a in self.args if _is_type(a)]


@dataclass(frozen=True)
class _Named:
    """`name Type`, an element of a named Tuple."""

    name: str
    type: ClickHouseType


@dataclass(frozen=True)
class _EnumValue:
    """`'name' = value` in an Enum."""

    name: str
    value: int


def _is_type(arg: Any) -> bool:
    return isinstance(arg, ClickHouseType | _Named)


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
                return _EnumValue(value, self._take("int"))
            return value
        if kind == "int":
            self.pos += 1
            return value
        if kind == "quoted" or (kind == "ident" and self._peek(1)[0] == "ident"):
            self.pos += 1
            return _Named(value, self.type())
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
    return tuple(a.name if isinstance(a, _EnumValue) else a for a in kind.args)


_COMPOSITE = frozenset({"Array", "Map", "Tuple", "JSON", "Object"})
# Types whose values include the empty text, so an empty text field in a typed event is a
# value, not an unset field.
_TEXT = frozenset({"String", "FixedString"})


# --- Converters: one per ClickHouse type, for a present, non-null JSON value -------------

Converter = Callable[[Any], Any]


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


class Instant(Decimal):
    """Exact epoch seconds of a typed event's Timestamp (never a JSON value)."""


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_EPOCH_TEXT = re.compile(r"-?[0-9]+(?:\.[0-9]+)?")
# The fractional seconds of a date-time text, taken out before datetime.fromisoformat (which
# keeps only microseconds) and added back exactly.
_FRACTION = re.compile(
    r"(?P<head>[0-9]{4}-?[0-9]{2}-?[0-9]{2}[T ][0-9]{2}:?[0-9]{2}:?[0-9]{2})"
    r"[.,](?P<digits>[0-9]{1,30})(?P<tail>.*)",
    re.DOTALL,
)
_DATETIME64_FORMS = (
    "use YYYY-MM-DD HH:MM:SS[.fff] in UTC, RFC 3339, or epoch seconds with any fraction"
)


def _text_instant(value: str, forms: str) -> Decimal:
    """Exact epoch seconds of a date-time text (no epoch numbers): what parse_datetime
    reads, fractions kept."""
    if not value.isascii():
        raise ValueError(f"{shown(value)} is not a date-time: only ASCII digits are read ({forms})")
    text = value.strip()
    fraction = Decimal(0)
    if match := _FRACTION.fullmatch(text):
        text = match["head"] + match["tail"]
        fraction = Decimal("0." + match["digits"])
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"{shown(value)} is not a date-time ({forms})") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    since = parsed - _EPOCH
    return (
        Decimal(since.days * 86_400 + since.seconds)
        + Decimal(since.microseconds).scaleb(-6)
        + fraction
    )


def _instant(value: Any) -> Decimal:
    """Exact epoch seconds of a date-time in any form parse_datetime reads, fractions kept."""
    if isinstance(value, Decimal):
        return value
    if isinstance(value, bool):
        raise ValueError("a boolean is not a date-time")
    if isinstance(value, int):
        return Decimal(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError("not a finite number")
        return Decimal(repr(value))
    if isinstance(value, str):
        if value.isascii() and _EPOCH_TEXT.fullmatch(value.strip()) and len(value) < 60:
            return Decimal(value.strip())
        return _text_instant(value, _DATETIME64_FORMS)
    raise ValueError(f"expected a date-time string or epoch seconds, got {json_type(value)}")


_DATETIME64_MIN = -2_208_988_800  # 1900-01-01 00:00:00
_DATETIME64_LAST_SECOND = 10_413_791_999  # 2299-12-31 23:59:59


def _datetime64(precision: int) -> Converter:
    scale = 10**precision
    low = _DATETIME64_MIN * scale
    # Ticks are an Int64: at nanoseconds the range ends in 2262.
    high = min((_DATETIME64_LAST_SECOND + 1) * scale - 1, 2**63 - 1)
    span = _range_text(low, high, precision)

    def convert(value: Any) -> orjson.Fragment:
        seconds = _instant(value)
        ticks = None
        # Far outside first, so that no huge number is ever multiplied out.
        if _DATETIME64_MIN - 1 <= seconds <= _DATETIME64_LAST_SECOND + 1:
            with localcontext() as context:
                context.prec = 60
                ticks = int((seconds * scale).to_integral_value(rounding=ROUND_FLOOR))
        if ticks is None or not low <= ticks <= high:
            raise ValueError(f"{shown(value)} is outside DateTime64's range ({span})")
        whole, fraction = divmod(abs(ticks), scale)
        sign = "-" if ticks < 0 else ""
        # A JSON number: ClickHouse reads its decimal digits exactly, in any time zone.
        text = f"{sign}{whole}.{fraction:0{precision}d}" if precision else f"{sign}{whole}"
        return orjson.Fragment(text)

    return convert


def _range_text(low: int, high: int, precision: int) -> str:
    def shown(ticks: int) -> str:
        moment = _EPOCH + timedelta(seconds=ticks // 10**precision)
        return moment.strftime("%Y-%m-%d %H:%M:%S")

    return f"{shown(low)} .. {shown(high)} UTC"


_DATE_TEXT = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_DATE_RANGES = {
    "Date": (date(1970, 1, 1), date(2149, 6, 6)),
    "Date32": (date(1900, 1, 1), date(2299, 12, 31)),
}
_DATE_FORMS = "use YYYY-MM-DD, or a date-time text whose UTC date is taken"


def _date(type_name: str) -> Converter:
    low, high = _DATE_RANGES[type_name]

    def convert(value: Any) -> str:
        if isinstance(value, Decimal):  # a typed event's Timestamp
            seconds = value
        elif isinstance(value, str):
            text = value.strip()
            if value.isascii() and _DATE_TEXT.fullmatch(text):
                try:
                    day = date.fromisoformat(text)
                except ValueError:
                    raise ValueError(f"{shown(value)} is not a date ({_DATE_FORMS})") from None
                seconds = None
            else:
                seconds = _text_instant(value, _DATE_FORMS)
        else:
            # A number could be days or seconds: neither is guessed.
            raise ValueError(f"expected a date string, got {json_type(value)} ({_DATE_FORMS})")
        if seconds is not None:
            days = int((seconds / 86_400).to_integral_value(rounding=ROUND_FLOOR))
            if not -1_000_000 < days < 1_000_000:
                raise ValueError(f"{shown(value)} is outside {type_name}'s range ({low} .. {high})")
            day = date(1970, 1, 1) + timedelta(days=days)
        if not low <= day <= high:
            raise ValueError(f"{shown(value)} is outside {type_name}'s range ({low} .. {high})")
        return day.isoformat()

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


def array_of(element: Converter) -> Converter:
    def convert(value: Any) -> list[Any]:
        if type(value) is not list:
            raise ValueError(f"expected an array, got {json_type(value)}")
        try:
            return [element(item) for item in value]
        except ValueError:
            pass
        for index, item in enumerate(value):  # again, to say which element
            try:
                element(item)
            except ValueError as exc:
                raise ValueAt(f"[{index}]", exc) from None
        raise AssertionError("an element failed once but not twice")

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


def _map(key: Converter, value_of: Converter) -> Converter:
    def convert(value: Any) -> dict[str, Any]:
        if type(value) is not dict:
            raise ValueError(f"expected an object, got {json_type(value)}")
        out: dict[str, Any] = {}
        for name, item in value.items():
            try:
                stored = key(name)
            except ValueError as exc:
                raise ValueAt(f"[{shown(name)}]", exc) from None
            if stored in out:
                raise ValueAt(f"[{shown(name)}]", ValueError(f"the same key as {shown(stored)}"))
            try:
                out[stored] = value_of(item)
            except ValueError as exc:
                raise ValueAt(f"[{shown(name)}]", exc) from None
        return out

    return convert


def _tuple(elements: list[tuple[str | None, Converter, bool]]) -> Converter:
    named = all(name is not None for name, _, _ in elements)
    size = len(elements)
    expected = f"an array of {size} elements" + (" or an object" if named else "")

    def convert(value: Any) -> list[Any] | dict[str, Any]:
        if type(value) is list:
            if len(value) != size:
                raise ValueError(f"expected {expected}, got an array of {len(value)}")
            items = []
            for index, ((_, element, _), item) in enumerate(zip(elements, value, strict=True)):
                try:
                    items.append(element(item))
                except ValueError as exc:
                    raise ValueAt(f"[{index}]", exc) from None
            if named:
                return {name: item for (name, _, _), item in zip(elements, items, strict=True)}
            return items
        if named and type(value) is dict:
            out: dict[str, Any] = {}
            for name, element, nullable in elements:
                assert name is not None
                if name not in value and not nullable:
                    raise ValueError(f"missing tuple element '{name}'")
                try:
                    out[name] = element(value.get(name))
                except ValueError as exc:
                    raise ValueAt(f".{name}", exc) from None
            return out
        raise ValueError(f"expected {expected}, got {json_type(value)}")

    return convert


def _json_leaf_paths(
    obj: dict[str, Any], prefix: tuple[str, ...], seen: set[tuple[str, ...]]
) -> None:
    for key, value in obj.items():
        path = prefix + tuple(key.split("."))
        if type(value) is dict:
            _json_leaf_paths(value, path, seen)
            continue
        if path in seen:
            raise ValueError(f"the path {'.'.join(path)!r} appears twice (keys are split at dots)")
        seen.add(path)
        _json_objects_in(value)


def _json_objects_in(value: Any) -> None:
    """Objects inside arrays are JSON values of their own: each is checked alone."""
    if type(value) is list:
        for item in value:
            if type(item) is dict:
                _json_leaf_paths(item, (), set())
            else:
                _json_objects_in(item)


def _json_object(max_bytes: int) -> Converter:
    def convert(value: Any) -> dict[str, Any]:
        if type(value) is not dict:
            raise ValueError(f"expected a JSON object, got {json_type(value)}")
        try:
            size = len(orjson.dumps(value))
        except TypeError as exc:  # nesting deeper than orjson prints
            raise ValueError(f"cannot store this JSON value: {exc}") from None
        if size > max_bytes:
            raise ValueError(f"longer than the {max_bytes}-byte limit for a field")
        # ClickHouse reads `{"a.b": 1, "a": {"b": 2}}` as one path twice and refuses the
        # whole insert; refused here, it is this event's reason instead.
        _json_leaf_paths(value, (), set())
        return value

    return convert


def _argument_count(kind: ClickHouseType, low: int, high: int) -> None:
    if not low <= len(kind.args) <= high:
        wanted = "1 argument" if low == high == 1 else f"{low} to {high} arguments"
        raise ValueError(f"{kind.name} takes {wanted}, got {len(kind.args)}")


def _int_argument(kind: ClickHouseType, index: int, low: int, high: int) -> int:
    value = kind.args[index]
    if not isinstance(value, int) or not low <= value <= high:
        raise ValueError(f"argument {index + 1} of {kind.name} must be an integer in {low}..{high}")
    return value


def _time_zone_argument(kind: ClickHouseType, index: int) -> None:
    if len(kind.args) <= index:
        return
    zone = kind.args[index]
    if not isinstance(zone, str):
        raise ValueError(f"the time zone of {kind.name} must be quoted text")
    try:
        ZoneInfo(zone)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {zone!r}") from None


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
        _argument_count(kind, 1, 1)
        if not isinstance(kind.args[0], ClickHouseType):
            raise ValueError(f"{name} takes a type")
        inner = _build(kind.args[0], limits)
        return _nullable(inner) if name == "Nullable" else inner
    if name in ("Array", "Map", "Tuple") and not all(map(_is_type, kind.args)):
        raise ValueError(f"{name} takes types")
    element_limits = _Limits(limits.max_string_bytes)
    if name == "Array":
        _argument_count(kind, 1, 1)
        return array_of(_build(kind.args[0], element_limits))
    if name == "Map":
        _argument_count(kind, 2, 2)
        key, value = kind.types()
        return _map(_map_key(key, limits), _build(value, element_limits))
    if name == "Tuple":
        _argument_count(kind, 1, 10_000)
        names = [a.name if isinstance(a, _Named) else None for a in kind.args]
        if any(names) and not all(names):
            raise ValueError("a Tuple names all its elements or none")
        return _tuple(
            [
                (element_name, _build(element, element_limits), unwrap(element)[0])
                for element_name, element in zip(names, kind.types(), strict=True)
            ]
        )
    if name == "DateTime64":
        _argument_count(kind, 1, 2)
        precision = _int_argument(kind, 0, 0, 9)
        _time_zone_argument(kind, 1)
        return _datetime64(precision)
    if name == "DateTime":
        _argument_count(kind, 0, 1)
        _time_zone_argument(kind, 0)
        return parse_datetime
    if name == "FixedString":
        _argument_count(kind, 1, 1)
        return _fixed_string(_int_argument(kind, 0, 1, 1_000_000))
    if name == "Decimal":
        _argument_count(kind, 1, 2)
        precision = _int_argument(kind, 0, 1, 76)
        scale = _int_argument(kind, 1, 0, precision) if len(kind.args) == 2 else 0
        return _decimal(precision, scale)
    if name in _DECIMAL_PRECISION:
        _argument_count(kind, 1, 1)
        precision = _DECIMAL_PRECISION[name]
        return _decimal(precision, _int_argument(kind, 0, 0, precision))
    if name in ("Enum8", "Enum16", "Enum"):
        if not kind.args or not all(isinstance(a, str | _EnumValue) for a in kind.args):
            raise ValueError(f"{name} takes 'name' = value pairs")
        names = enum_names(kind)
        if len(set(names)) != len(names):
            raise ValueError(f"{name} names a value twice")
        return _enum(names)
    if name == "Object":
        if kind.args != ("json",):
            raise ValueError("only Object('json') is supported")
        return _json_object(limits.max_string_bytes)
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
        "JSON": _json_object(limits.max_string_bytes),
    }
    if name in _DATE_RANGES:
        return _date(name)
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


def is_composite(kind: ClickHouseType) -> bool:
    """Whether a value of the (unwrapped) type is a JSON array or object, which a typed
    event carries as JSON text."""
    return kind.name in _COMPOSITE


def blank_is_value(kind: ClickHouseType) -> bool:
    """Whether the empty text is a value of the (unwrapped) type."""
    if kind.name in _TEXT:
        return True
    return kind.name in ("Enum8", "Enum16", "Enum") and "" in enum_names(kind)
