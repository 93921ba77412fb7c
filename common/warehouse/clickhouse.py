"""ClickHouse over its HTTP interface, through clickhouse-connect's async client."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from urllib.parse import unquote, urlsplit

import clickhouse_connect
from clickhouse_connect.driver.exceptions import ClickHouseError

from common.warehouse.base import (
    QUERY_SETTINGS,
    QueryResult,
    Warehouse,
    WarehouseError,
    insert_format,
)


def _client_args(url: str) -> dict:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise WarehouseError(
            f"ClickHouse URL must be http(s)://[user:password@]host[:port], got {url!r}"
        )
    return {
        "host": parts.hostname,
        "port": parts.port or (8443 if parts.scheme == "https" else 8123),
        "username": unquote(parts.username) if parts.username else "default",
        "password": unquote(parts.password) if parts.password else "",
        "secure": parts.scheme == "https",
    }


class ClickHouseWarehouse(Warehouse):
    """A ClickHouse server (or cluster endpoint) at an HTTP URL."""

    def __init__(self, url: str, database: str, *, insert_quorum: str = "0") -> None:
        super().__init__(database, insert_quorum=insert_quorum)
        self._args = _client_args(url)
        self._client = None

    async def open(self) -> None:
        try:
            # The database may not exist yet, so the first client does not select it.
            bootstrap = await clickhouse_connect.get_async_client(**self._args)
            try:
                await bootstrap.command(f"CREATE DATABASE IF NOT EXISTS `{self.database}`")
            finally:
                await bootstrap.close()
            self._client = await clickhouse_connect.get_async_client(
                **self._args, database=self.database, settings=dict(QUERY_SETTINGS)
            )
        except ClickHouseError as exc:
            raise WarehouseError(str(exc)) from exc

    async def close(self) -> None:
        if self._client is not None:
            await self._client.close()
            self._client = None

    def _require_client(self):
        if self._client is None:
            raise WarehouseError("warehouse is not open")
        return self._client

    async def execute(self, sql: str) -> None:
        try:
            await self._require_client().command(sql)
        except ClickHouseError as exc:
            raise WarehouseError(str(exc)) from exc

    async def insert_json_rows(
        self,
        table: str,
        columns: Sequence[str],
        body: bytes,
        *,
        dedup_token: str = "",
        fmt: str = "JSONEachRow",
    ) -> None:
        settings = dict(self.insert_settings)
        if dedup_token:
            settings["insert_deduplication_token"] = dedup_token
        try:
            await self._require_client().raw_insert(
                f"`{self.database}`.`{table}`",
                list(columns),
                insert_block=body,
                settings=settings or None,
                fmt=insert_format(fmt),
            )
        except ClickHouseError as exc:
            raise WarehouseError(str(exc)) from exc

    async def query(self, sql: str, params: Mapping[str, str]) -> QueryResult:
        try:
            payload = await self._require_client().raw_query(
                sql, parameters=dict(params), fmt="JSON", settings=dict(QUERY_SETTINGS)
            )
        except ClickHouseError as exc:
            raise WarehouseError(str(exc)) from exc
        return QueryResult.from_json(payload)
