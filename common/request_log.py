"""One structured log line per RPC, with the request id, method, status and duration.
The request id comes from `x-request-id` metadata (the gateway always sends one) or
is generated, and is bound to the structlog context for everything the call logs.

It is also where an exception no handler turned into a status ends: logged in full here,
answered INTERNAL with a fixed message that carries the request id and nothing of the
exception (grpc's default answer, UNKNOWN "Unexpected <class …>: …", shows its class
and text to the caller)."""

from __future__ import annotations

import time
from typing import Any

import grpc
import structlog

from common.interceptors import Behavior, wrap_handler
from common.telemetry import REQUEST_ID_HEADER, REQUEST_ID_PATTERN, new_request_id

log = structlog.get_logger("rpc")


def _request_id(metadata: Any) -> str:
    for key, value in metadata or ():
        if key == REQUEST_ID_HEADER:
            text = value.decode("ascii", "replace") if isinstance(value, bytes) else value
            if REQUEST_ID_PATTERN.fullmatch(text):
                return text
    return new_request_id()


def internal_error_message(request_id: str) -> str:
    """What the caller of a call that failed unexpectedly reads."""
    return f"internal error; the server logged it with request id {request_id}"


class RequestLogInterceptor(grpc.aio.ServerInterceptor):
    """Outermost interceptor: binds the request id, logs every call's outcome and turns
    unexpected exceptions into INTERNAL."""

    async def intercept_service(self, continuation, handler_call_details):
        method = handler_call_details.method
        request_id = _request_id(handler_call_details.invocation_metadata)
        handler = await continuation(handler_call_details)

        def wrap(behavior: Behavior) -> Behavior:
            async def logged(request: Any, context: grpc.aio.ServicerContext) -> Any:
                structlog.contextvars.bind_contextvars(request_id=request_id)
                start = time.perf_counter()
                code = grpc.StatusCode.OK
                try:
                    return await behavior(request, context)
                except grpc.aio.AbortError:
                    # The handler chose its status (context.abort).
                    code = context.code() or grpc.StatusCode.UNKNOWN
                    raise
                except Exception:
                    code = grpc.StatusCode.INTERNAL
                    log.exception("unhandled error", method=method)
                    await context.abort(code, internal_error_message(request_id))
                except BaseException:
                    code = context.code() or grpc.StatusCode.CANCELLED
                    raise
                finally:
                    code = context.code() or code
                    log.info(
                        "rpc",
                        method=method,
                        code=code.name if isinstance(code, grpc.StatusCode) else str(code),
                        duration_ms=round((time.perf_counter() - start) * 1000, 3),
                    )
                    structlog.contextvars.unbind_contextvars("request_id")

            return logged

        return wrap_handler(handler, wrap)
