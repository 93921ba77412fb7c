"""Decoding a Tinybird Events API body: one JSON value (an object, or an array of
objects) or NDJSON, one event per line. Optionally gzip-compressed.

Decoding never raises for a bad line: each line becomes either a decoded value or the
reason it is not JSON, so one bad line cannot sink the rest of the body. Only a body
with nothing usable at all is refused outright."""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from typing import Any

import orjson

GZIP_MAGIC = b"\x1f\x8b"


class BodyError(ValueError):
    """The body as a whole is unusable (empty, not JSON at all, too large)."""


class BodyTooLarge(BodyError):
    """The body, or its decompressed form, is over the configured limit."""


@dataclass(frozen=True)
class Line:
    """One event of the body: its decoded value, or the reason it could not be."""

    raw: bytes
    value: Any = None
    error: str = ""


def decompress(body: bytes, limit: int) -> bytes:
    """The body itself, or its gzip payload inflated up to `limit` bytes. Inflating
    with a cap stops a small gzip bomb from taking the process's memory."""
    if not body.startswith(GZIP_MAGIC):
        return body
    inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
    try:
        out = inflater.decompress(body, limit + 1)
    except zlib.error as exc:
        raise BodyError(f"body is not valid gzip: {exc}") from None
    if len(out) > limit or inflater.unconsumed_tail:
        raise BodyTooLarge(f"decompressed body is over the {limit}-byte limit")
    return out


def _element(item: Any) -> Line:
    """One event of a top-level JSON array, with its JSON text for quarantine."""
    try:
        return Line(orjson.dumps(item), item)
    except TypeError as exc:  # nested deeper than orjson prints
        return Line(b"", error=f"event cannot be stored: {exc}")


def decode(body: bytes) -> list[Line]:
    """The events of a body. Raises BodyError when the body is empty or no line of
    it is JSON."""
    if not body.strip():
        raise BodyError("empty body: send one JSON object or NDJSON, one event per line")
    try:
        whole = orjson.loads(body)
    except orjson.JSONDecodeError:
        pass
    else:
        # A single (possibly pretty-printed) object, as the tutorials' curl calls send.
        if isinstance(whole, list):
            return [_element(item) for item in whole]
        return [Line(body.strip(), whole)]
    lines: list[Line] = []
    for number, raw in enumerate(body.split(b"\n"), start=1):
        raw = raw.strip()
        if not raw:
            continue
        try:
            lines.append(Line(raw, orjson.loads(raw)))
        except orjson.JSONDecodeError as exc:
            lines.append(Line(raw, error=f"line {number}: not valid JSON ({exc})"))
    if all(line.error for line in lines):
        first = lines[0].error if lines else ""
        raise BodyError(f"body is not JSON or NDJSON: {first}")
    return lines
