"""The S3 connector (issue 16, item 2) against a real S3-compatible server: moto's server mode,
started here as a process of its own. A bucket of 20 Parquet files loaded by a scheduled
import, each exactly once: files added later are picked up, a restart loads nothing again, a
file whose load was not recorded (a crash between the two) is loaded again without doubling
any row (the inserts' deduplication tokens are named for the file), a file rewritten under its
key is a new file. And a one-off import of an s3:// pattern through the Data Sources API."""

from __future__ import annotations

import asyncio
import io
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import datetime, timedelta

import aiohttp
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from harness import TOKEN, free_port, start_suite

pytestmark = pytest.mark.e2e

DS = "ab_test_events"
BUCKET = "pipit-bulk"
ROWS_PER_FILE = 40
KEYS = {"s3_access_key_id": "testing", "s3_secret_access_key": "testing"}


@pytest.fixture(scope="module")
def s3_url() -> Iterator[str]:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 60
    while True:  # until it listens
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            assert process.poll() is None and time.monotonic() < deadline, "moto did not start"
            time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(10)


def _client(url: str):
    import boto3  # here, not at the top: every run collects this module (-m quick too)

    return boto3.client(
        "s3",
        endpoint_url=url,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


def _parquet(test_id: str, rows: int = ROWS_PER_FILE) -> bytes:
    start = datetime(2024, 7, 1)
    table = pa.Table.from_pylist(
        [
            {
                "timestamp": start + timedelta(minutes=i),
                "user_id": f"u{i % 7}",
                "test_id": test_id,
                "variant": "AB"[i % 2],
                "event_type": "view",
                "conversion": i % 2,
                "revenue": float(i),
                "session_id": f"s{i}",
                "device": "mobile",
                "country": "ES",
            }
            for i in range(rows)
        ]
    )
    out = io.BytesIO()
    pq.write_table(table, out)
    return out.getvalue()


async def _per_file(warehouse) -> dict[str, int]:
    result = await warehouse.query(
        "SELECT test_id, count() AS n FROM ab_test_events GROUP BY test_id ORDER BY test_id", {}
    )
    return {row["test_id"]: row["n"] for row in result.data}


async def _put(s3, key: str, body: bytes) -> None:
    await asyncio.to_thread(s3.put_object, Bucket=BUCKET, Key=key, Body=body)


async def test_a_scheduled_import_loads_each_file_exactly_once(embedded_warehouse, s3_url):
    s3 = _client(s3_url)
    await asyncio.to_thread(s3.create_bucket, Bucket=BUCKET)
    for i in range(20):
        await _put(s3, f"events/part-{i:02d}.parquet", _parquet(f"f{i:02d}"))
    await _put(s3, "events/notes.txt", b"not a match")
    await _put(s3, "elsewhere/part-99.parquet", _parquet("f99"))
    settings = {
        **KEYS,
        "s3_endpoint_url": s3_url,
        "s3_imports": f"{DS}=s3://{BUCKET}/events/*.parquet",
        "s3_poll_interval": 0.1,
    }
    suite = await start_suite(embedded_warehouse, **settings)
    try:
        await suite.ingest.s3_schedule.next_look()
        assert await _per_file(embedded_warehouse) == {
            f"f{i:02d}": ROWS_PER_FILE for i in range(20)
        }
        for i in range(20, 25):  # files added later
            await _put(s3, f"events/part-{i:02d}.parquet", _parquet(f"f{i:02d}"))
        await suite.ingest.s3_schedule.next_look()
        await suite.ingest.s3_schedule.next_look()  # and a look with nothing new
        expected = {f"f{i:02d}": ROWS_PER_FILE for i in range(25)}
        assert await _per_file(embedded_warehouse) == expected
    finally:
        await suite.stop()

    # A restart loads nothing again.
    suite = await start_suite(embedded_warehouse, **settings)
    try:
        await suite.ingest.s3_schedule.next_look()
        assert await _per_file(embedded_warehouse) == expected
        # A load not recorded (the process stopped between the two): loaded again, and the
        # engine drops every batch it already has.
        await embedded_warehouse.execute(
            "ALTER TABLE _pipit_s3_ledger DELETE WHERE key = 'events/part-03.parquet' "
            "SETTINGS mutations_sync = 2"
        )
        # A file rewritten under its key is a new file (a new ETag).
        await _put(s3, "events/part-07.parquet", _parquet("rewritten", 9))
        await suite.ingest.s3_schedule.next_look()
        assert await _per_file(embedded_warehouse) == {**expected, "rewritten": 9}
        ledger = await embedded_warehouse.query(
            "SELECT count() AS n, uniqExact(key, etag) AS files FROM _pipit_s3_ledger", {}
        )
        # 25 files, part-03 recorded again, part-07's second version.
        assert ledger.data == [{"n": 26, "files": 26}]
        async with (
            aiohttp.ClientSession() as http,
            http.get(
                f"{suite.gateway_url}/v0/jobs?kind=import",
                headers={"Authorization": f"Bearer {TOKEN}"},
            ) as response,
        ):
            listed = (await response.json())["jobs"]
        assert all(j["status"] == "done" for j in listed)
        assert {j["url"] for j in listed} == {f"s3://{BUCKET}/events/*.parquet"}
        # The jobs count the rows they sent: part-03's twice (the engine kept them once).
        sent = 25 * ROWS_PER_FILE + ROWS_PER_FILE + 9
        assert sum(j["statistics"]["row_count"] for j in listed) == sent
    finally:
        await suite.stop()


async def test_a_one_off_import_of_an_s3_pattern(embedded_warehouse, s3_url):
    s3 = _client(s3_url)
    await asyncio.to_thread(s3.create_bucket, Bucket=BUCKET + "-csv")
    header = (
        "timestamp,user_id,test_id,variant,event_type,conversion,revenue,session_id,device,"
        "country\n"
    )
    for i in range(3):
        body = header + "".join(
            f"2024-07-0{i + 1} 10:00:{j:02d},u,csv{i},A,view,1,1.5,s,d,US\n" for j in range(11)
        )
        await asyncio.to_thread(
            s3.put_object, Bucket=BUCKET + "-csv", Key=f"daily/{i}.csv", Body=body.encode()
        )
    suite = await start_suite(embedded_warehouse, **KEYS, s3_endpoint_url=s3_url)
    try:
        url = f"{suite.gateway_url}/v0/datasources?name={DS}"
        auth = {"Authorization": f"Bearer {TOKEN}"}
        async with aiohttp.ClientSession() as http:
            async with http.post(
                url, data={"url": f"s3://{BUCKET}-csv/daily/*.csv"}, headers=auth
            ) as response:
                answer = await response.json()
                assert response.status == 200, answer
            await suite.ingest.importer.wait(answer["id"])
            async with http.get(
                f"{suite.gateway_url}/v0/jobs/{answer['id']}", headers=auth
            ) as response:
                job = await response.json()
            assert (job["status"], job["statistics"]["row_count"]) == ("done", 33), job
            assert await _per_file(embedded_warehouse) == {"csv0": 11, "csv1": 11, "csv2": 11}
            for bad in ("s3://x/y", f"s3://{BUCKET}-csv/", "s3://UPPER/a.csv"):
                async with http.post(url, data={"url": bad}, headers=auth) as response:
                    assert response.status == 400, bad
            async with http.post(
                url + "&mode=replace", data={"url": f"s3://{BUCKET}-csv/daily/*.csv"}, headers=auth
            ) as response:
                assert response.status == 400
    finally:
        await suite.stop()
