"""Jobs whose process died do not stay `working` for ever: each running job is a lease its
process renews (the job saved again every third of `job_lease` seconds, whether or not it made
progress), and every ingest replica, at start and then as often, records as failed, with the
reason, any job waiting or working whose last save is older than the lease.

Why a lease rather than "on start, fail the jobs this process left": replicas share the jobs
table and a pod that dies may never come back under its name, so no process can tell its own
dead jobs from a live replica's except by their age. A job is not resumed: a body sent in the
request is gone with its connection, and a URL's file may have changed since; its batches so
far stay (their deduplication tokens are the job's own, so nothing doubles), and a `replace`
job's staging table never replaced anything.

A job whose process only stalled past the lease (a warehouse outage longer than it) is marked
failed too; if its process then saves it again, that later save wins."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterator

import structlog

from common.warehouse.base import WarehouseError
from pipit.ingest.v1 import datasources_service_pb2 as pb
from services.ingest import jobs

log = structlog.get_logger("job_leases")


def abandoned_reason(lease: float) -> str:
    return (
        "the ingest process running this job stopped before it finished "
        f"(no sign of it for {lease:g} s); the rows loaded so far stay"
    )


class JobLeases:
    """The jobs this process runs (renewed while held) and the reaper of everyone's stale
    ones; `start` once on the serving loop, `stop` at shutdown."""

    def __init__(self, store: jobs.JobStore, lease: float) -> None:
        self._store = store
        self._lease = lease
        self._held: dict[str, pb.Job] = {}
        self._task: asyncio.Task[None] | None = None

    @contextlib.contextmanager
    def hold(self, job: pb.Job) -> Iterator[None]:
        """Renews `job` while the block runs (the block saves it when it ends)."""
        self._held[job.id] = job
        try:
            yield
        finally:
            self._held.pop(job.id, None)

    async def start(self) -> None:
        """Reaps what dead processes left, then keeps renewing and reaping in the background
        (once: a start-up retried after the warehouse came back calls it again)."""
        if self._task is not None:
            return
        await self.reap()
        self._task = asyncio.get_running_loop().create_task(self._loop())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self._lease / 3)
            await self.renew()
            await self.reap()

    async def renew(self) -> None:
        """Saves each held job as it is now: its lease starts again."""
        for job in list(self._held.values()):
            copy = pb.Job()
            copy.CopyFrom(job)
            try:
                await self._store.save(copy)
            except WarehouseError as exc:
                log.warning("job lease not renewed", job=job.id, error=str(exc)[:300])

    async def reap(self) -> list[str]:
        """Records as failed every unfinished job not saved for a lease; their ids."""
        cutoff = time.time_ns() - int(self._lease * 1e9)
        try:
            stale = await self._store.unfinished_before(cutoff)
        except WarehouseError as exc:
            log.warning("stale jobs not looked for", error=str(exc)[:300])
            return []
        reaped = []
        for job in stale:
            if job.id in self._held:
                continue  # ours, alive: its renewal is only late
            job.status = jobs.ERROR
            job.error = abandoned_reason(self._lease)
            job.errors.append(job.error)
            try:
                await self._store.save(job)
            except WarehouseError as exc:
                log.warning("stale job not recorded", job=job.id, error=str(exc)[:300])
                continue
            reaped.append(job.id)
            log.warning("job abandoned by its process", job=job.id, kind=job.kind)
        return reaped
