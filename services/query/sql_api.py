"""The Query API (`GET /v0/sql?q=`): ad-hoc, read-only SQL over the datasources a token
may read.

Which tables a query reads is decided by the engine, not by reading the SQL text: the
query is first analysed with `EXPLAIN QUERY TREE` (which also refuses anything that is
not a single SELECT), and every table the analyser resolved must be a datasource in
Pipit's database that the token holds DATASOURCES:READ:<name> for. Table functions
(`file`, `url`, `remote`, …) and other databases (`system.*`) are refused. The query then
runs with `readonly=1` and caps on time, memory and rows.

This is the one place that runs SQL text from a request, by design; the text is only
ever wrapped whole, never spliced into."""

from __future__ import annotations

import re
from typing import Any

import grpc
import structlog
from google.protobuf import struct_pb2
from google.protobuf.message import Message

from common.auth import ScopeRule, current_principal
from common.datasources import registry
from common.tokens import allows
from common.warehouse.base import Warehouse, WarehouseError
from pipit.query.v1 import sql_service_pb2

log = structlog.get_logger("sql")

SERVICE = sql_service_pb2.DESCRIPTOR.services_by_name["SqlService"]
MAX_QUERY_CHARS = 64 * 1024
MAX_RESULT_ROWS = 10_000
LIMITS = (
    "readonly = 1, max_execution_time = 10, max_memory_usage = 2000000000, "
    f"max_result_rows = {MAX_RESULT_ROWS + 1}, result_overflow_mode = 'throw'"
)
_CANONICAL = "SELECT formatQuerySingleLine({q:String}) AS q"
_TABLE = re.compile(r"^\s*TABLE id: \d+.*?, table_name: (\S+)$")
_TABLE_FUNCTION = re.compile(r"^\s*TABLE_FUNCTION id: \d+.*?, table_function_name: (\S+)$")


class Refused(ValueError):
    """The query may not run for this token; the message says why."""


def tables_read(plan_lines: list[str]) -> tuple[set[str], set[str]]:
    """Tables and table functions the analyser resolved, from EXPLAIN QUERY TREE."""
    tables, functions = set(), set()
    for line in plan_lines:
        if match := _TABLE.match(line):
            tables.add(match.group(1))
        elif match := _TABLE_FUNCTION.match(line):
            functions.add(match.group(1))
    return tables, functions


def authorize(
    tables: set[str], functions: set[str], database: str, scopes: tuple[str, ...]
) -> None:
    if functions:
        raise Refused(f"table functions are not allowed: {', '.join(sorted(functions))}")
    if not tables:
        raise Refused("the query reads no datasource")
    datasources = registry()
    for table in sorted(tables):
        db, _, name = table.partition(".")
        if db != database or name not in datasources:
            raise Refused(f"only datasources can be queried, not {table}")
        if not allows(scopes, f"DATASOURCES:READ:{name}"):
            raise Refused(f"token lacks scope DATASOURCES:READ:{name}")


class SqlApi:
    """The gRPC handler of SqlService over a warehouse."""

    def __init__(self, warehouse: Warehouse) -> None:
        self._warehouse = warehouse

    async def query(self, request: Message, context: grpc.aio.ServicerContext) -> Message:
        text = request.q.strip().rstrip(";")
        if not text:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "parameter 'q' is required")
        if len(text) > MAX_QUERY_CHARS:
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"parameter 'q' is longer than {MAX_QUERY_CHARS} characters",
            )
        principal = current_principal.get()
        scopes = principal.scopes if principal is not None else ()
        try:
            # The engine parses the text as data (a bound parameter) and prints it back as
            # exactly one statement: a second statement after `;` cannot ride along.
            parsed = await self._warehouse.query(_CANONICAL, {"q": text})
            canonical = str(parsed.data[0]["q"]).strip()
            if " SETTINGS " in f" {canonical.upper()} ":
                raise Refused("queries may not carry their own SETTINGS")
            plan = await self._warehouse.query(
                f"EXPLAIN QUERY TREE {canonical} SETTINGS {LIMITS}", {}
            )
            lines = [line for row in plan.data for line in str(row.get("explain", "")).splitlines()]
            authorize(*tables_read(lines), self._warehouse.database, scopes)
            result = await self._warehouse.query(
                f"SELECT * FROM ({canonical}) LIMIT {MAX_RESULT_ROWS} SETTINGS {LIMITS}",  # noqa: S608
                {},
            )
        except Refused as exc:
            await context.abort(grpc.StatusCode.PERMISSION_DENIED, str(exc))
        except WarehouseError as exc:
            # The engine's own words say what is wrong (syntax, read-only mode, …).
            message = str(exc).split("DB::Exception: ", 1)[-1].split(" Stack trace", 1)[0]
            code = (
                grpc.StatusCode.PERMISSION_DENIED
                if "(READONLY)" in message
                else grpc.StatusCode.INVALID_ARGUMENT
            )
            await context.abort(code, message[:500])
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


def _plain(value: Any) -> Any:
    """A JSON value a Struct can hold (numbers become doubles, as in any JSON)."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value
