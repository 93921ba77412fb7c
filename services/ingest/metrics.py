"""Prometheus metrics of the ingest service, served on `--metrics-port`."""

from __future__ import annotations

import weakref
from collections.abc import Callable
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, Counter, Gauge, Histogram, generate_latest

EVENTS = Counter(
    "pipit_ingest_events_total",
    "Events received, by datasource and outcome: accepted, quarantined, or refused (in a "
    "request with more invalid events than PIPIT_MAX_QUARANTINE_ROWS).",
    ["datasource", "outcome"],
)
ROWS_FLUSHED = Counter(
    "pipit_ingest_rows_flushed_total", "Rows written to the warehouse, by table.", ["table"]
)
FLUSH_SECONDS = Histogram(
    "pipit_ingest_flush_seconds", "Duration of successful warehouse inserts.", ["table"]
)
FLUSH_RETRIES = Counter(
    "pipit_ingest_flush_retries_total",
    "Warehouse inserts that failed and will be retried.",
    ["table"],
)
SET_ASIDE = Counter(
    "pipit_ingest_set_aside_rows_total",
    "Rows of batches the warehouse refused for good (unknown column or table, type mismatch), "
    "by table and where they went: quarantine (the datasource's quarantine table) or "
    "dead_letter (a file in the dead-letter directory beside the write-ahead log).",
    ["table", "destination"],
)
BUFFERED_ROWS = Gauge("pipit_ingest_buffered_rows", "Rows accepted but not yet written.")
WAL_PENDING_BYTES = Gauge(
    "pipit_ingest_wal_pending_bytes",
    "Bytes of accepted batches not yet committed to the warehouse.",
)
WAL_DISK_BYTES = Gauge(
    "pipit_ingest_wal_disk_bytes",
    "Size of the write-ahead log segments; never more than PIPIT_WAL_MAX_BYTES.",
)
REJECTED = Counter(
    "pipit_ingest_rejected_total", "Requests refused because the log was full (429)."
)
WAREHOUSE_UP = Gauge(
    "pipit_ingest_warehouse_up", "1 while flushes succeed, 0 while the warehouse fails them."
)


def follow(gauge: Gauge, owner: Any, read: Callable[[Any], float]) -> None:
    """Makes `gauge` read `read(owner)` whenever it is scraped, so it is true at every
    moment. Only a weak reference is kept: a gauge lives as long as the process, and
    holding a batcher (its loop, its warehouse) until the interpreter's teardown crashes
    chDB on the way out."""
    ref = weakref.ref(owner)

    def value() -> float:
        alive = ref()
        return 0 if alive is None else read(alive)

    gauge.set_function(value)


async def _metrics(_: web.Request) -> web.Response:
    return web.Response(body=generate_latest(), headers={"Content-Type": CONTENT_TYPE_LATEST})


async def serve_metrics(host: str, port: int) -> web.AppRunner:
    """Serves /metrics; the caller awaits `cleanup()` on shutdown."""
    app = web.Application()
    app.router.add_get("/metrics", _metrics)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    return runner
