"""The TokenService's handlers: Tinybird's Tokens API over the warehouse's token table
(common/token_table.py), and JWTs signed with the admin token (common/jwt_tokens.py). Every
RPC needs ADMIN (the interceptor's default for methods without a rule)."""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

import grpc
import structlog
from google.protobuf import json_format
from google.protobuf.message import Message

from common import jwt_tokens
from common.rpc_handlers import service_handler
from common.token_table import TokenTable
from common.tokens import (
    ADMIN,
    ADMIN_NAME,
    TokenEntry,
    TokenError,
    TokenStore,
    check_scope,
    check_token_name,
    digest,
    new_token,
)
from common.warehouse.base import WarehouseError
from pipit.tokens.v1 import token_service_pb2 as pb

log = structlog.get_logger("tokens")

SERVICE = pb.DESCRIPTOR.services_by_name["TokenService"]
ORIGIN_ADMIN, ORIGIN_FILE, ORIGIN_API, ORIGIN_JWT = "admin", "file", "api", "jwt"


class _Invalid(ValueError):
    """A request the API refuses; the message says why (never a token)."""


def _scope_messages(scopes: Iterable[str]) -> list[pb.Scope]:
    """Tinybird's printing of `PIPES:READ:p` as `{"type": "PIPES:READ", "resource": "p"}`."""
    out = []
    for scope in scopes:
        if scope == ADMIN:
            out.append(pb.Scope(type=ADMIN))
        else:
            kind, _, resource = scope.rpartition(":")
            out.append(pb.Scope(type=kind, resource=resource))
    return out


def _static_scopes(texts: Sequence[str], objects: Sequence[pb.Scope]) -> tuple[str, ...]:
    """The scopes of a static token, from Tinybird's text form and its object form."""
    scopes = list(texts)
    for scope in objects:
        if scope.HasField("fixed_params"):
            raise _Invalid("fixed_params are for JWTs (send expiration_time)")
        scopes.append(scope.type if scope.type == ADMIN else f"{scope.type}:{scope.resource}")
    if not scopes:
        raise _Invalid("a token needs at least one scope")
    try:
        for scope in scopes:
            check_scope(scope)
    except TokenError as exc:
        raise _Invalid(str(exc)) from None
    return tuple(dict.fromkeys(scopes))


def _plain(value: Any) -> Any:
    # Struct numbers are doubles: a whole one goes into the JWT as the integer it was sent as.
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        return int(value)
    return value


def _jwt_scopes(request: pb.CreateTokenRequest) -> list[dict[str, Any]]:
    if request.scope:
        raise _Invalid("a JWT's scopes are objects: send them as 'scopes' in a JSON body")
    scopes = []
    for scope in request.scopes:
        doc: dict[str, Any] = {"type": scope.type, "resource": scope.resource}
        if scope.HasField("fixed_params"):
            params = json_format.MessageToDict(scope.fixed_params)
            doc["fixed_params"] = {key: _plain(value) for key, value in params.items()}
        scopes.append(doc)
    return scopes


class TokenApi:
    """Static tokens in the warehouse, the file's and the admin token listed beside them."""

    def __init__(self, table: TokenTable, store: TokenStore, clock: Any = time.time) -> None:
        self._table = table
        self._store = store
        self._clock = clock
        # One change at a time in this process: a name checked free stays free until written.
        self._lock = asyncio.Lock()

    # --- reading -------------------------------------------------------------------------

    def _tokens(self) -> list[pb.Token]:
        admin = pb.Token(name=ADMIN_NAME, scopes=_scope_messages([ADMIN]), origin=ORIGIN_ADMIN)
        listed = [admin]
        names = {ADMIN_NAME}
        for entries, origin in (
            (self._store.file_entries(), ORIGIN_FILE),
            (self._store.api_entries(), ORIGIN_API),
        ):
            for e in entries:
                if e.name in names:
                    continue  # the file's wins, as it does when authenticating
                names.add(e.name)
                listed.append(
                    pb.Token(
                        name=e.name,
                        description=e.description,
                        scopes=_scope_messages(e.scopes),
                        origin=origin,
                        created_at=e.created_at,
                    )
                )
        return listed

    def _find(self, name: str) -> pb.Token | None:
        return next((t for t in self._tokens() if t.name == name), None)

    async def _fresh(self) -> None:
        # Changes are judged against the table as it is now, not as last polled.
        self._store.set_api_tokens(await self._table.load())

    async def _api_entry(self, name: str, context: grpc.aio.ServicerContext) -> TokenEntry:
        await self._fresh()
        found = self._find(name)
        if found is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"no token named {name!r}")
        if found.origin != ORIGIN_API:
            where = "PIPIT_ADMIN_TOKEN" if found.origin == ORIGIN_ADMIN else "the token file"
            await context.abort(
                grpc.StatusCode.FAILED_PRECONDITION,
                f"token {name!r} is kept in {where}: change it there, not through the API",
            )
        return next(e for e in self._store.api_entries() if e.name == name)

    async def list_tokens(self, request: Message, context: grpc.aio.ServicerContext) -> Message:
        await self._fresh()
        return pb.ListTokensResponse(tokens=self._tokens())

    async def get_token(self, request: Message, context: grpc.aio.ServicerContext) -> Message:
        await self._fresh()
        found = self._find(request.token)
        if found is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"no token named {request.token!r}")
        return found

    # --- changing ------------------------------------------------------------------------

    def _check_new_name(self, name: str) -> None:
        try:
            check_token_name(name)
        except TokenError as exc:
            raise _Invalid(str(exc)) from None
        if self._find(name) is not None:
            raise _Invalid(f"a token named {name!r} exists")

    async def create_token(self, request: Message, context: grpc.aio.ServicerContext) -> Message:
        try:
            if request.expiration_time:
                return self._jwt(request)
            async with self._lock:
                await self._fresh()
                self._check_new_name(request.name)
                scopes = _static_scopes(request.scope, request.scopes)
                if request.HasField("limits"):
                    raise _Invalid("limits are for JWTs (send expiration_time)")
                token = new_token()
                created = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
                entry = TokenEntry(
                    request.name, digest(token), scopes, created, description=request.description
                )
                await self._table.write([entry])
                await self._fresh()
        except _Invalid as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        log.info("token created", name=entry.name, scopes=list(entry.scopes))
        return self._answer(entry, token)

    def _jwt(self, request: pb.CreateTokenRequest) -> pb.Token:
        if request.expiration_time <= self._clock():
            raise _Invalid("expiration_time must be a Unix time in the future")
        scopes = _jwt_scopes(request)
        try:
            token = jwt_tokens.mint(
                self._store.signing_key,
                name=request.name,
                expires_at=request.expiration_time,
                scopes=scopes,
                rps=request.limits.rps or None,
            )
        except ValueError as exc:
            raise _Invalid(f"cannot sign this JWT: {exc}") from None
        return pb.Token(
            name=request.name,
            description=request.description,
            scopes=[pb.Scope(type=s["type"], resource=s["resource"]) for s in scopes],
            token=token,
            origin=ORIGIN_JWT,
        )

    @staticmethod
    def _answer(entry: TokenEntry, token: str | None = None) -> pb.Token:
        answer = pb.Token(
            name=entry.name,
            description=entry.description,
            scopes=_scope_messages(entry.scopes),
            origin=ORIGIN_API,
            created_at=entry.created_at,
        )
        if token is not None:
            answer.token = token
        return answer

    async def update_token(self, request: Message, context: grpc.aio.ServicerContext) -> Message:
        async with self._lock:
            entry = await self._api_entry(request.token, context)
            try:
                name = request.name or entry.name
                if name != entry.name:
                    self._check_new_name(name)
                scopes = (
                    _static_scopes(request.scope, request.scopes)
                    if request.scope or request.scopes
                    else entry.scopes
                )
            except _Invalid as exc:
                await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
            description = (
                request.description if request.HasField("description") else entry.description
            )
            changed = TokenEntry(
                name, entry.sha256, scopes, entry.created_at, description=description
            )
            await self._table.write([changed], deleted=[entry.name] if name != entry.name else [])
            await self._fresh()
        log.info("token updated", name=name, was=entry.name, scopes=list(scopes))
        return self._answer(changed)

    async def delete_token(self, request: Message, context: grpc.aio.ServicerContext) -> Message:
        async with self._lock:
            entry = await self._api_entry(request.token, context)
            await self._table.write([], deleted=[entry.name])
            await self._fresh()
        log.info("token deleted", name=entry.name)
        return pb.DeleteTokenResponse()

    async def refresh_token(self, request: Message, context: grpc.aio.ServicerContext) -> Message:
        async with self._lock:
            entry = await self._api_entry(request.token, context)
            token = new_token()
            refreshed = TokenEntry(
                entry.name,
                digest(token),
                entry.scopes,
                entry.created_at,
                description=entry.description,
            )
            await self._table.write([refreshed])
            await self._fresh()
        log.info("token refreshed", name=entry.name)
        return self._answer(refreshed, token)

    def generic_handler(self) -> grpc.GenericRpcHandler:
        def guarded(behavior: Callable) -> Callable:
            async def answer(message: Message, context: grpc.aio.ServicerContext) -> Message:
                try:
                    return await behavior(message, context)
                except WarehouseError as exc:
                    log.error("tokens table unavailable", error=str(exc)[:300])
                    await context.abort(
                        grpc.StatusCode.UNAVAILABLE, "the warehouse holding the tokens failed"
                    )

            return answer

        return service_handler(
            SERVICE,
            {
                "ListTokens": guarded(self.list_tokens),
                "CreateToken": guarded(self.create_token),
                "GetToken": guarded(self.get_token),
                "UpdateToken": guarded(self.update_token),
                "DeleteToken": guarded(self.delete_token),
                "RefreshToken": guarded(self.refresh_token),
            },
        )
