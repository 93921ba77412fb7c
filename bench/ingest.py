"""Ingest throughput: the same A/B events through the gRPC streaming RPC, the typed unary
RPC and the HTTP Events API (NDJSON through the gateway), with 1, 4 and 16 concurrent
clients, beside the warehouse's own insert of the same rows in the same run; and the
peak resident memory of the ingest process.

    python -m bench.ingest [--events 400000] [--batch 1000] [--clients 1,4,16]
                           [--paths stream,unary,http] [--rounds 3]

Each run starts a fresh `pipit ingest` process (and `pipit gateway` for HTTP) over
embedded chDB with default settings, so runs do not share background merges, and the
figures are the service's own: the clients send pre-encoded requests. Every request is
acknowledged after the write-ahead log's fsync (`wait=false`) except each client's last,
which waits until its rows are in the warehouse; the batcher flushes a table in log
order, so when every client has its last answer, every row is committed. The rate is
events divided by that time: end to end, not just accepted. Each configuration runs
`--rounds` times, round-robin with the others and with the raw insert; the figure is the
median round, so that other work on a shared machine does not decide it.

Writes bench/results/ingest.json and bench/results/ingest.png."""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import subprocess
import sys
import tempfile
import threading
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

PATHS = ("stream", "unary", "http")
DATASOURCE = "ab_test_events"
_SERVICE = "/pipit.ingest.v1.IngestService/"
_CHANNEL_OPTIONS = (
    ("grpc.max_send_message_length", 64 * 1024 * 1024),
    # A connection per client, as separate clients would have.
    ("grpc.use_local_subchannel_pool", 1),
)


class Payloads:
    """Every batch pre-encoded for each path, with and without `wait`."""

    def __init__(self, events: int, batch: int, seed: int) -> None:
        ds = registry()[DATASOURCE]
        rows = list(generate(DATASOURCE, events, seed=seed))
        self.lines = [orjson.dumps(row) for row in rows]
        self.json_bytes = sum(len(line) + 1 for line in self.lines)
        self.events = len(rows)
        starts = range(0, len(rows), batch)
        self.ndjson = [b"\n".join(self.lines[i : i + batch]) for i in starts]
        self.sizes = [len(self.lines[i : i + batch]) for i in starts]
        self.unary: dict[bool, list[bytes]] = {False: [], True: []}
        self.stream: dict[bool, list[bytes]] = {False: [], True: []}
        for i in starts:
            messages = [to_message(ds, row) for row in rows[i : i + batch]]
            for wait in (False, True):
                request = pb.AppendAbTestEventsRequest(events=messages, wait=wait)
                self.unary[wait].append(request.SerializeToString())
                self.stream[wait].append(
                    pb.StreamEventsRequest(ab_test_events=request).SerializeToString()
                )

    def plan(self, clients: int) -> list[list[int]]:
        """Batch indexes per client, round-robin."""
        return [list(range(c, len(self.sizes), clients)) for c in range(clients)]


async def _grpc_client(path: str, target: str, payloads: Payloads, indexes: list[int]) -> int:
    async with grpc.aio.insecure_channel(target, options=_CHANNEL_OPTIONS) as channel:
        if path == "stream":
            call = channel.stream_unary(
                _SERVICE + "StreamEvents", response_deserializer=pb.StreamEventsResponse.FromString
            )

            async def requests():
                for n, i in enumerate(indexes):
                    yield payloads.stream[n == len(indexes) - 1][i]

            reply = await call(requests(), metadata=launch.AUTH)
            return reply.successful_rows
        call = channel.unary_unary(
            _SERVICE + "AppendAbTestEvents",
            response_deserializer=pb.AppendAbTestEventsResponse.FromString,
        )
        total = 0
        for n, i in enumerate(indexes):
            reply = await call(payloads.unary[n == len(indexes) - 1][i], metadata=launch.AUTH)
            total += reply.successful_rows
        return total


async def _http_client(url: str, payloads: Payloads, indexes: list[int]) -> int:
    headers = {"Authorization": f"Bearer {launch.TOKEN}", "Content-Type": "application/x-ndjson"}
    connector = aiohttp.TCPConnector(limit=1)
    total = 0
    async with aiohttp.ClientSession(connector=connector, headers=headers) as http:
        for n, i in enumerate(indexes):
            wait = "&wait=true" if n == len(indexes) - 1 else ""
            async with http.post(
                f"{url}/v0/events?name={DATASOURCE}{wait}", data=payloads.ndjson[i]
            ) as response:
                body = await response.read()
                if response.status not in (200, 202):
                    raise RuntimeError(f"HTTP {response.status}: {body[:300]!r}")
                total += orjson.loads(body)["successful_rows"]
    return total


class _RssSampler:
    """Samples a process's resident memory while a run lasts."""

    def __init__(self, service: launch.Service, period: float = 0.05) -> None:
        self.service = service
        self.period = period
        self.peak = 0.0
        self.samples: list[tuple[float, float]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._start = time.perf_counter()

    def _run(self) -> None:
        while not self._stop.wait(self.period):
            rss = self.service.rss_mib()
            self.peak = max(self.peak, rss)
            self.samples.append((round(time.perf_counter() - self._start, 3), rss))

    def __enter__(self) -> _RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()


async def run_one(
    path: str, clients: int, payloads: Payloads, work: Path, settings: dict[str, str]
) -> dict[str, Any]:
    """One fresh ingest process (and gateway), one measured run."""
    data = Path(tempfile.mkdtemp(prefix=f"{path}-{clients}-", dir=work))
    port = launch.free_port()
    ingest = launch.start(
        ["ingest"],
        {"PIPIT_DATA_DIR": str(data), "PIPIT_INGEST_PORT": str(port), **settings},
        {"ingest"},
        work / "logs",
    )
    gateway = None
    try:
        target = f"127.0.0.1:{port}"
        if path == "http":
            gateway_port = launch.free_port()
            gateway = launch.start(
                ["gateway"],
                {"PIPIT_INGEST_TARGET": target, "PIPIT_GATEWAY_PORT": str(gateway_port)},
                {"gateway"},
                work / "logs",
            )
            url = f"http://127.0.0.1:{gateway_port}"
        # Warm-up: one batch through the same path, waited for (not counted).
        if path == "http":
            await _http_client(url, payloads, [0])
        else:
            await _grpc_client(path, target, payloads, [0])
        plan = payloads.plan(clients)
        cpu_before = ingest.cpu_seconds()
        gateway_cpu_before = gateway.cpu_seconds() if gateway else 0.0
        client_cpu_before = time.process_time()
        with _RssSampler(ingest) as rss:
            started = time.perf_counter()
            if path == "http":
                done = await asyncio.gather(*(_http_client(url, payloads, p) for p in plan))
            else:
                done = await asyncio.gather(
                    *(_grpc_client(path, target, payloads, p) for p in plan)
                )
            seconds = time.perf_counter() - started
        if sum(done) != payloads.events:
            raise RuntimeError(f"{path}: {sum(done)} rows acknowledged of {payloads.events}")
        run = {
            "path": path,
            "clients": clients,
            "events": payloads.events,
            "seconds": round(seconds, 3),
            "events_per_s": round(payloads.events / seconds),
            "json_mb_per_s": round(payloads.json_bytes / seconds / 1e6, 2),
            "ingest_cpu_s": round(ingest.cpu_seconds() - cpu_before, 2),
            "ingest_cpu_us_per_event": round(
                (ingest.cpu_seconds() - cpu_before) / payloads.events * 1e6, 2
            ),
            "client_cpu_s": round(time.process_time() - client_cpu_before, 2),
            "peak_rss_mib_during_run": rss.peak,
            "peak_rss_mib_process": ingest.peak_rss_mib(),
            "rss_timeline": rss.samples,
        }
        if gateway is not None:
            run["gateway_cpu_s"] = round(gateway.cpu_seconds() - gateway_cpu_before, 2)
        return run
    finally:
        if gateway is not None:
            gateway.stop()
        ingest.stop()


def _median(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """The round with the median rate (the lower middle one of an even count)."""
    ordered = sorted(rounds, key=lambda r: r["events_per_s"])
    return ordered[(len(ordered) - 1) // 2]


def raw_insert(payloads: Payloads, batch: int, work: Path) -> dict[str, Any]:
    rows_file = work / "rows.ndjson"
    rows_file.write_bytes(b"\n".join(payloads.lines))
    output = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.engine",
            "raw-insert",
            "--dir",
            str(work / "raw"),
            "--rows",
            str(rows_file),
            "--batch",
            str(batch),
        ],
        check=True,
        capture_output=True,
        text=True,
        cwd=results.ROOT,
    ).stdout
    measured = json.loads(output.strip().splitlines()[-1])
    seconds = measured["seconds"]
    return {
        "events": measured["rows"],
        "batch": batch,
        "seconds": round(seconds, 3),
        "events_per_s": round(measured["rows"] / seconds),
        "json_mb_per_s": round(payloads.json_bytes / seconds / 1e6, 2),
    }


def chart(document: dict[str, Any], out: Path) -> Path:
    plt = results.pyplot()
    runs = document["runs"]
    raw = document["raw_insert"]["events_per_s"]
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2), width_ratios=(2, 1))
    paths = list(dict.fromkeys(r["path"] for r in runs))
    clients = list(dict.fromkeys(r["clients"] for r in runs))
    width = 0.8 / len(paths)
    labels = {"stream": "gRPC streaming", "unary": "gRPC unary", "http": "HTTP Events API"}
    for n, path in enumerate(paths):
        values = [
            next((r["events_per_s"] for r in runs if r["path"] == path and r["clients"] == c), 0)
            for c in clients
        ]
        xs = [i + (n - (len(paths) - 1) / 2) * width for i in range(len(clients))]
        bars = left.bar(xs, values, width, label=labels.get(path, path))
        left.bar_label(bars, labels=[f"{v / 1000:.0f}k" for v in values], fontsize=7)
    left.axhline(raw, color="black", linestyle="--", linewidth=1)
    left.text(
        len(clients) - 0.5,
        raw,
        f"raw insert {raw / 1000:.0f}k/s",
        ha="right",
        va="bottom",
        fontsize=8,
    )
    left.set_xticks(range(len(clients)), [f"{c} client{'s' if c > 1 else ''}" for c in clients])
    left.set_ylabel("events/s (committed to the warehouse)")
    left.set_title(
        f"Ingest throughput, {document['events']:,} A/B events per run "
        f"(median of {document.get('rounds', 1)})"
    )
    left.legend(fontsize=8, loc="upper left")
    heaviest = max(runs, key=lambda r: r["peak_rss_mib_during_run"])
    for run in runs:
        if run["rss_timeline"]:
            ts, rss = zip(*run["rss_timeline"], strict=True)
            right.plot(
                ts,
                rss,
                linewidth=1.5 if run is heaviest else 0.6,
                label=f"{run['path']} ×{run['clients']}" if run is heaviest else None,
            )
    right.set_xlabel("seconds into the run")
    right.set_ylabel("ingest RSS (MiB)")
    right.set_title(f"Ingest memory: peak {heaviest['peak_rss_mib_during_run']:.0f} MiB")
    right.legend(fontsize=8)
    return results.save_figure(fig, "ingest", out)


async def main(args: argparse.Namespace) -> dict[str, Any]:
    machine = results.machine()
    work = Path(tempfile.mkdtemp(prefix="pipit-bench-ingest-"))
    payloads = Payloads(args.events, args.batch, args.seed)
    document: dict[str, Any] = {
        "machine": machine,
        "events": payloads.events,
        "batch": args.batch,
        "json_bytes": payloads.json_bytes,
        "datasource": DATASOURCE,
        "settings": f"pipit defaults ({results.DEFAULT_FLUSH}; WAL fsync per group)",
    }
    settings = {}
    if args.flush_interval is not None:
        settings["PIPIT_FLUSH_INTERVAL"] = str(args.flush_interval)
        document["settings"] += f"; flush interval overridden: {args.flush_interval} s"
    # Rounds go over every configuration in turn, so other load on the machine falls on
    # all of them alike; each figure is the median round (each round's kept too).
    raws: list[dict[str, Any]] = []
    measured: dict[tuple[str, int], list[dict[str, Any]]] = {}
    for number in range(args.rounds):
        raws.append(raw_insert(payloads, args.raw_batch, work))
        print(
            f"round {number + 1}: raw insert {raws[-1]['events_per_s']:,} events/s", file=sys.stderr
        )
        for path in args.paths:
            for clients in args.clients:
                run = await run_one(path, clients, payloads, work, settings)
                measured.setdefault((path, clients), []).append(run)
                print(
                    f"{path:>6} × {clients:>2}: {run['events_per_s']:>8,} events/s "
                    f"({run['json_mb_per_s']} MB/s), peak RSS {run['peak_rss_mib_during_run']} MiB",
                    file=sys.stderr,
                )
    document["rounds"] = args.rounds
    document["raw_insert"] = {
        **_median(raws),
        "rounds_events_per_s": [r["events_per_s"] for r in raws],
    }
    runs = []
    for rounds in measured.values():
        run = {**_median(rounds), "rounds_events_per_s": [r["events_per_s"] for r in rounds]}
        run["peak_rss_mib_during_run"] = max(r["peak_rss_mib_during_run"] for r in rounds)
        run["ratio_to_raw"] = round(run["events_per_s"] / document["raw_insert"]["events_per_s"], 3)
        runs.append(run)
    document["runs"] = runs
    heaviest = max(runs, key=lambda r: r["peak_rss_mib_during_run"])
    document["memory"] = {
        "peak_rss_mib": heaviest["peak_rss_mib_during_run"],
        "run": f"{heaviest['path']} × {heaviest['clients']} clients",
    }
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    results.publish("ingest", document, args, chart)
    return document


def _list(kind: type) -> Any:
    return lambda text: [kind(part) for part in text.split(",") if part]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = results.parser(__doc__)
    parser.add_argument("--events", type=int, default=400_000, help="events per run")
    parser.add_argument("--batch", type=int, default=1_000, help="events per request")
    parser.add_argument(
        "--raw-batch",
        type=int,
        default=Settings.flush_rows,
        help="rows per raw insert (ingest's default flush size)",
    )
    parser.add_argument("--clients", type=_list(int), default=[1, 4, 16])
    parser.add_argument("--paths", type=_list(str), default=list(PATHS))
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--rounds", type=int, default=3, help="runs of each configuration")
    parser.add_argument(
        "--flush-interval",
        type=float,
        help="override PIPIT_FLUSH_INTERVAL (only to make tiny runs quick; default: pipit's)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the runs' data and logs")
    args = parser.parse_args(argv)
    unknown = set(args.paths) - set(PATHS)
    if unknown:
        parser.error(f"unknown paths {sorted(unknown)}; choose from {', '.join(PATHS)}")
    return args


if __name__ == "__main__":
    result = asyncio.run(main(parse_args()))
    print(json.dumps({k: v for k, v in result.items() if k != "runs"}, indent=2))
