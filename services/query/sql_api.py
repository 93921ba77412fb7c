"""The Query API (`GET`/`POST /v0/sql`): ad-hoc, read-only SQL over the datasources and
pipes a token may read, answered in the output format the query's `FORMAT` clause names.

Nothing in a query is evaluated before it is authorized. In the warehouse's ad-hoc lane
(read-only, capped, a connection of its own: common/warehouse/), the text goes through:

1. `formatQuerySingleLine({q:String})`: the engine parses the text, bound as data, and prints
   it back as exactly one statement (a second statement after `;` cannot ride along), without
   comments. It must be a SELECT. A `FORMAT <name>` at the very end of that canonical text is
   the caller's output format: taken off and checked against FORMATS.
2. `EXPLAIN AST` of the statement that will run (the caller's, wrapped whole as
   `SELECT * FROM (…)`): the parser's tree, which services/query/sql_policy.py allows node by
   node (functions on an allow-list, no table functions, no SETTINGS / INTO OUTFILE / FORMAT,
   tables only Pipit's datasources or names that are no table: CTEs, pipes, `_`) before the
   token's DATASOURCES:READ and PIPES:READ scopes are checked.
3. The statement itself, read-only, within the lane's time, memory, thread and result-row
   caps, in that format: the engine's own bytes are the answer. Pipes the query names (and
   the `pipeline` as `_`) come first as CTEs of the project's own, trusted SQL, their
   parameters bound by the engine: `WITH p AS (<pipe sql>) SELECT * FROM (<query>)`.

Admission (services/query/admission.py) bounds the queries in flight, in all and per token.
This is the one place that runs SQL text from a request, by design; the text is only ever
wrapped whole, never spliced into."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import grpc
import structlog
from google.api import httpbody_pb2
from google.protobuf import struct_pb2
from google.protobuf.message import Message

from common.auth import ScopeRule, bearer_token, current_principal
from common.datasources import QUARANTINE_SUFFIX
from common.rpc_handlers import service_handler
from common.tokens import allows, digest
from common.warehouse.base import QueryResult, Warehouse, WarehouseError
from common.warehouse.failures import unreachable
from pipit.project.runtime import CurrentProject, Project
from pipit.query.v1 import sql_service_pb2
from services.query.admission import Admission, Busy
from services.query.analysis import analysis_of
from services.query.binder import InvalidParameter
from services.query.fixed_params import FixedParamRefused, apply_fixed_params
from services.query.service import endpoints, engine_sql
from services.query.sql_failure import SqlFailure, engine_message
from services.query.sql_policy import Refused, check, parse_dump
from services.query.sql_request import request_text
from services.query.whole_ranges import from_views_if_siblings_missing

if TYPE_CHECKING:
    from services.query.binder import Endpoint
    from services.query.template_binder import TemplateEndpoint

log = structlog.get_logger("sql")

SERVICE = sql_service_pb2.DESCRIPTOR.services_by_name["SqlService"]
MAX_QUERY_CHARS = 64 * 1024
# The table name a query over one pipe's result reads (`pipeline=`, and a pipe's `q=`).
PIPELINE_TABLE = "_"
# Where a body's Content-Encoding reaches the service (Envoy passes an HttpBody on as sent).
CONTENT_ENCODING_METADATA = "content-encoding"
_CANONICAL = "SELECT formatQuerySingleLine({q:String}) AS q"
_TABLES = "SELECT name FROM system.tables WHERE database = {database:String}"
_SELECT = re.compile(r"^(SELECT|WITH)\b|^\(", re.IGNORECASE)
# The canonical text prints a FORMAT clause last (a SETTINGS clause would follow it, and is
# refused), its name bare or, when it is a keyword, in backquotes.
_FORMAT_CLAUSE = re.compile(r" FORMAT (`?)([A-Za-z0-9_]+)\1$")


@dataclass(frozen=True)
class OutputFormat:
    """An output format the Query API answers in: the engine's name for it and the
    Content-Type of its bytes."""

    name: str
    content_type: str


_JSON = "application/json; charset=UTF-8"
_NDJSON = "application/x-ndjson; charset=UTF-8"
_CSV = "text/csv; charset=UTF-8"
_TSV = "text/tab-separated-values; charset=UTF-8"
# By the name a query writes after FORMAT, in any case (the engine's names are
# case-insensitive too), with ClickHouse's aliases.
FORMATS: dict[str, OutputFormat] = {
    alias.lower(): OutputFormat(name, content_type)
    for name, content_type, aliases in (
        ("JSON", _JSON, ()),
        ("JSONCompact", _JSON, ()),
        ("JSONEachRow", _NDJSON, ("JSONLines", "NDJSON")),
        ("JSONCompactEachRow", _NDJSON, ()),
        ("CSV", _CSV, ()),
        ("CSVWithNames", _CSV, ()),
        ("CSVWithNamesAndTypes", _CSV, ()),
        ("TSV", _TSV, ("TabSeparated",)),
        ("TSVWithNames", _TSV, ("TabSeparatedWithNames",)),
        ("TSVWithNamesAndTypes", _TSV, ("TabSeparatedWithNamesAndTypes",)),
        ("Parquet", "application/octet-stream", ()),
    )
    for alias in (name, *aliases)
}
DEFAULT_FORMAT = FORMATS["json"]


Sources = Mapping[str, tuple[str, Mapping[str, Any]]]
"""Table names bound as CTEs ahead of the query: the SQL that computes each, with the
values of its `{name:Type}` placeholders."""


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


def split_format(canonical: str) -> tuple[str, OutputFormat]:
    """The canonical statement without its trailing `FORMAT <name>` clause, and the format
    it names (JSON when there is none). Raises SqlFailure for a format not in FORMATS."""
    match = _FORMAT_CLAUSE.search(canonical)
    if match is None:
        return canonical, DEFAULT_FORMAT
    name = match.group(2)
    fmt = FORMATS.get(name.lower())
    if fmt is None:
        accepted = ", ".join(sorted({f.name for f in FORMATS.values()}))
        raise SqlFailure(
            grpc.StatusCode.INVALID_ARGUMENT,
            f"format {name} is not supported by the Query API; use one of {accepted}",
        )
    return canonical[: match.start()], fmt


class SqlApi:
    """The gRPC handler of SqlService over a warehouse, and `answer` for other handlers
    that run a caller's SQL (a pipe's `q=`)."""

    def __init__(
        self,
        warehouse: Warehouse,
        admission: Admission,
        current: CurrentProject,
        max_string_length: int,
    ) -> None:
        self._warehouse = warehouse
        self._admission = admission
        self._current = current
        self._max_string_length = max_string_length
        self._pipes_of: tuple[Project | None, dict[str, Endpoint | TemplateEndpoint]] = (None, {})

    async def answer(
        self,
        text: str,
        *,
        scopes: tuple[str, ...],
        token_key: str,
        sources: Sources = {},  # noqa: B006 - read only
        pipeline: str = "",
        output: OutputFormat | None = None,
    ) -> tuple[bytes, str]:
        """Runs the caller's `text` for a token with `scopes` (`token_key`: its digest, for
        admission) and answers (body, content type) in the format its FORMAT clause names.
        `sources`: extra table names the caller already authorized (`{"_": (sql, params)}`
        for a pipe's `q=`), bound as CTEs like pipes. `pipeline`: a pipe read as `_`.
        `output`: a format that overrides the query's own. Raises SqlFailure."""
        text = text.strip()
        if not text:
            raise SqlFailure(grpc.StatusCode.INVALID_ARGUMENT, "parameter 'q' is required")
        if len(text) > MAX_QUERY_CHARS:
            raise SqlFailure(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"parameter 'q' is longer than {MAX_QUERY_CHARS} characters",
            )
        try:
            with self._admission.admit(token_key):
                return await self._run(text, scopes, sources, pipeline, output)
        except Busy as exc:
            raise SqlFailure(grpc.StatusCode.RESOURCE_EXHAUSTED, str(exc), "1") from None
        except Refused as exc:
            raise SqlFailure(grpc.StatusCode.PERMISSION_DENIED, str(exc)) from None
        except WarehouseError as exc:
            code, message = self._failure(exc)
            log.info("sql query failed", code=code.name, error=message)
            raise SqlFailure(code, message) from None

    async def run_query(
        self, request: Message, context: grpc.aio.ServicerContext
    ) -> httpbody_pb2.HttpBody:
        try:
            encoding = _metadata(context, CONTENT_ENCODING_METADATA)
            text, pipeline = request_text(request, encoding, 4 * MAX_QUERY_CHARS)
            body, content_type = await self.answer(text, pipeline=pipeline, **_caller(context))
        except SqlFailure as failure:
            await _abort(context, failure)
        return httpbody_pb2.HttpBody(content_type=content_type, data=body)

    async def query(self, request: Message, context: grpc.aio.ServicerContext) -> Message:
        try:
            body, _ = await self.answer(
                request.q, pipeline=request.pipeline, output=DEFAULT_FORMAT, **_caller(context)
            )
        except SqlFailure as failure:
            await _abort(context, failure)
        return _response(QueryResult.from_json(body))

    async def _run(
        self,
        text: str,
        scopes: tuple[str, ...],
        sources: Sources,
        pipeline: str,
        output: OutputFormat | None,
    ) -> tuple[bytes, str]:
        lane = self._warehouse
        parsed = await lane.adhoc_query(_CANONICAL, {"q": text})
        canonical, fmt = split_format(str(parsed.data[0]["q"]).strip())
        fmt = output or fmt
        if not _SELECT.match(canonical):
            raise Refused("only SELECT queries are allowed")
        statement = f"SELECT * FROM ({canonical})"  # noqa: S608 - wrapped whole, checked below
        try:
            lines = await lane.adhoc_explain(statement)
        except WarehouseError as exc:
            # The read-only lane refuses a query's own SETTINGS as soon as it sees them.
            name = engine_message(exc)[1]
            if name == "READONLY":
                raise Refused("queries may not carry their own SETTINGS") from None
            if name == "SYNTAX_ERROR":
                # The statement parsed alone, so what cannot be a subquery is a clause that
                # may only end a query; the engine's message would quote our wrapper.
                raise Refused(
                    "INTO OUTFILE and SETTINGS are not allowed in the Query API, nor FORMAT "
                    "anywhere but at the very end of the query"
                ) from None
            raise
        project = self._current.project
        owners = readable_tables(project.datasources)
        reads = check(parse_dump(lines), lane.database, frozenset(owners))
        authorize(reads.datasources, owners, scopes)
        bound = await self._bind_pipes(project, reads.other_names, scopes, sources, pipeline)
        others = reads.other_names - set(bound)
        if others:
            # Names the dump cannot tell apart from CTEs: fine while no such table exists.
            tables = await lane.adhoc_query(_TABLES, {"database": lane.database})
            for row in tables.data:
                if row["name"] in others:
                    raise Refused(f"only datasources can be queried, not {row['name']}")

        async def answer(form: Callable[[str], str]) -> bytes:
            prefix, params = _with_clause({t: (form(sql), v) for t, (sql, v) in bound.items()})
            return await lane.adhoc_raw(prefix + statement, params, fmt.name)

        pipes_sql = [sql for sql, _ in bound.values()]
        return await from_views_if_siblings_missing(pipes_sql, answer), fmt.content_type

    async def _bind_pipes(
        self,
        project: Project,
        names: frozenset[str],
        scopes: tuple[str, ...],
        sources: Sources,
        pipeline: str,
    ) -> dict[str, tuple[str, Mapping[str, Any]]]:
        """The tables bound ahead of the query: `sources`, then the pipeline as `_`, then
        each pipe the query names, authorized by PIPES:READ:<pipe> and computed with its
        default parameters, save those a JWT fixes (its tenant's rows, never another's).
        A pipe with an analysis is answered first, in this lane, and bound as its rows."""
        pipes = self._pipes(project)
        bound: dict[str, tuple[str, Mapping[str, Any]]] = dict(sources)
        wanted = [(name, name) for name in sorted(names - set(bound)) if name in pipes]
        if pipeline and PIPELINE_TABLE not in bound:
            if pipeline not in pipes:
                raise SqlFailure(grpc.StatusCode.NOT_FOUND, f"pipe '{pipeline}' does not exist")
            wanted.insert(0, (PIPELINE_TABLE, pipeline))
        for table, pipe in wanted:
            required = f"PIPES:READ:{pipe}"
            if not allows(scopes, required):
                raise Refused(f"token lacks scope {required}")
            endpoint = pipes[pipe]
            request = endpoint.request_class()
            try:
                apply_fixed_params(request, current_principal.get(), pipe)
            except FixedParamRefused as exc:
                raise Refused(str(exc)) from None
            try:
                sql, values = endpoint.prepare(request)
                bound[table] = engine_sql(self._warehouse, sql), values
                analysis = analysis_of(endpoint.method)
                if analysis is not None:
                    sql, params = bound[table]
                    answer = await from_views_if_siblings_missing(
                        [sql],
                        lambda form, sql=sql, params=params: self._warehouse.adhoc_query(
                            form(sql), params
                        ),
                    )
                    bound[table] = analysis.source(await analysis.run(answer, params))
            except InvalidParameter as exc:
                raise SqlFailure(
                    grpc.StatusCode.INVALID_ARGUMENT,
                    f"pipe '{pipe}' cannot be read without its parameters: {exc}",
                ) from None
        return bound

    def _pipes(self, project: Project) -> dict[str, Endpoint | TemplateEndpoint]:
        """The project's pipes by name, made once per project in service."""
        known, pipes = self._pipes_of
        if known is not project:
            pipes = {
                endpoint.name: endpoint
                for endpoint in endpoints(project, self._max_string_length).values()
            }
            self._pipes_of = (project, pipes)
        return pipes

    def _failure(self, error: WarehouseError) -> tuple[grpc.StatusCode, str]:
        if unreachable(error):
            return grpc.StatusCode.UNAVAILABLE, "the warehouse does not answer; retry shortly"
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
        if name == "TOO_MANY_ROWS_OR_BYTES":
            return (
                grpc.StatusCode.INVALID_ARGUMENT,
                f"the result has more than {limits.max_result_rows} rows, the Query API's "
                "limit: add a LIMIT, or aggregate, to read fewer",
            )
        if name in ("READONLY", "ACCESS_DENIED"):
            return grpc.StatusCode.PERMISSION_DENIED, message
        return grpc.StatusCode.INVALID_ARGUMENT, message

    def scope_rules(self) -> dict[str, ScopeRule]:
        # Which scopes a query needs depends on what it reads: checked in the handler.
        return {
            f"/{SERVICE.full_name}/{method}": lambda _request: None
            for method in ("RunQuery", "Query")
        }

    def generic_handler(self) -> grpc.GenericRpcHandler:
        return service_handler(SERVICE, {"RunQuery": self.run_query, "Query": self.query})


def _with_clause(bound: Mapping[str, tuple[str, Mapping[str, Any]]]) -> tuple[str, dict]:
    """`WITH` the bound tables as CTEs, and the parameters of all of them. Two that bind one
    parameter name to different values cannot run together."""
    if not bound:
        return "", {}
    params: dict[str, Any] = {}
    for table, (_, values) in bound.items():
        for name, value in values.items():
            if name in params and params[name] != value:
                raise SqlFailure(
                    grpc.StatusCode.INVALID_ARGUMENT,
                    f"'{table}' and another pipe the query reads give parameter '{name}' "
                    "different values; read them in separate queries",
                )
            params[name] = value
    # A pipe's SQL may end in a `--` comment: the closing parenthesis goes on a line of its own.
    ctes = ", ".join(f"`{table}` AS (\n{sql}\n)" for table, (sql, _) in bound.items())
    return f"WITH {ctes} ", params


def _caller(context: grpc.aio.ServicerContext) -> dict[str, Any]:
    principal = current_principal.get()
    return {
        "scopes": principal.scopes if principal is not None else (),
        "token_key": digest(bearer_token(context.invocation_metadata())),
    }


def _metadata(context: grpc.aio.ServicerContext, key: str) -> str:
    for name, value in context.invocation_metadata() or ():
        if name == key:
            return value.decode() if isinstance(value, bytes) else value
    return ""


async def _abort(context: grpc.aio.ServicerContext, failure: SqlFailure) -> None:
    if failure.retry_after is not None:
        context.set_trailing_metadata((("retry-after", failure.retry_after),))
    await context.abort(failure.code, failure.message)


def _response(result: QueryResult) -> Message:
    response = sql_service_pb2.QueryResponse(rows=len(result.data))
    for column in result.meta:
        response.meta.add(name=column["name"], type=column["type"])
    for record in result.data:
        row = struct_pb2.Struct()
        row.update(record)
        response.data.append(row)
    stats = result.statistics
    response.statistics.elapsed = float(stats.get("elapsed", 0.0))
    response.statistics.rows_read = float(stats.get("rows_read", 0))
    response.statistics.bytes_read = float(stats.get("bytes_read", 0))
    return response
