"""A request body sent up a client-streaming method a chunk at a time, as Envoy's transcoder
sends it when the method's body is a `google.api.HttpBody` (checked against Envoy 1.40): the
first message holds the path and query bindings and the body's content type, unknown query
parameters and first chunk; every later message only the body's `extensions` and next chunk.
So a body is never held whole, by the gateway or the service.

The body is read by `gateway/body.py` (gzip inflated as it comes, both sizes capped, a stalled
body answered 408) a piece at a time, and each piece is written once gRPC's flow control lets
it: a service that reads slowly slows the client down."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import grpc
from google.protobuf.message import Message

from gateway.routes import Route


def _descend(message: Message, route: Route) -> Message:
    for field in route.body_fields:
        message = getattr(message, field.name)
    return message


async def stream_call(
    call: grpc.aio.StreamUnaryCall,
    route: Route,
    first_message: Callable[[bytes], Message],
    pieces: AsyncIterator[bytes],
) -> None:
    """Writes the body up `call`: the first message built from the first piece (an empty
    body still sends it, with no data), then one message per piece. Stops writing, without a
    word, once the service has answered (it may answer before the body ends: a refusal, or a
    `url=` import that needs no body); a client-side failure cancels the call and raises."""
    try:
        first_piece = await anext(pieces, b"")
        first = first_message(first_piece)
        extensions = list(_descend(first, route).extensions)
        if not await _write(call, first):
            return
        async for piece in pieces:
            message = route.request_class()
            body = _descend(message, route)
            body.extensions.extend(extensions)
            body.data = piece
            if not await _write(call, message):
                return
        await call.done_writing()
    except BaseException:
        call.cancel()
        raise


async def _write(call: grpc.aio.StreamUnaryCall, message: Message) -> bool:
    if call.done():
        return False
    try:
        await call.write(message)
    except (asyncio.InvalidStateError, grpc.aio.AioRpcError):
        # Answered meanwhile; awaiting the call gives the answer.
        return False
    return True
