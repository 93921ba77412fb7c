"""Builds a grpc.aio server the same way for every service: request logging (which also
answers INTERNAL, without details, for exceptions no handler turned into a status), token
auth and rate limits, standard health checking, server reflection and message size
limits."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from common.auth import Access, AccessInterceptor, ScopeRule
from common.request_log import RequestLogInterceptor

# The Events API takes bodies up to 10 MiB; leave room for the envelope.
MAX_MESSAGE_BYTES = 16 * 1024 * 1024


@dataclass
class GrpcServer:
    """A started server and the health servicer its probes read."""

    server: grpc.aio.Server
    health: health.aio.HealthServicer
    port: int
    service_names: tuple[str, ...]

    async def set_serving(self, serving: bool) -> None:
        status = (
            health_pb2.HealthCheckResponse.SERVING
            if serving
            else health_pb2.HealthCheckResponse.NOT_SERVING
        )
        for name in (*self.service_names, ""):
            await self.health.set(name, status)

    async def stop(self, grace: float) -> None:
        await self.set_serving(False)
        await self.server.stop(grace)


async def start_grpc_server(
    handlers: Sequence[grpc.GenericRpcHandler],
    service_names: Sequence[str],
    *,
    host: str,
    port: int,
    access: Access,
    scope_rules: Mapping[str, ScopeRule],
    tls: tuple[bytes, bytes] | None = None,
) -> GrpcServer:
    """Starts serving `handlers` on host:port (port 0 picks a free port). `access` is the
    process's: every server of a process shares its tokens and rate-limit buckets."""
    server = grpc.aio.server(
        interceptors=[RequestLogInterceptor(), AccessInterceptor(access, scope_rules)],
        options=[
            ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
            ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
            ("grpc.so_reuseport", 0),
        ],
    )
    server.add_generic_rpc_handlers(tuple(handlers))
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection(
        (
            *service_names,
            health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
            reflection.SERVICE_NAME,
        ),
        server,
    )
    if tls is not None:
        cert, key = tls
        credentials = grpc.ssl_server_credentials([(key, cert)])
        bound = server.add_secure_port(f"{host}:{port}", credentials)
    else:
        bound = server.add_insecure_port(f"{host}:{port}")
    if bound == 0:
        raise OSError(f"cannot listen on {host}:{port}")
    await server.start()
    started = GrpcServer(server, health_servicer, bound, tuple(service_names))
    await started.set_serving(True)
    return started
