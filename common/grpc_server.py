"""Builds a grpc.aio server the same way for every service: request logging (which also
answers INTERNAL, without details, for exceptions no handler turned into a status), token
auth and rate limits, standard health checking, server reflection and message size
limits."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection, reflection_pb2_grpc
from grpc_reflection.v1alpha._async import ReflectionServicer

from common.auth import Access, AccessInterceptor, ScopeRule
from common.request_log import RequestLogInterceptor
from pipit.project.runtime import CurrentProject, Project

# The Events API takes bodies up to 10 MiB; leave room for the envelope.
MAX_MESSAGE_BYTES = 16 * 1024 * 1024
# What a request message adds to the body it carries (its other fields, framing).
MESSAGE_OVERHEAD_BYTES = 64 * 1024


# Answered even while a process starts: probes, and clients finding out what it serves.
_ALWAYS_ANSWERED = ("/grpc.health.v1.Health/", "/grpc.reflection.")


def _status(serving: bool) -> health_pb2.HealthCheckResponse.ServingStatus.ValueType:
    return (
        health_pb2.HealthCheckResponse.SERVING
        if serving
        else health_pb2.HealthCheckResponse.NOT_SERVING
    )


async def _starting(_request: Any, context: grpc.aio.ServicerContext) -> None:
    await context.abort(
        grpc.StatusCode.UNAVAILABLE,
        "the service is starting: it is waiting for the warehouse to answer; retry shortly",
    )


_REFUSED = grpc.unary_unary_rpc_method_handler(_starting)


class _StartingGate(grpc.aio.ServerInterceptor):
    """Refuses every call but health checks and reflection (UNAVAILABLE: try again, or
    elsewhere) until the process can serve. Before its warehouse first answers, a process
    does not even know the project it serves; it listens anyway, alive and not ready, so
    an orchestrator waits for it instead of restarting it."""

    def __init__(self, open_: bool) -> None:
        self.open = open_

    async def intercept_service(self, continuation, handler_call_details):
        if self.open or handler_call_details.method.startswith(_ALWAYS_ANSWERED):
            return await continuation(handler_call_details)
        return _REFUSED


@dataclass
class GrpcServer:
    """A started server and the health servicer its probes read: liveness is service ""
    (SERVING while the process runs), readiness the services' own names."""

    server: grpc.aio.Server
    health: health.aio.HealthServicer
    port: int
    service_names: tuple[str, ...]
    project_names: Callable[[], tuple[str, ...]] = tuple
    """The names of the project's own services in service now."""
    gate: _StartingGate = field(default_factory=lambda: _StartingGate(True))
    ready: bool = False
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)

    async def set_serving(self, serving: bool) -> None:
        """Readiness and liveness together (NOT_SERVING on the way out)."""
        await self.set_ready(serving)
        await self.health.set("", _status(serving))

    async def set_ready(self, ready: bool) -> None:
        """Readiness: the services' names; liveness (service "") is left as it is."""
        self.ready = ready
        for name in (*self.service_names, *self.project_names()):
            await self.health.set(name, _status(ready))

    async def open(self) -> None:
        """Serves calls from now on (a server started `ready=False`), and says so."""
        self.gate.open = True
        await self.set_ready(True)

    def project_swapped(self, project: Project) -> None:
        """A deployed project's own services answer health checks too, with the readiness
        of the rest."""
        del project

        async def serve_new_names() -> None:
            for name in self.project_names():
                await self.health.set(name, _status(self.ready))

        task = asyncio.get_running_loop().create_task(serve_new_names())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def stop(self, grace: float) -> None:
        await self.set_serving(False)
        await self.server.stop(grace)


class _ProjectReflection(ReflectionServicer):
    """Server reflection over the project in service: its descriptors (which include the
    platform's services) and its services' names beside the fixed ones."""

    def __init__(
        self, fixed: Sequence[str], current: CurrentProject, names: Callable[[], tuple[str, ...]]
    ) -> None:
        super().__init__(tuple(fixed))
        self._fixed = tuple(fixed)
        self._current = current
        self._names = names

    @property
    def _pool(self):  # noqa: ANN202 - the base class reads it as an attribute
        return self._current.project.pool

    @_pool.setter
    def _pool(self, _value) -> None:  # the base class assigns it once
        pass

    @property
    def _service_names(self) -> tuple[str, ...]:
        return tuple(sorted({*self._fixed, *self._names()}))

    @_service_names.setter
    def _service_names(self, _value) -> None:
        pass


async def start_grpc_server(
    handlers: Sequence[grpc.GenericRpcHandler],
    service_names: Sequence[str],
    *,
    host: str,
    port: int,
    access: Access,
    scope_rules: Mapping[str, ScopeRule],
    tls: tuple[bytes, bytes] | None = None,
    current: CurrentProject | None = None,
    project_names: Callable[[Project], Sequence[str]] | None = None,
    max_message_bytes: int = MAX_MESSAGE_BYTES,
    ready: bool = True,
) -> GrpcServer:
    """Starts serving `handlers` on host:port (port 0 picks a free port). `access` is the
    process's: every server of a process shares its tokens and rate-limit buckets. With
    `current`, reflection and health follow the project in service, whose own services
    `project_names` lists. `max_message_bytes` caps a request (the ingest service's takes a
    Data Sources API file whole). `ready=False` starts it alive but not ready, refusing
    calls (UNAVAILABLE) until `open()`."""
    gate = _StartingGate(ready)
    server = grpc.aio.server(
        interceptors=[RequestLogInterceptor(), gate, AccessInterceptor(access, scope_rules)],
        options=[
            ("grpc.max_receive_message_length", max(max_message_bytes, MAX_MESSAGE_BYTES)),
            ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
            ("grpc.so_reuseport", 0),
        ],
    )
    server.add_generic_rpc_handlers(tuple(handlers))
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    fixed = (
        *service_names,
        health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
        reflection.SERVICE_NAME,
    )

    def names() -> tuple[str, ...]:
        if current is None or project_names is None:
            return ()
        return tuple(project_names(current.project))

    if current is None:
        reflection.enable_server_reflection(fixed, server)
    else:
        reflection_pb2_grpc.add_ServerReflectionServicer_to_server(
            _ProjectReflection(fixed, current, names), server
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
    started = GrpcServer(server, health_servicer, bound, tuple(service_names), names, gate)
    if current is not None:
        current.on_swap(started.project_swapped)
    await started.set_ready(ready)
    await started.health.set("", _status(True))
    return started
