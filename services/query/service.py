"""The QueryService, built from its proto descriptor: every RPC with an `endpoint`
option runs that endpoint's SQL through the generic binder."""

from __future__ import annotations

from collections.abc import Callable

import grpc
import structlog
from google.protobuf.message import Message

from common.auth import ScopeRule
from common.warehouse.base import Warehouse, WarehouseError
from pipit.query.v1 import query_service_pb2
from services.query.binder import Endpoint, InvalidParameter, ResultMismatch

log = structlog.get_logger("query")

SERVICE = query_service_pb2.DESCRIPTOR.services_by_name["QueryService"]


def endpoints(max_string_length: int) -> dict[str, Endpoint]:
    """Every endpoint of the QueryService, by RPC name."""
    found = {}
    for method in SERVICE.methods:
        endpoint = Endpoint.from_method(method, max_string_length)
        if endpoint is not None:
            found[method.name] = endpoint
    return found


class QueryService:
    """The gRPC handlers of QueryService over a warehouse."""

    def __init__(self, warehouse: Warehouse, max_string_length: int) -> None:
        self._warehouse = warehouse
        self.endpoints = endpoints(max_string_length)

    def _handler(self, endpoint: Endpoint) -> Callable:
        async def run(request: Message, context: grpc.aio.ServicerContext) -> Message:
            try:
                params = endpoint.bind(request)
            except InvalidParameter as exc:
                await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
            try:
                result = await self._warehouse.query(endpoint.sql, params)
                return endpoint.response(result)
            except WarehouseError as exc:
                log.error("query failed", endpoint=endpoint.name, error=str(exc)[:1000])
                await context.abort(
                    grpc.StatusCode.UNAVAILABLE, f"{endpoint.name}: the warehouse failed the query"
                )
            except ResultMismatch as exc:
                log.error("endpoint result mismatch", endpoint=endpoint.name, error=str(exc))
                await context.abort(grpc.StatusCode.INTERNAL, str(exc))

        return run

    def scope_rules(self) -> dict[str, ScopeRule]:
        """Each endpoint needs PIPES:READ:<endpoint>."""
        return {
            f"/{SERVICE.full_name}/{rpc}": (lambda _r, scope=f"PIPES:READ:{e.name}": scope)
            for rpc, e in self.endpoints.items()
        }

    def generic_handler(self) -> grpc.GenericRpcHandler:
        handlers = {
            name: grpc.unary_unary_rpc_method_handler(
                self._handler(endpoint),
                request_deserializer=endpoint.request_class.FromString,
                response_serializer=endpoint.response_class.SerializeToString,
            )
            for name, endpoint in self.endpoints.items()
        }
        return grpc.method_handlers_generic_handler(SERVICE.full_name, handlers)
