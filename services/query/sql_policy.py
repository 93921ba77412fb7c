"""What an ad-hoc query may do, decided from ClickHouse's own parse of it before any of it
runs.

The Query API hands the engine a stranger's SQL, and ClickHouse evaluates constant
expressions while it *analyses* a query (so even `EXPLAIN QUERY TREE` runs `file()`). The
check therefore reads only the parser's output, `EXPLAIN AST`, which parses and evaluates
nothing, and allows a query only when every node of that tree is acceptable on its own:

- only the node kinds a SELECT is made of (no `SETTINGS`, no query parameters, no
  `* APPLY(f)`, whose function is a bare name);
- every function on the allow-list of sql_functions.py, and none in table position (table
  functions: `file`, `url`, `s3`, `remote`, `numbers`, `input`, …);
- every `SelectWithUnionQuery` with its one list of selects and nothing else (`INTO OUTFILE`,
  `FORMAT` and a trailing `SETTINGS` hang off it as extra children);
- every table read, from `FROM`/`JOIN` or from `x IN table`, either a datasource in Pipit's
  database, `system.one` (the one-row table of a SELECT without FROM), or a name that is not
  a table at all (a CTE: the dump does not name them, so the caller checks those names do not
  exist as tables).

The dump prints names raw, so a quoted name holding a newline can add lines to it. Added lines
can only add nodes, never hide one, and the tree must agree exactly with the child counts the
parser printed for every node, or the query is refused as unverifiable. Each rule is local to a
node, so a forged node can only make a query more likely to be refused.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from services.query.sql_functions import is_allowed


class Refused(ValueError):
    """The query may not run; the message says why."""


_NODE_KINDS = frozenset(
    {
        "SelectWithUnionQuery",
        "SelectIntersectExceptQuery",
        "SelectQuery",
        "ExpressionList",
        "Function",
        "Identifier",
        "Literal",
        "Asterisk",
        "QualifiedAsterisk",
        "ColumnsRegexpMatcher",
        "ColumnsListMatcher",
        "QualifiedColumnsRegexpMatcher",
        "QualifiedColumnsListMatcher",
        "ColumnsTransformerList",
        "ColumnsExceptTransformer",
        "ColumnsReplaceTransformer",
        "ColumnsReplaceTransformer::Replacement",
        "TablesInSelectQuery",
        "TablesInSelectQueryElement",
        "TableExpression",
        "TableIdentifier",
        "TableJoin",
        "ArrayJoin",
        "Subquery",
        "WithElement",
        "OrderByElement",
        "InterpolateElement",
        "WindowDefinition",
        "WindowListElement",
        "SampleRatio",
    }
)
_KIND_REFUSALS = {
    "Set": "queries may not carry their own SETTINGS",
    "QueryParameter": "query parameters ({name:Type}) are not supported in the Query API",
    "ColumnsApplyTransformer": "APPLY is not supported in the Query API",
}
# `x IN t` reads table t when t is a bare name.
_IN_FUNCTIONS = frozenset(
    (prefix + base + suffix).lower()
    for base in ("In", "NotIn", "NullIn", "NotNullIn")
    for prefix in ("", "global")
    for suffix in ("", "IgnoreSet")
)

# The engine's one-row table, what a SELECT without FROM reads; some parsers print it.
ONE_ROW_TABLE = "system.one"

_LINE = re.compile(r"^( *)([A-Za-z_:]+)(.*)$")
_CHILDREN = re.compile(r" \(children (\d+)\)$")


@dataclass
class Node:
    """A node of the parser's dump: its kind, the name printed after it (functions,
    identifiers, tables), the child count the parser printed, and the children found."""

    kind: str
    name: str
    declared: int
    children: list[Node] = field(default_factory=list)


def parse_dump(lines: Iterable[str]) -> Node:
    """The tree of an `EXPLAIN AST` dump, refused unless it is exactly consistent."""
    root: Node | None = None
    stack: list[tuple[int, Node]] = []
    for line in lines:
        match = _LINE.match(line)
        if match is None:
            raise Refused("the query could not be verified")
        indent, kind, rest = len(match.group(1)), match.group(2), match.group(3)
        declared = 0
        if counted := _CHILDREN.search(rest):
            declared = int(counted.group(1))
            rest = rest[: counted.start()]
        # The name ends where the parser's own annotations (" (alias …)") begin.
        node = Node(kind, rest.strip().split(" (", 1)[0], declared)
        while stack and stack[-1][0] >= indent:
            stack.pop()
        if not stack:
            if root is not None or indent != 0:
                raise Refused("the query could not be verified")
            root = node
        elif indent != stack[-1][0] + 1:
            raise Refused("the query could not be verified")
        else:
            stack[-1][1].children.append(node)
        stack.append((indent, node))
    if root is None:
        raise Refused("the query could not be verified")
    pending = [root]
    while pending:
        node = pending.pop()
        if len(node.children) != node.declared:
            raise Refused("the query could not be verified")
        pending.extend(node.children)
    return root


@dataclass(frozen=True)
class Reads:
    """The tables a query reads: datasources (with or without `<database>.`) and bare names
    that are not datasources, which must turn out to be CTEs."""

    datasources: frozenset[str]
    other_names: frozenset[str]


def check(root: Node, database: str, tables: frozenset[str]) -> Reads:
    """Refuses anything a query may not do; returns what it reads. `tables` are the names a
    token could ever be allowed to read (datasources and their quarantine tables); whether
    this token may is the caller's question."""
    if root.kind != "SelectWithUnionQuery":
        raise Refused("only SELECT queries are allowed")
    read: set[str] = set()
    other: set[str] = set()

    def table(name: str) -> None:
        if name == ONE_ROW_TABLE:
            return
        qualifier, dot, bare = name.rpartition(".")
        if bare in tables and (not dot or qualifier == database):
            read.add(bare)
        elif not dot:
            other.add(bare)
        else:
            raise Refused(f"only datasources can be queried, not {name}")

    pending: list[tuple[Node, Node | None]] = [(root, None)]
    while pending:
        node, parent = pending.pop()
        if node.kind in _KIND_REFUSALS:
            raise Refused(_KIND_REFUSALS[node.kind])
        if node.kind not in _NODE_KINDS:
            raise Refused(f"{node.kind} is not supported in the Query API")
        if node.kind == "SelectWithUnionQuery" and (
            len(node.children) != 1 or node.children[0].kind != "ExpressionList"
        ):
            raise Refused("INTO OUTFILE, FORMAT and SETTINGS are not allowed in the Query API")
        if node.kind == "Function":
            if parent is not None and parent.kind == "TableExpression":
                raise Refused(f"table functions are not allowed: {node.name}")
            if not is_allowed(node.name):
                raise Refused(f"function {node.name} is not allowed in the Query API")
            if node.name.lower() in _IN_FUNCTIONS:
                arguments = node.children[0].children if node.children else []
                if len(arguments) > 1 and arguments[1].kind == "Identifier":
                    table(arguments[1].name)
        elif node.kind == "TableIdentifier":
            table(node.name)
        pending.extend((child, node) for child in node.children)
    return Reads(frozenset(read), frozenset(other))
