"""TEST-ONLY: a stand-in for ClickHouse's HTTP interface, served from chDB.

This module is test tooling and is not part of the product. It lets the tests drive the
product's clickhouse-connect code path (`common.warehouse.clickhouse`) where no ClickHouse
server can be installed. Point the tests at a real server instead by setting
`PIPIT_TEST_CLICKHOUSE_URL` (see `clickhouse_url_for_tests`).

The server runs in a process of its own, because chDB allows one data path per process and
the test process already holds one:

    python tests/clickhouse_http_fixture.py --port 0 --data-dir DIR

prints exactly one line, `LISTENING <port>`, once it accepts connections, and exits cleanly on
SIGTERM (or when the process that started it goes away).

What it speaks, as ClickHouse does for requests without a session:

* `GET /ping`, and `GET /` without a query, answer `Ok.\\n`.
* The statement is the `query` parameter, then a newline and the request body (or the body
  alone, or the `query` field of a multipart form). `INSERT ... FORMAT X` with data after it is
  streamed into chDB byte for byte, so binary formats such as Native work too.
* `param_<name>` parameters bind `{name:Type}` placeholders server-side; `database` (or the
  `X-ClickHouse-Database` header) selects the database; `default_format` (or the
  `X-ClickHouse-Format` header) is the output format when the SQL has no FORMAT clause
  (TabSeparated otherwise). Every other parameter is a setting, except the HTTP-only ones in
  `_HTTP_ONLY_PARAMS`; an unknown setting fails with UNKNOWN_SETTING as on ClickHouse.
* GET requests are read-only (`readonly = 2`), as on ClickHouse.
* Each request runs in a fresh chDB session on the shared data path, so its settings,
  database and any SET or USE inside it never reach another request.
* Request bodies may be gzip, deflate, lz4, zstd (or br, if `brotli` is installed) encoded,
  including the concatenated frames clickhouse-connect sends; responses are compressed with
  the client's first acceptable encoding when `enable_http_compression` is on.
* Failures answer with ClickHouse's status code for the error, the body
  `Code: <n>. DB::Exception: <message>. (<NAME>)` and `X-ClickHouse-Exception-Code`.
* Any user and password are accepted.
* Test switch: `POST /_fixture/writes` with the body `refuse` makes every INSERT fail as a
  replicated table without Keeper does (`TABLE_IS_READ_ONLY`, code 242) while reads go on;
  `accept` ends it. `ClickHouseHttpFixture.refuse_writes` sends it; `start(port)` starts
  the server again on the port it had (and the same data) after `stop()`.

Not supported: state carried across requests by `session_id` (it is accepted and ignored),
external data (file parts of a form), ClickHouse's own block compression (`compress=1`,
`decompress=1`), progress headers, and streaming: a request's body and its result are held in
memory. The `client_protocol_version` parameter is ignored, so Native results carry no block
info and clickhouse-connect falls back to protocol version 0.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gzip
import json
import logging
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
import zlib
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO, Any

import lz4.frame
from aiohttp import web

try:  # zstd is in the standard library from 3.14; clickhouse-connect installs the backport.
    from compression import zstd  # type: ignore[import-not-found]
except ImportError:
    from backports import zstd  # type: ignore[no-redef]

try:
    import brotli  # type: ignore[import-not-found]
except ImportError:
    brotli = None

TEST_URL_ENV = "PIPIT_TEST_CLICKHOUSE_URL"
SERVER_DISPLAY_NAME = "pipit-chdb-http-fixture"
_READY_LINE = re.compile(r"LISTENING (\d+)")

log = logging.getLogger("clickhouse_http_fixture")

# Query-string keys that configure the HTTP exchange rather than the query.
_HTTP_ONLY_PARAMS = frozenset(
    {
        "query",
        "database",
        "default_format",
        "user",
        "password",
        "quota_key",
        "query_id",
        "role",
        "session_id",
        "session_timeout",
        "session_check",
        "close_session",
        "compress",
        "decompress",
        "buffer_size",
        "wait_end_of_query",
        "client_protocol_version",
        "stacktrace",
        "send_progress_in_http_headers",
        "http_headers_progress_interval_ms",
        "enable_http_compression",
    }
)

# ClickHouse's HTTP status per error (src/Server/HTTP/exceptionCodeToHTTPStatus.cpp); 500 otherwise.
_STATUS_BY_ERROR: dict[str, int] = {
    "REQUIRED_PASSWORD": 401,
    **dict.fromkeys(
        (
            "UNKNOWN_USER",
            "WRONG_PASSWORD",
            "AUTHENTICATION_FAILED",
            "SET_NON_GRANTED_ROLE",
            "ACCESS_DENIED",
        ),
        403,
    ),
    **dict.fromkeys(
        (
            "BAD_ARGUMENTS",
            "CANNOT_COMPILE_REGEXP",
            "CANNOT_PARSE_TEXT",
            "CANNOT_PARSE_ESCAPE_SEQUENCE",
            "CANNOT_PARSE_QUOTED_STRING",
            "CANNOT_PARSE_DATE",
            "CANNOT_PARSE_DATETIME",
            "CANNOT_PARSE_NUMBER",
            "CANNOT_PARSE_DOMAIN_VALUE_FROM_STRING",
            "CANNOT_PARSE_IPV4",
            "CANNOT_PARSE_IPV6",
            "CANNOT_PARSE_INPUT_ASSERTION_FAILED",
            "CANNOT_PARSE_UUID",
            "DUPLICATE_COLUMN",
            "ILLEGAL_COLUMN",
            "UNKNOWN_ELEMENT_IN_AST",
            "UNKNOWN_TYPE_OF_AST_NODE",
            "THERE_IS_NO_COLUMN",
            "TOO_DEEP_AST",
            "TOO_BIG_AST",
            "UNEXPECTED_AST_STRUCTURE",
            "SYNTAX_ERROR",
            "INCORRECT_DATA",
            "TYPE_MISMATCH",
            "VALUE_IS_OUT_OF_RANGE_OF_DATA_TYPE",
        ),
        400,
    ),
    **dict.fromkeys(
        (
            "UNKNOWN_TABLE",
            "UNKNOWN_FUNCTION",
            "UNKNOWN_IDENTIFIER",
            "UNKNOWN_TYPE",
            "UNKNOWN_STORAGE",
            "UNKNOWN_DATABASE",
            "UNKNOWN_SETTING",
            "UNKNOWN_DIRECTION_OF_SORTING",
            "UNKNOWN_AGGREGATE_FUNCTION",
            "UNKNOWN_FORMAT",
            "UNKNOWN_DATABASE_ENGINE",
            "UNKNOWN_TYPE_OF_QUERY",
            "UNKNOWN_ROLE",
        ),
        404,
    ),
    "QUERY_IS_TOO_LARGE": 413,
    "NOT_IMPLEMENTED": 501,
    **dict.fromkeys(("SOCKET_TIMEOUT", "CANNOT_OPEN_FILE", "CANNOT_SCHEDULE_TASK"), 503),
    "HTTP_LENGTH_REQUIRED": 411,
    "TIMEOUT_EXCEEDED": 408,
    "UNSUPPORTED_MEDIA_TYPE": 415,
}

_IDENT = rb"(?:`(?:[^`\\]|\\.)*`|\"(?:[^\"\\]|\\.)*\"|[A-Za-z_][A-Za-z0-9_]*)"
# `INSERT INTO [db.]table [(columns)] FORMAT X` followed by its data: the shape clickhouse-connect
# and hand-written inserts use. Anchored and strict so that it never scans into binary data and
# never matches VALUES or SELECT forms, which chDB parses itself.
_INSERT_WITH_DATA = re.compile(
    rb"\s*(?P<head>INSERT\s+INTO\s+(?:TABLE\s+)?" + _IDENT + rb"(?:\s*\.\s*" + _IDENT + rb")?"
    rb"\s*(?:\((?:[^()`\"]|`(?:[^`\\]|\\.)*`|\"(?:[^\"\\]|\\.)*\")*\))?)"
    rb"\s*FORMAT\s+(?P<format>\w+)[ \t]*(?:\r?\n)?",
    re.IGNORECASE,
)
# Statements that produce a result set, after leading blanks, comments and parentheses.
_RESULT_STATEMENT = re.compile(
    r"(?:\s|--[^\n]*|/\*.*?\*/|\()*(?:SELECT|WITH|SHOW|DESC|DESCRIBE|EXISTS|EXPLAIN|CHECK)\b",
    re.IGNORECASE | re.DOTALL,
)
_FORMAT_CLAUSE = re.compile(r"\bFORMAT\s+(\w+)\s*;?\s*$", re.IGNORECASE)
_ERROR_NAME = re.compile(r"\(([A-Z][A-Z0-9_]+)\)")
_SETTING_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_BINARY_FORMAT_PREFIXES = (
    "native",
    "rowbinary",
    "parquet",
    "arrow",
    "orc",
    "avro",
    "protobuf",
    "capnproto",
    "msgpack",
    "bson",
    "npy",
)


class ClickHouseException(Exception):
    """A failure as ClickHouse reports it (DB::Exception): code, symbolic name, message text."""

    def __init__(self, code: int, name: str, text: str) -> None:
        super().__init__(text)
        self.code = code
        self.name = name
        self.text = text

    @classmethod
    def of(cls, code: int, name: str, message: str) -> ClickHouseException:
        return cls(code, name, f"Code: {code}. DB::Exception: {message}. ({name})")

    @classmethod
    def from_chdb(cls, exc: BaseException) -> ClickHouseException:
        # chDB messages are ClickHouse's, sometimes behind a prefix of the Python wrapper.
        text = str(exc)
        match = re.search(r"Code: (\d+)\. ", text)
        if match is None:
            return cls.of(1001, "STD_EXCEPTION", text)
        text = text[match.start() :].strip()
        names = _ERROR_NAME.findall(text)
        return cls(int(match[1]), names[-1] if names else "", text)

    @property
    def status(self) -> int:
        return _STATUS_BY_ERROR.get(self.name, 500)


# ---------------------------------------------------------------- body encodings


def _lz4_decompress(body: bytes) -> bytes:
    # clickhouse-connect compresses each insert block as its own frame; lz4 stops after one.
    out = bytearray()
    while body:
        decompressor = lz4.frame.LZ4FrameDecompressor()
        out += decompressor.decompress(body)
        if not decompressor.eof:
            raise ValueError("truncated lz4 frame")
        body = decompressor.unused_data
    return bytes(out)


# gzip and zstd decompression already continue across members and frames.
_DECODERS: dict[str, Callable[[bytes], bytes]] = {
    "gzip": gzip.decompress,
    "deflate": zlib.decompress,
    "lz4": _lz4_decompress,
    "zstd": zstd.decompress,
}
_ENCODERS: dict[str, Callable[[bytes], bytes]] = {
    "gzip": gzip.compress,
    "deflate": zlib.compress,
    "lz4": lz4.frame.compress,
    "zstd": zstd.compress,
}
if brotli is not None:
    _DECODERS["br"] = brotli.decompress
    _ENCODERS["br"] = brotli.compress


def _decode_body(body: bytes, encoding: str) -> bytes:
    decoder = _DECODERS.get(encoding)
    if decoder is None:
        raise ClickHouseException.of(
            89, "UNKNOWN_COMPRESSION_METHOD", f"Unknown Content-Encoding {encoding!r}"
        )
    try:
        return decoder(body)
    except Exception as exc:
        raise ClickHouseException.of(
            271, "CANNOT_DECOMPRESS", f"Cannot decode {encoding} body: {exc}"
        ) from exc


def _response_encoding(accept_encoding: str) -> str | None:
    """The first encoding the client lists that the fixture can produce."""
    for item in accept_encoding.split(","):
        name = item.split(";", 1)[0].strip().lower()
        if name in _ENCODERS:
            return name
    return None


def _truthy(value: str) -> bool:
    return value.strip().lower() not in ("", "0", "false")


def _string_literal(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _identifier(name: str) -> str:
    return "`" + name.replace("\\", "\\\\").replace("`", "\\`") + "`"


def _output_format(sql: str, default_format: str) -> str | None:
    """The format of the statement's result, or None when it has none.

    ClickHouse names the format only for statements that have a result; clients use the header
    to tell an empty result from a statement without one."""
    if not _RESULT_STATEMENT.match(sql):
        return None
    clause = _FORMAT_CLAUSE.search(sql)
    return clause[1] if clause else default_format


def _content_type(fmt: str | None) -> str:
    if fmt is None:
        return "text/plain; charset=UTF-8"
    name = fmt.lower()
    if name.startswith("json"):
        return "application/json; charset=UTF-8"
    if name.startswith(("tabseparated", "tsv")):
        return "text/tab-separated-values; charset=UTF-8"
    if name.startswith("csv"):
        return "text/csv; charset=UTF-8; header=absent"
    if name.startswith(_BINARY_FORMAT_PREFIXES):
        return "application/octet-stream"
    return "text/plain; charset=UTF-8"


# ---------------------------------------------------------------- engine


@dataclass(frozen=True)
class _Statement:
    """One HTTP request, reduced to what chDB needs."""

    sql: bytes  # the whole statement, any inline data included
    default_format: str
    database: str | None
    settings: dict[str, str]
    params: dict[str, str]
    read_only: bool


@dataclass(frozen=True)
class _Outcome:
    body: bytes = b""
    read_rows: int = 0
    read_bytes: int = 0
    written_rows: int = 0
    written_bytes: int = 0
    output_format: str | None = None


class _Engine:
    """chDB on one worker thread.

    A session's bound parameters leak into concurrent queries, so every chDB call runs on the
    same single thread, off the event loop. Each request gets a fresh session on the shared data
    path (about a millisecond), which is what keeps settings and USE from leaking between
    requests; the anchor session keeps the engine open in between."""

    def __init__(self, path: Path) -> None:
        self._path = str(path)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="chdb")
        self._anchor: Any = None
        self.timezone = "UTC"
        self.http_compression_default = False

    async def _call(self, fn: Callable[..., Any], *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    async def open(self) -> None:
        await self._call(self._open)

    def _open(self) -> None:
        from chdb import session

        self._anchor = session.Session(self._path)
        row = self._anchor.query(
            "SELECT timezone(), (SELECT value FROM system.settings"
            " WHERE name = 'enable_http_compression')",
            "TabSeparated",
        )
        self.timezone, compression = row.bytes().decode().rstrip("\n").split("\t")
        self.http_compression_default = _truthy(compression)

    async def close(self) -> None:
        if self._anchor is not None:
            await self._call(self._anchor.close)
            self._anchor = None
        self._executor.shutdown(wait=True)

    async def run(self, statement: _Statement) -> _Outcome:
        return await self._call(self._run, statement)

    def _run(self, statement: _Statement) -> _Outcome:
        from chdb import session

        conn = session.Session(self._path)
        try:
            return self._execute(conn, statement)
        except ClickHouseException:
            raise
        except Exception as exc:  # chDB raises RuntimeError or its own error types
            raise ClickHouseException.from_chdb(exc) from None
        finally:
            conn.close()

    @staticmethod
    def _execute(conn: Any, statement: _Statement) -> _Outcome:
        if statement.read_only:
            # ClickHouse runs GET requests read-only, before applying the URL's settings.
            conn.query("SET readonly = 2")
        if statement.settings:
            for name in statement.settings:
                if not _SETTING_NAME.fullmatch(name):
                    raise ClickHouseException.of(
                        115, "UNKNOWN_SETTING", f"Unknown setting {name!r}"
                    )
            assignments = (f"{k} = {_string_literal(v)}" for k, v in statement.settings.items())
            # String values, as the HTTP interface passes them; the setting parses its own type.
            conn.query("SET " + ", ".join(assignments))
        if statement.database:
            conn.query(f"USE {_identifier(statement.database)}")

        insert = _INSERT_WITH_DATA.match(statement.sql)
        if insert is not None:
            inserter = conn.send_insert(insert["head"].decode(), insert["format"].decode())
            try:
                inserter.append(statement.sql[insert.end() :])
                written = inserter.finish()
            except BaseException:
                with contextlib.suppress(Exception):
                    inserter.cancel()
                raise
            return _Outcome(written_rows=written.rows_written, written_bytes=written.bytes_written)

        try:
            sql = statement.sql.decode()
        except UnicodeDecodeError:
            raise ClickHouseException.of(
                36, "BAD_ARGUMENTS", "The fixture only accepts UTF-8 statements"
            ) from None
        result = conn.query(sql, statement.default_format, params=statement.params or None)
        output_format = _output_format(sql, statement.default_format)
        if result is None:
            return _Outcome(output_format=output_format)
        return _Outcome(
            body=result.bytes(),
            read_rows=result.rows_read(),
            read_bytes=result.bytes_read(),
            written_rows=result.rows_written(),
            written_bytes=result.bytes_written(),
            output_format=output_format,
        )


# ---------------------------------------------------------------- HTTP

_ENGINE = web.AppKey("engine", _Engine)
_REFUSING_WRITES = web.AppKey("refusing_writes", list)
_INSERT = re.compile(rb"(?:\s|--[^\n]*\n|/\*.*?\*/)*INSERT\b", re.IGNORECASE | re.DOTALL)


async def _read_request(request: web.Request) -> tuple[dict[str, str], bytes]:
    """The request's parameters (URL, then multipart form fields) and its decoded body."""
    params = dict(request.query.items())
    if request.content_type == "multipart/form-data":
        for name, value in (await request.post()).items():
            if isinstance(value, web.FileField):
                raise ClickHouseException.of(
                    48, "NOT_IMPLEMENTED", "The fixture does not support external data"
                )
            params[name] = value if isinstance(value, str) else bytes(value).decode()
        return params, b""
    body = await request.read()
    encoding = request.headers.get("Content-Encoding", "").strip().lower()
    if body and encoding not in ("", "identity"):
        body = await asyncio.get_running_loop().run_in_executor(None, _decode_body, body, encoding)
    return params, body


def _statement(request: web.Request, params: Mapping[str, str], body: bytes) -> _Statement:
    for name in ("compress", "decompress"):
        if _truthy(params.get(name, "0")):
            raise ClickHouseException.of(
                48, "NOT_IMPLEMENTED", f"The fixture does not support {name}=1 (block compression)"
            )
    query = params.get("query", "").encode()
    sql = query + b"\n" + body if query and body else query or body
    if not sql.strip():
        raise ClickHouseException.of(62, "SYNTAX_ERROR", "Empty query")
    return _Statement(
        sql=sql,
        default_format=params.get("default_format")
        or request.headers.get("X-ClickHouse-Format")
        or "TabSeparated",
        database=params.get("database") or request.headers.get("X-ClickHouse-Database"),
        settings={
            k: v
            for k, v in params.items()
            if k not in _HTTP_ONLY_PARAMS and not k.startswith("param_")
        },
        params={k.removeprefix("param_"): v for k, v in params.items() if k.startswith("param_")},
        read_only=request.method == "GET",
    )


def _base_headers(params: Mapping[str, str], engine: _Engine) -> dict[str, str]:
    return {
        "X-ClickHouse-Query-Id": params.get("query_id") or str(uuid.uuid4()),
        "X-ClickHouse-Server-Display-Name": SERVER_DISPLAY_NAME,
        "X-ClickHouse-Timezone": params.get("session_timezone") or engine.timezone,
    }


async def _handle_query(request: web.Request) -> web.Response:
    engine = request.app[_ENGINE]
    started = time.perf_counter_ns()
    params: Mapping[str, str] = request.query
    try:
        params, body = await _read_request(request)
        if request.method in ("GET", "HEAD") and not params.get("query") and not body:
            return web.Response(text="Ok.\n")
        statement = _statement(request, params, body)
        if request.app[_REFUSING_WRITES] and _INSERT.match(statement.sql):
            raise ClickHouseException.of(
                242,
                "TABLE_IS_READ_ONLY",
                "Table is in readonly mode since ZooKeeper is not available (fixture switch)",
            )
        outcome = await engine.run(statement)
    except ClickHouseException as exc:
        return _error_response(exc, _base_headers(params, engine))
    except Exception as exc:  # a fixture bug: report it the way clients can show it
        log.exception("request failed")
        error = ClickHouseException.of(1001, "STD_EXCEPTION", repr(exc))
        return _error_response(error, _base_headers(params, engine))

    headers = _base_headers(params, engine)
    headers["X-ClickHouse-Summary"] = json.dumps(
        {
            "read_rows": str(outcome.read_rows),
            "read_bytes": str(outcome.read_bytes),
            "written_rows": str(outcome.written_rows),
            "written_bytes": str(outcome.written_bytes),
            "total_rows_to_read": str(outcome.read_rows),
            "result_bytes": str(len(outcome.body)),
            "elapsed_ns": str(time.perf_counter_ns() - started),
        }
    )
    if outcome.output_format is not None:
        headers["X-ClickHouse-Format"] = outcome.output_format
    headers["Content-Type"] = _content_type(outcome.output_format)

    payload = outcome.body
    compression = params.get("enable_http_compression")
    enabled = _truthy(compression) if compression is not None else engine.http_compression_default
    encoding = _response_encoding(request.headers.get("Accept-Encoding", "")) if enabled else None
    if encoding and payload:
        payload = await asyncio.get_running_loop().run_in_executor(
            None, _ENCODERS[encoding], payload
        )
        headers["Content-Encoding"] = encoding
    return web.Response(body=payload, headers=headers)


def _error_response(exc: ClickHouseException, headers: dict[str, str]) -> web.Response:
    headers["X-ClickHouse-Exception-Code"] = str(exc.code)
    headers["Content-Type"] = "text/plain; charset=UTF-8"
    return web.Response(status=exc.status, body=(exc.text + "\n").encode(), headers=headers)


async def _handle_ping(_: web.Request) -> web.Response:
    return web.Response(text="Ok.\n")


async def _handle_writes_switch(request: web.Request) -> web.Response:
    # Test-only: see the module docstring.
    choice = (await request.text()).strip()
    if choice not in ("refuse", "accept"):
        return web.Response(status=400, text="refuse or accept\n")
    request.app[_REFUSING_WRITES][:] = [True] if choice == "refuse" else []
    return web.Response(text=f"{choice}\n")


def _application(engine: _Engine) -> web.Application:
    # Inserts may be large; the clients are the test suite's own.
    app = web.Application(client_max_size=0)
    app[_ENGINE] = engine
    app[_REFUSING_WRITES] = []
    app.router.add_get("/ping", _handle_ping)
    app.router.add_post("/_fixture/writes", _handle_writes_switch)
    app.router.add_route("*", "/", _handle_query)
    return app


async def _exit_with_parent(stop: asyncio.Event) -> None:
    # Do not outlive a test run that was killed before it could stop the server.
    parent = os.getppid()
    while not stop.is_set():
        if os.getppid() != parent:
            stop.set()
        await asyncio.sleep(1)


async def serve(host: str, port: int, data_dir: Path) -> None:
    """Serves until SIGTERM or SIGINT, announcing `LISTENING <port>` on stdout when ready.
    `data_dir` must exist; chDB keeps its databases there."""
    engine = _Engine(data_dir)
    await engine.open()
    # Request bodies are decoded by the handler, which knows lz4 and zstd as well.
    runner = web.AppRunner(
        _application(engine), access_log=None, auto_decompress=False, shutdown_timeout=5
    )
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port)
        await site.start()
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        watcher = asyncio.create_task(_exit_with_parent(stop))
        print(f"LISTENING {runner.addresses[0][1]}", flush=True)
        # The launcher reads only that line; anything later on fd 1 (chDB's native code
        # included) goes to stderr rather than filling a pipe nobody drains.
        os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
        await stop.wait()
        watcher.cancel()
    finally:
        await runner.cleanup()
        await engine.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="TEST-ONLY: ClickHouse's HTTP interface over chDB")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--data-dir", type=Path, required=True)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    args.data_dir.mkdir(parents=True, exist_ok=True)
    asyncio.run(serve(args.host, args.port, args.data_dir.resolve()))


# ---------------------------------------------------------------- launcher (test process)


def _read_line(stream: IO[str], timeout: float) -> str:
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: lines.put(stream.readline()), daemon=True).start()
    try:
        return lines.get(timeout=timeout)
    except queue.Empty:
        raise TimeoutError(f"the ClickHouse HTTP fixture was not ready in {timeout}s") from None


class ClickHouseHttpFixture:
    """The fixture server in a child process, with a ClickHouse URL for clients."""

    def __init__(
        self, data_dir: Path, *, host: str = "127.0.0.1", startup_timeout: float = 60.0
    ) -> None:
        self.data_dir = data_dir
        self.host = host
        self.startup_timeout = startup_timeout
        self.process: subprocess.Popen[str] | None = None
        self.port: int | None = None

    @property
    def url(self) -> str:
        if self.port is None:
            raise RuntimeError("the ClickHouse HTTP fixture is not running")
        return f"http://default:@{self.host}:{self.port}"

    def start(self, port: int = 0) -> str:
        """Launches the server (on `port`, 0 for a free one), waits until it listens and
        returns its URL."""
        if self.process is not None:
            raise RuntimeError("the ClickHouse HTTP fixture is already running")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        command = [sys.executable, str(Path(__file__).resolve()), "--host", self.host]
        command += ["--port", str(port), "--data-dir", str(self.data_dir.resolve())]
        self.process = subprocess.Popen(
            command,
            stdout=subprocess.PIPE,
            text=True,
            cwd=self.data_dir,  # anything chDB writes beside its data stays out of the repo
            env={**os.environ, "TZ": "UTC"},  # a server timezone that does not follow the host's
        )
        try:
            assert self.process.stdout is not None
            line = _read_line(self.process.stdout, self.startup_timeout)
            ready = _READY_LINE.fullmatch(line.strip())
            if ready is None:
                raise RuntimeError(
                    f"the ClickHouse HTTP fixture did not start (exit code "
                    f"{self.process.poll()}, first line {line!r}); see its stderr"
                )
        except BaseException:
            self.stop()
            raise
        self.port = int(ready[1])
        self.process.stdout.close()
        return self.url

    def restart(self) -> str:
        """Stops the server and starts it again on the same port and data; returns its
        URL. (`stop()`, then `start(port)`, leaves it away for as long as a test needs.)"""
        port = self.port
        if port is None:
            raise RuntimeError("the ClickHouse HTTP fixture is not running")
        self.stop()
        return self.start(port)

    def refuse_writes(self, refuse: bool = True) -> None:
        """Makes every INSERT fail (TABLE_IS_READ_ONLY) or succeed again; reads go on."""
        request = urllib.request.Request(  # noqa: S310 - the fixture's own loopback URL
            f"http://{self.host}:{self.port}/_fixture/writes",
            data=b"refuse" if refuse else b"accept",
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
            response.read()

    def stop(self) -> None:
        """Terminates the server and waits for it. Idempotent."""
        process, self.process, self.port = self.process, None, None
        if process is None:
            return
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if process.stdout is not None:
            process.stdout.close()

    def __enter__(self) -> ClickHouseHttpFixture:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def clickhouse_url_for_tests(tmp_dir: Path) -> tuple[str, Callable[[], None]]:
    """The ClickHouse URL tests should use, and how to release it.

    `PIPIT_TEST_CLICKHOUSE_URL`, when set, names a real server and is returned unchanged (its
    stopper does nothing); otherwise the fixture server starts with its data in `tmp_dir`."""
    url = os.environ.get(TEST_URL_ENV)
    if url:
        return url, lambda: None
    fixture = ClickHouseHttpFixture(tmp_dir)
    return fixture.start(), fixture.stop


if __name__ == "__main__":
    main()
