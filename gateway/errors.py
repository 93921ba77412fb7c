"""HTTP answers for gRPC outcomes: Envoy's grpc_json_transcoder's, with the few statuses Tinybird
documents differently, and an error body Tinybird's clients read.

The HTTP status of a gRPC code starts from Envoy's `Grpc::Utility::grpcToHttpStatus`; where
Tinybird's API documents another status for the same failure, `TINYBIRD_STATUSES` replaces it (on
every route: they all take Tinybird's tokens, and a client should not have to know which family a
path belongs to). gateway/envoy/ has Envoy apply the same table, so both gateways agree; gRPC
callers still get the gRPC code itself.

The error body is `{"error": <message>, "code": <gRPC code>, "message": <message>, "details":
[...]}`. `error` is what Tinybird's clients read (`{"error": "..."}`: the TypeScript SDK's
`TinybirdApiError`, the CLI's `parse_error_response`); the rest is the `google.rpc.Status` that
Envoy's `convert_grpc_status: true` prints with the response print options
(`preserve_proto_field_names`, `always_print_primitive_fields`, which print an empty `details`
too: envoy#15193 shows that exact shape). When the upstream sends a rich status in
`grpc-status-details-bin`, that status is printed instead, as Envoy does, `error` beside it.

Errors the gateway raises itself (gateway/edge.py's refusals, a bad query parameter or bad JSON)
use the same body so that clients parse one shape.
"""

from __future__ import annotations

from collections.abc import Mapping

import grpc
import orjson
from google.protobuf import json_format
from google.protobuf.descriptor_pool import DescriptorPool
from google.rpc import status_pb2

# Envoy's grpcToHttpStatus.
ENVOY_STATUSES: dict[grpc.StatusCode, int] = {
    grpc.StatusCode.OK: 200,
    grpc.StatusCode.CANCELLED: 499,
    grpc.StatusCode.UNKNOWN: 500,
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.DEADLINE_EXCEEDED: 504,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.ALREADY_EXISTS: 409,
    grpc.StatusCode.PERMISSION_DENIED: 403,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
    grpc.StatusCode.FAILED_PRECONDITION: 400,
    grpc.StatusCode.ABORTED: 409,
    grpc.StatusCode.OUT_OF_RANGE: 400,
    grpc.StatusCode.UNIMPLEMENTED: 501,
    grpc.StatusCode.INTERNAL: 500,
    grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.DATA_LOSS: 500,
    grpc.StatusCode.UNAUTHENTICATED: 401,
}

# Envoy's status -> the one Tinybird documents for that failure. Tinybird answers a missing or
# unknown token with 403, as it does a token without the scope (API overview: "403 Forbidden.
# Provided Auth token doesn't have the right scope"; Events API: "403 The token is not valid";
# its CLI raises AuthNoTokenException on a 403 sent without a token) and never sends 401. Keyed
# by status, not code, so that Envoy can apply it to every answer, its own included: a 401 only
# ever stands for UNAUTHENTICATED.
TINYBIRD_STATUSES: dict[int, int] = {401: 403}

# A 429 always says when to come back: the TypeScript SDK retries only when it has a delay and
# Tinybird's CLI reads the header as an integer. The services send their own (a rate limit's
# reset, a full write-ahead log's); an upstream 429 without one gets this many seconds.
TOO_MANY_REQUESTS = 429
DEFAULT_RETRY_AFTER = "1"

_STATUS_DETAILS_KEY = "grpc-status-details-bin"


def http_status(code: grpc.StatusCode) -> int:
    """The HTTP status both gateways answer for a gRPC code (500 for anything unmapped)."""
    status = ENVOY_STATUSES.get(code, 500)
    return TINYBIRD_STATUSES.get(status, status)


def code_number(code: grpc.StatusCode) -> int:
    return code.value[0]


class GatewayError(Exception):
    """A request the gateway answers itself, without (or instead of) calling upstream."""

    def __init__(
        self,
        code: grpc.StatusCode,
        message: str,
        status: int | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = http_status(code) if status is None else status
        self.headers = dict(headers or {})

    def body(self) -> bytes:
        return status_body(self.code, self.message)


def status_body(code: grpc.StatusCode, message: str) -> bytes:
    """`{"error": ..., "code": <int>, "message": ..., "details": []}`: the printed
    google.rpc.Status, with Tinybird's `error` first."""
    return orjson.dumps(
        {"error": message, "code": code_number(code), "message": message, "details": []}
    )


def rpc_error_body(error: grpc.aio.AioRpcError, pool: DescriptorPool) -> bytes:
    """The JSON body for a failed upstream call. A rich status is printed with `pool`, so that
    detail types from the descriptor set resolve; if one does not, the details are dropped rather
    than failing the answer."""
    code = error.code()
    message = error.details() or ""
    for key, value in error.trailing_metadata() or ():
        if key != _STATUS_DETAILS_KEY or not isinstance(value, bytes):
            continue
        try:
            rich = status_pb2.Status.FromString(value)
            printed = json_format.MessageToDict(
                rich,
                preserving_proto_field_name=True,
                always_print_fields_with_no_presence=True,
                descriptor_pool=pool,
            )
            return orjson.dumps({"error": printed.get("message", ""), **printed})
        except Exception:
            # A malformed or unresolvable detail must not hide the error itself.
            break
    return status_body(code, message)
