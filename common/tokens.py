"""Tokens and their scopes, Tinybird-style.

A token grants scopes: `ADMIN`, `DATASOURCES:APPEND:<name>`, `DATASOURCES:READ:<name>` and
`PIPES:READ:<name>`, where `<name>` may use `*` wildcards. Tokens live in a JSON file
(mountable from a Kubernetes Secret) holding only their SHA-256 digests, never the tokens;
the file is re-read when it changes, so a revoked token stops working within seconds and
without a restart. The admin token (PIPIT_ADMIN_TOKEN, or the generated one) is ADMIN.

Tokens are 256-bit random strings, so a plain SHA-256 is a sound digest (there is nothing
to brute-force), and a lookup by digest reveals nothing useful about other tokens."""

from __future__ import annotations

import fnmatch
import hashlib
import hmac
import os
import re
import secrets
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import orjson

ADMIN = "ADMIN"
RELOAD_SECONDS = 1.0
_SCOPE = re.compile(r"^(ADMIN|DATASOURCES:(APPEND|READ):[A-Za-z0-9_*]+|PIPES:READ:[A-Za-z0-9_*]+)$")
_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


class TokenError(ValueError):
    """A token or scope definition is malformed."""


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def check_scope(scope: str) -> str:
    if not _SCOPE.match(scope):
        raise TokenError(
            f"invalid scope {scope!r}: use ADMIN, DATASOURCES:APPEND:<name>, "
            "DATASOURCES:READ:<name> or PIPES:READ:<name> (<name> may use *)"
        )
    return scope


def allows(scopes: tuple[str, ...], required: str) -> bool:
    """Whether the scopes grant `required` (a scope without wildcards)."""
    if ADMIN in scopes:
        return True
    kind, _, name = required.rpartition(":")
    for scope in scopes:
        granted_kind, _, pattern = scope.rpartition(":")
        if granted_kind == kind and fnmatch.fnmatchcase(name, pattern):
            return True
    return False


@dataclass(frozen=True)
class Principal:
    """Who a request is, as far as access control is concerned."""

    name: str
    scopes: tuple[str, ...]
    rate_limit: int | None = None  # requests per minute; None = the service default


@dataclass(frozen=True)
class TokenEntry:
    name: str
    sha256: str
    scopes: tuple[str, ...]
    created_at: str
    rate_limit: int | None = None


def _entry_json(entry: TokenEntry) -> dict:
    doc = {
        "name": entry.name,
        "sha256": entry.sha256,
        "scopes": list(entry.scopes),
        "created_at": entry.created_at,
    }
    if entry.rate_limit is not None:
        doc["rate_limit"] = entry.rate_limit
    return doc


class TokenFile:
    """The token file: create, list and revoke (the `pipit token` commands)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def entries(self) -> list[TokenEntry]:
        if not self.path.exists():
            return []
        doc = orjson.loads(self.path.read_bytes() or b"{}")
        return [
            TokenEntry(
                e["name"],
                e["sha256"],
                tuple(e["scopes"]),
                e.get("created_at", ""),
                e.get("rate_limit"),
            )
            for e in doc.get("tokens", [])
        ]

    def _save(self, entries: list[TokenEntry]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        doc = {"tokens": [_entry_json(e) for e in entries]}
        # Write-then-rename, so a reader never sees half a file.
        tmp = self.path.with_suffix(".tmp")
        tmp.write_bytes(orjson.dumps(doc, option=orjson.OPT_INDENT_2))
        os.chmod(tmp, 0o600)
        os.replace(tmp, self.path)

    def create(self, name: str, scopes: list[str], rate_limit: int | None = None) -> str:
        """Adds a token and returns it; only its digest is stored."""
        if not _NAME.match(name):
            raise TokenError(f"invalid token name {name!r}: letters, digits, '_', '.', '-'")
        if not scopes:
            raise TokenError("a token needs at least one --scope")
        for scope in scopes:
            check_scope(scope)
        entries = self.entries()
        if any(e.name == name for e in entries):
            raise TokenError(f"a token named {name!r} exists; revoke it first")
        token = "p." + secrets.token_urlsafe(32)
        created = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        if rate_limit is not None and rate_limit < 0:
            raise TokenError(
                "--rate-limit must be 0 (unlimited) or a number of requests per minute"
            )
        entries.append(TokenEntry(name, digest(token), tuple(scopes), created, rate_limit))
        self._save(entries)
        return token

    def revoke(self, name: str) -> None:
        entries = self.entries()
        kept = [e for e in entries if e.name != name]
        if len(kept) == len(entries):
            raise TokenError(f"no token named {name!r}")
        self._save(kept)


class TokenStore:
    """Answers "who is this token?" for the services, re-reading the file on change."""

    def __init__(self, admin_token: str, path: Path | None) -> None:
        if not admin_token:
            raise ValueError("an admin token is required")
        self._admin = digest(admin_token)
        self._file = TokenFile(path) if path is not None else None
        self._by_digest: dict[str, Principal] = {}
        self._mtime: float | None = None
        self._checked = 0.0
        self._reload()

    def _reload(self) -> None:
        if self._file is None:
            return
        try:
            mtime = self._file.path.stat().st_mtime_ns
        except FileNotFoundError:
            mtime = None
        if mtime == self._mtime:
            return
        entries = self._file.entries() if mtime is not None else []
        self._by_digest = {e.sha256: Principal(e.name, e.scopes, e.rate_limit) for e in entries}
        self._mtime = mtime

    def authenticate(self, token: str) -> Principal | None:
        now = time.monotonic()
        if now - self._checked >= RELOAD_SECONDS:
            self._checked = now
            self._reload()
        presented = digest(token)
        # Constant-time for the admin token, the one most worth guessing at.
        if hmac.compare_digest(presented, self._admin):
            return Principal("admin", (ADMIN,))
        return self._by_digest.get(presented)
