"""The ingest service of the project in service, built from its proto descriptor: every
RPC whose request carries a repeated datasource message is a typed append, the
client-streaming RPC takes such requests in a `oneof`, and the RPC whose request carries a
`google.api.HttpBody` is the Events API. Adding a datasource adds an RPC to the proto and
nothing here; deploying a project swaps the whole table of handlers."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence

import grpc
import structlog
from google.protobuf import message_factory
from google.protobuf.descriptor import Descriptor, FieldDescriptor, MethodDescriptor
from google.protobuf.message import Message

from common.auth import ScopeRule
from common.datasources import QUARANTINE_COLUMNS, Datasource
from common.project_handlers import PerProject, ProjectHandlers
from common.validation import RowValidator
from pipit.ingest.v1 import ingest_service_pb2
from pipit.project.runtime import CurrentProject, Project
from services.ingest import events_api, metrics
from services.ingest.batcher import Batcher
from services.ingest.blocks import Block, quarantine_block
from services.ingest.wal import WalFull

log = structlog.get_logger("ingest")

# The name readiness probes ask for, whatever the project calls its ingest service.
SERVICE = ingest_service_pb2.DESCRIPTOR.services_by_name["IngestService"]
HTTP_STATUS_METADATA = "x-http-status"
TOO_LARGE_STATUS = "413"
# An HTTP header that reaches the service as metadata when Envoy passes a gzip body on as sent.
CONTENT_ENCODING_METADATA = "content-encoding"
_HTTP_BODY = "google.api.HttpBody"
Reason = tuple[int, str]
"""An invalid event's index in its batch and why it is invalid."""
RETRY_AFTER_METADATA = "retry-after"
RETRY_AFTER_SECONDS = 1


class _Counts:
    """What one request did, and what it may wait for."""

    def __init__(self) -> None:
        self.successful = 0
        self.quarantined = 0
        self.pending: list[asyncio.Future[None]] = []


class TooManyInvalid(ValueError):
    """A request carries more invalid events than one request may quarantine."""


def validated(validator: RowValidator, events: events_api.Events) -> tuple[Block, list[Reason]]:
    """The valid events of a batch as a block, and the index of each invalid one with the
    reason, in order: the one validation of the Events API and of bulk imports."""
    ds = validator.datasource
    if events.columns is not None and not events.errors:
        columns = validator.checked_columns(events.columns)
        if columns is not None:
            return Block.from_columns(columns, len(events), ds.column_names), []
    if events.errors:
        decoded = [i for i in range(len(events)) if i not in events.errors]
        values = [events.values[i] for i in decoded]
    else:
        decoded, values = range(len(events)), events.values
    # Validated a column at a time: per-batch work, not per-event.
    columns, invalid = validator.columns_from_json(values)
    reasons = sorted([*events.errors.items(), *((decoded[i], e) for i, e in invalid)])
    return Block.from_columns(columns, len(values) - len(invalid), ds.column_names), reasons


class Ingestor:
    """Validates events and hands rows and quarantined rows to the batcher."""

    def __init__(
        self,
        batcher: Batcher,
        current: CurrentProject,
        max_field_bytes: int,
        max_quarantine_rows: int,
    ) -> None:
        self._batcher = batcher
        self._validators = PerProject(
            current,
            # A materialized pipe's target is filled by its view alone: no appends.
            lambda project: {
                ds.name: RowValidator(ds, max_string_bytes=max_field_bytes)
                for ds in project.datasources.values()
                if not ds.materialized_by
            },
        )
        self._max_quarantine_rows = max_quarantine_rows
        self._max_field_bytes = max_field_bytes

    def datasource(self, name: str) -> Datasource:
        validator = self._validators.get().get(name)
        if validator is None:
            raise KeyError(name)
        return validator.datasource

    def known(self) -> list[str]:
        return sorted(self._validators.get())

    def _validator(self, ds: Datasource) -> RowValidator:
        validator = self._validators.get().get(ds.name)
        if validator is None or validator.datasource is not ds:
            # A request that began before a deploy replaced its datasource: its own rules.
            return RowValidator(ds, max_string_bytes=self._max_field_bytes)
        return validator

    async def _submit(
        self, ds: Datasource, block: Block, bad: list[tuple[str, str]], counts: _Counts
    ) -> None:
        """Logs the valid rows and the quarantined ones together: either both are
        accepted or neither is (one write, one check of the log's bound), so a refused
        request can be retried whole without duplicating anything."""
        quarantined = quarantine_block(bad)
        try:
            counts.pending += await self._batcher.append_batches(
                [
                    (ds.name, ds.column_names, block),
                    (ds.quarantine_table, QUARANTINE_COLUMNS, quarantined),
                ]
            )
        except WalFull:
            metrics.REJECTED.inc()
            raise
        counts.successful += block.rows
        counts.quarantined += quarantined.rows
        metrics.EVENTS.labels(ds.name, "accepted").inc(block.rows)
        metrics.EVENTS.labels(ds.name, "quarantined").inc(quarantined.rows)

    def _check_invalid(self, ds: Datasource, invalid: list[tuple[int, str]], total: int) -> None:
        """Refuses, before anything is stored, a request with more invalid events than
        the cap: one body of empty lines must not become millions of quarantined rows."""
        if len(invalid) <= self._max_quarantine_rows:
            return
        metrics.EVENTS.labels(ds.name, "refused").inc(total)
        index, reason = invalid[0]
        raise TooManyInvalid(
            f"{len(invalid)} of {total} events are invalid, more than the "
            f"{self._max_quarantine_rows} one request may quarantine "
            f"(PIPIT_MAX_QUARANTINE_ROWS); nothing was stored. First, event {index + 1}: "
            f"{reason}"
        )

    async def submit_json(self, ds: Datasource, events: events_api.Events, counts: _Counts) -> None:
        block, reasons = validated(self._validator(ds), events)
        self._check_invalid(ds, reasons, len(events))
        bad = [(events.texts[i].decode("utf-8", "replace"), error) for i, error in reasons]
        await self._submit(ds, block, bad, counts)

    async def submit_messages(
        self, ds: Datasource, events: Sequence[Message], counts: _Counts
    ) -> None:
        validator = self._validator(ds)
        columns, invalid = validator.columns_from_messages(events)
        self._check_invalid(ds, invalid, len(events))
        bad = [(validator.message_text(events[index]), error) for index, error in invalid]
        block = Block.from_columns(columns, len(events) - len(invalid), ds.column_names)
        await self._submit(ds, block, bad, counts)


async def _answer(
    submitted: Awaitable[None],
    counts: _Counts,
    wait: bool,
    context: grpc.aio.ServicerContext,
    response_class: type[Message],
) -> Message:
    """The answer to one request's events (typed messages or the Events API's JSON) once
    `submitted` has handed them to the ingestor: refused whole when the log is full or too
    many are invalid, else the counts, after the rows are written when `wait` asks so."""
    try:
        await submitted
    except WalFull as exc:
        await _refuse_full(context, exc)
    except TooManyInvalid as exc:
        await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
    if wait:
        await asyncio.gather(*counts.pending)
    else:
        # Tinybird answers 202 for queued rows; the gateway (or Envoy) maps this
        # header to the HTTP status.
        await context.send_initial_metadata(((HTTP_STATUS_METADATA, "202"),))
    return response_class(successful_rows=counts.successful, quarantined_rows=counts.quarantined)


async def _refuse_full(context: grpc.aio.ServicerContext, exc: WalFull, note: str = "") -> None:
    # Retry-After reaches HTTP clients as a header (the gateway forwards trailers).
    context.set_trailing_metadata(((RETRY_AFTER_METADATA, str(RETRY_AFTER_SECONDS)),))
    await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, f"{exc}{note}")


def _no_appends(ds: Datasource) -> str:
    return (
        f"datasource '{ds.name}' is filled by materialized pipe '{ds.materialized_by}': "
        "append to the datasource that pipe reads"
    )


def metadata_value(context: grpc.aio.ServicerContext, key: str) -> str:
    """The value of a request's metadata `key` ("" when absent)."""
    for name, value in context.invocation_metadata() or ():
        if name == key and isinstance(value, str):
            return value
    return ""


def _accepted_before(batches: int) -> str:
    return f" (the first {batches} batches of this stream were accepted)"


def _events_field(project: Project, message: Descriptor) -> FieldDescriptor | None:
    """The repeated datasource field of a typed append request, if any."""
    for f in message.fields:
        if f.is_repeated and f.message_type is not None:
            try:
                project.by_message(f.message_type)
            except KeyError:
                continue
            return f
    return None


def _body_field(message: Descriptor) -> FieldDescriptor | None:
    for f in message.fields:
        if f.message_type is not None and f.message_type.full_name == _HTTP_BODY:
            return f
    return None


class IngestService:
    """The gRPC handlers of the project's ingest service over an Ingestor."""

    def __init__(self, ingestor: Ingestor, max_body_bytes: int, current: CurrentProject) -> None:
        self._ingestor = ingestor
        self._max_body_bytes = max_body_bytes
        self._current = current

    async def _append_in(
        self, request: Message, counts: _Counts, field: FieldDescriptor, ds: Datasource
    ) -> None:
        await self._ingestor.submit_messages(ds, getattr(request, field.name), counts)

    def _append_handler(
        self, method: MethodDescriptor, field: FieldDescriptor, ds: Datasource
    ) -> Callable:
        response_class = message_factory.GetMessageClass(method.output_type)

        async def append(request: Message, context: grpc.aio.ServicerContext) -> Message:
            if ds.materialized_by:
                await context.abort(grpc.StatusCode.FAILED_PRECONDITION, _no_appends(ds))
            counts = _Counts()
            submitted = self._append_in(request, counts, field, ds)
            return await _answer(submitted, counts, request.wait, context, response_class)

        return append

    def _stream_handler(self, project: Project, method: MethodDescriptor) -> Callable:
        request_type = method.input_type
        response_class = message_factory.GetMessageClass(method.output_type)
        oneof = request_type.oneofs[0]
        fields = {}
        for f in oneof.fields:
            events = _events_field(project, f.message_type)
            fields[f.name] = (events, project.by_message(events.message_type))

        async def stream(
            requests: AsyncIterator[Message], context: grpc.aio.ServicerContext
        ) -> Message:
            counts = _Counts()
            waited: list[asyncio.Future[None]] = []
            batches = 0
            async for request in requests:
                which = request.WhichOneof(oneof.name)
                if which is None:
                    await context.abort(
                        grpc.StatusCode.INVALID_ARGUMENT,
                        f"message {batches + 1} of the stream sets no '{oneof.name}'",
                    )
                inner = getattr(request, which)
                before = len(counts.pending)
                try:
                    await self._append_in(inner, counts, *fields[which])
                except WalFull as exc:
                    await _refuse_full(context, exc, _accepted_before(batches))
                except TooManyInvalid as exc:
                    await context.abort(
                        grpc.StatusCode.INVALID_ARGUMENT,
                        f"message {batches + 1} of the stream: {exc}{_accepted_before(batches)}",
                    )
                if inner.wait:
                    waited.extend(counts.pending[before:])
                batches += 1
            # The stream answers once; it waits for the batches that asked to.
            await asyncio.gather(*waited)
            return response_class(
                successful_rows=counts.successful,
                quarantined_rows=counts.quarantined,
                batches=batches,
            )

        return stream

    def _events_api_handler(
        self, method: MethodDescriptor, body_field: FieldDescriptor
    ) -> Callable:
        response_class = message_factory.GetMessageClass(method.output_type)
        limit = self._max_body_bytes

        async def post_events(request: Message, context: grpc.aio.ServicerContext) -> Message:
            if not request.name:
                await context.abort(
                    grpc.StatusCode.INVALID_ARGUMENT,
                    "parameter 'name' is required: the datasource to append to",
                )
            try:
                ds = self._ingestor.datasource(request.name)
            except KeyError:
                target = self._current.project.datasources.get(request.name)
                if target is not None and target.materialized_by:
                    await context.abort(grpc.StatusCode.FAILED_PRECONDITION, _no_appends(target))
                known = ", ".join(self._ingestor.known())
                await context.abort(
                    grpc.StatusCode.NOT_FOUND,
                    f"datasource '{request.name}' does not exist (known: {known})",
                )
            data = getattr(request, body_field.name).data
            encoding = metadata_value(context, CONTENT_ENCODING_METADATA)
            try:
                events = events_api.decode(events_api.decompress(data, limit, encoding))
            except events_api.BodyTooLarge as exc:
                # 413, not RESOURCE_EXHAUSTED's usual 429 ("retry later"), as the gateways
                # answer a body over their limit.
                context.set_trailing_metadata(((HTTP_STATUS_METADATA, TOO_LARGE_STATUS),))
                await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, str(exc))
            except events_api.BodyError as exc:
                await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
            counts = _Counts()
            submitted = self._ingestor.submit_json(ds, events, counts)
            return await _answer(submitted, counts, request.wait, context, response_class)

        return post_events

    @staticmethod
    def scope_rules(project: Project) -> dict[str, ScopeRule]:
        """The scope each RPC of `project`'s ingest service needs: appending to the
        datasource it writes."""
        service = project.ingest_service
        rules: dict[str, ScopeRule] = {}
        for method in service.methods if service is not None else ():
            path = f"/{service.full_name}/{method.name}"
            if method.client_streaming:
                oneof = method.input_type.oneofs[0]
                names = {
                    f.name: project.by_message(
                        _events_field(project, f.message_type).message_type
                    ).name
                    for f in oneof.fields
                }

                def stream_rule(request: Message, names=names, oneof=oneof.name) -> str | None:
                    which = request.WhichOneof(oneof)
                    return None if which is None else f"DATASOURCES:APPEND:{names[which]}"

                rules[path] = stream_rule
            elif _body_field(method.input_type) is not None:
                rules[path] = lambda r: f"DATASOURCES:APPEND:{r.name}" if r.name else None
            elif (events := _events_field(project, method.input_type)) is not None:
                scope = f"DATASOURCES:APPEND:{project.by_message(events.message_type).name}"
                rules[path] = lambda _r, scope=scope: scope
        return rules

    def handlers(self, project: Project) -> dict[str, grpc.RpcMethodHandler]:
        """The handler of every RPC of `project`'s ingest service, by `/service/method`."""
        service = project.ingest_service
        handlers: dict[str, grpc.RpcMethodHandler] = {}
        for method in service.methods if service is not None else ():
            request_class = message_factory.GetMessageClass(method.input_type)
            response_class = message_factory.GetMessageClass(method.output_type)
            codec = {
                "request_deserializer": request_class.FromString,
                "response_serializer": response_class.SerializeToString,
            }
            path = f"/{service.full_name}/{method.name}"
            if method.client_streaming:
                handlers[path] = grpc.stream_unary_rpc_method_handler(
                    self._stream_handler(project, method), **codec
                )
            elif (body := _body_field(method.input_type)) is not None:
                handlers[path] = grpc.unary_unary_rpc_method_handler(
                    self._events_api_handler(method, body), **codec
                )
            elif (events := _events_field(project, method.input_type)) is not None:
                ds = project.by_message(events.message_type)
                handlers[path] = grpc.unary_unary_rpc_method_handler(
                    self._append_handler(method, events, ds), **codec
                )
            else:
                raise TypeError(f"{method.full_name} has no recognised request shape")
        return handlers

    def generic_handler(self) -> grpc.GenericRpcHandler:
        return ProjectHandlers(self._current, self.handlers)
