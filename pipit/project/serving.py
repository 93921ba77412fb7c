"""Which project a process serves when it starts: the project named by `--project`
(built and deployed first), else the newest deployment in the warehouse, else the
built-in tutorials; and how it follows later deployments."""

from __future__ import annotations

import asyncio
from pathlib import Path

import structlog

from common.token_table import TokenTable
from common.warehouse.base import Warehouse, WarehouseError
from common.warehouse.failures import unreachable
from pipit.project.artifact import builtin
from pipit.project.compiler import read_files
from pipit.project.deploy import Deployer
from pipit.project.runtime import CurrentProject, Project
from pipit.project.store import DeploymentStore

log = structlog.get_logger("deployments")


async def newest_or_builtin(store: DeploymentStore) -> Project:
    """The newest deployment, or the built-in tutorials when there is none (or the
    deployments table is not there yet)."""
    try:
        artifact = await store.newest()
    except WarehouseError as exc:
        if unreachable(exc):
            raise  # not "no deployments": a start-up retries, rather than serve the wrong one
        log.info("no deployments table yet; serving the built-in project", error=str(exc)[:200])
        artifact = None
    return Project(artifact if artifact is not None else builtin())


async def start_serving(
    warehouse: Warehouse,
    *,
    manage_schema: bool,
    quarantine_ttl_days: int,
    project_dir: Path | None = None,
) -> CurrentProject:
    """The project this process serves now, its tables in place when it manages them."""
    store = DeploymentStore(warehouse)
    if manage_schema:
        await store.ensure()
        # The Tokens API's tokens live beside the deployments (common/token_table.py).
        await TokenTable(warehouse).ensure()
    current = CurrentProject(await newest_or_builtin(store))
    if project_dir is not None:
        deployer = Deployer(warehouse, current, store, quarantine_ttl_days)
        files = await asyncio.to_thread(read_files, project_dir)
        name = await asyncio.to_thread(lambda: project_dir.resolve().name)
        deployed = await deployer.deploy(files, name=name)
        log.info("deployed the project given at start", version=deployed.version)
    if manage_schema:
        await warehouse.ensure_schema(
            list(current.project.datasources.values()), quarantine_ttl_days=quarantine_ttl_days
        )
    return current
