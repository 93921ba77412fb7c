"""The cost of the pre-aggregation on the inserts: each datasource's raw insert rate with its
declared projections, as a ratio to the same table without them, in the same run.

    python -m bench.projections [--rows 100000] [--batch 10000] [--rounds 5]

One embedded chDB (in-process, as the ingest service writes it), two databases made by the
same `ensure_schema`: `full` as declared, `bare` with every projection dropped. Each round
generates `--rows` seed events per datasource and inserts the same JSON batches into both,
the order alternating by round so neither always goes first; both number their ids (the
same writer path). Ratio = the median rate with the projections ÷ the median without.
Goal (issue 18): ≥ 0.7 for the aggregate projections. A datasource whose projections are
sorted copies of its rows for lookups (`clickstream_events`, whose page moves the `bare`
database does not keep either) is reported beside them.
Writes bench/results/projections.json and bench/results/projections.png."""

from __future__ import annotations

import argparse
import asyncio
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson

from bench import results
from common import page_moves
from common.datasources import registry
from common.warehouse.embedded import EmbeddedWarehouse
from pipit.seed.generator import DATASOURCES, generate


async def _warehouse(directory: Path, database: str, bare: bool) -> EmbeddedWarehouse:
    warehouse = EmbeddedWarehouse(directory, database)
    await warehouse.open()
    await warehouse.ensure_schema(list(registry().values()))
    if bare:
        for ds in registry().values():
            for name in ds.projection_names:
                await warehouse.execute(
                    f"ALTER TABLE `{database}`.`{ds.name}` DROP PROJECTION `{name}` "
                    "SETTINGS mutations_sync = 2"
                )
            # The page moves the writer keeps (common/page_moves.py) are a pre-aggregation
            # too: without their table, an insert reconciles none.
            if ds.page_moves:
                await warehouse.execute(
                    f"DROP VIEW `{database}`.`{page_moves.pending_view(ds.name)}`"
                )
                for hidden in (page_moves.pending_table(ds.name), page_moves.table(ds.name)):
                    await warehouse.execute(f"DROP TABLE `{database}`.`{hidden}`")
    return warehouse


async def _rate(warehouse: EmbeddedWarehouse, name: str, bodies: list[bytes], rows: int) -> float:
    columns = registry()[name].column_names
    started = time.perf_counter()
    for body in bodies:
        await warehouse.insert_json_rows(name, columns, body)
    # The moves a write leaves pending are part of its cost: settled inside the timing.
    await warehouse.settle_page_moves(name)
    return rows / (time.perf_counter() - started)


async def main(args: argparse.Namespace) -> dict[str, Any]:
    machine = results.machine()
    rates: dict[str, dict[str, list[float]]] = {
        name: {"with": [], "without": []} for name in DATASOURCES
    }
    # The embedded engine lives as long as the process and merges in the background after
    # `close`, so its directory is removed without insisting (a merge may still be writing).
    work = Path(tempfile.mkdtemp(prefix="pipit-bench-projections-"))
    try:
        full = await _warehouse(work, "full", bare=False)
        bare = await _warehouse(work, "bare", bare=True)
        try:
            for round_no in range(args.rounds):
                for name in DATASOURCES:
                    lines = [
                        orjson.dumps(row)
                        for row in generate(name, args.rows, days=30, seed=args.seed + round_no)
                    ]
                    bodies = [
                        b"\n".join(lines[i : i + args.batch])
                        for i in range(0, len(lines), args.batch)
                    ]
                    order = [("with", full), ("without", bare)]
                    for label, warehouse in order if round_no % 2 == 0 else order[::-1]:
                        rate = await _rate(warehouse, name, bodies, len(lines))
                        rates[name][label].append(rate)
                print(f"round {round_no + 1} of {args.rounds} done", flush=True)
        finally:
            await full.close()
            await bare.close()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    tables = []
    for name in DATASOURCES:
        with_, without = (statistics.median(rates[name][k]) for k in ("with", "without"))
        tables.append(
            {
                "datasource": name,
                "projections": list(registry()[name].projection_names),
                "rows_per_s_with": round(with_),
                "rows_per_s_without": round(without),
                "ratio": round(with_ / without, 3),
                "rounds": rates[name],
            }
        )
        print(
            f"{name:20} with {with_:10,.0f} rows/s  without {without:10,.0f} rows/s  "
            f"ratio {with_ / without:.2f}"
        )
    document = {
        "machine": machine,
        "rows": args.rows,
        "batch": args.batch,
        "rounds": args.rounds,
        "tables": tables,
    }
    results.publish("projections", document, args, chart)
    return document


def chart(document: dict[str, Any], out: Path) -> Path:
    plt = results.pyplot()
    fig, ax = plt.subplots(figsize=(7, 3.5))
    names = [t["datasource"] for t in document["tables"]]
    ax.bar(names, [t["ratio"] for t in document["tables"]], color="#4c72b0")
    ax.axhline(0.7, color="#c44e52", linestyle="--", label="goal 0.7")
    ax.set_ylabel("insert rate with ÷ without projections")
    ax.set_ylim(0, 1.2)
    ax.legend()
    ax.set_title(f"{document['rows']:,} rows a round, {document['batch']:,}-row batches")
    return results.save_figure(fig, "projections", out)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = results.parser(__doc__)
    parser.add_argument("--rows", type=int, default=100_000, help="events per datasource a round")
    parser.add_argument("--batch", type=int, default=10_000, help="rows per insert")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seed", type=int, default=100)
    return parser.parse_args(argv)


if __name__ == "__main__":
    asyncio.run(main(parse_args()))
