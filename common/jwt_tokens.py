"""JWTs as Tinybird documents them: HS256, signed with the admin token (the workspace's
signing key), carrying `name`, `exp`, `scopes` (`{"type", "resource", "fixed_params"}`),
optionally `limits.rps` and `workspace_id`. They are not stored: whoever holds the admin
token mints them (Tinybird's SDKs ask POST /v0/tokens?expiration_time=… to, or sign them
with any JWT library), and a signature that checks out is all a JWT needs.

What is refused, and how (a JWT is an attacker's until its signature checks out):
- a token that is not a JWT signed with HS256 by the admin token — tampered, `alg: none`,
  any other algorithm, malformed — is an unknown token: UNAUTHENTICATED, as a wrong static
  token is;
- a correctly signed JWT past its `exp` is PERMISSION_DENIED (Tinybird answers 403);
- a correctly signed JWT whose claims Pipit cannot honour exactly (an unknown scope type, a
  row `filter`, a resource that is no plain name, no `exp`) is PERMISSION_DENIED too: what
  its issuer meant to restrict is never guessed at, so it grants nothing.
"""

from __future__ import annotations

import hashlib
import math
import re
import uuid
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import jwt

ALGORITHM = "HS256"
# The scope types a JWT may carry (Tinybird's SDKs send these three); ADMIN never.
SCOPE_TYPES = ("PIPES:READ", "DATASOURCES:READ", "DATASOURCES:APPEND")
PIPES_READ = "PIPES:READ"
# A header or `?token=` longer than this is no JWT of ours (and is not worth decoding).
MAX_JWT_LENGTH = 16 * 1024
MAX_NAME_LENGTH = 256
_RESOURCE = re.compile(r"[A-Za-z0-9_]{1,128}")
_PARAMETER = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")
_PRINTABLE = re.compile(r"[\x20-\x7e]+")
_SEGMENT = r"[A-Za-z0-9_-]+"
_SHAPE = re.compile(rf"{_SEGMENT}\.{_SEGMENT}\.[A-Za-z0-9_-]*")

# The signing key is the admin token, whose strength check_admin_token decides (at least 16
# printable characters; generated ones carry 256 random bits), as Tinybird signs with its
# admin token: PyJWT's advice for shorter HMAC keys would only repeat on every request.
warnings.filterwarnings("ignore", category=jwt.InsecureKeyLengthWarning)

FixedValue = str | int | float | bool


class JwtRefused(Exception):  # noqa: N818 - a refusal, not a failure
    """A JWT that grants nothing. `signed` tells a correctly signed one (its issuer's claims
    are the problem: 403) from one that is not ours at all (an unknown token: 401)."""

    def __init__(self, message: str, *, signed: bool) -> None:
        super().__init__(message)
        self.signed = signed


@dataclass(frozen=True)
class JwtGrant:
    """What a verified JWT allows."""

    name: str
    expires_at: int
    scopes: tuple[str, ...]  # as static tokens write them: `PIPES:READ:<pipe>`
    fixed_params: Mapping[str, Mapping[str, FixedValue]] = field(default_factory=dict)
    """Per pipe, the parameters it runs with whatever the caller sends."""
    rps: int | None = None


def looks_like_jwt(token: str) -> bool:
    """Whether a bearer token has a JWT's shape: three base64url parts (the last, the
    signature, empty in an unsigned one). Static tokens have one dot."""
    return len(token) <= MAX_JWT_LENGTH and _SHAPE.fullmatch(token) is not None


def workspace_id(signing_key: str) -> str:
    """The workspace's id, a UUID derived from its signing key: stable, and telling nothing
    of the key. Put into the JWTs Pipit mints, as Tinybird does; not required of others'."""
    seed = hashlib.sha256(b"pipit workspace\0" + signing_key.encode()).digest()
    return str(uuid.UUID(bytes=seed[:16], version=4))


def verify(token: str, signing_key: str, now: float) -> JwtGrant:
    """The grant of a JWT signed with `signing_key`, valid at `now` (Unix seconds).
    Raises JwtRefused."""
    if not looks_like_jwt(token):
        raise JwtRefused("not a JWT", signed=False)
    try:
        # Only HS256: PyJWT refuses `none` and every other algorithm the header names.
        claims = jwt.decode(
            token,
            signing_key,
            algorithms=[ALGORITHM],
            options={"verify_exp": False, "verify_aud": False, "verify_iat": False},
        )
    except jwt.ImmatureSignatureError:
        # Checked after the signature: its issuer's, only not valid yet (`nbf`).
        raise JwtRefused("the JWT is not valid yet (nbf)", signed=True) from None
    except jwt.InvalidTokenError:
        raise JwtRefused("invalid JWT", signed=False) from None
    try:
        grant = grant_of(claims)
    except ValueError as exc:
        raise JwtRefused(f"invalid JWT: {exc}", signed=True) from None
    if now >= grant.expires_at:
        expired = datetime.fromtimestamp(grant.expires_at, UTC).strftime("%Y-%m-%d %H:%M:%S")
        raise JwtRefused(f"JWT '{grant.name}' expired at {expired} UTC", signed=True)
    return grant


def grant_of(claims: Mapping[str, Any]) -> JwtGrant:
    """The grant the claims describe; ValueError names the first claim Pipit cannot honour."""
    name = claims.get("name")
    if not isinstance(name, str) or not _PRINTABLE.fullmatch(name) or len(name) > MAX_NAME_LENGTH:
        raise ValueError(f"'name' must be 1-{MAX_NAME_LENGTH} printable ASCII characters")
    expires_at = claims.get("exp")
    if type(expires_at) not in (int, float) or not math.isfinite(expires_at):
        raise ValueError("'exp' must be a Unix time in seconds")
    raw_scopes = claims.get("scopes")
    if not isinstance(raw_scopes, list) or not raw_scopes:
        raise ValueError("'scopes' must be a non-empty list")
    scopes: list[str] = []
    fixed: dict[str, dict[str, FixedValue]] = {}
    for index, scope in enumerate(raw_scopes):
        granted, params = _scope(index, scope)
        scopes.append(granted)
        if params:
            resource = granted.rpartition(":")[2]
            if resource in fixed and fixed[resource] != params:
                raise ValueError(f"scope #{index + 1}: pipe '{resource}' is given twice")
            fixed[resource] = params
    return JwtGrant(name, int(expires_at), tuple(scopes), fixed, _rps(claims.get("limits")))


def _scope(index: int, scope: Any) -> tuple[str, dict[str, FixedValue]]:
    where = f"scope #{index + 1}"
    if not isinstance(scope, dict):
        raise ValueError(f"{where} is not an object")
    kind = scope.get("type")
    if kind not in SCOPE_TYPES:
        raise ValueError(f"{where}: type must be one of {', '.join(SCOPE_TYPES)}")
    resource = scope.get("resource")
    if not isinstance(resource, str) or not _RESOURCE.fullmatch(resource):
        raise ValueError(f"{where}: 'resource' must name one pipe or datasource")
    unknown = sorted(set(scope) - {"type", "resource", "fixed_params"})
    if unknown:
        # A row `filter` the engine would not apply must not pass as granted.
        raise ValueError(f"{where}: {unknown[0]!r} is not supported")
    params = scope.get("fixed_params")
    if params is None:
        return f"{kind}:{resource}", {}
    if kind != PIPES_READ:
        raise ValueError(f"{where}: fixed_params apply to PIPES:READ only")
    if not isinstance(params, dict):
        raise ValueError(f"{where}: fixed_params must be an object")
    for key, value in params.items():
        if not _PARAMETER.fullmatch(key):
            raise ValueError(f"{where}: {key!r} is not a parameter name")
        if not isinstance(value, str | int | float | bool) or (
            isinstance(value, float) and not math.isfinite(value)
        ):
            raise ValueError(f"{where}: fixed_params.{key} must be a string, number or boolean")
    return f"{kind}:{resource}", dict(params)


def _rps(limits: Any) -> int | None:
    if limits is None:
        return None
    if not isinstance(limits, dict) or set(limits) - {"rps"}:
        raise ValueError("'limits' may only hold 'rps'")
    rps = limits.get("rps")
    if rps is None or rps == 0:
        return None
    if type(rps) is not int or not 0 < rps <= 1_000_000:
        raise ValueError("'limits.rps' must be a whole number of requests per second")
    return rps


def mint(
    signing_key: str,
    *,
    name: str,
    expires_at: int,
    scopes: Sequence[Mapping[str, Any]],
    rps: int | None = None,
) -> str:
    """A JWT signed with `signing_key`, checked first as `verify` reads it (ValueError
    naming what it could not grant), so Pipit never mints one it would refuse."""
    claims: dict[str, Any] = {
        "workspace_id": workspace_id(signing_key),
        "name": name,
        "exp": expires_at,
        "scopes": [dict(s) for s in scopes],
    }
    if rps:
        claims["limits"] = {"rps": rps}
    grant_of(claims)
    return jwt.encode(claims, signing_key, algorithm=ALGORITHM)
