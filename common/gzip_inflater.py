"""Inflating a gzip request body with both of its sizes capped, a chunk at a time.

One inflater for every place a gzip body is read: our gateway (gateway/body.py, as the bytes
arrive) and the ingest service (services/ingest/events_api.py, for a gzip body that reaches the
Events API RPC as it was sent, e.g. through Envoy). So both keep and refuse the same bodies:

- Every member. RFC 1952 lets a gzip file be several members back to back (`cat a.gz b.gz`);
  zlib stops at the end of the first, so the rest would be dropped without a word.
- Nothing but members. After a member, the next bytes must start another one; anything else
  (trailing garbage, even zero padding) is refused as soon as it is seen, not read to its end.
- A cap on the inflated size (a small gzip bomb is cut off at the limit, never inflated whole)
  and on the compressed size (a body of members that inflate to little, or of empty members,
  cannot be endless either).
"""

from __future__ import annotations

import zlib
from typing import Any

GZIP_MAGIC = b"\x1f\x8b"
_GZIP_WBITS = 16 + zlib.MAX_WBITS  # gzip framing only, as the header promises


def too_large_message(limit: int) -> str:
    """The one wording of "this body is too large", compressed or not, whoever says it."""
    return f"request body exceeds the limit of {limit} bytes"


class BodyTooLarge(ValueError):
    """The body, compressed or inflated, is over the limit."""

    def __init__(self, limit: int) -> None:
        super().__init__(too_large_message(limit))
        self.limit = limit


class GzipError(ValueError):
    """The body is not a gzip stream: corrupt, truncated, or followed by other bytes."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"request body is not valid gzip: {reason}")


class GzipInflater:
    """Feed the compressed bytes as they come (`feed`), then call `finish`. Each raises
    BodyTooLarge once more than `limit` bytes came in or would come out, and GzipError once the
    bytes cannot be gzip; no call inflates more than `limit` + 1 bytes."""

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._member: Any = None  # the zlib decompressor of the member being read
        self._between = b""  # bytes after a member, too few yet to tell whether one follows
        self._members = 0  # complete members so far
        self.received = 0
        self.inflated = 0

    def feed(self, data: bytes) -> bytes:
        """What `data` inflates to (possibly nothing yet)."""
        self.received += len(data)
        if self.received > self._limit:
            raise BodyTooLarge(self._limit)
        out: list[bytes] = []
        data = self._between + data
        self._between = b""
        while data:
            if self._member is None:
                # The first member's header is zlib's to judge; after a member, only the start
                # of another may follow.
                if self._members:
                    if not GZIP_MAGIC.startswith(data[: len(GZIP_MAGIC)]):
                        raise GzipError("bytes after the last gzip member are not another member")
                    if len(data) < len(GZIP_MAGIC):
                        self._between = data
                        break
                self._member = zlib.decompressobj(_GZIP_WBITS)
            try:
                # At most one byte past the limit: enough to know the body is too large.
                chunk = self._member.decompress(data, self._limit - self.inflated + 1)
            except zlib.error as exc:
                raise GzipError(str(exc)) from None
            self.inflated += len(chunk)
            if self.inflated > self._limit:
                raise BodyTooLarge(self._limit)
            out.append(chunk)
            if not self._member.eof:
                # Every byte was taken: a capped call that stopped early has gone past the limit.
                break
            data = self._member.unused_data
            self._member = None
            self._members += 1
        return b"".join(out)

    def finish(self) -> None:
        """Checks the body ended where a member ends (an empty body is empty, not an error)."""
        if self._member is not None or self._between:
            raise GzipError("the body ends inside a gzip member (truncated)")


def inflate(data: bytes, limit: int) -> bytes:
    """A whole gzip body inflated, under the same rules as GzipInflater."""
    inflater = GzipInflater(limit)
    out = inflater.feed(data)
    inflater.finish()
    return out
