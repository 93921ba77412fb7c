"""The Query API (`GET /v0/sql?q=`): ad-hoc, read-only SQL over the datasources a token
may read.

Nothing in a query is evaluated before it is authorized. In the warehouse's ad-hoc lane
(read-only, capped, a connection of its own: common/warehouse/), the text goes through:

1. `formatQuerySingleLine({q:String})`: the engine parses the text, bound as data, and prints
   it back as exactly one statement (a second statement after `;` cannot ride along), without
   comments. It must be a SELECT.
2. `EXPLAIN AST` of the statement that will run (that one, wrapped in the row cap): the
   parser's tree, which services/query/sql_policy.py allows node by node (functions on an
   allow-list, no table functions, no SETTINGS / INTO OUTFILE / FORMAT, tables only Pipit's
   datasources or CTEs) before the token's DATASOURCES:READ scopes are checked.
3. The statement itself, read-only, within the lane's time, memory and thread caps.

Admission (services/query/admission.py) bounds the queries in flight, in all and per token.
This is the one place that runs SQL text from a request, by design; the text is only ever
wrapped whole, never spliced into."""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

import grpc
import structlog
from google.protobuf import struct_pb2
from google.protobuf.message import Message

from common.auth import ScopeRule, bearer_token, current_principal
from common.tokens import allows, digest
from common.warehouse.base import QueryResult, Warehouse, WarehouseError
from pipit.project.runtime import CurrentProject
from pipit.query.v1 import sql_service_pb2
from services.query.admission import Admission, Busy
from services.query.sql_policy import Refused, check, parse_dump

log = structlog.get_logger("sql")

SERVICE = sql_service_pb2.DESCRIPTOR.services_by_name["SqlService"]
MAX_QUERY_CHARS = 64 * 1024
MAX_RESULT_ROWS = 10_000
QUARANTINE_SUFFIX = "_quarantine"
_CANONICAL = "SELECT formatQuerySingleLine({q:String}) AS q"
_TABLES = "SELECT name FROM system.tables WHERE database = {database:String}"
_SELECT = re.compile(r"^(SELECT|WITH)\b|^\(", re.IGNORECASE)
_ERROR_NAME = re.compile(r"\(([A-Z][A-Z0-9_]+)\)\s*$")
# Where the engine's message goes on to quote the statement it ran (ours, not the caller's).
_QUOTES_STATEMENT = re.compile(r":? (In scope|While processing) .*", re.DOTALL)
# What the engine or its client add about themselves: a version, the server's address.
_ABOUT_ENGINE = re.compile(r" \((version|for url) [^)]*\)")


def readable_tables(datasources: Iterable[str]) -> dict[str, str]:
    """Every table the Query API can read, with the datasource whose READ scope it needs:
    each datasource (of the project in service) and its quarantine table."""
    tables = {}
    for name in datasources:
        tables[name] = name
        tables[name + QUARANTINE_SUFFIX] = name
    return tables


def authorize(tables: frozenset[str], owners: dict[str, str], scopes: tuple[str, ...]) -> None:
    """Refuses unless the scopes may read every table (`owners`: readable_tables)."""
    for table in sorted(tables):
        required = f"DATASOURCES:READ:{owners[table]}"
        if not allows(scopes, required):
            raise Refused(f"token lacks scope {required}")


def engine_message(error: WarehouseError) -> tuple[str, str]:
    """The engine's reason for a failed statement, without its error code prefix, stack
    trace, version or the statement Pipit wrapped the query in; and the error's name."""
    text = str(error).rsplit("DB::Exception: ", 1)[-1].split(" Stack trace", 1)[0]
    text = _ABOUT_ENGINE.sub("", text).strip()
    name = match.group(1) if (match := _ERROR_NAME.search(text)) else ""
    text = _ERROR_NAME.sub("", text).strip()
    text = _QUOTES_STATEMENT.sub("", text)
    text = text.strip().rstrip(".:")
    return text[:500], name


class SqlApi:
    """The gRPC handler of SqlService over a warehouse."""

    def __init__(self, warehouse: Warehouse, admission: Admission, current: CurrentProject) -> None:
        self._warehouse = warehouse
        self._admission = admission
        self._current = current

    async def query(self, request: Message, context: grpc.aio.ServicerContext) -> Message:
        text = request.q.strip()
        if not text:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "parameter 'q' is required")
        if len(text) > MAX_QUERY_CHARS:
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"parameter 'q' is longer than {MAX_QUERY_CHARS} characters",
            )
        principal = current_principal.get()
        scopes = principal.scopes if principal is not None else ()
        key = digest(bearer_token(context.invocation_metadata()))
        try:
            with self._admission.admit(key):
                result = await self._run(text, scopes)
        except Busy as exc:
            context.set_trailing_metadata((("retry-after", "1"),))
            await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, str(exc))
        except Refused as exc:
            await context.abort(grpc.StatusCode.PERMISSION_DENIED, str(exc))
        except WarehouseError as exc:
            code, message = self._failure(exc)
            log.info("sql query failed", code=code.name, error=message)
            await context.abort(code, message)
        return _response(result)

    async def _run(self, text: str, scopes: tuple[str, ...]) -> QueryResult:
        lane = self._warehouse
        parsed = await lane.adhoc_query(_CANONICAL, {"q": text})
        canonical = str(parsed.data[0]["q"]).strip()
        if not _SELECT.match(canonical):
            raise Refused("only SELECT queries are allowed")
        statement = f"SELECT * FROM ({canonical}) LIMIT {MAX_RESULT_ROWS}"  # noqa: S608
        try:
            lines = await lane.adhoc_explain(statement)
        except WarehouseError as exc:
            # The read-only lane refuses a query's own SETTINGS as soon as it sees them.
            if engine_message(exc)[1] == "READONLY":
                raise Refused("queries may not carry their own SETTINGS") from None
            raise
        owners = readable_tables(self._current.project.datasources)
        reads = check(parse_dump(lines), lane.database, frozenset(owners))
        authorize(reads.datasources, owners, scopes)
        if reads.other_names:
            # Names the dump cannot tell apart from CTEs: fine while no such table exists.
            tables = await lane.adhoc_query(_TABLES, {"database": lane.database})
            for row in tables.data:
                if row["name"] in reads.other_names:
                    raise Refused(f"only datasources can be queried, not {row['name']}")
        return await lane.adhoc_query(statement, {})

    def _failure(self, error: WarehouseError) -> tuple[grpc.StatusCode, str]:
        message, name = engine_message(error)
        limits = self._warehouse.adhoc_limits
        if name == "TIMEOUT_EXCEEDED":
            return (
                grpc.StatusCode.DEADLINE_EXCEEDED,
                f"the query ran past the Query API's limit of {limits.max_seconds:g} s",
            )
        if name == "MEMORY_LIMIT_EXCEEDED":
            return (
                grpc.StatusCode.INVALID_ARGUMENT,
                "the query needs more than the Query API's memory limit of "
                f"{limits.max_memory_bytes} bytes",
            )
        if name in ("READONLY", "ACCESS_DENIED"):
            return grpc.StatusCode.PERMISSION_DENIED, message
        return grpc.StatusCode.INVALID_ARGUMENT, message

    def scope_rules(self) -> dict[str, ScopeRule]:
        # Which scopes a query needs depends on what it reads: checked in the handler.
        return {f"/{SERVICE.full_name}/Query": lambda _request: None}

    def generic_handler(self) -> grpc.GenericRpcHandler:
        return grpc.method_handlers_generic_handler(
            SERVICE.full_name,
            {
                "Query": grpc.unary_unary_rpc_method_handler(
                    self.query,
                    request_deserializer=sql_service_pb2.QueryRequest.FromString,
                    response_serializer=sql_service_pb2.QueryResponse.SerializeToString,
                )
            },
        )


def _response(result: QueryResult) -> Message:
    response = sql_service_pb2.QueryResponse(rows=len(result.data))
    for column in result.meta:
        response.meta.add(name=column["name"], type=column["type"])
    for record in result.data:
        row = struct_pb2.Struct()
        row.update({k: _plain(v) for k, v in record.items()})
        response.data.append(row)
    stats = result.statistics
    response.statistics.elapsed = float(stats.get("elapsed", 0.0))
    response.statistics.rows_read = float(stats.get("rows_read", 0))
    response.statistics.bytes_read = float(stats.get("bytes_read", 0))
    return response


def _plain(value: Any) -> Any:
    """A JSON value a Struct can hold (numbers become doubles, as in any JSON)."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value
