"""Building blocks for gRPC server interceptors: wrapping a method handler's behaviour
whatever its streaming shape."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import grpc

Behavior = Callable[[Any, grpc.aio.ServicerContext], Awaitable[Any]]
Wrapper = Callable[[Behavior], Behavior]


def wrap_handler(
    handler: grpc.RpcMethodHandler | None, wrap: Wrapper
) -> grpc.RpcMethodHandler | None:
    """The same handler with its unary-response behaviour wrapped. Streaming-response
    behaviours are left as they are: Pipit has none."""
    if handler is None:
        return None
    if handler.unary_unary is not None:
        return grpc.unary_unary_rpc_method_handler(
            wrap(handler.unary_unary),
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )
    if handler.stream_unary is not None:
        return grpc.stream_unary_rpc_method_handler(
            wrap(handler.stream_unary),
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )
    return handler
