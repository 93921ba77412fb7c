"""`pipit seed`: generates demo events and sends them through the ingest service, so
seeding exercises the same path as production traffic. The built-in tutorials' datasources
get realistic events (pipit/seed/generator.py) through the streaming RPC; any other
datasource of the deployment in service gets events made from its column types
(pipit/seed/generic.py) through its Events API RPC."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections import Counter
from collections.abc import AsyncIterator, Iterable, Iterator
from itertools import islice
from typing import Any

import grpc
import orjson
from google.protobuf.timestamp_pb2 import Timestamp
from tqdm import tqdm

from common import config
from common.datasources import Datasource, by_message, registry
from common.timeparse import parse_datetime
from common.tokens import load_or_create_admin_token
from pipit.ingest.v1 import ingest_service_pb2, ingest_service_pb2_grpc
from pipit.project.runtime import Project
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


async def _deployment(settings: config.Settings) -> Project:
    """The deployment in service, as the query service describes it."""
    from pipit.deploy.v1 import deploy_service_pb2, deploy_service_pb2_grpc
    from pipit.project.artifact import Artifact

    async with grpc.aio.insecure_channel(settings.query_target) as channel:
        reply = await deploy_service_pb2_grpc.DeployServiceStub(channel).GetDeployment(
            deploy_service_pb2.GetDeploymentRequest()
        )
    return Project(Artifact("deployed", reply.descriptor_set, {}))


async def _serves_builtin(settings: config.Settings) -> bool:
    """Whether the deployment in service is the built-in tutorials (its streaming RPC is
    the one this command's stub calls); true when the query service cannot say."""
    try:
        project = await _deployment(settings)
    except grpc.aio.AioRpcError:
        return True
    service = project.ingest_service
    return (
        service is not None
        and service.full_name
        == ingest_service_pb2.DESCRIPTOR.services_by_name["IngestService"].full_name
    )


async def seed_any(
    settings: config.Settings, token: str, plan: list[tuple[str, int]], days: int, rng: int
) -> Any:
    """Sends events made from each datasource's column types through the Events API RPC of
    the deployment in service, a batch of NDJSON at a time; returns the totals."""
    from google.protobuf import message_factory

    from pipit.seed.generic import events_for

    project = await _deployment(settings)
    service = project.ingest_service
    method = next(
        (m for m in service.methods if any(
            f.message_type is not None and f.message_type.full_name == "google.api.HttpBody"
            for f in m.input_type.fields)),
        None,
    ) if service is not None else None  # fmt: skip
    if method is None:
        raise KeyError("the deployment in service has no Events API to seed through")
    request_class = message_factory.GetMessageClass(method.input_type)
    response_class = message_factory.GetMessageClass(method.output_type)
    totals = _Totals()
    total = sum(count for _, count in plan)
    with tqdm(total=total, unit="ev", desc="seeding", file=sys.stderr) as progress:
        async with grpc.aio.insecure_channel(
            settings.ingest_target, options=[("grpc.max_send_message_length", 16 * 1024 * 1024)]
        ) as channel:
            post = channel.unary_unary(
                f"/{service.full_name}/{method.name}",
                request_serializer=request_class.SerializeToString,
                response_deserializer=response_class.FromString,
            )
            for name, count in plan:
                if name not in project.datasources:
                    raise KeyError(f"the deployment in service has no datasource {name!r}")
                events = events_for(project.datasources[name], count, days=days, seed=rng)
                while batch := list(islice(events, BATCH_EVENTS)):
                    request = request_class(name=name, wait=True)
                    request.body.data = b"\n".join(orjson.dumps(e) for e in batch)
                    reply = await post(request, metadata=(("authorization", f"Bearer {token}"),))
                    totals.add(reply)
                    progress.update(len(batch))
    return totals


class _Totals:
    """What the ingest service answered, summed as StreamEvents would answer it."""

    def __init__(self) -> None:
        self.successful_rows = self.quarantined_rows = self.batches = 0

    def add(self, reply: Any) -> None:
        self.successful_rows += reply.successful_rows
        self.quarantined_rows += reply.quarantined_rows
        self.batches += 1


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
        help="only this datasource (repeatable; default the four tutorials'); any datasource "
        "of the deployment in service works",
    )
    config.add_arguments(sub, ["ingest_target", "query_target", "admin_token", "data_dir"])
    sub.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    settings = config.load(args)
    if args.events <= 0 or args.days <= 0:
        raise SystemExit("--events and --days must be positive")
    token, _ = load_or_create_admin_token(settings.admin_token, settings.data_dir)
    names = list(dict.fromkeys(args.datasource or DATASOURCES))
    plan = plan_counts(args.events, names)
    try:
        if set(names) <= set(DATASOURCES) and asyncio.run(_serves_builtin(settings)):
            response = asyncio.run(seed(settings.ingest_target, token, plan, args.days, args.seed))
        else:
            response = asyncio.run(seed_any(settings, token, plan, args.days, args.seed))
    except grpc.aio.AioRpcError as exc:
        print(f"pipit seed: {exc.code().name}: {exc.details()}", file=sys.stderr)
        return 1
    except KeyError as exc:
        print(f"pipit seed: {exc.args[0]}", file=sys.stderr)
        return 1
    sent = Counter(dict(plan))
    for name, count in sent.items():
        print(f"{name:>20}: {count} events")
    print(
        f"sent {response.successful_rows} rows in {response.batches} batches "
        f"({response.quarantined_rows} quarantined) to {settings.ingest_target}"
    )
    return 0
