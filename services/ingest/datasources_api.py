"""The DatasourcesService's handlers: Tinybird's Data Sources API writes (imports, truncate,
delete) and the Jobs API.

Who may do what: appending needs DATASOURCES:APPEND:<name>, as the Events API does; replacing,
truncating and deleting destroy rows, so they need ADMIN, and so does listing every job. A job
can be read by whoever could have started it (ADMIN, or for an import, a token that may append
to its datasource), so `pipit import` with an append token can follow its own job."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import io
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import structlog
from google.protobuf.message import Message

from common.auth import ScopeRule, current_principal
from common.cluster_schema import ShardedRows, sharded_tables
from common.datasources import Datasource
from common.gzip_inflater import BodyTooLarge, GzipError
from common.rpc_handlers import service_handler
from common.tokens import ADMIN, allows
from common.warehouse.base import Warehouse, WarehouseError
from pipit.ingest.v1 import datasources_service_pb2 as pb
from pipit.project.runtime import CurrentProject
from services.ingest import file_formats, jobs, s3_source, url_source
from services.ingest.body_pipe import BodyPipe
from services.ingest.body_stream import body_chunks
from services.ingest.delete_condition import checked_condition
from services.ingest.imports import (
    APPEND,
    MODES,
    REPLACE,
    Importer,
    ImportSpec,
    s3_job,
    s3_spec,
)
from services.ingest.service import (
    CONTENT_ENCODING_METADATA,
    HTTP_STATUS_METADATA,
    TOO_LARGE_STATUS,
    metadata_value,
)
from services.ingest.upload import FILE_FIELDS, UploadError, UploadReader, read_body
from services.ingest.url_source import UrlRefused, check_url
from services.query.sql_policy import Refused

log = structlog.get_logger("datasources")

SERVICE = pb.DESCRIPTOR.services_by_name["DatasourcesService"]
_TRUE = ("true", "1", "yes")
# Bytes of a streamed body held between the request and the import reading it: enough to
# keep both busy, small beside a batch of rows.
_PIPE_BYTES = 256 * 1024
# Bytes of a file's start read before its import begins, to tell its format when nothing
# names it (file_formats.sniff reads as much).
_HEAD_BYTES = 64 * 1024
# A spool file is written in pieces of about this size (one thread hop each).
_SPOOL_WRITE_BYTES = 1024 * 1024


def _append_scope(name: str) -> str:
    return f"DATASOURCES:APPEND:{name}"


def _is_admin() -> bool:
    principal = current_principal.get()
    return principal is not None and ADMIN in principal.scopes


class DatasourcesApi:
    """The gRPC handlers of DatasourcesService."""

    def __init__(
        self,
        warehouse: Warehouse,
        store: jobs.JobStore,
        importer: Importer,
        current: CurrentProject,
        allow_private_urls: bool,
        max_body_bytes: int,
    ) -> None:
        self._warehouse = warehouse
        self._max_body_bytes = max_body_bytes
        self._store = store
        self._importer = importer
        self._current = current
        self._allow_private = allow_private_urls
        self._deletes: set[asyncio.Task[None]] = set()

    async def _datasource(self, name: str, context: grpc.aio.ServicerContext) -> Datasource:
        if not name:
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT, "parameter 'name' is required: the datasource"
            )
        ds = self._current.project.datasources.get(name)
        if ds is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"datasource '{name}' does not exist")
        return ds

    async def import_data(
        self, requests: AsyncIterator[pb.ImportDataRequest], context: grpc.aio.ServicerContext
    ) -> pb.JobResponse:
        """The body streams in (see the proto): its parameters and form fields are read
        until the file starts, then a file in the body is imported as it arrives (Parquet,
        read from its end, is spooled to disk first and imported after the answer)."""
        first = await anext(aiter(requests), None)
        if first is None:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "no request")
        ds = await self._datasource(first.name, context)
        if ds.materialized_by:  # its rows come from its materialized pipe only
            await context.abort(
                grpc.StatusCode.FAILED_PRECONDITION,
                f"datasource '{ds.name}' is filled by materialized pipe '{ds.materialized_by}'",
            )
        encoding = metadata_value(context, CONTENT_ENCODING_METADATA)
        chunks = body_chunks(first, requests, self._max_body_bytes, encoding)
        try:
            upload = UploadReader(first.body.content_type)
            head, ended = await _head(upload, chunks)
        except (UploadError, BodyTooLarge, GzipError) as exc:
            await _refuse(context, exc)
        fields = upload.fields

        def param(name: str) -> str:
            return getattr(first, name) or fields.get(name, "")

        mode = (param("mode") or APPEND).lower()
        if mode not in MODES:
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT, f"mode must be append or replace, got {mode!r}"
            )
        if mode == REPLACE and not _is_admin():
            # The scope rule saw only the query string; a form can ask for replace too.
            await context.abort(
                grpc.StatusCode.PERMISSION_DENIED, "replacing a datasource's rows needs ADMIN"
            )
        if mode == REPLACE and await self._sharded_rows(ds, context) is not None:
            # A staging table made like a Distributed one is another Distributed table
            # over the same shards: the swap would replace nothing and the load append.
            await context.abort(
                grpc.StatusCode.FAILED_PRECONDITION,
                f"datasource '{ds.name}' is sharded over a cluster, where mode=replace is not "
                f"available: empty it (POST /v0/datasources/{ds.name}/truncate) or delete "
                "the rows to replace (/delete), then append",
            )
        url = param("url")
        has_file = bool(head)
        if url.startswith(s3_source.SCHEME) and not has_file:
            return await self._import_s3(ds, url, mode, context)
        if url and has_file:
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT, "send either a file or url=, not both"
            )
        if not url and not has_file:
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT,
                "send the file in the body (multipart form or raw) or its url= to import",
            )
        if url:
            try:
                check_url(url, self._allow_private)
            except UrlRefused as exc:
                await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        fmt = (
            param("format")
            or FILE_FIELDS.get(upload.file_field, "")
            or file_formats.format_of(url or upload.file_name)
        ).lower()
        if fmt and fmt not in file_formats.FORMATS:
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"format must be one of {', '.join(file_formats.FORMATS)}, got {fmt!r}",
            )
        if has_file and not fmt:
            fmt = file_formats.sniff(io.BytesIO(b"".join(head)))
        delimiter = param("dialect_delimiter")
        escapechar = param("dialect_escapechar")
        if len(delimiter) > 1 or len(escapechar) > 1:
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT,
                "dialect_delimiter and dialect_escapechar are one character each",
            )
        job = jobs.new_job(jobs.IMPORT, ds.name)
        job.mode, job.format, job.url = mode, fmt, url
        spec = ImportSpec(
            ds=ds,
            mode=mode,
            fmt=fmt,
            dialect=file_formats.Dialect(delimiter or ",", escapechar),
            url=url,
        )
        await self._save(job, context)
        log.info("import started", job=job.id, datasource=ds.name, mode=mode, format=fmt)
        if not has_file:
            self._importer.start(job, spec)
            return jobs.response_for(job)
        file = _file_chunks(upload, head, ended, chunks)
        if fmt == file_formats.PARQUET:
            # Held while the body arrives too: a large one takes longer than a lease.
            with self._importer.leases.hold(job):
                spool = await self._spool(job, file, context)
            self._importer.start(job, dataclasses.replace(spec, spool=spool))
            return jobs.response_for(job)
        pipe = BodyPipe(_PIPE_BYTES)
        running = asyncio.get_running_loop().create_task(
            self._importer.run(job, dataclasses.replace(spec, source=pipe))
        )
        reason = "the request ended before its body did"
        refused: Exception | None = None
        try:
            async for chunk in file:
                if not await pipe.write(chunk):
                    break  # the import ended early: its job says why
            else:
                reason = ""
        except (UploadError, GzipError, BodyTooLarge) as exc:
            reason, refused = str(exc), exc
        finally:
            if reason:
                pipe.fail(reason)
            else:
                pipe.end()
            await asyncio.shield(running)
        if refused is not None:
            await _refuse(context, refused)
        return jobs.response_for(job)

    async def _spool(
        self, job: pb.Job, file: AsyncIterator[bytes], context: grpc.aio.ServicerContext
    ) -> Path:
        """The body's file written to a spool file (capped by the body limit, counted as it
        comes), for a job to read from its end."""
        spool = await asyncio.to_thread(url_source.new_spool, self._importer.spool_directory)
        reason = ""
        refused: Exception | None = None
        try:
            await _write_spool(file, spool)
        except (UploadError, GzipError, BodyTooLarge) as exc:
            reason, refused = str(exc), exc
        except OSError as exc:
            reason = f"the file could not be spooled to disk: {exc}"
            refused = exc
        except BaseException:
            reason = "the request ended before its body did"
            raise
        finally:
            if reason:
                await asyncio.to_thread(spool.unlink, missing_ok=True)
                job.status = jobs.ERROR
                job.error = reason
                job.errors.append(reason)
                with contextlib.suppress(WarehouseError):
                    await asyncio.shield(self._store.save(job))
        if refused is not None:
            await _refuse(context, refused)
        return spool

    async def _import_s3(
        self, ds: Datasource, url: str, mode: str, context: grpc.aio.ServicerContext
    ) -> pb.JobResponse:
        """Loads the files of an `s3://` pattern not loaded yet (the S3 connector, once)."""
        try:
            pattern = s3_source.S3Pattern.parse(url)
        except s3_source.S3Error as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        if mode != APPEND:
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT, "S3 files are appended: mode must be append"
            )
        job = s3_job(ds, pattern)
        await self._save(job, context)
        self._importer.start(job, s3_spec(ds, pattern))
        log.info("s3 import started", job=job.id, datasource=ds.name, pattern=str(pattern))
        return jobs.response_for(job)

    async def _save(self, job: pb.Job, context: grpc.aio.ServicerContext) -> None:
        try:
            await self._store.save(job)
        except WarehouseError as exc:
            log.warning("job not saved", job=job.id, error=str(exc)[:300])
            await context.abort(grpc.StatusCode.UNAVAILABLE, "the warehouse is unavailable")

    async def _sharded_rows(
        self, ds: Datasource, context: grpc.aio.ServicerContext | None
    ) -> ShardedRows | None:
        """Where `ds`'s rows are when its table is Distributed (as `pipit migrate
        --cluster` makes it), else None (`sharded_tables`)."""
        try:
            return (await sharded_tables(self._warehouse, ds.name)).get(ds.name)
        except WarehouseError:
            if context is None:
                raise
            await context.abort(grpc.StatusCode.UNAVAILABLE, "the warehouse is unavailable")
            return None  # not reached: abort raises

    async def _rows_table(self, ds: Datasource) -> str:
        """The table a TRUNCATE or an ALTER of `ds`'s rows names: its own, or on a
        cluster every shard's local table (ShardedRows.target). Raises what the warehouse
        raises."""
        sharded = await self._sharded_rows(ds, None)
        return sharded.target() if sharded else f"`{self._warehouse.database}`.`{ds.name}`"

    async def truncate(
        self, request: pb.TruncateDatasourceRequest, context: grpc.aio.ServicerContext
    ) -> pb.JobResponse:
        ds = await self._datasource(request.name, context)
        job = jobs.new_job(jobs.TRUNCATE, ds.name)
        try:
            # Instant on both engines (parts are dropped, not rewritten): done in the call,
            # so a write sent after the answer never lands before the truncate.
            table = await self._rows_table(ds)
            await self._warehouse.rows_replacing(ds.name)
            await self._warehouse.execute(f"TRUNCATE TABLE {table}")
            await self._warehouse.rows_replaced(ds.name)
        except WarehouseError as exc:
            job.status = jobs.ERROR
            job.error = str(exc)[:500]
            job.errors.append(job.error)
            await self._save(job, context)
            await context.abort(grpc.StatusCode.UNAVAILABLE, "the truncate failed: " + job.error)
        job.status = jobs.DONE
        await self._save(job, context)
        return jobs.response_for(job)

    async def delete(
        self, request: pb.DeleteDataRequest, context: grpc.aio.ServicerContext
    ) -> pb.JobResponse:
        ds = await self._datasource(request.name, context)
        try:
            fields = read_body(request.body.data, request.body.content_type).fields
        except UploadError as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        condition = request.delete_condition or fields.get("delete_condition", "")
        dry_run = (request.dry_run or fields.get("dry_run", "")).lower() in _TRUE
        try:
            checked = await checked_condition(self._warehouse, ds, condition)
        except Refused as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        if dry_run:
            return pb.JobResponse(rows_to_be_deleted=await self._count(ds, checked, context))
        job = jobs.new_job(jobs.DELETE, ds.name)
        job.delete_condition = checked
        await self._save(job, context)
        task = asyncio.get_running_loop().create_task(self._run_delete(job, ds, checked))
        self._deletes.add(task)
        task.add_done_callback(self._deletes.discard)
        return jobs.response_for(job)

    async def _count(
        self, ds: Datasource, checked: str, context: grpc.aio.ServicerContext | None
    ) -> int:
        count = f"SELECT count() AS n FROM `{ds.name}` WHERE {checked}"  # noqa: S608 - checked
        try:
            result = await self._warehouse.query(count, {})
        except WarehouseError as exc:
            if context is None:
                raise
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc).split("\n", 1)[0])
        return int(result.data[0]["n"])

    async def _run_delete(self, job: pb.Job, ds: Datasource, checked: str) -> None:
        with self._importer.leases.hold(job):
            await self._delete(job, ds, checked)

    async def _delete(self, job: pb.Job, ds: Datasource, checked: str) -> None:
        job.status = jobs.WORKING
        try:
            await self._store.save(job)
            job.rows_affected = min(await self._count(ds, checked, None), 2**32 - 1)
            # The job is done when every replica has applied it.
            await self._warehouse.delete_rows(ds.name, await self._rows_table(ds), checked)
            job.status = jobs.DONE
        except WarehouseError as exc:
            job.status = jobs.ERROR
            job.error = str(exc)[:500]
            job.errors.append(job.error)
        finally:
            with contextlib.suppress(WarehouseError):
                await asyncio.shield(self._store.save(job))

    async def wait_deletes(self) -> None:
        await asyncio.gather(*self._deletes, return_exceptions=True)

    async def list_jobs(
        self, request: pb.ListJobsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListJobsResponse:
        try:
            found = await self._store.list(request.kind, request.status)
        except WarehouseError:
            await context.abort(grpc.StatusCode.UNAVAILABLE, "the warehouse is unavailable")
        return pb.ListJobsResponse(jobs=found)

    async def get_job(self, request: pb.GetJobRequest, context: grpc.aio.ServicerContext) -> pb.Job:
        try:
            job = await self._store.get(request.job_id) if request.job_id else None
        except WarehouseError:
            await context.abort(grpc.StatusCode.UNAVAILABLE, "the warehouse is unavailable")
        principal = current_principal.get()
        scopes = principal.scopes if principal is not None else ()
        may_read = job is not None and (
            ADMIN in scopes
            or (job.kind == jobs.IMPORT and allows(scopes, _append_scope(job.datasource.name)))
        )
        if not may_read:
            # The same answer for a job that does not exist and one the token may not see.
            await context.abort(grpc.StatusCode.NOT_FOUND, f"job '{request.job_id}' not found")
        return job

    def scope_rules(self) -> dict[str, ScopeRule]:
        name = SERVICE.full_name

        def import_rule(request: Message) -> str | None:
            if not request.name:
                return None
            return ADMIN if request.mode.lower() == REPLACE else _append_scope(request.name)

        return {
            f"/{name}/ImportData": import_rule,
            # Checked in the handler, against the job it finds.
            f"/{name}/GetJob": lambda _request: None,
        }

    def generic_handler(self) -> grpc.GenericRpcHandler:
        return service_handler(
            SERVICE,
            {
                "ImportData": self.import_data,
                "TruncateDatasource": self.truncate,
                "DeleteData": self.delete,
                "ListJobs": self.list_jobs,
                "GetJob": self.get_job,
            },
        )


async def _head(upload: UploadReader, chunks: AsyncIterator[bytes]) -> tuple[list[bytes], bool]:
    """Reads the body until its file has started and `_HEAD_BYTES` of it are in (or the body
    ended): the file's bytes so far, and whether the body ended."""
    head: list[bytes] = []
    size = 0
    async for chunk in chunks:
        for data in upload.feed(chunk):
            head.append(data)
            size += len(data)
        if upload.in_file and size >= _HEAD_BYTES:
            return head, False
    upload.finish()
    head.extend(upload.feed(b""))
    return head, True


async def _file_chunks(
    upload: UploadReader, head: list[bytes], ended: bool, chunks: AsyncIterator[bytes]
) -> AsyncIterator[bytes]:
    """The file's bytes: those read already, then the rest as the body brings them."""
    for data in head:
        yield data
    if ended:
        return
    async for chunk in chunks:
        for data in upload.feed(chunk):
            yield data
    upload.finish()


async def _write_spool(file: AsyncIterator[bytes], spool: Path) -> None:
    pending: list[bytes] = []
    size = 0
    # No fsync: the job reads the file back at once and deletes it after.
    with spool.open("wb") as out:  # noqa: ASYNC230 - each write goes to a thread
        async for chunk in file:
            pending.append(chunk)
            size += len(chunk)
            if size >= _SPOOL_WRITE_BYTES:
                await asyncio.to_thread(out.writelines, pending)
                pending, size = [], 0
        if pending:
            await asyncio.to_thread(out.writelines, pending)


async def _refuse(context: grpc.aio.ServicerContext, exc: Exception) -> None:
    """Ends the call for a body that cannot be read: over the limit, or not its form."""
    if isinstance(exc, BodyTooLarge):
        # 413, not RESOURCE_EXHAUSTED's usual 429 ("retry later"), as the gateways answer a
        # body over their limit.
        context.set_trailing_metadata(((HTTP_STATUS_METADATA, TOO_LARGE_STATUS),))
        await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, str(exc))
    internal = isinstance(exc, OSError)
    code = grpc.StatusCode.INTERNAL if internal else grpc.StatusCode.INVALID_ARGUMENT
    await context.abort(code, str(exc))
