"""`pipit drain --wal-dir DIR`: replays an ingest replica's write-ahead log into the
warehouse and returns once it is empty, so that scaling ingest down never strands
acknowledged events on the volume of a replica that is gone.

The replica must be stopped (the command refuses a log another process holds). The log
is replayed as a restarting replica would replay it (services/ingest/batcher.py): a
flush that was logged as an intent goes in again under its own deduplication token, so
the warehouse drops whatever of it arrived before the replica stopped; batches never
flushed go in under new tokens. Failures that may pass are retried with back-off until
the warehouse takes the rows; a batch it refuses for good goes to quarantine (or the
dead-letter directory) as ingest would send it. Exit status 0 means every acknowledged
event of the log is in the warehouse exactly once and the log holds nothing more."""

from __future__ import annotations

import argparse
import asyncio

import structlog

from common import config
from common.config import Settings
from common.telemetry import configure_logging
from common.warehouse.factory import open_warehouse
from pipit.startup import until_opened
from services.ingest.batcher import Batcher, FlushPolicy
from services.ingest.wal import WriteAheadLog
from services.ingest.wal_files import WalInUse, lock

log = structlog.get_logger("drain")

# No flush on age: the command flushes everything itself.
NEVER_SECONDS = 7 * 24 * 3600.0
DRAIN_SETTINGS = [
    "wal_dir",
    "clickhouse_url",
    "clickhouse_connect_timeout",
    "database",
    "data_dir",
    "insert_quorum",
    "flush_rows",
    "flush_bytes",
    "flush_retry_max",
    "startup_retry_max",
    "wal_max_bytes",
    "wal_segment_bytes",
    "log_level",
]


async def drain(settings: Settings) -> tuple[int, int]:
    """Replays the log at `settings.wal_path` into the warehouse until it is empty;
    returns (batches, rows) it held."""
    directory = settings.wal_path
    try:
        held = await asyncio.to_thread(lock, directory)
    except WalInUse as exc:
        raise SystemExit(f"pipit drain: {exc}; stop that replica first") from None
    warehouse = open_warehouse(settings)
    try:
        await until_opened(settings, warehouse)
        wal = WriteAheadLog(
            directory, max_bytes=settings.wal_max_bytes, segment_bytes=settings.wal_segment_bytes
        )
        # Flushed only when told: the whole log now, in batches of the usual size.
        policy = FlushPolicy(
            max_rows=settings.flush_rows,
            max_bytes=settings.flush_bytes,
            max_age=NEVER_SECONDS,
            retry_max=settings.flush_retry_max,
        )
        batcher = Batcher(warehouse, policy, wal)
        await batcher.start()
        batches, rows = batcher.buffered_batches, batcher.buffered_rows
        try:
            await batcher.flush_all()
            if batcher.buffered_rows or wal.pending_bytes:
                raise SystemExit(
                    f"pipit drain: {batcher.buffered_rows} rows are still in {directory}"
                )
        finally:
            await batcher.close()
    finally:
        await warehouse.close()
        held.close()
    return batches, rows


def add_drain_command(commands: argparse._SubParsersAction) -> None:
    sub = commands.add_parser(
        "drain",
        help="replay a stopped ingest replica's write-ahead log into the warehouse, exactly "
        "once, and return when it is empty (before its volume is released)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    config.add_arguments(sub, DRAIN_SETTINGS)
    sub.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    settings = config.load(args)
    if settings.wal_dir is None:
        raise SystemExit("pipit drain: --wal-dir is required (the replica's log directory)")
    if not settings.wal_dir.is_dir():
        raise SystemExit(f"pipit drain: {settings.wal_dir} is not a directory")
    configure_logging(settings.log_level)
    batches, rows = asyncio.run(drain(settings))
    print(
        f"pipit drain: {rows} rows ({batches} batches) from {settings.wal_dir} are in the "
        "warehouse; the log is empty",
        flush=True,
    )
    return 0
