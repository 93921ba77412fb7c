"""Nothing acknowledged is lost, nothing is counted twice: a real `pipit ingest` process
takes events from concurrent clients and is SIGKILLed at chosen points (after the log
append, after a flush intent, between a warehouse insert and the log truncation) or at
an arbitrary moment; after a restart every acknowledged event is in the warehouse exactly
once. The warehouse is a ClickHouse HTTP endpoint in its own process, so it outlives the
crashes."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import clickhouse_connect
import grpc
import pytest
from conftest import unique_database
from google.protobuf.timestamp_pb2 import Timestamp
from harness import free_port
from processes import start_pipit

from pipit.datasources.v1 import ab_test_events_pb2
from pipit.ingest.v1 import ingest_service_pb2 as pb
from pipit.ingest.v1 import ingest_service_pb2_grpc

pytestmark = pytest.mark.e2e

TOKEN = "durability-token"
CLIENTS = 4
BATCHES_PER_CLIENT = 60
EVENTS_PER_BATCH = 25


def _event(key: str) -> ab_test_events_pb2.AbTestEvent:
    return ab_test_events_pb2.AbTestEvent(
        timestamp=Timestamp(seconds=1686839400),
        user_id=key,
        test_id="crash",
        variant="A",
        event_type="view",
        session_id="s",
        device="d",
        country="c",
    )


KILL_AFTER = 1500


async def _client(port: int, client: int, acknowledged: set[str], enough: asyncio.Event) -> None:
    """Sends batches until done or the server dies; records what was acknowledged."""
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = ingest_service_pb2_grpc.IngestServiceStub(channel)
        for batch in range(BATCHES_PER_CLIENT):
            keys = [f"c{client}-b{batch}-e{i}" for i in range(EVENTS_PER_BATCH)]
            try:
                await stub.AppendAbTestEvents(
                    pb.AppendAbTestEventsRequest(events=[_event(k) for k in keys]),
                    metadata=(("authorization", f"Bearer {TOKEN}"),),
                    timeout=10,
                )
            except grpc.aio.AioRpcError:
                return
            acknowledged.update(keys)
            if len(acknowledged) >= KILL_AFTER:
                enough.set()


def _env(clickhouse_url: str, database: str, wal_dir: Path, port: int) -> dict[str, str]:
    return {
        "PIPIT_CLICKHOUSE_URL": clickhouse_url,
        "PIPIT_DATABASE": database,
        "PIPIT_ADMIN_TOKEN": TOKEN,
        "PIPIT_WAL_DIR": str(wal_dir),
        "PIPIT_DATA_DIR": str(wal_dir.parent),
        "PIPIT_INGEST_PORT": str(port),
        "PIPIT_METRICS_PORT": "0",
        # Small, frequent flushes, so crashes land among many of them.
        "PIPIT_FLUSH_ROWS": "200",
        "PIPIT_FLUSH_INTERVAL": "0.05",
    }


@pytest.mark.parametrize(
    "crash",
    [
        "after_wal_append:30",
        "after_flush_intent:4",
        "after_insert:1",
        "after_insert:6",
        "sigkill",
    ],
)
async def test_acknowledged_events_survive_a_crash_exactly_once(
    tmp_path: Path, clickhouse_url: str, crash: str
) -> None:
    database = unique_database("crash")
    wal_dir = tmp_path / "wal"
    port = free_port()
    env = _env(clickhouse_url, database, wal_dir, port)
    crash_env = {} if crash == "sigkill" else {"PIPIT_CRASH_AT": crash}
    first = start_pipit(["ingest"], {**env, **crash_env}, {"ingest"})
    acknowledged: set[str] = set()
    enough = asyncio.Event()
    clients = [asyncio.create_task(_client(port, c, acknowledged, enough)) for c in range(CLIENTS)]
    if crash == "sigkill":
        reached = asyncio.create_task(enough.wait())
        await asyncio.wait({reached, *clients}, return_when=asyncio.FIRST_COMPLETED)
        reached.cancel()
        first.process.send_signal(signal.SIGKILL)
    await asyncio.gather(*clients)
    code = await asyncio.to_thread(first.process.wait, 30)
    assert code == -signal.SIGKILL, f"the ingest process was meant to die at {crash}"
    assert acknowledged, "nothing was acknowledged before the crash"

    second = start_pipit(["ingest"], env, {"ingest"})  # replays the log
    assert second.stop() == 0  # SIGTERM flushes everything

    client = clickhouse_connect.get_client(**_connect_args(clickhouse_url), database=database)
    try:
        counts = dict(
            client.query("SELECT user_id, count() FROM ab_test_events GROUP BY user_id").result_rows
        )
    finally:
        client.close()
    lost = sorted(acknowledged - counts.keys())
    duplicated = sorted(key for key, n in counts.items() if n > 1)
    print(
        f"{crash}: acknowledged={len(acknowledged)} present={len(counts)} "
        f"lost={len(lost)} duplicated={len(duplicated)}"
    )
    assert lost == [], lost[:10]
    assert duplicated == [], duplicated[:10]


def _connect_args(url: str) -> dict:
    from common.warehouse.clickhouse import _client_args

    return _client_args(url)
