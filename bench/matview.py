"""Ingest with a materialized pipe in place: the raw Events API rate into a datasource
that a materialized pipe (daily distinct users and views, `uniqExactState`/`countState`
into an AggregatingMergeTree) reads, beside the rate into the same datasource without it,
in the same run. Issue 18's goal: the ratio ≥ 0.7.

    python -m bench.matview [--events 200000] [--batch 1000] [--clients 4] [--rounds 3]

Each run is a fresh `pipit up --project` over embedded chDB (the project with or without
the materialized pipe), so runs share no merges. The clients post pre-encoded NDJSON
through the gateway; each client's last request waits until its rows are in the warehouse
(and so in the target: the view runs inside the insert), and the rate is events divided
by the time until every client has that answer. Rounds alternate the two projects; each
figure is the median round. After each run with the pipe, the pipe's endpoint must count
every event sent, or the run fails.

Writes bench/results/matview.json."""

from __future__ import annotations

import argparse
import asyncio
import random
import shutil
import tempfile
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import orjson

from bench import launch, results

SOURCE = """SCHEMA >
    `timestamp` DateTime `json:$.timestamp`,
    `user_id` String `json:$.user_id`,
    `session_id` String `json:$.session_id`,
    `path` String `json:$.path`,
    `country` LowCardinality(String) `json:$.country`

ENGINE "MergeTree"
ENGINE_PARTITION_KEY "toYYYYMM(timestamp)"
ENGINE_SORTING_KEY "timestamp, user_id"
"""
TARGET = """SCHEMA >
    `day` Date,
    `users` AggregateFunction(uniqExact, String),
    `views` AggregateFunction(count)

ENGINE "AggregatingMergeTree"
ENGINE_SORTING_KEY "day"
"""
MATERIALIZED = """NODE daily
SQL >
    SELECT toDate(timestamp) AS day, uniqExactState(user_id) AS users, countState() AS views
    FROM page_views
    GROUP BY day

TYPE materialized
DATASOURCE daily_users
"""
ENDPOINT = """NODE endpoint
SQL >
    SELECT day, uniqExactMerge(users) AS users, countMerge(views) AS views
    FROM daily_users
    GROUP BY day
    ORDER BY day

TYPE endpoint
"""


def write_project(folder: Path, materialized: bool) -> Path:
    files = {"datasources/page_views.datasource": SOURCE}
    if materialized:
        files |= {
            "datasources/daily_users.datasource": TARGET,
            "pipes/daily_users_mv.pipe": MATERIALIZED,
            "pipes/daily_uniques.pipe": ENDPOINT,
        }
    for path, text in files.items():
        (folder / path).parent.mkdir(parents=True, exist_ok=True)
        (folder / path).write_text(text)
    return folder


def payloads(events: int, batch: int, seed: int) -> list[bytes]:
    rng = random.Random(seed)
    base = datetime(2026, 11, 1)
    rows = [
        orjson.dumps(
            {
                "timestamp": (base + timedelta(seconds=rng.randrange(30 * 86400))).strftime(
                    "%Y-%m-%d %H:%M:%S"
                ),
                "user_id": f"u{rng.randrange(50_000)}",
                "session_id": f"s{rng.randrange(200_000)}",
                "path": f"/p/{rng.randrange(500)}",
                "country": rng.choice(["NL", "DE", "US", "FR", "ES", "JP"]),
            }
        )
        for _ in range(events)
    ]
    return [b"\n".join(rows[i : i + batch]) for i in range(0, events, batch)]


async def _client(url: str, bodies: list[bytes]) -> int:
    headers = {"Authorization": f"Bearer {launch.TOKEN}", "Content-Type": "application/x-ndjson"}
    total = 0
    async with aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=1), headers=headers
    ) as http:
        for n, data in enumerate(bodies):
            wait = "&wait=true" if n == len(bodies) - 1 else ""
            async with http.post(f"{url}/v0/events?name=page_views{wait}", data=data) as r:
                body = await r.read()
                if r.status not in (200, 202):
                    raise RuntimeError(f"HTTP {r.status}: {body[:300]!r}")
                total += orjson.loads(body)["successful_rows"]
    return total


async def run_one(
    materialized: bool, bodies: list[bytes], events: int, clients: int, work: Path
) -> dict[str, Any]:
    run_dir = Path(tempfile.mkdtemp(prefix="mv-" if materialized else "raw-", dir=work))
    project = write_project(run_dir / "project", materialized)
    suite = launch.start_up(run_dir, {"PIPIT_PROJECT": str(project)})
    try:
        url = suite.gateway_url
        await _client(url, bodies[:1])  # warm-up, waited for, not counted
        plan = [bodies[1 + c :: clients] for c in range(clients)]
        cpu_before = suite.service.cpu_seconds()
        started = time.perf_counter()
        done = await asyncio.gather(*(_client(url, part) for part in plan))
        seconds = time.perf_counter() - started
        if sum(done) != events:
            raise RuntimeError(f"{sum(done)} rows acknowledged of {events}")
        if materialized:
            headers = {"Authorization": f"Bearer {launch.TOKEN}"}
            async with (
                aiohttp.ClientSession(headers=headers) as http,
                http.get(f"{url}/v0/pipes/daily_uniques.json") as r,
            ):
                counted = sum(row["views"] for row in (await r.json())["data"])
            sent = events + bodies[0].count(b"\n") + 1
            if counted != sent:
                raise RuntimeError(f"the target counts {counted} views of {sent} sent")
        return {
            "materialized": materialized,
            "events": events,
            "seconds": round(seconds, 3),
            "events_per_s": round(events / seconds),
            "cpu_us_per_event": round((suite.service.cpu_seconds() - cpu_before) / events * 1e6, 2),
            "peak_rss_mib": suite.service.peak_rss_mib(),
        }
    finally:
        suite.service.stop()


def _median(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    ordered = sorted(rounds, key=lambda r: r["events_per_s"])
    return ordered[(len(ordered) - 1) // 2]


async def main(args: argparse.Namespace) -> dict[str, Any]:
    bodies = payloads(args.events + args.batch, args.batch, args.seed)
    events = sum(b.count(b"\n") + 1 for b in bodies[1:])
    work = Path(tempfile.mkdtemp(prefix="pipit-bench-matview-"))
    runs: dict[bool, list[dict[str, Any]]] = {False: [], True: []}
    try:
        for _ in range(args.rounds):
            for materialized in (False, True):
                run = await run_one(materialized, bodies, events, args.clients, work)
                runs[materialized].append(run)
                print(orjson.dumps(run).decode(), flush=True)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    without, with_view = _median(runs[False]), _median(runs[True])
    document = {
        "events": events,
        "batch": args.batch,
        "clients": args.clients,
        "rounds": args.rounds,
        "without_view": without,
        "with_view": with_view,
        "ratio": round(with_view["events_per_s"] / without["events_per_s"], 3),
        "all_runs": runs[False] + runs[True],
    }
    results.write("matview", document, args.out)
    return document


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = results.parser(__doc__, chart=False)
    parser.add_argument("--events", type=int, default=200_000, help="events per run")
    parser.add_argument("--batch", type=int, default=1_000, help="events per request")
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=3, help="runs of each project")
    parser.add_argument("--seed", type=int, default=18)
    parser.add_argument("--keep", action="store_true", help="keep the runs' data and logs")
    return parser.parse_args(argv)


if __name__ == "__main__":
    document = asyncio.run(main(parse_args()))
    without, with_view = document["without_view"], document["with_view"]
    print(
        f"without the view {without['events_per_s']} events/s, with it "
        f"{with_view['events_per_s']} events/s: ratio {document['ratio']}"
    )
