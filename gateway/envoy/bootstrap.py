"""Envoy's bootstrap and route configuration, rendered from an `EnvoyConfig`, a descriptor set
and gateway/edge.py (see the package's docstring for what each part does and why)."""

from __future__ import annotations

import base64
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from common.grpc_server import MESSAGE_OVERHEAD_BYTES
from gateway.cors import allow_methods
from gateway.deployment import readiness_checks, resolve_targets, role_targets
from gateway.edge import (
    CORS_ALLOW_HEADERS,
    CORS_EXPOSE_HEADERS,
    CORS_MAX_AGE_SECONDS,
    IMPORT_PATH,
    TOKEN_PARAMETER,
    stream_idle_timeout,
)
from gateway.envoy.config import (
    ACCESS_LOG_FORMAT,
    BUFFER_FILTER,
    DECOMPRESSOR_FILTER,
    HEALTH_REGEX,
    LISTENER_NAME,
    NO_RUNTIME,
    TRANSCODER_FILTER,
    UNROUTED,
    EnvoyConfig,
    cluster,
    cluster_names,
    dashboard_routes,
    downstream_tls,
    duration,
    http_services,
    local_reply_config,
    origin_matchers,
    socket_address,
    typed,
)
from gateway.envoy.lua import (
    METHODS_FILTER,
    NO_METHODS_LUA,
    first_lua,
    lua_filter,
    methods_lua,
    refusals_lua,
)
from gateway.envoy_deployment import (
    ROUTE_CONFIG_NAME,
    rds_from_file,
)
from gateway.routes import LITERAL_SEGMENT as _LITERAL_SEGMENT
from gateway.routes import RouteTable, load_routes
from pipit.query.v1 import pipe_service_pb2

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
    return typed(
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
        max_request_body_size=max_body_bytes + MESSAGE_OVERHEAD_BYTES,
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
    clusters = cluster_names(config.upstreams)
    unknown = sorted(set(targets.values()) - set(clusters))
    if unknown:
        raise ValueError(f"target {unknown[0]!r} is not one of the upstreams")
    # The same route table our gateway builds: it validates every rule, and its methods are the
    # ones a preflight is told about.
    table = load_routes(descriptor_set, list(targets))
    timeout = duration(config.timeout)

    routes: list[dict[str, Any]] = [
        {
            "match": {"prefix": f"/{service}/"},
            "route": {"cluster": clusters[targets[service]], "timeout": timeout},
        }
        for service in sorted(targets)
    ]
    # The dashboard's routes skip the transcoder, which would refuse their paths.
    dashboard, largest_file = dashboard_routes() if config.dashboard else ([], 0)
    routes.extend(dashboard)
    # The Events API's and Data Sources API's bodies reach the service as sent (see the module
    # docstring): no decompressor on their paths, which the route the original path selects
    # decides. An import's file has a body limit of its own.
    for match in _http_body_matches(table):
        per_filter = {DECOMPRESSOR_FILTER: typed("config.route.v3.FilterConfig", disabled=True)}
        if match.get("path") == IMPORT_PATH:
            # An import's body streams to the service a chunk at a time (a client-streaming
            # method): nothing buffers it whole. The refusals filter turns a declared length
            # over the limit away; the service counts the rest.
            per_filter[BUFFER_FILTER] = typed(
                "extensions.filters.http.buffer.v3.BufferPerRoute", disabled=True
            )
        routes.append(
            {
                "match": match,
                "route": {"cluster": UNROUTED, "timeout": timeout},
                "typed_per_filter_config": per_filter,
            }
        )
    # For the CORS filter's sake (see the module docstring): it needs a route entry for the
    # original path. Nothing should reach it: the transcoder refuses unknown methods, the Lua
    # filter native gRPC; if something does, the cluster without endpoints answers 503.
    routes.append({"match": {"prefix": "/"}, "route": {"cluster": UNROUTED, "timeout": timeout}})
    cors_policy = typed(
        "extensions.filters.http.cors.v3.CorsPolicy",
        allow_origin_string_match=origin_matchers(config.allowed_origins),
        allow_methods=allow_methods(table.http_methods),
        allow_headers=", ".join(CORS_ALLOW_HEADERS),
        expose_headers=", ".join(CORS_EXPOSE_HEADERS),
        max_age=str(CORS_MAX_AGE_SECONDS),
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
                    METHODS_FILTER: typed(
                        "extensions.filters.http.lua.v3.LuaPerRoute",
                        source_code={"inline_string": methods_lua(table)},
                    ),
                    # The transcoder takes the most specific configuration it finds; a
                    # route's own (the dashboard's: disabled) beats this one.
                    # An import's body streams through in pieces: the limit of the rest holds.
                    TRANSCODER_FILTER: _transcoder(descriptor, services, config.max_body_bytes),
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
    transcoder = route_config["virtual_hosts"][0]["typed_per_filter_config"][TRANSCODER_FILTER]
    clusters = cluster_names(config.upstreams)
    checks = readiness_checks(config.upstreams, role_targets(config.upstreams, descriptor_set))
    http_filters = [
        lua_filter("pipit.lua.first", first_lua()),
        {
            "name": "envoy.filters.http.cors",
            "typed_config": typed("extensions.filters.http.cors.v3.Cors"),
        },
        {
            "name": "envoy.filters.http.health_check",
            "typed_config": typed(
                "extensions.filters.http.health_check.v3.HealthCheck",
                pass_through_mode=False,
                headers=[
                    {"name": ":path", "string_match": {"safe_regex": {"regex": HEALTH_REGEX}}},
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
        lua_filter(METHODS_FILTER, NO_METHODS_LUA),
        lua_filter("pipit.lua.refusals", refusals_lua(config.max_body_bytes, config.import_limit)),
        {
            "name": DECOMPRESSOR_FILTER,
            "typed_config": typed(
                "extensions.filters.http.decompressor.v3.Decompressor",
                decompressor_library={
                    "name": "gzip",
                    "typed_config": typed(
                        "extensions.compression.gzip.decompressor.v3.Gzip",
                        # Past this ratio Envoy stops inflating and passes on what it has, which
                        # would turn a gzip bomb into a truncated body instead of a 413. 1032:1 is
                        # deflate's own maximum, so the buffer filter's limit always decides.
                        max_inflate_ratio=1032,
                    ),
                },
                response_direction_config={
                    "common_config": {
                        "enabled": {"default_value": False, "runtime_key": NO_RUNTIME}
                    }
                },
            ),
        },
        {
            "name": BUFFER_FILTER,
            "typed_config": typed(
                "extensions.filters.http.buffer.v3.Buffer", max_request_bytes=config.max_body_bytes
            ),
        },
        {"name": TRANSCODER_FILTER, "typed_config": transcoder},
        {
            "name": "envoy.filters.http.router",
            "typed_config": typed("extensions.filters.http.router.v3.Router"),
        },
    ]
    hcm: dict[str, Any] = {
        "stat_prefix": LISTENER_NAME,
        "codec_type": "AUTO",
        "request_headers_timeout": duration(config.header_timeout),
        "common_http_protocol_options": {"idle_timeout": duration(config.header_timeout)},
        "stream_idle_timeout": duration(stream_idle_timeout(config.timeout, config.header_timeout)),
        "always_set_request_id_in_response": True,
        "http_filters": http_filters,
        "local_reply_config": local_reply_config(config.max_body_bytes, config.import_limit),
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
                "typed_config": typed(
                    "extensions.access_loggers.stream.v3.StdoutAccessLog",
                    log_format={"json_format": ACCESS_LOG_FORMAT},
                ),
            }
        ]
    filter_chain: dict[str, Any] = {
        "filters": [
            {
                "name": "envoy.filters.network.http_connection_manager",
                "typed_config": typed(
                    "extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
                    **hcm,
                ),
            }
        ]
    }
    if config.tls is not None:
        filter_chain["transport_socket"] = downstream_tls(*config.tls)
    bootstrap: dict[str, Any] = {
        # Who this Envoy is; a configuration source other than the bootstrap requires it.
        "node": {"id": LISTENER_NAME, "cluster": LISTENER_NAME},
        "static_resources": {
            "listeners": [
                {
                    "name": LISTENER_NAME,
                    "address": socket_address(config.host, config.port),
                    "filter_chains": [filter_chain],
                }
            ],
            "clusters": [
                *(
                    cluster(
                        name,
                        target,
                        config.health_check_interval,
                        config.upstream_ca,
                        checks.get(target, ""),
                    )
                    for target, name in clusters.items()
                ),
                {"name": UNROUTED, "type": "STATIC", "connect_timeout": "1s"},
            ],
        },
    }
    if config.admin_port is not None:
        bootstrap["admin"] = {"address": socket_address("127.0.0.1", config.admin_port)}
    return bootstrap
