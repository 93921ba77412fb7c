"""Reading a request body without trusting its size.

`Content-Encoding: gzip` is inflated here, a chunk at a time with a cap, so the limit applies
to the decompressed size and a small gzip bomb is cut off at the limit, never inflated whole
(Envoy: its gzip decompressor filter ahead of the buffer filter). aiohttp's own decompression is
off (see `create_app`): it knows more encodings than Envoy does (deflate, and br or zstd when
their packages are installed) and refuses the others with a plain-text 400 before any handler
runs. Only gzip and identity are accepted, the encodings Envoy's configuration decodes; anything
else is a JSON 415 from both.
"""

from __future__ import annotations

import zlib

import grpc
from aiohttp import web

from gateway.errors import GatewayError

_CHUNK_BYTES = 64 * 1024
ACCEPTED_ENCODINGS = frozenset({"", "identity", "gzip"})
_GZIP_WBITS = 16 + zlib.MAX_WBITS  # gzip framing only, as the header promises


def too_large(limit: int) -> GatewayError:
    # RESOURCE_EXHAUSTED is what gRPC itself answers for a message over its size limit; the
    # HTTP status is the precise 413 rather than that code's usual 429, which means "retry later".
    return GatewayError(
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        f"request body exceeds the limit of {limit} bytes",
        status=413,
    )


def unsupported_encoding(encoding: str) -> GatewayError:
    return GatewayError(
        grpc.StatusCode.INVALID_ARGUMENT,
        f"unsupported Content-Encoding '{encoding}'; send gzip or identity",
        status=415,
    )


def _unreadable(reason: object) -> GatewayError:
    return GatewayError(grpc.StatusCode.INVALID_ARGUMENT, f"cannot read the request body: {reason}")


async def read_body(request: web.Request, limit: int) -> bytes:
    """The (decoded) body, refused with 413 as soon as it is known to exceed `limit` bytes."""
    encoding = request.headers.get("Content-Encoding", "").strip().lower()
    if encoding not in ACCEPTED_ENCODINGS:
        raise unsupported_encoding(encoding)
    inflater = zlib.decompressobj(_GZIP_WBITS) if encoding == "gzip" else None
    # A declared length over the limit is refused before reading a byte. Not a gzip body's:
    # the limit is on what it inflates to, as in Envoy (whose decompressor drops the length).
    if inflater is None and request.content_length is not None and request.content_length > limit:
        raise too_large(limit)
    chunks: list[bytes] = []
    size = received = 0
    try:
        async for chunk in request.content.iter_chunked(_CHUNK_BYTES):
            received += len(chunk)
            if inflater is not None:
                # At most one byte past the limit: enough to know the body is too large.
                chunk = inflater.decompress(chunk, limit - size + 1)
                if inflater.unconsumed_tail:
                    raise too_large(limit)
            size += len(chunk)
            if size > limit:
                raise too_large(limit)
            chunks.append(chunk)
    except web.RequestPayloadError as exc:
        # A broken chunked encoding or a body shorter than announced.
        raise _unreadable(exc.__cause__ or exc) from None
    except zlib.error as exc:
        raise _unreadable(f"not valid gzip ({exc})") from None
    if inflater is not None and received and not inflater.eof:
        raise _unreadable("the gzip stream is truncated")
    return b"".join(chunks)
