"""Bearer-token authentication, enforced in one place: a gRPC server interceptor, so
that our gateway, Envoy and direct gRPC clients all get the same answer."""

from __future__ import annotations

import contextvars
import secrets
from collections.abc import AsyncIterator, Callable, Mapping
from pathlib import Path
from typing import Any

import grpc

from common.interceptors import Behavior, abort_handler, wrap_handler
from common.rate_limit import Decision, RateLimiter
from common.tokens import ADMIN, Principal, TokenStore, allows

# Health checks (probes) and reflection (tooling) must work without a token.
PUBLIC_METHOD_PREFIXES = ("/grpc.health.v1.Health/", "/grpc.reflection.")

TOKEN_FILE_NAME = "admin_token"


def bearer_token(metadata: tuple[tuple[str, str | bytes], ...] | None) -> str:
    """The token from `authorization: Bearer <token>` metadata, or empty."""
    for key, value in metadata or ():
        if key == "authorization":
            text = value.decode() if isinstance(value, bytes) else value
            scheme, _, token = text.partition(" ")
            if scheme.lower() == "bearer":
                return token.strip()
    return ""


def load_or_create_admin_token(configured: str, data_dir: Path) -> tuple[str, bool]:
    """The configured admin token, else the one kept in the data directory, else a new
    one saved there (readable by the owner only). Returns (token, created)."""
    if configured:
        return configured, False
    path = data_dir / TOKEN_FILE_NAME
    if path.exists():
        return path.read_text().strip(), False
    data_dir.mkdir(parents=True, exist_ok=True)
    token = "p." + secrets.token_urlsafe(32)
    path.touch(mode=0o600)
    path.write_text(token + "\n")
    return token, True


current_principal: contextvars.ContextVar[Principal | None] = contextvars.ContextVar(
    "current_principal", default=None
)
"""The authenticated caller of the RPC being handled (set by AccessInterceptor)."""

ScopeRule = Callable[[Any], str | None]
"""The scope a request needs, from the request itself (None: no scope to check yet, the
handler will refuse the request as malformed)."""


class AccessInterceptor(grpc.aio.ServerInterceptor):
    """Authenticates every RPC but health and reflection (UNAUTHENTICATED without a known
    token) and checks the scope each request needs (PERMISSION_DENIED, naming the scope
    but never the token). RPCs without a rule need ADMIN. Client streams are checked
    message by message."""

    def __init__(
        self, store: TokenStore, rules: Mapping[str, ScopeRule], rate_limit: int = 0
    ) -> None:
        self._store = store
        self._rules = dict(rules)
        self._rate_limit = rate_limit
        self._limiter = RateLimiter()

    async def intercept_service(self, continuation, handler_call_details):
        method = handler_call_details.method
        if method.startswith(PUBLIC_METHOD_PREFIXES):
            return await continuation(handler_call_details)
        handler = await continuation(handler_call_details)
        token = bearer_token(handler_call_details.invocation_metadata)
        if not token:
            return abort_handler(
                handler,
                grpc.StatusCode.UNAUTHENTICATED,
                "missing bearer token: send 'Authorization: Bearer <token>' or ?token=",
            )
        principal = self._store.authenticate(token)
        if principal is None:
            return abort_handler(handler, grpc.StatusCode.UNAUTHENTICATED, "invalid token")
        rule = self._rules.get(method, lambda _request: ADMIN)
        limit = principal.rate_limit if principal.rate_limit is not None else self._rate_limit
        decision = self._limiter.take(principal.name, limit) if limit > 0 else None
        if decision is not None and not decision.allowed:
            return _refuse_rate(handler, decision)

        async def check(request: Any, context: grpc.aio.ServicerContext) -> None:
            current_principal.set(principal)
            required = rule(request)
            if required is not None and not allows(principal.scopes, required):
                await context.abort(
                    grpc.StatusCode.PERMISSION_DENIED,
                    f"token '{principal.name}' lacks scope {required}",
                )

        def wrap(behavior: Behavior) -> Behavior:
            if handler is not None and handler.stream_unary is not None:

                async def checked_stream(requests: Any, context: grpc.aio.ServicerContext) -> Any:
                    async def each() -> AsyncIterator[Any]:
                        async for request in requests:
                            await check(request, context)
                            yield request

                    return await behavior(each(), context)

                return checked_stream

            async def checked(request: Any, context: grpc.aio.ServicerContext) -> Any:
                await check(request, context)
                if decision is None:
                    return await behavior(request, context)
                headed = _HeadersContext(context, decision.headers())
                response = await behavior(request, headed)
                await headed.flush()
                return response

            return checked

        return wrap_handler(handler, wrap)


class _HeadersContext:
    """The servicer context with extra response headers (the X-RateLimit-* figures)
    merged into whatever initial metadata the handler sends, or sent on their own."""

    def __init__(self, context: grpc.aio.ServicerContext, extra: tuple[tuple[str, str], ...]):
        self._context = context
        self._extra = extra
        self._sent = False

    def __getattr__(self, name: str) -> Any:
        return getattr(self._context, name)

    async def send_initial_metadata(self, metadata: Any) -> None:
        self._sent = True
        await self._context.send_initial_metadata(tuple(metadata) + self._extra)

    async def flush(self) -> None:
        if not self._sent:
            await self.send_initial_metadata(())


def _refuse_rate(handler: grpc.RpcMethodHandler | None, decision: Decision):
    def wrap(_behavior: Behavior) -> Behavior:
        async def refuse(_request: Any, context: grpc.aio.ServicerContext) -> Any:
            # Retry-After and X-RateLimit-* reach HTTP clients as headers.
            context.set_trailing_metadata(
                (("retry-after", str(decision.reset)), *decision.headers())
            )
            await context.abort(
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                f"rate limit of {decision.limit} requests per minute reached; "
                f"retry in {decision.reset} s",
            )

        return refuse

    return wrap_handler(handler, wrap)
