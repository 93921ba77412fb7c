"""Refusing a request without a known token before its body is read.

The services authenticate every call (common/auth.py); the gateway would otherwise read and
inflate a whole body, up to the limit, only for the service to answer 403. When the gateway is
given the services' admin token and token file, it asks the same TokenStore first and answers a
missing or unknown token itself, with the services' exact status and words. Everything else
(scopes, rate limits) stays the services' to decide: a known token is passed on.

Envoy can't do this without an external authorization service (ext_authz); it reads the body,
and the service refuses the call (README, "Envoy in place of the gateway").
"""

from __future__ import annotations

import grpc
import structlog

from common.auth import INVALID_TOKEN, MISSING_TOKEN, bearer_token
from common.tokens import TokenStore
from gateway.errors import GatewayError

log = structlog.get_logger("gateway")


def refuse_unknown_token(store: TokenStore, metadata: tuple[tuple[str, str], ...]) -> None:
    """Raises the services' UNAUTHENTICATED (HTTP 403) when the call's metadata has no token or
    an unknown one."""
    token = bearer_token(metadata)
    if not token:
        raise GatewayError(grpc.StatusCode.UNAUTHENTICATED, MISSING_TOKEN)
    try:
        known = store.authenticate(token) is not None
    except Exception:
        # An unreadable token file is the services' to report; the gateway only goes first.
        log.warning("gateway_token_check_failed", exc_info=True)
        return
    if not known:
        raise GatewayError(grpc.StatusCode.UNAUTHENTICATED, INVALID_TOKEN)
