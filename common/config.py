"""Configuration, read in one place: command-line flags override `PIPIT_*` environment
variables, which override the defaults declared here. Each setting is declared once;
the flag (`--flush-rows`), the variable (`PIPIT_FLUSH_ROWS`) and the help text all
derive from that declaration."""

from __future__ import annotations

import argparse
import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import Field, dataclass, field, fields
from pathlib import Path
from typing import Any

from common.tokens import MIN_ADMIN_TOKEN_LENGTH, check_admin_token

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _database_name(value: str) -> str:
    # The database name reaches DDL as an identifier, so only plain identifiers pass
    # (fullmatch: `$` would let a trailing newline through).
    if not _IDENTIFIER.fullmatch(value):
        raise ValueError(f"database must be a plain identifier, got {value!r}")
    return value


def _admin_token(value: str) -> str:
    # Empty means "generate one"; anything else must be strong enough to guard everything.
    # The message never repeats the value: it is a secret.
    return check_admin_token(value) if value else value


GATEWAY_KINDS = ("pipit", "envoy")


def _gateway_kind(value: str) -> str:
    if value not in GATEWAY_KINDS:
        raise ValueError(f"must be one of {', '.join(GATEWAY_KINDS)}, got {value!r}")
    return value


def _positive_int(value: str) -> int:
    number = int(value)
    if number <= 0:
        raise ValueError(f"must be positive, got {value!r}")
    return number


def _non_negative_int(value: str) -> int:
    number = int(value)
    if number < 0:
        raise ValueError(f"must be 0 or more, got {value!r}")
    return number


_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")


def _boolean(value: str) -> bool:
    # Environment variables are strings; "false" must not be truthy.
    lowered = value.strip().lower()
    if lowered not in _TRUE + _FALSE:
        raise ValueError(f"must be true or false, got {value!r}")
    return lowered in _TRUE


def _insert_quorum(value: str) -> str:
    # ClickHouse's own spelling: a replica count, or 'auto' for a majority.
    value = value.strip().lower()
    if value != "auto" and not (value.isdigit() and value.isascii()):
        raise ValueError(f"must be auto or a number of replicas, got {value!r}")
    return value if value == "auto" else str(int(value))


def _positive_float(value: str) -> float:
    number = float(value)
    if number <= 0:
        raise ValueError(f"must be positive, got {value!r}")
    return number


def setting(default: Any, help_text: str, parse: Callable[[str], Any] | None = None) -> Any:
    """A setting's declaration: its default, its help, and how a flag or environment string is
    parsed (by default the field's type: str, int, float or Path)."""
    return field(default=default, metadata={"help": help_text, "parse": parse})


@dataclass(frozen=True)
class Settings:
    """Every setting of every Pipit process, each declared once with `setting`."""

    host: str = setting("127.0.0.1", "address the servers listen on (0.0.0.0 in containers)")
    ingest_port: int = setting(50051, "gRPC port of the ingest service")
    query_port: int = setting(50052, "gRPC port of the query service")
    gateway_port: int = setting(7181, "HTTP port of the JSON gateway")
    ingest_target: str = setting("127.0.0.1:50051", "ingest service address the gateway calls")
    query_target: str = setting("127.0.0.1:50052", "query service address the gateway calls")
    data_dir: Path = setting(
        Path(".pipit"),
        "directory for embedded chDB data and the generated admin token",
    )
    clickhouse_url: str = setting(
        "",
        "ClickHouse HTTP URL, e.g. http://user:password@host:8123; empty = embedded chDB",
    )
    clickhouse_user: str = setting(
        "",
        "ClickHouse user; overrides the URL's (default: the URL's, else `default`)",
    )
    clickhouse_password: str = setting("", "password of the ClickHouse user; overrides the URL's")
    clickhouse_ca: Path | None = setting(
        None,
        "PEM CA bundle an https:// ClickHouse URL's certificate is checked against (default: "
        "the system's)",
    )
    clickhouse_connect_timeout: float = setting(
        2.0,
        "seconds a connection to ClickHouse may take to open; past it the call fails (a pipe "
        "answers UNAVAILABLE, HTTP 503) instead of hanging on an unreachable server",
        _positive_float,
    )
    database: str = setting("pipit", "ClickHouse database holding Pipit's tables", _database_name)
    admin_token: str = setting(
        "",
        f"admin bearer token, at least {MIN_ADMIN_TOKEN_LENGTH} printable ASCII characters "
        "without spaces; generated into the data dir when empty. `pipit gateway` given it (and "
        "the services' --tokens-file) refuses unknown tokens before reading a body",
        _admin_token,
    )
    tokens_file: Path | None = setting(
        None,
        "scoped tokens (pipit token …); default <data-dir>/tokens.json",
    )
    rate_limit: int = setting(
        0,
        "requests per minute per token unless its own limit says otherwise; 0 = none",
    )
    tls_cert: Path | None = setting(
        None,
        "PEM certificate (chain): serve gRPC and the gateway over TLS only (with --tls-key)",
    )
    tls_key: Path | None = setting(None, "PEM private key of --tls-cert")
    tls_ca: Path | None = setting(
        None,
        "PEM CA bundle: the gateway calls the services over TLS, trusting it; `pipit up` uses "
        "TLS to its services whenever they serve it, trusting --tls-cert by default",
    )
    # Each insert writes a part, and a part of every projection, that merges must then fold:
    # fewer, larger inserts are ClickHouse's own advice. At 50,000 rows the A/B datasource
    # (six projections) took 1.3x the events/s of 10,000-row flushes through the streaming
    # RPC (bench.ingest, 2026-12-01), and a flush still comes at least once a second
    # (flush_interval); the write-ahead log bounds what waits in memory (wal_max_bytes).
    flush_rows: int = setting(
        50_000,
        "flush a datasource's buffer at this many rows",
        _positive_int,
    )
    flush_bytes: int = setting(
        16 * 1024 * 1024,
        "flush a datasource's buffer at this many bytes",
        _positive_int,
    )
    flush_interval: float = setting(
        1.0,
        "flush a datasource's buffer after this many seconds",
        _positive_float,
    )
    flush_retry_max: float = setting(
        30.0,
        "longest wait, in seconds, between two tries of a flush the warehouse failed for a "
        "reason that may pass (unreachable, timeouts, Keeper lost, too many parts): the wait "
        "doubles from 0.2 s up to this, with full jitter. Refusals that cannot pass (unknown "
        "column, type mismatch, unknown table) are not retried: the batch goes to quarantine",
        _positive_float,
    )
    startup_retry_max: float = setting(
        10.0,
        "longest wait, in seconds, between two tries to reach the warehouse at start-up; "
        "until it answers the services listen, alive but not ready, instead of exiting",
        _positive_float,
    )
    max_body_bytes: int = setting(
        10 * 1024 * 1024,
        "largest Events API body accepted, in bytes",
        _positive_int,
    )
    max_field_bytes: int = setting(
        64 * 1024,
        "longest string an event field may hold; longer rows are quarantined",
        _positive_int,
    )
    max_quarantine_rows: int = setting(
        1000,
        "invalid events one request may carry into quarantine; a request with more is refused "
        "whole (400) and nothing of it is stored",
        _positive_int,
    )
    quarantine_ttl_days: int = setting(
        30,
        "days a quarantined row is kept (a TTL on every <datasource>_quarantine table)",
        _positive_int,
    )
    wal_dir: Path | None = setting(
        None,
        "ingest write-ahead log directory (persist it); default <data-dir>/wal",
    )
    wal_max_bytes: int = setting(
        256 * 1024 * 1024,
        "bytes the write-ahead log may hold on disk (unflushed rows stay in memory too); past "
        "it ingest answers 429",
        _positive_int,
    )
    wal_segment_bytes: int = setting(
        16 * 1024 * 1024,
        "size at which a write-ahead log segment file is closed",
        _positive_int,
    )
    metrics_port: int = setting(9464, "Prometheus metrics port of the ingest service (0 = off)")
    max_string_length: int = setting(
        1024,
        "longest query parameter string accepted, in characters",
        _positive_int,
    )
    query_concurrency: int = setting(
        0,
        "pipe queries a process runs side by side: chDB sessions (one thread each) or "
        "connections to the ClickHouse server; 0 = the engine's cores (this machine's for "
        "chDB, the server's max_threads for ClickHouse)",
        _non_negative_int,
    )
    answer_cache_bytes: int = setting(
        256 * 1024 * 1024,
        "chDB only: memory the built-in pipes' answers may be kept in, in bytes (0 = none "
        "kept); an answer is served again only until the next write to the data",
        _non_negative_int,
    )
    sql_timeout: float = setting(
        10.0,
        "seconds a Query API (/v0/sql) query may run",
        _positive_float,
    )
    sql_max_memory_bytes: int = setting(
        1024 * 1024 * 1024,
        "memory one Query API query may use, in bytes",
        _positive_int,
    )
    sql_max_threads: int = setting(1, "engine threads one Query API query may use", _positive_int)
    sql_max_rows: int = setting(
        10_000,
        "rows a Query API answer may have; a larger result is an error naming the cap",
        _positive_int,
    )
    sql_max_queries: int = setting(
        4,
        "Query API queries running or waiting at once in a process; more answer 429",
        _positive_int,
    )
    sql_max_queries_per_token: int = setting(
        2,
        "Query API queries one token may have running or waiting at once; more answer 429",
        _positive_int,
    )
    shutdown_grace: float = setting(
        10.0,
        "seconds in-flight requests get to finish at shutdown",
        _positive_float,
    )
    header_timeout: float = setting(
        15.0,
        "seconds a client connection to the gateway gets to send a complete request head, "
        "from when it opens or its last answer (idle keep-alive connections close then too); "
        "a request body that stalls that long is answered 408",
        _positive_float,
    )
    allowed_origins: str = setting("*", "comma-separated CORS origins the gateway allows (* = any)")
    gateway: str = setting(
        "pipit",
        "which JSON gateway serves HTTP: pipit (built in) or envoy (the real Envoy)",
        _gateway_kind,
    )
    log_level: str = setting("info", "debug, info, warning or error")
    manage_schema: bool = setting(
        True,
        "create missing tables at start-up; false where `pipit migrate` owns the schema (a "
        "ClickHouse cluster)",
        _boolean,
    )
    project: Path | None = setting(
        None,
        "a project folder (Tinybird datafiles, or Pipit's protos and SQL) to build and deploy "
        "at start; empty: the newest deployment, else the built-in tutorials",
    )
    insert_quorum: str = setting(
        "0",
        "replicas that must hold a flush before it counts as written: auto (a majority of the "
        "shard's replicas) or a number; 0 or 1 = off (single node)",
        _insert_quorum,
    )
    import_max_body_bytes: int = setting(
        16 * 1024 * 1024 * 1024,
        "largest Data Sources API body (POST /v0/datasources: a multipart or raw file) the "
        "gateways and the ingest service accept, in bytes; it streams through, so memory does "
        "not grow with it, but a Parquet body is spooled to <data-dir>/imports up to this "
        "size",
        _positive_int,
    )
    import_max_url_bytes: int = setting(
        64 * 1024 * 1024 * 1024,
        "largest file a Data Sources API import fetches from a url=, in bytes (it is spooled "
        "to <data-dir>/imports while it is read)",
        _positive_int,
    )
    import_batch_rows: int = setting(
        50_000,
        "rows an import reads, validates and inserts at a time: what bounds its memory",
        _positive_int,
    )
    import_url_timeout: float = setting(
        60.0,
        "seconds an import's url= fetch may wait to connect or for the next bytes",
        _positive_float,
    )
    import_allow_private_urls: bool = setting(
        False,
        "let imports fetch url=s on private, loopback or link-local addresses (off: only "
        "public addresses, so a url cannot reach the services' own network)",
        _boolean,
    )
    s3_endpoint_url: str = setting(
        "",
        "S3 connector: the S3 API's URL (an S3-compatible store); empty = AWS",
    )
    s3_region: str = setting("us-east-1", "S3 connector: the region of the buckets")
    s3_access_key_id: str = setting(
        "",
        "S3 connector: access key id; empty = boto3's usual chain (environment, instance role)",
    )
    s3_secret_access_key: str = setting("", "S3 connector: the secret of --s3-access-key-id")
    s3_imports: str = setting(
        "",
        "S3 connector: scheduled imports, `datasource=s3://bucket/prefix/*.parquet`, "
        "separated by spaces; each new file (key and ETag) is loaded exactly once",
    )
    s3_poll_interval: float = setting(
        60.0,
        "S3 connector: seconds between two looks for new files of --s3-imports",
        _positive_float,
    )
    job_lease: float = setting(
        60.0,
        "seconds a running Data Sources API job may go without a sign of life (its process "
        "renews it every third of this) before any ingest replica records it as failed: the "
        "process running it died",
        _positive_float,
    )

    def tls_files(self) -> tuple[Path, Path] | None:
        """(certificate, key) PEM files when the listeners (gRPC and gateway) serve TLS."""
        if self.tls_cert is None and self.tls_key is None:
            return None
        if self.tls_cert is None or self.tls_key is None:
            raise SystemExit("TLS needs both --tls-cert and --tls-key")
        return self.tls_cert, self.tls_key

    def server_tls(self) -> tuple[bytes, bytes] | None:
        """(certificate, key) PEM bytes when TLS is configured for listeners."""
        files = self.tls_files()
        return None if files is None else (files[0].read_bytes(), files[1].read_bytes())

    @property
    def tokens_path(self) -> Path:
        """The scoped-token file the services read and `pipit token` writes."""
        return self.tokens_file if self.tokens_file is not None else self.data_dir / "tokens.json"

    @property
    def wal_path(self) -> Path:
        """Where the ingest write-ahead log lives."""
        return self.wal_dir if self.wal_dir is not None else self.data_dir / "wal"

    @property
    def embedded(self) -> bool:
        """True when the warehouse is chDB in-process rather than a ClickHouse server."""
        return not self.clickhouse_url


_PARSERS: dict[str, Callable[[str], Any]] = {
    "str": str,
    "int": int,
    "float": float,
    "Path": Path,
    "Path | None": Path,
}


def _parser(declared: Field[Any]) -> Callable[[str], Any]:
    # Annotations are text here (`from __future__ import annotations`).
    return declared.metadata["parse"] or _PARSERS[str(declared.type)]


def env_name(field_name: str) -> str:
    return f"PIPIT_{field_name.upper()}"


def add_arguments(parser: argparse.ArgumentParser, names: Sequence[str] | None = None) -> None:
    """Adds a flag for each named setting (all when `names` is None). Flags default to
    None so that `load` can tell an absent flag from an explicit one."""
    for f in fields(Settings):
        if names is not None and f.name not in names:
            continue
        help_text = f.metadata["help"]
        parser.add_argument(
            "--" + f.name.replace("_", "-"),
            dest=f.name,
            default=None,
            help=f"{help_text} (env {env_name(f.name)}, default {f.default!s})",
        )


def load(
    args: argparse.Namespace | None = None,
    environ: Mapping[str, str] | None = None,
    **overrides: Any,
) -> Settings:
    """Builds Settings from flags, then environment, then defaults. Keyword overrides
    (typed values) win over everything; tests use them."""
    environ = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    for f in fields(Settings):
        parse = _parser(f)
        raw = getattr(args, f.name, None) if args is not None else None
        if raw is None:
            raw = environ.get(env_name(f.name))
        if raw is None:
            continue
        try:
            values[f.name] = parse(raw)
        except ValueError as exc:
            source = "--" + f.name.replace("_", "-")
            raise SystemExit(f"invalid {source} / {env_name(f.name)}: {exc}") from exc
    values.update(overrides)
    return Settings(**values)
