"""How a Query API request fails: SqlFailure, the status and reason it answers with, and the
engine's message for a failed statement made fit to show the caller."""

from __future__ import annotations

import re

import grpc

from common.warehouse.base import WarehouseError

_ERROR_NAME = re.compile(r"\(([A-Z][A-Z0-9_]+)\)\s*$")
# Where the engine's message goes on to quote the statement it ran (ours, not the caller's).
_QUOTES_STATEMENT = re.compile(r":? (In scope|While processing) .*", re.DOTALL)
# What the engine or its client add about themselves: a version, the server's address.
_ABOUT_ENGINE = re.compile(r" \((version|for url) [^)]*\)")


class SqlFailure(Exception):
    """A query the Query API will not answer: the gRPC status it fails with, the reason
    (safe to show the caller), and for RESOURCE_EXHAUSTED the `retry-after` seconds."""

    def __init__(self, code: grpc.StatusCode, message: str, retry_after: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.retry_after = retry_after


def engine_message(error: WarehouseError) -> tuple[str, str]:
    """The engine's reason for a failed statement, without its error code prefix, stack
    trace, version or the statement Pipit wrapped the query in; and the error's name."""
    text = str(error).rsplit("DB::Exception: ", 1)[-1].split(" Stack trace", 1)[0]
    text = _ABOUT_ENGINE.sub("", text).strip()
    name = match.group(1) if (match := _ERROR_NAME.search(text)) else ""
    text = _ERROR_NAME.sub("", text).strip()
    text = _QUOTES_STATEMENT.sub("", text)
    text = text.strip().rstrip(".:")
    return text[:500], name
