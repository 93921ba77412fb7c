"""A quick benchmark of the two hot paths, each beside the engine's own figure from the
same run (ratios are what we track; absolute numbers depend on the machine):

- ingest: events/s through the gRPC streaming RPC (validation + batching + insert) vs
  the warehouse's raw JSONEachRow insert of the same events;
- query: p50/p99 latency of `test_summary` through the HTTP gateway and through gRPC
  vs the same SQL run directly on the warehouse.

Run: python bench/quick.py [--events 200000] [--queries 300]
Writes bench/results/quick.json."""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
import orjson

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from harness import AUTH, TOKEN, start_suite  # noqa: E402

from common.datasources import registry  # noqa: E402
from common.telemetry import configure_logging  # noqa: E402
from common.warehouse.embedded import EmbeddedWarehouse  # noqa: E402
from pipit.ingest.v1 import ingest_service_pb2 as pb  # noqa: E402
from pipit.query.v1 import query_service_pb2  # noqa: E402
from pipit.seed.command import to_message  # noqa: E402
from pipit.seed.generator import generate  # noqa: E402
from services.query.service import endpoints  # noqa: E402

BATCH = 5_000


def _percentiles(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {
        "p50_ms": round(statistics.median(ordered) * 1000, 3),
        "p99_ms": round(ordered[int(len(ordered) * 0.99) - 1] * 1000, 3),
    }


async def main(events: int, queries: int) -> dict:
    configure_logging("warning")
    data_dir = Path(tempfile.mkdtemp(prefix="pipit-bench-"))
    sources = list(registry().values())
    ds = registry()["ab_test_events"]
    rows = list(generate("ab_test_events", events, seed=1))

    raw = EmbeddedWarehouse(data_dir, "bench_raw")
    await raw.open()
    await raw.ensure_schema(sources)
    body = b"\n".join(orjson.dumps(row) for row in rows)
    start = time.perf_counter()
    for i in range(0, len(rows), BATCH):
        chunk = b"\n".join(orjson.dumps(row) for row in rows[i : i + BATCH])
        await raw.insert_json_rows(ds.name, ds.column_names, chunk)
    raw_seconds = time.perf_counter() - start

    warehouse = EmbeddedWarehouse(data_dir, "bench_suite")
    await warehouse.open()
    await warehouse.ensure_schema(sources)
    suite = await start_suite(warehouse)
    messages = [to_message(ds, row) for row in rows]

    async def stream():
        for i in range(0, len(messages), BATCH):
            yield pb.StreamEventsRequest(
                ab_test_events=pb.AppendAbTestEventsRequest(
                    events=messages[i : i + BATCH], wait=True
                )
            )

    start = time.perf_counter()
    reply = await suite.ingest_stub().StreamEvents(stream(), metadata=AUTH)
    grpc_seconds = time.perf_counter() - start
    assert reply.successful_rows == events

    endpoint = endpoints(1024)["TestSummary"]
    params = endpoint.bind(query_service_pb2.TestSummaryRequest())
    stub = suite.query_stub()
    url = f"{suite.gateway_url}/v0/pipes/test_summary.json?token={TOKEN}"
    direct, via_grpc, via_http = [], [], []
    async with aiohttp.ClientSession() as http:
        for _ in range(queries):
            t = time.perf_counter()
            await warehouse.query(endpoint.sql, params)
            direct.append(time.perf_counter() - t)
            t = time.perf_counter()
            await stub.TestSummary(query_service_pb2.TestSummaryRequest(), metadata=AUTH)
            via_grpc.append(time.perf_counter() - t)
            t = time.perf_counter()
            async with http.get(url) as response:
                await response.read()
            via_http.append(time.perf_counter() - t)
    await suite.stop()

    result = {
        "events": events,
        "body_mb": round(len(body) / 1e6, 1),
        "ingest": {
            "raw_insert_events_per_s": round(events / raw_seconds),
            "grpc_stream_events_per_s": round(events / grpc_seconds),
            "ratio_grpc_to_raw": round(raw_seconds / grpc_seconds, 3),
        },
        "test_summary": {
            "direct_sql": _percentiles(direct),
            "grpc": _percentiles(via_grpc),
            "http_gateway": _percentiles(via_http),
            "ratio_p50_http_to_direct": round(
                statistics.median(via_http) / statistics.median(direct), 2
            ),
        },
    }
    out = ROOT / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / "quick.json").write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--queries", type=int, default=300)
    args = parser.parse_args()
    print(json.dumps(asyncio.run(main(args.events, args.queries)), indent=2))
