"""The gRPC side: one channel per distinct upstream target, a generic unary callable per route
(request serializers from the descriptor set, no generated stubs; answers come as bytes), and
health checks."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from common.grpc_server import MAX_MESSAGE_BYTES
from gateway.routes import Route


def upstream_credentials(ca_file: Path | None) -> grpc.ChannelCredentials | None:
    """TLS to the services, trusting the CA bundle in `ca_file`; None (plaintext) without one.
    The name the gateway dials (host of each target) must be in the services' certificate."""
    if ca_file is None:
        return None
    return grpc.ssl_channel_credentials(root_certificates=ca_file.read_bytes())


class Upstreams:
    """Channels (one per target, opened when first needed) and a callable per route;
    `close` must run on the serving event loop. `credentials` makes every channel TLS."""

    def __init__(
        self,
        targets: Mapping[str, str],
        credentials: grpc.ChannelCredentials | None = None,
        max_message_bytes: int = MAX_MESSAGE_BYTES,
    ) -> None:
        # Match the services' limits, so the largest body accepted fits in one message.
        self._options = (
            ("grpc.max_send_message_length", max(max_message_bytes, MAX_MESSAGE_BYTES)),
            ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
        )
        self._targets = sorted(set(targets.values()))
        self._credentials = credentials
        self._channels: dict[str, grpc.aio.Channel] = {}
        self._calls: dict[tuple[str, type, str], grpc.aio.UnaryUnaryMultiCallable] = {}
        self._streams: dict[tuple[str, type, str], grpc.aio.StreamUnaryMultiCallable] = {}

    async def open(self) -> None:
        for target in self._targets:
            self.channel(target)

    def channel(self, target: str) -> grpc.aio.Channel:
        channel = self._channels.get(target)
        if channel is None:
            if self._credentials is None:
                channel = grpc.aio.insecure_channel(target, options=self._options)
            else:
                channel = grpc.aio.secure_channel(target, self._credentials, self._options)
            self._channels[target] = channel
        return channel

    async def close(self) -> None:
        channels, self._channels, self._calls, self._streams = self._channels, {}, {}, {}
        await asyncio.gather(*(channel.close() for channel in channels.values()))

    def call(self, route: Route, target: str) -> grpc.aio.UnaryUnaryMultiCallable:
        return self._callable(self._calls, "unary_unary", route, target)

    def stream_call(self, route: Route, target: str) -> grpc.aio.StreamUnaryMultiCallable:
        """The callable of a route whose method streams its request."""
        return self._callable(self._streams, "stream_unary", route, target)

    def _callable(self, cache: dict, kind: str, route: Route, target: str) -> Any:
        # Keyed by the request class too: a deploy may change a method's messages.
        key = (route.grpc_method, route.request_class, target)
        call = cache.get(key)
        if call is None:
            call = cache[key] = getattr(self.channel(target), kind)(
                route.grpc_method,
                request_serializer=route.request_class.SerializeToString,
                # No deserializer: the answer as the bytes it came in, which the gateway
                # keeps bodies by (gateway/answer_bodies.py) and parses only to print one.
            )
        return call

    async def health(self, checks: Mapping[str, str], deadline: float) -> dict[str, str]:
        """grpc.health.v1 status of each target for the service name `checks` gives it:
        SERVING, NOT_SERVING, or the gRPC code of a failed check."""

        async def check(target: str, service: str) -> str:
            try:
                reply = await health_pb2_grpc.HealthStub(self.channel(target)).Check(
                    health_pb2.HealthCheckRequest(service=service), timeout=deadline
                )
            except grpc.aio.AioRpcError as exc:
                return exc.code().name
            return health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)

        targets = list(checks)
        results = await asyncio.gather(*(check(t, checks[t]) for t in targets))
        return dict(zip(targets, results, strict=True))
