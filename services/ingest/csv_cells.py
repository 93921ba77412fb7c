"""How the text of a CSV file's cells becomes the values the validator checks, a column at
a time: by Arrow's compute kernels where their answer is Python's (services/ingest/
csv_reader.py reads most files with Arrow), else by Python a cell at a time, as the csv
module's rows always were. Either way the values are the same."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.compute as pc

from common.clickhouse_type import read_type, unwrap
from common.column_values import INT_RANGES
from common.datasources import Column
from common.timeparse import DATETIME_MAX, DATETIME_MIN

# ClickHouse's CSV spelling of NULL.
_CSV_NULL = "\\N"
_INTEGER = re.compile(r"[+-]?[0-9]+")
_INTEGER_TEXT = "^[+-]?[0-9]+$"
_TRUE_TEXT = frozenset({"true", "1"})
_FALSE_TEXT = frozenset({"false", "0"})
# The one text form of a DateTime Arrow turns into epoch seconds itself (and then checks by
# printing it back): anything else stays text for the validator's own parser.
_DATETIME_TEXT = r"^[0-9]{4}-[0-9]{2}-[0-9]{2} [0-9]{2}:[0-9]{2}:[0-9]{2}$"
_DATETIME_FORMAT = "%Y-%m-%d %H:%M:%S"


class _Missing:
    __slots__ = ()


MISSING: Any = _Missing()
"""A cell with no value in a column that needs one: its event leaves the field out (so the
validator settles it: a default, or the reason it is missing)."""


def _csv_cell(column: Column) -> Callable[[str], Any]:
    """How a CSV cell becomes the JSON value the validator checks for `column`: numbers and
    flags parsed from their text, composite values from JSON, `\\N` (and an empty cell in a
    Nullable column that is not text) as null; text that does not parse stays text, so the
    validator names what is wrong with it."""
    nullable, base = unwrap(read_type(column.type))
    name = base.name
    text_column = name in ("String", "FixedString")

    def settle(cell: str) -> Any:
        if cell == _CSV_NULL and nullable:
            return None
        if cell == "" and nullable and not text_column:
            return None
        return MISSING if cell == "" and not text_column else cell

    if name in INT_RANGES:

        def integer(cell: str) -> Any:
            if _INTEGER.fullmatch(cell):
                return int(cell)
            return settle(cell)

        return integer
    if name in ("Float32", "Float64"):

        def number(cell: str) -> Any:
            try:
                return float(cell)
            except ValueError:
                return settle(cell)

        return number
    if name == "Bool":

        def flag(cell: str) -> Any:
            lowered = cell.lower()
            if lowered in _TRUE_TEXT:
                return True
            if lowered in _FALSE_TEXT:
                return False
            return settle(cell)

        return flag
    if name in ("Array", "Map", "Tuple", "JSON", "Object"):

        def composite(cell: str) -> Any:
            try:
                return orjson.loads(cell)
            except orjson.JSONDecodeError:
                return settle(cell)

        return composite
    return settle


@dataclass(frozen=True)
class ColumnRules:
    """How the cells of one column become values: `cell` one at a time, `column` a whole
    batch's list of cells, `arrow` a whole batch's Arrow array of text."""

    column: Column
    cell: Callable[[str], Any]
    whole: Callable[[list[str]], list[Any]]
    arrow: Callable[[pa.Array], list[Any]]


def column_rules(column: Column) -> ColumnRules:
    read = _csv_cell(column)
    nullable, base = unwrap(read_type(column.type))
    text = base.name in ("String", "FixedString") and not nullable
    whole: Callable[[str], Any] | None = None
    if base.name in INT_RANGES:
        whole = int
    elif base.name in ("Float32", "Float64"):
        whole = float

    def each(cells: list[str]) -> list[Any]:
        """At C speed where every cell is a plain number (or the column is text), else a
        cell at a time."""
        if text:
            return cells
        if whole is not None:
            try:
                return list(map(whole, cells))
            except ValueError:
                pass
        return list(map(read, cells))

    arrow: Callable[[pa.Array], Any | None] = _no_arrow
    required = not nullable and not column.default_expression
    if text:
        arrow = pylist
    elif base.name in INT_RANGES:
        arrow = _integers(pa.uint64() if base.name == "UInt64" else pa.int64())
    elif base.name in ("Float32", "Float64"):
        arrow = _floats
    elif base.name == "DateTime" and required:
        arrow = _datetimes

    def from_arrow(array: pa.Array) -> list[Any]:
        values = arrow(array)
        return each(pylist(array)) if values is None else values

    return ColumnRules(column, read, each, from_arrow)


def pylist(array: pa.Array) -> list[Any]:
    """An Arrow array's values as a Python list."""
    # Through NumPy: Arrow makes the Python objects in C++ (topylist makes a scalar each).
    return array.to_numpy(zero_copy_only=False).tolist()


def _no_arrow(_array: pa.Array) -> None:
    return None


def _integers(kind: pa.DataType) -> Callable[[pa.Array], list[Any] | None]:
    def convert(array: pa.Array) -> list[Any] | None:
        # Only digits and a sign: Arrow reads 0x1f as hexadecimal, int() refuses it. None
        # for the rest (an empty cell, \N, spaces, a number too large), which int() and
        # the cell rules decide.
        if not pc.all(pc.match_substring_regex(array, _INTEGER_TEXT)).as_py():
            return None
        try:
            return pylist(pc.cast(array, kind))
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            return None

    return convert


def _floats(array: pa.Array) -> list[Any] | None:
    try:
        numbers = pc.cast(array, pa.float64())
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return None
    # A spelling of infinity or NaN float() may not share: Python decides those.
    if len(numbers) and not pc.all(pc.is_finite(numbers)).as_py():
        return None
    return pylist(numbers)


def _datetimes(array: pa.Array) -> list[Any] | None:
    """A required DateTime column as epoch seconds (the validator takes those as they are)
    when every cell is `YYYY-MM-DD HH:MM:SS` in DateTime's range, UTC, as the validator reads
    that text; None otherwise (the validator parses the text and names what is wrong)."""
    if not len(array) or not pc.all(pc.match_substring_regex(array, _DATETIME_TEXT)).as_py():
        return None
    moments = pc.strptime(array, format=_DATETIME_FORMAT, unit="s", error_is_null=True)
    if moments.null_count:
        return None
    # Printed back to the same text: no day or second Arrow's parser would roll over.
    if not pc.all(pc.equal(pc.strftime(moments, format=_DATETIME_FORMAT), array)).as_py():
        return None
    seconds = moments.cast(pa.int64())
    bounds = pc.min_max(seconds)
    if bounds["min"].as_py() < DATETIME_MIN or bounds["max"].as_py() > DATETIME_MAX:
        return None
    return pylist(seconds)
