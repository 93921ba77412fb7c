"""Starting a service against a warehouse that may not answer yet.

A service needs the warehouse before it can serve: the project it serves (the newest
deployment) lives there. When the warehouse does not answer at start (ClickHouse
restarting after an outage, a cluster still coming up), exiting would have Kubernetes
restart the pod again and again (CrashLoopBackOff, its back-off growing to minutes after
the warehouse is back). Instead the service listens, alive and not ready, and tries again
with capped exponential back-off and full jitter (`--startup-retry-max`) until the
warehouse answers, then serves, in the same process."""

from __future__ import annotations

import asyncio
import contextlib

import structlog
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type, wait_random_exponential

from common.config import Settings
from common.warehouse.base import Warehouse, WarehouseError
from pipit.project.artifact import builtin
from pipit.project.compiler import BuildFailed
from pipit.project.deploy import DeployRefused
from pipit.project.runtime import CurrentProject, Project

log = structlog.get_logger("pipit")

FIRST_RETRY_SECONDS = 0.2


async def load_project(settings: Settings, warehouse: Warehouse) -> CurrentProject:
    """Opens the warehouse and returns the project to serve from it (its tables created
    unless `pipit migrate` owns the schema: on a ClickHouse cluster the tables are
    Replicated + Distributed, and a service creating plain MergeTree tables there would
    shadow them). Raises WarehouseError (or OSError) when the warehouse does not answer."""
    from pipit.project.serving import start_serving

    await warehouse.open()
    try:
        return await start_serving(
            warehouse,
            manage_schema=settings.manage_schema,
            quarantine_ttl_days=settings.quarantine_ttl_days,
            project_dir=settings.project,
        )
    except (BuildFailed, DeployRefused) as exc:
        raise SystemExit(f"pipit: the project was not deployed:\n{exc}") from None


async def first_try(settings: Settings, warehouse: Warehouse) -> CurrentProject | None:
    """`load_project`, once; None when the warehouse did not answer."""
    try:
        return await load_project(settings, warehouse)
    except (WarehouseError, OSError) as exc:
        log.error("the warehouse does not answer; will retry, not ready", error=str(exc)[:300])
        await warehouse.close()
        return None


def placeholder() -> CurrentProject:
    """What a service that has not reached the warehouse holds (and refuses calls for):
    the built-in project, swapped for the one in service once it is known."""
    return CurrentProject(Project(builtin()))


def _retrying(settings: Settings, doing: str) -> AsyncRetrying:
    """Tries until the warehouse answers (other failures are raised as they are)."""

    def failed(state: RetryCallState) -> None:
        log.warning(
            f"the warehouse does not answer yet ({doing}); will retry",
            retry_in=round(state.upcoming_sleep, 2),
            error=str(state.outcome.exception())[:300],
        )

    return AsyncRetrying(
        retry=retry_if_exception_type((WarehouseError, OSError)),
        wait=wait_random_exponential(
            multiplier=FIRST_RETRY_SECONDS, max=settings.startup_retry_max
        ),
        before_sleep=failed,
        reraise=True,
    )


async def until_opened(settings: Settings, warehouse: Warehouse) -> None:
    """Opens the warehouse, tried until it answers."""
    async for attempt in _retrying(settings, "opening"):
        with attempt:
            try:
                await warehouse.open()
            except (WarehouseError, OSError):
                await warehouse.close()  # a half-open warehouse starts over
                raise


async def until_loaded(
    settings: Settings, warehouse: Warehouse, stop: asyncio.Event
) -> CurrentProject | None:
    """`load_project`, tried until the warehouse answers; None when `stop` is set first."""

    async def retried() -> CurrentProject:
        async for attempt in _retrying(settings, "loading the project"):
            with attempt:
                try:
                    return await load_project(settings, warehouse)
                except (WarehouseError, OSError):
                    await warehouse.close()  # a half-open warehouse starts over
                    raise
        raise AssertionError("unreachable: the retries end in a return or a raise")

    loading = asyncio.create_task(retried(), name="reach-warehouse")
    stopping = asyncio.create_task(stop.wait(), name="stop-reaching")
    await asyncio.wait((loading, stopping), return_when=asyncio.FIRST_COMPLETED)
    stopping.cancel()
    if not loading.done():
        loading.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await loading
        return None
    log.info("the warehouse answers; serving")
    return loading.result()
