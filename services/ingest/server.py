"""Starting and stopping the ingest service: the gRPC server, its batcher, and a
shutdown that lets in-flight requests finish and then flushes every buffered row."""

from __future__ import annotations

from dataclasses import dataclass

import structlog

from common.config import Settings
from common.datasources import registry
from common.grpc_server import GrpcServer, start_grpc_server
from common.warehouse.base import Warehouse
from services.ingest.batcher import Batcher, FlushPolicy
from services.ingest.service import SERVICE, Ingestor, IngestService

log = structlog.get_logger("ingest")


@dataclass
class RunningIngest:
    """A serving ingest service."""

    grpc: GrpcServer
    batcher: Batcher

    @property
    def port(self) -> int:
        return self.grpc.port

    async def stop(self, grace: float) -> None:
        """Stops taking requests, lets in-flight ones finish, then flushes everything."""
        await self.grpc.stop(grace)
        await self.batcher.close(deadline=grace)
        log.info("ingest stopped", unflushed_rows=self.batcher.buffered_rows)


async def start_ingest(
    settings: Settings, warehouse: Warehouse, admin_token: str, port: int | None = None
) -> RunningIngest:
    """Serves IngestService on `settings.host` (port 0 picks a free one)."""
    policy = FlushPolicy(
        max_rows=settings.flush_rows,
        max_bytes=settings.flush_bytes,
        max_age=settings.flush_interval,
    )
    batcher = Batcher(warehouse, policy)
    await batcher.start()
    service = IngestService(Ingestor(batcher, list(registry().values())), settings.max_body_bytes)
    server = await start_grpc_server(
        [service.generic_handler()],
        [SERVICE.full_name],
        settings.host,
        settings.ingest_port if port is None else port,
        admin_token,
    )
    log.info("ingest serving", port=server.port, flush=policy.__dict__)
    return RunningIngest(server, batcher)
