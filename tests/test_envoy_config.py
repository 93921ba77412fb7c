"""The Envoy bootstrap gateway/envoy/ renders: what it is derived from, what it refuses, and
that the real Envoy accepts it (`envoy --mode validate`), also as `python -m gateway.envoy`
prints it for running Envoy yourself."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from gateway_pair import require_envoy

from gateway.app import default_descriptor_set
from gateway.envoy import (
    EnvoyConfig,
    descriptor_inline,
    envoy_binary,
    http_services,
    render_bootstrap,
    render_route_config,
    served_targets,
)
from gateway.envoy_deployment import ROUTES_FILE_NAME, write_routes

pytestmark = pytest.mark.envoy

SERVICES = ("pipit.ingest.v1.IngestService", "pipit.query.v1.QueryService")


@pytest.fixture(scope="module")
def descriptor(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("descriptor") / "descriptor_set.binpb"
    path.write_bytes(default_descriptor_set())
    return path


def _upstreams(target: str = "127.0.0.1:50052") -> dict[str, str]:
    return {name: target for name in http_services(default_descriptor_set())}


def _hcm(bootstrap: dict[str, Any]) -> dict[str, Any]:
    listener = bootstrap["static_resources"]["listeners"][0]
    return listener["filter_chains"][0]["filters"][0]["typed_config"]


def _filter(bootstrap: dict[str, Any], name: str) -> dict[str, Any]:
    return next(f for f in _hcm(bootstrap)["http_filters"] if f["name"] == name)["typed_config"]


def test_every_service_with_http_rules_is_transcoded(descriptor: Path) -> None:
    services = http_services(default_descriptor_set())
    assert set(SERVICES) <= set(services)
    bootstrap = render_bootstrap(EnvoyConfig(_upstreams(), descriptor))
    transcoder = _filter(bootstrap, "envoy.filters.http.grpc_json_transcoder")
    assert transcoder["services"] == services
    assert transcoder["print_options"]["preserve_proto_field_names"] is True
    assert transcoder["print_options"]["always_print_primitive_fields"] is True
    assert transcoder["request_validation_options"] == {"reject_unknown_method": True}
    routes = _hcm(bootstrap)["route_config"]["virtual_hosts"][0]["routes"]
    prefixes = {r["match"].get("prefix") for r in routes}
    assert {f"/{name}/" for name in services} <= prefixes


def test_a_service_without_an_upstream_is_refused(descriptor: Path) -> None:
    # A service goes to its own upstream, else to its role's: without any query service's
    # upstream, the query role has none.
    upstreams = {
        name: target
        for name, target in _upstreams().items()
        if not name.startswith(("pipit.query", "pipit.deploy", "pipit.tokens", "pipit.catalog"))
    }
    with pytest.raises(ValueError, match=r"no upstream for service\(s\) .*pipit.query.v1.Query"):
        render_bootstrap(EnvoyConfig(upstreams, descriptor))
    with pytest.raises(ValueError, match="not in the descriptor set"):
        render_bootstrap(EnvoyConfig({**_upstreams(), "pipit.nope.v1.Nope": "x:1"}, descriptor))


def test_clusters_one_per_target_and_dns_names_resolved(descriptor: Path) -> None:
    upstreams = {**_upstreams("query.pipit.svc:50052")}
    upstreams["pipit.ingest.v1.IngestService"] = "10.0.0.7:50051"
    clusters = {
        c["name"]: c
        for c in render_bootstrap(EnvoyConfig(upstreams, descriptor))["static_resources"][
            "clusters"
        ]
    }
    kinds = sorted(c["type"] for name, c in clusters.items() if name != "unrouted")
    assert kinds == ["STATIC", "STRICT_DNS"]
    # The query cluster is checked for the query service's readiness, ingest's for liveness.
    checked = {
        c["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"][
            "socket_address"
        ]["address"]: c["health_checks"][0]["grpc_health_check"]
        for name, c in clusters.items()
        if name != "unrouted"
    }
    assert checked == {
        "query.pipit.svc": {"service_name": "pipit.query.v1.QueryService"},
        "10.0.0.7": {"service_name": ""},
    }


def test_readiness_asks_only_about_the_query_cluster(descriptor: Path) -> None:
    upstreams = {**_upstreams("10.0.0.8:50052"), "pipit.ingest.v1.IngestService": "10.0.0.7:1"}
    bootstrap = render_bootstrap(EnvoyConfig(upstreams, descriptor))
    clusters = {
        c["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"][
            "socket_address"
        ]["address"]: c["name"]
        for c in bootstrap["static_resources"]["clusters"]
        if c["name"] != "unrouted"
    }
    hcm = bootstrap["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]
    (health,) = [
        f for f in hcm["typed_config"]["http_filters"] if f["name"].endswith("health_check")
    ]
    assert health["typed_config"]["cluster_min_healthy_percentages"] == {
        clusters["10.0.0.8"]: {"value": 1}
    }


@pytest.mark.parametrize(
    ("origins", "matchers"),
    [
        (("*",), [{"safe_regex": {"regex": ".*"}}]),
        (
            ("https://a.example", " https://b.example "),
            [{"exact": "https://a.example"}, {"exact": "https://b.example"}],
        ),
        ((), []),
    ],
)
def test_cors_origins(descriptor: Path, origins, matchers) -> None:
    bootstrap = render_bootstrap(EnvoyConfig(_upstreams(), descriptor, allowed_origins=origins))
    vhost = _hcm(bootstrap)["route_config"]["virtual_hosts"][0]
    policy = vhost["typed_per_filter_config"]["envoy.filters.http.cors"]
    assert policy["allow_origin_string_match"] == matchers
    assert policy["allow_methods"] == "DELETE, GET, POST, PUT, OPTIONS"


def test_without_admin_the_port_must_be_given(descriptor: Path) -> None:
    with pytest.raises(ValueError, match="fixed port"):
        EnvoyConfig(_upstreams(), descriptor, admin_port=None)
    bootstrap = render_bootstrap(EnvoyConfig(_upstreams(), descriptor, port=7181, admin_port=None))
    assert "admin" not in bootstrap


def test_the_body_limit_is_enforced_on_the_decompressed_body(descriptor: Path) -> None:
    bootstrap = render_bootstrap(EnvoyConfig(_upstreams(), descriptor, max_body_bytes=12345))
    names = [f["name"] for f in _hcm(bootstrap)["http_filters"]]
    # Decompress, then count, then transcode.
    assert names.index("envoy.filters.http.decompressor") < names.index("envoy.filters.http.buffer")
    assert names.index("envoy.filters.http.buffer") < names.index(
        "envoy.filters.http.grpc_json_transcoder"
    )
    assert _filter(bootstrap, "envoy.filters.http.buffer")["max_request_bytes"] == 12345
    mappers = _hcm(bootstrap)["local_reply_config"]["mappers"]
    too_large = next(
        m
        for m in mappers
        if m["filter"]
        .get("status_code_filter", {})
        .get("comparison", {})
        .get("value", {})
        .get("default_value")
        == 413
    )
    assert too_large["body_format_override"]["json_format"]["message"] == (
        "request body exceeds the limit of 12345 bytes"
    )


def test_raw_bodies_skip_the_decompressor(descriptor: Path) -> None:
    # The gzip bodies of the Events API and the Query API go to their services as sent (see
    # gateway/envoy/); only their routes.
    bootstrap = render_bootstrap(EnvoyConfig(_upstreams(), descriptor))
    routes = _hcm(bootstrap)["route_config"]["virtual_hosts"][0]["routes"]
    skipping = [
        r["match"]
        for r in routes
        if "envoy.filters.http.decompressor" in r.get("typed_per_filter_config", {})
    ]
    assert skipping == [
        {"path": "/v0/datasources"},
        {"safe_regex": {"regex": "/v0/datasources/[^/]+/delete"}},
        {"safe_regex": {"regex": "/v0/datasources/[^/]+/truncate"}},
        {"path": "/v0/events"},
        {"path": "/v0/sql"},
    ]


def test_imports_stream_with_a_body_limit_of_their_own(descriptor: Path) -> None:
    config = EnvoyConfig(_upstreams(), descriptor, max_body_bytes=1000, import_max_body_bytes=5000)
    bootstrap = render_bootstrap(config)
    routes = _hcm(bootstrap)["route_config"]["virtual_hosts"][0]["routes"]
    [imports] = [r for r in routes if r["match"] == {"path": "/v0/datasources"}]
    # Nothing buffers an import's body: it streams to the service (a client-streaming method),
    # which counts it against the limit; a declared length over it is refused up front (Lua).
    buffer = imports["typed_per_filter_config"]["envoy.filters.http.buffer"]
    assert buffer == {
        "@type": "type.googleapis.com/envoy.extensions.filters.http.buffer.v3.BufferPerRoute",
        "disabled": True,
    }
    assert "> 5000 then" in str(bootstrap)
    # The transcoder holds a piece of it at a time: the other routes' limit is its own.
    host = _hcm(bootstrap)["route_config"]["virtual_hosts"][0]
    transcoder = host["typed_per_filter_config"]["envoy.filters.http.grpc_json_transcoder"]
    assert transcoder["max_request_body_size"] == 1000 + 64 * 1024
    others = [
        r for r in routes if "envoy.filters.http.buffer" in r.get("typed_per_filter_config", {})
    ]
    assert others == [imports]
    mappers = _hcm(bootstrap)["local_reply_config"]["mappers"]
    messages = [
        m["body_format_override"]["json_format"]["message"]
        for m in mappers
        if "too_large" in str(m) or "exceeds the limit" in str(m)
    ]
    assert messages == [
        "request body exceeds the limit of 5000 bytes",
        "request body exceeds the limit of 1000 bytes",
    ]


def test_timeouts_follow_the_header_timeout(descriptor: Path) -> None:
    hcm = _hcm(
        render_bootstrap(EnvoyConfig(_upstreams(), descriptor, timeout=30, header_timeout=12))
    )
    assert hcm["request_headers_timeout"] == "12s"
    assert hcm["common_http_protocol_options"] == {"idle_timeout": "12s"}
    # Longer than a service may take to answer (the route timeout), which it also covers.
    assert hcm["stream_idle_timeout"] == "42s"


def _validate(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(envoy_binary()), "--mode", "validate", "--config-path", str(path)],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )


def test_envoy_accepts_the_bootstrap(descriptor: Path, tmp_path: Path) -> None:
    require_envoy()
    upstreams = _upstreams("query.pipit.svc.cluster.local:50052")
    config = EnvoyConfig(upstreams, descriptor, host="0.0.0.0", port=7181, admin_port=None)  # noqa: S104
    path = tmp_path / "envoy.json"
    path.write_text(json.dumps(render_bootstrap(config)))
    result = _validate(path)
    assert result.returncode == 0, result.stdout + result.stderr


def test_python_m_gateway_envoy_prints_a_bootstrap_envoy_accepts(
    descriptor: Path, tmp_path: Path
) -> None:
    require_envoy()
    args = [sys.executable, "-m", "gateway.envoy", "--descriptor-set", str(descriptor)]
    for name, target in _upstreams("pipit-query:50052").items():
        args += ["--upstream", f"{name}={target}"]
    printed = subprocess.run(args, capture_output=True, text=True, check=True, timeout=60)
    bootstrap = json.loads(printed.stdout)
    assert bootstrap["static_resources"]["listeners"][0]["address"]["socket_address"] == {
        "address": "0.0.0.0",
        "port_value": 7181,
    }
    path = tmp_path / "printed.json"
    path.write_text(printed.stdout)
    result = _validate(path)
    assert result.returncode == 0, result.stdout + result.stderr


def test_tls_bootstrap_for_kubernetes_names_envoy_accepts(descriptor: Path, tmp_path: Path) -> None:
    """HTTPS listener and TLS to services known by DNS name: SNI and the SAN Envoy must see
    are that name, the files are the ones given (Envoy reads them when validating)."""
    require_envoy()
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
            "-keyout", str(key), "-out", str(cert), "-subj", "/CN=pipit-query",
            "-addext", "subjectAltName=DNS:pipit-query",
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    args = [sys.executable, "-m", "gateway.envoy", "--descriptor-set", str(descriptor)]
    for name, target in _upstreams("pipit-query:50052").items():
        args += ["--upstream", f"{name}={target}"]
    args += ["--tls-cert", str(cert), "--tls-key", str(key), "--upstream-ca", str(cert)]
    printed = subprocess.run(args, capture_output=True, text=True, check=True, timeout=60)
    bootstrap = json.loads(printed.stdout)
    chain = bootstrap["static_resources"]["listeners"][0]["filter_chains"][0]
    served = chain["transport_socket"]["typed_config"]["common_tls_context"]
    assert served["tls_certificates"] == [
        {"certificate_chain": {"filename": str(cert)}, "private_key": {"filename": str(key)}}
    ]
    (cluster,) = [
        c for c in bootstrap["static_resources"]["clusters"] if c["name"].startswith("upstream_")
    ]
    upstream = cluster["transport_socket"]["typed_config"]
    assert upstream["sni"] == "pipit-query"
    assert upstream["common_tls_context"]["alpn_protocols"] == ["h2"]
    validation = upstream["common_tls_context"]["validation_context"]
    assert validation["trusted_ca"] == {"filename": str(cert)}
    assert validation["match_typed_subject_alt_names"] == [
        {"san_type": "DNS", "matcher": {"exact": "pipit-query"}}
    ]
    path = tmp_path / "printed.json"
    path.write_text(printed.stdout)
    result = _validate(path)
    assert result.returncode == 0, result.stdout + result.stderr


def test_without_tls_settings_nothing_is_tls(descriptor: Path) -> None:
    bootstrap = render_bootstrap(EnvoyConfig(_upstreams(), descriptor))
    (chain,) = bootstrap["static_resources"]["listeners"][0]["filter_chains"]
    assert "transport_socket" not in chain
    assert all("transport_socket" not in c for c in bootstrap["static_resources"]["clusters"])


def test_routes_from_a_file_carry_everything_the_descriptor_set_decides(
    descriptor: Path, tmp_path: Path
) -> None:
    """The form `start_envoy` runs: the route configuration comes from a file Envoy reloads
    (gateway/envoy_deployment.py), and holds the transcoder's configuration with the descriptor
    set itself, so that one rename swaps all of it."""
    config = EnvoyConfig(_upstreams(), descriptor)
    routes_path = tmp_path / ROUTES_FILE_NAME
    bootstrap = render_bootstrap(config, routes_path)
    hcm = _hcm(bootstrap)
    assert "route_config" not in hcm
    assert hcm["rds"]["config_source"]["path_config_source"] == {"path": str(routes_path)}
    assert bootstrap["node"]["id"]  # a configuration source other than the bootstrap needs it
    descriptor_set = descriptor.read_bytes()
    targets = served_targets(config.upstreams, descriptor_set)
    route_config = render_route_config(
        config, descriptor_set, targets, descriptor_inline(descriptor_set)
    )
    write_routes(routes_path, "v1", route_config)
    written = json.loads(routes_path.read_text())
    assert written["version_info"] == "v1"
    [resource] = written["resources"]
    assert resource["name"] == hcm["rds"]["route_config_name"]
    on_host = resource["virtual_hosts"][0]["typed_per_filter_config"][
        "envoy.filters.http.grpc_json_transcoder"
    ]
    assert base64.b64decode(on_host["proto_descriptor_bin"]) == descriptor_set
    own = _filter(bootstrap, "envoy.filters.http.grpc_json_transcoder")
    assert on_host["services"] == own["services"] == http_services(descriptor_set)
    assert {k: v for k, v in on_host.items() if not k.startswith("proto_descriptor")} == {
        k: v for k, v in own.items() if not k.startswith("proto_descriptor")
    }
    assert not list(tmp_path.glob(".*.tmp"))  # renamed into place, nothing left beside it
    require_envoy()  # last: what comes before holds wherever Envoy does not run
    path = tmp_path / "envoy.json"
    path.write_text(json.dumps(bootstrap))
    result = _validate(path)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_405_filter_comes_with_the_route_configuration(descriptor: Path) -> None:
    # After CORS (a preflight is answered first) and before the refusals and the transcoder (as
    # ours matches the route before anything else); its code is the route table's, on the
    # virtual host, so a deployment's route configuration brings its own.
    bootstrap = render_bootstrap(EnvoyConfig(_upstreams(), descriptor))
    names = [f["name"] for f in _hcm(bootstrap)["http_filters"]]
    order = [
        "envoy.filters.http.cors",
        "pipit.lua.methods",
        "pipit.lua.refusals",
        "envoy.filters.http.grpc_json_transcoder",
    ]
    assert [names.index(name) for name in order] == sorted(names.index(name) for name in order)
    vhost = _hcm(bootstrap)["route_config"]["virtual_hosts"][0]
    code = vhost["typed_per_filter_config"]["pipit.lua.methods"]["source_code"]["inline_string"]
    assert '{ "GET", "", 3, false, { [1] = "v0", [2] = "pipes", [3] = "test_summary.json" } }' in (
        code
    )
    assert '{ "POST", "", 2, false, { [1] = "v0", [2] = "events" } }' in code


def test_route_literals_cannot_end_the_lua_string() -> None:
    from gateway.envoy.lua import lua_string as _lua_string

    assert _lua_string('a"b\\c\n\x00é') == '"a\\034b\\092c\\010\\000\\195\\169"'
