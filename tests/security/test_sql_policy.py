"""The Query API's checker on its own: the parser-dump reader refuses any dump that does not
add up, the node rules refuse what they must, the function allow-list agrees with the
engine's catalogue, and engine errors reach callers without what Pipit wrapped around them."""

from __future__ import annotations

import pytest

from common.warehouse.base import WarehouseError
from common.warehouse.embedded import EmbeddedWarehouse
from services.query.sql_api import engine_message
from services.query.sql_functions import (
    AGGREGATE_FUNCTIONS,
    COMBINATORS,
    SCALAR_FUNCTIONS,
    SYNTAX_FUNCTIONS,
    is_allowed,
)
from services.query.sql_policy import Refused, check, parse_dump

TABLES = frozenset({"ab_test_events", "ab_test_events_quarantine", "user_events"})

SELECT_FROM = [
    "SelectWithUnionQuery (children 1)",
    " ExpressionList (children 1)",
    "  SelectQuery (children 2)",
    "   ExpressionList (children 1)",
    "    Function count (children 1)",
    "     ExpressionList",
    "   TablesInSelectQuery (children 1)",
    "    TablesInSelectQueryElement (children 1)",
    "     TableExpression (children 1)",
    "      TableIdentifier ab_test_events (alias a)",
]


def test_a_consistent_dump_is_read_as_its_tree():
    root = parse_dump(SELECT_FROM)
    reads = check(root, "pipit", TABLES)
    assert reads.datasources == {"ab_test_events"}
    assert reads.other_names == frozenset()


@pytest.mark.parametrize(
    "lines",
    [
        pytest.param([], id="empty"),
        pytest.param(SELECT_FROM[:-1], id="truncated: a node lacks a child it declared"),
        pytest.param(SELECT_FROM + ["      Identifier x"], id="an extra sibling"),
        pytest.param(SELECT_FROM + ["SelectWithUnionQuery"], id="a second root"),
        pytest.param(["  SelectWithUnionQuery"], id="indented root"),
        pytest.param(SELECT_FROM[:4] + ["      Literal 1"] + SELECT_FROM[4:], id="skipped level"),
        pytest.param(SELECT_FROM[:5] + ["", *SELECT_FROM[5:]], id="a blank line"),
        pytest.param(SELECT_FROM[:5] + ["b) (children 1)", *SELECT_FROM[5:]], id="text"),
    ],
)
def test_a_dump_that_does_not_add_up_is_refused(lines):
    with pytest.raises(Refused, match="could not be verified"):
        parse_dump(lines)


def _select(expression: list[str], tables: list[str | list[str]] | None = None) -> list[str]:
    """A dump of `SELECT <expression> [FROM <tables>]`: expression lines at depth 4, each
    table (a line, or the lines of a table function) at depth 6."""
    lines = [
        "SelectWithUnionQuery (children 1)",
        " ExpressionList (children 1)",
        f"  SelectQuery (children {2 if tables else 1})",
        "   ExpressionList (children 1)",
        *("    " + line for line in expression),
    ]
    if tables:
        lines += [
            f"   TablesInSelectQuery (children {len(tables)})",
            *(
                line
                for table in tables
                for line in (
                    "    TablesInSelectQueryElement (children 1)",
                    "     TableExpression (children 1)",
                    *("      " + part for part in ([table] if isinstance(table, str) else table)),
                )
            ),
        ]
    return lines


@pytest.mark.parametrize(
    ("lines", "message"),
    [
        (_select(["Function file (children 1)", " ExpressionList"]), "function file"),
        (_select(["Literal 1"], [["Function numbers (children 1)", " ExpressionList"]]), "table"),
        (_select(["Literal 1"], ["TableIdentifier system.tables"]), "system.tables"),
        (_select(["Literal 1"], ["TableIdentifier other.ab_test_events"]), "other.ab_test"),
        (_select(["Literal 1"], ["TableIdentifier a.b.c"]), "a.b.c"),
        (
            _select(
                [
                    "Function in (children 1)",
                    " ExpressionList (children 2)",
                    "  Identifier x",
                    "  Identifier system.users",
                ]
            ),
            "system.users",
        ),
        (_select(["Set"]), "SETTINGS"),
        (_select(["QueryParameter p:String"]), "query parameters"),
        (_select(["ColumnsApplyTransformer"]), "APPLY"),
        (_select(["Explain"]), "Explain is not supported"),
    ],
)
def test_what_a_query_may_not_do_is_refused(lines, message):
    with pytest.raises(Refused, match=message):
        check(parse_dump(lines), "pipit", TABLES)


def test_output_clauses_hanging_off_the_query_are_refused():
    into_outfile = [*_select(["Literal 1"]), " Literal 'x.txt'"]
    into_outfile[0] = "SelectWithUnionQuery (children 2)"
    with pytest.raises(Refused, match="INTO OUTFILE"):
        check(parse_dump(into_outfile), "pipit", TABLES)


def test_names_that_are_no_datasource_are_left_for_the_cte_check():
    lines = _select(["Literal 1"], ["TableIdentifier recent", "TableIdentifier pipit.user_events"])
    reads = check(parse_dump(lines), "pipit", TABLES)
    assert reads.datasources == {"user_events"}
    assert reads.other_names == {"recent"}


def test_the_one_row_table_of_a_select_without_from_is_no_read():
    reads = check(parse_dump(_select(["Literal 1"], ["TableIdentifier system.one"])), "p", TABLES)
    assert reads.datasources == frozenset() and reads.other_names == frozenset()


@pytest.mark.parametrize(
    ("name", "allowed"),
    [
        ("count", True),
        ("COUNT", True),
        ("countIf", True),
        ("uniqExactStateIf", True),
        ("sumMergeState", True),
        ("quantilesTDigestArray", True),
        ("median", True),
        ("toStartOfHour", True),
        ("file", False),
        ("FILE", False),
        ("fileIf", False),
        ("version", False),
        ("user", False),
        ("hostname", False),
        ("DATABASE", False),
        ("getSetting", False),
        ("dictGetString", False),
        ("sleep", False),
        ("throwIf", False),
        ("aiGenerate", False),
        ("If", True),  # the function `if`, whatever its case
    ],
)
def test_the_allow_list_and_its_combinators(name, allowed):
    assert is_allowed(name) is allowed


DENIED_CATEGORIES = {
    "Introspection",
    "AI",
    "Dictionary",
    "Embedded Dictionary",
    "Machine Learning",
    "Time Series",
}


async def test_the_allow_list_agrees_with_the_engine_catalogue(embedded_warehouse):
    catalogue = await embedded_warehouse.query(
        "SELECT name, is_aggregate, categories, alias_to FROM system.functions", {}
    )
    functions = {row["name"]: row for row in catalogue.data}
    for name in SCALAR_FUNCTIONS | AGGREGATE_FUNCTIONS:
        assert name in functions, f"{name} is not a function of this engine"
        row = functions[name]
        target = functions.get(row["alias_to"], row)
        assert target["categories"] not in DENIED_CATEGORIES, name
        assert is_allowed(target["name"]), f"{name} is allowed but what it stands for is not"
    for name in AGGREGATE_FUNCTIONS:
        assert functions[name]["is_aggregate"], name
    assert not SYNTAX_FUNCTIONS & set(functions)
    combinators = await embedded_warehouse.query(
        "SELECT name FROM system.aggregate_function_combinators", {}
    )
    assert set(COMBINATORS) <= {row["name"] for row in combinators.data}
    # No denied function shares its name, in any case, with an allowed one.
    denied = {
        name
        for name, row in functions.items()
        if functions.get(row["alias_to"], row)["categories"] in DENIED_CATEGORIES
    }
    assert not {name for name in denied if is_allowed(name)}


async def test_engine_errors_come_without_what_pipit_wrapped_around_them(chdb_dir):
    warehouse = EmbeddedWarehouse(chdb_dir, "policy_errors")
    await warehouse.open()
    with pytest.raises(WarehouseError) as raised:
        await warehouse.adhoc_query("SELECT * FROM (SELECT intDiv(1, 0)) LIMIT 10000", {})
    message, name = engine_message(raised.value)
    assert name == "ILLEGAL_DIVISION"
    assert "Division by zero" in message
    for internal in ("LIMIT 10000", "DB::Exception", "Code:", "version", "Stack trace"):
        assert internal not in message
    http = WarehouseError(
        "HTTPDriver for http://127.0.0.1:8123 received ClickHouse error code 62\n"
        " Code: 62. DB::Exception: Syntax error: failed at position 1: In scope SELECT "
        "formatQuerySingleLine('x') AS q. (SYNTAX_ERROR) (version 26.9.2.1) "
        "(for url http://127.0.0.1:8123)"
    )
    message, name = engine_message(http)
    assert (message, name) == ("Syntax error: failed at position 1", "SYNTAX_ERROR")
