"""Scheduled S3 imports (PIPIT_S3_IMPORTS): every PIPIT_S3_POLL_INTERVAL seconds, each
pattern's new files are loaded into its datasource as one job. Which files are new is the
warehouse's ledger's answer (services/ingest/s3_source.py), so a restart, or another replica
looking at the same time, never loads a file twice."""

from __future__ import annotations

import asyncio
import contextlib

import structlog

from common.warehouse.base import WarehouseError
from pipit.project.runtime import CurrentProject
from services.ingest.imports import Importer
from services.ingest.s3_source import S3Error, S3Pattern

log = structlog.get_logger("s3")


class S3Schedule:
    """The loop that looks for new files."""

    def __init__(
        self,
        importer: Importer,
        current: CurrentProject,
        imports: list[tuple[str, S3Pattern]],
        interval: float,
    ) -> None:
        self._importer = importer
        self._current = current
        self._imports = imports
        self._interval = interval
        self._task: asyncio.Task[None] | None = None
        self._looked = asyncio.Condition()
        self.looks = 0
        """Complete looks at every pattern so far."""

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._loop())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def next_look(self) -> None:
        """Until a look that starts after this call has finished."""
        async with self._looked:
            target = self.looks + 2  # the one under way may have started before
            await self._looked.wait_for(lambda: self.looks >= target)

    async def look(self) -> None:
        """Loads the new files of every pattern, one job per pattern with any."""
        for name, pattern in self._imports:
            ds = self._current.project.datasources.get(name)
            if ds is None:
                log.warning("s3 import of a datasource not deployed", datasource=name)
                continue
            try:
                job = await self._importer.run_s3(ds, pattern)
            except (S3Error, WarehouseError) as exc:
                log.warning("s3 look failed", pattern=str(pattern), error=str(exc)[:300])
                continue
            if job is not None:
                log.info("s3 files loaded", pattern=str(pattern), job=job.id, status=job.status)

    async def _loop(self) -> None:
        while True:
            await self.look()
            async with self._looked:
                self.looks += 1
                self._looked.notify_all()
            await asyncio.sleep(self._interval)
