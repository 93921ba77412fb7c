"""Parameter types: a request's value checked and converted to a type's Python value and to
the text ClickHouse parses for it (the bound value)."""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from common.timeparse import parse_datetime
from common.warehouse.base import quoted_string

INTEGER_BITS = (8, 16, 32, 64, 128, 256)
_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_INTEGER = re.compile(r"[+-]?[0-9]+")
_FLOAT = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")


class InvalidValue(ValueError):
    """A value that does not fit a type; the message says why (without the name)."""


@dataclass(frozen=True)
class ValueType:
    """A parameter's ClickHouse type: a scalar, or an Array of one."""

    sql: str
    element: ValueType | None = None

    @property
    def family(self) -> str:
        """What Python compares its values as: str, number, bool or list."""
        if self.element is not None:
            return "list"
        if self.sql == "Bool":
            return "bool"
        if self.sql.startswith(("Int", "UInt", "Float")):
            return "number"
        return "str"

    def convert(self, value: object) -> tuple[object, str]:
        """(Python value, text ClickHouse parses) for `value`, or InvalidValue."""
        if self.element is not None:
            return self._array(value)
        try:
            return _SCALAR_CONVERTERS[self.sql](self.sql, value)
        except InvalidValue:
            raise
        except (ValueError, OverflowError):  # e.g. an integer too long to read or to float
            raise InvalidValue(f"{short(value)} is not a valid {self.sql}") from None

    def _array(self, value: object) -> tuple[object, str]:
        assert self.element is not None
        if isinstance(value, str):
            # Tinybird's arrays arrive comma-separated; numbers may carry spaces.
            items: list[object] = value.split(",")
            if self.element.sql != "String":
                items = [str(item).strip(" ") for item in items]
        elif isinstance(value, list | tuple):
            items = list(value)
        else:
            raise InvalidValue(f"expected a list of {self.element.sql}, got {kind(value)}")
        python: list[object] = []
        texts: list[str] = []
        for index, item in enumerate(items):
            try:
                converted, text = self.element.convert(item)
            except InvalidValue as exc:
                raise InvalidValue(f"item {index}: {exc}") from None
            python.append(converted)
            texts.append(quoted_string(text) if self.element.family == "str" else text)
        return python, "[" + ",".join(texts) + "]"


def kind(value: object) -> str:
    return {
        bool: "a boolean",
        int: "an integer",
        float: "a number",
        str: "a string",
        list: "a list",
        tuple: "a list",
        type(None): "nothing",
    }.get(type(value), type(value).__name__)


def _string(_: str, value: object) -> tuple[object, str]:
    if isinstance(value, bool):
        raise InvalidValue("expected a string, got a boolean")
    if isinstance(value, int | float):
        value = repr(value) if isinstance(value, float) else str(value)
    if not isinstance(value, str):
        raise InvalidValue(f"expected a string, got {kind(value)}")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidValue("not valid Unicode text") from None
    return value, value


def _bool(_: str, value: object) -> tuple[object, str]:
    if isinstance(value, bool):
        result = value
    elif isinstance(value, int) and value in (0, 1):
        result = bool(value)
    elif isinstance(value, str) and value.lower() in ("true", "false", "1", "0"):
        result = value.lower() in ("true", "1")
    else:
        raise InvalidValue(f"expected true or false, got {short(value)}")
    return result, "true" if result else "false"


def _integer(sql: str, value: object) -> tuple[object, str]:
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise InvalidValue(f"expected an integer, got {kind(value)}")
    if isinstance(value, str):
        # ASCII only: int() would also read other scripts' digits.
        if not (value.isascii() and len(value) <= 80 and _INTEGER.fullmatch(value)):
            raise InvalidValue(f"expected an integer, got {short(value)}")
        value = int(value)
    bits = int(sql.removeprefix("U").removeprefix("Int"))
    low, high = (
        (0, 2**bits - 1) if sql.startswith("U") else (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1)
    )
    if not low <= value <= high:
        raise InvalidValue(f"{value} is outside {sql}'s range ({low} to {high})")
    return value, str(value)


def _float(sql: str, value: object) -> tuple[object, str]:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise InvalidValue(f"expected a number, got {kind(value)}")
    if isinstance(value, str):
        if not (value.isascii() and _FLOAT.fullmatch(value)):
            raise InvalidValue(f"expected a number, got {short(value)}")
    number = float(value)
    if not math.isfinite(number) or (sql == "Float32" and abs(number) > 3.4028234663852886e38):
        raise InvalidValue(f"{short(value)} is outside {sql}'s range")
    return number, repr(number)


def _date(_: str, value: object) -> tuple[object, str]:
    if not (isinstance(value, str) and value.isascii() and _DATE.fullmatch(value)):
        raise InvalidValue(f"expected a date YYYY-MM-DD, got {short(value)}")
    try:
        day = date.fromisoformat(value)
    except ValueError:
        raise InvalidValue(f"{value!r} is not a date") from None
    if not date(1970, 1, 1) <= day <= date(2149, 6, 6):
        raise InvalidValue(f"{value} is outside Date's range (1970-01-01 to 2149-06-06)")
    return value, value


def _datetime(_: str, value: object) -> tuple[object, str]:
    text = value
    if isinstance(value, str) and value.isascii() and _DATE.fullmatch(value.strip()):
        text = value.strip() + " 00:00:00"  # a bare date means its first second
    try:
        seconds = parse_datetime(text)
    except ValueError as exc:
        raise InvalidValue(str(exc)) from None
    formatted = datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%d %H:%M:%S")
    return formatted, formatted


def _datetime64(_: str, value: object) -> tuple[object, str]:
    if isinstance(value, bool):
        raise InvalidValue("expected a date-time, got a boolean")
    if isinstance(value, int | float):
        if not math.isfinite(value):
            raise InvalidValue("not a finite number")
        try:
            moment = datetime.fromtimestamp(0, UTC) + timedelta(seconds=value)
        except OverflowError:
            raise InvalidValue(f"{value} is outside DateTime64's range") from None
    elif isinstance(value, str) and value.isascii():
        text = value.strip()
        if _DATE.fullmatch(text):
            text += " 00:00:00"
        try:
            moment = datetime.fromisoformat(text)
        except ValueError:
            raise InvalidValue(
                f"{short(value)} is not a date-time (YYYY-MM-DD HH:MM:SS.sss)"
            ) from None
        moment = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    else:
        raise InvalidValue(f"expected a date-time, got {short(value)}")
    if not datetime(1900, 1, 1, tzinfo=UTC) <= moment < datetime(2300, 1, 1, tzinfo=UTC):
        raise InvalidValue(f"{short(value)} is outside DateTime64's range (1900 to 2299)")
    formatted = moment.strftime("%Y-%m-%d %H:%M:%S.") + f"{moment.microsecond // 1000:03d}"
    return formatted, formatted


_SCALAR_CONVERTERS: dict[str, Callable[[str, object], tuple[object, str]]] = {
    "String": _string,
    "Bool": _bool,
    **{f"Int{bits}": _integer for bits in INTEGER_BITS},
    **{f"UInt{bits}": _integer for bits in INTEGER_BITS},
    "Float32": _float,
    "Float64": _float,
    "Date": _date,
    "DateTime": _datetime,
    "DateTime64(3)": _datetime64,
}


def short(value: object, limit: int = 40) -> str:
    try:
        text = repr(value)
    except ValueError:  # an integer of more digits than Python will print
        return f"{kind(value)} too long to show"
    return text if len(text) <= limit else text[: limit - 1] + "…"


SAMPLES: dict[str, object] = {
    "String": "",
    "Bool": False,
    **{f"Int{bits}": 0 for bits in INTEGER_BITS},
    **{f"UInt{bits}": 0 for bits in INTEGER_BITS},
    "Float32": 0.0,
    "Float64": 0.0,
    "Date": "2000-01-01",
    "DateTime": "2000-01-01 00:00:00",
    "DateTime64(3)": "2000-01-01 00:00:00.000",
}
