"""Fetching an import's file from a URL the caller names, streamed to a spool file on disk
(never whole in memory; Parquet needs to seek anyway), with a cap on its size.

The URL is a stranger's, so the fetch must not become a way into our own network (SSRF):
only http and https, and every address it would connect to (the host's, each redirect's,
whatever DNS answers at connection time, so a name that re-resolves to 127.0.0.1 between a
check and the connection gains nothing) must be a public one unless
`import_allow_private_urls` says otherwise (tests serve files on loopback)."""

from __future__ import annotations

import asyncio
import ipaddress
import os
import socket
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urljoin, urlsplit

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver

_SCHEMES = ("http", "https")
_MAX_REDIRECTS = 5
_CHUNK_BYTES = 256 * 1024
_REDIRECTS = (301, 302, 303, 307, 308)


class UrlRefused(ValueError):
    """The URL may not be fetched, or fetching it failed; the message says why."""


def _public(address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_global and not ip.is_multicast


class _PublicResolver(AbstractResolver):
    """Resolves as usual, then keeps only public addresses: the connector connects to what
    this answers, so no other address is ever reached."""

    def __init__(self) -> None:
        self._inner = DefaultResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        answers = [a for a in await self._inner.resolve(host, port, family) if _public(a["host"])]
        if not answers:
            raise OSError(f"{host} resolves to no public address")
        return answers

    async def close(self) -> None:
        await self._inner.close()


def check_url(url: str, allow_private: bool) -> None:
    """Refuses a URL that is not http(s), or that names a private address literally."""
    parts = urlsplit(url)
    if parts.scheme not in _SCHEMES or not parts.hostname:
        raise UrlRefused(f"url must be an http or https URL, got {url[:200]!r}")
    if allow_private:
        return
    try:
        literal = ipaddress.ip_address(parts.hostname)
    except ValueError:
        return  # a name: the resolver decides, at connection time
    if not _public(str(literal)):
        raise UrlRefused(f"url names a private or local address: {parts.hostname}")


async def download(
    url: str,
    directory: Path,
    *,
    max_bytes: int,
    allow_private: bool,
    idle_seconds: float,
    progress: Callable[[int, int], Any] | None = None,
) -> Path:
    """Fetches `url` into a new file under `directory`, a chunk at a time, and returns the
    file's path (the caller deletes it). `progress(read, total)` is told as it goes (total 0
    while unknown). Raises UrlRefused."""
    check_url(url, allow_private)
    resolver = None if allow_private else _PublicResolver()
    connector = aiohttp.TCPConnector(resolver=resolver)
    spool = await asyncio.to_thread(new_spool, directory)
    try:
        async with aiohttp.ClientSession(
            connector=connector,
            timeout=aiohttp.ClientTimeout(
                total=None, sock_connect=idle_seconds, sock_read=idle_seconds
            ),
        ) as session:
            for _ in range(_MAX_REDIRECTS + 1):
                async with session.get(url, allow_redirects=False) as response:
                    if response.status in _REDIRECTS and "Location" in response.headers:
                        url = urljoin(url, response.headers["Location"])
                        check_url(url, allow_private)
                        continue
                    if response.status != 200:
                        raise UrlRefused(f"fetching the url answered HTTP {response.status}")
                    total = response.content_length or 0
                    if total > max_bytes:
                        raise UrlRefused(_too_large(max_bytes))
                    await _save(response, spool, max_bytes, total, progress)
                    return spool
            raise UrlRefused(f"the url redirects more than {_MAX_REDIRECTS} times")
    except (aiohttp.ClientError, OSError, TimeoutError) as exc:
        await asyncio.to_thread(spool.unlink, missing_ok=True)
        raise UrlRefused(f"fetching the url failed: {exc}") from None
    except BaseException:
        await asyncio.to_thread(spool.unlink, missing_ok=True)
        raise


def new_spool(directory: Path) -> Path:
    """A new empty file in `directory` (made if missing) for a download. Blocking."""
    directory.mkdir(parents=True, exist_ok=True)
    handle, name = tempfile.mkstemp(dir=directory, prefix="import-")
    os.close(handle)
    return Path(name)


def _too_large(max_bytes: int) -> str:
    return f"the file at the url is larger than {max_bytes} bytes (PIPIT_IMPORT_MAX_URL_BYTES)"


async def _save(
    response: aiohttp.ClientResponse,
    spool: Path,
    max_bytes: int,
    total: int,
    progress: Callable[[int, int], Any] | None,
) -> None:
    read = 0
    # No fsync: the job reads the file back at once and deletes it after.
    with spool.open("wb") as out:  # noqa: ASYNC230 - each write goes to a thread
        async for chunk in response.content.iter_chunked(_CHUNK_BYTES):
            read += len(chunk)
            if read > max_bytes:
                raise UrlRefused(_too_large(max_bytes))
            await asyncio.to_thread(out.write, chunk)
            if progress is not None:
                progress(read, total)


def spool_directory(data_dir: Path) -> Path:
    """Where downloads wait to be read."""
    return data_dir / "imports"
