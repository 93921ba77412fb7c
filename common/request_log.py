"""One structured log line per RPC, with the request id, method, status and duration.
The request id comes from `x-request-id` metadata (the gateway always sends one) or
is generated, and is bound to the structlog context for everything the call logs."""

from __future__ import annotations

import time
from typing import Any

import grpc
import structlog

from common.interceptors import Behavior, wrap_handler
from common.telemetry import REQUEST_ID_HEADER, new_request_id

log = structlog.get_logger("rpc")


def _request_id(metadata: Any) -> str:
    for key, value in metadata or ():
        if key == REQUEST_ID_HEADER:
            return value.decode() if isinstance(value, bytes) else value
    return new_request_id()


class RequestLogInterceptor(grpc.aio.ServerInterceptor):
    """Outermost interceptor: binds the request id and logs every call's outcome."""

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
                except BaseException:
                    code = context.code() or grpc.StatusCode.UNKNOWN
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
