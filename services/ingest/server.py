"""Starting and stopping the ingest service: the write-ahead log (replayed first), the
batcher, the gRPC server, the metrics endpoint, and a shutdown that lets in-flight
requests finish and then flushes every buffered row."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import BinaryIO

import structlog
from aiohttp import web
from grpc_health.v1 import health_pb2

from common.auth import Access
from common.config import Settings
from common.grpc_server import GrpcServer, start_grpc_server
from common.project_handlers import ScopeRules
from common.warehouse.base import Warehouse
from pipit.project.runtime import CurrentProject
from services.ingest.batcher import Batcher, FlushPolicy
from services.ingest.datasources_api import SERVICE as DATASOURCES_SERVICE
from services.ingest.datasources_api import DatasourcesApi
from services.ingest.imports import Importer
from services.ingest.jobs import JobStore
from services.ingest.metrics import serve_metrics
from services.ingest.s3_schedule import S3Schedule
from services.ingest.s3_source import S3Error, scheduled_imports
from services.ingest.service import SERVICE, Ingestor, IngestService
from services.ingest.wal import WriteAheadLog
from services.ingest.wal_files import WalInUse, lock

log = structlog.get_logger("ingest")


@dataclass
class RunningIngest:
    """A serving ingest service."""

    grpc: GrpcServer
    batcher: Batcher
    wal: WriteAheadLog
    importer: Importer
    datasources: DatasourcesApi
    jobs: JobStore
    manage_schema: bool
    wal_lock: BinaryIO | None = None
    s3_schedule: S3Schedule | None = None
    metrics: web.AppRunner | None = None
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)

    async def open(self) -> None:
        """Serves calls, once the warehouse answers (a service started `ready=False`):
        its own tables first, where it manages the schema."""
        if self.manage_schema:
            await self.jobs.ensure()
            await self.importer.ledger.ensure()
        # Jobs a dead process left working end as failed, now and while this process runs.
        await self.importer.leases.start()
        await self.grpc.open()

    @property
    def port(self) -> int:
        return self.grpc.port

    def readiness(self, full: bool) -> None:
        """Readiness follows the write-ahead log's room, not the warehouse: the service
        acknowledges events into the log whether or not flushes succeed, so it is
        NOT_SERVING for the IngestService only while the log is full (answering 429).
        Liveness (service "") stays SERVING, so an orchestrator stops routing new
        clients here but does not restart the pod."""
        status = (
            health_pb2.HealthCheckResponse.NOT_SERVING
            if full
            else health_pb2.HealthCheckResponse.SERVING
        )
        task = asyncio.get_running_loop().create_task(
            self.grpc.health.set(SERVICE.full_name, status)
        )
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def stop(self, grace: float) -> None:
        """Stops taking requests, lets in-flight ones finish, then flushes everything."""
        await self.grpc.stop(grace)
        if self.s3_schedule is not None:
            await self.s3_schedule.stop()
        await self.importer.close()
        await self.importer.leases.stop()
        await self.batcher.close(deadline=grace)
        if self.wal_lock is not None:
            self.wal_lock.close()
        if self.metrics is not None:
            await self.metrics.cleanup()
        log.info("ingest stopped", unflushed_rows=self.batcher.buffered_rows)


async def start_ingest(
    settings: Settings,
    warehouse: Warehouse,
    access: Access,
    current: CurrentProject,
    port: int | None = None,
    metrics_port: int | None = None,
    ready: bool = True,
) -> RunningIngest:
    """Replays the write-ahead log, then serves the ingest service of the project in
    service (`current`) on `settings.host` (port 0 picks a free one), admitting callers
    through the process's `access`. `ready=False`: listening, alive, refusing calls until
    `open()` (the warehouse has not answered yet; replayed batches wait in the log)."""
    policy = FlushPolicy(
        max_rows=settings.flush_rows,
        max_bytes=settings.flush_bytes,
        max_age=settings.flush_interval,
        retry_max=settings.flush_retry_max,
    )
    # Configuration is refused before anything is opened.
    try:
        s3_imports = scheduled_imports(settings.s3_imports)
    except S3Error as exc:
        raise SystemExit(str(exc)) from None
    # Held while this process may write the log, so `pipit drain` cannot replay it too.
    try:
        wal_lock = await asyncio.to_thread(lock, settings.wal_path)
    except WalInUse as exc:
        raise SystemExit(f"pipit ingest: {exc}") from None
    wal = WriteAheadLog(
        settings.wal_path,
        max_bytes=settings.wal_max_bytes,
        segment_bytes=settings.wal_segment_bytes,
    )
    batcher = Batcher(warehouse, policy, wal)
    running: RunningIngest | None = None
    try:
        await batcher.start()
        running = await _serve(settings, warehouse, access, current, port, batcher, wal, wal_lock)
        if ready:
            await running.open()
        if s3_imports:
            running.s3_schedule = S3Schedule(
                running.importer, current, s3_imports, settings.s3_poll_interval
            )
            running.s3_schedule.start()
        wal.on_full(running.readiness)
        metrics_port = settings.metrics_port if metrics_port is None else metrics_port
        if metrics_port:
            running.metrics = await serve_metrics(settings.host, metrics_port)
    except BaseException:
        # A start that fails half-way (a port in use, a warehouse refusing the schema) lets
        # go of what it opened: the log keeps its rows for the next start, which must find
        # its lock free, and no task of the batcher or the log runs on in this process.
        if running is not None:
            await running.stop(0)
        else:
            try:
                await batcher.close(deadline=0)
            finally:
                wal_lock.close()
        raise
    log.info(
        "ingest serving",
        port=running.port,
        wal=str(settings.wal_path),
        flush=policy.__dict__,
        metrics_port=metrics_port or None,
    )
    return running


async def _serve(
    settings: Settings,
    warehouse: Warehouse,
    access: Access,
    current: CurrentProject,
    port: int | None,
    batcher: Batcher,
    wal: WriteAheadLog,
    wal_lock: BinaryIO,
) -> RunningIngest:
    """The ingest and Data Sources services over `batcher`, listening but not yet ready."""
    ingestor = Ingestor(batcher, current, settings.max_field_bytes, settings.max_quarantine_rows)
    service = IngestService(ingestor, settings.max_body_bytes, current)
    jobs = JobStore(warehouse)
    importer = Importer(warehouse, jobs, settings)
    datasources = DatasourcesApi(
        warehouse,
        jobs,
        importer,
        current,
        settings.import_allow_private_urls,
        settings.import_max_body_bytes,
    )
    server = await start_grpc_server(
        [service.generic_handler(), datasources.generic_handler()],
        [SERVICE.full_name, DATASOURCES_SERVICE.full_name],
        host=settings.host,
        port=settings.ingest_port if port is None else port,
        access=access,
        scope_rules=ScopeRules(datasources.scope_rules(), current, IngestService.scope_rules),
        tls=settings.server_tls(),
        current=current,
        project_names=lambda p: [p.ingest_service.full_name] if p.ingest_service else [],
        ready=False,
    )
    return RunningIngest(
        server, batcher, wal, importer, datasources, jobs, settings.manage_schema, wal_lock
    )
