"""Decoding a Tinybird Events API body: one JSON value (an object, or an array of
objects) or NDJSON, one event per line. Optionally gzip-compressed, inflated by the inflater
our gateway uses too (common/gzip_inflater.py), so a body is kept or refused alike whichever
of them inflates it.

Decoding never raises for a bad line: each line becomes either a decoded value or the
reason it is not JSON, so one bad line cannot sink the rest of the body. Only a body
with nothing usable at all is refused outright."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from common.gzip_inflater import GZIP_MAGIC, GzipError, inflate, too_large_message
from common.gzip_inflater import BodyTooLarge as _InflatedTooLarge


class BodyError(ValueError):
    """The body as a whole is unusable (empty, not JSON at all, too large)."""


class BodyTooLarge(BodyError):
    """The body, or its decompressed form, is over the configured limit."""


@dataclass(frozen=True)
class Events:
    """The events of a body, in order: each one's text (kept for quarantine) and its
    decoded value, or, at the indexes in `errors`, the reason it could not be decoded."""

    texts: list[bytes]
    values: list[Any]
    errors: dict[int, str] = field(default_factory=dict)
    columns: Mapping[str, list[Any]] | None = None
    """The same events a column at a time, when the reader has them so (a CSV file's): the
    validator checks those whole, without a dict per event."""

    def __len__(self) -> int:
        return len(self.texts)


_NOTHING: Any = object()


class ColumnDicts(Sequence[dict[str, Any]]):
    """A batch's events as dicts made from its columns, each made only when asked for: only
    a batch the validator cannot check a column at a time ever is. A value that is `skip`
    is left out of its event (a field the event does not have)."""

    def __init__(self, names: list[str], columns: list[list[Any]], skip: Any = _NOTHING) -> None:
        self._names = names
        self._columns = columns
        self._skip = skip

    def __len__(self) -> int:
        return len(self._columns[0]) if self._columns else 0

    def __getitem__(self, index: Any) -> Any:
        return {
            name: column[index]
            for name, column in zip(self._names, self._columns, strict=True)
            if column[index] is not self._skip
        }


def decompress(body: bytes, limit: int, encoding: str = "") -> bytes:
    """The body itself, or its gzip payload (every member of it) inflated up to `limit`
    bytes. It is gzip when `encoding` (the request's Content-Encoding, which Envoy passes
    on as metadata) says so, or when it starts with gzip's magic number (a client that
    compressed without saying). Raises BodyTooLarge when the body or what it inflates to is
    over `limit` bytes, BodyError when it is not the gzip it claims to be."""
    if len(body) > limit:
        raise BodyTooLarge(too_large_message(limit))
    if encoding.strip().lower() != "gzip" and not body.startswith(GZIP_MAGIC):
        return body
    try:
        return inflate(body, limit)
    except _InflatedTooLarge as exc:
        raise BodyTooLarge(str(exc)) from None
    except GzipError as exc:
        raise BodyError(str(exc)) from None


def _from_array(items: list[Any]) -> Events:
    """The events of a top-level JSON array, with each one's JSON text for quarantine."""
    events = Events([], [])
    for item in items:
        try:
            events.texts.append(orjson.dumps(item))
        except TypeError as exc:  # nested deeper than orjson prints
            events.errors[len(events.texts)] = f"event cannot be stored: {exc}"
            events.texts.append(b"")
        events.values.append(item)
    return events


def decode(body: bytes) -> Events:
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
            return _from_array(whole)
        return Events([body.strip()], [whole])
    numbered = [
        (number, line)
        for number, line in enumerate(map(bytes.strip, body.split(b"\n")), start=1)
        if line
    ]
    texts = [line for _, line in numbered]
    try:
        # Every line parsed on its own, as below, but in one C-level pass.
        return Events(texts, list(map(orjson.loads, texts)))
    except orjson.JSONDecodeError:
        pass
    events = Events(texts, [])
    for index, (number, raw) in enumerate(numbered):
        try:
            events.values.append(orjson.loads(raw))
        except orjson.JSONDecodeError as exc:
            events.values.append(None)
            events.errors[index] = f"line {number}: not valid JSON ({exc})"
    if len(events.errors) == len(events):
        first = events.errors[0] if events.errors else ""
        raise BodyError(f"body is not JSON or NDJSON: {first}")
    return events
