"""The function library: the template functions Pipit knows (and those it refuses by name),
and how the parser reads a call to each into the expression it compiles to."""

from __future__ import annotations

import ast
import json
import re
from collections.abc import Collection

from pipit.project.template.expressions import (
    MISSING,
    STRING,
    Defined,
    Expr,
    Identifier,
    Name,
    Raise,
    SqlAnd,
    Typed,
)
from pipit.project.template.parameters import Use
from pipit.project.template.values import INTEGER_BITS, ValueType

SCALAR_FUNCTIONS: dict[str, str] = {
    "String": "String",
    "Boolean": "Bool",
    "bool": "Bool",
    "Int": "Int32",
    "Integer": "Int32",
    **{f"Int{bits}": f"Int{bits}" for bits in INTEGER_BITS},
    **{f"UInt{bits}": f"UInt{bits}" for bits in INTEGER_BITS},
    "Float32": "Float32",
    "Float64": "Float64",
    "Date": "Date",
    "DateTime": "DateTime",
    "DateTime64": "DateTime64(3)",
}
TYPED_FUNCTIONS = frozenset({*SCALAR_FUNCTIONS, "Array"})
IDENTIFIER_FUNCTIONS = {"column": "column", "columns": "columns", "symbol": "symbol"}
IDENTIFIER_FUNCTIONS |= {"Column": "symbol", "Symbol": "symbol"}
_OTHER_FUNCTIONS = frozenset({"defined", "sql_and", "error", "custom_error"})
FUNCTIONS = TYPED_FUNCTIONS | set(IDENTIFIER_FUNCTIONS) | _OTHER_FUNCTIONS
UNSUPPORTED_FUNCTIONS = frozenset(
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
RESERVED_NAMES = frozenset({"q", "format", "token"})
PARAMETER_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
TYPED_KEYWORDS = frozenset(
    {"default", "required", "description", "example", "format", "enum", "defined"}
)
SQL_AND_OPERATORS = {
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


class FunctionCalls:
    """The parser's reading of function calls (mixed into parser.Parser, whose `error`,
    `_literal`, `_check_name`, `declarations` and `depth` these use)."""

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

    def _typed(self, node: ast.Call, base: int) -> Typed:
        at = base + node.lineno - 1
        function = node.func.id  # type: ignore[attr-defined]
        is_array = function == "Array"
        args, named = self._arguments(node, base, 3 if is_array else 2, TYPED_KEYWORDS)
        name = self._parameter_name(node, args, base)
        if is_array:
            element = "String"
            if len(args) > 1:
                element_arg = self._literal(args[1], base)
                if not isinstance(element_arg, str) or element_arg not in SCALAR_FUNCTIONS:
                    known = ", ".join(sorted(SCALAR_FUNCTIONS))
                    raise self.error(
                        at, f"Array(): element type {element_arg!r} is not one of {known}"
                    )
                element = element_arg
            type_ = ValueType(
                f"Array({SCALAR_FUNCTIONS[element]})", ValueType(SCALAR_FUNCTIONS[element])
            )
        else:
            type_ = ValueType(SCALAR_FUNCTIONS[function])
        default_index = 2 if is_array else 1
        if len(args) > default_index and "default" in named:
            raise self.error(at, f"{function}(): default given twice")
        default_node = args[default_index] if len(args) > default_index else named.get("default")
        use = Use(name, type_, at, self.depth > 0)
        if default_node is not None:
            default = self._literal(default_node, base)
            if default is not None:
                use.default = self.declarations.convert(type_, default, at, "default")
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
            use.enum = tuple(self.declarations.convert(type_, v, at, "enum value") for v in values)
        return self._typed_use(name, type_, at, use, allow_absent=allow_absent)

    def _typed_use(
        self, name: str, type_: ValueType, at: int, use: Use, *, allow_absent: bool = False
    ) -> Typed:
        use.conditional = self.depth > 0
        if use.default is MISSING and not allow_absent and type_.sql != "Bool":
            use.needs_value = True
        self.declarations.use(use)
        return Typed(name, type_, at, allow_absent)

    def _defined(self, node: ast.Call, base: int) -> Defined:
        at = base + node.lineno - 1
        args, _ = self._arguments(node, base, 1, ())
        if len(args) != 1:
            raise self.error(at, "defined() takes one parameter")
        target = args[0]
        if isinstance(target, ast.Name):
            self._check_name(target.id, at)
            self.declarations.use(Use(target.id, None, at, self.depth > 0))
            return Defined(target.id, at)
        if (
            isinstance(target, ast.Call)
            and isinstance(target.func, ast.Name)
            and target.func.id in TYPED_FUNCTIONS
        ):
            typed = self._typed(target, base)
            return Defined(typed.name, at)
        raise self.error(at, "defined() takes a parameter's name")

    def _identifier(self, node: ast.Call, base: int, function: str) -> Identifier:
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
            return Identifier(function, None, literal, at, self.file)
        name = self._parameter_name(node, args, base)
        use = Use(name, STRING, at, self.depth > 0, as_identifier=True)
        if len(args) > 1:
            default = self._literal(args[1], base)
            if not isinstance(default, str):
                raise self.error(at, f"{function}()'s default is a column name (a string)")
            use.default = default
            for one in default.split(",") if function == "columns" else [default]:
                self._identifiers.append((one.strip(), at))
        use.needs_value = use.default is MISSING
        self.declarations.use(use)
        self.template._identifier_parameters.add(name)
        return Identifier(function, name, None, at, self.file)

    @property
    def _identifiers(self) -> list[tuple[str, int]]:
        return self.template._identifiers

    def _sql_and(self, node: ast.Call, base: int) -> SqlAnd:
        at = base + node.lineno - 1
        if node.args:
            raise self.error(at, "sql_and() takes column=value arguments only")
        conditions: list[tuple[str, str, Expr]] = []
        for keyword in node.keywords:
            if keyword.arg is None:
                raise self.error(at, "sql_and(): **arguments are not supported")
            column, _, suffix = keyword.arg.rpartition("__")
            if not column:
                column, suffix = keyword.arg, "eq"
            if suffix not in SQL_AND_OPERATORS:
                known = ", ".join(SQL_AND_OPERATORS)
                raise self.error(
                    at, f"sql_and(): operator {suffix!r} in {keyword.arg} is not one of {known}"
                )
            sql_operator = SQL_AND_OPERATORS[suffix]
            list_operator = suffix in ("in", "not_in")
            value = keyword.value
            expr: Expr
            if isinstance(value, ast.Name):
                if list_operator:
                    raise self.error(at, f"sql_and(): {keyword.arg} needs an Array(...) value")
                self._check_name(value.id, at)
                self.declarations.use(Use(value.id, STRING, at, self.depth > 0))
                expr = Name(value.id, at)
            elif (
                isinstance(value, ast.Call)
                and isinstance(value.func, ast.Name)
                and value.func.id in TYPED_FUNCTIONS
            ):
                expr = self._typed(value, base)
                if list_operator != (expr.type.element is not None):
                    need = "an Array(...)" if list_operator else "a single"
                    raise self.error(at, f"sql_and(): {keyword.arg} needs {need} value")
            else:
                raise self.error(at, f"sql_and(): {keyword.arg}'s value must be a parameter")
            self._identifiers.append((column, at))
            conditions.append((column, sql_operator, expr))
        return SqlAnd(conditions, at, self.file)

    def _raise(self, node: ast.Call, base: int) -> Raise:
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
            return Raise(payload, status, None, at)
        if not isinstance(payload, dict):
            raise self.error(at, "custom_error() takes a dict (the response body) or a message")
        message = payload.get("error")
        text = message if isinstance(message, str) else json.dumps(payload, ensure_ascii=False)
        return Raise(text, status, payload, at)
