"""Isolation: how much four pathological Query API queries slow down the pipes and
`wait=true` ingest of the same `pipit up`.

    python -m bench.isolation [--events 200000] [--seconds 30]

Runs `pipit up` (defaults, embedded chDB), loads `--events` demo events with `pipit seed`,
then measures twice for `--seconds` each: one client calling pipes (`test_summary`,
`get_session_events`, `user_activity_metrics` in turn) and one posting one event with
`wait=true`, first alone (baseline), then while four clients, each with a token of its own,
send pathological ad-hoc queries back to back: a cross join that runs into the time limit,
a query that runs into the memory limit, one that fails half-way, and a heavy GROUP BY over
every event. Reports each percentile under load beside the baseline, as ratios from the
same run.

Writes bench/results/isolation.json and bench/results/isolation.png."""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import aiohttp
import orjson

from bench import launch, results

PATHOLOGICAL = {
    "cross join to the time limit": (
        "SELECT sum(cityHash64(a, b, c, d)) AS n FROM (SELECT arrayJoin(range(1000)) AS a) AS w, "
        "(SELECT arrayJoin(range(1001)) AS b) AS x, (SELECT arrayJoin(range(1002)) AS c) AS y, "
        "(SELECT arrayJoin(range(1003)) AS d) AS z"
    ),
    "memory limit": "SELECT length(groupArray(arrayJoin(range(500000000)))) AS n",
    "fails half-way": (
        "SELECT intDiv(1, toUInt8(number != 500000)) AS x FROM "
        "(SELECT arrayJoin(range(1000000)) AS number) ORDER BY x"
    ),
    "heavy GROUP BY": (
        "SELECT user_id, session_id, count() AS n, uniqExact(event_type) AS kinds "
        "FROM user_events GROUP BY user_id, session_id ORDER BY n DESC LIMIT 10"
    ),
}
PIPES = [
    "/v0/pipes/test_summary.json",
    "/v0/pipes/get_session_events.json?session_id=sess_1",
    "/v0/pipes/user_activity_metrics.json",
]
EVENT = {
    "timestamp": "2023-06-15 14:30:00",
    "user_id": "isolation",
    "test_id": "isolation",
    "variant": "A",
    "event_type": "page_view",
    "conversion": 0,
    "revenue": 0.0,
    "session_id": "isolation",
    "device": "desktop",
    "country": "US",
}


async def _pipes(http: aiohttp.ClientSession, url: str, until: float) -> list[float]:
    took = []
    n = 0
    while time.monotonic() < until:
        started = time.perf_counter()
        async with http.get(url + PIPES[n % len(PIPES)]) as response:
            await response.read()
            if response.status != 200:
                raise RuntimeError(f"pipe answered {response.status}")
        took.append(time.perf_counter() - started)
        n += 1
    return took


async def _ingest(http: aiohttp.ClientSession, url: str, until: float) -> list[float]:
    took = []
    body = orjson.dumps(EVENT)
    while time.monotonic() < until:
        started = time.perf_counter()
        async with http.post(
            f"{url}/v0/events?name=ab_test_events&wait=true", data=body
        ) as response:
            await response.read()
            if response.status != 200:
                raise RuntimeError(f"ingest answered {response.status}")
        took.append(time.perf_counter() - started)
    return took


async def _attacker(url: str, token: str, sql: str, until: float) -> Counter[int]:
    statuses: Counter[int] = Counter()
    async with aiohttp.ClientSession() as http:
        while time.monotonic() < until:
            async with http.get(f"{url}/v0/sql", params={"q": sql, "token": token}) as response:
                await response.read()
                statuses[response.status] += 1
                if response.status == 429:
                    await asyncio.sleep(float(response.headers.get("Retry-After", "1")))
    return statuses


async def phase(url: str, seconds: float, attackers: dict[str, str] | None) -> dict[str, Any]:
    until = time.monotonic() + seconds
    headers = {"Authorization": f"Bearer {launch.TOKEN}"}
    async with aiohttp.ClientSession(headers=headers) as http:
        attacks = [
            asyncio.create_task(_attacker(url, token, PATHOLOGICAL[name], until))
            for name, token in (attackers or {}).items()
        ]
        pipes, ingest = await asyncio.gather(_pipes(http, url, until), _ingest(http, url, until))
        outcomes = await asyncio.gather(*attacks)
    return {
        "pipes": results.percentiles(pipes),
        "ingest_wait": results.percentiles(ingest),
        "pipe_samples_ms": [round(s * 1000, 2) for s in pipes],
        "ad_hoc": {
            name: dict(outcome) for name, outcome in zip(attackers or {}, outcomes, strict=True)
        },
    }


def _ratios(baseline: dict[str, float], loaded: dict[str, float]) -> dict[str, float]:
    return {
        key: round(loaded[key] / baseline[key], 2)
        for key in ("p50_ms", "p95_ms", "p99_ms")
        if baseline.get(key)
    }


def chart(document: dict[str, Any], out: Path) -> Path:
    plt = results.pyplot()
    fig, ax = plt.subplots(figsize=(8, 4))
    for label, key in (("alone", "baseline"), ("4 pathological ad-hoc queries", "loaded")):
        ordered = sorted(document[key]["pipe_samples_ms"])
        fractions = [(i + 1) / len(ordered) for i in range(len(ordered))]
        p = document[key]["pipes"]
        ax.step(
            ordered,
            fractions,
            where="post",
            label=f"{label}: p50 {p['p50_ms']:.0f} ms, p99 {p['p99_ms']:.0f} ms",
        )
    ax.set_xscale("log")
    ax.set_xlabel("pipe call latency through the gateway (ms, log scale)")
    ax.set_ylabel("fraction of calls")
    ax.set_title("Pipes beside pathological Query API queries (pipit up, chDB)")
    ax.legend(fontsize=8, loc="lower right")
    return results.save_figure(fig, "isolation", out)


def _tokens(tokens_file: Path) -> dict[str, str]:
    made = {}
    for n, name in enumerate(PATHOLOGICAL):
        output = subprocess.run(
            [sys.executable, "-m", "pipit.cli", "token", "create", "--tokens-file",
             str(tokens_file), "--name", f"attacker-{n}", "--scope", "DATASOURCES:READ:*"],
            check=True, capture_output=True, text=True,
        ).stdout  # fmt: skip
        made[name] = output.strip().split()[-1]
    return made


async def main(args: argparse.Namespace) -> dict[str, Any]:
    machine = results.machine()
    work = Path(tempfile.mkdtemp(prefix="pipit-bench-isolation-"))
    tokens_file = work / "tokens.json"
    attackers = await asyncio.to_thread(_tokens, tokens_file)
    suite = launch.start_up(work, {"PIPIT_TOKENS_FILE": str(tokens_file)})
    try:
        await asyncio.to_thread(
            subprocess.run,
            [sys.executable, "-m", "pipit.cli", "seed", "--events", str(args.events),
             "--ingest-target", suite.ingest_target, "--admin-token", launch.TOKEN],
            check=True, capture_output=True,
        )  # fmt: skip
        baseline = await phase(suite.gateway_url, args.seconds, None)
        loaded = await phase(suite.gateway_url, args.seconds, attackers)
        peak_rss = suite.service.peak_rss_mib()
    finally:
        suite.service.stop()
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    document = {
        "machine": machine,
        "events": args.events,
        "seconds_per_phase": args.seconds,
        "settings": "pipit up defaults: Query API 10 s / 1 GiB / 1 thread per query, "
        "4 in flight, 2 per token",
        "baseline": baseline,
        "loaded": loaded,
        "pipe_ratio": _ratios(baseline["pipes"], loaded["pipes"]),
        "ingest_ratio": _ratios(baseline["ingest_wait"], loaded["ingest_wait"]),
        "peak_rss_mib": peak_rss,
    }
    results.publish("isolation", document, args, chart)
    return document


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = results.parser(__doc__)
    parser.add_argument("--events", type=int, default=200_000, help="demo events to load")
    parser.add_argument("--seconds", type=float, default=30.0, help="length of each phase")
    parser.add_argument("--keep", action="store_true", help="keep the data and logs")
    return parser.parse_args(argv)


if __name__ == "__main__":
    result = asyncio.run(main(parse_args()))
    summary = {
        key: {"pipes": result[key]["pipes"], "ingest_wait": result[key]["ingest_wait"]}
        for key in ("baseline", "loaded")
    }
    summary["pipe_ratio"] = result["pipe_ratio"]
    summary["ingest_ratio"] = result["ingest_ratio"]
    summary["ad_hoc"] = result["loaded"]["ad_hoc"]
    summary["peak_rss_mib"] = result["peak_rss_mib"]
    print(json.dumps(summary, indent=2), file=sys.stderr)
