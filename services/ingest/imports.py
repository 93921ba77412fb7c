"""Running a Data Sources API import job: the file (the request body as it streams in, or a
file spooled to disk: a URL's, an S3 object's, a Parquet body's) read a batch at a time, each
batch validated as the Events API validates events, its rows inserted into the datasource and
its invalid rows into the quarantine table, each insert under a deduplication token named for
the job and the batch, so an insert retried after a timeout is never counted twice.

At most `import_batch_rows` rows are held at once, whatever the file's size. Reading and
validating a batch is blocking work (csv, pyarrow, the validator): it runs on a worker
thread, so the event loop keeps serving while a large file is read.

`replace` loads the file into a staging table made like the datasource, then swaps the two
with `EXCHANGE TABLES` (one atomic rename on both engines): a reader sees the old rows or the
new ones, never an empty or half-loaded table. The staging table (then holding the old rows)
is dropped after."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import structlog

from common.config import Settings
from common.datasources import QUARANTINE_COLUMNS, Datasource
from common.validation import RowValidator
from common.warehouse.base import Warehouse, WarehouseError
from pipit.ingest.v1 import datasources_service_pb2 as pb
from services.ingest import file_formats, jobs, s3_source, url_source
from services.ingest.blocks import Block
from services.ingest.body_pipe import BodyPipe
from services.ingest.events_api import Events
from services.ingest.job_leases import JobLeases
from services.ingest.service import quarantine_block, validated

log = structlog.get_logger("imports")

APPEND, REPLACE = "append", "replace"
MODES = (APPEND, REPLACE)
# Seconds between saves of a running job's progress: often enough to follow, rarely enough
# that the jobs table stays small.
PROGRESS_SECONDS = 1.0
_INSERT_ATTEMPTS = 4
_UINT32_MAX = 2**32 - 1
# Imports run at once per process: each holds a batch and keeps a core busy.
_CONCURRENT_IMPORTS = 2


@dataclass(frozen=True)
class ImportSpec:
    """What to import: into which datasource, how, and from where (a body's file, or a
    URL)."""

    ds: Datasource
    mode: str
    fmt: str
    """One of file_formats.FORMATS, or "" to tell from the file itself."""
    dialect: file_formats.Dialect
    url: str = ""
    source: IO[bytes] | None = None
    """A body being streamed in (services/ingest/body_pipe.py), read as it arrives."""
    spool: Path | None = None
    """A body spooled to disk (Parquet, which is read from its end), deleted after."""
    s3: s3_source.S3Pattern | None = None


@dataclass
class _Prepared:
    block: Block
    bad: list[tuple[str, str]]
    invalid_lines: int
    read_bytes: int


def _saturated(value: int) -> int:
    return min(value, _UINT32_MAX)


class Importer:
    """Starts import jobs and runs them to the end, recording each in the job store."""

    def __init__(
        self,
        warehouse: Warehouse,
        store: jobs.JobStore,
        settings: Settings,
        s3: s3_source.S3Store | None = None,
    ) -> None:
        self._warehouse = warehouse
        self._s3 = s3 or s3_source.S3Store(settings)
        self.ledger = s3_source.S3Ledger(warehouse)
        self._store = store
        self._batch_rows = settings.import_batch_rows
        self._max_field_bytes = settings.max_field_bytes
        self._max_url_bytes = settings.import_max_url_bytes
        self._allow_private = settings.import_allow_private_urls
        self._url_timeout = settings.import_url_timeout
        self._spool = url_source.spool_directory(settings.data_dir)
        self._running: dict[str, asyncio.Task[None]] = {}
        self.leases = JobLeases(store, settings.job_lease)
        self._slots = asyncio.Semaphore(_CONCURRENT_IMPORTS)

    @property
    def spool_directory(self) -> Path:
        """Where files wait on disk to be read (downloads, spooled bodies)."""
        return self._spool

    def start(self, job: pb.Job, spec: ImportSpec) -> None:
        """Runs `job` in the background (it is saved as waiting already)."""
        task = asyncio.get_running_loop().create_task(self._run(job, spec))
        self._running[job.id] = task
        task.add_done_callback(lambda _t: self._running.pop(job.id, None))

    async def wait(self, job_id: str) -> None:
        """Until the job finishes (tests, and `wait` callers)."""
        task = self._running.get(job_id)
        if task is not None:
            await asyncio.shield(task)

    async def close(self) -> None:
        """Stops the running jobs, each recorded as failed (its rows so far stay)."""
        for task in list(self._running.values()):
            task.cancel()
        await asyncio.gather(*self._running.values(), return_exceptions=True)

    async def run(self, job: pb.Job, spec: ImportSpec) -> None:
        """Runs `job` to its end here (a body streaming in: the request lasts as long)."""
        self.start(job, spec)
        # Shielded: a caller that goes away stops feeding the body, which ends the job.
        await asyncio.shield(self._running[job.id])

    async def _run(self, job: pb.Job, spec: ImportSpec) -> None:
        # Renewed while it runs, so a replica can tell it from one whose process died.
        with self.leases.hold(job):
            await self._import(job, spec)

    async def _import(self, job: pb.Job, spec: ImportSpec) -> None:
        spool: Path | None = spec.spool
        staging = ""
        try:
            async with self._slots:
                job.status = jobs.WORKING
                await self._store.save(job)
                if spec.s3 is not None:
                    await self._load_s3(job, spec)
                    job.status = jobs.DONE
                    job.progress_percentage = 100
                    return
                if spec.url:
                    spool = await self._download(job, spec.url)
                target = spec.ds.name
                if spec.mode == REPLACE:
                    staging = f"{spec.ds.name}__replace_{job.id[:16]}"
                    await self._warehouse.execute(
                        f"CREATE TABLE `{self._warehouse.database}`.`{staging}` "
                        f"AS `{self._warehouse.database}`.`{spec.ds.name}`"
                    )
                    target = staging
                await self._load(job, spec, spool, target)
                if staging:
                    db = self._warehouse.database
                    await self._warehouse.rows_replacing(spec.ds.name)
                    await self._warehouse.execute(
                        f"EXCHANGE TABLES `{db}`.`{spec.ds.name}` AND `{db}`.`{staging}`"
                    )
                    await self._warehouse.rows_replaced(spec.ds.name)
                job.status = jobs.DONE
                job.progress_percentage = 100
        except asyncio.CancelledError:
            _fail(job, "the ingest service stopped before the import finished")
            raise
        except (
            file_formats.FileError,
            url_source.UrlRefused,
            s3_source.S3Error,
            UnicodeError,
        ) as exc:
            _fail(job, str(exc))
        except WarehouseError as exc:
            _fail(job, f"the warehouse refused the import: {str(exc)[:500]}")
        except Exception as exc:  # noqa: BLE001 - a job records any failure, and the service lives
            log.exception("import failed", job=job.id)
            _fail(job, f"the import failed: {type(exc).__name__}: {exc}")
        finally:
            if spool is not None:
                await asyncio.to_thread(spool.unlink, missing_ok=True)
            if staging:
                with contextlib.suppress(WarehouseError):
                    await self._warehouse.execute(
                        f"DROP TABLE IF EXISTS `{self._warehouse.database}`.`{staging}`"
                    )
            with contextlib.suppress(WarehouseError):
                await asyncio.shield(self._store.save(job))
            log.info(
                "import finished",
                job=job.id,
                datasource=spec.ds.name,
                status=job.status,
                rows=job.statistics.row_count,
                quarantined=job.quarantine_rows,
            )

    async def new_s3_files(
        self, ds: Datasource, pattern: s3_source.S3Pattern
    ) -> list[s3_source.S3File]:
        """The files of `pattern` not yet loaded into `ds`."""
        loaded = await self.ledger.loaded(ds.name, pattern.bucket)
        return [f for f in await self._s3.list(pattern) if (f.key, f.etag) not in loaded]

    async def run_s3(self, ds: Datasource, pattern: s3_source.S3Pattern) -> pb.Job | None:
        """Loads the new files of `pattern` as one job, to its end (a scheduled look); None
        when there is nothing new."""
        if not await self.new_s3_files(ds, pattern):
            return None
        job = s3_job(ds, pattern)
        await self._store.save(job)
        await self._run(job, s3_spec(ds, pattern))
        return job

    async def _load_s3(self, job: pb.Job, spec: ImportSpec) -> None:
        assert spec.s3 is not None
        files = await self.new_s3_files(spec.ds, spec.s3)
        for done, file in enumerate(files):
            spool = await asyncio.to_thread(url_source.new_spool, self._spool)
            try:
                await self._s3.fetch(file, spool)
                fmt = spec.fmt or file_formats.format_of(file.key)
                await self._load(
                    job, dataclasses.replace(spec, fmt=fmt), spool, spec.ds.name, file.token
                )
            finally:
                await asyncio.to_thread(spool.unlink, missing_ok=True)
            await self.ledger.record(spec.ds.name, file, job.id)
            job.progress_percentage = min(99, (done + 1) * 100 // len(files))
            await self._store.save(job)

    async def _download(self, job: pb.Job, url: str) -> Path:
        last = time.monotonic()

        def progress(read: int, _total: int) -> None:
            nonlocal last
            job.statistics.bytes = _saturated(read)
            if time.monotonic() - last > PROGRESS_SECONDS:
                last = time.monotonic()
                # Fire and forget: a slow save must not slow the download.
                asyncio.get_running_loop().create_task(self._store.save(_copy(job)))

        return await url_source.download(
            url,
            self._spool,
            max_bytes=self._max_url_bytes,
            allow_private=self._allow_private,
            idle_seconds=self._url_timeout,
            progress=progress,
        )

    async def _load(
        self,
        job: pb.Job,
        spec: ImportSpec,
        spool: Path | None,
        target: str,
        token: str = "",
    ) -> None:
        """Loads one file into `target`; its inserts' deduplication tokens are named for
        `token` (the job, unless the file has a name of its own: an S3 file's)."""
        token = token or f"import-{job.id}"
        # An S3 job reads several files; a URL job counted its download in the same figure.
        bytes_before = job.statistics.bytes if spec.s3 is not None else 0
        validator = RowValidator(spec.ds, max_string_bytes=self._max_field_bytes)
        raw, total = await asyncio.to_thread(_open, spec, spool)
        upcoming: asyncio.Future[_Prepared | None] | None = None
        pipe = raw if isinstance(raw, BodyPipe) else None
        if not spec.fmt:
            job.format = await asyncio.to_thread(file_formats.sniff, raw)
            spec = dataclasses.replace(spec, fmt=job.format)
        try:
            counted = file_formats.CountingReader(raw)
            source: IO[bytes] = raw if spec.fmt == file_formats.PARQUET else counted  # type: ignore[assignment]
            batches = file_formats.read_rows(
                source, spec.fmt, spec.ds, self._batch_rows, spec.dialect
            )
            last = time.monotonic()
            number = 0

            def read_next() -> asyncio.Future[_Prepared | None]:
                return asyncio.ensure_future(
                    asyncio.to_thread(_prepare, batches, validator, counted)
                )

            upcoming = read_next()
            while True:
                prepared = await upcoming
                if prepared is None:
                    break
                # The next batch is read and validated on its thread while this one is
                # inserted: two batches at most are held, and neither side waits for the other.
                upcoming = read_next()
                await self._insert(target, spec.ds.column_names, prepared.block, token, number)
                await self._insert(
                    spec.ds.quarantine_table,
                    QUARANTINE_COLUMNS,
                    quarantine_block(prepared.bad),
                    token,
                    number,
                    "q",
                )
                number += 1
                job.statistics.row_count = _saturated(
                    job.statistics.row_count + prepared.block.rows
                )
                job.quarantine_rows = _saturated(job.quarantine_rows + len(prepared.bad))
                job.invalid_lines = _saturated(job.invalid_lines + prepared.invalid_lines)
                if spec.fmt != file_formats.PARQUET:
                    job.statistics.bytes = _saturated(bytes_before + prepared.read_bytes)
                    if not spec.s3 and total:
                        job.progress_percentage = min(
                            99, prepared.read_bytes * 100 // max(total, 1)
                        )
                if time.monotonic() - last > PROGRESS_SECONDS:
                    last = time.monotonic()
                    await self._store.save(job)
            job.statistics.bytes = _saturated(bytes_before + (total or counted.count))
        finally:
            if upcoming is not None and not upcoming.done():
                if pipe is not None:
                    # The rest of a streamed body is not wanted: a read waiting for it ends.
                    pipe.stop()
                # A failed insert: the batch being read is not wanted; the file closes after it.
                await asyncio.gather(upcoming, return_exceptions=True)
            if pipe is not None:
                pipe.stop()
            await asyncio.to_thread(raw.close)

    async def _insert(
        self,
        table: str,
        columns: tuple[str, ...],
        block: Block,
        name: str,
        number: int,
        kind: str = "rows",
    ) -> None:
        if not block.rows:
            return
        # Named for the file and the batch: a retried insert is the same insert.
        token = f"{name}-{kind}-{number}"
        for attempt in range(_INSERT_ATTEMPTS):
            try:
                await self._warehouse.insert_json_rows(
                    table, columns, block.body, dedup_token=token, fmt=block.fmt
                )
                return
            except WarehouseError:
                if attempt == _INSERT_ATTEMPTS - 1:
                    raise
                await asyncio.sleep(0.5 * 2**attempt)


def s3_job(ds: Datasource, pattern: s3_source.S3Pattern) -> pb.Job:
    """A waiting job loading the new files of `pattern` into `ds`."""
    job = jobs.new_job(jobs.IMPORT, ds.name)
    job.mode, job.url = APPEND, str(pattern)
    job.format = file_formats.format_of(pattern.glob)
    return job


def s3_spec(ds: Datasource, pattern: s3_source.S3Pattern) -> ImportSpec:
    fmt = file_formats.format_of(pattern.glob)
    return ImportSpec(ds=ds, mode=APPEND, fmt=fmt, dialect=file_formats.Dialect(), s3=pattern)


def _open(spec: ImportSpec, spool: Path | None) -> tuple[IO[bytes], int]:
    """The file to read and its size (0 for a body still streaming in: not known yet)."""
    if spool is not None:
        return spool.open("rb"), spool.stat().st_size
    if spec.source is None:
        raise file_formats.FileError("the import has no file to read")
    return spec.source, 0


def _prepare(
    batches: Iterator[Events], validator: RowValidator, counted: file_formats.CountingReader
) -> _Prepared | None:
    """The next batch read and validated (on a worker thread), or None at the end."""
    events = next(batches, None)
    if events is None:
        return None
    block, reasons = validated(validator, events)
    bad = [(events.texts[i].decode("utf-8", "replace"), error) for i, error in reasons]
    return _Prepared(block, bad, len(events.errors), counted.count)


def _fail(job: pb.Job, message: str) -> None:
    job.status = jobs.ERROR
    job.error = message
    job.errors.append(message)


def _copy(job: pb.Job) -> pb.Job:
    copy = pb.Job()
    copy.CopyFrom(job)
    return copy
