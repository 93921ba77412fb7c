"""Freshness: the time from an event's acknowledgement to its being visible in
`test_summary`, at default settings (flush at 50,000 rows, 16 MiB or 1 s).

    python -m bench.freshness [--probes 100] [--every 0.1] [--background 0,20000]

Runs `pipit up` (defaults, embedded chDB) and, for each background load (events/s of
other A/B events streamed meanwhile; 0 = idle), sends probe events through the HTTP
Events API, each with a test_id of its own and without `wait`, so the 202 is the
acknowledgement. One poller calls GET /v0/pipes/test_summary.json every `--poll`
seconds through the gateway; a probe is fresh when an answer that lists its test_id
arrives. Freshness = that arrival − the 202's arrival (the poll's latency included, as a
user would see it).

Writes bench/results/freshness.json and bench/results/freshness.png."""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import grpc
import orjson

from bench import launch, results
from common.config import Settings
from common.datasources import registry
from pipit.ingest.v1 import ingest_service_pb2 as pb
from pipit.seed.command import to_message
from pipit.seed.generator import generate

BACKGROUND_BATCH = 1_000


def _probe_event(test_id: str) -> bytes:
    return orjson.dumps(
        {
            "timestamp": "2023-06-15 14:30:00",
            "user_id": f"probe_user_{test_id}",
            "test_id": test_id,
            "variant": "A",
            "event_type": "page_view",
            "conversion": 0,
            "revenue": 0.0,
            "session_id": f"probe_session_{test_id}",
            "device": "desktop",
            "country": "US",
        }
    )


async def _background(target: str, rate: int, stop: asyncio.Event) -> int:
    """Streams A/B events at about `rate` events/s until `stop`; returns how many."""
    if rate <= 0:
        return 0
    ds = registry()["ab_test_events"]
    messages = [to_message(ds, row) for row in generate("ab_test_events", 20_000, seed=3)]
    batches = [
        pb.StreamEventsRequest(
            ab_test_events=pb.AppendAbTestEventsRequest(events=messages[i : i + BACKGROUND_BATCH])
        ).SerializeToString()
        for i in range(0, len(messages), BACKGROUND_BATCH)
    ]
    sent = 0

    async def requests():
        nonlocal sent
        started = time.perf_counter()
        n = 0
        while not stop.is_set():
            yield batches[n % len(batches)]
            n += 1
            sent += BACKGROUND_BATCH
            ahead = started + sent / rate - time.perf_counter()
            if ahead > 0:
                await asyncio.sleep(ahead)

    async with grpc.aio.insecure_channel(target) as channel:
        call = channel.stream_unary(
            "/pipit.ingest.v1.IngestService/StreamEvents",
            response_deserializer=pb.StreamEventsResponse.FromString,
        )
        await call(requests(), metadata=launch.AUTH)
    return sent


async def measure(
    url: str, target: str, probes: int, every: float, poll: float, background: int
) -> dict[str, Any]:
    acked: dict[str, float] = {}
    seen: dict[str, float] = {}
    prefix = f"fresh_{background}_{time.monotonic_ns()}_"
    stop = asyncio.Event()
    headers = {"Authorization": f"Bearer {launch.TOKEN}"}
    async with aiohttp.ClientSession(headers=headers) as http:

        async def probe(n: int) -> None:
            test_id = f"{prefix}{n}"
            async with http.post(
                f"{url}/v0/events?name=ab_test_events", data=_probe_event(test_id)
            ) as response:
                await response.read()
                if response.status != 202:
                    raise RuntimeError(f"probe answered {response.status}")
            acked[test_id] = time.perf_counter()

        async def poller() -> int:
            polls = 0
            while len(seen) < probes:
                async with http.get(f"{url}/v0/pipes/test_summary.json") as response:
                    body = await response.read()
                arrived = time.perf_counter()
                polls += 1
                for row in orjson.loads(body)["data"]:
                    test_id = row["test_id"]
                    if test_id.startswith(prefix) and test_id in acked and test_id not in seen:
                        seen[test_id] = arrived
                await asyncio.sleep(poll)
            return polls

        loader = asyncio.create_task(_background(target, background, stop))
        await asyncio.sleep(1.0 if background else 0)  # let the load reach its pace
        polling = asyncio.create_task(poller())
        tasks = []
        for n in range(probes):
            tasks.append(asyncio.create_task(probe(n)))
            await asyncio.sleep(every)
        await asyncio.gather(*tasks)
        polls = await asyncio.wait_for(polling, 60)
        stop.set()
        sent = await loader
    delays = [seen[t] - acked[t] for t in acked]
    return {
        "background_events_per_s": background,
        "background_events_sent": sent,
        "probes": probes,
        "polls": polls,
        "freshness": results.percentiles(delays, (50, 90, 99)),
        "max_ms": round(max(delays) * 1000, 1),
        "samples_ms": [round(d * 1000, 1) for d in delays],
    }


def chart(document: dict[str, Any], out: Path) -> Path:
    plt = results.pyplot()
    fig, ax = plt.subplots(figsize=(8, 4))
    for phase in document["phases"]:
        ordered = sorted(phase["samples_ms"])
        fractions = [(i + 1) / len(ordered) for i in range(len(ordered))]
        load = phase["background_events_per_s"]
        label = "idle" if not load else f"{load:,} events/s background"
        f = phase["freshness"]
        ax.step(
            ordered,
            fractions,
            where="post",
            label=f"{label}: p50 {f['p50_ms']:.0f} ms, p99 {f['p99_ms']:.0f} ms",
        )
    ax.axvline(1500, color="black", linestyle="--", linewidth=1)
    ax.text(1500, 0.02, " goal p99 ≤ 1.5 s", fontsize=8)
    ax.set_xlabel("acknowledged → visible in test_summary (ms)")
    ax.set_ylabel("fraction of probes")
    ax.set_title(
        "Freshness at default flush settings "
        f"({Settings.flush_interval:g} s / {Settings.flush_rows:,} rows)"
    )
    ax.legend(fontsize=8, loc="lower right")
    return results.save_figure(fig, "freshness", out)


async def main(args: argparse.Namespace) -> dict[str, Any]:
    machine = results.machine()
    work = Path(tempfile.mkdtemp(prefix="pipit-bench-freshness-"))
    suite = launch.start_up(work)
    try:
        url, target = suite.gateway_url, suite.ingest_target
        phases = []
        for background in args.background:
            phase = await measure(url, target, args.probes, args.every, args.poll, background)
            f = phase["freshness"]
            print(
                f"background {background:>6} ev/s: p50 {f['p50_ms']} ms, p99 {f['p99_ms']} ms",
                file=sys.stderr,
            )
            phases.append(phase)
    finally:
        suite.service.stop()
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    document = {
        "machine": machine,
        "settings": f"pipit up defaults: {results.DEFAULT_FLUSH}",
        "poll_interval_s": args.poll,
        "probe_every_s": args.every,
        "phases": phases,
    }
    results.publish("freshness", document, args, chart)
    return document


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = results.parser(__doc__)
    parser.add_argument("--probes", type=int, default=100, help="probe events per phase")
    parser.add_argument("--every", type=float, default=0.1, help="seconds between probes")
    parser.add_argument("--poll", type=float, default=0.01, help="seconds between polls")
    parser.add_argument(
        "--background",
        type=lambda text: [int(part) for part in text.split(",") if part],
        default=[0, 20_000],
        help="background loads, events/s (0 = idle)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the data and logs")
    return parser.parse_args(argv)


if __name__ == "__main__":
    result = asyncio.run(main(parse_args()))
    print(
        json.dumps(
            {p["background_events_per_s"]: p["freshness"] for p in result["phases"]}, indent=2
        )
    )
