"""The CatalogService's handlers: the listings of pipes and datasources and the pipes'
OpenAPI document, each filtered by the caller's scopes and answered as JSON
(`google.api.HttpBody`) built by services/query/catalog.py and services/query/openapi.py."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import grpc
import orjson
import structlog
from google.api import httpbody_pb2
from google.protobuf.message import Message

from common.auth import ScopeRule, current_principal
from common.rpc_handlers import service_handler
from common.warehouse.base import Warehouse, WarehouseError
from pipit.catalog.v1 import catalog_service_pb2 as pb
from pipit.project.runtime import CurrentProject
from services.query import catalog
from services.query.openapi import JSON, JSON_ONLY, openapi_document

log = structlog.get_logger("catalog")

SERVICE = pb.DESCRIPTOR.services_by_name["CatalogService"]


def _json(document: Any) -> httpbody_pb2.HttpBody:
    return httpbody_pb2.HttpBody(content_type=JSON, data=orjson.dumps(document))


def _scopes() -> tuple[str, ...]:
    principal = current_principal.get()
    return principal.scopes if principal is not None else ()


class CatalogApi:
    """Describes the project in service; counts rows in `warehouse`. `formats`: the file
    extensions pipes are served in and their content types, for the OpenAPI document."""

    def __init__(
        self,
        warehouse: Warehouse,
        current: CurrentProject,
        formats: Mapping[str, str] = JSON_ONLY,
    ) -> None:
        self._warehouse = warehouse
        self._current = current
        self._formats = formats

    async def list_pipes(self, request: Message, context: grpc.aio.ServicerContext) -> Message:
        return _json(catalog.list_pipes(self._current.project, _scopes()))

    async def list_datasources(
        self, request: Message, context: grpc.aio.ServicerContext
    ) -> Message:
        visible = catalog.visible_datasources(self._current.project, _scopes())
        counts = await self._counts(visible, context)
        return _json(catalog.list_datasources(visible, counts))

    async def get_datasource(self, request: Message, context: grpc.aio.ServicerContext) -> Message:
        principal = current_principal.get()
        scopes = principal.scopes if principal is not None else ()
        # The scope first, for any name: a refusal must not tell whether it exists.
        if not catalog.may_see_datasource(scopes, request.name):
            name = principal.name if principal is not None else ""
            await context.abort(
                grpc.StatusCode.PERMISSION_DENIED,
                f"token '{name}' lacks scope DATASOURCES:READ:{request.name} "
                f"(or DATASOURCES:APPEND:{request.name})",
            )
        ds = self._current.project.datasources.get(request.name)
        if ds is None:
            await context.abort(
                grpc.StatusCode.NOT_FOUND, f"datasource '{request.name}' does not exist"
            )
        counts = await self._counts([ds], context)
        return _json(catalog.describe_datasource(ds, *counts[ds.name]))

    async def get_open_api(self, request: Message, context: grpc.aio.ServicerContext) -> Message:
        return _json(openapi_document(self._current.project, _scopes(), self._formats))

    async def _counts(self, datasources, context) -> dict[str, tuple[int, int]]:
        try:
            return await catalog.row_counts(self._warehouse, datasources)
        except WarehouseError as exc:
            log.error("counting rows failed", error=str(exc)[:1000])
            await context.abort(
                grpc.StatusCode.UNAVAILABLE, "the warehouse failed to count the datasources' rows"
            )

    @staticmethod
    def scope_rules() -> dict[str, ScopeRule]:
        # Any known token may ask; each answer holds only what its scopes let it see.
        return {
            f"/{SERVICE.full_name}/{method.name}": lambda _request: None
            for method in SERVICE.methods
        }

    def generic_handler(self) -> grpc.GenericRpcHandler:
        return service_handler(
            SERVICE,
            {
                "ListPipes": self.list_pipes,
                "ListDatasources": self.list_datasources,
                "GetDatasource": self.get_datasource,
                "GetOpenApi": self.get_open_api,
            },
        )
