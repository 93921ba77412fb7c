"""Checking a Data Sources API `delete_condition`: a stranger's SQL expression that ends up in
`ALTER TABLE … DELETE WHERE`, so it is never spliced as sent.

The condition is put in `SELECT 1 FROM <datasource> WHERE <condition>` and that text goes to
the engine as a bound value, to be parsed (`formatQuerySingleLine`) and dumped (`EXPLAIN AST`)
on the read-only ad-hoc lane, which evaluates nothing (the Query API's machinery:
services/query/sql_policy.py). The parse must be exactly that one SELECT, and every node under
its WHERE a literal, one of the datasource's own columns, or a function on the Query API's
allow-list: no subqueries, other tables, table functions, settings or parameters. What runs
is the engine's own rendering of that checked tree, so text that closes a parenthesis early
(`1=1) OR (…`) is either part of the parsed expression or makes the parse something other
than the one SELECT, and is refused."""

from __future__ import annotations

from common.datasources import Datasource
from common.warehouse.base import Warehouse, WarehouseError
from services.query.sql_functions import is_allowed
from services.query.sql_policy import Node, Refused, parse_dump

MAX_CONDITION_CHARS = 8 * 1024
_FORMAT = "SELECT formatQuerySingleLine({q:String}) AS q"
_CONDITION_KINDS = frozenset({"Function", "Identifier", "Literal", "ExpressionList"})
_IN_FUNCTIONS = frozenset(
    (prefix + base + suffix).lower()
    for base in ("in", "notin", "nullin", "notnullin")
    for prefix in ("", "global")
    for suffix in ("", "ignoreset")
)


def _select(ds: Datasource, condition: str) -> str:
    return f"SELECT 1 FROM `{ds.name}` WHERE {condition}"  # noqa: S608 - parsed, never run


async def _formatted(warehouse: Warehouse, text: str) -> str:
    try:
        result = await warehouse.adhoc_query(_FORMAT, {"q": text})
    except WarehouseError as exc:
        raise Refused(f"delete_condition is not a valid SQL expression: {_reason(exc)}") from None
    return str(result.data[0]["q"]).strip()


def _reason(exc: WarehouseError) -> str:
    return str(exc).split("\n", 1)[0][:300]


def _check_where(node: Node, ds: Datasource) -> None:
    columns = set(ds.column_names)
    pending = [node]
    while pending:
        current = pending.pop()
        if current.kind not in _CONDITION_KINDS:
            raise Refused(f"delete_condition may not contain {current.kind}")
        if current.kind == "Identifier" and current.name not in columns:
            raise Refused(f"delete_condition may only name columns of {ds.name}: {current.name}")
        if current.kind == "Function":
            if not is_allowed(current.name) or current.name.lower() == "lambda":
                raise Refused(f"function {current.name} is not allowed in delete_condition")
            if current.name.lower() in _IN_FUNCTIONS:
                arguments = current.children[0].children if current.children else []
                if len(arguments) > 1 and arguments[1].kind == "Identifier":
                    raise Refused("delete_condition may not read other tables")
        pending.extend(current.children)


def _where_of(root: Node, ds: Datasource) -> Node:
    """The WHERE expression of the one `SELECT 1 FROM <ds> WHERE …`, refusing any other
    shape."""
    unverifiable = Refused("delete_condition must be one boolean expression")
    if root.kind != "SelectWithUnionQuery" or len(root.children) != 1:
        raise unverifiable
    selects = root.children[0]
    if selects.kind != "ExpressionList" or len(selects.children) != 1:
        raise unverifiable
    select = selects.children[0]
    if select.kind != "SelectQuery" or len(select.children) != 3:
        raise unverifiable
    columns, tables, where = select.children
    if [(n.kind, n.name) for n in columns.children] != [("Literal", "UInt64_1")]:
        raise unverifiable
    if (
        tables.kind != "TablesInSelectQuery"
        or len(tables.children) != 1
        or [n.kind for n in tables.children[0].children] != ["TableExpression"]
        or [(n.kind, n.name) for n in tables.children[0].children[0].children]
        != [("TableIdentifier", ds.name)]
    ):
        raise unverifiable
    return where


async def checked_condition(warehouse: Warehouse, ds: Datasource, condition: str) -> str:
    """The condition as the engine renders it, once every part of it is allowed; Refused
    otherwise (the message says why, never echoing more than the engine's parse error)."""
    condition = condition.strip()
    if not condition:
        raise Refused("parameter 'delete_condition' is required")
    if len(condition) > MAX_CONDITION_CHARS:
        raise Refused(f"delete_condition is longer than {MAX_CONDITION_CHARS} characters")
    prefix = (await _formatted(warehouse, _select(ds, "1")))[: -len("1")]
    canonical = await _formatted(warehouse, _select(ds, condition))
    if not canonical.startswith(prefix) or len(canonical) == len(prefix):
        raise Refused("delete_condition must be one boolean expression")
    try:
        lines = await warehouse.adhoc_explain(canonical)
    except WarehouseError as exc:
        raise Refused(f"delete_condition cannot be checked: {_reason(exc)}") from None
    _check_where(_where_of(parse_dump(lines), ds), ds)
    return canonical[len(prefix) :]
