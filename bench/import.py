"""Bulk import: the Data Sources API's import rate for CSV, NDJSON and Parquet files, as a
ratio to chDB's own insert of the same file in the same run, and the ingest process's peak
memory against the file's size.

    python -m bench.import [--rows 2000000] [--formats csv,ndjson,parquet] [--bad 1000] [--upload]

Writes each file of `--rows` A/B test events (plus `--bad` rows that fail validation, in
CSV and NDJSON) to disk a chunk at a time, then for each format:

- chDB's own insert: a fresh process running `INSERT INTO <table> SELECT * FROM file(…)`
  into a table made from the same datasource declaration (no validation, no quarantine);
- Pipit: `pipit up` (defaults, embedded chDB, a fresh data directory) imports the file from
  a URL this script serves (`POST /v0/datasources?url=…`, through the gateway), or with
  `--upload` from the request itself (a multipart form streamed from disk), followed to the
  end of its job; then the rows and quarantined rows are counted and checked against
  the file's. The ingest process's peak RSS (VmHWM: everything, chDB included) is read from
  /proc at the end.

Ratio = Pipit's rows/s ÷ chDB's rows/s for that file. Goals (issue 16): ≥ 0.5 for Parquet,
≥ 0.3 for CSV. Writes bench/results/import.json and bench/results/import.png."""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import random
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import orjson
from aiohttp import web

from bench import launch, results
from common.datasources import registry

DATASOURCE = "ab_test_events"
FORMATS = ("csv", "ndjson", "parquet")
_CHUNK_ROWS = 50_000
_CLICKHOUSE_FORMATS = {"csv": "CSVWithNames", "ndjson": "JSONEachRow", "parquet": "Parquet"}
_BAD_CSV = ["not a time", "u", "bad", "A", "view", "1", "1.5", "s", "mobile", "US"]


def _chunk(start: int, count: int, rng: random.Random) -> list[dict[str, Any]]:
    origin = datetime(2024, 1, 1)
    return [
        {
            "timestamp": (origin + timedelta(seconds=3 * (start + i))).strftime(
                "%Y-%m-%d %H:%M:%S"
            ),
            "user_id": f"user_{rng.randrange(100_000)}",
            "test_id": f"test_{rng.randrange(20)}",
            "variant": rng.choice("AB"),
            "event_type": rng.choice(("page_view", "click", "add_to_cart", "purchase")),
            "conversion": rng.choice((0, 0, 0, 1)),
            "revenue": round(rng.uniform(0, 200), 2),
            "session_id": f"session_{rng.randrange(1_000_000)}",
            "device": rng.choice(("mobile", "desktop", "tablet")),
            "country": rng.choice(("US", "ES", "DE", "FR", "GB", "BR")),
        }
        for i in range(count)
    ]


def write_files(work: Path, rows: int, bad: int, formats: list[str], seed: int) -> dict[str, Path]:
    """The files, written a chunk of rows at a time (never whole in memory)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    columns = list(registry()[DATASOURCE].column_names)
    paths = {fmt: work / f"events.{fmt}" for fmt in formats}
    rng = random.Random(seed)
    writers: dict[str, Any] = {}
    files = {fmt: paths[fmt].open("w", newline="") for fmt in formats if fmt != "parquet"}
    if "csv" in files:
        writers["csv"] = csv.writer(files["csv"], lineterminator="\n")
        writers["csv"].writerow(columns)
    parquet = None
    try:
        for start in range(0, rows, _CHUNK_ROWS):
            chunk = _chunk(start, min(_CHUNK_ROWS, rows - start), rng)
            if "csv" in writers:
                writers["csv"].writerows([row[c] for c in columns] for row in chunk)
            if "ndjson" in files:
                files["ndjson"].write("\n".join(orjson.dumps(r).decode() for r in chunk) + "\n")
            if "parquet" in paths:
                for row in chunk:
                    row["timestamp"] = datetime.strptime(row["timestamp"], "%Y-%m-%d %H:%M:%S")
                table = pa.Table.from_pylist(chunk)
                if parquet is None:
                    parquet = pq.ParquetWriter(paths["parquet"], table.schema)
                parquet.write_table(table)
        if "csv" in writers:
            writers["csv"].writerows([_BAD_CSV] * bad)
        if "ndjson" in files:
            files["ndjson"].write('{"timestamp": "not a time"}\n' * bad)
    finally:
        for file in files.values():
            file.close()
        if parquet is not None:
            parquet.close()
    return paths


def baseline(path: Path, fmt: str, work: Path) -> dict[str, Any]:
    """chDB's own insert of the file, in a process of its own (one chDB data directory per
    process)."""
    output = subprocess.run(
        [sys.executable, "-m", "bench.import", "--baseline", str(path), fmt, str(work)],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(output.stdout)


def _baseline_main(path: str, fmt: str, work: str) -> None:
    from chdb import session

    ds = registry()[DATASOURCE]
    db = session.Session(str(Path(work) / f"chdb-{fmt}"))
    db.query("CREATE DATABASE IF NOT EXISTS bench")
    db.query(ds.create_table_sql("bench"))
    started = time.perf_counter()
    db.query(
        f"INSERT INTO bench.{DATASOURCE} SELECT * FROM file('{path}', "  # noqa: S608 - ours
        f"{_CLICKHOUSE_FORMATS[fmt]}) SETTINGS input_format_allow_errors_ratio = 1, "
        "input_format_allow_errors_num = 1000000000"
    )
    elapsed = time.perf_counter() - started
    rows = int(db.query(f"SELECT count() FROM bench.{DATASOURCE}", "CSV").bytes())  # noqa: S608
    print(json.dumps({"rows": rows, "seconds": round(elapsed, 3)}))


async def _serve(paths: dict[str, Path]) -> tuple[web.AppRunner, str]:
    async def serve(request: web.Request) -> web.StreamResponse:
        return web.FileResponse(paths[request.match_info["fmt"]])

    app = web.Application()
    app.router.add_get("/events.{fmt}", serve)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = launch.free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner, f"http://127.0.0.1:{port}"


async def pipit_import(url: str, fmt: str, work: Path, upload: Path | None) -> dict[str, Any]:
    """`url` imported (or, with `upload`, that file sent in the request as a multipart form,
    streamed from disk) and followed to the end of its job."""
    suite = launch.start_up(work / f"pipit-{fmt}", {"PIPIT_IMPORT_ALLOW_PRIVATE_URLS": "true"})
    auth = {"Authorization": f"Bearer {launch.TOKEN}"}
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None)) as http:
            started = time.perf_counter()
            file = None if upload is None else upload.open("rb")  # noqa: ASYNC230 - aiohttp reads it
            data: Any = {"url": url}
            if file is not None:
                data = aiohttp.FormData()
                data.add_field(fmt, file, filename=upload.name)  # type: ignore[union-attr]
            try:
                async with http.post(
                    f"{suite.gateway_url}/v0/datasources?name={DATASOURCE}&format={fmt}",
                    data=data,
                    headers=auth,
                ) as response:
                    answer = await response.json()
                    if response.status != 200:
                        raise RuntimeError(f"import refused: {answer}")
            finally:
                if file is not None:
                    file.close()
            while True:
                async with http.get(
                    f"{suite.gateway_url}/v0/jobs/{answer['id']}", headers=auth
                ) as response:
                    job = await response.json()
                if job["status"] in ("done", "error"):
                    break
                await asyncio.sleep(0.2)
            elapsed = time.perf_counter() - started
            if job["status"] != "done":
                raise RuntimeError(f"import failed: {job.get('errors')}")
            counts = {}
            for table in (DATASOURCE, f"{DATASOURCE}_quarantine"):
                async with http.get(
                    f"{suite.gateway_url}/v0/sql",
                    params={"q": f"SELECT count() AS n FROM {table}"},  # noqa: S608 - ours
                    headers=auth,
                ) as response:
                    counts[table] = (await response.json())["data"][0]["n"]
        return {
            "seconds": round(elapsed, 3),
            "job_rows": job["statistics"]["row_count"],
            "job_quarantined": job["quarantine_rows"],
            "rows": int(counts[DATASOURCE]),
            "quarantined": int(counts[f"{DATASOURCE}_quarantine"]),
            "peak_rss_mib": suite.service.peak_rss_mib(),
        }
    finally:
        suite.service.stop()


async def main(args: argparse.Namespace) -> dict[str, Any]:
    machine = results.machine()
    work = Path(tempfile.mkdtemp(prefix="pipit-bench-import-"))
    try:
        paths = write_files(work, args.rows, args.bad, args.formats, args.seed)
        runner, base = await _serve(paths)
        runs = []
        try:
            for fmt in args.formats:
                size = paths[fmt].stat().st_size
                bad = 0 if fmt == "parquet" else args.bad
                engine = baseline(paths[fmt], fmt, work)
                pipit = await pipit_import(
                    f"{base}/events.{fmt}", fmt, work, paths[fmt] if args.upload else None
                )
                run = {
                    "format": fmt,
                    "source": "upload" if args.upload else "url",
                    "file_bytes": size,
                    "file_mib": round(size / 2**20, 1),
                    "rows_in_file": args.rows,
                    "bad_rows_in_file": bad,
                    "chdb": {**engine, "rows_per_s": round(args.rows / engine["seconds"])},
                    "pipit": {**pipit, "rows_per_s": round(args.rows / pipit["seconds"])},
                    "counts_match": pipit["rows"] == pipit["job_rows"] == args.rows
                    and pipit["quarantined"] == pipit["job_quarantined"] == bad,
                }
                run["ratio"] = round(run["pipit"]["rows_per_s"] / run["chdb"]["rows_per_s"], 3)
                run["peak_rss_to_file"] = round(pipit["peak_rss_mib"] * 2**20 / size, 3)
                runs.append(run)
                print(
                    f"{fmt:>8}: {run['file_mib']} MiB, chDB {run['chdb']['rows_per_s']:,} rows/s, "
                    f"pipit {run['pipit']['rows_per_s']:,} rows/s (ratio {run['ratio']}), "
                    f"peak RSS {pipit['peak_rss_mib']} MiB, counts match: {run['counts_match']}",
                    file=sys.stderr,
                )
        finally:
            await runner.cleanup()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    document = {
        "machine": machine,
        "datasource": DATASOURCE,
        "rows": args.rows,
        "settings": "pipit defaults (import batches of 50000 rows), "
        + ("the file streamed in the request" if args.upload else "url= import")
        + " via our gateway",
        "runs": runs,
    }
    results.publish("import", document, args, chart)
    return document


def chart(document: dict[str, Any], out: Path) -> Path:
    plt = results.pyplot()
    runs = document["runs"]
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    names = [r["format"] for r in runs]
    xs = range(len(runs))
    left.bar([x - 0.2 for x in xs], [r["chdb"]["rows_per_s"] for r in runs], 0.4, label="chDB")
    left.bar([x + 0.2 for x in xs], [r["pipit"]["rows_per_s"] for r in runs], 0.4, label="Pipit")
    for x, run in zip(xs, runs, strict=True):
        left.text(x + 0.2, run["pipit"]["rows_per_s"], f"×{run['ratio']}", ha="center", fontsize=8)
    left.set_xticks(list(xs), names)
    left.set_ylabel("rows/s")
    left.set_title(f"Import rate, {document['rows']:,} rows")
    left.legend(fontsize=8)
    right.bar([x - 0.2 for x in xs], [r["file_mib"] for r in runs], 0.4, label="file")
    right.bar(
        [x + 0.2 for x in xs], [r["pipit"]["peak_rss_mib"] for r in runs], 0.4, label="peak RSS"
    )
    right.set_xticks(list(xs), names)
    right.set_ylabel("MiB")
    right.set_title("File size and ingest peak memory")
    right.legend(fontsize=8)
    return results.save_figure(fig, "import", out)


def _list(text: str) -> list[str]:
    return [part for part in text.split(",") if part]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = results.parser(__doc__)
    parser.add_argument("--rows", type=int, default=2_000_000, help="valid rows per file")
    parser.add_argument("--bad", type=int, default=1_000, help="invalid rows (CSV, NDJSON)")
    parser.add_argument("--formats", type=_list, default=list(FORMATS))
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument(
        "--upload",
        action="store_true",
        help="send each file in the request (a streamed multipart form) instead of by url=",
    )
    args = parser.parse_args(argv)
    unknown = set(args.formats) - set(FORMATS)
    if unknown:
        parser.error(f"unknown formats {sorted(unknown)}; choose from {', '.join(FORMATS)}")
    return args


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "--baseline":
        _baseline_main(*sys.argv[2:])
        sys.exit(0)
    result = asyncio.run(main(parse_args()))
    print(json.dumps({k: v for k, v in result.items() if k != "machine"}, indent=2))
