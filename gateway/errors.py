"""HTTP answers for gRPC outcomes, as Envoy's grpc_json_transcoder gives them.

The HTTP status of a gRPC code is Envoy's `Grpc::Utility::grpcToHttpStatus`. The error body is
the `google.rpc.Status` that `convert_grpc_status: true` sends, printed with the same print options
as responses (`preserve_proto_field_names`, `always_print_primitive_fields`). Those options print
empty repeated fields too, so Envoy's body is `{"code":5,"message":"...","details":[]}` (envoy#15193
shows that exact shape); we print `details` for the same reason. When the upstream sends a rich
status in `grpc-status-details-bin`, that status is printed instead, as Envoy does.

Errors the gateway raises itself (no route, bad query parameter, bad JSON, body too large) use the
same body so that clients parse one shape.
"""

from __future__ import annotations

import grpc
import orjson
from google.protobuf import json_format
from google.protobuf.descriptor_pool import DescriptorPool
from google.rpc import status_pb2

_HTTP_STATUS: dict[grpc.StatusCode, int] = {
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

_STATUS_DETAILS_KEY = "grpc-status-details-bin"


def http_status(code: grpc.StatusCode) -> int:
    """The HTTP status Envoy answers for a gRPC code (500 for anything unmapped)."""
    return _HTTP_STATUS.get(code, 500)


def code_number(code: grpc.StatusCode) -> int:
    return code.value[0]


class GatewayError(Exception):
    """A request the gateway answers itself, without (or instead of) calling upstream."""

    def __init__(self, code: grpc.StatusCode, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = http_status(code) if status is None else status

    def body(self) -> bytes:
        return status_body(self.code, self.message)


def status_body(code: grpc.StatusCode, message: str) -> bytes:
    """`{"code": <int>, "message": ..., "details": []}`, the printed google.rpc.Status."""
    return orjson.dumps({"code": code_number(code), "message": message, "details": []})


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
            return orjson.dumps(printed)
        except Exception:
            # A malformed or unresolvable detail must not hide the error itself.
            break
    return status_body(code, message)
