"""Tinybird's template language, the part its docs and the tutorials use, compiled to SQL
whose every request value is a bound ClickHouse `{placeholder:Type}`.

A template is SQL with `{{ expression }}`, `{% if %}`/`{% elif %}`/`{% else %}`/`{% end %}`
(`{% end if %}` too: Tornado, whose syntax Tinybird's is, reads only `end`) and
`{# comments #}`; `{{!`, `{%!` and `{#!` write a literal `{{`, `{%`, `{#`. A leading `%`
line (Tinybird's marker for "this SQL is a template") is dropped. Expressions are Python
syntax, checked against an allow-list of node types when the template is parsed and then
evaluated by a small interpreter here: never eval or exec, no attributes, no subscripts, no
arithmetic. Anything outside what is listed below is a TemplateError naming file and line
at parse time, never a surprise at request time.

Supported, with Tinybird's meaning (its docs: "Template functions", "Query parameters",
"Templating language"; where they are silent, Tinybird's own renderer `sql_template.py`
in the `tinybird` package was read for its behaviour):

- Typed parameters `String`, `Boolean`, `Int`/`Integer` (Int32), `Int8`..`Int256`,
  `UInt8`..`UInt256`, `Float32`, `Float64`, `Date`, `DateTime`, `DateTime64` (as
  `DateTime64(3)`), `Array(name, 'Type', default)`: `T(name, default, required=...,
  description=..., example=..., format=..., enum=[...], defined=...)`. The default is
  positional or `default=`; defaults and keyword values must be literals.
- `defined(x)` (x was sent), comparisons, `and`/`or`/`not`, `in`, literals and parameter
  names in `{% if %}` conditions; `{{ ... }}` inside `{% ... %}` reads as `( ... )`.
- `column(x, 'default')`, `columns(x, 'a,b')`, `symbol(x)` (also `Column`/`Symbol`):
  backquoted identifiers that must be among the columns `render` is given.
- `sql_and(col=..., col__op=..., ...)`, operators `eq` (none), `neq`, `gt`, `gte`, `lt`,
  `lte`, `in`, `not_in` (Tinybird's), and `like`, `not_like`, `ilike`, `not_ilike`.
- `error('message', code)` and `custom_error({...}, code)`: a RenderError for the caller.
- A bare `{{ name }}`: a String parameter.

Decisions where Tinybird's docs are silent or where Pipit differs on purpose:

- A typed parameter with no default that the request does not send is an error for the
  caller, "missing required parameter", as in Tinybird (its renderer raises "Required
  parameter is not defined. Check the parameters ..."). So session_insights'
  `AND user_id = {{String(user_id)}}` makes user_id required. A `Boolean` without default
  reads as false (Tinybird's boolean()), and `defined=False` lets a use be absent: it
  evaluates to None (sql_and then leaves its condition out).
- `required=True` is enforced: a request without that parameter is refused even when the
  parameter has a default (Tinybird keeps it as documentation only). `Parameter.required`
  is true for those and for parameters a request can never do without: no default and used
  outside every `{% if %}` (so the caller's API can say so up front).
- A parameter has one default: a use without a default takes the one another use gives.
  Two different defaults, descriptions, enums or required flags for one name, or a name
  used both as an Array and as a scalar, are TemplateErrors. A name used with two scalar
  types gets one placeholder per type.
- In a condition a bare name is what the request sent (converted to the parameter's type)
  or None, not the default, as in Tinybird; an ordering comparison with None is false (as
  SQL's NULL) rather than an error.
- Values are bound, never spliced: `{{Boolean(x)}}` is `{x:Bool}` (Tinybird splices 1/0);
  `DateTime` values are UTC `YYYY-MM-DD HH:MM:SS` (a bare date is its first second, as the
  built-in pipes read it), `DateTime64` keeps milliseconds.
- `sql_and` with every value absent renders `1` (Tinybird renders nothing, which breaks the
  SQL around it), and its conditions are parenthesised as one.
- `column('a.b')` is the one identifier `a.b` (a Nested column), not `a`.`b`.
- `error()` and `custom_error()` take literal arguments and an HTTP status from 400 to 599
  (default 400); `custom_error`'s dict is the response body.
- `q`, `format` and `token` are refused as parameter names: the pipe API reads them itself.

Left out (a TemplateError says so): `{% for %}`, `{% set %}` and the other Tornado
statements; `split_to_array`, `enumerate_with_last`, `date_diff_*`, `day_diff`,
`sql_unescape`, `JSON`, `table`, `tb_secret`/`tb_var`, `max_threads`, `cache_ttl`,
`activate`, `backend_hint`, `columns(..., fn=)`; arithmetic, attributes and subscripts.
"""

from __future__ import annotations

import ast
import json
import math
import operator
import re
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from common.timeparse import parse_datetime
from common.warehouse.base import quoted_string
from pipit.project.model import ProjectError


class TemplateError(ProjectError):
    """A problem in the template itself, found when it is built: names file and line."""


class RenderError(ValueError):
    """A problem with a request (a missing or malformed parameter, an error() the template
    raises, a column() value that is no column). The message is for the API caller."""

    def __init__(self, message: str, *, status: int = 400, body: Mapping[str, Any] | None = None):
        super().__init__(message)
        self.message = message
        self.status = status
        """HTTP status: 400 unless error()/custom_error() chose another."""
        self.body = dict(body) if body is not None else {"error": message}
        """The JSON body to answer with: custom_error()'s dict, else {"error": message}."""


@dataclass(frozen=True)
class Parameter:
    """A request parameter a template reads."""

    name: str
    type: str
    """The ClickHouse type its value binds as: String, Bool, Int8..UInt256, Float32,
    Float64, Date, DateTime, DateTime64(3), Array(<type>)."""
    default: object
    """Python value (str, int, float, bool, list) or None when there is none."""
    required: bool
    description: str
    line: int
    enum: tuple[object, ...] = ()
    """The values allowed, when the template lists them (`enum=[...]`)."""
    example: object = None
    """`example=` as written, for documentation."""


@dataclass(frozen=True)
class Rendered:
    """A template rendered for one request."""

    sql: str
    """The SQL with a {placeholder:Type} for every value; never a value spliced in."""
    values: dict[str, str]
    """Placeholder -> the value as text ClickHouse parses for its type. Bind scalars as
    query parameters do (ClickHouse reads them in its escaped text format, so a backslash,
    tab or newline is escaped by the binder); an Array's text is already an array literal
    (`['a','b\\'c']`) and is bound as it is, unescaped."""
    types: dict[str, str] = field(default_factory=dict)
    """Placeholder -> its ClickHouse type, as in the SQL."""


# --------------------------------------------------------------------------------- types

_INTEGER_BITS = (8, 16, 32, 64, 128, 256)
_SCALAR_FUNCTIONS: dict[str, str] = {
    "String": "String",
    "Boolean": "Bool",
    "bool": "Bool",
    "Int": "Int32",
    "Integer": "Int32",
    **{f"Int{bits}": f"Int{bits}" for bits in _INTEGER_BITS},
    **{f"UInt{bits}": f"UInt{bits}" for bits in _INTEGER_BITS},
    "Float32": "Float32",
    "Float64": "Float64",
    "Date": "Date",
    "DateTime": "DateTime",
    "DateTime64": "DateTime64(3)",
}
_TYPED_FUNCTIONS = frozenset({*_SCALAR_FUNCTIONS, "Array"})
_IDENTIFIER_FUNCTIONS = {"column": "column", "columns": "columns", "symbol": "symbol"}
_IDENTIFIER_FUNCTIONS |= {"Column": "symbol", "Symbol": "symbol"}
_OTHER_FUNCTIONS = frozenset({"defined", "sql_and", "error", "custom_error"})
_FUNCTIONS = _TYPED_FUNCTIONS | set(_IDENTIFIER_FUNCTIONS) | _OTHER_FUNCTIONS
_UNSUPPORTED_FUNCTIONS = frozenset(
    {
        "split_to_array",
        "enumerate_with_last",
        "date_diff_in_seconds",
        "date_diff_in_minutes",
        "date_diff_in_hours",
        "date_diff_in_days",
        "day_diff",
        "sql_unescape",
        "JSON",
        "table",
        "TABLE",
        "tb_secret",
        "tb_var",
        "max_threads",
        "cache_ttl",
        "activate",
        "disable",
        "backend_hint",
    }
)
_RESERVED_NAMES = frozenset({"q", "format", "token"})
_PARAMETER_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_TYPED_KEYWORDS = frozenset(
    {"default", "required", "description", "example", "format", "enum", "defined"}
)
_SQL_AND_OPERATORS = {
    "eq": "=",
    "neq": "!=",
    "gt": ">",
    "gte": ">=",
    "lt": "<",
    "lte": "<=",
    "in": "IN",
    "not_in": "NOT IN",
    "like": "LIKE",
    "not_like": "NOT LIKE",
    "ilike": "ILIKE",
    "not_ilike": "NOT ILIKE",
}
_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_INTEGER = re.compile(r"[+-]?[0-9]+")
_FLOAT = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")


class _Invalid(ValueError):
    """A value that does not fit a type; the message says why (without the name)."""


@dataclass(frozen=True)
class _Type:
    """A parameter's ClickHouse type: a scalar, or an Array of one."""

    sql: str
    element: _Type | None = None

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
        """(Python value, text ClickHouse parses) for `value`, or _Invalid."""
        if self.element is not None:
            return self._array(value)
        try:
            return _SCALAR_CONVERTERS[self.sql](self.sql, value)
        except _Invalid:
            raise
        except (ValueError, OverflowError):  # e.g. an integer too long to read or to float
            raise _Invalid(f"{_short(value)} is not a valid {self.sql}") from None

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
            raise _Invalid(f"expected a list of {self.element.sql}, got {_kind(value)}")
        python: list[object] = []
        texts: list[str] = []
        for index, item in enumerate(items):
            try:
                converted, text = self.element.convert(item)
            except _Invalid as exc:
                raise _Invalid(f"item {index}: {exc}") from None
            python.append(converted)
            texts.append(quoted_string(text) if self.element.family == "str" else text)
        return python, "[" + ",".join(texts) + "]"


def _kind(value: object) -> str:
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
        raise _Invalid("expected a string, got a boolean")
    if isinstance(value, int | float):
        value = repr(value) if isinstance(value, float) else str(value)
    if not isinstance(value, str):
        raise _Invalid(f"expected a string, got {_kind(value)}")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise _Invalid("not valid Unicode text") from None
    return value, value


def _bool(_: str, value: object) -> tuple[object, str]:
    if isinstance(value, bool):
        result = value
    elif isinstance(value, int) and value in (0, 1):
        result = bool(value)
    elif isinstance(value, str) and value.lower() in ("true", "false", "1", "0"):
        result = value.lower() in ("true", "1")
    else:
        raise _Invalid(f"expected true or false, got {_short(value)}")
    return result, "true" if result else "false"


def _integer(sql: str, value: object) -> tuple[object, str]:
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise _Invalid(f"expected an integer, got {_kind(value)}")
    if isinstance(value, str):
        # ASCII only: int() would also read other scripts' digits.
        if not (value.isascii() and len(value) <= 80 and _INTEGER.fullmatch(value)):
            raise _Invalid(f"expected an integer, got {_short(value)}")
        value = int(value)
    bits = int(sql.removeprefix("U").removeprefix("Int"))
    low, high = (
        (0, 2**bits - 1) if sql.startswith("U") else (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1)
    )
    if not low <= value <= high:
        raise _Invalid(f"{value} is outside {sql}'s range ({low} to {high})")
    return value, str(value)


def _float(sql: str, value: object) -> tuple[object, str]:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise _Invalid(f"expected a number, got {_kind(value)}")
    if isinstance(value, str):
        if not (value.isascii() and _FLOAT.fullmatch(value)):
            raise _Invalid(f"expected a number, got {_short(value)}")
    number = float(value)
    if not math.isfinite(number) or (sql == "Float32" and abs(number) > 3.4028234663852886e38):
        raise _Invalid(f"{_short(value)} is outside {sql}'s range")
    return number, repr(number)


def _date(_: str, value: object) -> tuple[object, str]:
    if not (isinstance(value, str) and value.isascii() and _DATE.fullmatch(value)):
        raise _Invalid(f"expected a date YYYY-MM-DD, got {_short(value)}")
    try:
        day = date.fromisoformat(value)
    except ValueError:
        raise _Invalid(f"{value!r} is not a date") from None
    if not date(1970, 1, 1) <= day <= date(2149, 6, 6):
        raise _Invalid(f"{value} is outside Date's range (1970-01-01 to 2149-06-06)")
    return value, value


def _datetime(_: str, value: object) -> tuple[object, str]:
    text = value
    if isinstance(value, str) and value.isascii() and _DATE.fullmatch(value.strip()):
        text = value.strip() + " 00:00:00"  # a bare date means its first second
    try:
        seconds = parse_datetime(text)
    except ValueError as exc:
        raise _Invalid(str(exc)) from None
    formatted = datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%d %H:%M:%S")
    return formatted, formatted


def _datetime64(_: str, value: object) -> tuple[object, str]:
    if isinstance(value, bool):
        raise _Invalid("expected a date-time, got a boolean")
    if isinstance(value, int | float):
        if not math.isfinite(value):
            raise _Invalid("not a finite number")
        try:
            moment = datetime.fromtimestamp(0, UTC) + timedelta(seconds=value)
        except OverflowError:
            raise _Invalid(f"{value} is outside DateTime64's range") from None
    elif isinstance(value, str) and value.isascii():
        text = value.strip()
        if _DATE.fullmatch(text):
            text += " 00:00:00"
        try:
            moment = datetime.fromisoformat(text)
        except ValueError:
            raise _Invalid(
                f"{_short(value)} is not a date-time (YYYY-MM-DD HH:MM:SS.sss)"
            ) from None
        moment = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    else:
        raise _Invalid(f"expected a date-time, got {_short(value)}")
    if not datetime(1900, 1, 1, tzinfo=UTC) <= moment < datetime(2300, 1, 1, tzinfo=UTC):
        raise _Invalid(f"{_short(value)} is outside DateTime64's range (1900 to 2299)")
    formatted = moment.strftime("%Y-%m-%d %H:%M:%S.") + f"{moment.microsecond // 1000:03d}"
    return formatted, formatted


_SCALAR_CONVERTERS: dict[str, Callable[[str, object], tuple[object, str]]] = {
    "String": _string,
    "Bool": _bool,
    **{f"Int{bits}": _integer for bits in _INTEGER_BITS},
    **{f"UInt{bits}": _integer for bits in _INTEGER_BITS},
    "Float32": _float,
    "Float64": _float,
    "Date": _date,
    "DateTime": _datetime,
    "DateTime64(3)": _datetime64,
}


def _short(value: object, limit: int = 40) -> str:
    try:
        text = repr(value)
    except ValueError:  # an integer of more digits than Python will print
        return f"{_kind(value)} too long to show"
    return text if len(text) <= limit else text[: limit - 1] + "…"


# ------------------------------------------------------------------------ compiled form


class _Render:
    """One request's rendering: what it was given and what it produced."""

    def __init__(self, template: Template, given: Mapping[str, object], columns: Collection[str]):
        self.template = template
        self.given = given
        self.columns = columns if isinstance(columns, frozenset | set) else frozenset(columns)
        self.parts: list[str] = []
        self.values: dict[str, str] = {}
        self.types: dict[str, str] = {}

    def sent(self, name: str) -> object:
        """What the request sent for `name`, or None."""
        return self.given.get(name)

    def bind(self, name: str, type_: _Type, text: str) -> str:
        placeholder = self.template._placeholders[(name, type_.sql)]
        self.values[placeholder] = text
        self.types[placeholder] = type_.sql
        return "{" + placeholder + ":" + type_.sql + "}"

    def identifier(self, name: str, value: object) -> str:
        if not isinstance(value, str) or value not in self.columns:
            raise RenderError(f"parameter '{name}': {_short(value)} is not a column of this pipe")
        return _backquoted(value)


def _backquoted(name: str) -> str:
    return "`" + name.replace("\\", "\\\\").replace("`", "\\`") + "`"


class _Expr:
    """A compiled expression."""

    line: int

    def value(self, r: _Render) -> object:
        """Its Python value, for a condition."""
        raise NotImplementedError

    def sql(self, r: _Render) -> str:
        """Its SQL, for `{{ }}`."""
        raise NotImplementedError


@dataclass
class _Const(_Expr):
    constant: object
    line: int

    def value(self, r: _Render) -> object:
        return self.constant


@dataclass
class _Sequence(_Expr):
    items: list[_Expr]
    line: int

    def value(self, r: _Render) -> object:
        return [item.value(r) for item in self.items]


@dataclass
class _Name(_Expr):
    """A parameter read in a condition: what was sent, as the parameter's type, or None."""

    name: str
    line: int

    def value(self, r: _Render) -> object:
        sent = r.sent(self.name)
        if sent is None:
            return None
        type_ = r.template._types[self.name]
        try:
            return type_.convert(sent)[0]
        except _Invalid as exc:
            raise RenderError(f"parameter '{self.name}': {exc}") from None


@dataclass
class _Typed(_Expr):
    """A typed parameter use: `Int32(limit, 10)`, or a bare `{{ name }}` (String)."""

    name: str
    type: _Type
    line: int
    allow_absent: bool  # defined=False

    def converted(self, r: _Render) -> tuple[object, str] | None:
        sent = r.sent(self.name)
        if sent is None:
            default = r.template._defaults.get(self.name, _MISSING)
            if default is _MISSING:
                if self.type.sql == "Bool":
                    return False, "false"
                if self.allow_absent:
                    return None
                raise RenderError(f"missing required parameter '{self.name}'")
            sent = default
        try:
            converted = self.type.convert(sent)
        except _Invalid as exc:
            raise RenderError(f"parameter '{self.name}': {exc}") from None
        allowed = r.template._enums.get(self.name)
        if allowed and converted[0] not in allowed:
            listed = ", ".join(_short(v) for v in allowed)
            raise RenderError(f"parameter '{self.name}' must be one of {listed}")
        return converted

    def value(self, r: _Render) -> object:
        converted = self.converted(r)
        return None if converted is None else converted[0]

    def sql(self, r: _Render) -> str:
        converted = self.converted(r)
        if converted is None:
            raise RenderError(f"missing parameter '{self.name}'")
        return r.bind(self.name, self.type, converted[1])


@dataclass
class _Defined(_Expr):
    name: str
    line: int

    def value(self, r: _Render) -> object:
        return r.sent(self.name) is not None


@dataclass
class _Not(_Expr):
    operand: _Expr
    line: int

    def value(self, r: _Render) -> object:
        return not self.operand.value(r)


@dataclass
class _BoolOp(_Expr):
    is_and: bool
    operands: list[_Expr]
    line: int

    def value(self, r: _Render) -> object:
        result: object = None
        for operand in self.operands:
            result = operand.value(r)
            if bool(result) != self.is_and:
                return result
        return result


_ORDERING: dict[type[ast.cmpop], Callable[[Any, Any], bool]] = {
    ast.Lt: operator.lt,
    ast.LtE: operator.le,
    ast.Gt: operator.gt,
    ast.GtE: operator.ge,
}


@dataclass
class _Compare(_Expr):
    left: _Expr
    ops: list[ast.cmpop]
    rights: list[_Expr]
    line: int
    file: str

    def value(self, r: _Render) -> object:
        left = self.left.value(r)
        for op, right_expr in zip(self.ops, self.rights, strict=True):
            right = right_expr.value(r)
            if not self._holds(op, left, right):
                return False
            left = right
        return True

    def _holds(self, op: ast.cmpop, left: object, right: object) -> bool:
        if isinstance(op, ast.Eq):
            return left == right
        if isinstance(op, ast.NotEq):
            return left != right
        if isinstance(op, ast.Is):
            return left is right
        if isinstance(op, ast.IsNot):
            return left is not right
        if isinstance(op, ast.In | ast.NotIn):
            inside = False
            if isinstance(right, list | tuple):
                inside = left in right
            elif isinstance(right, str) and isinstance(left, str):
                inside = left in right
            elif right is not None and left is not None:
                raise TemplateError(
                    self.file, self.line, f"cannot test {_kind(left)} in {_kind(right)}"
                )
            return inside if isinstance(op, ast.In) else not inside
        if left is None or right is None:
            return False  # like SQL's NULL: an absent parameter is neither less nor more
        try:
            return _ORDERING[type(op)](left, right)
        except TypeError:
            raise TemplateError(
                self.file, self.line, f"cannot compare {_kind(left)} with {_kind(right)}"
            ) from None


@dataclass
class _Identifier(_Expr):
    """column(), columns() or symbol() of a parameter, or of a literal name."""

    function: str
    name: str | None  # the parameter, or None for a literal
    literal: str | None
    line: int
    file: str

    def sql(self, r: _Render) -> str:
        if self.name is None:
            assert self.literal is not None
            value: object = self.literal
            names = self._names(value)
            for one in names:
                if one not in r.columns:
                    raise TemplateError(self.file, self.line, f"{one!r} is not a column")
            return ", ".join(_backquoted(one) for one in names)
        value = r.sent(self.name)
        if value is None:
            value = r.template._defaults.get(self.name, _MISSING)
            if value is _MISSING:
                raise RenderError(f"missing required parameter '{self.name}'")
        if self.function != "columns":
            return r.identifier(self.name, value)
        names = self._names(value)
        if not names:
            raise RenderError(f"parameter '{self.name}' names no column")
        return ", ".join(r.identifier(self.name, one) for one in names)

    def _names(self, value: object) -> list[object]:
        if self.function != "columns":
            return [value]
        if isinstance(value, str):
            return [one.strip() for one in value.split(",")]
        if isinstance(value, list | tuple):
            return list(value)
        return [value]


@dataclass
class _SqlAnd(_Expr):
    conditions: list[tuple[str, str, _Expr]]  # column, SQL operator, value
    line: int
    file: str

    def sql(self, r: _Render) -> str:
        parts = []
        for column, sql_operator, expr in self.conditions:
            if column not in r.columns:
                raise TemplateError(self.file, self.line, f"sql_and: {column!r} is not a column")
            if isinstance(expr, _Typed):
                converted = expr.converted(r)
                if converted is None:
                    continue
                bound = r.bind(expr.name, expr.type, converted[1])
            else:
                assert isinstance(expr, _Name)
                sent = r.sent(expr.name)
                if sent is None:
                    continue  # Tinybird leaves an absent parameter's condition out
                try:
                    text = _STRING.convert(sent)[1]
                except _Invalid as exc:
                    raise RenderError(f"parameter '{expr.name}': {exc}") from None
                bound = r.bind(expr.name, _STRING, text)
            parts.append(f"{_backquoted(column)} {sql_operator} {bound}")
        return "(" + " AND ".join(parts) + ")" if parts else "1"


@dataclass
class _Raise(_Expr):
    message: str
    status: int
    body: dict[str, Any] | None
    line: int

    def sql(self, r: _Render) -> str:
        raise RenderError(self.message, status=self.status, body=self.body)


_STRING = _Type("String")
_MISSING = object()


# ------------------------------------------------------------------------- the template


@dataclass
class _Text:
    text: str


@dataclass
class _Output:
    expr: _Expr


@dataclass
class _If:
    branches: list[tuple[_Expr, list[Any]]]
    otherwise: list[Any] | None
    line: int


@dataclass
class _Use:
    """One place a parameter's type, default, etc. are declared."""

    name: str
    type: _Type | None  # None: only read (a condition, defined())
    line: int
    conditional: bool
    default: object = _MISSING
    required: bool | None = None
    description: str = ""
    enum: tuple[object, ...] = ()
    example: object = None
    needs_value: bool = False  # rendering it without a value fails
    as_identifier: bool = False


class Template:
    """A parsed template: its parameters, and `render` for one request."""

    parameters: tuple[Parameter, ...]
    """Each name once, in order of first use."""

    def __init__(self) -> None:
        self.parameters = ()
        self.file = "<sql>"
        self._body: list[Any] = []
        self._types: dict[str, _Type] = {}
        self._defaults: dict[str, object] = {}
        self._enums: dict[str, tuple[object, ...]] = {}
        self._placeholders: dict[tuple[str, str], str] = {}
        self._identifiers: list[tuple[str, int]] = []
        self._identifier_parameters: set[str] = set()

    @classmethod
    def parse(cls, text: str, *, file: str = "<sql>", line: int = 1) -> Template:
        """Parses `text`, whose first line is line `line` of `file`. Raises TemplateError."""
        template = cls()
        template.file = file
        parser = _Parser(template, file, line)
        template._body = parser.parse(_drop_marker(text))
        parser.finish()
        return template

    def render(self, given: Mapping[str, object], *, columns: Collection[str]) -> Rendered:
        """The SQL and bound values for a request that sent `given` (values already of the
        Python type each parameter's type implies; an absent name is "not defined").
        `columns` are the identifiers column()/columns()/symbol() may produce. Raises
        RenderError for the caller."""
        missing = [p.name for p in self.parameters if p.required and given.get(p.name) is None]
        if missing:
            plural = "s" if len(missing) > 1 else ""
            raise RenderError(f"missing required parameter{plural}: {', '.join(missing)}")
        r = _Render(self, given, columns)
        self._emit(self._body, r)
        return Rendered(sql="".join(r.parts), values=r.values, types=r.types)

    def check_columns(self, columns: Collection[str]) -> list[TemplateError]:
        """The identifiers the template itself writes (sql_and's columns, column() and
        columns() defaults and literals) that are not among `columns`: for a build to
        refuse before any request meets them."""
        known = frozenset(columns)
        return [
            TemplateError(self.file, line, f"{name!r} is not a column")
            for name, line in self._identifiers
            if name not in known
        ]

    def sample_requests(self, columns: Sequence[str]) -> list[dict[str, object]]:
        """Requests to render when checking the SQL at build time: every parameter given
        (its default, or a value of its type), and only the required ones."""
        everything: dict[str, object] = {}
        for p in self.parameters:
            if p.default is not None:
                everything[p.name] = p.default
            elif p.enum:
                everything[p.name] = p.enum[0]
            elif p.name in self._identifier_parameters and columns:
                everything[p.name] = columns[0]
            elif p.type.startswith("Array("):
                everything[p.name] = [_SAMPLES[p.type.removeprefix("Array(")[:-1]]]
            else:
                everything[p.name] = _SAMPLES[p.type]
        required = {p.name: everything[p.name] for p in self.parameters if p.required}
        return [everything, required]

    def _emit(self, body: list[Any], r: _Render) -> None:
        for node in body:
            if isinstance(node, _Text):
                r.parts.append(node.text)
            elif isinstance(node, _Output):
                r.parts.append(node.expr.sql(r))
            else:
                for condition, branch in node.branches:
                    if condition.value(r):
                        self._emit(branch, r)
                        break
                else:
                    if node.otherwise is not None:
                        self._emit(node.otherwise, r)


_SAMPLES: dict[str, object] = {
    "String": "",
    "Bool": False,
    **{f"Int{bits}": 0 for bits in _INTEGER_BITS},
    **{f"UInt{bits}": 0 for bits in _INTEGER_BITS},
    "Float32": 0.0,
    "Float64": 0.0,
    "Date": "2000-01-01",
    "DateTime": "2000-01-01 00:00:00",
    "DateTime64(3)": "2000-01-01 00:00:00.000",
}


def _drop_marker(text: str) -> str:
    """Tinybird's leading `%` line (or `% ` before the SQL) becomes a space, so that line
    numbers stay where they are."""
    match = re.match(r"\s*%(?=\s|$)", text)
    if match is None:
        return text
    return text[: match.end() - 1] + " " + text[match.end() :]


# --------------------------------------------------------------------------------- parser

_TAG = re.compile(r"\{\{|\{%|\{#")
_STATEMENT = re.compile(r"\s*(\w+)(.*?)\s*$", re.DOTALL)
_EMBEDDED = re.compile(r"\{\{(.*?)\}\}", re.DOTALL)
_TORNADO_STATEMENTS = (
    "for while set try except finally import from include extends block module raw "
    "autoescape apply comment break continue whitespace"
).split()


class _Parser:
    def __init__(self, template: Template, file: str, line: int) -> None:
        self.template = template
        self.file = file
        self.first_line = line
        self.uses: list[_Use] = []
        self.order: dict[str, int] = {}
        self.depth = 0
        self.compares: list[_Compare] = []

    def error(self, line: int, message: str) -> TemplateError:
        return TemplateError(self.file, line, message)

    # --- text and tags

    def parse(self, text: str) -> list[Any]:
        root: list[Any] = []
        # Each open {% if %}: its node, the branch being filled, and the line it opened.
        stack: list[tuple[_If, list[Any], bool]] = []
        body = root
        position = 0
        line = self.first_line
        while True:
            match = _TAG.search(text, position)
            end = match.start() if match else len(text)
            if end > position:
                body.append(_Text(text[position:end]))
                line += text.count("\n", position, end)
            if match is None:
                break
            tag = match.group()
            start = match.end()
            if text.startswith("!", start):  # {{! {%! {#!: the tag's characters as text
                body.append(_Text(tag))
                position = start + 1
                continue
            if tag == "{#":
                close = text.find("#}", start)
                if close < 0:
                    raise self.error(line, "{# without a closing #}")
                position = close + 2
            elif tag == "{{":
                content, position = self._expression_text(text, start, line)
                body.append(_Output(self._output(content, line)))
            else:
                close = text.find("%}", start)
                if close < 0:
                    raise self.error(line, "{% without a closing %}")
                content = text[start:close]
                position = close + 2
                body = self._statement(content, line, stack, root)
            line += text.count("\n", match.start(), position)
        if stack:
            raise self.error(stack[-1][0].line, "{% if %} without its {% end %}")
        return root

    def _expression_text(self, text: str, start: int, line: int) -> tuple[str, int]:
        # The expression ends at the first `}}` after which it parses: a `}}` inside a
        # string or a dict literal (custom_error({'a': {'b': 1}})) does not end it.
        close = text.find("}}", start)
        if close < 0:
            raise self.error(line, "{{ without a closing }}")
        first = close
        while close >= 0:
            try:
                ast.parse("(" + text[start:close] + "\n)", mode="eval")
                return text[start:close], close + 2
            except SyntaxError:
                close = text.find("}}", close + 1)
        return text[start:first], first + 2  # reported as that expression's syntax error

    def _statement(
        self, content: str, line: int, stack: list[tuple[_If, list[Any], bool]], root: list[Any]
    ) -> list[Any]:
        match = _STATEMENT.fullmatch(content)
        word = match.group(1) if match else ""
        rest = match.group(2).strip() if match else ""
        # The condition's first line: after any line breaks between the word and it.
        prefix_lines = 0
        if match:
            after = match.group(2)
            prefix_lines = content[: match.start(2) + len(after) - len(after.lstrip())].count("\n")

        def current() -> list[Any]:
            return stack[-1][1] if stack else root

        if word == "if":
            node = _If([], None, line)
            current().append(node)
            self.depth += 1
            condition = self._condition(rest, line + prefix_lines, "if")
            branch: list[Any] = []
            node.branches.append((condition, branch))
            stack.append((node, branch, False))
            return branch
        if word in ("elif", "else"):
            if not stack:
                raise self.error(line, f"{{% {word} %}} without an {{% if %}}")
            node, _, had_else = stack.pop()
            if had_else:
                raise self.error(line, f"{{% {word} %}} after the {{% else %}}")
            branch = []
            if word == "elif":
                node.branches.append((self._condition(rest, line + prefix_lines, "elif"), branch))
            else:
                if rest:
                    raise self.error(line, "{% else %} takes no condition (use {% elif ... %})")
                node.otherwise = branch
            stack.append((node, branch, word == "else"))
            return branch
        if word == "end":
            if rest not in ("", "if"):
                raise self.error(line, f"{{% end {rest} %}}: only {{% if %}} blocks exist here")
            if not stack:
                raise self.error(line, "{% end %} without an {% if %}")
            stack.pop()
            self.depth -= 1
            return current()
        if word in _TORNADO_STATEMENTS:
            raise self.error(line, f"{{% {word} %}} is not supported (if, elif, else and end are)")
        raise self.error(line, f"unknown statement {{% {content.strip()[:40]} %}}")

    # --- expressions

    def _parse_python(self, source: str, line: int) -> ast.expr:
        try:
            tree = ast.parse("(" + source + "\n)", mode="eval")
        except SyntaxError as exc:
            # Past the end (the closing parenthesis added here) means the last line.
            offset = min((exc.lineno or 1) - 1, source.count("\n"))
            raise self.error(line + offset, f"invalid expression: {exc.msg}") from None
        return tree.body

    def _output(self, content: str, line: int) -> _Expr:
        if not content.strip():
            raise self.error(line, "empty {{ }}")
        node = self._parse_python(content, line)
        at = line + node.lineno - 1
        if isinstance(node, ast.Name):
            self._check_name(node.id, at)
            return self._typed_use(node.id, _STRING, at, _Use(node.id, _STRING, at, False))
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            function = node.func.id
            if function in _TYPED_FUNCTIONS:
                return self._typed(node, line)
            if function in _IDENTIFIER_FUNCTIONS:
                return self._identifier(node, line, _IDENTIFIER_FUNCTIONS[function])
            if function == "sql_and":
                return self._sql_and(node, line)
            if function in ("error", "custom_error"):
                return self._raise(node, line)
            self._check_function(function, at)
            raise self.error(at, f"{function}() cannot be written into the SQL")
        raise self.error(
            at,
            "{{ }} holds a parameter (String(x), Int32(x, 10), ...), a name, column(), "
            f"columns(), symbol(), sql_and(), error() or custom_error(); found {_what(node)}",
        )

    def _condition(self, source: str, line: int, word: str) -> _Expr:
        if not source.strip():
            raise self.error(line, f"{{% {word} %}} needs a condition")
        source = _EMBEDDED.sub(lambda m: "(" + m.group(1) + ")", source)
        return self._value(self._parse_python(source, line), line)

    def _value(self, node: ast.expr, base: int) -> _Expr:
        at = base + getattr(node, "lineno", 1) - 1
        if isinstance(node, ast.Constant):
            return _Const(self._constant(node, at), at)
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.UAdd):
            return _Const(self._literal(node, base), at)
        if isinstance(node, ast.Name):
            self._check_name(node.id, at)
            self._use(_Use(node.id, None, at, self.depth > 0))
            return _Name(node.id, at)
        if isinstance(node, ast.List | ast.Tuple):
            return _Sequence([self._value(item, base) for item in node.elts], at)
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
            return _Not(self._value(node.operand, base), at)
        if isinstance(node, ast.BoolOp):
            return _BoolOp(
                isinstance(node.op, ast.And), [self._value(v, base) for v in node.values], at
            )
        if isinstance(node, ast.Compare):
            allowed = (ast.Eq, ast.NotEq, ast.Lt, ast.LtE, ast.Gt, ast.GtE, ast.In, ast.NotIn)
            for op, right in zip(node.ops, node.comparators, strict=True):
                if isinstance(op, ast.Is | ast.IsNot):
                    if not (isinstance(right, ast.Constant) and right.value is None):
                        raise self.error(at, "`is` compares with None only")
                elif not isinstance(op, allowed):
                    raise self.error(at, f"{type(op).__name__} is not supported")
            compare = _Compare(
                self._value(node.left, base),
                list(node.ops),
                [self._value(v, base) for v in node.comparators],
                at,
                self.file,
            )
            self.compares.append(compare)
            return compare
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            function = node.func.id
            if function in _TYPED_FUNCTIONS:
                return self._typed(node, base)
            if function == "defined":
                return self._defined(node, base)
            self._check_function(function, at)
            raise self.error(at, f"{function}() cannot be used in a condition")
        raise self.error(at, f"{_what(node)} is not supported in a template expression")

    def _check_function(self, function: str, line: int) -> None:
        if function in _UNSUPPORTED_FUNCTIONS:
            raise self.error(line, f"{function}() is not supported by Pipit")
        if function not in _FUNCTIONS:
            raise self.error(line, f"unknown function {function}()")

    def _check_name(self, name: str, line: int) -> None:
        if name in _FUNCTIONS or name in _UNSUPPORTED_FUNCTIONS:
            raise self.error(line, f"{name} is a function, not a parameter")
        if not _PARAMETER_NAME.fullmatch(name):
            raise self.error(line, f"parameter name {name!r}: use ASCII letters, digits and _")
        if name in _RESERVED_NAMES:
            raise self.error(line, f"{name!r} cannot be a parameter name (the API reads it)")

    def _constant(self, node: ast.Constant, line: int) -> object:
        if node.value is None or isinstance(node.value, str | bool | int | float):
            return node.value
        raise self.error(line, f"{type(node.value).__name__} literals are not supported")

    def _literal(self, node: ast.expr, base: int) -> object:
        """A literal argument: a constant, a negative number, or a list/dict of literals."""
        at = base + getattr(node, "lineno", 1) - 1
        if isinstance(node, ast.Constant):
            return self._constant(node, at)
        if (
            isinstance(node, ast.UnaryOp)
            and isinstance(node.op, ast.USub | ast.UAdd)
            and isinstance(node.operand, ast.Constant)
            and isinstance(node.operand.value, int | float)
            and not isinstance(node.operand.value, bool)
        ):
            number = node.operand.value
            return -number if isinstance(node.op, ast.USub) else number
        if isinstance(node, ast.List | ast.Tuple):
            return [self._literal(item, base) for item in node.elts]
        if isinstance(node, ast.Dict):
            result: dict[str, object] = {}
            for key, value in zip(node.keys, node.values, strict=True):
                if not (isinstance(key, ast.Constant) and isinstance(key.value, str)):
                    raise self.error(at, "a dict's keys must be strings")
                result[key.value] = self._literal(value, base)
            return result
        raise self.error(at, f"expected a literal, found {_what(node)}")

    # --- functions

    def _arguments(
        self, node: ast.Call, base: int, positional: int, keywords: Collection[str]
    ) -> tuple[list[ast.expr], dict[str, ast.expr]]:
        at = base + node.lineno - 1
        function = node.func.id  # type: ignore[attr-defined]
        if any(isinstance(a, ast.Starred) for a in node.args):
            raise self.error(at, f"{function}(): *arguments are not supported")
        if len(node.args) > positional:
            raise self.error(at, f"{function}() takes at most {positional} positional arguments")
        named: dict[str, ast.expr] = {}
        for keyword in node.keywords:
            if keyword.arg is None:
                raise self.error(at, f"{function}(): **arguments are not supported")
            if keyword.arg not in keywords:
                raise self.error(at, f"{function}() has no argument {keyword.arg!r}")
            named[keyword.arg] = keyword.value
        return list(node.args), named

    def _parameter_name(self, node: ast.Call, args: list[ast.expr], base: int) -> str:
        at = base + node.lineno - 1
        function = node.func.id  # type: ignore[attr-defined]
        if not args or not isinstance(args[0], ast.Name):
            raise self.error(at, f"{function}()'s first argument is the parameter's name")
        self._check_name(args[0].id, at)
        return args[0].id

    def _typed(self, node: ast.Call, base: int) -> _Typed:
        at = base + node.lineno - 1
        function = node.func.id  # type: ignore[attr-defined]
        is_array = function == "Array"
        args, named = self._arguments(node, base, 3 if is_array else 2, _TYPED_KEYWORDS)
        name = self._parameter_name(node, args, base)
        if is_array:
            element = "String"
            if len(args) > 1:
                element_arg = self._literal(args[1], base)
                if not isinstance(element_arg, str) or element_arg not in _SCALAR_FUNCTIONS:
                    known = ", ".join(sorted(_SCALAR_FUNCTIONS))
                    raise self.error(
                        at, f"Array(): element type {element_arg!r} is not one of {known}"
                    )
                element = element_arg
            type_ = _Type(f"Array({_SCALAR_FUNCTIONS[element]})", _Type(_SCALAR_FUNCTIONS[element]))
        else:
            type_ = _Type(_SCALAR_FUNCTIONS[function])
        default_index = 2 if is_array else 1
        if len(args) > default_index and "default" in named:
            raise self.error(at, f"{function}(): default given twice")
        default_node = args[default_index] if len(args) > default_index else named.get("default")
        use = _Use(name, type_, at, self.depth > 0)
        if default_node is not None:
            default = self._literal(default_node, base)
            if default is not None:
                use.default = self._convert(type_, default, at, "default")
        for key in ("required", "defined"):
            if key in named:
                flag = self._literal(named[key], base)
                if not isinstance(flag, bool):
                    raise self.error(at, f"{function}(): {key}= is True or False")
                if key == "required":
                    use.required = flag
        allow_absent = "defined" in named and self._literal(named["defined"], base) is False
        for key in ("description", "format"):
            if key in named and not isinstance(self._literal(named[key], base), str):
                raise self.error(at, f"{function}(): {key}= is a string")
        if "description" in named:
            use.description = str(self._literal(named["description"], base))
        if "example" in named:
            use.example = self._literal(named["example"], base)
        if "enum" in named:
            values = self._literal(named["enum"], base)
            if not isinstance(values, list) or not values:
                raise self.error(at, f"{function}(): enum= is a non-empty list")
            use.enum = tuple(self._convert(type_, v, at, "enum value") for v in values)
        return self._typed_use(name, type_, at, use, allow_absent=allow_absent)

    def _typed_use(
        self, name: str, type_: _Type, at: int, use: _Use, *, allow_absent: bool = False
    ) -> _Typed:
        use.conditional = self.depth > 0
        if use.default is _MISSING and not allow_absent and type_.sql != "Bool":
            use.needs_value = True
        self._use(use)
        return _Typed(name, type_, at, allow_absent)

    def _convert(self, type_: _Type, value: object, line: int, what: str) -> object:
        try:
            return type_.convert(value)[0]
        except _Invalid as exc:
            raise self.error(line, f"{what} {_short(value)} is not a {type_.sql}: {exc}") from None

    def _defined(self, node: ast.Call, base: int) -> _Defined:
        at = base + node.lineno - 1
        args, _ = self._arguments(node, base, 1, ())
        if len(args) != 1:
            raise self.error(at, "defined() takes one parameter")
        target = args[0]
        if isinstance(target, ast.Name):
            self._check_name(target.id, at)
            self._use(_Use(target.id, None, at, self.depth > 0))
            return _Defined(target.id, at)
        if (
            isinstance(target, ast.Call)
            and isinstance(target.func, ast.Name)
            and target.func.id in _TYPED_FUNCTIONS
        ):
            typed = self._typed(target, base)
            return _Defined(typed.name, at)
        raise self.error(at, "defined() takes a parameter's name")

    def _identifier(self, node: ast.Call, base: int, function: str) -> _Identifier:
        at = base + node.lineno - 1
        args, _ = self._arguments(node, base, 1 if function == "symbol" else 2, ())
        if not args:
            raise self.error(at, f"{function}() takes a parameter's name")
        if not isinstance(args[0], ast.Name):
            literal = self._literal(args[0], base)
            if not isinstance(literal, str) or len(args) > 1:
                raise self.error(at, f"{function}() takes a parameter's name or one literal name")
            for one in literal.split(",") if function == "columns" else [literal]:
                self._identifiers.append((one.strip(), at))
            return _Identifier(function, None, literal, at, self.file)
        name = self._parameter_name(node, args, base)
        use = _Use(name, _STRING, at, self.depth > 0, as_identifier=True)
        if len(args) > 1:
            default = self._literal(args[1], base)
            if not isinstance(default, str):
                raise self.error(at, f"{function}()'s default is a column name (a string)")
            use.default = default
            for one in default.split(",") if function == "columns" else [default]:
                self._identifiers.append((one.strip(), at))
        use.needs_value = use.default is _MISSING
        self._use(use)
        self.template._identifier_parameters.add(name)
        return _Identifier(function, name, None, at, self.file)

    @property
    def _identifiers(self) -> list[tuple[str, int]]:
        return self.template._identifiers

    def _sql_and(self, node: ast.Call, base: int) -> _SqlAnd:
        at = base + node.lineno - 1
        if node.args:
            raise self.error(at, "sql_and() takes column=value arguments only")
        conditions: list[tuple[str, str, _Expr]] = []
        for keyword in node.keywords:
            if keyword.arg is None:
                raise self.error(at, "sql_and(): **arguments are not supported")
            column, _, suffix = keyword.arg.rpartition("__")
            if not column:
                column, suffix = keyword.arg, "eq"
            if suffix not in _SQL_AND_OPERATORS:
                known = ", ".join(_SQL_AND_OPERATORS)
                raise self.error(
                    at, f"sql_and(): operator {suffix!r} in {keyword.arg} is not one of {known}"
                )
            sql_operator = _SQL_AND_OPERATORS[suffix]
            list_operator = suffix in ("in", "not_in")
            value = keyword.value
            expr: _Expr
            if isinstance(value, ast.Name):
                if list_operator:
                    raise self.error(at, f"sql_and(): {keyword.arg} needs an Array(...) value")
                self._check_name(value.id, at)
                self._use(_Use(value.id, _STRING, at, self.depth > 0))
                expr = _Name(value.id, at)
            elif (
                isinstance(value, ast.Call)
                and isinstance(value.func, ast.Name)
                and value.func.id in _TYPED_FUNCTIONS
            ):
                expr = self._typed(value, base)
                if list_operator != (expr.type.element is not None):
                    need = "an Array(...)" if list_operator else "a single"
                    raise self.error(at, f"sql_and(): {keyword.arg} needs {need} value")
            else:
                raise self.error(at, f"sql_and(): {keyword.arg}'s value must be a parameter")
            self._identifiers.append((column, at))
            conditions.append((column, sql_operator, expr))
        return _SqlAnd(conditions, at, self.file)

    def _raise(self, node: ast.Call, base: int) -> _Raise:
        at = base + node.lineno - 1
        function = node.func.id  # type: ignore[attr-defined]
        args, named = self._arguments(node, base, 2, ("code",))
        if not args:
            raise self.error(at, f"{function}() takes a message")
        if len(args) > 1 and "code" in named:
            raise self.error(at, f"{function}(): code given twice")
        payload = self._literal(args[0], base)
        code_node = args[1] if len(args) > 1 else named.get("code")
        status = 400 if code_node is None else self._literal(code_node, base)
        if isinstance(status, bool) or not isinstance(status, int) or not 400 <= status <= 599:
            raise self.error(at, f"{function}(): the code is an HTTP error status, 400 to 599")
        if function == "error" or isinstance(payload, str):
            if not isinstance(payload, str):
                raise self.error(at, "error() takes a message string")
            return _Raise(payload, status, None, at)
        if not isinstance(payload, dict):
            raise self.error(at, "custom_error() takes a dict (the response body) or a message")
        message = payload.get("error")
        text = message if isinstance(message, str) else json.dumps(payload, ensure_ascii=False)
        return _Raise(text, status, payload, at)

    # --- parameters

    def _use(self, use: _Use) -> None:
        self.order.setdefault(use.name, len(self.order))
        self.uses.append(use)

    def finish(self) -> None:
        template = self.template
        by_name: dict[str, list[_Use]] = {}
        for use in self.uses:
            by_name.setdefault(use.name, []).append(use)
        parameters = []
        for name in sorted(by_name, key=self.order.__getitem__):
            uses = by_name[name]
            typed = [u for u in uses if u.type is not None]
            declared = typed[0].type if typed else _STRING
            assert declared is not None
            for use in typed:
                assert use.type is not None
                if (use.type.element is None) != (declared.element is None):
                    raise self.error(
                        use.line,
                        f"parameter {name!r} is {declared.sql} at line {typed[0].line} "
                        f"and {use.type.sql} here",
                    )
            default = self._merge(name, uses, "default", declared)
            description = self._merge(name, uses, "description", None)
            enum = self._merge(name, uses, "enum", None)
            explicit = {u.required for u in uses if u.required is not None}
            if len(explicit) > 1:
                raise self.error(
                    uses[-1].line, f"parameter {name!r}: required= differs between uses"
                )
            if default is not _MISSING:
                for use in typed:
                    assert use.type is not None
                    self._convert(use.type, default, use.line, f"{name}'s default")
            needed = default is _MISSING and any(u.needs_value and not u.conditional for u in uses)
            template._types[name] = declared
            if default is not _MISSING:
                template._defaults[name] = default
            if enum:
                template._enums[name] = tuple(enum)  # type: ignore[arg-type]
            parameters.append(
                Parameter(
                    name=name,
                    type=declared.sql,
                    default=None if default is _MISSING else default,
                    required=explicit == {True} or needed,
                    description=description or "",  # type: ignore[arg-type]
                    line=uses[0].line,
                    enum=tuple(enum) if enum else (),  # type: ignore[arg-type]
                    example=next((u.example for u in uses if u.example is not None), None),
                )
            )
        template.parameters = tuple(parameters)
        self._allocate(by_name)
        for compare in self.compares:
            self._check_compare(compare)

    def _merge(self, name: str, uses: list[_Use], attribute: str, declared: _Type | None) -> object:
        found: object = _MISSING
        first_line = 0
        for use in uses:
            value = getattr(use, attribute)
            if value is _MISSING or (attribute != "default" and value in ("", ())):
                continue
            if declared is not None and use.type is not None and use.type != declared:
                try:
                    value = declared.convert(value)[0]
                except _Invalid as exc:
                    raise self.error(
                        use.line, f"{name}'s default does not fit {declared.sql}: {exc}"
                    ) from None
            if found is _MISSING:
                found, first_line = value, use.line
            elif value != found:
                raise self.error(
                    use.line,
                    f"parameter {name!r} has {attribute} {_short(found)} at line {first_line} "
                    f"and {_short(value)} here",
                )
        return found if attribute == "default" else (None if found is _MISSING else found)

    def _allocate(self, by_name: dict[str, list[_Use]]) -> None:
        """One placeholder per parameter and type: the parameter's own name for its
        declared type, `name__Type` (made unique) for any other."""
        taken = set(by_name)
        placeholders = self.template._placeholders
        for name, uses in by_name.items():
            declared = self.template._types[name]
            placeholders[(name, declared.sql)] = name
            for use in uses:
                if use.type is None or (name, use.type.sql) in placeholders:
                    continue
                base = f"{name}__{re.sub(r'[^A-Za-z0-9]+', '_', use.type.sql).strip('_')}"
                candidate, number = base, 2
                while candidate in taken:
                    candidate, number = f"{base}_{number}", number + 1
                taken.add(candidate)
                placeholders[(name, use.type.sql)] = candidate

    def _family(self, expr: _Expr) -> str:
        if isinstance(expr, _Const):
            value = expr.constant
            if value is None:
                return "none"
            if isinstance(value, bool):
                return "bool"
            return "number" if isinstance(value, int | float) else "str"
        if isinstance(expr, _Name):
            return self.template._types[expr.name].family
        if isinstance(expr, _Typed):
            return expr.type.family
        if isinstance(expr, _Sequence):
            return "list"
        return "any"

    def _check_compare(self, compare: _Compare) -> None:
        left = self._family(compare.left)
        for op, right_expr in zip(compare.ops, compare.rights, strict=True):
            right = self._family(right_expr)
            if isinstance(op, tuple(_ORDERING)):
                numeric = {"number", "bool"}
                if "any" not in (left, right) and "none" not in (left, right):
                    if left != right and not {left, right} <= numeric:
                        raise self.error(compare.line, f"cannot order a {left} against a {right}")
            elif isinstance(op, ast.In | ast.NotIn):
                if right not in ("list", "str", "any", "none") or (
                    right == "str" and left not in ("str", "any")
                ):
                    raise self.error(
                        compare.line, f"`in` needs a list (or text in text), not a {right}"
                    )
            left = right


def _what(node: ast.AST) -> str:
    names = {
        ast.BinOp: "arithmetic",
        ast.Attribute: "an attribute",
        ast.Subscript: "a subscript",
        ast.Lambda: "a lambda",
        ast.IfExp: "a conditional expression",
        ast.JoinedStr: "an f-string",
        ast.Call: "a call",
        ast.ListComp: "a comprehension",
        ast.GeneratorExp: "a generator",
        ast.Dict: "a dict",
        ast.Set: "a set",
        ast.NamedExpr: "an assignment",
    }
    return names.get(type(node), type(node).__name__)
