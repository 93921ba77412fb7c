"""The query service of the project in service, built from its proto descriptor: every
RPC with an `endpoint` option answers that pipe, native SQL through the generic binder or
Tinybird templates through the template binder. Deploying a project swaps the whole table
of handlers."""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import grpc
import structlog
from google.protobuf.message import Message

from common.auth import ScopeRule, current_principal
from common.project_handlers import ProjectHandlers
from common.warehouse.base import QueryResult, Shape, Warehouse, WarehouseError, shaped
from pipit.project.artifact import NATIVE
from pipit.project.runtime import CurrentProject, Project
from pipit.query.v1 import query_service_pb2
from services.query.analysis import analysis_of
from services.query.binder import Endpoint, InvalidParameter, ResultMismatch, endpoint_name
from services.query.fixed_params import FixedParamRefused, apply_fixed_params
from services.query.whole_ranges import WholeRanges, from_views_if_siblings_missing

if TYPE_CHECKING:
    from services.query.template_binder import TemplateEndpoint

log = structlog.get_logger("query")

# The name readiness probes ask for, whatever the project calls its query service.
SERVICE = query_service_pb2.DESCRIPTOR.services_by_name["QueryService"]


def endpoints(project: Project, max_string_length: int) -> dict[str, Endpoint | TemplateEndpoint]:
    """Every pipe of the project's query service, by `/service/method`."""
    service = project.query_service
    columns = {c.name for ds in project.datasources.values() for c in ds.columns}
    found: dict[str, Endpoint | TemplateEndpoint] = {}
    for method in service.methods if service is not None else ():
        name = endpoint_name(method)
        if not name:
            continue
        pipe = project.pipes.get(name)
        if pipe is None:
            raise ValueError(f"{method.full_name} answers pipe '{name}', which has no SQL")
        path = f"/{service.full_name}/{method.name}"
        analysis_of(method)  # a project declaring an analysis there is not fails here
        if pipe.form == NATIVE:
            found[path] = Endpoint.from_method(
                method, pipe.nodes[0].sql, max_string_length, project.range_views
            )
        else:
            # Only Tinybird projects need the template language.
            from services.query.template_binder import TemplateEndpoint

            found[path] = TemplateEndpoint.from_method(method, pipe, columns, max_string_length)
    return found


@functools.cache
def builtin_sql() -> frozenset[str]:
    """The built-in pipes' SQL in every form they are run (`WholeRanges.forms_of`), which
    depends on the data alone (tests/test_answer_cache.py checks it calls no clock, no
    randomness, no table function), so the same call with no write between has the same
    answer. A deployed pipe's SQL is not known to, so it always runs."""
    from pipit.project.artifact import builtin

    project = Project(builtin())
    return frozenset(
        form
        for pipe in project.pipes.values()
        for form in WholeRanges.forms_of(pipe.nodes[0].sql, project.range_views)
    )


async def run_pipe(
    warehouse: Warehouse,
    sql: str,
    params: Mapping[str, Any],
    fmt: str,
    shape: Shape | None = None,
) -> bytes:
    """A pipe's SQL answered in `fmt`, or what `shape` makes of that: a built-in pipe's may
    be kept from the same call (Warehouse.query_raw_repeatable). A call sent to a range
    view's sibling that the schema lacks yet is answered from the view."""
    return await from_views_if_siblings_missing(
        [sql], lambda form: _run_pipe(warehouse, form(sql), params, fmt, shape)
    )


async def _run_pipe(
    warehouse: Warehouse,
    sql: str,
    params: Mapping[str, Any],
    fmt: str,
    shape: Shape | None,
) -> bytes:
    if sql in builtin_sql():
        return await warehouse.query_raw_repeatable(warehouse.builtin_form(sql), params, fmt, shape)
    return await shaped(await warehouse.query_raw(sql, params, fmt), shape)


def engine_sql(warehouse: Warehouse, sql: str) -> str:
    """A pipe's SQL as `warehouse` runs it: a built-in pipe's in the engine's form
    (Warehouse.builtin_form), a project's own as written."""
    return warehouse.builtin_form(sql) if sql in builtin_sql() else sql


def _wire(response: Message | bytes) -> bytes:
    # A pipe's handler answers with its response already encoded (see `_handler`).
    return response if isinstance(response, bytes) else response.SerializeToString()


def builtin_endpoints(max_string_length: int) -> dict[str, Endpoint | TemplateEndpoint]:
    """The built-in tutorials' pipes by RPC name, for tools and tests."""
    from pipit.project.artifact import builtin

    return {
        path.rpartition("/")[2]: endpoint
        for path, endpoint in endpoints(Project(builtin()), max_string_length).items()
    }


class QueryService:
    """The gRPC handlers of the project's pipes over a warehouse."""

    def __init__(
        self, warehouse: Warehouse, max_string_length: int, current: CurrentProject
    ) -> None:
        self._warehouse = warehouse
        self._max_string_length = max_string_length
        self._current = current

    def _handler(self, endpoint: Endpoint | TemplateEndpoint) -> Callable:
        analysis = analysis_of(endpoint.method)
        # What this handler makes of an answer is kept beside a kept answer under this key:
        # one per handler, so a deploy's new response messages never meet the old ones.
        shape_key = object()

        async def respond(answer: bytes, params: Mapping[str, Any]) -> bytes:
            result = QueryResult.from_json(answer)
            if analysis is not None:
                result = await analysis.run(result, params)
            return endpoint.response(result).SerializeToString()

        async def run(request: Message, context: grpc.aio.ServicerContext) -> bytes:
            try:
                apply_fixed_params(request, current_principal.get(), endpoint.name)
            except FixedParamRefused as exc:
                await context.abort(grpc.StatusCode.PERMISSION_DENIED, str(exc))
            try:
                sql, params = endpoint.prepare(
                    request, inline=True, numbered=self._warehouse.numbers_ids
                )
                if analysis is not None:
                    analysis.check(params)
            except InvalidParameter as exc:
                await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
            try:
                # The response encoded, as the answer's key (SQL and every parameter) is
                # all it depends on: an answer served again is served as these bytes.
                shape = Shape(shape_key, functools.partial(respond, params=params))
                return await run_pipe(self._warehouse, sql, params, "JSON", shape)
            except InvalidParameter as exc:  # what the analysis learns from the rows
                await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
            except WarehouseError as exc:
                log.error("query failed", endpoint=endpoint.name, error=str(exc)[:1000])
                await context.abort(
                    grpc.StatusCode.UNAVAILABLE, f"{endpoint.name}: the warehouse failed the query"
                )
            except ResultMismatch as exc:
                log.error("endpoint result mismatch", endpoint=endpoint.name, error=str(exc))
                await context.abort(grpc.StatusCode.INTERNAL, str(exc))

        return run

    def handlers(self, project: Project) -> dict[str, grpc.RpcMethodHandler]:
        """The handler of every pipe RPC of `project`, by `/service/method`."""
        return {
            path: grpc.unary_unary_rpc_method_handler(
                self._handler(endpoint),
                request_deserializer=endpoint.request_class.FromString,
                response_serializer=_wire,
            )
            for path, endpoint in endpoints(project, self._max_string_length).items()
        }

    @staticmethod
    def scope_rules(project: Project) -> dict[str, ScopeRule]:
        """Each pipe needs PIPES:READ:<pipe>."""
        service = project.query_service
        rules: dict[str, ScopeRule] = {}
        for method in service.methods if service is not None else ():
            if name := endpoint_name(method):
                scope = f"PIPES:READ:{name}"
                rules[f"/{service.full_name}/{method.name}"] = lambda _r, scope=scope: scope
        return rules

    def generic_handler(self) -> ProjectHandlers:
        return ProjectHandlers(self._current, self.handlers)
