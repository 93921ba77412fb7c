"""A warehouse outage mid-stream: ingest keeps acknowledging (and stays ready) while its
log has room, then answers RESOURCE_EXHAUSTED (429 with Retry-After over HTTP) before the
log's files pass PIPIT_WAL_MAX_BYTES (sampled throughout from another thread) and reports
NOT_SERVING for readiness; once the warehouse is back everything acknowledged arrives
exactly once, the log shrinks back to its open segment and ingest is ready again."""

from __future__ import annotations

import asyncio

import aiohttp
import grpc
import orjson
import pytest
from disk_sampler import DiskSampler, segment_bytes
from flaky_warehouse import FlakyWarehouse
from grpc_health.v1 import health_pb2, health_pb2_grpc
from harness import AUTH, TOKEN, start_suite
from samples import keyed_ab_event

from pipit.ingest.v1 import ingest_service_pb2 as pb
from services.ingest.service import SERVICE

pytestmark = pytest.mark.e2e


LIMIT = 60_000
SEGMENT = 8_000


async def test_outage_backpressure_and_recovery(embedded_warehouse):
    flaky = FlakyWarehouse(embedded_warehouse)
    suite = await start_suite(
        flaky, wal_max_bytes=LIMIT, wal_segment_bytes=SEGMENT, flush_interval=0.02
    )
    wal_dir = suite.ingest.wal.directory
    sampler = DiskSampler(wal_dir).start()
    try:
        flaky.down = True
        acknowledged: set[str] = set()
        refused = None
        async with aiohttp.ClientSession() as http:
            for batch in range(200):
                keys = [f"b{batch}-e{i}" for i in range(20)]
                body = b"\n".join(orjson.dumps(keyed_ab_event(k, "outage")) for k in keys)
                async with http.post(
                    f"{suite.gateway_url}/v0/events?name=ab_test_events",
                    data=body,
                    headers={"Authorization": f"Bearer {TOKEN}"},
                ) as response:
                    if response.status == 202:
                        acknowledged.update(keys)
                        continue
                    refused = (
                        response.status,
                        response.headers.get("Retry-After"),
                        await response.json(),
                    )
                    break
        assert refused is not None, "ingest never pushed back"
        status, retry_after, answer = refused
        assert (status, retry_after, answer["code"]) == (429, "1", 8)
        assert f"limit {LIMIT}" in answer["message"]
        assert len(acknowledged) >= 100
        assert flaky.failed_inserts > 0
        # Refused before the files passed the bound, across several segments.
        assert segment_bytes(wal_dir)[1] > 2
        assert sampler.largest <= LIMIT, (sampler.largest, sampler.samples)

        # gRPC clients get RESOURCE_EXHAUSTED too, and readiness says why not to send.
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await suite.ingest_stub().PostEvents(
                pb.PostEventsRequest(
                    name="ab_test_events",
                    body={
                        "data": b"\n".join(
                            orjson.dumps(keyed_ab_event(f"g{i}", "outage")) for i in range(20)
                        )
                    },
                ),
                metadata=AUTH,
            )
        assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        channel = grpc.aio.insecure_channel(f"127.0.0.1:{suite.ingest.port}")
        suite.channels.append(channel)
        health = health_pb2_grpc.HealthStub(channel)
        ready = await health.Check(health_pb2.HealthCheckRequest(service=SERVICE.full_name))
        alive = await health.Check(health_pb2.HealthCheckRequest(service=""))
        assert ready.status == health_pb2.HealthCheckResponse.NOT_SERVING
        assert alive.status == health_pb2.HealthCheckResponse.SERVING

        flaky.down = False
        await suite.ingest.batcher.flush_all()
        result = await embedded_warehouse.query(
            "SELECT user_id, count() AS n FROM ab_test_events GROUP BY user_id", {}
        )
        counts = {row["user_id"]: row["n"] for row in result.data}
        assert set(counts) == acknowledged
        assert set(counts.values()) == {1}
        # Committed segments are deleted while running: once the last COMMITs are
        # written (the files then match the log's own count), only the open one is left.
        wal = suite.ingest.wal
        for _ in range(500):
            if segment_bytes(wal_dir) == (wal.disk_bytes, 1):
                break
            await asyncio.sleep(0.01)
        assert segment_bytes(wal_dir) == (wal.disk_bytes, 1)
        assert wal.pending_bytes == 0
        assert wal.disk_bytes <= SEGMENT * 2
        assert sampler.largest <= LIMIT, (sampler.largest, sampler.samples)
        ready = await health.Check(health_pb2.HealthCheckRequest(service=SERVICE.full_name))
        assert ready.status == health_pb2.HealthCheckResponse.SERVING
        async with (
            aiohttp.ClientSession() as http,
            http.post(
                f"{suite.gateway_url}/v0/events?name=ab_test_events&wait=true",
                data=orjson.dumps(keyed_ab_event("after", "outage")),
                headers={"Authorization": f"Bearer {TOKEN}"},
            ) as response,
        ):
            assert response.status == 200  # room again
    finally:
        sampler.stop()
        flaky.down = False
        await suite.stop()


async def test_log_gauges_are_true_at_every_moment(embedded_warehouse, tmp_path):
    from prometheus_client import REGISTRY

    from services.ingest import metrics
    from services.ingest.batcher import Batcher, FlushPolicy
    from services.ingest.wal import WriteAheadLog

    def gauges() -> tuple[float, float, float]:
        return tuple(
            REGISTRY.get_sample_value(name)
            for name in (
                "pipit_ingest_wal_pending_bytes",
                "pipit_ingest_wal_disk_bytes",
                "pipit_ingest_buffered_rows",
            )
        )

    # A log left with unflushed rows by an earlier run.
    wal = WriteAheadLog(tmp_path, max_bytes=1 << 20, segment_bytes=1 << 20)
    await wal.open()
    body = b"\n".join(orjson.dumps(keyed_ab_event(f"g{i}", "outage")) for i in range(10))
    columns = tuple(keyed_ab_event("x", "outage"))
    await wal.append("ab_test_events", columns, body.split(b"\n"))
    await wal.close()
    for gauge in (metrics.WAL_PENDING_BYTES, metrics.WAL_DISK_BYTES, metrics.BUFFERED_ROWS):
        gauge.set(0)

    flaky = FlakyWarehouse(embedded_warehouse)
    flaky.down = True
    wal = WriteAheadLog(tmp_path, max_bytes=1 << 20, segment_bytes=1 << 20)
    batcher = Batcher(flaky, FlushPolicy(max_age=3600), wal)
    await batcher.start()
    try:
        # Replayed, not yet flushed (the warehouse is down): the gauges say so at once.
        size, _ = segment_bytes(tmp_path)
        assert gauges() == (wal.pending_bytes, size, 10)
        assert wal.pending_bytes > 0
        flaky.down = False
        await batcher.flush_all()
        assert gauges() == (0, wal.disk_bytes, 0)
    finally:
        flaky.down = False
        await batcher.close()
