"""The HTTP edge, declared once: what a client meets before a service answers it, whichever
gateway serves it. This module is the reference; both gateways are rendered from it:

- ours takes its values from here (gateway/app.py, body.py, cors.py, errors.py);
- Envoy's configuration is rendered from here (gateway/envoy/: the bootstrap's filters and
  timeouts, the route configuration's CORS policy, `local_reply_config`, and the `@NAME@`
  places of the .lua filters, filled by gateway/envoy/lua.py).

Where a behaviour has to be code in each gateway (a Python function in ours, a Lua function or
a built-in filter in Envoy), the entry below names both, and tests/test_edge.py holds them to
it: every refusal in `REFUSALS` is sent through each gateway that produces it and the answer
compared with the table, and Envoy's local replies are checked to carry each refusal's code.
The status table itself (gRPC code → HTTP status, Tinybird's replacements, the error body's
shape) is gateway/errors.py's.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

import grpc
from google.api import annotations_pb2

from common.config import Settings
from common.gzip_inflater import too_large_message
from common.telemetry import REQUEST_ID_HEADER
from gateway.errors import ENVOY_STATUSES, GatewayError, http_status
from pipit.ingest.v1 import datasources_service_pb2

# --- Where a token comes from -------------------------------------------------------------

# `Authorization: Bearer <token>`, else the last `?token=`. The parameter is a credential, not a
# field: it never reaches a service as one, nor the access log.
TOKEN_HEADER = "authorization"
TOKEN_SCHEME = "Bearer "
TOKEN_PARAMETER = "token"

# --- Refusals: requests the edge answers itself --------------------------------------------
# One `Refusal` a row below: a table, so its rows are alike in shape by design (`duplicates`
# lists them as a pair); each row's values are its own.


@dataclass(frozen=True)
class Refusal:
    """One answer a gateway gives itself: its HTTP status, the gRPC code its JSON body carries
    (gateway/errors.py `status_body`) and the message, a `str.format` template whose fields
    the request (or a setting) fills. `ours` and `envoy` say which code produces it in each
    gateway; None where that gateway passes the request on (the README lists why)."""

    name: str
    status: int
    code: grpc.StatusCode
    message: str
    ours: str | None
    envoy: str | None
    # Response headers, templates as `message` is.
    headers: Mapping[str, str] = field(default_factory=dict)
    # Answered in gRPC (to a gRPC request): the code in grpc-status, the message in grpc-message.
    in_grpc: bool = False

    def text(self, **fields: object) -> str:
        return self.message.format(**fields)

    def error(self, **fields: object) -> GatewayError:
        """The refusal as our gateway raises it."""
        return GatewayError(
            self.code,
            self.text(**fields),
            status=self.status,
            headers={k: v.format(**fields) for k, v in self.headers.items()},
        )

    @property
    def envoy_status(self) -> int:
        """The status an Envoy local reply takes for it: Envoy's own for the code, which the
        first Lua filter turns into Tinybird's (401 into 403) as it does for every answer, so
        that local_reply_config can tell the code from the status."""
        envoy = ENVOY_STATUSES.get(self.code, self.status)
        return envoy if http_status(self.code) == self.status else self.status


NO_ROUTE = Refusal(
    "no_route",
    404,
    grpc.StatusCode.NOT_FOUND,
    "Could not resolve {path} to a method.",  # Envoy's wording
    ours="app.py Gateway.transcode",
    envoy="the transcoder (request_validation_options.reject_unknown_method)",
)
METHOD_NOT_ALLOWED = Refusal(
    "method_not_allowed",
    405,
    # Tinybird's status; the code says the method is not one the path implements.
    grpc.StatusCode.UNIMPLEMENTED,
    "method {method} is not allowed on {path}; it takes {methods}",
    ours="app.py Gateway.transcode, from RouteTable.allowed_methods",
    envoy="methods.lua, rendered from the same route table",
    headers={"Allow": "{methods}"},  # RFC 9110 requires it on a 405
)
UNPRINTABLE_TOKEN = Refusal(
    "unprintable_token",
    403,
    # gRPC metadata values must be printable ASCII: refused here rather than fail the call.
    grpc.StatusCode.UNAUTHENTICATED,
    "the token must be printable ASCII",
    ours="app.py _metadata",
    envoy="refusals.lua",
)
UNSUPPORTED_ENCODING = Refusal(
    "unsupported_encoding",
    415,
    grpc.StatusCode.INVALID_ARGUMENT,
    "unsupported Content-Encoding '{encoding}'; send gzip or identity",
    ours="body.py body_encoding",
    envoy="refusals.lua",
)
BODY_TOO_LARGE = Refusal(
    "body_too_large",
    # RESOURCE_EXHAUSTED is what gRPC answers for a message over its size limit; the status is
    # the precise 413 rather than that code's usual 429, which means "retry later".
    413,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
    # The services' wording (the ingest service says it too, of a body it inflates itself).
    too_large_message("{limit}"),  # type: ignore[arg-type]
    ours="body.py body_encoding (a declared length), body_pieces (as sent or inflated)",
    envoy="refusals.lua (a declared length); the buffer filter; local_reply_config's words",
)
BODY_STALLED = Refusal(
    "body_stalled",
    408,
    grpc.StatusCode.DEADLINE_EXCEEDED,
    "stream timeout",  # Envoy's wording
    ours="body.py body_pieces, after the header timeout",
    envoy="stream_idle_timeout (see `stream_idle_timeout`)",
)
UPSTREAM_TIMEOUT = Refusal(
    "upstream_timeout",
    504,
    grpc.StatusCode.DEADLINE_EXCEEDED,
    "upstream request timeout",  # Envoy's wording
    # A unary call has its deadline and fails with the service's DEADLINE_EXCEEDED instead.
    ours="app.py _within, for a streamed body's answer",
    envoy="the route timeout, from the end of the body",
)
BODY_UNREADABLE = Refusal(
    "body_unreadable",
    400,
    grpc.StatusCode.INVALID_ARGUMENT,
    "cannot read the request body: {reason}",
    ours="body.py body_pieces (broken chunked encoding, body shorter than announced)",
    envoy=None,  # its HTTP codec's own 400
)
BAD_GZIP = Refusal(
    "bad_gzip",
    400,
    grpc.StatusCode.INVALID_ARGUMENT,
    "{reason}",  # common/gzip_inflater.py's GzipError, the services' words too
    ours="body.py body_pieces",
    # Raw bodies go to the service as sent, which says the same; the decompressor of the typed
    # routes reads what it can (README, "the differences that remain").
    envoy=None,
)
# Envoy answers a gRPC request in gRPC: a local reply's status becomes the code Envoy maps it
# to (404: UNIMPLEMENTED). Ours speaks JSON only and answers it as any request.
NATIVE_GRPC = Refusal(
    "native_grpc",
    404,
    grpc.StatusCode.UNIMPLEMENTED,
    NO_ROUTE.message,
    ours=None,
    envoy="refusals.lua",
    in_grpc=True,
)

REFUSALS: tuple[Refusal, ...] = (
    NO_ROUTE,
    METHOD_NOT_ALLOWED,
    UNPRINTABLE_TOKEN,
    UNSUPPORTED_ENCODING,
    BODY_TOO_LARGE,
    BODY_STALLED,
    UPSTREAM_TIMEOUT,
    BODY_UNREADABLE,
    BAD_GZIP,
    NATIVE_GRPC,
)

# What native gRPC is told by: the transcoder turns every request into gRPC after, so the
# first Lua filter records it for local_reply_config.
GRPC_CONTENT_TYPE = "application/grpc"
# The encodings both decode (Envoy's decompressor knows only gzip); anything else is 415.
ACCEPTED_ENCODINGS = frozenset({"", "identity", "gzip"})

# --- Statuses an answer may take from the service ------------------------------------------

# Initial metadata that sets the status of an answer; neither gateway forwards it.
STATUS_METADATA_KEY = "x-http-status"
# The 2xx statuses a success may take from it: those that carry a body as it is (204 and 205
# forbid one, 206 needs Content-Range).
SUCCESS_STATUSES = ("200", "201", "202", "203")
# What it may make of an error's status: only a more precise status for the same gRPC code. A
# body over the limit is RESOURCE_EXHAUSTED, 413 rather than 429 ("retry later").
ERROR_STATUSES = {429: ("413",)}

# --- CORS ----------------------------------------------------------------------------------

CORS_ALLOW_HEADERS = ("authorization", "content-type", "content-encoding", REQUEST_ID_HEADER)
# Browsers let a page read only the response headers named here (beyond a few simple ones):
# every header a client of Pipit relies on. The services send the X-RateLimit-* figures on
# every rate-limited answer and Retry-After on a 429 (common/auth.py, services/ingest/).
CORS_EXPOSE_HEADERS = (
    REQUEST_ID_HEADER,
    "retry-after",
    "x-ratelimit-limit",
    "x-ratelimit-remaining",
    "x-ratelimit-reset",
)
CORS_MAX_AGE_SECONDS = 86400
# On every answer: the echoed Access-Control-Allow-Origin depends on it, and a shared cache
# must not serve one origin's answer to another.
CORS_VARY = "Origin"
DEFAULT_ALLOWED_ORIGINS = ("*",)

# --- Body limits, by route class -----------------------------------------------------------

DEFAULT_MAX_BODY_BYTES: int = Settings.max_body_bytes
_IMPORT = datasources_service_pb2.DESCRIPTOR.services_by_name["DatasourcesService"].methods_by_name[
    "ImportData"
]
# The Data Sources API's file uploads carry whole files: a limit of their own, and their body
# streams to the service a piece at a time. Known to ours by method, to Envoy by the path of its
# HTTP rule (it matches before transcoding).
IMPORT_METHOD = f"/{_IMPORT.containing_service.full_name}/{_IMPORT.name}"
IMPORT_PATH = _IMPORT.GetOptions().Extensions[annotations_pb2.http].post


def import_limit(max_body_bytes: int, import_max_body_bytes: int) -> int:
    """The body limit of imports (IMPORT_METHOD); 0 means the same as the rest."""
    return import_max_body_bytes or max_body_bytes


# --- `GET /v0/pipes/<pipe>.json?q=…` ---------------------------------------------------------

# Goes to PipeService's `:query` binding when `q` is not empty: the pipe's typed RPC, which the
# literal path would reach, cannot answer a query over its result.
PIPE_QUERY_PARAMETER = "q"
PIPE_QUERY_VERB = ":query"
PIPE_JSON_PREFIX = "/v0/pipes/"
PIPE_JSON_SUFFIX = ".json"
# The pipe's name: one segment, no verb. The same class in a Python regex and a Lua pattern.
PIPE_NAME_CLASS = "[^/:]+"
PIPE_JSON_PATH = re.compile(
    re.escape(PIPE_JSON_PREFIX) + PIPE_NAME_CLASS + re.escape(PIPE_JSON_SUFFIX)
)

# --- Timeouts ------------------------------------------------------------------------------

# How long a service may take to answer.
DEFAULT_REQUEST_TIMEOUT = 30.0
# How long a connection may take to send a request head, from when it opens or its last answer
# (idle keep-alive connections too), and a body may stall.
DEFAULT_HEADER_TIMEOUT: float = Settings.header_timeout


def stream_idle_timeout(request_timeout: float, header_timeout: float) -> float:
    """Envoy's stream idle timeout, which also runs while a service answers: the request
    timeout plus the header timeout, so that it only ends streams whose client went quiet."""
    return request_timeout + header_timeout


# --- Health ---------------------------------------------------------------------------------

# `GET` answers 200 while the query service reports itself ready, else 503 (gateway/app.py's
# `healthz`; Envoy's health_check filter).
HEALTH_PATH = "/healthz"
# Health probes must answer fast even when the request timeout is long.
HEALTH_CHECK_TIMEOUT = 5.0
