"""chDB: ClickHouse's engine in-process, the default a newcomer gets.

chDB allows one data path per process and its session is not safe for concurrent
queries (bound parameters of one query leak into another), so every call goes through
one worker thread. That keeps the event loop free and the session consistent."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from clickhouse_connect.driver.binding import escape_str

from common.warehouse.base import QUERY_SETTINGS, QueryResult, Warehouse, WarehouseError


def _setting_literal(value: Any) -> str:
    if isinstance(value, int | float):
        return str(value)
    return "'" + str(value).replace("\\", "\\\\").replace("'", "\\'") + "'"


class _Engine:
    """The process-wide chDB session and the one thread allowed to use it."""

    _instance: _Engine | None = None
    _lock = threading.Lock()

    def __init__(self, path: Path) -> None:
        from chdb import session

        self.path = path
        self.session = session.Session(str(path))
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="chdb")
        self.current_database = ""
        for name, value in QUERY_SETTINGS.items():
            self.session.query(f"SET {name} = {_setting_literal(value)}")

    @classmethod
    def get(cls, path: Path) -> _Engine:
        with cls._lock:
            if cls._instance is None:
                path.mkdir(parents=True, exist_ok=True)
                cls._instance = cls(path.resolve())
            elif cls._instance.path != path.resolve():
                raise WarehouseError(
                    f"chDB is already open at {cls._instance.path}; one data directory per process"
                )
            return cls._instance

    def run(self, database: str, sql: str, fmt: str, params: Mapping[str, str] | None) -> bytes:
        """Runs on the worker thread only."""
        try:
            if database and database != self.current_database:
                self.session.query(f"USE `{database}`")
                self.current_database = database
            result = self.session.query(sql, fmt, params=dict(params) if params else None)
        except Exception as exc:  # chDB raises its own error type per version
            raise WarehouseError(str(exc)) from exc
        return result.bytes() if result is not None else b""


class EmbeddedWarehouse(Warehouse):
    """chDB in a data directory."""

    def __init__(self, data_dir: Path, database: str, *, insert_quorum: str = "0") -> None:
        super().__init__(database, insert_quorum=insert_quorum)
        self.data_dir = data_dir
        self._engine: _Engine | None = None

    async def _run(
        self,
        sql: str,
        fmt: str = "CSV",
        params: Mapping[str, str] | None = None,
        database: str = "",
    ) -> bytes:
        if self._engine is None:
            raise WarehouseError("warehouse is not open")
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(
            self._engine.executor, self._engine.run, database, sql, fmt, params
        )

    async def open(self) -> None:
        loop = asyncio.get_running_loop()
        self._engine = await loop.run_in_executor(None, _Engine.get, self.data_dir / "chdb")
        await self._run(f"CREATE DATABASE IF NOT EXISTS `{self.database}`")

    async def close(self) -> None:
        # The session lives as long as the process: chDB cannot reopen another path,
        # and other warehouses in this process (tests) may still use it.
        self._engine = None

    async def execute(self, sql: str) -> None:
        await self._run(sql)

    async def insert_json_rows(
        self,
        table: str,
        columns: Sequence[str],
        body: bytes,
        *,
        dedup_token: str = "",
        fmt: str = "JSONEachRow",
    ) -> None:
        statement = self.insert_statement(table, columns, dedup_token, fmt)
        await self._run(statement + "\n" + body.decode("utf-8"))

    async def query(self, sql: str, params: Mapping[str, str]) -> QueryResult:
        # ClickHouse reads bound values in its escaped text format, so a backslash or a
        # quote must be escaped to mean itself. clickhouse-connect does this on the HTTP
        # path; the same function here keeps both engines reading identical values.
        escaped = {name: escape_str(value) for name, value in params.items()}
        payload = await self._run(sql, "JSON", escaped, database=self.database)
        return QueryResult.from_json(payload)
