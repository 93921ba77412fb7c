"""The engine's side of the benchmarks, run in a child process because chDB opens one
data directory per process and the services under test open their own:

    python -m bench.engine raw-insert --dir D --rows rows.ndjson --batch 10000
    python -m bench.engine load --dir D --events N [--days 30 --seed 42]
    python -m bench.engine direct --dir D --cases cases.json --out direct.json

`raw-insert` is the warehouse's own insert rate, the yardstick for ingest. `load` writes
the seed generator's events straight into the tables (no services), for the query
benchmark. `direct` runs each endpoint's SQL, bound exactly as the query service binds
it, on the engine itself — the layers' cost is the difference — and beside it the
tutorial's own SQL for the endpoint (bench/tutorial_sql.py) with the same values: what the
same user would get from the tutorial on this machine."""

from __future__ import annotations

import argparse
import asyncio
import functools
import hashlib
import json
import sys
import time
from pathlib import Path
from typing import Any

import orjson

from bench import tutorial_sql
from common import id_numbers, page_moves
from common.datasources import registry
from common.warehouse.embedded import EmbeddedWarehouse, session_setup
from pipit.seed.generator import DATASOURCES, generate
from services.query.service import builtin_endpoints

DATABASE = "pipit"  # the services' default (PIPIT_DATABASE)
LOAD_CHUNK = 250_000
MARKER = "dataset.json"


def schema_fingerprint() -> str:
    """Changes when any table's DDL changes, so a cached dataset is rebuilt."""
    # chDB's DDL (numbered ids), which is what the dataset holds.
    ddl = "".join(
        ds.create_table_sql(DATABASE, numbered=True)
        + ds.create_quarantine_sql(DATABASE)
        + "".join(ds.range_views_sql(DATABASE, numbered=True))
        + ("".join(page_moves.schema_sql(DATABASE, ds.name)) if ds.page_moves else "")
        for ds in registry().values()
    )
    return hashlib.sha256(ddl.encode()).hexdigest()[:16]


async def raw_insert(directory: Path, lines: list[bytes], batch: int) -> dict[str, Any]:
    warehouse = EmbeddedWarehouse(directory, "bench_raw")
    await warehouse.open()
    await warehouse.ensure_schema(list(registry().values()))
    ds = registry()["ab_test_events"]
    # One small insert first, so first-insert costs are not timed.
    await warehouse.insert_json_rows(ds.name, ds.column_names, lines[0])
    bodies = [b"\n".join(lines[i : i + batch]) for i in range(0, len(lines), batch)]
    started = time.perf_counter()
    for body in bodies:
        await warehouse.insert_json_rows(ds.name, ds.column_names, body)
    seconds = time.perf_counter() - started
    return {"rows": len(lines), "batch": batch, "seconds": seconds}


async def _declared_parts(warehouse: EmbeddedWarehouse) -> set[tuple[str, str, str]]:
    """(table, COLUMN|INDEX|PROJECTION, name) of each datasource table's hidden number
    columns, skip indexes and projections, as the engine has them."""
    tables = {ds.name: ds for ds in registry().values()}
    numbers = {
        (ds.name, id_numbers.column_name(c)) for ds in tables.values() for c in ds.numbered_columns
    }
    found: set[tuple[str, str, str]] = set()
    for kind, sql in (
        ("COLUMN", "SELECT table, name FROM system.columns WHERE database = {db:String}"),
        (
            "INDEX",
            "SELECT table, name FROM system.data_skipping_indices WHERE database = {db:String}",
        ),
        ("PROJECTION", "SELECT table, name FROM system.projections WHERE database = {db:String}"),
    ):
        for row in (await warehouse.query(sql, {"db": DATABASE})).data:
            table, name = str(row["table"]), str(row["name"])
            if table in tables and (kind != "COLUMN" or (table, name) in numbers):
                found.add((table, kind, name))
    return found


async def load(directory: Path, events: int, days: int, seed: int) -> dict[str, Any]:
    """Generates `events` rows for each datasource into `directory`, unless a dataset
    with the same parameters and schema is already there."""
    wanted = {"events": events, "days": days, "seed": seed, "schema": schema_fingerprint()}
    marker = directory / MARKER
    previous = json.loads(marker.read_text()) if marker.exists() else {}
    if previous.get("params") == wanted:
        return previous
    warehouse = EmbeddedWarehouse(directory, DATABASE)
    await warehouse.open()
    if {**previous.get("params", {}), "schema": wanted["schema"]} == wanted:
        # Same rows, newer DDL: bring the tables up to date instead of regenerating.
        before = await _declared_parts(warehouse)
        await warehouse.ensure_schema(list(registry().values()))
        # What the change added is written into the existing parts too, or the old rows
        # would be measured without it: a hidden number column, which parts from before it
        # compute per row from the lookup when read (a week's rows grouped by number: 640
        # ms so, 65 stored), an index, a projection. Only what was added: rewriting every
        # part's every projection took minutes at 10 M, and the first runs after it felt
        # the merges it left.
        added = await _declared_parts(warehouse) - before
        for table, kind, name in sorted(added):
            await warehouse.execute(
                f"ALTER TABLE `{DATABASE}`.`{table}` MATERIALIZE {kind} `{name}` "
                "SETTINGS mutations_sync = 2"
            )
        previous["params"] = wanted
        marker.write_text(json.dumps(previous, indent=2))
        return previous
    for ds in registry().values():
        await warehouse.execute(f"DROP TABLE IF EXISTS `{DATABASE}`.`{ds.name}`")
    await warehouse.ensure_schema(list(registry().values()))
    started = time.perf_counter()
    loop = asyncio.get_running_loop()
    for name in DATASOURCES:
        ds = registry()[name]
        pending: asyncio.Future[None] | None = None
        chunk: list[bytes] = []
        for row in generate(name, events, days=days, seed=seed):
            chunk.append(orjson.dumps(row))
            if len(chunk) == LOAD_CHUNK:
                if pending is not None:
                    await pending
                # chDB releases the GIL: the insert runs while the next chunk is generated.
                pending = loop.create_task(
                    warehouse.insert_json_rows(ds.name, ds.column_names, b"\n".join(chunk))
                )
                await asyncio.sleep(0)
                chunk = []
        if pending is not None:
            await pending
        if chunk:
            await warehouse.insert_json_rows(ds.name, ds.column_names, b"\n".join(chunk))
        # Merged parts, as a table that has been live for a while has; it also keeps
        # background merges from running during the measurements. Its page moves too, every
        # session settled first.
        await warehouse.execute(f"OPTIMIZE TABLE `{DATABASE}`.`{ds.name}` FINAL")
        if ds.page_moves:
            await warehouse.settle_page_moves(ds.name)
            for hidden in (page_moves.table(ds.name), page_moves.spans_table(ds.name)):
                await warehouse.execute(f"OPTIMIZE TABLE `{DATABASE}`.`{hidden}` FINAL")
    loaded = time.perf_counter() - started
    samples = {
        "ab_test_ids": await _column(warehouse, "ab_test_events", "test_id", 4),
        "user_events_users": await _column(warehouse, "user_events", "user_id", 20),
        "app_events_users": await _column(warehouse, "app_events", "user_id", 20),
        "clickstream_users": await _column(warehouse, "clickstream_events", "user_id", 20),
        "clickstream_sessions": await _column(warehouse, "clickstream_events", "session_id", 20),
    }
    size = await warehouse.query(
        "SELECT sum(rows) AS rows, sum(bytes_on_disk) AS bytes FROM system.parts "
        "WHERE database = {db:String} AND active",
        {"db": DATABASE},
    )
    document = {
        "params": wanted,
        "load_seconds": round(loaded, 1),
        "rows": size.data[0]["rows"],
        "bytes_on_disk": size.data[0]["bytes"],
        "samples": samples,
    }
    marker.write_text(json.dumps(document, indent=2))
    return document


async def _column(warehouse: EmbeddedWarehouse, table: str, column: str, k: int) -> list[str]:
    """`k` distinct values picked by hash: a fixed, unbiased sample."""
    result = await warehouse.query(
        f"SELECT {column} AS v FROM {table} GROUP BY v ORDER BY cityHash64(v) LIMIT {k}",  # noqa: S608
        {},
    )
    return [row["v"] for row in result.data]


def _series(
    run: Any, bound: list[dict[str, str]], repeat: int, max_seconds: float, min_repeat: int
) -> list[float]:
    run(bound[0])  # warm-up
    samples: list[float] = []
    deadline = time.perf_counter() + max_seconds
    for i in range(repeat):
        started = time.perf_counter()
        run(bound[i % len(bound)])
        samples.append(time.perf_counter() - started)
        if time.perf_counter() > deadline and i + 1 >= min_repeat:
            break
    return samples


def direct(
    directory: Path, cases_file: Path, repeat: int, max_seconds: float, min_repeat: int = 20
) -> dict[str, Any]:
    """Times each case's SQL on a bare chDB session (no service, no thread hop, no
    parsing of the answer), then the tutorial's SQL for it with the same values (and, where
    the tutorial's spelling matches no event, with the data's: `tutorial_respelled`); where
    the two define the answer alike, checks they agree on every case."""
    from chdb import session as chdb_session

    from pipit.query.v1 import query_service_pb2

    engine = chdb_session.Session(str((directory / "chdb").resolve()))
    for statement in session_setup():
        engine.query(statement)
    engine.query(f"USE `{DATABASE}`")
    # The id lookup starts empty in each process, as the services' warehouse fills it at
    # open: rows of parts written before numbering read their numbers from it (a range cut
    # mid-hour reads such rows).
    if engine.query(f"EXISTS TABLE `{id_numbers.NUMBERS}`", "TabSeparated").bytes().strip() == b"1":
        engine.query(id_numbers.refill_sql(DATABASE))
    by_rpc = builtin_endpoints(1024)
    cases = json.loads(cases_file.read_text())
    timings: dict[str, list[float]] = {}
    tutorial: dict[str, list[float]] = {}
    respelt: dict[str, list[float]] = {}  # tutorial_sql.RESPELLED's
    agree: dict[str, bool] = {}
    for name, variants in cases.items():
        endpoint = by_rpc[variants[0]["rpc"]]
        request_class = getattr(query_service_pb2, endpoint.request_class.DESCRIPTOR.name)
        bound = [endpoint.bind(request_class(**v["fields"])) for v in variants]

        def ours(params: dict[str, str], endpoint: Any = endpoint) -> bytes:
            # As the query service runs it: a whole range's views are their siblings, each
            # call replaced by its SELECT over the numbered ids (chDB's).
            sql = endpoint.sql_for(params, inline=True)
            return engine.query(sql, "JSON", params=params).bytes()

        timings[name] = _series(ours, bound, repeat, max_seconds, min_repeat)
        if name not in tutorial_sql.SQL:
            continue  # a pipe of ours the tutorials have no counterpart for (test_results…)

        def theirs(params: dict[str, str], sql: str = tutorial_sql.SQL[name]) -> bytes:
            return engine.query(sql, "JSON", params=params).bytes()

        tutorial[name] = _series(theirs, bound, repeat, max_seconds, min_repeat)
        if name in tutorial_sql.RESPELLED:
            respelled = functools.partial(theirs, sql=tutorial_sql.RESPELLED[name])
            respelt[name] = _series(respelled, bound, repeat, max_seconds, min_repeat)
        if name in tutorial_sql.AGREE:
            agree[name] = all(
                tutorial_sql.comparable(orjson.loads(ours(params))["data"])
                == tutorial_sql.comparable(orjson.loads(theirs(params))["data"])
                for params in bound
            )
    return {
        "timings": timings,
        "tutorial": tutorial,
        "tutorial_respelled": respelt,
        "answers_agree": agree,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    raw = commands.add_parser("raw-insert")
    raw.add_argument("--dir", type=Path, required=True)
    raw.add_argument("--rows", type=Path, required=True)
    raw.add_argument("--batch", type=int, default=10_000)
    loading = commands.add_parser("load")
    loading.add_argument("--dir", type=Path, required=True)
    loading.add_argument("--events", type=int, required=True)
    loading.add_argument("--days", type=int, default=30)
    loading.add_argument("--seed", type=int, default=42)
    timing = commands.add_parser("direct")
    timing.add_argument("--dir", type=Path, required=True)
    timing.add_argument("--cases", type=Path, required=True)
    timing.add_argument("--repeat", type=int, default=200)
    timing.add_argument("--max-seconds", type=float, default=5.0)
    timing.add_argument("--min-repeat", type=int, default=20)
    args = parser.parse_args(argv)
    if args.command == "raw-insert":
        result = asyncio.run(raw_insert(args.dir, args.rows.read_bytes().split(b"\n"), args.batch))
    elif args.command == "load":
        result = asyncio.run(load(args.dir, args.events, args.days, args.seed))
    else:
        result = direct(args.dir, args.cases, args.repeat, args.max_seconds, args.min_repeat)
    sys.stdout.write(json.dumps(result) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
