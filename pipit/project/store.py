"""Where deployments are kept: a table in the warehouse, which every replica of every
service can read. Each deploy adds a row (the whole built project); the newest row is the
project in service. Services poll the newest version once a second and load a project
only when it changed."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

import orjson
import structlog

from common.background import in_background
from common.warehouse.base import Warehouse
from pipit.project.artifact import Artifact
from pipit.project.runtime import CurrentProject, Project

log = structlog.get_logger("deployments")

TABLE = "_pipit_deployments"
POLL_SECONDS = 1.0


def create_sql(database: str) -> str:
    return (
        f"CREATE TABLE IF NOT EXISTS `{database}`.`{TABLE}` (\n"
        "    `version` String,\n"
        "    `deployed_at` DateTime64(6, 'UTC'),\n"
        "    `project` String\n"
        ")\n"
        "ENGINE = MergeTree\n"
        "ORDER BY deployed_at"
    )


class DeploymentStore:
    """The deployments table of one warehouse database."""

    def __init__(self, warehouse: Warehouse) -> None:
        self._warehouse = warehouse

    async def ensure(self) -> None:
        await self._warehouse.execute(create_sql(self._warehouse.database))

    async def record(self, artifact: Artifact) -> None:
        """Adds a deployment; from now on it is the one in service."""
        row = {
            "version": artifact.version,
            "deployed_at": datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S.%f"),
            "project": artifact.to_bytes().decode(),
        }
        await self._warehouse.insert_json_rows(TABLE, list(row), orjson.dumps(row))

    async def newest_version(self) -> str:
        """The version in service, or "" when nothing was ever deployed."""
        newest = f"SELECT version FROM `{TABLE}` ORDER BY deployed_at DESC LIMIT 1"  # noqa: S608
        result = await self._warehouse.query(newest, {})
        return str(result.data[0]["version"]) if result.data else ""

    async def load(self, version: str) -> Artifact:
        result = await self._warehouse.query(
            f"SELECT project FROM `{TABLE}` WHERE version = {{version:String}} "  # noqa: S608
            "ORDER BY deployed_at DESC LIMIT 1",
            {"version": version},
        )
        if not result.data:
            raise LookupError(f"no deployment {version}")
        return Artifact.from_bytes(str(result.data[0]["project"]).encode())

    async def newest(self) -> Artifact | None:
        version = await self.newest_version()
        return await self.load(version) if version else None


async def follow(
    store: DeploymentStore,
    current: CurrentProject,
    *,
    every: float = POLL_SECONDS,
    loaded: Callable[[Project], Awaitable[None]] | None = None,
) -> None:
    """Keeps `current` on the newest deployment until cancelled. A failed poll (the
    warehouse away) keeps the project in service and tries again."""
    while True:
        await asyncio.sleep(every)
        try:
            version = await store.newest_version()
            if version and version != current.project.version:
                project = Project(await store.load(version))
                if loaded is not None:
                    await loaded(project)
                if current.swap(project):
                    log.info("serving deployment", version=version, project=project.name)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - serve on; the next poll tries again
            log.warning("checking for deployments failed", error=str(exc)[:300])


@contextlib.asynccontextmanager
async def following(store: DeploymentStore, current: CurrentProject, **kwargs):
    """`follow` as a background task for the duration of the block."""
    async with in_background(follow(store, current, **kwargs), "follow-deployments") as task:
        yield task
