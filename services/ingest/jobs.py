"""Where the Data Sources API's jobs are kept: a table in the warehouse, so any replica of the
ingest service (or a restarted one) answers the Jobs API for a job another one runs.

A job is one row per change (status, progress), each a whole `Job` message as JSON under a
rising `revision`; the newest revision of an id is the job. Writing a row per change, never
updating one, is what both engines do well, and a reader never sees a half-written job."""

from __future__ import annotations

import secrets
import time
from datetime import UTC, datetime

import orjson
from google.protobuf import json_format

from common.warehouse.base import Warehouse
from pipit.ingest.v1 import datasources_service_pb2 as pb

TABLE = "_pipit_jobs"
# Answers of GET /v0/jobs: Tinybird lists the recent ones, not all history.
LIST_LIMIT = 100
WAITING, WORKING, DONE, ERROR = "waiting", "working", "done", "error"
IMPORT, DELETE, TRUNCATE = "import", "delete_data", "truncate"


def create_sql(database: str) -> str:
    return (
        f"CREATE TABLE IF NOT EXISTS `{database}`.`{TABLE}` (\n"
        "    `id` String,\n"
        "    `revision` UInt64,\n"
        "    `kind` LowCardinality(String),\n"
        "    `status` LowCardinality(String),\n"
        "    `created_at` DateTime64(6, 'UTC'),\n"
        "    `job` String\n"
        ")\n"
        "ENGINE = ReplacingMergeTree(revision)\n"
        "ORDER BY id"
    )


def now_text() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")


def new_job(kind: str, datasource: str) -> pb.Job:
    """A waiting job with a fresh id (random: ids are guessable by no one, and unique across
    replicas without coordination)."""
    job_id = secrets.token_hex(16)
    created = now_text()
    job = pb.Job(
        kind=kind,
        id=job_id,
        job_id=job_id,
        status=WAITING,
        created_at=created,
        updated_at=created,
        job_url=f"/v0/jobs/{job_id}",
        datasource=pb.JobDatasource(id=datasource, name=datasource),
    )
    if kind == IMPORT:
        job.import_id = job_id
        job.statistics.SetInParent()
    elif kind == DELETE:
        job.delete_id = job_id
    return job


def response_for(job: pb.Job) -> pb.JobResponse:
    """The answer to the write that started `job`."""
    response = pb.JobResponse(
        id=job.id, job_id=job.id, job_url=job.job_url, status=job.status, job=job
    )
    if job.HasField("import_id"):
        response.import_id = job.import_id
    if job.HasField("delete_id"):
        response.delete_id = job.delete_id
    return response


class JobStore:
    """The jobs table of one warehouse database."""

    def __init__(self, warehouse: Warehouse) -> None:
        self._warehouse = warehouse
        self._revision = time.time_ns()

    async def ensure(self) -> None:
        await self._warehouse.execute(create_sql(self._warehouse.database))

    async def save(self, job: pb.Job) -> None:
        """Records `job` as it is now; later saves win."""
        job.updated_at = now_text()
        # Nanoseconds since the epoch, and never the same twice in this process: two saves
        # of one job from one runner are always ordered. (A job is saved by one process.)
        self._revision = max(self._revision + 1, time.time_ns())
        row = {
            "id": job.id,
            "revision": self._revision,
            "kind": job.kind,
            "status": job.status,
            "created_at": job.created_at,
            "job": json_format.MessageToJson(job, preserving_proto_field_name=True, indent=None),
        }
        await self._warehouse.insert_json_rows(TABLE, list(row), orjson.dumps(row))

    async def get(self, job_id: str) -> pb.Job | None:
        result = await self._warehouse.query(
            f"SELECT argMax(job, revision) AS job FROM `{TABLE}` "  # noqa: S608 - constant
            "WHERE id = {id:String} GROUP BY id",
            {"id": job_id},
        )
        if not result.data:
            return None
        return json_format.Parse(result.data[0]["job"], pb.Job())

    async def list(self, kind: str = "", status: str = "") -> list[pb.Job]:
        """The newest jobs first, filtered by kind and status when given."""
        result = await self._warehouse.query(
            "SELECT job FROM (SELECT argMax(job, revision) AS job, "  # noqa: S608 - constant
            "argMax(kind, revision) AS kind, argMax(status, revision) AS status, "
            f"any(created_at) AS created FROM `{TABLE}` GROUP BY id) "
            "WHERE ({kind:String} = '' OR kind = {kind:String}) "
            "AND ({status:String} = '' OR status = {status:String}) "
            f"ORDER BY created DESC LIMIT {LIST_LIMIT}",
            {"kind": kind, "status": status},
        )
        return [json_format.Parse(row["job"], pb.Job()) for row in result.data]

    async def unfinished_before(self, revision: int) -> list[pb.Job]:
        """The jobs waiting or working whose last save is older than `revision` (nanoseconds
        since the epoch, as saves number them)."""
        result = await self._warehouse.query(
            "SELECT argMax(job, revision) AS job FROM "  # noqa: S608 - constant
            f"`{TABLE}` GROUP BY id "
            "HAVING argMax(status, revision) IN ({waiting:String}, {working:String}) "
            "AND max(revision) < {revision:UInt64}",
            {"waiting": WAITING, "working": WORKING, "revision": str(revision)},
        )
        return [json_format.Parse(row["job"], pb.Job()) for row in result.data]
