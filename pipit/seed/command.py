"""`pipit seed`: generates demo events and sends them through the ingest service's
streaming RPC, so seeding exercises the same path as production traffic."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections import Counter
from collections.abc import AsyncIterator, Iterable, Iterator
from typing import Any

import grpc
from google.protobuf.timestamp_pb2 import Timestamp
from tqdm import tqdm

from common import config
from common.auth import load_or_create_admin_token
from common.datasources import Datasource, by_message, registry
from common.validation import parse_datetime
from pipit.ingest.v1 import ingest_service_pb2, ingest_service_pb2_grpc
from pipit.seed.generator import DATASOURCES, generate

BATCH_EVENTS = 2_000
_STREAM = ingest_service_pb2.StreamEventsRequest
_ONEOF = _STREAM.DESCRIPTOR.oneofs[0]


def _stream_fields() -> dict[str, str]:
    """Datasource name → the StreamEventsRequest oneof field that carries its batches."""
    fields = {}
    for f in _ONEOF.fields:
        for inner in f.message_type.fields:
            if inner.message_type is not None and inner.is_repeated:
                fields[by_message(inner.message_type).name] = f.name
    return fields


def to_message(ds: Datasource, event: dict[str, Any]) -> Any:
    """A generated JSON event as the datasource's typed message."""
    message = ds.message_class()
    for column in ds.columns:
        value = event[column.name]
        if column.type == "DateTime":
            getattr(message, column.name).CopyFrom(Timestamp(seconds=parse_datetime(value)))
        else:
            setattr(message, column.name, value)
    return message


def _batches(
    plan: Iterable[tuple[str, int]], days: int, seed: int, progress: tqdm
) -> Iterator[Any]:
    fields = _stream_fields()
    for name, count in plan:
        ds = registry()[name]
        batch: list[Any] = []
        for event in generate(name, count, days=days, seed=seed):
            batch.append(to_message(ds, event))
            if len(batch) == BATCH_EVENTS:
                yield _request(fields[name], batch)
                progress.update(len(batch))
                batch = []
        if batch:
            yield _request(fields[name], batch)
            progress.update(len(batch))


def _request(field: str, events: list[Any]) -> Any:
    request = _STREAM()
    inner = getattr(request, field)
    inner.events.extend(events)
    # Every batch waits, so the stream answers once all rows are queryable.
    inner.wait = True
    return request


def plan_counts(total: int, names: list[str]) -> list[tuple[str, int]]:
    """Splits `total` events over the datasources as evenly as possible."""
    share, extra = divmod(total, len(names))
    return [(name, share + (1 if i < extra else 0)) for i, name in enumerate(names)]


async def seed(target: str, token: str, plan: list[tuple[str, int]], days: int, rng: int) -> Any:
    """Streams the planned events to the ingest service; returns its response."""
    total = sum(count for _, count in plan)
    with tqdm(total=total, unit="ev", desc="seeding", file=sys.stderr) as progress:
        async with grpc.aio.insecure_channel(
            target, options=[("grpc.max_send_message_length", 16 * 1024 * 1024)]
        ) as channel:
            stub = ingest_service_pb2_grpc.IngestServiceStub(channel)
            batches = _batches(plan, days, rng, progress)

            async def requests() -> AsyncIterator[Any]:
                # Generation is CPU work; hand each batch over so the stream keeps flowing.
                for request in batches:
                    yield request
                    await asyncio.sleep(0)

            return await stub.StreamEvents(
                requests(), metadata=(("authorization", f"Bearer {token}"),)
            )


def add_seed_command(commands: argparse._SubParsersAction) -> None:
    sub = commands.add_parser(
        "seed",
        help="send deterministic demo events for the tutorials through the ingest service",
        description=__doc__,
    )
    sub.add_argument("--events", type=int, default=10_000, help="events in total (default 10000)")
    sub.add_argument("--days", type=int, default=30, help="days the events span (default 30)")
    sub.add_argument("--seed", type=int, default=42, help="random seed (default 42)")
    sub.add_argument(
        "--datasource",
        action="append",
        choices=DATASOURCES,
        help="only this datasource (repeatable; default all four)",
    )
    config.add_arguments(sub, ["ingest_target", "admin_token", "data_dir"])
    sub.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    settings = config.load(args)
    if args.events <= 0 or args.days <= 0:
        raise SystemExit("--events and --days must be positive")
    token, _ = load_or_create_admin_token(settings.admin_token, settings.data_dir)
    names = list(dict.fromkeys(args.datasource or DATASOURCES))
    plan = plan_counts(args.events, names)
    try:
        response = asyncio.run(seed(settings.ingest_target, token, plan, args.days, args.seed))
    except grpc.aio.AioRpcError as exc:
        print(f"pipit seed: {exc.code().name}: {exc.details()}", file=sys.stderr)
        return 1
    sent = Counter(dict(plan))
    for name, count in sent.items():
        print(f"{name:>20}: {count} events")
    print(
        f"sent {response.successful_rows} rows in {response.batches} batches "
        f"({response.quarantined_rows} quarantined) to {settings.ingest_target}"
    )
    return 0
