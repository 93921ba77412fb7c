"""Bearer-token authentication, enforced in one place: a gRPC server interceptor, so
that our gateway, Envoy and direct gRPC clients all get the same answer."""

from __future__ import annotations

import hmac
import secrets
from pathlib import Path

import grpc

from common.interceptors import abort_handler

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


class TokenAuthInterceptor(grpc.aio.ServerInterceptor):
    """Refuses every RPC but health and reflection without the admin token."""

    def __init__(self, admin_token: str) -> None:
        if not admin_token:
            raise ValueError("an admin token is required")
        self._token = admin_token.encode()

    async def intercept_service(self, continuation, handler_call_details):
        method = handler_call_details.method
        if method.startswith(PUBLIC_METHOD_PREFIXES):
            return await continuation(handler_call_details)
        token = bearer_token(handler_call_details.invocation_metadata)
        if not token:
            return abort_handler(
                await continuation(handler_call_details),
                grpc.StatusCode.UNAUTHENTICATED,
                "missing bearer token: send 'Authorization: Bearer <token>' or ?token=",
            )
        # Constant-time, so response timing does not reveal how much of a guess matched.
        if not hmac.compare_digest(token.encode(), self._token):
            return abort_handler(
                await continuation(handler_call_details),
                grpc.StatusCode.UNAUTHENTICATED,
                "invalid token",
            )
        return await continuation(handler_call_details)
