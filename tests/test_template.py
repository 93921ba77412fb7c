"""Tinybird's template language: every function and construct the docs and tutorials use,
the tutorials' own pipes, problems at their file:line, and proof that request values only
ever reach ClickHouse as bound {placeholder:Type} values or as checked identifiers."""

from __future__ import annotations

import json
import textwrap
from collections.abc import Mapping
from pathlib import Path

import pytest
from clickhouse_connect.driver.binding import escape_str
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from samples import ab_test_event

from common.datasources import registry
from pipit.project.datafiles import read_folder
from pipit.project.model import ProjectError
from pipit.project.template import Parameter, Rendered, RenderError, Template, TemplateError

TUTORIALS = Path(__file__).parent / "projects" / "tutorials"
COLUMNS = ("timestamp", "user_id", "event_type", "a b", "page_url")


def render(
    text: str, given: Mapping[str, object] | None = None, columns=COLUMNS, line: int = 1
) -> Rendered:
    return Template.parse(text, file="t.pipe", line=line).render(given or {}, columns=columns)


def parameters(text: str) -> dict[str, Parameter]:
    return {p.name: p for p in Template.parse(text).parameters}


def template_error(text: str, *, line: int = 1) -> TemplateError:
    with pytest.raises(TemplateError) as caught:
        Template.parse(text, file="dir/p.pipe", line=line)
    return caught.value


def render_error(text: str, given: Mapping[str, object] | None = None) -> RenderError:
    template = Template.parse(text)
    with pytest.raises(RenderError) as caught:
        template.render(given or {}, columns=COLUMNS)
    return caught.value


# ------------------------------------------------------------------ typed parameters

TYPED = [
    # function, ClickHouse type, default literal, default value, a value, its text
    ("String", "String", "'d'", "d", "it's", "it's"),
    ("Boolean", "Bool", "True", True, False, "false"),
    ("Int", "Int32", "7", 7, -5, "-5"),
    ("Integer", "Int32", "7", 7, 2147483647, "2147483647"),
    ("Int8", "Int8", "-1", -1, -128, "-128"),
    ("Int16", "Int16", "1", 1, 32767, "32767"),
    ("Int32", "Int32", "1", 1, -(2**31), str(-(2**31))),
    ("Int64", "Int64", "1", 1, 2**63 - 1, str(2**63 - 1)),
    ("Int128", "Int128", "1", 1, -(2**127), str(-(2**127))),
    ("Int256", "Int256", "1", 1, 2**255 - 1, str(2**255 - 1)),
    ("UInt8", "UInt8", "1", 1, 255, "255"),
    ("UInt16", "UInt16", "1", 1, 65535, "65535"),
    ("UInt32", "UInt32", "1", 1, 2**32 - 1, str(2**32 - 1)),
    ("UInt64", "UInt64", "1", 1, 2**64 - 1, str(2**64 - 1)),
    ("UInt128", "UInt128", "1", 1, 2**128 - 1, str(2**128 - 1)),
    ("UInt256", "UInt256", "1", 1, 2**256 - 1, str(2**256 - 1)),
    ("Float32", "Float32", "0.5", 0.5, 1.25, "1.25"),
    ("Float64", "Float64", "-2.5e-3", -0.0025, 1e-05, "1e-05"),
    ("Date", "Date", "'2023-01-01'", "2023-01-01", "2149-06-06", "2149-06-06"),
    (
        "DateTime",
        "DateTime",
        "'2023-01-01 00:00:00'",
        "2023-01-01 00:00:00",
        "2023-06-15 14:30:00",
        "2023-06-15 14:30:00",
    ),
    (
        "DateTime64",
        "DateTime64(3)",
        "'2023-01-01 00:00:00.5'",
        "2023-01-01 00:00:00.500",
        "2023-06-15 14:30:00.123",
        "2023-06-15 14:30:00.123",
    ),
]


@pytest.mark.parametrize(("function", "ch_type", "literal", "default", "value", "text"), TYPED)
def test_each_typed_function_binds_a_placeholder_of_its_type(
    function: str, ch_type: str, literal: str, default: object, value: object, text: str
) -> None:
    sql = f"SELECT {{{{{function}(x, {literal})}}}}"
    (parameter,) = Template.parse(sql).parameters
    assert (parameter.name, parameter.type, parameter.default, parameter.required) == (
        "x",
        ch_type,
        default,
        False,
    )
    sent = render(sql, {"x": value})
    assert sent.sql == f"SELECT {{x:{ch_type}}}"
    assert sent.values == {"x": text}
    assert sent.types == {"x": ch_type}
    absent = render(sql)
    assert absent.sql == sent.sql
    assert absent.values == {
        "x": Template.parse(sql).render({"x": default}, columns=()).values["x"]
    }


@pytest.mark.parametrize(("function", "ch_type"), [(f, t) for f, t, *_ in TYPED])
def test_default_as_keyword_and_no_default(function: str, ch_type: str) -> None:
    literal = next(row[2] for row in TYPED if row[0] == function)
    assert parameters(f"{{{{{function}(x, default={literal})}}}}")["x"].default is not None
    no_default = parameters(f"{{{{{function}(x)}}}}")["x"]
    assert no_default.default is None
    # Without a default a request must send it, except a Boolean, which reads as false.
    assert no_default.required is (ch_type != "Bool")


@pytest.mark.parametrize(
    ("sql", "given", "message"),
    [
        ("{{Int8(x)}}", {"x": 128}, "128 is outside Int8's range (-128 to 127)"),
        ("{{UInt8(x)}}", {"x": -1}, "outside UInt8's range"),
        ("{{Int32(x)}}", {"x": "12abc"}, "expected an integer"),
        ("{{Int32(x)}}", {"x": "\uff11\uff12"}, "expected an integer"),  # fullwidth digits
        ("{{Int32(x)}}", {"x": True}, "expected an integer, got a boolean"),
        ("{{Float64(x)}}", {"x": float("nan")}, "outside Float64's range"),
        ("{{Float32(x)}}", {"x": 1e39}, "outside Float32's range"),
        ("{{Date(x)}}", {"x": "2023-13-01"}, "is not a date"),
        ("{{Date(x)}}", {"x": "yesterday"}, "expected a date YYYY-MM-DD"),
        ("{{DateTime(x)}}", {"x": "2023-01-01 25:00:00"}, "is not a date-time"),
        ("{{DateTime64(x)}}", {"x": "not a time"}, "is not a date-time"),
        ("{{Boolean(x)}}", {"x": "maybe"}, "expected true or false"),
        ("{{String(x)}}", {"x": ["a"]}, "expected a string, got a list"),
        ("{{String(x)}}", {"x": "\ud800"}, "not valid Unicode"),
        ("{{Array(x, 'Int32')}}", {"x": [1, "two"]}, "item 1: expected an integer"),
        ("{{Array(x, 'Int8')}}", {"x": "1,2,300"}, "item 2: 300 is outside Int8's range"),
        # Values Python itself cannot convert are refused, never a crash.
        ("{{Int256(x)}}", {"x": "1" * 100}, "expected an integer"),
        ("{{Float64(x)}}", {"x": 10**400}, "is not a valid Float64"),
        ("{{String(x)}}", {"x": 10**5000}, "is not a valid String"),
        ("{{DateTime64(x)}}", {"x": 8e13}, "outside DateTime64's range"),
        ("{{DateTime64(x)}}", {"x": 1e300}, "outside DateTime64's range"),
    ],
)
def test_a_value_that_does_not_fit_its_type_is_a_render_error(
    sql: str, given: dict[str, object], message: str
) -> None:
    error = render_error(sql, given)
    assert message in error.message
    assert error.message.startswith("parameter 'x': ")
    assert error.status == 400


def test_date_times_are_read_as_utc_and_written_as_clickhouse_parses_them() -> None:
    sql = "{{DateTime(t)}} {{DateTime64(u)}}"
    cases = [
        ({"t": "2023-06-15", "u": "2023-06-15"}, "2023-06-15 00:00:00", "2023-06-15 00:00:00.000"),
        (
            {"t": "2023-06-15T14:30:00+02:00", "u": "2023-06-15T14:30:00.25+02:00"},
            "2023-06-15 12:30:00",
            "2023-06-15 12:30:00.250",
        ),
        ({"t": 0, "u": 1.5}, "1970-01-01 00:00:00", "1970-01-01 00:00:01.500"),
    ]
    for given_values, t, u in cases:
        assert render(sql, given_values).values == {"t": t, "u": u}


def test_arrays_take_a_type_a_default_lists_or_comma_separated_text() -> None:
    sql = (
        "{{Array(ids, 'Int32', '1,2')}} {{Array(names)}} "
        "{{Array(days, 'Date', default=['2023-01-01'])}}"
    )
    found = parameters(sql)
    assert [(p.type, p.default) for p in found.values()] == [
        ("Array(Int32)", [1, 2]),
        ("Array(String)", None),
        ("Array(Date)", ["2023-01-01"]),
    ]
    sent = render(sql, {"ids": "3, 4", "names": ["it's", "a\\b"], "days": []})
    assert sent.sql == "{ids:Array(Int32)} {names:Array(String)} {days:Array(Date)}"
    assert sent.values == {"ids": "[3,4]", "names": "['it\\'s','a\\\\b']", "days": "[]"}
    assert render(sql, {"names": "x,y"}).values["names"] == "['x','y']"
    assert render(sql, {"names": []}).values["ids"] == "[1,2]"


def test_an_array_element_type_must_be_one_of_the_parameter_types() -> None:
    error = template_error("SELECT 1\n{{Array(x, 'Nullable(String)')}}", line=4)
    assert (error.file, error.line) == ("dir/p.pipe", 5)
    assert "element type 'Nullable(String)'" in error.message


def test_required_description_example_format_and_enum() -> None:
    sql = (
        "{{String(country, 'US', description='ISO code', required=True, example='FR', "
        "format='text', enum=['US', 'FR'])}}"
    )
    (p,) = Template.parse(sql).parameters
    assert (p.required, p.description, p.example, p.enum, p.default) == (
        True,
        "ISO code",
        "FR",
        ("US", "FR"),
        "US",
    )
    # required=True is enforced even though there is a default.
    assert render_error(sql).message == "missing required parameter: country"
    assert render(sql, {"country": "FR"}).values == {"country": "FR"}
    assert render_error(sql, {"country": "ES"}).message == (
        "parameter 'country' must be one of 'US', 'FR'"
    )


def test_defined_false_lets_a_use_be_absent() -> None:
    sql = "{{sql_and(a=Int32(a, defined=False), b=Int32(b, defined=False))}}"
    assert {p.required for p in Template.parse(sql).parameters} == {False}
    assert render(sql, {"b": 2}, columns=["a", "b"]).sql == "(`b` = {b:Int32})"
    assert render(sql, {}, columns=["a", "b"]).sql == "1"
    assert render_error("{{Int32(a, defined=False)}}").message == "missing parameter 'a'"


@pytest.mark.parametrize(
    ("sql", "message"),
    [
        ("{{String(x, 'a', default='b')}}", "default given twice"),
        ("{{String(x, 'a', colour='red')}}", "String() has no argument 'colour'"),
        ("{{String(x, 'a', 'b')}}", "at most 2 positional arguments"),
        ("{{String('x')}}", "first argument is the parameter's name"),
        ("{{String(x, required='yes')}}", "required= is True or False"),
        ("{{String(x, description=1)}}", "description= is a string"),
        ("{{String(x, enum=[])}}", "enum= is a non-empty list"),
        ("{{Int8(x, 300)}}", "default 300 is not a Int8"),
        ("{{Int8(x, enum=[1, 'z'])}}", "enum value 'z' is not a Int8"),
        ("{{Date(x, '2023-02-30')}}", "default '2023-02-30' is not a Date"),
        ("{{String(x, y)}}", "expected a literal, found Name"),
        ("{{String(*x)}}", "*arguments are not supported"),
        ("{{String(x, **y)}}", "**arguments are not supported"),
        ("{{String(q)}}", "'q' cannot be a parameter name"),
        ("{{String(format)}}", "'format' cannot be a parameter name"),
        ("{{String(String)}}", "String is a function, not a parameter"),
        ("{{String(caf\u00e9)}}", "use ASCII letters, digits and _"),
    ],
)
def test_typed_function_mistakes_are_template_errors(sql: str, message: str) -> None:
    error = template_error("SELECT\n\n" + sql, line=10)
    assert (error.file, error.line) == ("dir/p.pipe", 12)
    assert message in error.message
    assert str(error).startswith("dir/p.pipe:12: ")
    assert isinstance(error, ProjectError)


def test_missing_parameters_are_all_named_at_once() -> None:
    sql = "WHERE a = {{String(a)}} AND b = {{Int32(b)}} AND c = {{Int32(c, 1)}}"
    assert render_error(sql).message == "missing required parameters: a, b"
    assert render_error(sql, {"a": "x"}).message == "missing required parameter: b"


# ---------------------------------------------------------------------------- names


def test_a_bare_name_is_a_string_parameter() -> None:
    (p,) = Template.parse("WHERE x = {{ x }}").parameters
    assert (p.name, p.type, p.default, p.required) == ("x", "String", None, True)
    assert render("WHERE x = {{ x }}", {"x": "v"}).sql == "WHERE x = {x:String}"
    assert render_error("WHERE x = {{ x }}").message == "missing required parameter: x"


def test_parameters_are_listed_once_in_order_of_first_use_with_their_line() -> None:
    sql = textwrap.dedent(
        """\
        SELECT 1
        {% if defined(b) %}
          WHERE x = {{String(b, 'z')}} AND y = {{Int32(a, 3)}}
        {% end %}
        LIMIT {{Int32(a)}}
        """
    )
    found = Template.parse(sql, line=20).parameters
    assert [(p.name, p.type, p.default, p.required, p.line) for p in found] == [
        ("b", "String", "z", False, 21),
        ("a", "Int32", 3, False, 22),
    ]


def test_a_name_used_with_two_types_gets_a_placeholder_per_type() -> None:
    sql = "{{Int32(n, 5)}} {{String(n)}} {{Int32(n)}} {{Int64(n)}}"
    (p,) = Template.parse(sql).parameters
    assert (p.type, p.default, p.required) == ("Int32", 5, False)
    rendered = render(sql, {"n": 7})
    assert rendered.sql == "{n:Int32} {n__String:String} {n:Int32} {n__Int64:Int64}"
    assert rendered.values == {"n": "7", "n__String": "7", "n__Int64": "7"}
    # A parameter that happens to be called like a generated placeholder keeps its own.
    clash = render("{{Int32(n, 1)}} {{String(n)}} {{String(n__String, 'x')}}")
    assert clash.sql == "{n:Int32} {n__String_2:String} {n__String:String}"


@pytest.mark.parametrize(
    ("sql", "line", "message"),
    [
        ("{{String(x, 'a')}}\n{{String(x, 'b')}}", 2, "has default 'a' at line 1 and 'b' here"),
        (
            "{{String(x, description='a')}}\n{{String(x, description='b')}}",
            2,
            "has description",
        ),
        ("{{String(x, required=True)}}\n{{String(x, required=False)}}", 2, "required= differs"),
        ("{{Array(x, 'Int32')}}\n{{Int32(x)}}", 2, "is Array(Int32) at line 1 and Int32 here"),
        ("{{Int32(x, 5)}}\n{{Date(x)}}", 2, "x's default 5 is not a Date"),
    ],
)
def test_conflicting_declarations_are_template_errors(sql: str, line: int, message: str) -> None:
    error = template_error(sql)
    assert error.line == line
    assert message in error.message


# ------------------------------------------------------------------------- conditions


COND = textwrap.dedent(
    """\
    SELECT *
    FROM t
    WHERE 1
    {% if defined(user) %}
      AND user_id = {{String(user)}}
    {% elif Int32(limit, 10) > 100 and not defined(force) %}
      AND big
    {% elif kind in ('a', 'b') or kind == 'c' %}
      AND kind_{{String(kind)}}
    {% else %}
      AND other
    {% end %}
    """
)


def test_if_elif_else_end() -> None:
    assert "AND user_id = {user:String}" in render(COND, {"user": "u"}).sql
    assert render(COND, {"user": "u"}).values == {"user": "u"}
    assert "AND big" in render(COND, {"limit": 101}).sql
    assert "AND big" not in render(COND, {"limit": 101, "force": "1"}).sql
    assert "AND kind_{kind:String}" in render(COND, {"kind": "b"}).sql
    assert "AND kind_" in render(COND, {"kind": "c"}).sql
    assert "AND other" in render(COND, {"kind": "z"}).sql
    assert "AND other" in render(COND).sql
    # Only the branch taken is in the SQL, and only its values are bound.
    taken = render(COND, {"user": "u", "kind": "a"})
    assert "big" not in taken.sql and "kind_" not in taken.sql and "other" not in taken.sql
    assert taken.values == {"user": "u"}


def test_parameters_inside_conditions_are_never_required() -> None:
    found = parameters(COND)
    assert [(n, p.type, p.required) for n, p in found.items()] == [
        ("user", "String", False),
        ("limit", "Int32", False),
        ("force", "String", False),
        ("kind", "String", False),
    ]


def test_nested_ifs_end_if_and_comparisons_with_absent_parameters() -> None:
    sql = (
        "{% if defined(a) %}A{% if Int32(a) >= 2 %}2{% else %}1{% end if %}{% end %}"
        "{% if b > 'm' %}B{% end %}{% if b is None %}N{% end %}{% if not b %}!{% end %}"
        "{% if Int32(c, 1) == 1 and True %}C{% end %}{% if -1 < 0 <= 0 %}D{% end %}"
    )
    assert render(sql, {"a": 1}).sql == "A1N!CD"
    assert render(sql, {"a": 5}).sql == "A2N!CD"
    assert render(sql, {"b": "z"}).sql == "BCD"
    assert render(sql, {"b": "a"}).sql == "CD"
    assert parameters(sql)["b"].type == "String"


def test_a_condition_reads_the_parameter_as_its_type() -> None:
    sql = "{% if limit > 50 %}big{% end %}{{Int32(limit, 10)}}"
    assert render(sql, {"limit": 51}).sql == "big{limit:Int32}"
    assert render(sql, {"limit": "51"}).sql == "big{limit:Int32}"  # converted, then compared
    assert render(sql).sql == "{limit:Int32}"  # absent: None is not > 50 (the default is not read)
    assert render_error(sql, {"limit": "many"}).message.startswith("parameter 'limit':")


def test_templates_inside_statements_read_as_parentheses() -> None:
    sql = "{% if defined({{UInt64(n)}}) and {{UInt64(n)}} > 1 %}many{% end %}"
    (p,) = Template.parse(sql).parameters
    assert (p.name, p.type, p.required) == ("n", "UInt64", False)
    assert render(sql, {"n": 2}).sql == "many"
    assert render(sql).sql == ""


def test_comments_escapes_and_the_leading_marker() -> None:
    sql = "%\nSELECT {# a comment {{ nothing }} #}1, '{{!', '{%!', '{#!' {{Int8(x, 1)}}"
    rendered = render(sql)
    assert rendered.sql == " \nSELECT 1, '{{', '{%', '{#' {x:Int8}"
    assert Template.parse("% SELECT {{y}}", line=3).parameters[0].line == 3


@pytest.mark.parametrize(
    ("sql", "line", "message"),
    [
        ("{% if defined(x) %}\nA\n", 1, "{% if %} without its {% end %}"),
        ("A\n{% end %}", 2, "{% end %} without an {% if %}"),
        ("{% else %}", 1, "{% else %} without an {% if %}"),
        ("{% if a %}{% else %}{% elif b %}{% end %}", 1, "{% elif %} after the {% else %}"),
        ("{% if a %}{% else b %}{% end %}", 1, "{% else %} takes no condition"),
        ("{% if %}{% end %}", 1, "{% if %} needs a condition"),
        ("{% end for %}", 1, "only {% if %} blocks exist here"),
        ("{% endif %}", 1, "unknown statement {% endif %}"),
        ("\n{% for x in y %}{% end %}", 2, "{% for %} is not supported"),
        ("{% set x = 1 %}", 1, "{% set %} is not supported"),
        ("{% import os %}", 1, "{% import %} is not supported"),
        ("{% if a.b %}{% end %}", 1, "an attribute is not supported"),
        ("{% if a[0] %}{% end %}", 1, "a subscript is not supported"),
        ("{% if a + 1 %}{% end %}", 1, "arithmetic is not supported"),
        ("{% if (lambda: 1)() %}{% end %}", 1, "a call is not supported"),
        ("{% if a if b else c %}{% end %}", 1, "a conditional expression is not supported"),
        ("{% if f'{a}' %}{% end %}", 1, "an f-string is not supported"),
        ("{% if [x for x in y] %}{% end %}", 1, "a comprehension is not supported"),
        ("{% if a is 1 %}{% end %}", 1, "`is` compares with None only"),
        ("{% if column(a) %}{% end %}", 1, "column() cannot be used in a condition"),
        ("{% if error('x') %}{% end %}", 1, "error() cannot be used in a condition"),
        ("{% if open('x') %}{% end %}", 1, "unknown function open()"),
        ("{% if split_to_array(a) %}{% end %}", 1, "split_to_array() is not supported"),
        ("{% if String(a) > 1 %}{% end %}", 1, "cannot order a str against a number"),
        ("{% if 1 in Int32(a, 1) %}{% end %}", 1, "`in` needs a list"),
        ("{% if b'x' %}{% end %}", 1, "bytes literals are not supported"),
        ("{% if (a := 1) %}{% end %}", 1, "an assignment is not supported"),
        ("{% if a ==\n\n b c %}{% end %}", 1, "invalid expression"),
        ("{%\n\n if x. %}{% end %}", 3, "invalid expression"),
        ("{% if a", 1, "{% without a closing %}"),
    ],
)
def test_unsupported_or_broken_statements_are_template_errors_at_their_line(
    sql: str, line: int, message: str
) -> None:
    error = template_error("SELECT 1\n" + sql, line=100)
    assert (error.file, error.line) == ("dir/p.pipe", 100 + line)
    assert message in error.message


@pytest.mark.parametrize(
    ("sql", "line", "message"),
    [
        ("{{ }}", 1, "empty {{ }}"),
        ("{{ 1 + 1 }}", 1, "found arithmetic"),
        ("{{ a.b }}", 1, "found an attribute"),
        ("{{ a[0] }}", 1, "found a subscript"),
        ("{{ 'text' }}", 1, "found Constant"),
        ("{{ defined(x) }}", 1, "defined() cannot be written into the SQL"),
        ("{{ __import__('os') }}", 1, "unknown function __import__()"),
        ("{{ x.__class__ }}", 1, "found an attribute"),
        ("{{ table('t') }}", 1, "table() is not supported"),
        ("{{ tb_secret('k') }}", 1, "tb_secret() is not supported"),
        ("{{ max_threads(2) }}", 1, "max_threads() is not supported"),
        ("{{\n  String(x,\n    y.z) }}", 3, "expected a literal, found an attribute"),
        ("{{ String(x", 1, "{{ without a closing }}"),
        ("{{ String(x }}", 1, "invalid expression"),
        ("{# never closed", 1, "{# without a closing #}"),
    ],
)
def test_unsupported_expressions_are_template_errors_at_their_line(
    sql: str, line: int, message: str
) -> None:
    error = template_error("SELECT 1\n\n" + sql, line=7)
    assert (error.file, error.line) == ("dir/p.pipe", 8 + line)
    assert message in error.message


def test_a_closing_brace_pair_inside_literals() -> None:
    assert render("{{String(x, '}}')}}!").values == {"x": "}}"}
    error = render_error("{{custom_error({'error': 'no', 'detail': {'a': 1}}, 404)}}")
    assert (error.status, error.body) == (404, {"error": "no", "detail": {"a": 1}})


# ------------------------------------------------------------------------ identifiers


def test_column_columns_and_symbol_produce_checked_identifiers() -> None:
    sql = (
        "SELECT {{column(c, 'timestamp')}}, {{columns(cs, 'user_id,event_type')}} BY {{symbol(s)}}"
    )
    found = parameters(sql)
    assert [(p.type, p.default, p.required) for p in found.values()] == [
        ("String", "timestamp", False),
        ("String", "user_id,event_type", False),
        ("String", None, True),
    ]
    rendered = render(sql, {"s": "a b"})
    assert rendered.sql == "SELECT `timestamp`, `user_id`, `event_type` BY `a b`"
    assert rendered.values == {}
    chosen = render(sql, {"c": "page_url", "cs": ["a b", "timestamp"], "s": "user_id"})
    assert chosen.sql == "SELECT `page_url`, `a b`, `timestamp` BY `user_id`"
    assert render(sql, {"cs": " page_url , user_id", "s": "user_id"}).sql.count("`page_url`") == 1


@pytest.mark.parametrize(
    ("sql", "given"),
    [
        ("{{column(c, 'timestamp')}}", {"c": "nope"}),
        ("{{column(c, 'timestamp')}}", {"c": "timestamp`; DROP TABLE t; --"}),
        ("{{column(c, 'timestamp')}}", {"c": 1}),
        ("{{columns(c, 'timestamp')}}", {"c": "timestamp,secret"}),
        ("{{columns(c, 'timestamp')}}", {"c": ["timestamp", ["user_id"]]}),
        ("{{symbol(c)}}", {"c": "system.tables"}),
        ("{{Symbol(c)}}", {"c": "TIMESTAMP"}),
    ],
)
def test_an_identifier_that_is_not_a_column_is_refused(sql: str, given: dict[str, object]) -> None:
    error = render_error(sql, given)
    assert error.message.startswith("parameter 'c': ")
    assert "is not a column of this pipe" in error.message


def test_identifier_functions_without_a_value_or_default() -> None:
    assert render_error("{{symbol(c)}}").message == "missing required parameter: c"
    assert render_error("{{columns(c, '')}}", {"c": ""}).message.startswith("parameter 'c'")
    assert render("{{columns('timestamp, user_id')}} {{column('a b')}}").sql == (
        "`timestamp`, `user_id` `a b`"
    )


def test_check_columns_names_every_identifier_the_template_writes_itself() -> None:
    sql = textwrap.dedent(
        """\
        SELECT {{column(c, 'timestamp')}}, {{columns(cs, 'user_id, nope')}}
        FROM t
        WHERE {{sql_and(ghost=String(g, 'x'), user_id=String(u, 'y'))}}
        {{symbol('missing')}}
        """
    )
    template = Template.parse(sql, file="f.pipe", line=5)
    found = [(e.file, e.line, e.message) for e in template.check_columns(COLUMNS)]
    assert found == [
        ("f.pipe", 5, "'nope' is not a column"),
        ("f.pipe", 7, "'ghost' is not a column"),
        ("f.pipe", 8, "'missing' is not a column"),
    ]
    assert template.check_columns([*COLUMNS, "nope", "ghost", "missing"]) == []


def test_identifier_function_mistakes_are_template_errors() -> None:
    assert "at most 1 positional" in template_error("{{symbol(a, '`')}}").message
    assert "default is a column name" in template_error("{{column(a, 1)}}").message
    assert "a parameter's name or one literal" in template_error("{{column(1)}}").message
    assert "takes a parameter's name" in template_error("{{column()}}").message


# --------------------------------------------------------------------------- sql_and


def test_sql_and_operators_bind_every_value() -> None:
    sql = (
        "WHERE {{sql_and(user_id=String(u, 'x'),"
        " timestamp__gte=DateTime(since, '2023-01-01'),"
        " timestamp__lt=DateTime(until, '2024-01-01'),"
        " event_type__in=Array(kinds, 'String', 'a,b'),"
        " page_url__not_in=Array(skip, default=['/x']), user_id__neq=String(not_u, 'z'),"
        " event_type__like=String(pattern, '%view'), page_url__not_like=String(np, '%admin%'),"
        " user_id__eq=u, timestamp__lte=DateTime(t2, '2025-01-01'),"
        " timestamp__gt=Date(d, '2020-01-01'),"
        " event_type__ilike=String(ip, 'a%'), event_type__not_ilike=String(nip, 'b%'))}}"
    )
    rendered = render(sql, {"u": "me"})
    assert rendered.sql == (
        "WHERE (`user_id` = {u:String} AND `timestamp` >= {since:DateTime} AND "
        "`timestamp` < {until:DateTime} AND `event_type` IN {kinds:Array(String)} AND "
        "`page_url` NOT IN {skip:Array(String)} AND `user_id` != {not_u:String} AND "
        "`event_type` LIKE {pattern:String} AND `page_url` NOT LIKE {np:String} AND "
        "`user_id` = {u:String} AND `timestamp` <= {t2:DateTime} AND `timestamp` > {d:Date} AND "
        "`event_type` ILIKE {ip:String} AND `event_type` NOT ILIKE {nip:String})"
    )
    assert rendered.values["kinds"] == "['a','b']"
    assert rendered.values["since"] == "2023-01-01 00:00:00"


def test_sql_and_leaves_out_absent_bare_names_and_renders_1_when_nothing_is_left() -> None:
    sql = "WHERE {{sql_and(user_id=user, event_type=kind)}}"
    assert [p.required for p in Template.parse(sql).parameters] == [False, False]
    assert render(sql, {"kind": "click"}).sql == "WHERE (`event_type` = {kind:String})"
    assert render(sql).sql == "WHERE 1"


@pytest.mark.parametrize(
    ("sql", "message"),
    [
        ("{{sql_and(a__between=String(x))}}", "operator 'between' in a__between is not one of"),
        ("{{sql_and(a__in=x)}}", "a__in needs an Array(...) value"),
        ("{{sql_and(a__in=String(x))}}", "a__in needs an Array(...) value"),
        ("{{sql_and(a=Array(x))}}", "a needs a single value"),
        ("{{sql_and(a='literal')}}", "a's value must be a parameter"),
        ("{{sql_and('a')}}", "column=value arguments only"),
    ],
)
def test_sql_and_mistakes_are_template_errors(sql: str, message: str) -> None:
    assert message in template_error(sql).message


def test_sql_and_on_a_column_that_is_not_there_is_a_template_error_at_render() -> None:
    template = Template.parse("x\n{{sql_and(ghost=String(g, 'v'))}}", file="f.pipe")
    with pytest.raises(TemplateError, match="f.pipe:2: sql_and: 'ghost' is not a column"):
        template.render({}, columns=COLUMNS)


# ---------------------------------------------------------------------------- errors


def test_error_and_custom_error_answer_the_caller() -> None:
    sql = textwrap.dedent(
        """\
        {% if not defined(a) %}{{ error('a is required') }}{% end %}
        {% if defined(b) and Int32(b) > 10 %}{{ error('b is at most 10', 422) }}{% end %}
        {% if defined(c) %}{{
            custom_error({'error': 'no c', 'documentation': 'https://x'}, code=403)
        }}{% end %}
        {% if defined(d) %}{{ custom_error('plain', 409) }}{% end %}
        {% if defined(e) %}{{ custom_error({'reason': 'other'}) }}{% end %}
        ok
        """
    )
    first = render_error(sql)
    assert (first.message, first.status, first.body) == (
        "a is required",
        400,
        {"error": "a is required"},
    )
    second = render_error(sql, {"a": 1, "b": 11})
    assert (second.message, second.status) == ("b is at most 10", 422)
    third = render_error(sql, {"a": 1, "c": 1})
    assert (third.message, third.status) == ("no c", 403)
    assert third.body == {"error": "no c", "documentation": "https://x"}
    assert render_error(sql, {"a": 1, "d": 1}).status == 409
    fifth = render_error(sql, {"a": 1, "e": 1})
    assert (fifth.message, fifth.body) == ('{"reason": "other"}', {"reason": "other"})
    assert render(sql, {"a": 1}).sql.strip() == "ok"


@pytest.mark.parametrize(
    ("sql", "message"),
    [
        ("{{ error() }}", "error() takes a message"),
        ("{{ error(x) }}", "expected a literal"),
        ("{{ error('m', 200) }}", "the code is an HTTP error status, 400 to 599"),
        ("{{ error('m', 600) }}", "400 to 599"),
        ("{{ error('m', True) }}", "400 to 599"),
        ("{{ error('m', 400, code=401) }}", "code given twice"),
        ("{{ error({'a': 1}) }}", "error() takes a message string"),
        ("{{ custom_error([1]) }}", "custom_error() takes a dict"),
        ("{{ custom_error({1: 'a'}) }}", "a dict's keys must be strings"),
    ],
)
def test_error_function_mistakes_are_template_errors(sql: str, message: str) -> None:
    assert message in template_error(sql).message


# ------------------------------------------------------------------------- tutorials


def _tutorial_templates() -> dict[str, Template]:
    spec = read_folder(TUTORIALS)
    return {
        p.name: Template.parse(p.endpoint.sql, file=p.endpoint.file, line=p.endpoint.line)
        for p in spec.pipes
        if p.endpoint is not None
    }


TUTORIAL_PARAMETERS = {
    "test_summary": [
        ("test_id", "String", "", False, 16),
        ("start_date", "DateTime", "2023-01-01 00:00:00", False, 17),
        ("end_date", "DateTime", "2023-12-31 23:59:59", False, 18),
    ],
    "session_insights": [
        ("start_date", "DateTime", "2023-01-01 00:00:00", False, 17),
        ("end_date", "DateTime", "2024-12-31 23:59:59", False, 17),
        ("user_id", "String", None, True, 18),
        ("limit", "Int32", 100, False, 22),
    ],
    "get_user_journey": [
        ("user_id", "String", "", False, 8),
        ("start_date", "DateTime", "2023-01-01 00:00:00", False, 9),
        ("end_date", "DateTime", "2023-12-31 23:59:59", False, 10),
    ],
    "get_session_events": [("session_id", "String", "", False, 8)],
    "get_popular_pages": [
        ("start_date", "DateTime", "2023-01-01 00:00:00", False, 9),
        ("end_date", "DateTime", "2023-12-31 23:59:59", False, 10),
        ("limit", "Int32", 10, False, 13),
    ],
}


def test_the_tutorial_pipes_parameters() -> None:
    templates = _tutorial_templates()
    assert sorted(templates) == sorted(TUTORIAL_PARAMETERS)
    for name, expected in TUTORIAL_PARAMETERS.items():
        got = [(p.name, p.type, p.default, p.required, p.line) for p in templates[name].parameters]
        assert got == expected, name
    # Each parameter's line really is where the file uses it.
    for template in templates.values():
        lines = Path(template.file).read_text().splitlines()
        for p in template.parameters:
            assert p.name in lines[p.line - 1]


def test_the_tutorial_pipes_render_with_and_without_parameters() -> None:
    templates = _tutorial_templates()
    summary = templates["test_summary"].render({}, columns=())
    assert summary.values == {
        "test_id": "",
        "start_date": "2023-01-01 00:00:00",
        "end_date": "2023-12-31 23:59:59",
    }
    assert "AND test_id = {test_id:String}" in summary.sql
    assert "AND timestamp >= {start_date:DateTime}" in summary.sql
    assert "AND timestamp <= {end_date:DateTime}" in summary.sql
    assert "{{" not in summary.sql
    sent = templates["test_summary"].render(
        {"test_id": "homepage_redesign", "start_date": "2023-06-01 00:00:00"}, columns=()
    )
    assert sent.sql == summary.sql
    assert sent.values["test_id"] == "homepage_redesign"
    assert sent.values["start_date"] == "2023-06-01 00:00:00"

    with pytest.raises(RenderError, match="missing required parameter: user_id"):
        templates["session_insights"].render({}, columns=())
    insights = templates["session_insights"].render({"user_id": "usr_789", "limit": 50}, columns=())
    assert "WHERE timestamp BETWEEN {start_date:DateTime} AND {end_date:DateTime}" in insights.sql
    assert "AND user_id = {user_id:String}" in insights.sql
    assert insights.sql.endswith("LIMIT {limit:Int32}")
    assert insights.values["limit"] == "50"

    popular = templates["get_popular_pages"].render({"limit": 3}, columns=())
    assert "WHERE event_type = 'pageview'" in popular.sql
    assert popular.sql.endswith("LIMIT {limit:Int32}")
    assert popular.values == {
        "start_date": "2023-01-01 00:00:00",
        "end_date": "2023-12-31 23:59:59",
        "limit": "3",
    }


def test_sample_requests_cover_every_and_only_the_required_parameters() -> None:
    templates = _tutorial_templates()
    every, required = templates["session_insights"].sample_requests(["timestamp"])
    assert every == {
        "start_date": "2023-01-01 00:00:00",
        "end_date": "2024-12-31 23:59:59",
        "user_id": "",
        "limit": 100,
    }
    assert required == {"user_id": ""}
    for request in (every, required):
        templates["session_insights"].render(request, columns=["timestamp"])
    sql = "{{column(c)}} {{Array(a, 'Date')}} {{Boolean(b)}} {{String(e, enum=['x', 'y'])}}"
    every, required = Template.parse(sql).sample_requests(["user_id", "timestamp"])
    assert every == {"c": "user_id", "a": ["2000-01-01"], "b": False, "e": "x"}
    assert required == {"c": "user_id", "a": ["2000-01-01"], "e": "x"}


# ----------------------------------------------------------------- injection corpus

PAYLOADS = [
    "' OR '1'='1",
    "x'; DROP TABLE ab_test_events; --",
    "x' UNION SELECT name FROM system.tables --",
    "x\\' OR 1=1 #",
    "x\\",
    "\\",
    "x/* comment */ OR 1",
    "-- comment\nOR 1=1",
    "line\nbreak\r\nand\ttab",
    "x\u2019 OR \u20191\u2019=\u20191",  # Unicode quotes
    "x\u02bc OR 1=1",
    '" OR ""="',
    "`timestamp`",
    "timestamp` FROM system.tables --",
    "{user_id:String}",
    "{x:String}",
    "{{ String(y) }}",
    "{% if 1 %}x{% end %}",
    "{# c #}",
    "%",
    "\x00nul",
    "1; SELECT 1",
    "2023-01-01 00:00:00'); DROP TABLE t; --",
]
# (template, whether it takes any text: the others refuse what is not a date, a number...)
VALUE_TEMPLATES = [
    ("WHERE a = {{String(x)}}", True),
    ("WHERE a = {{ x }}", True),
    ("WHERE a IN {{Array(x)}}", True),
    ("WHERE a IN {{Array(x, 'String', 'd')}}", True),
    ("WHERE {{sql_and(user_id=x)}}", True),
    ("WHERE {{sql_and(user_id=String(x))}}", True),
    ("WHERE {{sql_and(user_id__like=String(x, 'y'))}}", True),
    ("WHERE {{sql_and(event_type__in=Array(x, 'String'))}}", True),
    ("WHERE {{sql_and(event_type__not_in=Array(x))}}", True),
    ("{% if defined(x) %}WHERE a = {{String(x)}}{% end %}", True),
    ("WHERE t = {{DateTime(x)}}", False),
    ("WHERE t = {{DateTime64(x)}}", False),
    ("WHERE d = {{Date(x)}}", False),
    ("LIMIT {{Int32(x)}}", False),
    ("WHERE f = {{Float64(x)}}", False),
    ("WHERE b = {{Boolean(x)}}", False),
    ("WHERE u = {{UInt256(x)}}", False),
]
IDENTIFIER_TEMPLATES = [
    "SELECT {{column(x, 'timestamp')}}",
    "SELECT {{columns(x, 'timestamp')}}",
    "SELECT {{symbol(x)}}",
]


def _sent(template: str, value: str) -> object:
    return [value, value] if "Array(" in template else value


def _quoted(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _only_bound(template: str, value: str) -> Rendered | None:
    """Renders `value`, and checks it did not shape the SQL: the SQL and its placeholders
    are those a harmless request gets. None when the request is refused."""
    parsed = Template.parse(template)
    try:
        rendered = parsed.render({"x": _sent(template, value)}, columns=COLUMNS)
    except RenderError:
        return None
    reference = parsed.render(parsed.sample_requests(COLUMNS)[0], columns=COLUMNS)
    assert rendered.sql == reference.sql
    assert rendered.types == reference.types
    return rendered


@pytest.mark.parametrize(("template", "takes_text"), VALUE_TEMPLATES)
@pytest.mark.parametrize("payload", PAYLOADS)
def test_hostile_values_only_ever_reach_clickhouse_bound(
    template: str, takes_text: bool, payload: str
) -> None:
    rendered = _only_bound(template, payload)
    if rendered is None:
        assert not takes_text
        return
    reference = Template.parse(template).render({"x": _sent(template, "b")}, columns=COLUMNS)
    assert payload not in rendered.sql or payload in reference.sql  # e.g. "{x:String}"
    for marker in ("DROP", "UNION", "system", "comment", "OR 1", "\u2019", "nul", "{{", "{%"):
        if marker in payload:
            assert marker not in rendered.sql
    if takes_text:
        expected = f"[{_quoted(payload)},{_quoted(payload)}]" if "Array(" in template else payload
        assert rendered.values == {"x": expected}


@pytest.mark.parametrize("template", IDENTIFIER_TEMPLATES)
@pytest.mark.parametrize("payload", PAYLOADS)
def test_hostile_identifiers_are_refused(template: str, payload: str) -> None:
    with pytest.raises(RenderError, match="is not a column of this pipe"):
        Template.parse(template).render({"x": payload}, columns=COLUMNS)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(value=st.text(), index=st.integers(min_value=0, max_value=len(VALUE_TEMPLATES) - 1))
def test_no_value_ever_shapes_the_sql(value: str, index: int) -> None:
    template, takes_text = VALUE_TEMPLATES[index]
    rendered = _only_bound(template, value)
    surrogate = any(0xD800 <= ord(c) <= 0xDFFF for c in value)
    assert (rendered is not None) or not takes_text or surrogate


@settings(max_examples=200, deadline=None)
@given(
    value=st.one_of(st.text(), st.sampled_from([*COLUMNS, "timestamp, a b", " user_id "])),
    index=st.integers(min_value=0, max_value=len(IDENTIFIER_TEMPLATES) - 1),
)
def test_an_identifier_is_a_column_or_refused(value: str, index: int) -> None:
    template = IDENTIFIER_TEMPLATES[index]
    columns = [*COLUMNS, "it`s"]
    names = [one.strip() for one in value.split(",")] if "columns(" in template else [value]
    try:
        rendered = Template.parse(template).render({"x": value}, columns=columns)
    except RenderError:
        assert not all(name in columns for name in names)
        return
    assert all(name in columns for name in names)
    quoted = ["`" + name.replace("\\", "\\\\").replace("`", "\\`") + "`" for name in names]
    assert rendered.sql == "SELECT " + ", ".join(quoted)
    assert rendered.values == {}


# --------------------------------------------------------------------- through chDB

ROUND_TRIP_STRINGS = [
    *PAYLOADS,
    "".join(chr(c) for c in range(1, 128)),
    "ünïcödé ✓ 𝄞 中文",
    "",
]


def bind(rendered: Rendered) -> dict[str, str]:
    """The query parameters the query service must send: ClickHouse reads a scalar in its
    escaped text format (so `\\`, tab and newline are escaped), and an Array's text is an
    array literal read as it is."""
    return {
        name: text if rendered.types[name].startswith("Array(") else escape_str(text)
        for name, text in rendered.values.items()
    }


async def _select(warehouse, rendered: Rendered) -> dict[str, object]:
    payload = await warehouse._run(
        rendered.sql, "JSON", bind(rendered), database=warehouse.database
    )
    return json.loads(payload)["data"][0]


async def test_every_type_binds_as_clickhouse_expects(module_warehouse) -> None:
    select = ", ".join(
        f"{{{{{function}(v_{index}, {literal})}}}} AS v_{index}, "
        f"toTypeName({{{{{function}(v_{index})}}}}) AS t_{index}"
        for index, (function, _, literal, *_) in enumerate(TYPED)
    )
    template = Template.parse(
        "SELECT " + select + ", {{Array(a_s, 'String')}} AS a_s, {{Array(a_i, 'Int64')}} AS a_i,"
        " {{Array(a_d, 'DateTime')}} AS a_d, {{Array(a_t, 'DateTime64')}} AS a_t,"
        " {{Array(a_b, 'Boolean')}} AS a_b, {{Array(a_f, 'Float32')}} AS a_f,"
        " {{Array(a_day, 'Date')}} AS a_day"
    )
    given = {f"v_{index}": row[4] for index, row in enumerate(TYPED)}
    given |= {
        "a_s": ROUND_TRIP_STRINGS,
        "a_i": [-(2**63), 0, 2**63 - 1],
        "a_d": ["2023-01-01 00:00:00", "2106-02-07 06:28:15"],
        "a_t": ["2023-01-01 00:00:00.001"],
        "a_b": [True, False],
        "a_f": [1.5, -0.25],
        "a_day": ["1970-01-01", "2149-06-06"],
    }
    row = await _select(module_warehouse, template.render(given, columns=()))
    for index, (_, ch_type, _, _, value, text) in enumerate(TYPED):
        assert row[f"t_{index}"] == ch_type
        assert str(row[f"v_{index}"]).lower() == text.lower() or row[f"v_{index}"] == value
    assert row["a_s"] == ROUND_TRIP_STRINGS
    assert row["a_i"] == [-(2**63), 0, 2**63 - 1]
    assert row["a_d"] == ["2023-01-01 00:00:00", "2106-02-07 06:28:15"]
    assert row["a_t"] == ["2023-01-01 00:00:00.001"]
    assert row["a_b"] == [True, False]
    assert row["a_f"] == [1.5, -0.25]
    assert row["a_day"] == ["1970-01-01", "2149-06-06"]


@pytest.mark.parametrize("text", ROUND_TRIP_STRINGS)
async def test_strings_round_trip_through_clickhouse_exactly(module_warehouse, text: str) -> None:
    template = Template.parse(
        "SELECT {{String(s)}} AS s, {{ s }} AS bare, {{Array(arr, 'String')}} AS arr,"
        " {{sql_and(s_col=s)}} AS cond FROM (SELECT {{String(s)}} AS s_col)"
    )
    rendered = template.render({"s": text, "arr": [text]}, columns=["s_col"])
    assert text == "" or text not in rendered.sql
    row = await _select(module_warehouse, rendered)
    assert (row["s"], row["bare"], row["arr"], row["cond"]) == (text, text, [text], 1)


async def test_the_tutorial_pipes_run_with_bound_values(module_warehouse) -> None:
    await module_warehouse.insert_json_rows(
        "ab_test_events",
        registry()["ab_test_events"].column_names,
        json.dumps(ab_test_event()).encode(),
    )
    templates = _tutorial_templates()
    summary = templates["test_summary"]
    found = await module_warehouse.query(
        **_query(summary.render({"test_id": "homepage_redesign"}, columns=()))
    )
    assert [(r["test_id"], r["variant"], r["users"]) for r in found.data] == [
        ("homepage_redesign", "B", 1)
    ]
    hostile = await module_warehouse.query(
        **_query(summary.render({"test_id": "x' OR '1'='1"}, columns=()))
    )
    assert hostile.data == []
    outside = await module_warehouse.query(
        **_query(
            summary.render({"test_id": "homepage_redesign", "end_date": "2023-06-01"}, columns=())
        )
    )
    assert outside.data == []
    requests = {
        "session_insights": {"user_id": "usr_789", "limit": 50},
        "get_user_journey": {"user_id": "usr_abc123"},
        "get_session_events": {"session_id": "s"},
        "get_popular_pages": {"limit": 5},
    }
    for name, request in requests.items():
        result = await module_warehouse.query(**_query(templates[name].render(request, columns=())))
        assert result.data == [], name


def _query(rendered: Rendered) -> dict[str, object]:
    # No Array parameter here, so the warehouse's own binding (every value escaped) fits.
    assert not any(t.startswith("Array(") for t in rendered.types.values())
    return {"sql": rendered.sql, "params": rendered.values}
