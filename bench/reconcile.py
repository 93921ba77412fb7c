"""What keeping the page moves costs a live site's writes at scale: batches of new sessions
written into a copy of the benchmark dataset's `clickstream_events`, a few times a second,
each write timed, each reconcile of the pending sessions timed (common/page_moves.py), and
the settle a read of the moves then waits for.

    python -m bench.reconcile [--events 10000000] [--batches 30] [--batch 2000] [--every 0.2]

The dataset is `bench.engine`'s (loaded first if missing, as `bench.query` does) and copied,
so its tables stay as the query benchmark reads them. The batches are the seed generator's
events of one day after the dataset's month, in time order, their session ids hashed into
ids shaped like the table's (`sess_…`: found by id, they fall among its sessions as a live
site's random ids do). One embedded chDB, as the ingest service writes it.
Writes bench/results/reconcile.json and bench/results/reconcile.png."""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import shutil
import tempfile
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import orjson

from bench import results
from bench.engine import DATABASE
from bench.query import DEFAULT_DATA_ROOT, _engine
from common.datasources import registry
from common.warehouse.embedded import EmbeddedWarehouse
from pipit.seed.generator import DEFAULT_START, generate

SOURCE = "clickstream_events"


class _Timed(EmbeddedWarehouse):
    """The embedded warehouse, its reconciles timed."""

    reconciles: list[float]

    def _settle_on_main(self, main: Any, table: str) -> None:
        started = time.perf_counter()
        super()._settle_on_main(main, table)
        self.reconciles.append(time.perf_counter() - started)


def _batches(args: argparse.Namespace) -> list[bytes]:
    rows = sorted(
        generate(
            SOURCE,
            args.batches * args.batch,
            days=1,
            seed=args.seed,
            start=DEFAULT_START + timedelta(days=31),
        ),
        key=lambda row: row["timestamp"],
    )
    lines = []
    for row in rows:
        digest = hashlib.blake2b(f"{args.seed}:{row['session_id']}".encode(), digest_size=8)
        lines.append(orjson.dumps({**row, "session_id": f"sess_{digest.hexdigest()}"}))
    return [b"\n".join(lines[i : i + args.batch]) for i in range(0, len(lines), args.batch)]


async def main(args: argparse.Namespace) -> dict[str, Any]:
    machine = results.machine()
    dataset = args.data_root / f"events-{args.events}"
    _engine(["load", "--dir", str(dataset), "--events", str(args.events)])
    work = Path(tempfile.mkdtemp(prefix="pipit-bench-reconcile-"))
    try:
        copy = work / "data"
        # The engine links each database to its store: the links copied as links.
        await asyncio.to_thread(shutil.copytree, dataset, copy, symlinks=True)
        warehouse = _Timed(copy, DATABASE)
        warehouse.reconciles = []
        await warehouse.open()
        try:
            await warehouse.ensure_schema(list(registry().values()))
            columns = registry()[SOURCE].column_names
            batches = _batches(args)
            # A process's first write settles what an earlier one left: not counted.
            await warehouse.insert_json_rows(SOURCE, columns, batches[0].split(b"\n", 1)[0])
            warehouse.reconciles.clear()
            writes = []
            started = time.perf_counter()
            for body in batches:
                sent = time.perf_counter()
                await warehouse.insert_json_rows(SOURCE, columns, body)
                writes.append(time.perf_counter() - sent)
                await asyncio.sleep(max(0.0, args.every - (time.perf_counter() - sent)))
            wall = time.perf_counter() - started
            reconciles = list(warehouse.reconciles)
            read_started = time.perf_counter()
            await warehouse.settle_page_moves(SOURCE)
            read_settle = time.perf_counter() - read_started
        finally:
            await warehouse.close()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    document = {
        "machine": machine,
        "events_per_datasource": args.events,
        "batches": args.batches,
        "batch": args.batch,
        "every_s": args.every,
        "seconds": round(wall, 2),
        "writes": results.percentiles(writes, (50, 95, 100)),
        "reconciles": [round(r, 3) for r in reconciles],
        "reconcile_seconds": round(sum(reconciles), 3),
        "reconcile_share_of_time": round(sum(reconciles) / wall, 3),
        "read_settle_ms": round(read_settle * 1000, 1),
    }
    print(
        f"{len(batches)} writes of {args.batch} rows in {wall:.1f} s: write p50 "
        f"{document['writes']['p50_ms']:.0f} ms, max {document['writes']['p100_ms']:.0f}; "
        f"{len(reconciles)} reconciles, {sum(reconciles):.2f} s "
        f"({[round(r, 2) for r in reconciles]}); a read's settle {read_settle * 1000:.0f} ms"
    )
    results.publish("reconcile", document, args, chart)
    return document


def chart(document: dict[str, Any], out: Path) -> Path:
    plt = results.pyplot()
    fig, ax = plt.subplots(figsize=(7, 3.5))
    seconds = document["reconciles"]
    ax.bar(range(1, len(seconds) + 1), seconds, color="#4c72b0")
    ax.set_xlabel("reconcile")
    ax.set_ylabel("seconds")
    ax.set_title(
        f"{document['batches']} writes of {document['batch']:,} rows into "
        f"{document['events_per_datasource']:,} events; a read's settle "
        f"{document['read_settle_ms']:.0f} ms"
    )
    return results.save_figure(fig, "reconcile", out)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = results.parser(__doc__)
    parser.add_argument("--events", type=int, default=10_000_000, help="events per datasource")
    parser.add_argument("--batches", type=int, default=30)
    parser.add_argument("--batch", type=int, default=2_000, help="rows per write")
    parser.add_argument("--every", type=float, default=0.2, help="seconds between writes")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--data-root", type=Path, default=DEFAULT_DATA_ROOT)
    return parser.parse_args(argv)


if __name__ == "__main__":
    asyncio.run(main(parse_args()))
