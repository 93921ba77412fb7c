"""The gateway application: HTTP/JSON in, unary gRPC out, routed by the descriptor set's
`google.api.http` rules alone, answering what Envoy's grpc_json_transcoder answers when configured
with `preserve_proto_field_names`, `always_print_primitive_fields`,
`ignore_unknown_query_parameters`, `convert_grpc_status`, `query_param_unescape_plus` and
`request_validation_options.reject_unknown_method`. gateway/envoy/ renders exactly that Envoy
configuration, and tests/test_envoy_conformance.py compares the two answer for answer.

Choices where Envoy gives no single answer:
- No route: 404 with Envoy's message. A path some route knows, asked with a method no route binds
  to it, is 405 with `Allow` (Tinybird's status; `RouteTable.allowed_methods`). Envoy's matcher
  keys routes by method and path and answers 404 for both, so gateway/envoy/ has a Lua filter,
  rendered from the same route table, answer the 405 before the transcoder. A CORS preflight from
  an allowed origin is answered before either.
- Statuses are Envoy's, but for those Tinybird documents otherwise (gateway/errors.py): a missing
  or unknown token is 403, not 401. Every error body carries Tinybird's `"error": <message>`
  beside the printed `google.rpc.Status`.
- `GET /v0/pipes/<pipe>.json` with a non-empty `q` goes to PipeService's `:query` binding
  (`pipe_query_path`): the typed RPC the path names would ignore `q` (Envoy: the first Lua filter).
- `?token=` is not a field: it becomes `authorization: Bearer <token>` unless the request has an
  Authorization header (Envoy: `ignored_query_parameters: [token]` plus a header rewrite).
- Initial metadata `x-http-status` (200-203) sets the status of a successful answer, and 413 that
  of a RESOURCE_EXHAUSTED error (a body over the limit, which the ingest service finds when it
  inflates one itself); Envoy needs a Lua filter for this. Other metadata is forwarded as response
  headers (so `retry-after` on a 429 reaches the client), minus gRPC-internal and hop-by-hop keys
  (gateway/upstream_metadata.py).
- Given the services' TokenStore, a request without a known token is refused before its body is
  read (gateway/early_auth.py); Envoy reads the body and lets the service refuse it.
- A connection that sends no complete request head for `header_timeout` seconds, from when it
  opens or its last answer, is closed (idle keep-alive connections too), and a body that stalls
  that long is answered 408; Envoy's `request_headers_timeout`, `idle_timeout` and
  `stream_idle_timeout` do the same.
- Gateway-made errors (gateway/edge.py's refusals; that module holds the edge's other values
  too: token locations, CORS, body limits, timeouts) have the same JSON body; Envoy's own local
  replies are plain text unless its `local_reply_config` formats them (gateway/envoy/config.py's
  does, with the gRPC code this gateway would give for the HTTP status).
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import Callable, Mapping, Sequence
from importlib import resources
from pathlib import Path
from typing import Any, TypeVar

import grpc
import orjson
import structlog
from aiohttp import HttpVersion11, web
from google.protobuf.descriptor_pool import DescriptorPool

from common.grpc_server import MESSAGE_OVERHEAD_BYTES
from common.query_string import parse_query, unescape
from common.telemetry import REQUEST_ID_HEADER, REQUEST_ID_PATTERN, new_request_id
from common.tokens import TokenStore
from gateway.answer_bodies import AnswerBodies
from gateway.body import body_encoding, body_pieces, read_body
from gateway.body_stream import stream_call
from gateway.cors import CorsPolicy
from gateway.dashboard import add_dashboard
from gateway.deployment import ServedRoutes, following
from gateway.early_auth import refuse_unknown_token
from gateway.edge import (
    DEFAULT_ALLOWED_ORIGINS,
    DEFAULT_HEADER_TIMEOUT,
    DEFAULT_MAX_BODY_BYTES,
    DEFAULT_REQUEST_TIMEOUT,
    HEALTH_CHECK_TIMEOUT,
    HEALTH_PATH,
    IMPORT_METHOD,
    METHOD_NOT_ALLOWED,
    NO_ROUTE,
    PIPE_JSON_PATH,
    PIPE_QUERY_PARAMETER,
    PIPE_QUERY_VERB,
    TOKEN_HEADER,
    TOKEN_PARAMETER,
    TOKEN_SCHEME,
    UNPRINTABLE_TOKEN,
    UPSTREAM_TIMEOUT,
    import_limit,
)
from gateway.errors import (
    DEFAULT_RETRY_AFTER,
    TOO_MANY_REQUESTS,
    GatewayError,
    rpc_error_body,
    status_body,
)
from gateway.routes import Route
from gateway.transcoder import build_request, render_response
from gateway.upstream_metadata import error_status, forward, success_status
from gateway.upstreams import Upstreams

log = structlog.get_logger("gateway")

_LINGERING_SECONDS = 10.0  # aiohttp's default
DEPLOY_METHOD = "/pipit.deploy.v1.DeployService/Deploy"
# Transcoding is CPU-bound; past this size it runs in a thread so the loop keeps serving.
_OFFLOAD_BYTES = 256 * 1024
_REQUEST_ID_KEY = web.RequestKey("request_id", str)
_GRPC_METHOD = web.RequestKey("grpc_method", str)
_GRPC_CODE = web.RequestKey("grpc_code", str)
_T = TypeVar("_T")


class Gateway:
    """Request handlers and the state they share."""

    def __init__(
        self,
        routes: ServedRoutes,
        upstreams: Upstreams,
        allowed_origins: Sequence[str],
        max_body_bytes: int,
        timeout: float,
        header_timeout: float = DEFAULT_HEADER_TIMEOUT,
        token_store: TokenStore | None = None,
        import_max_body_bytes: int = 0,
    ) -> None:
        self.routes = routes
        self.upstreams = upstreams
        self.cors = CorsPolicy(allowed_origins, routes.table.http_methods)
        routes.on_swap(
            lambda table: setattr(self, "cors", CorsPolicy(allowed_origins, table.http_methods))
        )
        self.max_body_bytes = max_body_bytes
        # Data Sources API imports carry whole files: a limit of their own (0: the same).
        self.import_max_body_bytes = import_limit(max_body_bytes, import_max_body_bytes)
        self.timeout = timeout
        self.header_timeout = header_timeout
        self.token_store = token_store
        self.bodies = AnswerBodies()

    async def transcode(self, request: web.Request) -> web.Response:
        # Match on the raw target, split at the first "?", as Envoy does: unescaping first would
        # let "%2F" act as a separator.
        raw_path, _, raw_query = request.raw_path.partition("?")
        raw_path = pipe_query_path(request.method, raw_path, raw_query)
        # One table for the whole request, whatever a deploy swaps in meanwhile.
        table = self.routes.table
        targets = self.routes.targets
        match = table.match(request.method, raw_path)
        if match is None:
            allowed = table.allowed_methods(raw_path)
            if allowed:
                raise METHOD_NOT_ALLOWED.error(
                    method=request.method, path=raw_path, methods=", ".join(allowed)
                )
            raise NO_ROUTE.error(path=raw_path)
        route = match.route
        request[_GRPC_METHOD] = route.grpc_method

        token = ""
        params = []
        for name, value, as_sent in parse_query(raw_query, raw_names=True):
            if name == TOKEN_PARAMETER:
                token = value
            else:
                params.append((name, value, as_sent))
        metadata = _metadata(request, token)
        limit = (
            self.import_max_body_bytes
            if route.grpc_method == IMPORT_METHOD
            else self.max_body_bytes
        )
        encoding = body_encoding(request, limit)
        if self.token_store is not None:
            refuse_unknown_token(self.token_store, metadata)
        await _continue(request)
        content_type = request.headers.get("Content-Type", "")
        pool = table.pool
        target = targets[route.service]
        call: grpc.aio.UnaryUnaryCall | grpc.aio.StreamUnaryCall
        if route.client_streaming:
            # Envoy's route timeout runs from the end of the body, not while it streams: the
            # call has no deadline of its own, and the answer is awaited for `timeout` after.
            call = self.upstreams.stream_call(route, target)(metadata=metadata)
            await stream_call(
                call,
                route,
                lambda piece: build_request(match, params, piece, content_type, pool),
                body_pieces(request, limit, encoding, self.header_timeout),
            )
            answer = _within(self.timeout, call)
        else:
            # Read whatever the rule says: Envoy parses a body on a rule without one too.
            body = await read_body(request, limit, encoding, self.header_timeout)
            # Raw HttpBody bytes are only copied, so only JSON bodies are worth a thread.
            json_bytes = 0 if route.body_is_http_body else len(body)
            message = await _offload(
                json_bytes, build_request, match, params, body, content_type, pool
            )
            call = self.upstreams.call(route, target)(
                message, metadata=metadata, timeout=self.timeout
            )
            answer = call
        try:
            reply = await answer
            initial = await call.initial_metadata()
        except grpc.aio.AioRpcError as exc:
            request[_GRPC_CODE] = exc.code().name
            response = web.Response(
                status=error_status(exc),
                body=rpc_error_body(exc, pool),
                headers={"Content-Type": "application/json"},
            )
            # A trailers-only error carries all its metadata there (e.g. retry-after).
            forward(exc.initial_metadata(), response)
            forward(exc.trailing_metadata(), response)
            if response.status == TOO_MANY_REQUESTS and "Retry-After" not in response.headers:
                response.headers["Retry-After"] = DEFAULT_RETRY_AFTER
            return response
        request[_GRPC_CODE] = grpc.StatusCode.OK.name
        if route.grpc_method == DEPLOY_METHOD and self.routes.refresh is not None:
            # Whoever deployed gets the new project's routes from their next request on.
            await self.routes.refresh()

        payload, payload_type = await self._render(route, reply, pool)
        response = web.Response(
            status=success_status(initial), body=payload, headers={"Content-Type": payload_type}
        )
        forward(initial, response)
        return response

    async def _render(self, route: Route, answer: bytes, pool: DescriptorPool) -> tuple[bytes, str]:
        """The body and content type for an answer's bytes: kept from the same bytes before,
        or printed (and kept)."""
        if route.response_is_http_body:  # sent as it is: only copied out of the message
            return render_response(route, route.response_class.FromString(answer), pool)
        kept = self.bodies.get(route, answer)
        if kept is not None:
            return kept
        printed = await _offload(len(answer), _print_answer, route, answer, pool)
        self.bodies.keep(route, answer, *printed)
        return printed

    async def healthz(self, request: web.Request) -> web.Response:
        """200 while the query upstream reports itself ready (gateway/deployment.py
        `readiness_checks`: ingest's state does not count), else 503."""
        statuses = await self.upstreams.health(
            self.routes.readiness_checks, min(self.timeout, HEALTH_CHECK_TIMEOUT)
        )
        serving = all(status == "SERVING" for status in statuses.values())
        if not serving:
            log.warning("upstream_not_serving", upstreams=statuses)
        return web.Response(
            status=200 if serving else 503,
            body=orjson.dumps({"status": "SERVING" if serving else "NOT_SERVING"}),
            headers={"Content-Type": "application/json"},
        )


_GATEWAY = web.AppKey("pipit_gateway", Gateway)


def _metadata(request: web.Request, token: str) -> tuple[tuple[str, str], ...]:
    metadata = [(REQUEST_ID_HEADER, request[_REQUEST_ID_KEY])]
    authorization = request.headers.get(TOKEN_HEADER) or (TOKEN_SCHEME + token if token else "")
    if authorization:
        if not (authorization.isascii() and authorization.isprintable()):
            raise UNPRINTABLE_TOKEN.error()
        metadata.append((TOKEN_HEADER, authorization))
    return tuple(metadata)


def pipe_query_path(method: str, raw_path: str, raw_query: str) -> str:
    """`raw_path` with PipeService's `:query` verb when it is `GET /v0/pipes/<pipe>.json` with
    a non-empty `q`: the pipe's typed RPC, which the literal path would reach, cannot answer a
    query over its result. gateway/envoy/first.lua does the same."""
    if method != "GET" or not PIPE_JSON_PATH.fullmatch(raw_path):
        return raw_path
    for param in raw_query.split("&"):
        name, sep, value = param.partition("=")
        if sep and value and unescape(name, errors="surrogateescape") == PIPE_QUERY_PARAMETER:
            return raw_path + PIPE_QUERY_VERB
    return raw_path


async def _within(seconds: float, call: grpc.aio.StreamUnaryCall) -> bytes:
    """The answer of a streamed call, or DEADLINE_EXCEEDED (cancelling it) after `seconds`."""
    try:
        async with asyncio.timeout(seconds):
            return await call
    except TimeoutError:
        call.cancel()
        raise UPSTREAM_TIMEOUT.error() from None


async def _continue(request: web.Request) -> None:
    # A client that asked whether to send its body (`Expect: 100-continue`, as curl does for
    # large ones) is told so only now, once nothing in the head refused it (see create_app).
    if (
        request.version == HttpVersion11
        and request.headers.get("Expect", "").lower() == "100-continue"
    ):
        await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        request.writer.output_size = 0  # the answer proper has not started


async def _defer_continue(_request: web.Request) -> None:
    """aiohttp answers 100 Continue as soon as a route matches; `transcode` does it later."""


async def _offload(size: int, function: Callable[..., _T], *args: Any) -> _T:
    if size > _OFFLOAD_BYTES:
        return await asyncio.to_thread(function, *args)
    return function(*args)


def _print_answer(route: Route, answer: bytes, pool: DescriptorPool) -> tuple[bytes, str]:
    return render_response(route, route.response_class.FromString(answer), pool)


def _request_id(request: web.Request) -> str:
    # Only ids that are safe in logs and metadata are kept; others are replaced.
    incoming = request.headers.get(REQUEST_ID_HEADER, "")
    return incoming if REQUEST_ID_PATTERN.fullmatch(incoming) else new_request_id()


@web.middleware
async def _observe(
    request: web.Request, handler: Callable[[web.Request], Any]
) -> web.StreamResponse:
    """Request id, CORS, errors as JSON, and one log line per request."""
    gateway = request.app[_GATEWAY]
    started = time.perf_counter()
    request_id = _request_id(request)
    request[_REQUEST_ID_KEY] = request_id
    structlog.contextvars.bind_contextvars(request_id=request_id)
    status = 500
    try:
        response = gateway.cors.preflight(request)
        if response is None:
            response = await _answer(request, handler)
            gateway.cors.decorate(request, response)
        response.headers[REQUEST_ID_HEADER] = request_id
        status = response.status
        return response
    except asyncio.CancelledError:
        status = 499  # the client went away
        raise
    finally:
        log.info(
            "http_request",
            request_id=request_id,
            method=request.method,
            path=request.path,  # never the query: it may hold a token
            status=status,
            duration_ms=round((time.perf_counter() - started) * 1000, 3),
            grpc_method=request.get(_GRPC_METHOD),
            grpc_code=request.get(_GRPC_CODE),
        )
        structlog.contextvars.unbind_contextvars("request_id")


async def _answer(
    request: web.Request, handler: Callable[[web.Request], Any]
) -> web.StreamResponse:
    try:
        return await handler(request)
    except GatewayError as exc:
        headers = {**exc.headers, "Content-Type": "application/json"}
        return web.Response(status=exc.status, body=exc.body(), headers=headers)
    except web.HTTPException as exc:
        # aiohttp's own refusals (e.g. a malformed request) in the same JSON shape.
        code = grpc.StatusCode.INVALID_ARGUMENT if exc.status < 500 else grpc.StatusCode.INTERNAL
        body, status = status_body(code, exc.reason), exc.status
    except Exception:
        log.exception("gateway_error")
        body = status_body(grpc.StatusCode.INTERNAL, "internal gateway error")
        status = 500
    return web.Response(status=status, body=body, headers={"Content-Type": "application/json"})


def default_descriptor_set() -> bytes:
    """The descriptor set built from `protos/`, shipped in the `pipit` package."""
    return resources.files("pipit").joinpath("descriptor_set.binpb").read_bytes()


def create_app(
    upstreams: Mapping[str, str],
    *,
    descriptor_set: bytes | None = None,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    allowed_origins: Sequence[str] = DEFAULT_ALLOWED_ORIGINS,
    timeout: float = DEFAULT_REQUEST_TIMEOUT,
    dashboard: bool = True,
    upstream_credentials: grpc.ChannelCredentials | None = None,
    header_timeout: float = DEFAULT_HEADER_TIMEOUT,
    token_store: TokenStore | None = None,
    follow: bool = True,
    import_max_body_bytes: int = 0,
) -> web.Application:
    """The gateway for `upstreams` (gRPC service full name → "host:port"). Every HttpRule of
    those services is routed; a name missing from the descriptor set raises ValueError.
    `dashboard` also serves the browser dashboard at `/` (gateway/dashboard.py); without it the
    gateway answers only the API, as Envoy does. `header_timeout`: see the module docstring
    (`serve_gateway` applies it to connections). `token_store`, the services' own, lets the
    gateway refuse a request without a known token before reading its body. `follow` keeps
    the routes on the deployment in service (gateway/deployment.py); `descriptor_set` is
    where they start (the package's own by default). `import_max_body_bytes` is the body
    limit of Data Sources API imports (IMPORT_METHOD), `max_body_bytes` that of the rest."""
    routes = ServedRoutes(upstreams, descriptor_set or default_descriptor_set())
    gateway = Gateway(
        routes,
        Upstreams(
            upstreams,
            upstream_credentials,
            # An import's body streams up in pieces (gateway/body_stream.py), each far smaller.
            max_body_bytes + MESSAGE_OVERHEAD_BYTES,
        ),
        allowed_origins,
        max_body_bytes,
        timeout,
        header_timeout,
        token_store,
        import_max_body_bytes,
    )
    # body.py decodes gzip itself (see there); aiohttp's decoding would answer unknown encodings
    # with a plain-text 400 before the middleware runs.
    app = web.Application(middlewares=[_observe], handler_args={"auto_decompress": False})
    app[_GATEWAY] = gateway

    async def open_channels(_app: web.Application) -> None:
        await gateway.upstreams.open()

    async def close_channels(_app: web.Application) -> None:
        await gateway.upstreams.close()

    async def follow_deployments(_app: web.Application):
        if not follow:
            yield
            return
        async with following(routes, gateway.upstreams.channel):
            yield

    app.on_startup.append(open_channels)
    app.cleanup_ctx.append(follow_deployments)
    app.on_cleanup.append(close_channels)
    app.router.add_get(HEALTH_PATH, gateway.healthz, allow_head=False)
    if dashboard:
        add_dashboard(app)  # before the catch-all below, which would shadow it
    app.router.add_route("*", "/{tail:.*}", gateway.transcode, expect_handler=_defer_continue)
    return app


async def serve_gateway(
    app: web.Application,
    host: str,
    port: int,
    *,
    shutdown_grace: float = 10.0,
    tls: tuple[Path, Path] | None = None,
) -> web.AppRunner:
    """Starts serving `app` on host:port (0 picks a free port: see `bound_port`); stop it with
    `await runner.cleanup()`, which lets requests in flight finish for up to `shutdown_grace`
    seconds. `tls` (certificate, key) PEM files make it HTTPS only. The JSON log line per
    request replaces aiohttp's access log."""
    ssl_context = None
    if tls is not None:
        ssl_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ssl_context.minimum_version = ssl.TLSVersion.TLSv1_2
        ssl_context.load_cert_chain(*tls)
    # aiohttp's keep-alive timer starts when a connection opens and again after each answer,
    # and closes the connection if no complete request head has arrived when it fires: the
    # header timeout and the idle timeout in one (bytes trickling in do not restart it). After
    # answering a request whose body it did not read in full (a refusal), aiohttp reads on for
    # a while, so the client sees the answer rather than a reset; no longer than a head may take.
    gateway = app.get(_GATEWAY)  # absent from an app serving only pages (tests)
    header_timeout = gateway.header_timeout if gateway is not None else DEFAULT_HEADER_TIMEOUT
    runner = web.AppRunner(
        app,
        access_log=None,
        shutdown_timeout=shutdown_grace,
        keepalive_timeout=header_timeout,
        lingering_time=min(_LINGERING_SECONDS, header_timeout),
    )
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port, ssl_context=ssl_context).start()
    except BaseException:
        await runner.cleanup()
        raise
    return runner


def bound_port(runner: web.AppRunner) -> int:
    """The TCP port a started runner listens on."""
    return runner.addresses[0][1]
