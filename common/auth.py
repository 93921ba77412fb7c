"""Bearer-token authentication, enforced in one place: a gRPC server interceptor, so
that our gateway, Envoy and direct gRPC clients all get the same answer. A bearer token is
a static token (the admin token, the token file's, the Tokens API's) or a JWT signed with
the admin token (common/jwt_tokens.py); `identify` tells which, for the interceptor and for
our gateway's early check alike."""

from __future__ import annotations

import contextvars
import time
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import grpc

from common import jwt_tokens
from common.config import Settings
from common.interceptors import Behavior, wrap_handler
from common.project_handlers import ScopeRules
from common.rate_limit import Decision, RateLimiter
from common.tokens import ADMIN, Principal, TokenStore, allows

# Health checks (probes), reflection (tooling) and the deployment's descriptors (gateways
# routing by them, as reflection would show them) work without a token.
PUBLIC_METHOD_PREFIXES = (
    "/grpc.health.v1.Health/",
    "/grpc.reflection.",
    "/pipit.deploy.v1.DeployService/GetDeployment",
)

# What a caller without a known token is told, by the services and by a gateway that checks
# first (gateway/early_auth.py): the same words from either place.
MISSING_TOKEN = "missing bearer token: send 'Authorization: Bearer <token>' or ?token="
INVALID_TOKEN = "invalid token"  # noqa: S105 - a message, not a password


class Refused(Exception):  # noqa: N818 - a refusal, not a failure
    """A bearer token that admits no one: the gRPC status and the words to answer with
    (never the token)."""

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def identify(tokens: TokenStore, token: str, now: Callable[[], float] = time.time) -> Principal:
    """Who `token` is: a static token the store knows, else a JWT signed with the admin
    token. Raises Refused: UNAUTHENTICATED for no token or one that is neither (tampered,
    unsigned, another algorithm), PERMISSION_DENIED for a correctly signed JWT that is
    expired or whose claims grant nothing Pipit can honour exactly (Tinybird answers 403)."""
    if not token:
        raise Refused(grpc.StatusCode.UNAUTHENTICATED, MISSING_TOKEN)
    principal = tokens.authenticate(token)
    if principal is not None:
        return principal
    if not jwt_tokens.looks_like_jwt(token):
        raise Refused(grpc.StatusCode.UNAUTHENTICATED, INVALID_TOKEN)
    try:
        grant = jwt_tokens.verify(token, tokens.signing_key, now())
    except jwt_tokens.JwtRefused as exc:
        if not exc.signed:
            raise Refused(grpc.StatusCode.UNAUTHENTICATED, INVALID_TOKEN) from None
        raise Refused(grpc.StatusCode.PERMISSION_DENIED, str(exc)) from None
    # Keyed by the JWT's name, as Tinybird counts a JWT's rps: every JWT its issuer signs
    # under one name shares one bucket, so a client cannot reset its limit by asking for a
    # fresh JWT. (Names are the issuer's, signed: a caller cannot choose one.)
    return Principal(
        key=f"jwt:{grant.name}",
        name=f"jwt:{grant.name}",
        scopes=grant.scopes,
        rps=grant.rps,
        fixed_params=grant.fixed_params,
    )


def bearer_token(metadata: tuple[tuple[str, str | bytes], ...] | None) -> str:
    """The token from `authorization: Bearer <token>` metadata, or empty."""
    for key, value in metadata or ():
        if key == "authorization":
            text = value.decode() if isinstance(value, bytes) else value
            scheme, _, token = text.partition(" ")
            if scheme.lower() == "bearer":
                return token.strip()
    return ""


@dataclass
class Access:
    """What decides who may call, shared by every service of one process: one token store
    (one reload and one log line per change of the token file) and one set of rate-limit
    buckets, so a token's limit counts every call it makes to the process, whichever
    service answers it."""

    tokens: TokenStore
    default_rate_limit: int = 0  # requests per minute for tokens without their own; 0 = none
    limiter: RateLimiter = field(default_factory=RateLimiter)
    # JWTs' `limits.rps`, per JWT name.
    rps_limiter: RateLimiter = field(default_factory=lambda: RateLimiter(window=1.0))

    @classmethod
    def for_process(cls, settings: Settings, admin_token: str) -> Access:
        return cls(TokenStore(admin_token, settings.tokens_path), settings.rate_limit)

    def limit_for(self, principal: Principal) -> int:
        return principal.rate_limit if principal.rate_limit is not None else self.default_rate_limit

    def admit(self, principal: Principal) -> Decision | None:
        """The rate-limit decision for one more request of `principal` (None: no limit
        applies). A JWT's rps and the per-minute limit both count; the first refusal is
        answered, else the per-second figures, the tighter, make the headers."""
        limit = self.limit_for(principal)
        decision = self.limiter.take(principal.key, limit) if limit > 0 else None
        if decision is not None and not decision.allowed:
            return decision
        if principal.rps:
            return self.rps_limiter.take(principal.key, principal.rps)
        return decision


current_principal: contextvars.ContextVar[Principal | None] = contextvars.ContextVar(
    "current_principal", default=None
)
"""The authenticated caller of the RPC being handled (set by AccessInterceptor)."""

ScopeRule = Callable[[Any], str | None]
"""The scope a request needs, from the request itself (None: no scope to check yet, the
handler will refuse the request as malformed)."""


class AccessInterceptor(grpc.aio.ServerInterceptor):
    """Authenticates every RPC but health and reflection (UNAUTHENTICATED without a known
    token), applies the token's rate limit (RESOURCE_EXHAUSTED) and checks the scope each
    request needs (PERMISSION_DENIED, naming the scope but never the token). RPCs without
    a rule need ADMIN. Client streams are checked message by message.

    All of it runs inside the call, so anything that goes wrong here is answered like a
    handler's own failure (see RequestLogInterceptor), never by grpc's default."""

    def __init__(self, access: Access, rules: Mapping[str, ScopeRule] | ScopeRules) -> None:
        self._access = access
        # A deployed project changes its own rules: looked up on every call, never copied.
        self._rules = rules

    async def intercept_service(self, continuation, handler_call_details):
        method = handler_call_details.method
        handler = await continuation(handler_call_details)
        if method.startswith(PUBLIC_METHOD_PREFIXES):
            return handler
        if handler is not None and (handler.unary_stream or handler.stream_stream):
            # Nothing here checks a streaming response: refuse to serve one unchecked.
            raise NotImplementedError(f"{method}: streaming responses are not served by Pipit")
        metadata = handler_call_details.invocation_metadata
        rule = self._rules.get(method, lambda _request: ADMIN)

        async def admit(context: grpc.aio.ServicerContext) -> tuple[Principal, Decision | None]:
            try:
                principal = identify(self._access.tokens, bearer_token(metadata))
            except Refused as refused:
                await context.abort(refused.code, refused.message)
            decision = self._access.admit(principal)
            if decision is not None and not decision.allowed:
                await _refuse_rate(context, decision)
            current_principal.set(principal)
            return principal, decision

        async def check(
            principal: Principal, request: Any, context: grpc.aio.ServicerContext
        ) -> None:
            required = rule(request)
            if required is not None and not allows(principal.scopes, required):
                await context.abort(
                    grpc.StatusCode.PERMISSION_DENIED,
                    f"token '{principal.name}' lacks scope {required}",
                )

        def wrap(behavior: Behavior) -> Behavior:
            streaming = handler is not None and handler.stream_unary is not None

            async def guarded(request: Any, context: grpc.aio.ServicerContext) -> Any:
                principal, decision = await admit(context)
                if streaming:

                    async def each(requests: AsyncIterator[Any]) -> AsyncIterator[Any]:
                        async for item in requests:
                            await check(principal, item, context)
                            yield item

                    checked = each(request)
                else:
                    await check(principal, request, context)
                    checked = request
                if decision is None:
                    return await behavior(checked, context)
                headed = _HeadersContext(context, decision.headers())
                response = await behavior(checked, headed)
                await headed.flush()
                return response

            return guarded

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


async def _refuse_rate(context: grpc.aio.ServicerContext, decision: Decision) -> None:
    # Retry-After and X-RateLimit-* reach HTTP clients as headers.
    context.set_trailing_metadata((("retry-after", str(decision.reset)), *decision.headers()))
    await context.abort(
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        f"rate limit of {decision.limit} requests per {decision.period} reached; "
        f"retry in {decision.reset} s",
    )
