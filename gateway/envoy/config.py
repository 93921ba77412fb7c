"""What an Envoy in front of Pipit's services is configured with (`EnvoyConfig`), and the
pieces of its configuration that do not depend on the route table: clusters and their TLS, the
listener's TLS, Envoy's own error answers as our gateway's JSON, the access log line."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import orjson
from google.api import annotations_pb2
from google.protobuf import descriptor_pb2

from gateway.edge import (
    BODY_STALLED,
    BODY_TOO_LARGE,
    DEFAULT_ALLOWED_ORIGINS,
    DEFAULT_HEADER_TIMEOUT,
    DEFAULT_MAX_BODY_BYTES,
    DEFAULT_REQUEST_TIMEOUT,
    HEALTH_PATH,
    IMPORT_PATH,
    METHOD_NOT_ALLOWED,
    NO_ROUTE,
    UNPRINTABLE_TOKEN,
    UNSUPPORTED_ENCODING,
    UPSTREAM_TIMEOUT,
    Refusal,
    import_limit,
)
from gateway.errors import status_body

DEFAULT_TIMEOUT_SECONDS = DEFAULT_REQUEST_TIMEOUT
HEALTH_CHECK_INTERVAL = 1.0
STARTUP_SECONDS = 30.0
BOOTSTRAP_NAME = "envoy.json"
LISTENER_NAME = "pipit_gateway"

TRANSCODER_FILTER = "envoy.filters.http.grpc_json_transcoder"
DECOMPRESSOR_FILTER = "envoy.filters.http.decompressor"
BUFFER_FILTER = "envoy.filters.http.buffer"
UNROUTED = "unrouted"
_TYPE = "type.googleapis.com/envoy."
# Envoy requires a runtime key beside some defaults; nothing sets this one, so the default holds.
NO_RUNTIME = "pipit.unset"


def _local_reply(refusal: Refusal) -> tuple[int, grpc.StatusCode]:
    return refusal.envoy_status, refusal.code


# The gRPC code our gateway puts in the body of an error it makes itself, by HTTP status; Envoy's
# local replies carry only a status and a text, so the code is restored from the status: the
# refusals' (gateway/edge.py) that Envoy answers as local replies, and its own errors'.
_LOCAL_REPLY_CODES: dict[int, grpc.StatusCode] = dict(
    (
        (400, grpc.StatusCode.INVALID_ARGUMENT),
        _local_reply(UNPRINTABLE_TOKEN),
        (403, grpc.StatusCode.PERMISSION_DENIED),
        _local_reply(NO_ROUTE),
        _local_reply(METHOD_NOT_ALLOWED),
        _local_reply(BODY_STALLED),
        _local_reply(BODY_TOO_LARGE),
        _local_reply(UNSUPPORTED_ENCODING),
        (429, grpc.StatusCode.RESOURCE_EXHAUSTED),
        (431, grpc.StatusCode.INVALID_ARGUMENT),
        (500, grpc.StatusCode.INTERNAL),
        (501, grpc.StatusCode.UNIMPLEMENTED),
        (502, grpc.StatusCode.UNAVAILABLE),
        (503, grpc.StatusCode.UNAVAILABLE),
        _local_reply(UPSTREAM_TIMEOUT),
    )
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
    allowed_origins: Sequence[str] = DEFAULT_ALLOWED_ORIGINS
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
        return import_limit(self.max_body_bytes, self.import_max_body_bytes)

    def __post_init__(self) -> None:
        if self.admin_port is None and self.port == 0:
            raise ValueError("without the admin interface Envoy needs a fixed port")


def duration(seconds: float) -> str:
    return f"{seconds:g}s"


def typed(type_name: str, **fields: Any) -> dict[str, Any]:
    return {"@type": _TYPE + type_name, **fields}


def socket_address(address: str, port: int) -> dict[str, Any]:
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


def downstream_tls(certificate: Path, key: Path) -> dict[str, Any]:
    return {
        "name": _TLS_SOCKET,
        "typed_config": typed(
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
        "typed_config": typed("extensions.transport_sockets.tls.v3.UpstreamTlsContext", **context),
    }


def cluster(
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
                {"lb_endpoints": [{"endpoint": {"address": socket_address(host, port)}}]}
            ],
        },
        "typed_extension_protocol_options": {
            "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": typed(
                "extensions.upstreams.http.v3.HttpProtocolOptions",
                explicit_http_config={"http2_protocol_options": {}},
            )
        },
        # What our gateway's readiness asks (gateway/deployment.py `readiness_checks`): the
        # query service's readiness for its cluster, liveness (service "") for the others.
        "health_checks": [
            {
                "timeout": "1s",
                "interval": duration(interval),
                "no_traffic_interval": duration(interval),
                "unhealthy_threshold": 1,
                "healthy_threshold": 1,
                "grpc_health_check": {"service_name": health_service},
            }
        ],
    }
    if ca is not None:
        cluster["transport_socket"] = _upstream_tls(host, ca)
    return cluster


def cluster_names(upstreams: Mapping[str, str]) -> dict[str, str]:
    """One cluster per distinct target (as our gateway opens one channel per target)."""
    names: dict[str, str] = {}
    for target in sorted(set(upstreams.values())):
        names[target] = f"upstream_{len(names)}"
    return names


def origin_matchers(origins: Sequence[str]) -> list[dict[str, Any]]:
    if "*" in origins:
        return [{"safe_regex": {"regex": ".*"}}]
    return [{"exact": o.strip()} for o in origins if o.strip()]


def _error_format(code: grpc.StatusCode, message: str = "%LOCAL_REPLY_BODY%") -> dict[str, Any]:
    # gateway/errors.py's `status_body`, its message's places filled by Envoy.
    placeholder = "\0"
    shape = orjson.loads(status_body(code, placeholder))
    return {
        "json_format": {k: message if v == placeholder else v for k, v in shape.items()},
        "content_type": "application/json",
    }


def _status_filter(status: int, op: str = "EQ") -> dict[str, Any]:
    return {
        "status_code_filter": {
            "comparison": {"op": op, "value": {"default_value": status, "runtime_key": NO_RUNTIME}}
        }
    }


def _health_filter() -> dict[str, Any]:
    return {
        "header_filter": {
            "header": {"name": ":path", "string_match": {"safe_regex": {"regex": HEALTH_REGEX}}}
        }
    }


HEALTH_REGEX = "^" + HEALTH_PATH + r"(\?.*)?$"


def local_reply_config(max_body_bytes: int, import_max_body_bytes: int) -> dict[str, Any]:
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
    too_large = _status_filter(BODY_TOO_LARGE.envoy_status)
    mappers.append(
        {
            "filter": {"and_filter": {"filters": [too_large, import_path]}},
            "body_format_override": _error_format(
                BODY_TOO_LARGE.code, BODY_TOO_LARGE.text(limit=import_max_body_bytes)
            ),
        }
    )
    mappers.append(
        {
            "filter": too_large,
            "body_format_override": _error_format(
                BODY_TOO_LARGE.code, BODY_TOO_LARGE.text(limit=max_body_bytes)
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
    TRANSCODER_FILTER: typed("config.route.v3.FilterConfig", disabled=True),
}


def dashboard_routes() -> tuple[list[dict[str, Any]], int]:
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


# One JSON line per request, with the fields of our gateway's `http_request` log line.
ACCESS_LOG_FORMAT = {
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
