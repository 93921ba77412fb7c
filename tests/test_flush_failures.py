"""Flush failures, sorted: a batch the warehouse refuses for good (an unknown column, a
value its column cannot hold, an unknown table) goes to its datasource's quarantine table
with the reason, or to a dead-letter file when that is refused too, and leaves the log;
a failure that may pass is retried until the warehouse takes the batch, exactly once."""

from __future__ import annotations

from pathlib import Path

import orjson
from flaky_warehouse import FlakyWarehouse
from prometheus_client import REGISTRY
from samples import keyed_ab_event

from common.warehouse.base import Warehouse, WarehouseError
from common.warehouse.failures import permanent, unreachable
from services.ingest.batcher import Batcher, FlushPolicy
from services.ingest.dead_letter import DIRECTORY
from services.ingest.wal import WriteAheadLog

FAST = FlushPolicy(max_age=3600, retry_initial=0.001, retry_max=0.01)


def _set_aside(table: str, destination: str) -> float:
    value = REGISTRY.get_sample_value(
        "pipit_ingest_set_aside_rows_total", {"table": table, "destination": destination}
    )
    return value or 0.0


async def _flush(warehouse: Warehouse, directory: Path, table: str, events: list[dict]) -> Batcher:
    wal = WriteAheadLog(directory, max_bytes=1 << 20, segment_bytes=1 << 20)
    batcher = Batcher(warehouse, FAST, wal)
    await batcher.start()
    await batcher.append(table, tuple(events[0]), [orjson.dumps(e) for e in events])
    await batcher.flush_all()
    return batcher


async def _quarantined(warehouse: Warehouse) -> list[tuple[dict, str]]:
    result = await warehouse.query("SELECT raw, error FROM ab_test_events_quarantine", {})
    return sorted(
        ((orjson.loads(row["raw"]), row["error"]) for row in result.data),
        key=lambda pair: pair[0]["user_id"],
    )


async def test_an_unknown_column_sends_the_batch_to_quarantine(embedded_warehouse, tmp_path):
    events = [keyed_ab_event(f"u{i}", "refused", no_such_column=i) for i in range(3)]
    before = _set_aside("ab_test_events", "quarantine")
    batcher = await _flush(embedded_warehouse, tmp_path, "ab_test_events", events)
    try:
        quarantined = await _quarantined(embedded_warehouse)
        assert [raw for raw, _ in quarantined] == events
        assert all("no_such_column" in error for _, error in quarantined), quarantined
        assert all("NO_SUCH_COLUMN_IN_TABLE" in error for _, error in quarantined)
        result = await embedded_warehouse.query("SELECT count() AS n FROM ab_test_events", {})
        assert result.data == [{"n": 0}]
        assert _set_aside("ab_test_events", "quarantine") - before == 3
        # Out of the log: nothing waits to be retried.
        assert batcher.buffered_rows == 0
        assert batcher._wal.pending_bytes == 0
    finally:
        await batcher.close()


async def test_a_value_its_column_cannot_hold_is_quarantined_and_the_rest_flows(
    embedded_warehouse, tmp_path
):
    bad = [keyed_ab_event("bad", "refused", timestamp="not a time at all")]
    good = [keyed_ab_event("good", "refused")]
    wal = WriteAheadLog(tmp_path, max_bytes=1 << 20, segment_bytes=1 << 20)
    batcher = Batcher(embedded_warehouse, FAST, wal)
    await batcher.start()
    try:
        columns = tuple(good[0])
        await batcher.append("ab_test_events", columns, [orjson.dumps(e) for e in bad])
        await batcher.flush_all()
        await batcher.append("ab_test_events", columns, [orjson.dumps(e) for e in good])
        await batcher.flush_all()
        quarantined = await _quarantined(embedded_warehouse)
        assert [raw for raw, _ in quarantined] == bad
        rows = await embedded_warehouse.query("SELECT user_id FROM ab_test_events", {})
        assert rows.data == [{"user_id": "good"}]
    finally:
        await batcher.close()


async def test_a_batch_no_table_takes_goes_to_a_dead_letter_file(embedded_warehouse, tmp_path):
    events = [keyed_ab_event(f"u{i}", "refused") for i in range(2)]
    before = _set_aside("no_such_table", "dead_letter")
    batcher = await _flush(embedded_warehouse, tmp_path, "no_such_table", events)
    try:
        files = list((tmp_path / DIRECTORY).iterdir())
        assert len(files) == 1
        assert files[0].stat().st_mode & 0o777 == 0o600
        header, body = files[0].read_bytes().split(b"\n", 1)
        meta = orjson.loads(header)
        assert meta["table"] == "no_such_table"
        assert "UNKNOWN_TABLE" in meta["reason"]
        assert "no_such_table_quarantine" in meta["reason"]  # refused there too
        assert [orjson.loads(line) for line in body.splitlines()] == events
        assert _set_aside("no_such_table", "dead_letter") - before == 2
        assert batcher._wal.pending_bytes == 0
    finally:
        await batcher.close()


async def test_failures_that_may_pass_are_retried_until_the_rows_land(embedded_warehouse, tmp_path):
    flaky = FlakyWarehouse(embedded_warehouse, failures=5)
    events = [keyed_ab_event(f"u{i}", "refused") for i in range(4)]
    batcher = await _flush(flaky, tmp_path, "ab_test_events", events)
    try:
        assert flaky.tries == 6
        result = await embedded_warehouse.query(
            "SELECT user_id FROM ab_test_events ORDER BY user_id", {}
        )
        assert [row["user_id"] for row in result.data] == [e["user_id"] for e in events]
        assert await _quarantined(embedded_warehouse) == []
    finally:
        await batcher.close()


def test_which_failures_are_permanent():
    refused = WarehouseError("Code: 16. DB::Exception: No such column x in table t")
    assert (refused.code, permanent(refused), unreachable(refused)) == (16, True, False)
    read_only = WarehouseError("Code: 242. DB::Exception: Table is in readonly mode")
    assert (permanent(read_only), unreachable(read_only)) == (False, False)
    too_many_parts = WarehouseError("Code: 252. DB::Exception: Too many parts (TOO_MANY_PARTS)")
    assert not permanent(too_many_parts)
    network = WarehouseError("Network Error: Cannot connect to host")
    assert (network.code, permanent(network), unreachable(network)) == (None, False, True)
    assert not permanent(OSError("disk"))


async def test_a_batch_set_aside_twice_is_quarantined_once(embedded_warehouse, tmp_path):
    # A replica that dies after quarantining a batch, before the log let it go, replays it
    # under the same token: the quarantine table drops the second copy.
    from services.ingest.blocks import Block
    from services.ingest.dead_letter import DeadLetters

    async def insert(table, columns, blocks, token):
        await embedded_warehouse.insert_json_rows(
            table, columns, blocks[0].body, dedup_token=token, fmt=blocks[0].fmt
        )

    events = [keyed_ab_event(f"u{i}", "refused", no_such_column=1) for i in range(2)]
    block = Block.from_lines([orjson.dumps(e) for e in events])
    refused = WarehouseError("Code: 16. DB::Exception: No such column no_such_column")
    letters = DeadLetters(insert, tmp_path / DIRECTORY)
    for _ in range(2):
        await letters.set_aside("ab_test_events", tuple(events[0]), [block], "tok-1", refused)
    assert [raw for raw, _ in await _quarantined(embedded_warehouse)] == events
