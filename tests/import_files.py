"""The A/B rows the Data Sources API tests import, the files they write them to, a server
for those files on loopback, and the calls that run an import through a suite's gateway.
Shared by tests/test_datasources_api.py, tests/test_import_command.py and
tests/import_memory_probe.py."""

from __future__ import annotations

import csv
import io
import random
from datetime import datetime, timedelta
from typing import Any

import aiohttp
import orjson
import pyarrow as pa
import pyarrow.parquet as pq
from aiohttp import web
from harness import TOKEN, free_port

from common.datasources import registry

DS = "ab_test_events"
# The datasource's columns as its proto declares them: the files' header and order.
COLUMNS = list(registry()[DS].column_names)
ADMIN = {"Authorization": f"Bearer {TOKEN}"}


def ab_rows(
    count: int, seed: int, test_id: str = "bulk", times: int = 10**9
) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    start = datetime(2024, 5, 1)
    return [
        {
            "timestamp": (start + timedelta(seconds=37 * (i % times))).strftime(
                "%Y-%m-%d %H:%M:%S"
            ),
            "user_id": f"user_{rng.randrange(50)}",
            "test_id": test_id,
            "variant": rng.choice("AB"),
            "event_type": rng.choice(["view", "click", "buy"]),
            "conversion": rng.choice([0, 1]),
            "revenue": round(rng.uniform(0, 100), 2),
            "session_id": f"s{rng.randrange(99)}",
            "device": rng.choice(["mobile", "desktop"]),
            "country": rng.choice(["US", "ES", "DE", "FR"]),
        }
        for i in range(count)
    ]


def csv_bytes(rows: list[dict[str, Any]], header: bool = True, delimiter: str = ",") -> bytes:
    out = io.StringIO()
    writer = csv.writer(out, delimiter=delimiter, lineterminator="\n")
    if header:
        writer.writerow(COLUMNS)
    for row in rows:
        writer.writerow([row[c] for c in COLUMNS])
    return out.getvalue().encode()


def ndjson_bytes(rows: list[dict[str, Any]]) -> bytes:
    return b"\n".join(orjson.dumps(r) for r in rows) + b"\n"


def parquet_bytes(rows: list[dict[str, Any]]) -> bytes:
    table = pa.Table.from_pylist(
        [
            {
                **r,
                "timestamp": datetime.strptime(r["timestamp"], "%Y-%m-%d %H:%M:%S"),
                "conversion": r["conversion"],
            }
            for r in rows
        ]
    )
    out = io.BytesIO()
    pq.write_table(table, out, row_group_size=max(1, len(rows) // 4))
    return out.getvalue()


async def api_call(
    suite, method: str, path: str, *, headers: dict | None = None, **kwargs
) -> tuple[int, dict]:
    async with (
        aiohttp.ClientSession() as http,
        http.request(
            method, f"{suite.gateway_url}{path}", headers=headers or ADMIN, **kwargs
        ) as response,
    ):
        body = await response.read()
        return response.status, orjson.loads(body) if body else {}


async def run_import(suite, path: str, **kwargs) -> dict:
    """Starts an import, waits for its job, and answers the job as GET /v0/jobs/<id> does."""
    status, answer = await api_call(suite, "POST", path, **kwargs)
    assert status == 200, answer
    job_id = answer["id"]
    assert answer["job_id"] == answer["import_id"] == job_id
    assert answer["job_url"] == f"/v0/jobs/{job_id}"
    await suite.ingest.importer.wait(job_id)
    status, job = await api_call(suite, "GET", f"/v0/jobs/{job_id}")
    assert status == 200, job
    return job


class FileServer:
    """Files on loopback over HTTP, as a URL import fetches them."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.paths: dict[str, Any] = {}  # files served from disk
        self.url = ""
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        async def serve(request: web.Request) -> web.StreamResponse:
            name = request.match_info["name"]
            if name == "moved":
                raise web.HTTPFound("/files/data.parquet")
            if name in self.paths:
                return web.FileResponse(self.paths[name])
            if name not in self.files:
                raise web.HTTPNotFound()
            return web.Response(body=self.files[name])

        app = web.Application()
        app.router.add_get("/files/{name}", serve)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        port = free_port()
        await web.TCPSite(self._runner, "127.0.0.1", port).start()
        self.url = f"http://127.0.0.1:{port}/files"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
