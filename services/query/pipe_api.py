"""Any pipe over HTTP in any of Tinybird's formats (`PipeService.ReadPipe`): `.json`, `.csv`,
`.csvwithnames`, `.ndjson`, `.parquet`, each the engine's own output of that format for the
pipe's SQL, bound and run exactly as the pipe's typed RPC runs it (no SQL text is built here).

The parameters arrive as text: the query string (in the HttpBody's `extensions`, where the
transcoder's `capture_unknown_query_parameters` puts what names no field of the request) and,
on a POST, a JSON object or a form in the body, whose values win over the query's. They are
converted into the pipe's typed request message by the transcoder's own rules
(gateway/transcoder.py `parse_scalar`), so a value the typed `.json` route refuses is refused
here with the same words, and the pipe's binder (`prepare`) checks them as it does for gRPC.

`q` is a query over the pipe's result, which it reads as `_`; it runs through the Query API
(services/query/sql_api.py `answer`), with its policy, scopes and caps."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import grpc
import orjson
import structlog
from google.api import httpbody_pb2
from google.protobuf.message import DecodeError, Message

from common.auth import ScopeRule, bearer_token, current_principal
from common.project_handlers import PerProject
from common.query_string import UNKNOWN_QUERY_PARAMS, is_utf8, parse_query, unescape
from common.rpc_handlers import service_handler
from common.tokens import ADMIN, digest
from common.warehouse.base import QueryResult, Warehouse, WarehouseError
from gateway.errors import GatewayError
from gateway.routes import resolve_field_path
from gateway.transcoder import parse_scalar
from pipit.project.runtime import CurrentProject, Project
from pipit.query.v1 import pipe_service_pb2
from services.query.analysis import analysis_of
from services.query.binder import Endpoint, InvalidParameter
from services.query.catalog import describe_pipe
from services.query.fixed_params import FixedParamRefused, apply_fixed_params
from services.query.service import endpoints, run_pipe
from services.query.sql_api import FORMATS, PIPELINE_TABLE, OutputFormat, SqlApi, SqlFailure

if TYPE_CHECKING:
    from services.query.template_binder import TemplateEndpoint

log = structlog.get_logger("query")

SERVICE = pipe_service_pb2.DESCRIPTOR.services_by_name["PipeService"]
READ_PIPE = f"/{SERVICE.full_name}/ReadPipe"
# The extensions a pipe answers in, each the name of a Query API output format (for
# `ndjson`, JSONEachRow's alias): the same engine format and content type as on /v0/sql.
EXTENSIONS = ("json", "csv", "csvwithnames", "ndjson", "parquet")
QUERY_PARAMETER = "q"
_FORM = "application/x-www-form-urlencoded"


def pipe_formats() -> dict[str, str]:
    """The media type of each extension a pipe answers in (its content type without
    parameters such as the charset), by extension."""
    return {
        extension: FORMATS[extension].content_type.partition(";")[0] for extension in EXTENSIONS
    }


def split_file(file: str) -> tuple[str, str]:
    """(pipe, extension) of `<pipe>.<extension>`; the extension is "" for a bare name."""
    pipe, dot, extension = file.rpartition(".")
    return (pipe, extension) if dot else (file, "")


def unknown_format(extension: str) -> str:
    accepted = ", ".join(f".{e}" for e in EXTENSIONS)
    return f"unknown format '.{extension}': a pipe answers in {accepted}"


class PipeApi:
    """The gRPC handler of PipeService over a warehouse and the Query API."""

    def __init__(
        self,
        warehouse: Warehouse,
        max_string_length: int,
        current: CurrentProject,
        sql: SqlApi,
    ) -> None:
        self._warehouse = warehouse
        self._sql = sql
        self._current = current
        self._pipes: PerProject[dict[str, Endpoint | TemplateEndpoint]] = PerProject(
            current, lambda project: _by_pipe(project, max_string_length)
        )

    async def read_pipe(
        self, request: pipe_service_pb2.ReadPipeRequest, context: grpc.aio.ServicerContext
    ) -> httpbody_pb2.HttpBody:
        name, extension = split_file(request.file)
        endpoint = self._pipes.get().get(name)
        if endpoint is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"pipe '{name}' not found")
        if not extension:
            # GET /v0/pipes/<pipe>: its description, written by the catalog (which also lists
            # the pipes). The scope rule has already checked PIPES:READ:<pipe>.
            principal = current_principal.get()
            admin = principal is not None and ADMIN in principal.scopes
            described = describe_pipe(self._current.project, name, with_sql=admin)
            return httpbody_pb2.HttpBody(
                content_type="application/json", data=orjson.dumps(described)
            )
        if extension not in EXTENSIONS:
            await context.abort(grpc.StatusCode.NOT_FOUND, unknown_format(extension))
        output = FORMATS[extension]
        try:
            values = parameters(request.body)
            given = values.pop(QUERY_PARAMETER, [])
            query = given[-1][0] if given else ""
            typed = typed_request(endpoint, values)
            # A JWT's fixed parameters win over the caller's, as on the typed route.
            apply_fixed_params(typed, current_principal.get(), name)
            analysis = analysis_of(endpoint.method)
            # The views' SELECTs in place of their calls, save where `q` runs over the
            # pipe's SQL itself: the read-only lane refuses their SETTINGS.
            sql, params = endpoint.prepare(
                typed,
                inline=not query or analysis is not None,
                numbered=self._warehouse.numbers_ids,
            )
            if analysis is not None:
                analysis.check(params)
        except (InvalidParameter, GatewayError) as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        except FixedParamRefused as exc:
            await context.abort(grpc.StatusCode.PERMISSION_DENIED, str(exc))
        if analysis is not None:
            # The analysed rows, read back by the engine: it writes every format (and runs
            # `q`) over them as over any pipe's SQL.
            try:
                answer = await run_pipe(self._warehouse, sql, params, "JSON")
                result = await analysis.run(QueryResult.from_json(answer), params)
            except InvalidParameter as exc:
                await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
            except WarehouseError as exc:
                log.error("query failed", endpoint=name, error=str(exc)[:1000])
                await context.abort(
                    grpc.StatusCode.UNAVAILABLE, f"{name}: the warehouse failed the query"
                )
            sql, params = analysis.source(result)
        if query:
            return await self._over_result(query, sql, params, output, context)
        try:
            # The pipe's SQL as its typed RPC runs it: no text is built around it.
            data = await run_pipe(self._warehouse, sql, params, output.name)
        except WarehouseError as exc:
            log.error("query failed", endpoint=name, format=output.name, error=str(exc)[:1000])
            await context.abort(
                grpc.StatusCode.UNAVAILABLE, f"{name}: the warehouse failed the query"
            )
        return httpbody_pb2.HttpBody(content_type=output.content_type, data=data)

    async def _over_result(
        self,
        query: str,
        sql: str,
        params: dict[str, Any],
        output: OutputFormat,
        context: grpc.aio.ServicerContext,
    ) -> httpbody_pb2.HttpBody:
        """`query` over the pipe's result as `_`, answered in the extension's format
        whatever FORMAT the query names."""
        principal = current_principal.get()
        try:
            body, content_type = await self._sql.answer(
                query,
                scopes=principal.scopes if principal is not None else (),
                token_key=digest(bearer_token(context.invocation_metadata())),
                sources={PIPELINE_TABLE: (sql, params)},
                output=output,
            )
        except SqlFailure as exc:
            if exc.retry_after:
                context.set_trailing_metadata((("retry-after", str(exc.retry_after)),))
            await context.abort(exc.code, exc.message)
        return httpbody_pb2.HttpBody(content_type=content_type, data=body)

    @staticmethod
    def scope_rules() -> dict[str, ScopeRule]:
        """ReadPipe needs PIPES:READ:<pipe>, the pipe its path names."""
        return {READ_PIPE: lambda request: f"PIPES:READ:{split_file(request.file)[0]}"}

    def generic_handler(self) -> grpc.GenericRpcHandler:
        return service_handler(SERVICE, {"ReadPipe": self.read_pipe})


def _by_pipe(project: Project, max_string_length: int) -> dict[str, Endpoint | TemplateEndpoint]:
    return {e.name: e for e in endpoints(project, max_string_length).values()}


def parameters(body: httpbody_pb2.HttpBody) -> dict[str, list[tuple[str, str]]]:
    """Every parameter given, by name: its values, each with what it was given as (for error
    messages). A name the body gives replaces the query string's values for it."""
    found: dict[str, list[tuple[str, str]]] = {}
    for extension in body.extensions:
        if extension.type_url != UNKNOWN_QUERY_PARAMS:
            continue
        captured = pipe_service_pb2.QueryParameters()
        try:
            captured.ParseFromString(extension.value)
        except DecodeError:
            # Envoy passes the bytes on as they came; only UTF-8 is text.
            raise InvalidParameter("a query parameter is not valid UTF-8") from None
        for as_sent, values in captured.key.items():
            # Captured as sent (see gateway/transcoder.py); decoded as the typed route does.
            name = unescape(as_sent, errors="surrogateescape")
            what = f"query parameter {name!r}"
            found[name] = [(value, what) for value in values.values]
    if body.data:
        for name, values in _body_values(body).items():
            what = f"body parameter {name!r}"
            found[name] = [(value, what) for value in values]
    return found


def _body_values(body: httpbody_pb2.HttpBody) -> dict[str, list[str]]:
    media_type = body.content_type.partition(";")[0].strip().lower()
    values: dict[str, list[str]] = {}
    if media_type == _FORM:
        text = body.data.decode(errors="surrogateescape")
        for name, value in parse_query(text):
            values.setdefault(name, []).append(value)
        return values
    try:
        document = orjson.loads(body.data)
    except orjson.JSONDecodeError as exc:
        raise InvalidParameter(
            f"the body must be a JSON object or a form ({_FORM}) of parameters: {exc}"
        ) from None
    if not isinstance(document, dict):
        raise InvalidParameter("the body must be a JSON object of parameters")
    for name, value in document.items():
        items = value if isinstance(value, list) else [value]
        values[name] = [_text(name, item) for item in items if item is not None]
    return values


def _text(name: str, value: Any) -> str:
    """A JSON value as the text a query parameter would have carried."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float | str):
        return str(value)
    raise InvalidParameter(f"body parameter {name!r} must be a string, a number or a list")


def typed_request(
    endpoint: Endpoint | TemplateEndpoint, values: dict[str, list[tuple[str, str]]]
) -> Message:
    """The pipe's request message from text values, by the transcoder's rules for query
    parameters: a name that is no field is ignored, a value its field cannot hold is refused
    (GatewayError, naming it)."""
    request = endpoint.request_class()
    for name, given in values.items():
        if not given or not is_utf8(name):
            continue  # a name that is not UTF-8 names no field
        fields = resolve_field_path(request.DESCRIPTOR, name)
        if fields is None:
            continue
        field = fields[-1]
        if len(fields) > 1 or field.message_type is not None:
            continue  # pipe requests are flat: such a name is no parameter
        _assign(request, field, given)
    return request


def _assign(request: Message, field: Any, given: Iterable[tuple[str, str]]) -> None:
    for value, what in given:
        _check_text(value, what)
        parsed = parse_scalar(field, value, what)
        if field.is_repeated:
            getattr(request, field.name).append(parsed)
        else:
            setattr(request, field.name, parsed)


def _check_text(value: str, what: str) -> None:
    if not is_utf8(value):
        raise InvalidParameter(f"{what} is not valid UTF-8")
