"""Demo events for any datasource, made from its column types alone: what `pipit seed`
sends to a datasource it has no hand-written generator for (a deployed project's). Values
are deterministic for a seed, valid for their type, spread over the last `days` days, and
placed where each column's JSON path says."""

from __future__ import annotations

import random
import re
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

from common.column_types import ColumnType, parse
from common.datasources import Datasource

_INT_BITS = re.compile(r"^(U?)Int(\d+)$")
_DECIMAL = re.compile(r"^Decimal(?:(32|64|128|256)\((\d+)\)|\((\d+),\s*(\d+)\))$")
_ENUM_NAME = re.compile(r"'((?:[^'\\]|\\.)*)'\s*=")
_FIXED = re.compile(r"^FixedString\((\d+)\)$")
# How many distinct values a string column takes: a few, so that GROUP BYs mean something.
_DISTINCT_STRINGS = 25


def _value(column: str, kind: ColumnType, rng: random.Random, moment: datetime) -> Any:
    if kind.element is not None:
        return [_value(column, kind.element, rng, moment) for _ in range(rng.randint(0, 3))]
    if kind.nullable and rng.random() < 0.1:
        return None
    name, base = kind.name, kind.base
    if name in ("Float32", "Float64"):
        return round(rng.uniform(0, 1000), 2)
    if name == "Bool":
        return rng.random() < 0.5
    if match := _INT_BITS.match(name):
        unsigned, bits = match.group(1) == "U", int(match.group(2))
        high = min(2 ** (bits - (0 if unsigned else 1)) - 1, 1_000_000)
        return rng.randint(0 if unsigned else -high, high)
    if name == "Date" or name == "Date32":
        return moment.strftime("%Y-%m-%d")
    if name.startswith("DateTime"):
        return moment.strftime("%Y-%m-%d %H:%M:%S")
    if name == "UUID":
        return str(uuid.UUID(int=rng.getrandbits(128)))
    if name == "IPv4":
        return f"10.{rng.randint(0, 255)}.{rng.randint(0, 255)}.{rng.randint(1, 254)}"
    if name == "IPv6":
        return f"fd00::{rng.randint(1, 0xFFFF):x}"
    if match := _DECIMAL.match(base):
        scale = int(match.group(2) or match.group(4))
        return f"{rng.uniform(0, 1000):.{scale}f}"
    if name.startswith("Enum"):
        names = _ENUM_NAME.findall(base)
        return rng.choice(names) if names else ""
    if match := _FIXED.match(base):
        return f"{rng.randint(0, 10 ** int(match.group(1)) - 1)}"[: int(match.group(1))]
    if name in ("Map", "JSON", "Object", "Tuple"):
        return {}
    return f"{column}_{rng.randint(1, _DISTINCT_STRINGS)}"


def _place(event: dict[str, Any], path: tuple[str, ...], value: Any) -> None:
    for key in path[:-1]:
        event = event.setdefault(key, {})
    event[path[-1]] = value


def generate(ds: Datasource, count: int, *, days: int = 30, seed: int = 42) -> Iterator[dict]:
    """`count` events for `ds`, oldest first, over the `days` days before today (UTC)."""
    rng = random.Random(f"{seed}:{ds.name}")
    end = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    start = end - timedelta(days=days)
    span = int((end - start).total_seconds())
    moments = sorted(rng.randrange(span) for _ in range(count))
    kinds = [(column, parse(column.type)) for column in ds.columns]
    for offset in moments:
        moment = start + timedelta(seconds=offset)
        event: dict[str, Any] = {}
        for column, kind in kinds:
            _place(
                event, column.json_path or (column.name,), _value(column.name, kind, rng, moment)
            )
        yield event


def events_for(ds: Datasource, count: int, *, days: int = 30, seed: int = 42) -> Iterator[dict]:
    """Demo events for `ds`: the tutorials' realistic ones when it is one of theirs (same
    name, same columns, read from the event's top level), else events made from its types."""
    from common.datasources import registry
    from pipit.seed import generator

    if (
        ds.name in generator.DATASOURCES
        and not any(c.json_path for c in ds.columns)
        and set(ds.column_names) == set(registry()[ds.name].column_names)
    ):
        return generator.generate(ds.name, count, days=days, seed=seed)
    return generate(ds, count, days=days, seed=seed)
