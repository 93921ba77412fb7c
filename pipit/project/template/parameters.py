"""A parameter's declaration from all its uses: one type, default, description, enum and
required flag per name (conflicts are TemplateErrors), and one placeholder per name and type."""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from pipit.project.template.errors import TemplateError
from pipit.project.template.expressions import (
    MISSING,
    ORDERING,
    STRING,
    Compare,
    Const,
    Expr,
    Items,
    Name,
    Typed,
)
from pipit.project.template.values import InvalidValue, ValueType, short

if TYPE_CHECKING:
    from pipit.project.template.compiled import Template


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


@dataclass
class Use:
    """One place a parameter's type, default, etc. are declared."""

    name: str
    type: ValueType | None  # None: only read (a condition, defined())
    line: int
    conditional: bool
    default: object = MISSING
    required: bool | None = None
    description: str = ""
    enum: tuple[object, ...] = ()
    example: object = None
    needs_value: bool = False  # rendering it without a value fails
    as_identifier: bool = False


class Declarations:
    """Every use the parser meets, merged into the template's parameters by `finish`."""

    def __init__(self, template: Template, file: str) -> None:
        self.template = template
        self.file = file
        self.uses: list[Use] = []
        self.order: dict[str, int] = {}

    def error(self, line: int, message: str) -> TemplateError:
        return TemplateError(self.file, line, message)

    def convert(self, type_: ValueType, value: object, line: int, what: str) -> object:
        try:
            return type_.convert(value)[0]
        except InvalidValue as exc:
            raise self.error(line, f"{what} {short(value)} is not a {type_.sql}: {exc}") from None

    def use(self, use: Use) -> None:
        self.order.setdefault(use.name, len(self.order))
        self.uses.append(use)

    def finish(self, compares: list[Compare]) -> None:
        template = self.template
        by_name: dict[str, list[Use]] = {}
        for use in self.uses:
            by_name.setdefault(use.name, []).append(use)
        parameters = []
        for name in sorted(by_name, key=self.order.__getitem__):
            uses = by_name[name]
            typed = [u for u in uses if u.type is not None]
            declared = typed[0].type if typed else STRING
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
            if default is not MISSING:
                for use in typed:
                    assert use.type is not None
                    self.convert(use.type, default, use.line, f"{name}'s default")
            needed = default is MISSING and any(u.needs_value and not u.conditional for u in uses)
            template._types[name] = declared
            if default is not MISSING:
                template._defaults[name] = default
            if enum:
                template._enums[name] = tuple(enum)  # type: ignore[arg-type]
            parameters.append(
                Parameter(
                    name=name,
                    type=declared.sql,
                    default=None if default is MISSING else default,
                    required=explicit == {True} or needed,
                    description=description or "",  # type: ignore[arg-type]
                    line=uses[0].line,
                    enum=tuple(enum) if enum else (),  # type: ignore[arg-type]
                    example=next((u.example for u in uses if u.example is not None), None),
                )
            )
        template.parameters = tuple(parameters)
        self._allocate(by_name)
        for compare in compares:
            self._check_compare(compare)

    def _merge(
        self, name: str, uses: list[Use], attribute: str, declared: ValueType | None
    ) -> object:
        found: object = MISSING
        first_line = 0
        for use in uses:
            value = getattr(use, attribute)
            if value is MISSING or (attribute != "default" and value in ("", ())):
                continue
            if declared is not None and use.type is not None and use.type != declared:
                try:
                    value = declared.convert(value)[0]
                except InvalidValue as exc:
                    raise self.error(
                        use.line, f"{name}'s default does not fit {declared.sql}: {exc}"
                    ) from None
            if found is MISSING:
                found, first_line = value, use.line
            elif value != found:
                raise self.error(
                    use.line,
                    f"parameter {name!r} has {attribute} {short(found)} at line {first_line} "
                    f"and {short(value)} here",
                )
        return found if attribute == "default" else (None if found is MISSING else found)

    def _allocate(self, by_name: dict[str, list[Use]]) -> None:
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

    def _family(self, expr: Expr) -> str:
        if isinstance(expr, Const):
            value = expr.constant
            if value is None:
                return "none"
            if isinstance(value, bool):
                return "bool"
            return "number" if isinstance(value, int | float) else "str"
        if isinstance(expr, Name):
            return self.template._types[expr.name].family
        if isinstance(expr, Typed):
            return expr.type.family
        if isinstance(expr, Items):
            return "list"
        return "any"

    def _check_compare(self, compare: Compare) -> None:
        left = self._family(compare.left)
        for op, right_expr in zip(compare.ops, compare.rights, strict=True):
            right = self._family(right_expr)
            if isinstance(op, tuple(ORDERING)):
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
