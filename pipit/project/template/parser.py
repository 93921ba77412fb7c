"""Reading a template's text: tags, `{% if %}` statements and the Python-syntax expressions,
checked against an allow-list of node types."""

from __future__ import annotations

import ast
import re
from typing import TYPE_CHECKING, Any

from pipit.project.template.errors import TemplateError
from pipit.project.template.expressions import (
    STRING,
    BoolOp,
    Compare,
    Const,
    Expr,
    If,
    Items,
    Name,
    Not,
    Output,
    Text,
)
from pipit.project.template.functions import (
    FUNCTIONS,
    IDENTIFIER_FUNCTIONS,
    PARAMETER_NAME,
    RESERVED_NAMES,
    TYPED_FUNCTIONS,
    UNSUPPORTED_FUNCTIONS,
    FunctionCalls,
)
from pipit.project.template.parameters import Declarations, Use

if TYPE_CHECKING:
    from pipit.project.template.compiled import Template

_TAG = re.compile(r"\{\{|\{%|\{#")
_STATEMENT = re.compile(r"\s*(\w+)(.*?)\s*$", re.DOTALL)
_EMBEDDED = re.compile(r"\{\{(.*?)\}\}", re.DOTALL)
_TORNADO_STATEMENTS = (
    "for while set try except finally import from include extends block module raw "
    "autoescape apply comment break continue whitespace"
).split()


class Parser(FunctionCalls):
    def __init__(self, template: Template, file: str, line: int) -> None:
        self.template = template
        self.file = file
        self.first_line = line
        self.declarations = Declarations(template, file)
        self.depth = 0
        self.compares: list[Compare] = []

    def error(self, line: int, message: str) -> TemplateError:
        return TemplateError(self.file, line, message)

    # --- text and tags

    def parse(self, text: str) -> list[Any]:
        root: list[Any] = []
        # Each open {% if %}: its node, the branch being filled, and the line it opened.
        stack: list[tuple[If, list[Any], bool]] = []
        body = root
        position = 0
        line = self.first_line
        while True:
            match = _TAG.search(text, position)
            end = match.start() if match else len(text)
            if end > position:
                body.append(Text(text[position:end]))
                line += text.count("\n", position, end)
            if match is None:
                break
            tag = match.group()
            start = match.end()
            if text.startswith("!", start):  # {{! {%! {#!: the tag's characters as text
                body.append(Text(tag))
                position = start + 1
                continue
            if tag == "{#":
                close = text.find("#}", start)
                if close < 0:
                    raise self.error(line, "{# without a closing #}")
                position = close + 2
            elif tag == "{{":
                content, position = self._expression_text(text, start, line)
                body.append(Output(self._output(content, line)))
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
        self, content: str, line: int, stack: list[tuple[If, list[Any], bool]], root: list[Any]
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
            node = If([], None, line)
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

    def _output(self, content: str, line: int) -> Expr:
        if not content.strip():
            raise self.error(line, "empty {{ }}")
        node = self._parse_python(content, line)
        at = line + node.lineno - 1
        if isinstance(node, ast.Name):
            self._check_name(node.id, at)
            return self._typed_use(node.id, STRING, at, Use(node.id, STRING, at, False))
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            function = node.func.id
            if function in TYPED_FUNCTIONS:
                return self._typed(node, line)
            if function in IDENTIFIER_FUNCTIONS:
                return self._identifier(node, line, IDENTIFIER_FUNCTIONS[function])
            if function == "sql_and":
                return self._sql_and(node, line)
            if function in ("error", "custom_error"):
                return self._raise(node, line)
            self._check_function(function, at)
            raise self.error(at, f"{function}() cannot be written into the SQL")
        raise self.error(
            at,
            "{{ }} holds a parameter (String(x), Int32(x, 10), ...), a name, column(), "
            f"columns(), symbol(), sql_and(), error() or custom_error(); found {what(node)}",
        )

    def _condition(self, source: str, line: int, word: str) -> Expr:
        if not source.strip():
            raise self.error(line, f"{{% {word} %}} needs a condition")
        source = _EMBEDDED.sub(lambda m: "(" + m.group(1) + ")", source)
        return self._value(self._parse_python(source, line), line)

    def _value(self, node: ast.expr, base: int) -> Expr:
        at = base + getattr(node, "lineno", 1) - 1
        if isinstance(node, ast.Constant):
            return Const(self._constant(node, at), at)
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.UAdd):
            return Const(self._literal(node, base), at)
        if isinstance(node, ast.Name):
            self._check_name(node.id, at)
            self.declarations.use(Use(node.id, None, at, self.depth > 0))
            return Name(node.id, at)
        if isinstance(node, ast.List | ast.Tuple):
            return Items([self._value(item, base) for item in node.elts], at)
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
            return Not(self._value(node.operand, base), at)
        if isinstance(node, ast.BoolOp):
            return BoolOp(
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
            compare = Compare(
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
            if function in TYPED_FUNCTIONS:
                return self._typed(node, base)
            if function == "defined":
                return self._defined(node, base)
            self._check_function(function, at)
            raise self.error(at, f"{function}() cannot be used in a condition")
        raise self.error(at, f"{what(node)} is not supported in a template expression")

    def _check_function(self, function: str, line: int) -> None:
        if function in UNSUPPORTED_FUNCTIONS:
            raise self.error(line, f"{function}() is not supported by Pipit")
        if function not in FUNCTIONS:
            raise self.error(line, f"unknown function {function}()")

    def _check_name(self, name: str, line: int) -> None:
        if name in FUNCTIONS or name in UNSUPPORTED_FUNCTIONS:
            raise self.error(line, f"{name} is a function, not a parameter")
        if not PARAMETER_NAME.fullmatch(name):
            raise self.error(line, f"parameter name {name!r}: use ASCII letters, digits and _")
        if name in RESERVED_NAMES:
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
        raise self.error(at, f"expected a literal, found {what(node)}")


def what(node: ast.AST) -> str:
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
