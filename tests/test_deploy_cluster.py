"""A deploy into a cluster's database is refused before anything runs: there the datasources
are Distributed tables over every shard's Replicated `_local` one (`pipit migrate
--cluster`), while a deploy builds in a scratch database and creates and alters tables on
the one node a connection reaches. Let through, it failed part-way with the engine's error
on the first ALTER of a Distributed table, or left a new datasource's table unreplicated
on one node.

No ClickHouse cluster runs here (chDB has none, and no server package exists): the node is
chDB whose `system.tables` shows a datasource's engine as a Distributed one, every
statement sent to it recorded (tests/cluster_node.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from cluster_node import CLUSTER, Aborted, Context, DistributedNode
from conftest import unique_database

from common.config import Settings
from common.datasources import registry
from pipit.deploy.v1 import deploy_service_pb2 as pb
from pipit.project.artifact import builtin
from pipit.project.deploy import Deployer, DeployRefused
from pipit.project.runtime import CurrentProject, Project
from pipit.project.store import DeploymentStore
from pipit.startup import load_project
from services.query.deploy_api import DeployApi

DS = "ab_test_events"

PAGE_VIEWS = """SCHEMA >
    `timestamp` DateTime `json:$.timestamp`,
    `user_id` String `json:$.user_id`

ENGINE "MergeTree"
ENGINE_SORTING_KEY "timestamp"
"""
VIEWS = """NODE endpoint
SQL >
    SELECT count() AS views FROM page_views

TYPE endpoint
"""
FILES = {"datasources/page_views.datasource": PAGE_VIEWS, "pipes/views.pipe": VIEWS}


class ClusterNode(DistributedNode):
    """A node of a cluster as a deploy sees it: DS's table is Distributed. Records every
    statement sent after `watch()`, none of which runs."""

    def __init__(self, path: Path, database: str) -> None:
        super().__init__(path, database, DS)
        self.sent: list[str] | None = None

    def watch(self) -> None:
        self.sent = []

    async def execute(self, sql: str) -> None:
        if self.sent is not None:
            self.sent.append(sql)
            return
        await super().execute(sql)


@pytest.fixture
async def node(chdb_dir: Path) -> AsyncIterator[ClusterNode]:
    warehouse = ClusterNode(chdb_dir, unique_database("cluster_deploy"))
    await warehouse.open()
    await warehouse.ensure_schema(list(registry().values()))
    await DeploymentStore(warehouse).ensure()
    warehouse.watch()
    yield warehouse
    warehouse.sent = None
    await warehouse.execute(f"DROP DATABASE IF EXISTS `{warehouse.database}`")
    await warehouse.close()


async def _databases(node: ClusterNode) -> set[str]:
    answer = await node.query("SELECT name FROM system.databases", {})
    return {row["name"] for row in answer.data}


async def test_a_deploy_to_a_cluster_is_refused_before_anything_runs(node: ClusterNode) -> None:
    current = CurrentProject(Project(builtin()))
    store = DeploymentStore(node)
    deployer = Deployer(node, current, store, 7)
    before = await _databases(node)
    for dry_run in (True, False):
        with pytest.raises(DeployRefused) as refused:
            await deployer.deploy(FILES, name="team", dry_run=dry_run)
        message = str(refused.value)
        assert f"datasource {DS} is a Distributed table over cluster '{CLUSTER}'" in message
        assert "nothing was built or changed" in message
    # No scratch database built, no statement sent, nothing recorded or served.
    assert node.sent == []
    assert await _databases(node) == before
    assert await store.newest() is None
    assert current.project.version == Project(builtin()).version


async def test_the_deploy_rpc_answers_failed_precondition(node: ClusterNode) -> None:
    current = CurrentProject(Project(builtin()))
    api = DeployApi(Deployer(node, current, DeploymentStore(node), 7), current)
    request = pb.DeployRequest(files=[pb.ProjectFile(path=p, content=c) for p, c in FILES.items()])
    with pytest.raises(Aborted) as aborted:
        await api.deploy(request, Context())
    code, details = aborted.value.code, aborted.value.details
    assert code == grpc.StatusCode.FAILED_PRECONDITION
    assert details.startswith("the project was not deployed: datasource ab_test_events")
    assert node.sent == []


async def test_a_start_with_a_project_on_a_cluster_exits_saying_why(
    node: ClusterNode, tmp_path: Path
) -> None:
    for path, content in FILES.items():
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_text(content)
    settings = Settings(manage_schema=False, project=tmp_path)
    with pytest.raises(SystemExit) as exited:
        await load_project(settings, node)
    assert "pipit: the project was not deployed:" in str(exited.value)
    assert f"Distributed table over cluster '{CLUSTER}'" in str(exited.value)
    assert node.sent == []


async def test_a_single_node_deploys_as_before(node: ClusterNode) -> None:
    # The same node without the Distributed table: the check finds nothing to refuse.
    node.sent = None
    await node.execute(f"DROP TABLE `{node.database}`.`{DS}` SYNC")
    current = CurrentProject(Project(builtin()))
    deployed = await Deployer(node, current, DeploymentStore(node), 7).deploy(FILES, name="team")
    assert deployed.applied
    assert "created datasource page_views" in deployed.changes
    assert current.project.version == deployed.version
