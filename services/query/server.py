"""Starting and stopping the query service."""

from __future__ import annotations

import asyncio

import structlog

from common.auth import Access
from common.config import Settings
from common.grpc_server import GrpcServer, start_grpc_server
from common.project_handlers import ScopeRules
from common.token_table import TokenTable
from common.warehouse.base import Warehouse
from pipit.project.deploy import Deployer
from pipit.project.runtime import CurrentProject
from pipit.project.store import DeploymentStore
from services.query.admission import Admission
from services.query.catalog_api import SERVICE as CATALOG_SERVICE
from services.query.catalog_api import CatalogApi
from services.query.deploy_api import SERVICE as DEPLOY_SERVICE
from services.query.deploy_api import DeployApi
from services.query.pipe_api import SERVICE as PIPE_SERVICE
from services.query.pipe_api import PipeApi, pipe_formats
from services.query.service import SERVICE, QueryService
from services.query.sql_api import SERVICE as SQL_SERVICE
from services.query.sql_api import SqlApi
from services.query.token_api import SERVICE as TOKEN_SERVICE
from services.query.token_api import TokenApi

log = structlog.get_logger("query")


async def start_query(
    settings: Settings,
    warehouse: Warehouse,
    access: Access,
    current: CurrentProject,
    port: int | None = None,
    ready: bool = True,
) -> GrpcServer:
    """Serves the pipes of the project in service (`current`), the Query API, deploys, the
    Tokens API and the catalog on `settings.host` (port 0 picks a free one), admitting callers
    through the process's `access`. `ready=False`: listening, alive, refusing calls until
    the server's `open()` (the warehouse has not answered yet)."""
    service = QueryService(warehouse, settings.max_string_length, current)
    admission = Admission(settings.sql_max_queries, settings.sql_max_queries_per_token)
    sql = SqlApi(warehouse, admission, current, settings.max_string_length)
    pipes = PipeApi(warehouse, settings.max_string_length, current, sql)
    deployer = Deployer(
        warehouse, current, DeploymentStore(warehouse), settings.quarantine_ttl_days
    )
    deploy = DeployApi(deployer, current)
    # Every TokenService RPC needs ADMIN: the interceptor's rule for methods without one.
    tokens = TokenApi(TokenTable(warehouse), access.tokens)
    catalog = CatalogApi(warehouse, current, formats=pipe_formats())
    pipe_handlers = service.generic_handler()
    # Building the pipes' handlers imports their analyses (scipy: about a second of CPU),
    # which the first call would otherwise wait for, holding the event loop meanwhile.
    await asyncio.to_thread(pipe_handlers.build)
    server = await start_grpc_server(
        [
            pipe_handlers,
            pipes.generic_handler(),
            sql.generic_handler(),
            deploy.generic_handler(),
            tokens.generic_handler(),
            catalog.generic_handler(),
        ],
        [
            SERVICE.full_name,
            PIPE_SERVICE.full_name,
            SQL_SERVICE.full_name,
            DEPLOY_SERVICE.full_name,
            TOKEN_SERVICE.full_name,
            CATALOG_SERVICE.full_name,
        ],
        host=settings.host,
        port=settings.query_port if port is None else port,
        access=access,
        scope_rules=ScopeRules(
            {
                **pipes.scope_rules(),
                **sql.scope_rules(),
                **deploy.scope_rules(),
                **catalog.scope_rules(),
            },
            current,
            QueryService.scope_rules,
        ),
        tls=settings.server_tls(),
        current=current,
        project_names=lambda p: [p.query_service.full_name] if p.query_service else [],
        ready=ready,
    )
    log.info("query serving", port=server.port, pipes=sorted(current.project.pipes))
    return server
