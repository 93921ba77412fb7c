"""The Data Sources API over a cluster, where a datasource's table is Distributed (`pipit
migrate --cluster`) and its rows are in every shard's local table: truncate and delete act
on those tables ON CLUSTER (a TRUNCATE of the Distributed table drops only its queue of
pending inserts, an ALTER … DELETE of it fails), and a replace, which would swap one
Distributed table for another over the same shards and so append, is refused before any
row is read.

No ClickHouse cluster runs here (chDB has none, and no server package exists): the node is
chDB whose `system.tables` shows the datasource's engine as a Distributed one, with the
cluster statements recorded rather than run; the statements themselves parse as ClickHouse
SQL (checked through chDB's parser)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from cluster_node import CLUSTER, Aborted, Context, DistributedNode
from conftest import unique_database
from google.api import httpbody_pb2

from common.auth import current_principal
from common.config import Settings
from common.datasources import registry
from common.tokens import ADMIN, Principal
from common.warehouse.base import Warehouse
from pipit.ingest.v1 import datasources_service_pb2 as pb
from pipit.project.artifact import builtin
from pipit.project.runtime import CurrentProject, Project
from services.ingest import jobs
from services.ingest.datasources_api import DatasourcesApi
from services.ingest.imports import Importer

DS = "ab_test_events"


class ShardedNode(DistributedNode):
    """A node of a cluster as the API sees it: DS's table is Distributed; statements sent
    ON CLUSTER are recorded, every other one runs."""

    def __init__(self, path: Path, database: str) -> None:
        super().__init__(path, database, DS)
        self.on_cluster: list[str] = []

    async def execute(self, sql: str) -> None:
        if " ON CLUSTER " in sql:
            self.on_cluster.append(sql)
            return
        await super().execute(sql)

    async def delete_rows(self, table: str, target: str, condition: str) -> None:
        # A server's delete (one statement, through execute), not chDB's.
        await Warehouse.delete_rows(self, table, target, condition)


@pytest.fixture
async def node(chdb_dir: Path) -> AsyncIterator[ShardedNode]:
    warehouse = ShardedNode(chdb_dir, unique_database("sharded"))
    await warehouse.open()
    await warehouse.ensure_schema(list(registry().values()))
    yield warehouse
    await warehouse.execute(f"DROP DATABASE IF EXISTS `{warehouse.database}`")
    await warehouse.close()


@pytest.fixture
async def api(node: ShardedNode) -> DatasourcesApi:
    store = jobs.JobStore(node)
    await store.ensure()
    current = CurrentProject(Project(builtin()))
    return DatasourcesApi(node, store, Importer(node, store, Settings()), current, False, 1 << 20)


async def _job(node: ShardedNode, job_id: str) -> pb.Job:
    job = await jobs.JobStore(node).get(job_id)
    assert job is not None
    return job


async def test_truncate_empties_every_shards_local_table(
    api: DatasourcesApi, node: ShardedNode
) -> None:
    answer = await api.truncate(pb.TruncateDatasourceRequest(name=DS), Context())
    assert node.on_cluster == [
        f"TRUNCATE TABLE `{node.database}`.`{DS}_local` ON CLUSTER `{CLUSTER}`"
    ]
    assert (answer.status, (await _job(node, answer.job.id)).status) == (jobs.DONE, jobs.DONE)


async def test_delete_mutates_every_shards_local_table(
    api: DatasourcesApi, node: ShardedNode
) -> None:
    request = pb.DeleteDataRequest(name=DS, delete_condition="country = 'ES'")
    answer = await api.delete(request, Context())
    await api.wait_deletes()
    assert node.on_cluster == [
        f"ALTER TABLE `{node.database}`.`{DS}_local` ON CLUSTER `{CLUSTER}` DELETE WHERE "
        "country = 'ES' SETTINGS mutations_sync = 2"
    ]
    assert (await _job(node, answer.job.id)).status == jobs.DONE


async def test_a_datasource_of_one_node_is_truncated_itself(
    api: DatasourcesApi, node: ShardedNode
) -> None:
    """The same API over a table that is no Distributed one: its own TRUNCATE, nothing
    sent ON CLUSTER (the rows inserted are gone)."""
    other = "user_events"
    await node.insert_json_rows(
        other, ("user_id", "event_type"), b'{"user_id":"u","event_type":"x"}'
    )
    count = f"SELECT count() AS n FROM `{other}`"  # noqa: S608
    assert (await node.query(count)).data == [{"n": 1}]
    await api.truncate(pb.TruncateDatasourceRequest(name=other), Context())
    assert (node.on_cluster, (await node.query(count)).data) == ([], [{"n": 0}])


async def test_replace_is_refused_before_a_row_is_read(
    api: DatasourcesApi, node: ShardedNode
) -> None:
    async def requests() -> AsyncIterator[pb.ImportDataRequest]:
        body = httpbody_pb2.HttpBody(content_type="text/csv", data=b"timestamp,user_id\n")
        yield pb.ImportDataRequest(name=DS, mode="replace", body=body)

    admin = current_principal.set(Principal(key="k", name="admin", scopes=(ADMIN,)))
    try:
        with pytest.raises(Aborted) as refused:
            await api.import_data(requests(), Context())
    finally:
        current_principal.reset(admin)
    assert refused.value.code == grpc.StatusCode.FAILED_PRECONDITION
    assert "sharded over a cluster" in refused.value.details
    assert f"/v0/datasources/{DS}/truncate" in refused.value.details
    tables = await node.query(
        "SELECT name FROM system.tables WHERE database = {d:String} AND name LIKE '%replace%'",
        {"d": node.database},
    )
    assert (tables.data, node.on_cluster) == ([], [])


async def test_the_cluster_statements_parse_as_clickhouse_sql(
    api: DatasourcesApi, node: ShardedNode
) -> None:
    await api.truncate(pb.TruncateDatasourceRequest(name=DS), Context())
    await api.delete(pb.DeleteDataRequest(name=DS, delete_condition="revenue > 3"), Context())
    await api.wait_deletes()
    assert len(node.on_cluster) == 2
    for statement in node.on_cluster:
        result = await node.query("SELECT formatQuery({q:String}) AS f", {"q": statement})
        assert f"ON CLUSTER {CLUSTER}" in result.data[0]["f"]
