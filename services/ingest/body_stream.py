"""The bytes of a request body streamed to ImportData, a message at a time: each message's
`body.data` (the first message's included), inflated when the request's Content-Encoding is
gzip (Envoy passes such a body on as sent; our gateway inflates it itself), and counted
against the limit as sent and as inflated, so a body over it ends as soon as it is known to."""

from __future__ import annotations

from collections.abc import AsyncIterator

from common.gzip_inflater import BodyTooLarge, GzipInflater
from pipit.ingest.v1 import datasources_service_pb2 as pb


async def body_chunks(
    first: pb.ImportDataRequest,
    rest: AsyncIterator[pb.ImportDataRequest],
    limit: int,
    encoding: str,
) -> AsyncIterator[bytes]:
    """The body's bytes, in the chunks they came in. Raises BodyTooLarge past `limit` bytes,
    and GzipError when a gzip body is not valid gzip."""
    inflater = GzipInflater(limit) if encoding.strip().lower() == "gzip" else None
    received = 0

    def take(data: bytes) -> bytes:
        nonlocal received
        if inflater is not None:
            return inflater.feed(data)
        received += len(data)
        if received > limit:
            raise BodyTooLarge(limit)
        return data

    chunk = take(first.body.data)
    if chunk:
        yield chunk
    async for message in rest:
        chunk = take(message.body.data)
        if chunk:
            yield chunk
    if inflater is not None:
        inflater.finish()
