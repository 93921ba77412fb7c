"""Reading a request body without trusting its size.

aiohttp's server decodes `Content-Encoding: gzip` and `deflate` bodies itself (`auto_decompress`,
on unless a runner turns it off) a bounded chunk at a time, so what arrives here is already the
decompressed body and the limit below applies to the decompressed size: a small gzip bomb is cut
off at the limit, never inflated whole. Envoy needs its decompressor filter to do the same.
"""

from __future__ import annotations

import grpc
from aiohttp import web

from gateway.errors import GatewayError

_CHUNK_BYTES = 64 * 1024
_ENCODINGS = frozenset({"", "identity", "gzip", "deflate"})


def too_large(limit: int) -> GatewayError:
    # RESOURCE_EXHAUSTED is what gRPC itself answers for a message over its size limit; the
    # HTTP status is the precise 413 rather than that code's usual 429, which means "retry later".
    return GatewayError(
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        f"request body exceeds the limit of {limit} bytes",
        status=413,
    )


async def read_body(request: web.Request, limit: int) -> bytes:
    """The (decoded) body, refused with 413 as soon as it is known to exceed `limit` bytes."""
    encoding = request.headers.get("Content-Encoding", "").strip().lower()
    if encoding not in _ENCODINGS:
        raise GatewayError(
            grpc.StatusCode.INVALID_ARGUMENT,
            f"unsupported Content-Encoding {encoding!r}; send gzip, deflate or identity",
            status=415,
        )
    # A declared length over the limit is refused before reading a byte.
    if request.content_length is not None and request.content_length > limit:
        raise too_large(limit)
    chunks: list[bytes] = []
    size = 0
    try:
        async for chunk in request.content.iter_chunked(_CHUNK_BYTES):
            size += len(chunk)
            if size > limit:
                raise too_large(limit)
            chunks.append(chunk)
    except web.RequestPayloadError as exc:
        # Undecodable gzip, a broken chunked encoding or a body shorter than announced.
        reason = exc.__cause__ or exc
        raise GatewayError(
            grpc.StatusCode.INVALID_ARGUMENT, f"cannot read the request body: {reason}"
        ) from None
    return b"".join(chunks)
