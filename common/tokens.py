"""Tokens and their scopes, Tinybird-style.

A token grants scopes: `ADMIN`, `DATASOURCES:APPEND:<name>`, `DATASOURCES:READ:<name>` and
`PIPES:READ:<name>`, where `<name>` may use `*` wildcards. Tokens live in a JSON file
(mountable from a Kubernetes Secret) holding only their SHA-256 digests, never the tokens;
the file is re-read when it changes, so a revoked token stops working within seconds and
without a restart. The admin token (PIPIT_ADMIN_TOKEN, or the one generated into the data
directory's `admin_token` file: `load_or_create_admin_token`) is ADMIN: both token files are
handled here.

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
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import structlog

log = structlog.get_logger("tokens")

ADMIN = "ADMIN"
ADMIN_NAME = "admin"
# Names that label built-in principals; a scoped token may not pose as one in logs and errors.
RESERVED_NAMES = frozenset({ADMIN_NAME})
MIN_ADMIN_TOKEN_LENGTH = 16
RELOAD_SECONDS = 1.0
# A token file this large is a mistake (a wrong path): it is re-read every RELOAD_SECONDS, on
# the event loop.
# The admin token `pipit up` generates, kept in the data directory.
ADMIN_TOKEN_FILE = "admin_token"  # noqa: S105 - a file name
MAX_TOKEN_FILE_BYTES = 4 * 1024 * 1024
_SCOPE = re.compile(r"ADMIN|DATASOURCES:(APPEND|READ):[A-Za-z0-9_*]+|PIPES:READ:[A-Za-z0-9_*]+")
_NAME = re.compile(r"[A-Za-z0-9_.-]{1,64}")
_SHA256 = re.compile(r"[0-9a-f]{64}")
# Printable ASCII without the space: what an HTTP header and gRPC metadata carry unaltered.
_TOKEN_CHARACTERS = re.compile(r"[\x21-\x7e]*")
# What new_token makes.
_ISSUED = re.compile(r"p\.[A-Za-z0-9_-]{43}")


class TokenError(ValueError):
    """A token, a scope or the token file is malformed; the message says what is wrong
    and never contains a token."""


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def new_token() -> str:
    """A new static token: 256 random bits, Tinybird's `p.` prefix."""
    return "p." + secrets.token_urlsafe(32)


def could_be_issued(token: str) -> bool:
    """Whether `token` has the shape of one new_token makes."""
    return _ISSUED.fullmatch(token) is not None


def check_admin_token(token: str) -> str:
    """The admin token if it is strong enough to guard everything; else TokenError. The
    message never repeats the token (it ends up in logs and terminals)."""
    advice = "generate one with `openssl rand -hex 32`"
    if len(token) < MIN_ADMIN_TOKEN_LENGTH:
        raise TokenError(
            f"the admin token must be at least {MIN_ADMIN_TOKEN_LENGTH} characters, "
            f"this one has {len(token)}; {advice}"
        )
    if not _TOKEN_CHARACTERS.fullmatch(token):
        raise TokenError(
            "the admin token must be printable ASCII without spaces, tabs or newlines "
            f"(a file written with a trailing newline adds one); {advice}"
        )
    return token


def check_token_name(name: str) -> str:
    """A name a new token may take; TokenError says why not."""
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise TokenError(f"invalid token name {name!r}: 1-64 letters, digits, '_', '.' or '-'")
    if name.lower() in RESERVED_NAMES:
        raise TokenError(f"the name {name!r} is reserved for the admin token; choose another")
    return name


def check_scope(scope: str) -> str:
    if not isinstance(scope, str) or not _SCOPE.fullmatch(scope):
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

    key: str  # the token's identity (its digest): what per-token state such as rate limits
    # is kept under; never the name, which whoever creates a token chooses
    name: str  # a label for messages and logs
    scopes: tuple[str, ...]
    rate_limit: int | None = None  # requests per minute; None = the service default
    rps: int | None = None  # a JWT's `limits.rps`: requests per second, shared by its name
    fixed_params: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    """A JWT's `fixed_params`, by pipe: what the pipe runs with whatever the caller sends."""


@dataclass(frozen=True)
class TokenEntry:
    name: str
    sha256: str
    scopes: tuple[str, ...]
    created_at: str
    rate_limit: int | None = None
    description: str = ""


def _entry_json(entry: TokenEntry) -> dict:
    doc: dict[str, Any] = {
        "name": entry.name,
        "sha256": entry.sha256,
        "scopes": list(entry.scopes),
        "created_at": entry.created_at,
    }
    if entry.rate_limit is not None:
        doc["rate_limit"] = entry.rate_limit
    return doc


def _entry(index: int, raw: Any) -> TokenEntry:
    where = f"token #{index}"
    if not isinstance(raw, dict):
        raise TokenError(f"{where} is not a JSON object")
    name = raw.get("name")
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise TokenError(f"{where}: 'name' must be 1-64 letters, digits, '_', '.' or '-'")
    where = f"token #{index} ({name})"
    sha256 = raw.get("sha256")
    if not isinstance(sha256, str) or not _SHA256.fullmatch(sha256):
        raise TokenError(f"{where}: 'sha256' must be 64 lowercase hexadecimal digits")
    scopes = raw.get("scopes")
    if not isinstance(scopes, list) or not scopes:
        raise TokenError(f"{where}: 'scopes' must be a non-empty list of scopes")
    try:
        for scope in scopes:
            check_scope(scope)
    except TokenError as exc:
        raise TokenError(f"{where}: {exc}") from None
    created_at = raw.get("created_at", "")
    if not isinstance(created_at, str):
        raise TokenError(f"{where}: 'created_at' must be a string")
    rate_limit = raw.get("rate_limit")
    if rate_limit is not None and (type(rate_limit) is not int or not 0 <= rate_limit <= 2**31 - 1):
        raise TokenError(f"{where}: 'rate_limit' must be a whole number of requests per minute")
    return TokenEntry(name, sha256, tuple(scopes), created_at, rate_limit)


def parse_token_file(data: bytes) -> list[TokenEntry]:
    """The entries of a token file, all checked; TokenError names the first problem. The
    file is taken whole or not at all: a hand edit gone wrong must not half-apply."""
    if not data.strip():
        raise TokenError(
            'the file is empty (write {"tokens": []}, or delete the file, for no scoped tokens)'
        )
    try:
        doc = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise TokenError(f"not valid JSON: {exc}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("tokens"), list):
        raise TokenError('expected a JSON object {"tokens": [...]}')
    entries: list[TokenEntry] = []
    first_with: dict[str, int] = {}
    for index, raw in enumerate(doc["tokens"], 1):
        entry = _entry(index, raw)
        if entry.sha256 in first_with:
            raise TokenError(
                f"token #{index} ({entry.name}) has the same sha256 as token "
                f"#{first_with[entry.sha256]}"
            )
        first_with[entry.sha256] = index
        entries.append(entry)
    return entries


class TokenFile:
    """The token file: create, list and revoke (the `pipit token` commands)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def entries(self) -> list[TokenEntry]:
        """The tokens; none when the file is missing or empty. TokenError when it is
        corrupt: the commands refuse to rewrite a file they cannot read."""
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return []
        if not data.strip():
            return []
        try:
            return parse_token_file(data)
        except TokenError as exc:
            raise TokenError(f"{self.path}: {exc}") from None

    def _save(self, entries: list[TokenEntry]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        doc = {"tokens": [_entry_json(e) for e in entries]}
        # Write-then-rename, so a reader never sees half a file; created 0600, never wider.
        tmp = self.path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as out:
            out.write(orjson.dumps(doc, option=orjson.OPT_INDENT_2))
        os.chmod(tmp, 0o600)
        os.replace(tmp, self.path)

    def create(self, name: str, scopes: list[str], rate_limit: int | None = None) -> str:
        """Adds a token and returns it; only its digest is stored."""
        check_token_name(name)
        if not scopes:
            raise TokenError("a token needs at least one --scope")
        for scope in scopes:
            check_scope(scope)
        if rate_limit is not None and rate_limit < 0:
            raise TokenError(
                "--rate-limit must be 0 (unlimited) or a number of requests per minute"
            )
        entries = self.entries()
        if any(e.name == name for e in entries):
            raise TokenError(f"a token named {name!r} exists; revoke it first")
        token = new_token()
        created = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
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
    """Answers "who is this token?" for the services, re-reading the file on change.

    Whatever the file holds, answering never fails: a file that cannot be read or parsed
    leaves the last good set of tokens in force (none but the admin token if there never
    was one), logged once per change of the file, until a good version replaces it. A
    missing file means no scoped tokens."""

    def __init__(
        self,
        admin_token: str,
        path: Path | None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        check_admin_token(admin_token)
        admin_digest = digest(admin_token)
        self._admin = Principal(admin_digest, ADMIN_NAME, (ADMIN,))
        # The admin token signs and verifies JWTs (the workspace's signing key, as in
        # Tinybird); it never leaves the process.
        self.signing_key = admin_token
        self._path = path
        self._clock = clock
        self._by_digest: dict[str, Principal] = {}
        self._file_entries: tuple[TokenEntry, ...] = ()
        # Tokens made by the Tokens API, kept in the warehouse (common/token_table.py): set
        # by whoever follows that table. Until then this store knows only the admin token
        # and the file's, and says so (`follows_api_tokens`).
        self._api_by_digest: dict[str, Principal] = {}
        self._api_entries: tuple[TokenEntry, ...] = ()
        self.follows_api_tokens = False
        self._content: bytes | None = None  # digest of the bytes last read
        self._problem: str | None = None
        self._checked = clock()
        self._refresh()

    def _refresh(self) -> None:
        try:
            self._refresh_file()
        except Exception as exc:  # noqa: BLE001 - answering must outlive any surprise here
            self._report(f"checking the token file failed: {exc!r}")

    def _refresh_file(self) -> None:
        if self._path is None:
            return
        # Read whole and compared by content: file times are too coarse to tell two quick
        # edits apart, and the file is small (capped).
        try:
            with open(self._path, "rb") as file:
                data = file.read(MAX_TOKEN_FILE_BYTES + 1)
        except FileNotFoundError:
            self._content = None
            self._problem = None
            if self._by_digest:
                log.warning(
                    "token file removed: only the admin token is accepted", path=str(self._path)
                )
                self._by_digest = {}
                self._file_entries = ()
            return
        except OSError as exc:
            self._content = None
            self._report(f"cannot read the token file: {exc.strerror or exc}")
            return
        content = hashlib.sha256(data).digest()
        if content == self._content:
            return
        self._content = content
        if len(data) > MAX_TOKEN_FILE_BYTES:
            self._report(f"the token file is over {MAX_TOKEN_FILE_BYTES} bytes", changed=True)
            return
        try:
            entries = parse_token_file(data)
        except TokenError as exc:
            self._report(str(exc), changed=True)
            return
        self._by_digest = {
            e.sha256: Principal(e.sha256, e.name, e.scopes, e.rate_limit) for e in entries
        }
        self._file_entries = tuple(entries)
        self._problem = None
        log.info("token file loaded", path=str(self._path), tokens=len(entries))

    def _report(self, problem: str, changed: bool = False) -> None:
        """Logs a problem once: again only when the file changed or the problem did."""
        if problem == self._problem and not changed:
            return
        self._problem = problem
        log.error(
            "token file rejected: the last good tokens stay in force until it is fixed",
            path=str(self._path),
            problem=problem,
            tokens_in_force=len(self._by_digest),
        )

    def authenticate(self, token: str) -> Principal | None:
        now = self._clock()
        if now - self._checked >= RELOAD_SECONDS:
            self._checked = now
            self._refresh()
        presented = digest(token)
        # Constant-time for the admin token, the one most worth guessing at.
        if hmac.compare_digest(presented, self._admin.key):
            return self._admin
        return self._by_digest.get(presented) or self._api_by_digest.get(presented)

    def file_entries(self) -> tuple[TokenEntry, ...]:
        """The token file's tokens in force (the last good file)."""
        return self._file_entries

    def api_entries(self) -> tuple[TokenEntry, ...]:
        """The Tokens API's tokens, as last loaded from the warehouse."""
        return self._api_entries

    def set_api_tokens(self, entries: Iterable[TokenEntry]) -> None:
        """Puts the Tokens API's tokens in force, replacing the previous set whole. A name
        or digest the token file also holds stays the file's."""
        kept = tuple(entries)
        self._api_entries = kept
        self._api_by_digest = {
            e.sha256: Principal(e.sha256, e.name, e.scopes, e.rate_limit)
            for e in kept
            if e.sha256 not in self._by_digest
        }
        self.follows_api_tokens = True


def load_or_create_admin_token(configured: str, data_dir: Path) -> tuple[str, bool]:
    """The configured admin token, else the one kept in the data directory, else a new
    one saved there (readable by the owner only). Returns (token, created). TokenError
    when the token is too weak to guard everything."""
    if configured:
        return check_admin_token(configured), False
    path = data_dir / ADMIN_TOKEN_FILE
    if path.exists():
        token = path.read_text().strip()
        try:
            return check_admin_token(token), False
        except TokenError as exc:
            raise TokenError(f"{path}: {exc} (or delete the file to have one generated)") from None
    data_dir.mkdir(parents=True, exist_ok=True)
    token = new_token()
    path.touch(mode=0o600)
    path.write_text(token + "\n")
    return token, True
