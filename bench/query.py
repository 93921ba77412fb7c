"""Query latency and throughput: p50/p95/p99 of each endpoint (the tutorials' twelve, the
A/B results and the journeys' three) through the HTTP gateway and through gRPC, beside the
same SQL bound the same way and run directly on the engine in the same run (for a pipe with
an analysis, test_results, its SQL alone: the analysis runs in the service), and beside the
tutorial's own SQL for the endpoints the tutorials have (bench/tutorial_sql.py: the
yardstick, reported as tutorial ÷ ours at p50 and p95, with the answers compared where the
definitions agree); then requests/s through the gateway with 1, 8 and 32 concurrent clients
of two mixes: the tutorials' twelve (issue 18's goal) and every endpoint.

    python -m bench.query [--events 1000000,10000000] [--repeat 200] [--max-seconds 4]
                          [--clients 1,8,32] [--duration 10] [--data-root DIR]
                          [--endpoints test_results,funnel,...]

`--events` is per datasource: 10 M means 10 M rows in each of the four tables (40 M in
all), made by the seed generator (`pipit seed`'s events, 30 days of June 2023) and
written straight into chDB. A dataset is kept in `--data-root` and reused while its
parameters and the tables' DDL are unchanged: building 10 M takes about five minutes on
two cores, a rerun only the measurements. Services run as `pipit query` and
`pipit gateway` processes over that data with default settings. Parameters are the
README's calls, with ids rotated over 20 values sampled from the data. No write comes
while they run, so the query service answers a call it has answered before from the
answers it keeps (services/query/sql/README.md): `direct` is every call computed by the
engine, and `--answer-cache-bytes 0` has the service compute every call too.

CPU per request (`overhead_cpu`, and `cpu_ms_per_request` of each throughput level): the
gateway's and the query service's CPU time over the calls, less what each spends idle in
the same time (measured before, with no request: the once-a-second polls), per request.
In the throughput mix every call but each one's first is served from kept answers, so
the engine does nothing and the whole query process's CPU is the layers' own.

Writes bench/results/query.json and bench/results/query.png."""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import aiohttp
import grpc
from aiohttp import web

from bench import launch, results
from common.config import Settings
from pipit.query.v1 import query_service_pb2, query_service_pb2_grpc
from services.query.service import builtin_endpoints

DEFAULT_DATA_ROOT = Path(tempfile.gettempdir()) / "pipit-bench-data"
JUNE = {"start_date": "2023-06-01 00:00:00", "end_date": "2023-06-30 23:59:59"}
YEAR = {"start_date": "2023-01-01 00:00:00", "end_date": "2023-12-31 23:59:59"}
WEEK = {"start_date": "2023-06-12 00:00:00", "end_date": "2023-06-18 23:59:59"}
FUNNEL_EVENTS = ["page_view", "click", "form_submit"]
FUNNEL_PAGES = [f"https://example.com{path}" for path in ("/", "/pricing", "/checkout")]


def cases(samples: dict[str, list[str]]) -> dict[str, list[dict[str, Any]]]:
    """Per endpoint, the requests to rotate over: the README's calls."""

    def each(rpc: str, key: str, field: str, extra: dict[str, Any]) -> list[dict[str, Any]]:
        return [{"rpc": rpc, "fields": {field: value, **extra}} for value in samples[key]]

    return {
        "test_summary": each("TestSummary", "ab_test_ids", "test_id", JUNE),
        "test_results": each("TestResults", "ab_test_ids", "test_id", JUNE),
        "test_segments": each("TestSegments", "ab_test_ids", "test_id", {"segment": "country"}),
        "test_timeseries": each("TestTimeseries", "ab_test_ids", "test_id", {"interval": "hour"}),
        "user_session_stats": [{"rpc": "UserSessionStats", "fields": {}}],
        "user_event_timeline": each(
            "UserEventTimeline", "user_events_users", "user_id", {"limit": 20}
        ),
        "user_activity_metrics": [
            {"rpc": "UserActivityMetrics", "fields": {"start_date": JUNE["start_date"]}}
        ],
        "session_insights": [{"rpc": "SessionInsights", "fields": {**YEAR, "limit": 50}}],
        "feature_usage": [{"rpc": "FeatureUsage", "fields": {}}],
        "active_users": [{"rpc": "ActiveUsers", "fields": {**YEAR, "interval": "1 week"}}],
        "get_user_journey": each("GetUserJourney", "clickstream_users", "user_id", {}),
        "get_session_events": each("GetSessionEvents", "clickstream_sessions", "session_id", {}),
        "get_popular_pages": [{"rpc": "GetPopularPages", "fields": {"limit": 5}}],
        # The journeys read a user's or a session's whole history in range: bounded by a week.
        "funnel": [
            {"rpc": "Funnel", "fields": {"steps": FUNNEL_EVENTS, "window_seconds": 3600, **WEEK}},
            {
                "rpc": "Funnel",
                "fields": {
                    "steps": FUNNEL_PAGES,
                    "step_by": "page_url",
                    "source": "clickstream_events",
                    **WEEK,
                },
            },
        ],
        "retention": [
            {"rpc": "Retention", "fields": {"period": "day", **WEEK}},
            {"rpc": "Retention", "fields": {"source": "app_events", "period": "week", **WEEK}},
        ],
        "page_paths": [
            {"rpc": "PagePaths", "fields": {"page_url": page, **WEEK}} for page in FUNNEL_PAGES
        ],
    }


def _engine(command: list[str]) -> dict[str, Any]:
    output = subprocess.run(
        [sys.executable, "-m", "bench.engine", *command],
        check=True,
        capture_output=True,
        text=True,
        cwd=results.ROOT,
    ).stdout
    return json.loads(output.strip().splitlines()[-1])


def _request(variant: dict[str, Any]) -> Any:
    rpc = builtin_endpoints(1024)[variant["rpc"]]
    return getattr(query_service_pb2, rpc.request_class.DESCRIPTOR.name)(**variant["fields"])


async def latencies(
    url: str,
    target: str,
    plan: dict[str, list[dict[str, Any]]],
    repeat: int,
    max_seconds: float,
    min_repeat: int,
) -> dict[str, dict[str, list[float]]]:
    """Per endpoint, sequential calls through HTTP and gRPC, interleaved."""
    measured: dict[str, dict[str, list[float]]] = {}
    headers = {"Authorization": f"Bearer {launch.TOKEN}"}
    async with (
        aiohttp.ClientSession(headers=headers) as http,
        grpc.aio.insecure_channel(target) as channel,
    ):
        stub = query_service_pb2_grpc.QueryServiceStub(channel)
        for name, variants in plan.items():
            urls = [
                f"{url}/v0/pipes/{name}.json?{urlencode(v['fields'], doseq=True)}" for v in variants
            ]
            requests = [_request(v) for v in variants]
            call = getattr(stub, variants[0]["rpc"])
            via_http: list[float] = []
            via_grpc: list[float] = []
            for i in range(repeat + 1):
                started = time.perf_counter()
                async with http.get(urls[i % len(urls)]) as response:
                    body = await response.read()
                    if response.status != 200:
                        raise RuntimeError(f"{name}: HTTP {response.status} {body[:300]!r}")
                middle = time.perf_counter()
                await call(requests[i % len(requests)], metadata=launch.AUTH)
                ended = time.perf_counter()
                if i == 0:  # warm-up
                    deadline = ended + max_seconds * 2
                    continue
                via_http.append(middle - started)
                via_grpc.append(ended - middle)
                if ended > deadline and i >= min_repeat:
                    break
            measured[name] = {"http": via_http, "grpc": via_grpc}
    return measured


IDLE_WAKE_CALLS = 300


def _median_call_seconds(measured: dict[str, dict[str, list[float]]]) -> float:
    """The median time of a call through HTTP over every endpoint measured."""
    return statistics.median(t for m in measured.values() for t in m["http"])


async def idle_wake_control(gap_seconds: float) -> dict[str, float]:
    """CPU milliseconds per call of the smallest aiohttp exchange there is (a client and a
    server in this process, a two-byte JSON answer) back to back, and with the event loop
    idle for `gap_seconds` between calls, as the layers idle while the engine computes in
    the one-at-a-time series above. The work is the same; on a virtual machine the second
    figure is higher (caches and the CPU's state after a halt), and the layers' figures
    over computed calls carry that cost too."""

    async def answer(_: web.Request) -> web.Response:
        return web.json_response({})

    app = web.Application()
    app.router.add_get("/", answer)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    figures = {}
    try:
        async with aiohttp.ClientSession() as http:

            async def calls(gap: float) -> float:
                started = time.thread_time()
                for _ in range(IDLE_WAKE_CALLS):
                    async with http.get(f"http://127.0.0.1:{port}/") as response:
                        await response.read()
                    if gap:
                        await asyncio.sleep(gap)
                return round((time.thread_time() - started) / IDLE_WAKE_CALLS * 1000, 3)

            await calls(0)  # warm-up
            figures["back_to_back_cpu_ms_per_call"] = await calls(0)
            figures["gap_ms"] = round(gap_seconds * 1000, 1)
            figures["with_gaps_cpu_ms_per_call"] = await calls(gap_seconds)
    finally:
        await runner.cleanup()
    return figures


async def throughput(
    url: str, plan: dict[str, list[dict[str, Any]]], clients: int, duration: float
) -> dict[str, Any]:
    """`clients` concurrent clients, each calling every endpoint in turn (each
    client starting at a different one) through the gateway for `duration` seconds."""
    urls = [
        [f"{url}/v0/pipes/{name}.json?{urlencode(v['fields'], doseq=True)}" for v in variants]
        for name, variants in plan.items()
    ]
    samples: list[float] = []
    errors = 0
    headers = {"Authorization": f"Bearer {launch.TOKEN}"}
    connector = aiohttp.TCPConnector(limit=clients)
    async with aiohttp.ClientSession(headers=headers, connector=connector) as http:
        deadline = time.perf_counter() + duration

        async def client(number: int) -> None:
            nonlocal errors
            for n in itertools.count(number):
                if time.perf_counter() >= deadline:
                    return
                choices = urls[n % len(urls)]
                started = time.perf_counter()
                async with http.get(choices[(n // len(urls)) % len(choices)]) as response:
                    await response.read()
                    if response.status != 200:
                        errors += 1
                samples.append(time.perf_counter() - started)

        started = time.perf_counter()
        await asyncio.gather(*(client(c) for c in range(clients)))
        seconds = time.perf_counter() - started
    return {
        "clients": clients,
        "requests": len(samples),
        "errors": errors,
        "requests_per_s": round(len(samples) / seconds, 1),
        "latency": results.percentiles(samples),
    }


@dataclass(frozen=True)
class Mix:
    """The endpoints a throughput level's clients call in turn."""

    name: str
    plan: dict[str, list[dict[str, Any]]]


def _mixes(plan: dict[str, list[dict[str, Any]]], tutorial: Mapping[str, Any]) -> list[Mix]:
    """`tutorials`, the endpoints the tutorials have (issue 18's goal is the mix of those
    twelve), then `all` of them, the decision pipes included, where the two differ."""
    ours = Mix("tutorials", {name: plan[name] for name in plan if name in tutorial})
    every = Mix("all", plan)
    if not ours.plan:
        return [every]
    return [ours] if ours.plan == plan else [ours, every]


SETTLE_SECONDS, IDLE_SECONDS = 2.0, 3.0


class CpuMeter:
    """CPU seconds the gateway and the query service used since it was made (the query
    service's main thread, its Python, apart; the whole process includes the engine's
    threads), less what they use idle at `idle_rates` (CPU seconds per second)."""

    def __init__(
        self,
        gateway: launch.Service,
        query: launch.Service,
        idle_rates: dict[str, float] | None = None,
    ) -> None:
        self._gateway, self._query = gateway, query
        self._idle = idle_rates or {}
        self._started = time.perf_counter()
        self._start = self._now()

    def _now(self) -> dict[str, float]:
        return {
            "gateway": self._gateway.cpu_seconds(),
            "query_service": self._query.cpu_seconds(),
            "query_service_python": self._query.main_thread_cpu_seconds(),
        }

    def used(self) -> dict[str, float]:
        seconds = time.perf_counter() - self._started
        now = self._now()
        return {
            name: max(0.0, now[name] - self._start[name] - self._idle.get(name, 0.0) * seconds)
            for name in now
        }

    def per_second(self) -> dict[str, float]:
        seconds = time.perf_counter() - self._started
        now = self._now()
        return {name: (now[name] - self._start[name]) / seconds for name in now}


async def measure_size(events: int, args: argparse.Namespace, work: Path) -> dict[str, Any]:
    directory = args.data_root / f"events-{events}"
    print(f"{events:,} events per datasource: loading (or reusing) {directory}", file=sys.stderr)
    dataset = _engine(["load", "--dir", str(directory), "--events", str(events)])
    plan = cases(dataset["samples"])
    if args.endpoints:
        unknown = set(args.endpoints) - set(plan)
        if unknown:
            raise SystemExit(f"--endpoints: no endpoint {sorted(unknown)}; there are {list(plan)}")
        plan = {name: plan[name] for name in args.endpoints}
    cases_file = work / f"cases-{events}.json"
    cases_file.write_text(json.dumps(plan))
    engine_side = _engine(
        [
            "direct",
            "--dir",
            str(directory),
            "--cases",
            str(cases_file),
            "--repeat",
            str(args.repeat),
            "--max-seconds",
            str(args.max_seconds),
            "--min-repeat",
            str(args.min_repeat),
        ]
    )
    direct, tutorial = engine_side["timings"], engine_side["tutorial"]
    respelled = engine_side["tutorial_respelled"]
    ports = {"query": launch.free_port(), "gateway": launch.free_port()}
    query = launch.start(
        ["query"],
        {
            "PIPIT_DATA_DIR": str(directory),
            "PIPIT_QUERY_PORT": str(ports["query"]),
            "PIPIT_ANSWER_CACHE_BYTES": str(args.answer_cache_bytes),
        },
        {"query"},
        work / "logs",
    )
    gateway = None
    try:
        gateway = launch.start(
            ["gateway"],
            {
                "PIPIT_QUERY_TARGET": f"127.0.0.1:{ports['query']}",
                "PIPIT_GATEWAY_PORT": str(ports["gateway"]),
            },
            {"gateway"},
            work / "logs",
        )
        url = f"http://127.0.0.1:{ports['gateway']}"
        # What the processes spend with no request at all (each polls for deployments and
        # tokens once a second): taken off the figures below, which would otherwise charge
        # it to requests, the more so the slower the engine answers.
        await asyncio.sleep(SETTLE_SECONDS)
        idle = CpuMeter(gateway, query)
        await asyncio.sleep(IDLE_SECONDS)
        idle_rates = idle.per_second()
        meter = CpuMeter(gateway, query, idle_rates)
        measured = await latencies(
            url, f"127.0.0.1:{ports['query']}", plan, args.repeat, args.max_seconds, args.min_repeat
        )
        # Scheduling on a busy machine inflates wall-clock differences; CPU time per
        # request is the work the layers add whatever else runs.
        http_calls = sum(len(m["http"]) + 1 for m in measured.values())
        used = meter.used()
        overhead_cpu = {
            "gateway_ms_per_http_request": round(used["gateway"] / http_calls * 1000, 3),
            "query_service_python_ms_per_request": round(
                used["query_service_python"] / (2 * http_calls) * 1000, 3
            ),
            "idle_cpu_ms_per_s": {name: round(rate * 1000, 3) for name, rate in idle_rates.items()},
            # The same work costs this machine more CPU time after an idle gap: the control
            # below, with gaps as long as a call's, tells how much of the figures above that is.
            "idle_wake_control": await idle_wake_control(_median_call_seconds(measured)),
        }
        control = overhead_cpu["idle_wake_control"]
        print(
            f"  one at a time: CPU per HTTP request {overhead_cpu['gateway_ms_per_http_request']}"
            f" ms gateway + {overhead_cpu['query_service_python_ms_per_request']} ms query"
            f" service's Python; an aiohttp echo {control['back_to_back_cpu_ms_per_call']} ms"
            f" back to back, {control['with_gaps_cpu_ms_per_call']} ms with"
            f" {control['gap_ms']} ms gaps",
            file=sys.stderr,
        )
        loads = []
        for mix, clients in itertools.product(_mixes(plan, tutorial), args.clients):
            meter = CpuMeter(gateway, query, idle_rates)
            load = {"mix": mix.name} | await throughput(url, mix.plan, clients, args.duration)
            used = meter.used()
            # Every call of the mix but each one's first is a kept answer, so the engine is
            # idle and the whole query process's CPU is the layers' own.
            load["cpu_ms_per_request"] = {
                name: round(used[name] / load["requests"] * 1000, 3)
                for name in ("gateway", "query_service", "query_service_python")
            }
            print(
                f"  {mix.name}, {clients:>2} clients: {load['requests_per_s']} requests/s, "
                f"p50 {load['latency']['p50_ms']} ms, CPU per request "
                f"{load['cpu_ms_per_request']['gateway']} ms gateway + "
                f"{load['cpu_ms_per_request']['query_service']} ms query service "
                f"({load['cpu_ms_per_request']['query_service_python']} its Python)",
                file=sys.stderr,
            )
            loads.append(load)
        query_rss = query.peak_rss_mib()
    finally:
        if gateway is not None:
            gateway.stop()
        query.stop()
    per_endpoint = {}
    for name in plan:
        d = results.percentiles(direct[name])
        h = results.percentiles(measured[name]["http"])
        g = results.percentiles(measured[name]["grpc"])
        entry = {"direct": d, "grpc": g, "http": h}
        line = (
            f"  {name:>22}: http p50 {h['p50_ms']:8.2f} p95 {h['p95_ms']:8.2f} "
            f"p99 {h['p99_ms']:8.2f} | direct p50 {d['p50_ms']:8.2f} "
            f"(+{h['p50_ms'] - d['p50_ms']:.2f} ms)"
        )
        if name in tutorial:  # the pipes the tutorials have no counterpart for have no yardstick
            t = results.percentiles(tutorial[name])
            entry |= {
                "tutorial": t,
                # How many times faster than the tutorial's SQL run on the bare engine: the
                # endpoint through HTTP, every layer included.
                "speedup_p50_http_vs_tutorial": round(t["p50_ms"] / h["p50_ms"], 2),
                "speedup_p95_http_vs_tutorial": round(t["p95_ms"] / h["p95_ms"], 2),
                "answers_agree_with_tutorial": engine_side["answers_agree"].get(name),
            }
            line += (
                f" | tutorial p50 {t['p50_ms']:8.2f} p95 {t['p95_ms']:8.2f} "
                f"(x{entry['speedup_p95_http_vs_tutorial']} at p95)"
            )
        if name in respelled:  # the tutorial's SQL as the data spells it (tutorial_sql.RESPELLED)
            r = results.percentiles(respelled[name])
            entry |= {
                "tutorial_respelled": r,
                "speedup_p95_http_vs_tutorial_respelled": round(r["p95_ms"] / h["p95_ms"], 2),
            }
            line += (
                f" | respelled p50 {r['p50_ms']:8.2f} p95 {r['p95_ms']:8.2f} "
                f"(x{entry['speedup_p95_http_vs_tutorial_respelled']} at p95)"
            )
        per_endpoint[name] = entry | {
            "overhead_p50_ms_http": round(h["p50_ms"] - d["p50_ms"], 3),
            "overhead_p50_ms_grpc": round(g["p50_ms"] - d["p50_ms"], 3),
            "ratio_p50_http_to_direct": round(h["p50_ms"] / d["p50_ms"], 2),
        }
        print(line, file=sys.stderr)
    return {
        "events_per_datasource": events,
        "dataset": {k: v for k, v in dataset.items() if k != "samples"},
        "endpoints": per_endpoint,
        "throughput": loads,
        "overhead_cpu": overhead_cpu,
        "query_peak_rss_mib": query_rss,
        "worst_p95_ms_http": max(e["http"]["p95_ms"] for e in per_endpoint.values()),
        "worst_overhead_p50_ms_http": max(e["overhead_p50_ms_http"] for e in per_endpoint.values()),
    }


def chart(document: dict[str, Any], out: Path) -> Path:
    plt = results.pyplot()
    sizes = document["sizes"]
    fig, (left, right) = plt.subplots(1, 2, figsize=(13, 4.8), width_ratios=(2.4, 1))
    names = list(sizes[0]["endpoints"])
    width = 0.8 / len(sizes)
    for n, size in enumerate(sizes):
        xs = [i + (n - (len(sizes) - 1) / 2) * width for i in range(len(names))]
        label = f"{size['events_per_datasource'] / 1e6:g} M events"
        p95 = [size["endpoints"][e]["http"]["p95_ms"] for e in names]
        direct = [size["endpoints"][e]["direct"]["p95_ms"] for e in names]
        left.bar(xs, p95, width, label=f"{label}: HTTP p95")
        left.scatter(
            xs,
            direct,
            marker="_",
            color="black",
            s=80,
            zorder=3,
            label="same SQL direct, p95" if n == 0 else None,
        )
    left.axhline(50, color="red", linestyle="--", linewidth=1)
    left.text(len(names) - 0.5, 50, "goal 50 ms", color="red", ha="right", va="bottom", fontsize=8)
    left.set_yscale("log")
    left.set_xticks(range(len(names)), names, rotation=35, ha="right", fontsize=8)
    left.set_ylabel("latency (ms, log scale)")
    left.set_title("Endpoint p95 through the HTTP gateway, one client")
    left.legend(fontsize=8)
    for size in sizes:
        mixes = dict.fromkeys(t["mix"] for t in size["throughput"])
        for mix in mixes:
            loads = [t for t in size["throughput"] if t["mix"] == mix]
            right.plot(
                [t["clients"] for t in loads],
                [t["requests_per_s"] for t in loads],
                marker="o",
                linestyle="-" if mix == "tutorials" else ":",
                label=f"{size['events_per_datasource'] / 1e6:g} M events, {mix}",
            )
    clients = sorted({t["clients"] for t in sizes[0]["throughput"]})
    right.set_xscale("log", base=2)
    right.set_xticks(clients, [str(c) for c in clients])
    right.set_xlabel("concurrent clients")
    right.set_ylabel("requests/s (tutorials: their twelve; all: every endpoint)")
    right.set_title("Throughput through the gateway")
    right.legend(fontsize=8)
    return results.save_figure(fig, "query", out)


async def main(args: argparse.Namespace) -> dict[str, Any]:
    machine = results.machine()
    work = Path(tempfile.mkdtemp(prefix="pipit-bench-query-"))
    started = time.perf_counter()
    try:
        sizes = [await measure_size(events, args, work) for events in args.events]
    finally:
        # The cases and the services' logs; the datasets live under --data-root.
        if args.keep:
            print(f"cases and logs kept in {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    document = {
        "machine": machine,
        "seconds": round(time.perf_counter() - started, 1),
        "data_root": str(args.data_root),
        "answer_cache_bytes": args.answer_cache_bytes,
        "sizes": sizes,
    }
    results.publish("query", document, args, chart)
    return document


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = results.parser(__doc__)

    def ints(text: str) -> list[int]:
        return [int(part) for part in text.split(",") if part]

    parser.add_argument(
        "--events",
        type=ints,
        default=[1_000_000, 10_000_000],
        help="events per datasource, one dataset each",
    )
    parser.add_argument("--repeat", type=int, default=200, help="calls per endpoint and path")
    parser.add_argument(
        "--max-seconds",
        type=float,
        default=4.0,
        help="stop an endpoint's series after this long (but not before --min-repeat calls)",
    )
    parser.add_argument("--min-repeat", type=int, default=20)
    parser.add_argument("--clients", type=ints, default=[1, 8, 32])
    parser.add_argument(
        "--endpoints",
        type=lambda text: [name for name in text.split(",") if name],
        default=[],
        help="only these endpoints, comma-separated (default: every one)",
    )
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per throughput level")
    parser.add_argument(
        "--answer-cache-bytes",
        type=int,
        default=Settings.answer_cache_bytes,
        help="the query service's PIPIT_ANSWER_CACHE_BYTES; 0 computes every call afresh",
    )
    parser.add_argument("--data-root", type=Path, default=DEFAULT_DATA_ROOT)
    parser.add_argument("--keep", action="store_true", help="keep the cases and the services' logs")
    return parser.parse_args(argv)


if __name__ == "__main__":
    result = asyncio.run(main(parse_args()))
    print(
        json.dumps(
            {
                s["events_per_datasource"]: {
                    "worst_p95_ms_http": s["worst_p95_ms_http"],
                    "worst_overhead_p50_ms_http": s["worst_overhead_p50_ms_http"],
                }
                for s in result["sizes"]
            },
            indent=2,
        )
    )
