"""Date-times as Pipit reads them: `YYYY-MM-DD HH:MM:SS` (UTC), RFC 3339 or epoch seconds,
ASCII only, into exact epoch seconds; the DateTime range; and the converters of DateTime64 and
Date columns, which keep fractions and take a date-time's UTC date. Pipe parameters, the seeder
and ingest all read date-times here, so they agree on every form."""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_FLOOR, Decimal, localcontext
from typing import Any

import orjson

from common.value_messages import json_type, shown

DATETIME_MIN = 0
DATETIME_MAX = 4_294_967_295  # ClickHouse DateTime is a UInt32 of seconds: up to 2106-02-07.

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


def text_instant(value: str, forms: str) -> Decimal:
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


def instant(value: Any) -> Decimal:
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
        return text_instant(value, _DATETIME64_FORMS)
    raise ValueError(f"expected a date-time string or epoch seconds, got {json_type(value)}")


_DATETIME64_MIN = -2_208_988_800  # 1900-01-01 00:00:00
_DATETIME64_LAST_SECOND = 10_413_791_999  # 2299-12-31 23:59:59


def datetime64_converter(precision: int) -> Callable[[Any], Any]:
    scale = 10**precision
    low = _DATETIME64_MIN * scale
    # Ticks are an Int64: at nanoseconds the range ends in 2262.
    high = min((_DATETIME64_LAST_SECOND + 1) * scale - 1, 2**63 - 1)
    span = _range_text(low, high, precision)

    def convert(value: Any) -> orjson.Fragment:
        seconds = instant(value)
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
DATE_RANGES = {
    "Date": (date(1970, 1, 1), date(2149, 6, 6)),
    "Date32": (date(1900, 1, 1), date(2299, 12, 31)),
}
_DATE_FORMS = "use YYYY-MM-DD, or a date-time text whose UTC date is taken"


def date_converter(type_name: str) -> Callable[[Any], Any]:
    low, high = DATE_RANGES[type_name]

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
                seconds = text_instant(value, _DATE_FORMS)
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
