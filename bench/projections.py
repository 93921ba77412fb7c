"""The cost of the pre-aggregation on the inserts: each datasource's raw insert rate with its
declared projections, as a ratio to the same table without its pre-aggregation, in the same
run.

    python -m bench.projections [--rows 250000] [--batch 50000] [--rounds 5] [--days 1]
        [--recurring-sessions]

One embedded chDB (in-process, as the ingest service writes it), three databases made by
the same `ensure_schema` (chDB's form of the tables):
- `full`, as declared;
- `lookups`, without the pre-aggregation: the aggregate projections (a `GROUP BY` query)
  dropped, and the page moves the writer keeps (common/page_moves.py); the projections
  that are sorted copies of the rows for lookups (`get_session_events`' `by_session_rows`,
  say) stay, as they would in a design without the pre-aggregation;
- `bare`, every projection and the page moves dropped.
Each round generates `--rows` seed events per datasource over `--days` days, from where the
last round's ended (a live site's events arrive in time order: 250,000 in a day; `--days 30`
for a month's backfill, whose every batch spans days, so many more hours to aggregate), and
inserts the same JSON batches (of the ingest service's flush size) into the three, the order
turning by round so none always goes first; all number their ids (the same writer path), and
the moves left pending are settled inside the timing (`ratio`). The service settles them
when a read of the moves comes (`page_paths`), not on the write's path, so the inserts alone
are timed too (`inserts_alone_ratio`: the ingest path's own rate). Each round's sessions are
its own (the ids hashed with the round, as a site's sessions are new ones);
`--recurring-sessions` keeps the generator's ids instead, which it numbers from 1 in every
round, so each round's views fall into the sessions of the rounds before: the page moves'
hardest case, each reconcile reading every view those sessions have had, across every
round's days.
Ratio = the median rate as declared ÷ the median without the pre-aggregation: issue 18's
goal, ≥ 0.7. The ratio to the bare table (the lookups' copies counted too) is reported
beside it.
Writes bench/results/projections.json and bench/results/projections.png."""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import shutil
import statistics
import tempfile
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import orjson

from bench import results
from common import page_moves
from common.config import Settings
from common.datasources import Datasource, projection_name, registry
from common.warehouse.embedded import EmbeddedWarehouse
from pipit.seed.generator import DATASOURCES, DEFAULT_START, generate

# The databases, by what each keeps of the declared tables (module docstring).
_KEPT = ("full", "lookups", "bare")


def _aggregates(ds: Datasource) -> set[str]:
    """The names of `ds`'s aggregate projections (chDB's form): those that group."""
    return {projection_name(p) for p in ds.projections_for(numbered=True) if " GROUP BY " in p}


def _fresh(row: dict[str, Any], round_no: int) -> dict[str, Any]:
    """`row` with a session id of its round's own: the generator numbers sessions from 1 in
    every round, where a site's sessions are new ones. Hashed, so that the ids spread
    over the sorted copies as random ones do (a prefix would keep a round's together)."""
    if "session_id" not in row:
        return row
    digest = hashlib.blake2b(f"{round_no}:{row['session_id']}".encode(), digest_size=8)
    return {**row, "session_id": digest.hexdigest()}


async def _warehouse(directory: Path, database: str) -> EmbeddedWarehouse:
    warehouse = EmbeddedWarehouse(directory, database)
    await warehouse.open()
    await warehouse.ensure_schema(list(registry().values()))
    if database != "full":
        for ds in registry().values():
            aggregates = _aggregates(ds)
            for name in ds.projection_names_for(numbered=True):
                if database == "lookups" and name not in aggregates:
                    continue
                await warehouse.execute(
                    f"ALTER TABLE `{database}`.`{ds.name}` DROP PROJECTION `{name}` "
                    "SETTINGS mutations_sync = 2"
                )
            # The page moves the writer keeps (common/page_moves.py) are a pre-aggregation
            # too: without their table, an insert reconciles none.
            if ds.page_moves:
                for statement in page_moves.dropped_sql(database, ds.name):
                    await warehouse.execute(statement)
    return warehouse


async def _timed(
    warehouse: EmbeddedWarehouse, name: str, bodies: list[bytes]
) -> tuple[float, float]:
    """Seconds the inserts took, and then the settling of the page moves they left pending."""
    columns = registry()[name].column_names
    started = time.perf_counter()
    for body in bodies:
        await warehouse.insert_json_rows(name, columns, body)
    inserted = time.perf_counter()
    # The moves a write leaves pending are part of its cost, though the service settles
    # them when a read of the moves comes, not on the write's path: timed apart.
    await warehouse.settle_page_moves(name)
    return inserted - started, time.perf_counter() - inserted


async def main(args: argparse.Namespace) -> dict[str, Any]:
    machine = results.machine()
    # Rows per second a round: inserts and settling together, and the inserts alone.
    rates: dict[str, dict[str, list[float]]] = {
        name: {k: [] for k in _KEPT} for name in DATASOURCES
    }
    insert_rates: dict[str, dict[str, list[float]]] = {
        name: {k: [] for k in _KEPT} for name in DATASOURCES
    }
    # The embedded engine lives as long as the process and merges in the background after
    # `close`, so its directory is removed without insisting (a merge may still be writing).
    work = Path(tempfile.mkdtemp(prefix="pipit-bench-projections-"))
    try:
        warehouses = [(kept, await _warehouse(work, kept)) for kept in _KEPT]
        try:
            for round_no in range(args.rounds):
                for name in DATASOURCES:
                    start = DEFAULT_START + timedelta(days=args.days * round_no)
                    rows = generate(
                        name, args.rows, days=args.days, seed=args.seed + round_no, start=start
                    )
                    lines = [
                        orjson.dumps(row if args.recurring_sessions else _fresh(row, round_no))
                        for row in rows
                    ]
                    bodies = [
                        b"\n".join(lines[i : i + args.batch])
                        for i in range(0, len(lines), args.batch)
                    ]
                    turn = round_no % len(warehouses)
                    for kept, warehouse in warehouses[turn:] + warehouses[:turn]:
                        inserting, settling = await _timed(warehouse, name, bodies)
                        rates[name][kept].append(len(lines) / (inserting + settling))
                        insert_rates[name][kept].append(len(lines) / inserting)
                print(f"round {round_no + 1} of {args.rounds} done", flush=True)
        finally:
            for _, warehouse in warehouses:
                await warehouse.close()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    tables = []
    for name in DATASOURCES:
        full, lookups, bare = (statistics.median(rates[name][k]) for k in _KEPT)
        full_inserts, lookups_inserts = (
            statistics.median(insert_rates[name][k]) for k in ("full", "lookups")
        )
        ds = registry()[name]
        aggregates = _aggregates(ds)
        tables.append(
            {
                "datasource": name,
                "aggregate_projections": [
                    p for p in ds.projection_names_for(numbered=True) if p in aggregates
                ],
                "lookup_projections": [
                    p for p in ds.projection_names_for(numbered=True) if p not in aggregates
                ],
                "page_moves": ds.page_moves,
                "rows_per_s_with": round(full),
                "rows_per_s_without": round(lookups),
                "rows_per_s_bare": round(bare),
                "ratio": round(full / lookups, 3),
                "ratio_to_bare": round(full / bare, 3),
                # The write path's own rate: the page moves' settling waits for a read.
                "inserts_alone_rows_per_s_with": round(full_inserts),
                "inserts_alone_rows_per_s_without": round(lookups_inserts),
                "inserts_alone_ratio": round(full_inserts / lookups_inserts, 3),
                "rounds": rates[name],
                "rounds_inserts_alone": insert_rates[name],
            }
        )
        print(
            f"{name:20} with {full:10,.0f} rows/s  without the pre-aggregation "
            f"{lookups:10,.0f}  ratio {full / lookups:.2f}  "
            f"(bare {bare:10,.0f}, ratio {full / bare:.2f}; "
            f"inserts alone {full_inserts / lookups_inserts:.2f})"
        )
    document = {
        "machine": machine,
        "recurring_sessions": args.recurring_sessions,
        "days": args.days,
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
    ax.set_ylabel("insert rate with ÷ without pre-aggregation")
    ax.set_ylim(0, 1.2)
    ax.legend()
    ax.set_title(f"{document['rows']:,} rows a round, {document['batch']:,}-row batches")
    return results.save_figure(fig, "projections", out)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = results.parser(__doc__)
    parser.add_argument("--rows", type=int, default=250_000, help="events per datasource a round")
    # The ingest service's own flush at its highest rates (a flush comes at this many rows,
    # or after `flush_interval`): the raw ingest rate is the rate of such inserts.
    parser.add_argument(
        "--batch", type=int, default=Settings.flush_rows, help="rows per insert (the flush size)"
    )
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seed", type=int, default=100)
    parser.add_argument(
        "--days",
        type=int,
        default=1,
        help="days each round's events span, the rounds one after another in time",
    )
    parser.add_argument(
        "--recurring-sessions",
        action="store_true",
        help="keep the generator's session ids, which every round numbers from 1 again",
    )
    return parser.parse_args(argv)


if __name__ == "__main__":
    asyncio.run(main(parse_args()))
