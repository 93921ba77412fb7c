"""The gRPC side: one channel per distinct upstream target, a generic unary callable per route
(serializers from the descriptor set, no generated stubs), and health checks."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from common.grpc_server import MAX_MESSAGE_BYTES
from gateway.routes import Route, RouteTable

_CHANNEL_OPTIONS = (
    # Match the services' limits so a 10 MiB Events API body fits in one message.
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
)


class Upstreams:
    """Channels and callables; `open` and `close` must run on the serving event loop."""

    def __init__(self, targets: Mapping[str, str], table: RouteTable) -> None:
        self._targets = dict(targets)
        self._table = table
        self._channels: dict[str, grpc.aio.Channel] = {}
        self._calls: dict[str, grpc.aio.UnaryUnaryMultiCallable] = {}

    async def open(self) -> None:
        for target in sorted(set(self._targets.values())):
            self._channels[target] = grpc.aio.insecure_channel(target, options=_CHANNEL_OPTIONS)
        for route in self._table.routes:
            channel = self._channels[self._targets[route.service]]
            self._calls[route.grpc_method] = channel.unary_unary(
                route.grpc_method,
                request_serializer=route.request_class.SerializeToString,
                response_deserializer=route.response_class.FromString,
            )

    async def close(self) -> None:
        channels, self._channels, self._calls = self._channels, {}, {}
        await asyncio.gather(*(channel.close() for channel in channels.values()))

    def call(self, route: Route) -> grpc.aio.UnaryUnaryMultiCallable:
        return self._calls[route.grpc_method]

    async def health(self, deadline: float) -> dict[str, str]:
        """grpc.health.v1 status (service "") of each target: SERVING, NOT_SERVING, or the
        gRPC code of a failed check."""

        async def check(channel: grpc.aio.Channel) -> str:
            try:
                reply = await health_pb2_grpc.HealthStub(channel).Check(
                    health_pb2.HealthCheckRequest(service=""), timeout=deadline
                )
            except grpc.aio.AioRpcError as exc:
                return exc.code().name
            return health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)

        targets = list(self._channels)
        results = await asyncio.gather(*(check(self._channels[t]) for t in targets))
        return dict(zip(targets, results, strict=True))
