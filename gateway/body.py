"""Reading a request body without trusting its size, its encoding or its pace.

Two steps, so that the gateway can refuse a request before reading a byte of its body:
`body_encoding` judges the head (an encoding we cannot decode is a JSON 415, a declared length
over the limit a 413, compressed or not), and `read_body` reads the body, a chunk at a time.

A body is read whole (`read_body`) or a piece at a time (`body_pieces`, for a method that streams
it: gateway/body_stream.py). `Content-Encoding: gzip` is inflated as it arrives by the inflater the
ingest service uses too (common/gzip_inflater.py): every member, nothing after them, and both the
compressed and the inflated size capped, so a gzip bomb is cut off at the limit and trailing bytes
are refused as soon as they start. aiohttp's own decompression is off (see `create_app`): it knows
more encodings than Envoy does (deflate, and br or zstd when their packages are installed) and
refuses the others with a plain-text 400 before any handler runs. Only gzip and identity are
accepted, the encodings Envoy's configuration decodes; anything else is a JSON 415 from both.

A client that stops sending its body for `idle_timeout` seconds is answered 408 with Envoy's
words for its stream idle timeout, rather than holding the connection for ever. Each refusal's
status and words are gateway/edge.py's.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from aiohttp import web

from common.gzip_inflater import BodyTooLarge, GzipError, GzipInflater
from gateway.edge import (
    ACCEPTED_ENCODINGS,
    BAD_GZIP,
    BODY_STALLED,
    BODY_TOO_LARGE,
    BODY_UNREADABLE,
    UNSUPPORTED_ENCODING,
)

# The largest piece `body_pieces` hands on: a streamed body's message carries one.
MAX_PIECE_BYTES = 64 * 1024


def body_encoding(request: web.Request, limit: int) -> str:
    """The body's Content-Encoding ("gzip" or identity: ""), once the head shows the body may
    be read: 415 for another encoding, 413 for a Content-Length over `limit` (the limit holds
    for the body as sent as well as for what it inflates to)."""
    encoding = request.headers.get("Content-Encoding", "").strip().lower()
    if encoding not in ACCEPTED_ENCODINGS:
        raise UNSUPPORTED_ENCODING.error(encoding=encoding)
    if request.content_length is not None and request.content_length > limit:
        raise BODY_TOO_LARGE.error(limit=limit)
    return "gzip" if encoding == "gzip" else ""


async def body_pieces(
    request: web.Request, limit: int, encoding: str, idle_timeout: float
) -> AsyncIterator[bytes]:
    """The (inflated) body a piece at a time as it arrives, each at most MAX_PIECE_BYTES,
    refused with 413 as soon as it is known to exceed `limit` bytes, sent or inflated, and
    with 400 as soon as it cannot be the gzip it claims to be."""
    inflater = GzipInflater(limit) if encoding == "gzip" else None
    size = 0
    try:
        while True:
            async with asyncio.timeout(idle_timeout):
                # At most a piece: readany would join all aiohttp has buffered, a copy of it.
                chunk = await request.content.read(MAX_PIECE_BYTES)
            if not chunk:
                break
            if inflater is not None:
                chunk = inflater.feed(chunk)
            size += len(chunk)
            if size > limit:
                raise BODY_TOO_LARGE.error(limit=limit)
            for at in range(0, len(chunk), MAX_PIECE_BYTES):
                yield chunk[at : at + MAX_PIECE_BYTES]
        if inflater is not None:
            inflater.finish()
    except TimeoutError:
        raise BODY_STALLED.error() from None
    except web.RequestPayloadError as exc:
        # A broken chunked encoding or a body shorter than announced.
        raise BODY_UNREADABLE.error(reason=exc.__cause__ or exc) from None
    except BodyTooLarge:
        raise BODY_TOO_LARGE.error(limit=limit) from None
    except GzipError as exc:
        raise BAD_GZIP.error(reason=exc) from None


async def read_body(request: web.Request, limit: int, encoding: str, idle_timeout: float) -> bytes:
    """The whole (inflated) body, with `body_pieces`' refusals."""
    return b"".join([piece async for piece in body_pieces(request, limit, encoding, idle_timeout)])
