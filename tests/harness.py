"""Starts the suite in-process for tests: ingest and query gRPC servers on free ports
over a given warehouse, built as `pipit up` builds them (pipit.cli.start_services),
optionally the gateway in front, and stubs that carry the token."""

from __future__ import annotations

import atexit
import itertools
import os
import shutil
import socket
import tempfile
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
from tiers import require_tier

from common import config
from common.auth import Access
from common.datasources import Datasource
from common.grpc_server import GrpcServer
from common.warehouse.base import Warehouse
from pipit.cli import start_services
from pipit.ingest.v1 import ingest_service_pb2_grpc
from pipit.project.runtime import CurrentProject
from pipit.project.serving import start_serving
from pipit.query.v1 import query_service_pb2_grpc
from services.ingest.server import RunningIngest

TOKEN = "test-admin-token"
AUTH = (("authorization", f"Bearer {TOKEN}"),)


_scratch_root: Path | None = None


def scratch_dir(prefix: str) -> Path:
    """A fresh directory for a suite's WAL or tokens file, under one root per test process
    that is removed when the process exits: suites are stopped by many tests, some not at
    all, and a directory per suite would otherwise outlive the run (hundreds per suite run)."""
    global _scratch_root
    if _scratch_root is None:
        _scratch_root = Path(tempfile.mkdtemp(prefix="pipit-tests-"))
        atexit.register(shutil.rmtree, _scratch_root, ignore_errors=True)
    return Path(tempfile.mkdtemp(prefix=prefix, dir=_scratch_root))


def free_port() -> int:
    """A port to start a server on, free when asked and handed out by no other test
    process of this run (pytest-xdist's workers each take their own block)."""
    with _ports_lock:  # a generator is not to be advanced from two threads at once
        return next(_ports)


def _bindable(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _port_block() -> range | None:
    """This worker's ports: its share of those below the kernel's ephemeral range. A port
    there is never the one bind(0) or an outgoing connection takes meanwhile — from this
    process, another worker or a service — as a port from bind(0) could be once released."""
    try:
        low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")  # "gw0", "gw1", … or unset
    index = int(worker[2:]) if worker[2:].isdigit() else 0
    size = (low - FIRST_PORT) // max(workers, 1)
    if size < 1_000:
        return None
    return range(FIRST_PORT + index * size, FIRST_PORT + (index + 1) * size)


def _port_numbers() -> Iterator[int]:
    block = _port_block()
    if block is None:  # no room below the ephemeral range (or not Linux): the kernel's pick
        while True:
            with socket.socket() as sock:
                sock.bind(("127.0.0.1", 0))
                yield sock.getsockname()[1]
    # From a place of the block set by the process id, so two runs at once rarely meet.
    start = os.getpid() % len(block)
    for i in itertools.count():
        port = block[(start + i) % len(block)]
        if _bindable(port):
            yield port


# The lowest port handed out: above the registered services most machines run.
FIRST_PORT = 10_000
_ports = _port_numbers()
_ports_lock = threading.Lock()


@dataclass
class Suite:
    """A running suite and clients for it."""

    warehouse: Warehouse
    ingest: RunningIngest
    query: GrpcServer
    current: CurrentProject
    access: Access | None = None  # the services' tokens and rate limits
    channels: list[grpc.aio.Channel] = field(default_factory=list)
    gateway_runner: Any = None
    gateway_url: str = ""

    def _channel(self, port: int) -> grpc.aio.Channel:
        channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
        self.channels.append(channel)
        return channel

    def ingest_stub(self) -> ingest_service_pb2_grpc.IngestServiceStub:
        return ingest_service_pb2_grpc.IngestServiceStub(self._channel(self.ingest.port))

    def query_stub(self) -> query_service_pb2_grpc.QueryServiceStub:
        return query_service_pb2_grpc.QueryServiceStub(self._channel(self.query.port))

    async def stop(self) -> None:
        if self.gateway_runner is not None:
            await self.gateway_runner.cleanup()
        for channel in self.channels:
            await channel.close()
        await self.ingest.stop(1.0)
        await self.query.stop(1.0)


async def start_suite(
    warehouse: Warehouse,
    *,
    gateway: bool = True,
    datasources: Sequence[Datasource] = (),
    **overrides: Any,
) -> Suite:
    """The suite over `warehouse`; its Events API and ingest also take events of
    `datasources` (tables the caller creates)."""
    require_tier("e2e", "starts a whole suite")
    defaults = {
        "admin_token": TOKEN,
        "ingest_port": 0,
        "query_port": 0,
        "metrics_port": 0,
        "flush_interval": 0.05,
        # Downloads being imported are spooled here: never the repo's ./.pipit.
        "data_dir": scratch_dir("data-"),
        "wal_dir": scratch_dir("wal-"),
        "tokens_file": scratch_dir("tokens-") / "tokens.json",
    }
    settings = config.load(environ={}, **{**defaults, **overrides})
    access = Access.for_process(settings, settings.admin_token)
    current = await start_serving(
        warehouse,
        manage_schema=True,
        quarantine_ttl_days=settings.quarantine_ttl_days,
        project_dir=settings.project,
    )
    # Datasources the caller made (their tables too) are served beside the project's.
    current.project.datasources.update({ds.name: ds for ds in datasources})
    ingest, query = await start_services(settings, warehouse, access, current)
    suite = Suite(warehouse, ingest, query, current, access)
    if gateway:
        from gateway.app import create_app, serve_gateway
        from services.ingest.service import SERVICE as INGEST
        from services.query.service import SERVICE as QUERY
        from services.query.sql_api import SERVICE as SQL

        port = free_port()
        app = create_app(
            {
                INGEST.full_name: f"127.0.0.1:{ingest.port}",
                QUERY.full_name: f"127.0.0.1:{query.port}",
                SQL.full_name: f"127.0.0.1:{query.port}",
            },
            max_body_bytes=settings.max_body_bytes,
            import_max_body_bytes=settings.import_max_body_bytes,
            header_timeout=settings.header_timeout,
            # As `pipit up` does: the gateway refuses unknown tokens before reading a body,
            # asking the services' own token store.
            token_store=access.tokens,
        )
        suite.gateway_runner = await serve_gateway(app, "127.0.0.1", port)
        suite.gateway_url = f"http://127.0.0.1:{port}"
    return suite
