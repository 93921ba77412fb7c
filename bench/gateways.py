"""Our gateway beside the real Envoy, in one run, in front of the same services: requests/s and
p50/p99 latency of a cheap pipe (`get_session_events` for one session) and of the Events API (a
small NDJSON body, queued: 202), with concurrent clients, through `pipit gateway` and through
Envoy configured by gateway/envoy/. Reported as ratios, ours / Envoy. The services bound both
of those, so a third scenario leaves mostly the gateways' own work: an Events API call the
ingest service refuses at once (unknown datasource, 404). The CPU each gateway process spends
per request is the figure that depends least on the services and the machine's other load.

    python -m bench.gateways [--requests 3000] [--clients 16] [--rounds 2]
                             [--events-per-post 10] [--envoy-concurrency N] [--out DIR]
                             [--keep]

One `pipit up` serves ingest and query (embedded chDB; its own gateway stays idle); our gateway
runs as its own `pipit gateway` process and Envoy as its own process (worker threads: one per
core unless --envoy-concurrency says otherwise), each logging one JSON line per request to a
file. The load comes from this process (aiohttp, one connection per client). Rounds alternate
which gateway goes first, so drift on the machine falls on both alike; each gateway's figures
pool its rounds. Writes bench/results/gateways.json; the suite's data and the logs are
removed at the end unless --keep."""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import shutil
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import aiohttp
import orjson

from bench import launch, results
from gateway.envoy import EnvoyConfig, start_envoy
from pipit.seed.generator import generate

SEED_BATCH = 5_000
GATEWAYS = ("pipit", "envoy")
AUTH = {"Authorization": f"Bearer {launch.TOKEN}"}


def _cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process, all its threads (Linux)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def _load(
    http: aiohttp.ClientSession,
    method: str,
    url: str,
    body: bytes | None,
    requests: int,
    clients: int,
) -> dict[str, Any]:
    """`requests` calls from `clients` concurrent workers; latency of each, and the wall time."""
    latencies: list[float] = []
    statuses: Counter[int] = Counter()
    counter = itertools.count()

    async def worker() -> None:
        while next(counter) < requests:
            started = time.perf_counter()
            async with http.request(method, url, data=body, headers=AUTH) as response:
                await response.read()
                statuses[response.status] += 1
            latencies.append(time.perf_counter() - started)

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(clients)))
    return {"latencies": latencies, "seconds": time.perf_counter() - started, "statuses": statuses}


async def _seed(http: aiohttp.ClientSession, base: str, count: int) -> str:
    """Clickstream events for the pipe to read; returns the busiest session."""
    events = list(generate("clickstream_events", count, seed=5))
    for start in range(0, len(events), SEED_BATCH):
        body = b"\n".join(orjson.dumps(e) for e in events[start : start + SEED_BATCH])
        async with http.post(
            f"{base}/v0/events?name=clickstream_events&wait=true", data=body, headers=AUTH
        ) as response:
            if response.status != 200:
                raise RuntimeError(f"seeding failed: {response.status} {await response.text()}")
    sessions = Counter(e["session_id"] for e in events)
    return max(sorted(sessions), key=sessions.__getitem__)


def _events_body(count: int) -> bytes:
    # A different datasource from the pipe's, so the writes do not change what it reads.
    return b"\n".join(orjson.dumps(e) for e in generate("ab_test_events", count, seed=9))


def _ratio(ours: float, envoy: float) -> float | None:
    """ours / Envoy; None when Envoy's figure is 0 (CPU time is counted in clock ticks, so
    a tiny run can measure none)."""
    return round(ours / envoy, 3) if envoy else None


def _summary(runs: list[dict[str, Any]], cpu: float) -> dict[str, Any]:
    latencies = [x for run in runs for x in run["latencies"]]
    seconds = sum(run["seconds"] for run in runs)
    statuses: Counter[int] = sum((run["statuses"] for run in runs), Counter())
    return {
        "requests": len(latencies),
        "requests_per_second": round(len(latencies) / seconds, 1),
        **results.percentiles(latencies, (50, 99)),
        "statuses": {str(k): v for k, v in sorted(statuses.items())},
        "cpu_seconds": round(cpu, 2),
        "cpu_ms_per_request": round(cpu * 1000 / len(latencies), 3),
    }


async def main(args: argparse.Namespace) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="pipit-bench-gateways-"))
    machine = results.machine()
    ingest_port, query_port = launch.free_port(), launch.free_port()
    up = launch.start(
        ["up"],
        {
            "PIPIT_DATA_DIR": str(work / "data"),
            "PIPIT_INGEST_PORT": str(ingest_port),
            "PIPIT_QUERY_PORT": str(query_port),
            "PIPIT_GATEWAY_PORT": str(launch.free_port()),
            "PIPIT_CLICKHOUSE_URL": "",
            "PIPIT_LOG_LEVEL": "warning",
        },
        {"ingest", "query", "gateway"},
        work / "logs",
    )
    targets = {"ingest": f"127.0.0.1:{ingest_port}", "query": f"127.0.0.1:{query_port}"}
    ours = envoy = None
    try:
        ours = launch.start(
            ["gateway"],
            {
                "PIPIT_GATEWAY_PORT": str(launch.free_port()),
                "PIPIT_INGEST_TARGET": targets["ingest"],
                "PIPIT_QUERY_TARGET": targets["query"],
            },
            {"gateway"},
            work / "logs",
        )
        # The same services and settings `pipit gateway --gateway envoy` would give Envoy.
        from services.ingest.service import SERVICE as INGEST
        from services.query.service import SERVICE as QUERY
        from services.query.sql_api import SERVICE as SQL

        with (work / "logs" / "envoy-access.log").open("ab") as log:
            envoy = await start_envoy(
                EnvoyConfig(
                    upstreams={
                        INGEST.full_name: targets["ingest"],
                        QUERY.full_name: targets["query"],
                        SQL.full_name: targets["query"],
                    }
                ),
                stdout=log,
                stderr=log,
                concurrency=args.envoy_concurrency,
            )
        bases = {"pipit": ours.listening["gateway"], "envoy": envoy.url}
        pids = {"pipit": ours.pid, "envoy": envoy.process.pid}
        connector = aiohttp.TCPConnector(limit=args.clients)
        async with aiohttp.ClientSession(connector=connector) as http:
            session = await _seed(http, bases["pipit"], args.seed_events)
            scenarios = {
                "get_session_events": (
                    "GET",
                    f"/v0/pipes/get_session_events.json?session_id={session}",
                    None,
                ),
                f"events_api_{args.events_per_post}_ndjson": (
                    "POST",
                    "/v0/events?name=ab_test_events",
                    _events_body(args.events_per_post),
                ),
                # The service refuses it at once (404): what is left is mostly the gateway.
                "events_api_unknown_datasource": (
                    "POST",
                    "/v0/events?name=nope",
                    _events_body(args.events_per_post),
                ),
            }
            for method, path, body in scenarios.values():
                for gateway in GATEWAYS:
                    await _load(http, method, bases[gateway] + path, body, args.warmup, 4)
            runs: dict[tuple[str, str], list[dict[str, Any]]] = {}
            cpu: Counter[tuple[str, str]] = Counter()
            for round_number in range(args.rounds):
                order = GATEWAYS if round_number % 2 == 0 else GATEWAYS[::-1]
                for name, (method, path, body) in scenarios.items():
                    for gateway in order:
                        before = _cpu_seconds(pids[gateway])
                        run = await _load(
                            http, method, bases[gateway] + path, body, args.requests, args.clients
                        )
                        cpu[name, gateway] += _cpu_seconds(pids[gateway]) - before
                        runs.setdefault((name, gateway), []).append(run)
    finally:
        if envoy is not None:
            await envoy.stop()
        if ours is not None:
            ours.stop()
        up.stop()
        # The suite's data (the seeded rows, WAL) and the processes' logs.
        if args.keep:
            print(f"data and logs kept in {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)

    figures: dict[str, Any] = {}
    for name in scenarios:
        per = {g: _summary(runs[name, g], cpu[name, g]) for g in GATEWAYS}
        per["ours_over_envoy"] = {
            figure: _ratio(per["pipit"][key], per["envoy"][key])
            for figure, key in (
                ("cpu_per_request", "cpu_ms_per_request"),
                ("requests_per_second", "requests_per_second"),
                ("p50_latency", "p50_ms"),
                ("p99_latency", "p99_ms"),
            )
        }
        figures[name] = per
    return {
        "machine": machine,
        "settings": {
            "requests_per_round": args.requests,
            "rounds": args.rounds,
            "clients": args.clients,
            "events_per_post": args.events_per_post,
            "envoy_concurrency": args.envoy_concurrency or os.cpu_count(),
            "seed_events": args.seed_events,
        },
        "scenarios": figures,
    }


def table(document: dict[str, Any]) -> str:
    lines = [
        f"{'scenario':<30} {'gateway':<11} {'req/s':>9} {'p50 ms':>9} {'p99 ms':>9} "
        f"{'cpu ms/req':>11}  statuses"
    ]
    for name, per in document["scenarios"].items():
        for gateway in GATEWAYS:
            f = per[gateway]
            lines.append(
                f"{name:<30} {gateway:<11} {f['requests_per_second']:>9} {f['p50_ms']:>9} "
                f"{f['p99_ms']:>9} {f['cpu_ms_per_request']:>11}  {f['statuses']}"
            )
        r = per["ours_over_envoy"]
        lines.append(
            f"{name:<30} {'ours/envoy':<11} {r['requests_per_second']!s:>9} "
            f"{r['p50_latency']!s:>9} {r['p99_latency']!s:>9} {r['cpu_per_request']!s:>11}"
        )
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = results.parser(__doc__, chart=False)
    parser.add_argument("--requests", type=int, default=3000, help="per gateway per round")
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--events-per-post", type=int, default=10)
    parser.add_argument("--envoy-concurrency", type=int, default=None)
    parser.add_argument("--seed-events", type=int, default=20_000, help="clickstream rows")
    parser.add_argument("--warmup", type=int, default=300, help="requests per scenario")
    parser.add_argument("--keep", action="store_true", help="keep the data and the logs")
    return parser.parse_args(argv)


if __name__ == "__main__":
    arguments = parse_args()
    document = asyncio.run(main(arguments))
    path = results.write("gateways", document, out=arguments.out)
    print(table(document))
    print(f"written to {path}", file=sys.stderr)
