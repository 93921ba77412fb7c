"""`pipit import FILE|URL --datasource <ds>`: the Data Sources API from the shell. A local
file is streamed to `POST /v0/datasources` as a multipart form a chunk at a time (never read
whole), with a progress bar; a URL is handed to the service, which fetches it. Then the job is
followed until it is over, and its rows, quarantined rows and errors are printed."""

from __future__ import annotations

import argparse
import asyncio
import secrets
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import aiohttp
import orjson
from tqdm import tqdm

from common import config
from pipit.project.command import DEFAULT_URL, admin_token_of

_CHUNK_BYTES = 1024 * 1024
_POLL_SECONDS = 0.5
_DONE = ("done", "error")


class ImportFailed(Exception):
    """The API refused the import, or its job failed."""


def _multipart_parts(path: Path, boundary: str, field: str) -> tuple[bytes, bytes]:
    head = (
        f"--{boundary}\r\n"
        f'Content-Disposition: form-data; name="{field}"; filename="{path.name}"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n"
    ).encode()
    return head, f"\r\n--{boundary}--\r\n".encode()


async def _chunks(path: Path, head: bytes, tail: bytes, bar: tqdm) -> AsyncIterator[bytes]:
    yield head
    with path.open("rb") as file:  # noqa: ASYNC230 - each read goes to a thread
        while chunk := await asyncio.to_thread(file.read, _CHUNK_BYTES):
            bar.update(len(chunk))
            yield chunk
    yield tail


async def _answer(response: aiohttp.ClientResponse) -> dict[str, Any]:
    body = await response.read()
    try:
        document = orjson.loads(body) if body else {}
    except orjson.JSONDecodeError:
        document = {"error": body.decode("utf-8", "replace")[:500]}
    if response.status >= 400:
        reason = document.get("error") or document.get("message") or str(document)
        raise ImportFailed(f"HTTP {response.status}: {reason}")
    return document


async def start_import(
    http: aiohttp.ClientSession,
    url: str,
    token: str,
    source: str,
    params: dict[str, str],
    quiet: bool = False,
) -> dict[str, Any]:
    """Starts the import of `source` (a path, or an http(s) URL) and answers the API's answer."""
    headers = {"Authorization": f"Bearer {token}"}
    endpoint = f"{url.rstrip('/')}/v0/datasources?{urlencode(params)}"
    if source.startswith(("http://", "https://")):
        async with http.post(endpoint, data={"url": source}, headers=headers) as response:
            return await _answer(response)
    path = Path(source)
    size = (await asyncio.to_thread(path.stat)).st_size
    boundary = "pipit-" + secrets.token_hex(12)
    field = params.get("format") or "file"
    head, tail = _multipart_parts(path, boundary, field)
    headers["Content-Type"] = f"multipart/form-data; boundary={boundary}"
    # A declared length: the gateways refuse a file over their limit before it is sent.
    headers["Content-Length"] = str(len(head) + size + len(tail))
    with tqdm(
        total=size, unit="B", unit_scale=True, desc="upload", disable=quiet, file=sys.stderr
    ) as bar:
        async with http.post(
            endpoint, data=_chunks(path, head, tail, bar), headers=headers
        ) as response:
            return await _answer(response)


async def follow_job(
    http: aiohttp.ClientSession, url: str, token: str, job_id: str, quiet: bool = False
) -> dict[str, Any]:
    """Polls the job until it is over; answers it."""
    headers = {"Authorization": f"Bearer {token}"}
    with tqdm(total=100, unit="%", desc="import", disable=quiet, file=sys.stderr) as bar:
        while True:
            async with http.get(f"{url.rstrip('/')}/v0/jobs/{job_id}", headers=headers) as r:
                job = await _answer(r)
            bar.update(max(0, int(job.get("progress_percentage", 0)) - bar.n))
            bar.set_postfix(rows=job.get("statistics", {}).get("row_count", 0))
            if job.get("status") in _DONE:
                return job
            await asyncio.sleep(_POLL_SECONDS)


async def run_import(args: argparse.Namespace, token: str) -> dict[str, Any]:
    params = {"name": args.datasource, "mode": args.mode}
    if args.format:
        params["format"] = args.format
    timeout = aiohttp.ClientTimeout(total=None, sock_read=args.timeout)
    async with aiohttp.ClientSession(timeout=timeout) as http:
        started = await start_import(http, args.url, token, args.source, params, args.quiet)
        if args.no_wait:
            return started["job"]
        return await follow_job(http, args.url, token, started["id"], args.quiet)


def run(args: argparse.Namespace) -> int:
    if not args.source.startswith(("http://", "https://")) and not Path(args.source).is_file():
        print(f"pipit import: {args.source}: no such file", file=sys.stderr)
        return 1
    args.data_dir = config.load(args).data_dir  # flag, else PIPIT_DATA_DIR, else the default
    token = admin_token_of(args)
    try:
        job = asyncio.run(run_import(args, token))
    except (ImportFailed, aiohttp.ClientError) as exc:
        print(f"pipit import: {exc}", file=sys.stderr)
        return 1
    statistics = job.get("statistics", {})
    print(
        f"job {job.get('id')}: {job.get('status')}, {statistics.get('row_count', 0)} rows "
        f"into {args.datasource}, {job.get('quarantine_rows', 0)} quarantined"
    )
    for error in job.get("errors", []):
        print(f"  error: {error}", file=sys.stderr)
    return 1 if job.get("status") == "error" else 0


def add_import_command(commands: argparse._SubParsersAction) -> None:
    sub = commands.add_parser(
        "import",
        help="append or replace a datasource's rows from a CSV, NDJSON or Parquet file or URL",
        description=__doc__,
    )
    sub.add_argument("source", help="a local file, or an http(s) URL the service fetches")
    sub.add_argument("--datasource", required=True, help="the datasource to write")
    sub.add_argument("--mode", choices=("append", "replace"), default="append")
    sub.add_argument(
        "--format",
        choices=("csv", "ndjson", "parquet"),
        default="",
        help="default: from the file name, else from the file itself",
    )
    sub.add_argument("--url", default=DEFAULT_URL, help=f"the gateway (default {DEFAULT_URL})")
    sub.add_argument("--token", default="", help="a token that may append (default: admin)")
    sub.add_argument("--no-wait", action="store_true", help="answer once the job has started")
    sub.add_argument("--quiet", action="store_true", help="no progress bars")
    sub.add_argument("--timeout", type=float, default=300.0, help="seconds to wait for each answer")
    config.add_arguments(sub, ["data_dir"])
    sub.set_defaults(run=run)
