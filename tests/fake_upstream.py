"""A scripted gRPC upstream for the gateway tests: the servicers a test scripts, beside the
standard health service a gateway asks, on a free port of 127.0.0.1."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

# A generated `add_<Service>Servicer_to_server` and the servicer it adds.
Servicer = tuple[Callable[[Any, grpc.aio.Server], None], Any]


@dataclass(frozen=True)
class FakeUpstream:
    target: str
    """`127.0.0.1:<port>`, for a gateway's upstreams."""
    health: health.aio.HealthServicer
    """Its health service, for tests that change a service's status."""


@asynccontextmanager
async def fake_upstream(
    *servicers: Servicer, serving: Sequence[str] = ("",)
) -> AsyncIterator[FakeUpstream]:
    """A started server with `servicers` and health checking, each name in `serving`
    (`""` is the whole server) SERVING before it is yielded; stopped on exit."""
    server = grpc.aio.server()
    for add, servicer in servicers:
        add(servicer, server)
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        for name in serving:
            await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
        yield FakeUpstream(f"127.0.0.1:{port}", health_servicer)
    finally:
        await server.stop(None)
