"""One URL import into a suite of this process's own, its Python allocations traced: run by
tests/test_datasources_api.py as a process of its own, so the peak it reports is the
import's and the suite's alone. In the test's process, anything else that process does while
the import runs would count too: pytest-xdist's messages to a worker, the file server, what
an earlier test left running.

    python tests/import_memory_probe.py DATA_DIR URL BATCH_ROWS OUT_JSON

writes {"job", "peak", "stored", "quarantined"} to OUT_JSON (stdout carries the suite's
logs)."""

from __future__ import annotations

import asyncio
import sys
import tracemalloc
from pathlib import Path
from typing import Any

import orjson
from harness import start_suite
from import_files import DS, ab_rows, csv_bytes, run_import

from common.datasources import registry
from common.warehouse.embedded import EmbeddedWarehouse


async def probe(data_dir: Path, url: str, batch_rows: int) -> dict[str, Any]:
    warehouse = EmbeddedWarehouse(data_dir, "probe")
    await warehouse.open()
    try:
        await warehouse.ensure_schema(list(registry().values()))
        suite = await start_suite(
            warehouse, import_batch_rows=batch_rows, import_allow_private_urls=True
        )
        try:
            # A first small import, untraced: what is made once per process (imported
            # modules, the engine's sessions, caches) is no part of what an import holds.
            warm = csv_bytes(ab_rows(5, 0, "warm"))
            await run_import(suite, f"/v0/datasources?name={DS}&format=csv", data=warm)
            tracemalloc.start()
            try:
                job = await run_import(suite, f"/v0/datasources?name={DS}", data={"url": url})
                peak = tracemalloc.get_traced_memory()[1]
            finally:
                tracemalloc.stop()
            stored = await warehouse.query(
                f"SELECT count() AS n, round(sum(revenue), 2) AS revenue FROM {DS} "  # noqa: S608
                "WHERE test_id != 'warm'",
                {},
            )
            quarantined = await warehouse.query(
                f"SELECT count() AS n, any(error) AS error FROM {DS}_quarantine",  # noqa: S608
                {},
            )
        finally:
            await suite.stop()
    finally:
        await warehouse.close()
    return {
        "job": job,
        "peak": peak,
        "stored": stored.data[0],
        "quarantined": quarantined.data[0],
    }


def main() -> None:
    data_dir, url, batch_rows, out = sys.argv[1:]
    answer = asyncio.run(probe(Path(data_dir), url, int(batch_rows)))
    Path(out).write_bytes(orjson.dumps(answer))


if __name__ == "__main__":
    main()
