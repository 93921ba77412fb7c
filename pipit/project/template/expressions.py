"""The compiled form: expression nodes and the text/output/if nodes of a template's body,
evaluated for one request by `Render` (a small interpreter: never eval or exec)."""

from __future__ import annotations

import ast
import operator
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pipit.project.template.errors import RenderError, TemplateError
from pipit.project.template.values import InvalidValue, ValueType, kind, short

if TYPE_CHECKING:
    from pipit.project.template.compiled import Template


class Render:
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

    def bind(self, name: str, type_: ValueType, text: str) -> str:
        placeholder = self.template._placeholders[(name, type_.sql)]
        self.values[placeholder] = text
        self.types[placeholder] = type_.sql
        return "{" + placeholder + ":" + type_.sql + "}"

    def identifier(self, name: str, value: object) -> str:
        if not isinstance(value, str) or value not in self.columns:
            raise RenderError(f"parameter '{name}': {short(value)} is not a column of this pipe")
        return backquoted(value)


def backquoted(name: str) -> str:
    return "`" + name.replace("\\", "\\\\").replace("`", "\\`") + "`"


class Expr:
    """A compiled expression."""

    line: int

    def value(self, r: Render) -> object:
        """Its Python value, for a condition."""
        raise NotImplementedError

    def sql(self, r: Render) -> str:
        """Its SQL, for `{{ }}`."""
        raise NotImplementedError


@dataclass
class Const(Expr):
    constant: object
    line: int

    def value(self, r: Render) -> object:
        return self.constant


@dataclass
class Items(Expr):
    items: list[Expr]
    line: int

    def value(self, r: Render) -> object:
        return [item.value(r) for item in self.items]


@dataclass
class Name(Expr):
    """A parameter read in a condition: what was sent, as the parameter's type, or None."""

    name: str
    line: int

    def value(self, r: Render) -> object:
        sent = r.sent(self.name)
        if sent is None:
            return None
        type_ = r.template._types[self.name]
        try:
            return type_.convert(sent)[0]
        except InvalidValue as exc:
            raise RenderError(f"parameter '{self.name}': {exc}") from None


@dataclass
class Typed(Expr):
    """A typed parameter use: `Int32(limit, 10)`, or a bare `{{ name }}` (String)."""

    name: str
    type: ValueType
    line: int
    allow_absent: bool  # defined=False

    def converted(self, r: Render) -> tuple[object, str] | None:
        sent = r.sent(self.name)
        if sent is None:
            default = r.template._defaults.get(self.name, MISSING)
            if default is MISSING:
                if self.type.sql == "Bool":
                    return False, "false"
                if self.allow_absent:
                    return None
                raise RenderError(f"missing required parameter '{self.name}'")
            sent = default
        try:
            converted = self.type.convert(sent)
        except InvalidValue as exc:
            raise RenderError(f"parameter '{self.name}': {exc}") from None
        allowed = r.template._enums.get(self.name)
        if allowed and converted[0] not in allowed:
            listed = ", ".join(short(v) for v in allowed)
            raise RenderError(f"parameter '{self.name}' must be one of {listed}")
        return converted

    def value(self, r: Render) -> object:
        converted = self.converted(r)
        return None if converted is None else converted[0]

    def sql(self, r: Render) -> str:
        converted = self.converted(r)
        if converted is None:
            raise RenderError(f"missing parameter '{self.name}'")
        return r.bind(self.name, self.type, converted[1])


@dataclass
class Defined(Expr):
    name: str
    line: int

    def value(self, r: Render) -> object:
        return r.sent(self.name) is not None


@dataclass
class Not(Expr):
    operand: Expr
    line: int

    def value(self, r: Render) -> object:
        return not self.operand.value(r)


@dataclass
class BoolOp(Expr):
    is_and: bool
    operands: list[Expr]
    line: int

    def value(self, r: Render) -> object:
        result: object = None
        for operand in self.operands:
            result = operand.value(r)
            if bool(result) != self.is_and:
                return result
        return result


ORDERING: dict[type[ast.cmpop], Callable[[Any, Any], bool]] = {
    ast.Lt: operator.lt,
    ast.LtE: operator.le,
    ast.Gt: operator.gt,
    ast.GtE: operator.ge,
}


@dataclass
class Compare(Expr):
    left: Expr
    ops: list[ast.cmpop]
    rights: list[Expr]
    line: int
    file: str

    def value(self, r: Render) -> object:
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
                    self.file, self.line, f"cannot test {kind(left)} in {kind(right)}"
                )
            return inside if isinstance(op, ast.In) else not inside
        if left is None or right is None:
            return False  # like SQL's NULL: an absent parameter is neither less nor more
        try:
            return ORDERING[type(op)](left, right)
        except TypeError:
            raise TemplateError(
                self.file, self.line, f"cannot compare {kind(left)} with {kind(right)}"
            ) from None


@dataclass
class Identifier(Expr):
    """column(), columns() or symbol() of a parameter, or of a literal name."""

    function: str
    name: str | None  # the parameter, or None for a literal
    literal: str | None
    line: int
    file: str

    def sql(self, r: Render) -> str:
        if self.name is None:
            assert self.literal is not None
            value: object = self.literal
            names = self._names(value)
            for one in names:
                if one not in r.columns:
                    raise TemplateError(self.file, self.line, f"{one!r} is not a column")
            return ", ".join(backquoted(one) for one in names)
        value = r.sent(self.name)
        if value is None:
            value = r.template._defaults.get(self.name, MISSING)
            if value is MISSING:
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
class SqlAnd(Expr):
    conditions: list[tuple[str, str, Expr]]  # column, SQL operator, value
    line: int
    file: str

    def sql(self, r: Render) -> str:
        parts = []
        for column, sql_operator, expr in self.conditions:
            if column not in r.columns:
                raise TemplateError(self.file, self.line, f"sql_and: {column!r} is not a column")
            if isinstance(expr, Typed):
                converted = expr.converted(r)
                if converted is None:
                    continue
                bound = r.bind(expr.name, expr.type, converted[1])
            else:
                assert isinstance(expr, Name)
                sent = r.sent(expr.name)
                if sent is None:
                    continue  # Tinybird leaves an absent parameter's condition out
                try:
                    text = STRING.convert(sent)[1]
                except InvalidValue as exc:
                    raise RenderError(f"parameter '{expr.name}': {exc}") from None
                bound = r.bind(expr.name, STRING, text)
            parts.append(f"{backquoted(column)} {sql_operator} {bound}")
        return "(" + " AND ".join(parts) + ")" if parts else "1"


@dataclass
class Raise(Expr):
    message: str
    status: int
    body: dict[str, Any] | None
    line: int

    def sql(self, r: Render) -> str:
        raise RenderError(self.message, status=self.status, body=self.body)


STRING = ValueType("String")
MISSING = object()


@dataclass
class Text:
    text: str


@dataclass
class Output:
    expr: Expr


@dataclass
class If:
    branches: list[tuple[Expr, list[Any]]]
    otherwise: list[Any] | None
    line: int
