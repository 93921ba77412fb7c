"""ClickHouse over its HTTP interface, through clickhouse-connect's async client."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit

import clickhouse_connect
from clickhouse_connect.driver.exceptions import ClickHouseError

from common import id_numbers
from common.config import Settings
from common.warehouse.base import (
    QUERY_SETTINGS,
    AdhocLimits,
    QueryResult,
    Warehouse,
    WarehouseError,
    deduplication_settings,
    insert_format,
)


@dataclass(frozen=True)
class Credentials:
    """Who signs in, when not (only) the URL says: the user and password of the
    service's own ClickHouse user, and the CA its https:// certificate is checked against."""

    user: str = ""
    password: str = ""
    ca_file: Path | None = None


def _client_args(url: str, credentials: Credentials = Credentials()) -> dict:  # noqa: B008
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise WarehouseError(
            f"ClickHouse URL must be http(s)://[user:password@]host[:port], got {url!r}"
        )
    url_user = unquote(parts.username) if parts.username else "default"
    args = {
        "host": parts.hostname,
        "port": parts.port or (8443 if parts.scheme == "https" else 8123),
        "username": credentials.user or url_user,
        "password": credentials.password or (unquote(parts.password) if parts.password else ""),
        "secure": parts.scheme == "https",
    }
    if credentials.ca_file is not None:
        if parts.scheme != "https":
            raise WarehouseError("a ClickHouse CA file needs an https:// ClickHouse URL")
        args["ca_cert"] = str(credentials.ca_file)
    return args


class ClickHouseWarehouse(Warehouse):
    """A ClickHouse server (or cluster endpoint) at an HTTP URL."""

    def __init__(
        self,
        url: str,
        database: str,
        adhoc_limits: AdhocLimits | None = None,
        *,
        insert_quorum: str = "0",
        query_concurrency: int = 0,
        credentials: Credentials = Credentials(),  # noqa: B008 - frozen
        connect_timeout: float = Settings.clickhouse_connect_timeout,
    ) -> None:
        super().__init__(database, adhoc_limits, insert_quorum=insert_quorum)
        self.query_concurrency = query_concurrency
        self._url = url
        self._insert_quorum = insert_quorum
        self._credentials = credentials
        self._connect_timeout = connect_timeout
        # A server that does not answer the connection fails the call within the connect
        # timeout (pipes answer UNAVAILABLE), rather than after the client's default 10 s.
        self._args = {**_client_args(url, credentials), "connect_timeout": connect_timeout}
        self._client = None
        self._adhoc_client = None

    async def open(self) -> None:
        try:
            # The database may not exist yet, so the first client does not select it.
            bootstrap = await clickhouse_connect.get_async_client(**self._args)
            try:
                await bootstrap.command(f"CREATE DATABASE IF NOT EXISTS `{self.database}`")
                if not self.query_concurrency:
                    # The server runs as many queries side by side as it has cores to
                    # give them; more connections would only queue on its side.
                    cores = await bootstrap.command("SELECT getSetting('max_threads')")
                    self.query_concurrency = max(1, int(str(cores).strip("'auto() ")))
            finally:
                await bootstrap.close()
            self._client = await clickhouse_connect.get_async_client(
                **self._args,
                database=self.database,
                settings=dict(QUERY_SETTINGS),
                connector_limit=self.query_concurrency,
                connector_limit_per_host=self.query_concurrency,
            )
            # The ad-hoc lane: a pool of its own, so ad-hoc queries never take the pipes'
            # connections, and every request read-only within the caps. `readonly = 2`,
            # because over HTTP `readonly = 1` would refuse the caps sent beside it; a
            # query's own SETTINGS clause never gets this far (services/query/sql_policy.py).
            self._adhoc_client = await clickhouse_connect.get_async_client(
                **self._args,
                database=self.database,
                settings=self._adhoc_settings(),
            )
        except ClickHouseError as exc:
            raise WarehouseError(str(exc)) from exc

    def sibling(self, database: str) -> ClickHouseWarehouse:
        return ClickHouseWarehouse(
            self._url,
            database,
            self.adhoc_limits,
            insert_quorum=self._insert_quorum,
            query_concurrency=self.query_concurrency,
            credentials=self._credentials,
            connect_timeout=self._connect_timeout,
        )

    def _adhoc_settings(self) -> dict:
        # `wait_end_of_query`: the server holds the answer until the query is done, so a
        # query that fails part way (past the row cap, say) is an error status, not a 200
        # whose body ends in the exception's text.
        return {
            **QUERY_SETTINGS,
            **self.adhoc_limits.settings(),
            "readonly": 2,
            "wait_end_of_query": 1,
        }

    async def close(self) -> None:
        for client in (self._client, self._adhoc_client):
            if client is not None:
                await client.close()
        self._client = self._adhoc_client = None

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
        settings = {**self.insert_settings, **deduplication_settings(dedup_token)}
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
        return QueryResult.from_json(await self.query_raw(sql, params, "JSON"))

    async def query_raw(self, sql: str, params: Mapping[str, str], fmt: str) -> bytes:
        try:
            return await self._require_client().raw_query(
                sql, parameters=dict(params), fmt=fmt, settings=dict(QUERY_SETTINGS)
            )
        except ClickHouseError as exc:
            raise WarehouseError(str(exc)) from exc

    def builtin_form(self, sql: str) -> str:
        # The built-in pipes' distinct counts merge bitmaps of id numbers, which a server
        # has none of (common/id_numbers.py): its range views hold the ids' uniqExact
        # sets, merged by the same SQL in the server's form.
        return id_numbers.server_form(sql)

    async def adhoc_query(self, sql: str, params: Mapping[str, str]) -> QueryResult:
        return QueryResult.from_json(await self.adhoc_raw(sql, params, "JSON"))

    async def adhoc_raw(self, sql: str, params: Mapping[str, str], fmt: str) -> bytes:
        if self._adhoc_client is None:
            raise WarehouseError("warehouse is not open")
        try:
            return await self._adhoc_client.raw_query(
                sql, parameters=dict(params), fmt=fmt, settings=self._adhoc_settings()
            )
        except ClickHouseError as exc:
            raise WarehouseError(str(exc)) from exc

    async def adhoc_explain(self, statement: str) -> list[str]:
        # As a subquery: clickhouse-connect appends `FORMAT JSON` to what it sends, which
        # must go to the outer query, not to the statement being explained.
        explain = f"SELECT explain FROM (EXPLAIN AST {statement})"  # noqa: S608 - parsed only
        plan = await self.adhoc_query(explain, {})
        return [line for row in plan.data for line in str(row.get("explain", "")).split("\n")]
