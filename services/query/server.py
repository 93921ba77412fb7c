"""Starting and stopping the query service."""

from __future__ import annotations

import structlog

from common.auth import Access
from common.config import Settings
from common.grpc_server import GrpcServer, start_grpc_server
from common.warehouse.base import Warehouse
from services.query.admission import Admission
from services.query.service import SERVICE, QueryService
from services.query.sql_api import SERVICE as SQL_SERVICE
from services.query.sql_api import SqlApi

log = structlog.get_logger("query")


async def start_query(
    settings: Settings, warehouse: Warehouse, access: Access, port: int | None = None
) -> GrpcServer:
    """Serves QueryService (the pipes) and SqlService (the Query API) on
    `settings.host` (port 0 picks a free one), admitting callers through the process's
    `access`."""
    service = QueryService(warehouse, settings.max_string_length)
    sql = SqlApi(warehouse, Admission(settings.sql_max_queries, settings.sql_max_queries_per_token))
    server = await start_grpc_server(
        [service.generic_handler(), sql.generic_handler()],
        [SERVICE.full_name, SQL_SERVICE.full_name],
        host=settings.host,
        port=settings.query_port if port is None else port,
        access=access,
        scope_rules={**service.scope_rules(), **sql.scope_rules()},
        tls=settings.server_tls(),
    )
    log.info("query serving", port=server.port, endpoints=sorted(service.endpoints))
    return server
