"""What an upstream's gRPC metadata makes of the HTTP answer: the status `x-http-status` may
set (the services' way to say 202 or 413 through a transport that has no HTTP status) and the
metadata forwarded as response headers. The rules are gateway/edge.py's; gateway/envoy/lua.py
renders them for Envoy."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import grpc
from aiohttp import web

from common.telemetry import REQUEST_ID_HEADER
from gateway.edge import ERROR_STATUSES, STATUS_METADATA_KEY, SUCCESS_STATUSES
from gateway.errors import http_status

_NOT_FORWARDED = frozenset(
    {
        "connection",
        "content-encoding",
        "content-length",
        "content-type",
        "date",
        "keep-alive",
        "server",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "user-agent",
        STATUS_METADATA_KEY,
        REQUEST_ID_HEADER,
    }
)


def success_status(metadata: Iterable[tuple[str, Any]] | None) -> int:
    """The HTTP status of a successful answer with this initial metadata."""
    # Only a 2xx with a body may replace 200: an error must travel as a gRPC status to be seen
    # as one.
    for key, value in metadata or ():
        if key == STATUS_METADATA_KEY and isinstance(value, str) and value in SUCCESS_STATUSES:
            return int(value)
    return 200


def error_status(error: grpc.aio.AioRpcError) -> int:
    """The HTTP status of a failed call."""
    status = http_status(error.code())
    allowed = ERROR_STATUSES.get(status, ())
    for key, value in (*(error.initial_metadata() or ()), *(error.trailing_metadata() or ())):
        if key == STATUS_METADATA_KEY and isinstance(value, str) and value in allowed:
            return int(value)
    return status


def forward(metadata: Iterable[tuple[str, Any]] | None, response: web.StreamResponse) -> None:
    """Adds `metadata` to `response`'s headers, minus gRPC-internal and hop-by-hop keys."""
    for key, value in metadata or ():
        if (
            isinstance(value, str)
            and key not in _NOT_FORWARDED
            and not key.startswith(("grpc-", ":"))
            and not key.endswith("-bin")
        ):
            response.headers.add(key, value)
