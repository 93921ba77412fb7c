"""A job whose ingest process dies does not stay `working` (issue 16): a real `pipit ingest`
is SIGKILLed while an import downloads its url=, and the next process started on the same
warehouse records the job as failed, with the reason, once its lease (PIPIT_JOB_LEASE) has
run out; a job that process runs itself meanwhile is renewed, not reaped."""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import grpc
import pytest
from aiohttp import web
from conftest import unique_database
from harness import AUTH, TOKEN, free_port
from processes import start_pipit

from pipit.ingest.v1 import datasources_service_pb2 as pb
from pipit.ingest.v1 import datasources_service_pb2_grpc
from services.ingest.job_leases import abandoned_reason

LEASE = 1.5
WAIT_SECONDS = 60.0


class SlowFile:
    """An HTTP server whose file sends its first lines, then nothing more until released:
    an import of it stays working."""

    def __init__(self) -> None:
        self.requested = asyncio.Event()
        self.release = asyncio.Event()
        self.url = ""
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        async def serve(request: web.Request) -> web.StreamResponse:
            response = web.StreamResponse(headers={"Content-Type": "text/csv"})
            await response.prepare(request)
            await response.write(b"timestamp,user_id,test_id\n2024-05-01 00:00:00,u,slow\n")
            self.requested.set()
            await self.release.wait()
            return response

        app = web.Application()
        app.router.add_get("/{name}", serve)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        port = free_port()
        await web.TCPSite(self._runner, "127.0.0.1", port).start()
        self.url = f"http://127.0.0.1:{port}"

    async def stop(self) -> None:
        self.release.set()
        if self._runner is not None:
            await self._runner.cleanup()


@pytest.fixture
async def slow_file() -> AsyncIterator[SlowFile]:
    server = SlowFile()
    await server.start()
    yield server
    await server.stop()


async def _until(what: str, check: Callable[[], object]) -> None:
    """Waits, polling, until `check()` (a coroutine function) answers true."""
    deadline = time.monotonic() + WAIT_SECONDS
    while not await check():  # type: ignore[misc]
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


async def _job(port: int, job_id: str) -> pb.Job:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = datasources_service_pb2_grpc.DatasourcesServiceStub(channel)
        return await stub.GetJob(pb.GetJobRequest(job_id=job_id), metadata=AUTH)


async def _import(port: int, url: str) -> str:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = datasources_service_pb2_grpc.DatasourcesServiceStub(channel)
        answer = await stub.ImportData(
            iter([pb.ImportDataRequest(name="ab_test_events", url=url)]), metadata=AUTH
        )
    return answer.id


async def test_a_job_whose_process_was_killed_ends_as_failed(
    tmp_path: Path, clickhouse_url: str, slow_file: SlowFile
) -> None:
    port = free_port()
    env = {
        "PIPIT_CLICKHOUSE_URL": clickhouse_url,
        "PIPIT_DATABASE": unique_database("leases"),
        "PIPIT_ADMIN_TOKEN": TOKEN,
        "PIPIT_DATA_DIR": str(tmp_path / "data"),
        "PIPIT_INGEST_PORT": str(port),
        "PIPIT_METRICS_PORT": "0",
        "PIPIT_IMPORT_ALLOW_PRIVATE_URLS": "true",
        "PIPIT_JOB_LEASE": str(LEASE),
    }
    first = start_pipit(["ingest"], env, {"ingest"})
    try:
        dead = await _import(port, f"{slow_file.url}/a.csv")
        await asyncio.wait_for(slow_file.requested.wait(), WAIT_SECONDS)

        async def working() -> bool:
            return (await _job(port, dead)).status == "working"

        await _until("the job to work", working)
    finally:
        first.process.send_signal(signal.SIGKILL)
        code = await asyncio.to_thread(first.process.wait, 30)
    assert code == -signal.SIGKILL

    second = start_pipit(["ingest"], env, {"ingest"})
    try:
        slow_file.requested.clear()
        alive = await _import(port, f"{slow_file.url}/b.csv")
        await asyncio.wait_for(slow_file.requested.wait(), WAIT_SECONDS)

        async def reaped() -> bool:
            return (await _job(port, dead)).status == "error"

        await _until("the dead process's job to be recorded as failed", reaped)
        job = await _job(port, dead)
        assert job.error == abandoned_reason(LEASE)
        assert list(job.errors) == [abandoned_reason(LEASE)]

        # The live job, renewed every LEASE / 3 s, outlives two leases untouched.
        renewals: set[str] = set()

        async def renewed_twice() -> bool:
            current = await _job(port, alive)
            assert current.status == "working", current
            renewals.add(current.updated_at)
            return len(renewals) >= 2 * 3 + 1

        await _until("the live job to be renewed over two leases", renewed_twice)
    finally:
        slow_file.release.set()
        assert second.stop() == 0
