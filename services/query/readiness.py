"""The query service's readiness: whether it can read the warehouse, asked every few
seconds. While it cannot, its calls fail fast (UNAVAILABLE within the connect timeout) and
its readiness says so, so a gateway in front of it reports itself unready too; once reads
succeed again it is ready again, in the same process."""

from __future__ import annotations

import asyncio

import structlog

from common.grpc_server import GrpcServer
from common.warehouse.base import Warehouse

log = structlog.get_logger("query")

CHECK_SECONDS = 2.0


async def follow_reads(
    warehouse: Warehouse, server: GrpcServer, every: float = CHECK_SECONDS
) -> None:
    """Keeps `server`'s readiness on whether `warehouse` answers a read, until cancelled."""
    while True:
        readable = await warehouse.ping()
        if readable != server.ready:
            if readable:
                log.info("the warehouse answers reads again; ready")
            else:
                log.error("the warehouse does not answer reads; not ready")
            await server.set_ready(readable)
        await asyncio.sleep(every)
