"""Refusing a request without a known token before its body is read.

The services authenticate every call (common/auth.py); the gateway would otherwise read and
inflate a whole body, up to the limit, only for the service to answer 403. When the gateway is
given the services' admin token and token file, it asks the same `identify` first and answers a
refused token itself, with the services' exact status and words: a missing or unknown token, a
JWT that is not signed by the admin token, or a signed one that is expired or grants nothing.
Everything else (scopes, rate limits) stays the services' to decide: a known token is passed on.

A gateway of its own process (`pipit gateway`) does not follow the Tokens API's tokens, which
live in the warehouse it cannot reach: there a token it does not know may still be one of those,
so it passes a token of that shape on for the services to judge (JWTs it judges itself: it
holds the key).

Envoy can't do this without an external authorization service (ext_authz); it reads the body,
and the service refuses the call (README, "Envoy in place of the gateway").
"""

from __future__ import annotations

import grpc
import structlog

from common.auth import INVALID_TOKEN, Refused, bearer_token, identify
from common.tokens import TokenStore, could_be_issued
from gateway.errors import GatewayError

log = structlog.get_logger("gateway")


def refuse_unknown_token(store: TokenStore, metadata: tuple[tuple[str, str], ...]) -> None:
    """Raises the services' refusal when the call's token admits no one."""
    try:
        identify(store, bearer_token(metadata))
    except Refused as refused:
        unknown = refused.code == grpc.StatusCode.UNAUTHENTICATED and refused.message == (
            INVALID_TOKEN
        )
        if unknown and not store.follows_api_tokens and could_be_issued(bearer_token(metadata)):
            return
        raise GatewayError(refused.code, refused.message) from None
    except Exception:
        # An unreadable token file is the services' to report; the gateway only goes first.
        log.warning("gateway_token_check_failed", exc_info=True)
