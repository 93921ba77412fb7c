"""The S3 connector: the files of an `s3://bucket/prefix/*.parquet` pattern (CSV and NDJSON
too), fetched with boto3 (on worker threads: boto3 blocks) into the import spool, and a ledger
of the files loaded, so each file is loaded exactly once whoever looks and however often.

Exactly once rests on two things. The ledger (`_pipit_s3_ledger`, in the warehouse, so every
replica and every restart reads the same one) names each file by bucket, key and ETag: a file
rewritten under the same key is a new file. And every insert of a file's rows carries a
deduplication token named for that bucket, key, ETag and batch, not for the job: if a process
stops after loading a file but before recording it, the next look loads it again and the
engine drops every batch it already has."""

from __future__ import annotations

import asyncio
import fnmatch
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from common.config import Settings
from common.warehouse.base import Warehouse

LEDGER = "_pipit_s3_ledger"
_CHUNK_BYTES = 1024 * 1024
SCHEME = "s3://"
_WILDCARDS = re.compile(r"[*?\[]")
_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")


class S3Error(ValueError):
    """A pattern that is not one, or S3 refused or failed; the message says why."""


@dataclass(frozen=True)
class S3Pattern:
    """`s3://bucket/prefix/*.parquet`: a bucket and a glob over its keys."""

    bucket: str
    glob: str

    @classmethod
    def parse(cls, uri: str) -> S3Pattern:
        if not uri.startswith(SCHEME):
            raise S3Error(f"an S3 URL starts with s3://, got {uri[:200]!r}")
        bucket, _, glob = uri[len(SCHEME) :].partition("/")
        if not _BUCKET.fullmatch(bucket) or not glob:
            raise S3Error(f"an S3 URL is s3://<bucket>/<key or pattern>, got {uri[:200]!r}")
        return cls(bucket, glob)

    @property
    def prefix(self) -> str:
        """What every matching key starts with: the listing asks only for those."""
        wildcard = _WILDCARDS.search(self.glob)
        return self.glob if wildcard is None else self.glob[: wildcard.start()]

    def matches(self, key: str) -> bool:
        return fnmatch.fnmatchcase(key, self.glob)

    def __str__(self) -> str:
        return f"{SCHEME}{self.bucket}/{self.glob}"


@dataclass(frozen=True)
class S3File:
    bucket: str
    key: str
    etag: str
    size: int

    @property
    def uri(self) -> str:
        return f"{SCHEME}{self.bucket}/{self.key}"

    @property
    def token(self) -> str:
        """What the deduplication tokens of its inserts are named for."""
        return f"s3-{self.bucket}/{self.key}@{self.etag}"


def ledger_sql(database: str) -> str:
    return (
        f"CREATE TABLE IF NOT EXISTS `{database}`.`{LEDGER}` (\n"
        "    `datasource` String,\n"
        "    `bucket` String,\n"
        "    `key` String,\n"
        "    `etag` String,\n"
        "    `job_id` String,\n"
        "    `loaded_at` DateTime64(6, 'UTC')\n"
        ")\n"
        "ENGINE = ReplacingMergeTree\n"
        "ORDER BY (datasource, bucket, key, etag)"
    )


class S3Ledger:
    """The files loaded into each datasource."""

    def __init__(self, warehouse: Warehouse) -> None:
        self._warehouse = warehouse

    async def ensure(self) -> None:
        await self._warehouse.execute(ledger_sql(self._warehouse.database))

    async def loaded(self, datasource: str, bucket: str) -> set[tuple[str, str]]:
        result = await self._warehouse.query(
            f"SELECT DISTINCT key, etag FROM `{LEDGER}` "  # noqa: S608 - constant
            "WHERE datasource = {ds:String} AND bucket = {bucket:String}",
            {"ds": datasource, "bucket": bucket},
        )
        return {(row["key"], row["etag"]) for row in result.data}

    async def record(self, datasource: str, file: S3File, job_id: str) -> None:
        row = {
            "datasource": datasource,
            "bucket": file.bucket,
            "key": file.key,
            "etag": file.etag,
            "job_id": job_id,
            "loaded_at": datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S.%f"),
        }
        await self._warehouse.insert_json_rows(LEDGER, list(row), orjson.dumps(row))


class S3Store:
    """S3 (or an S3-compatible store) as configured: listing and fetching files."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._client: Any = None

    def _s3(self) -> Any:
        if self._client is None:
            import boto3

            settings = self._settings
            self._client = boto3.client(
                "s3",
                endpoint_url=settings.s3_endpoint_url or None,
                region_name=settings.s3_region,
                aws_access_key_id=settings.s3_access_key_id or None,
                aws_secret_access_key=settings.s3_secret_access_key or None,
            )
        return self._client

    def _list(self, pattern: S3Pattern) -> list[S3File]:
        from botocore.exceptions import BotoCoreError, ClientError

        found = []
        try:
            pages = self._s3().get_paginator("list_objects_v2")
            for page in pages.paginate(Bucket=pattern.bucket, Prefix=pattern.prefix):
                for item in page.get("Contents", ()):
                    if pattern.matches(item["Key"]):
                        etag = str(item.get("ETag", "")).strip('"')
                        found.append(S3File(pattern.bucket, item["Key"], etag, item["Size"]))
        except (BotoCoreError, ClientError) as exc:
            raise S3Error(f"listing {pattern} failed: {exc}") from None
        return sorted(found, key=lambda f: f.key)

    async def list(self, pattern: S3Pattern) -> list[S3File]:
        """The files matching `pattern`, by key."""
        return await asyncio.to_thread(self._list, pattern)

    def _fetch(self, file: S3File, path: Path) -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            # IfMatch: the version listed (its ETag is what the ledger records), or a failure
            # to try again at the next look. Streamed to the file, never whole in memory.
            answer = self._s3().get_object(Bucket=file.bucket, Key=file.key, IfMatch=file.etag)
            with path.open("wb") as out:
                for chunk in answer["Body"].iter_chunks(_CHUNK_BYTES):
                    out.write(chunk)
        except (BotoCoreError, ClientError) as exc:
            raise S3Error(f"fetching {file.uri} failed: {exc}") from None

    async def fetch(self, file: S3File, path: Path) -> None:
        await asyncio.to_thread(self._fetch, file, path)


def scheduled_imports(text: str) -> list[tuple[str, S3Pattern]]:
    """(datasource, pattern) of each `datasource=s3://…` of PIPIT_S3_IMPORTS."""
    out = []
    for item in text.split():
        datasource, sep, uri = item.partition("=")
        if not sep or not datasource:
            raise S3Error(
                f"PIPIT_S3_IMPORTS: expected datasource=s3://bucket/pattern, got {item!r}"
            )
        out.append((datasource, S3Pattern.parse(uri)))
    return out
