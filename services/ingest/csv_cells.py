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
_TRUE_TEXT = frozenset({"true", "1"})
_FALSE_TEXT = frozenset({"false", "0"})
# The length of `YYYY-MM-DD HH:MM:SS`, the one text form of a DateTime Arrow converts.
_DATETIME_LENGTH = 19


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
    """How the cells of one column become values: `cell` one at a time, `whole` a batch's
    list of cells, `arrow` a batch's Arrow array of text (with whether a value of it may be
    MISSING)."""

    column: Column
    cell: Callable[[str], Any]
    whole: Callable[[list[str]], list[Any]]
    arrow: Callable[[pa.Array], tuple[list[Any], bool]]


def column_rules(column: Column) -> ColumnRules:
    """The rules of `column`'s cells."""
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

    def from_arrow(array: pa.Array) -> tuple[list[Any], bool]:
        values = arrow(array)
        if values is None:
            return each(pylist(array)), not text
        return values, False

    return ColumnRules(column, read, each, from_arrow)


def pylist(array: pa.Array) -> list[Any]:
    """An Arrow array's values as a Python list."""
    # Through NumPy: Arrow makes the Python objects in C++ (to_pylist makes a scalar each).
    return array.to_numpy(zero_copy_only=False).tolist()


def _no_arrow(_array: pa.Array) -> None:
    return None


def _integers(kind: pa.DataType) -> Callable[[pa.Array], list[Any] | None]:
    def convert(array: pa.Array) -> list[Any] | None:
        # Arrow reads 0x1f as hexadecimal, which int() refuses (a substring search: a tenth
        # of a regular expression's time); else it takes digits and a minus sign, as int()
        # does. None for the rest (an empty cell, \N, spaces, a number too large), which
        # int() and the cell rules decide.
        if pc.any(pc.match_substring(array, "x")).as_py():
            return None
        if pc.any(pc.match_substring(array, "X")).as_py():
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
    when every cell is `YYYY-MM-DD HH:MM:SS` in DateTime's range, read as UTC as the
    validator reads that text; None otherwise (the validator parses the text and names what
    is wrong)."""
    if not len(array):
        return None
    lengths = pc.min_max(pc.binary_length(array))
    if lengths["min"].as_py() != _DATETIME_LENGTH or lengths["max"].as_py() != _DATETIME_LENGTH:
        return None
    # 19 characters with a space after the date: Arrow's ISO 8601 cast then takes only
    # `YYYY-MM-DD HH:MM:SS` (a T, a fraction or a zone would not fit, and it refuses a day or
    # a second out of range); printing every time back to compare was 10 times slower.
    if not pc.all(pc.equal(pc.utf8_slice_codeunits(array, 10, 11), " ")).as_py():
        return None
    try:
        seconds = array.cast(pa.timestamp("s")).cast(pa.int64())
    except pa.ArrowInvalid:
        return None
    bounds = pc.min_max(seconds)
    if bounds["min"].as_py() < DATETIME_MIN or bounds["max"].as_py() > DATETIME_MAX:
        return None
    return pylist(seconds)
