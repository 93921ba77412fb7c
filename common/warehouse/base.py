"""The warehouse interface the services program against."""

from __future__ import annotations

import abc
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from common.datasources import Datasource

# Applied to every query on both engines so that answers are identical: times are
# UTC, and 64-bit counts print as JSON numbers as Tinybird's do.
QUERY_SETTINGS: dict[str, Any] = {
    "session_timezone": "UTC",
    "output_format_json_quote_64bit_integers": 0,
    "output_format_json_quote_denormals": 0,
}


# The JSON formats rows are inserted in: JSONEachRow (an object per line) and
# JSONCompactColumns (an array per column; blocks of it may follow one another).
INSERT_FORMATS = frozenset({"JSONEachRow", "JSONCompactColumns"})


class WarehouseError(RuntimeError):
    """The warehouse refused or failed a statement."""


@dataclass(frozen=True)
class QueryResult:
    """A query's answer in ClickHouse's JSON output format (Tinybird's pipe shape)."""

    meta: list[dict[str, str]]
    data: list[dict[str, Any]]
    rows: int
    statistics: dict[str, float]

    @classmethod
    def from_json(cls, payload: bytes) -> QueryResult:
        doc = orjson.loads(payload)
        return cls(
            meta=doc.get("meta", []),
            data=doc.get("data", []),
            rows=int(doc.get("rows", 0)),
            statistics=doc.get("statistics", {}),
        )


class Warehouse(abc.ABC):
    """Where datasource rows are stored and pipes are answered."""

    def __init__(self, database: str) -> None:
        self.database = database

    @abc.abstractmethod
    async def open(self) -> None:
        """Connects (and creates the database if it is missing)."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Releases connections. Idempotent."""

    @abc.abstractmethod
    async def execute(self, sql: str) -> None:
        """Runs a statement that returns nothing (DDL)."""

    @abc.abstractmethod
    async def insert_json_rows(
        self,
        table: str,
        columns: Sequence[str],
        body: bytes,
        *,
        dedup_token: str = "",
        fmt: str = "JSONEachRow",
    ) -> None:
        """Inserts rows in a JSON format of INSERT_FORMATS (JSONEachRow lines unless
        said otherwise) into `database.table`. With a deduplication token, a second
        insert under the same token is dropped by the warehouse."""

    @abc.abstractmethod
    async def query(self, sql: str, params: Mapping[str, str]) -> QueryResult:
        """Runs a SELECT in the configured database, binding `{name:Type}` placeholders
        server-side from `params`."""

    async def ping(self) -> bool:
        """True when the warehouse answers."""
        try:
            await self.query("SELECT 1 AS ok", {})
        except Exception:  # noqa: BLE001 - any failure means not reachable
            return False
        return True

    async def ensure_schema(self, datasources: Sequence[Datasource]) -> None:
        """Creates every datasource table and its quarantine table, idempotently."""
        for ds in datasources:
            for statement in ds.schema_sql(self.database):
                await self.execute(statement)

    def insert_statement(
        self,
        table: str,
        columns: Sequence[str],
        dedup_token: str = "",
        fmt: str = "JSONEachRow",
    ) -> str:
        cols = ", ".join(f"`{c}`" for c in columns)
        settings = ""
        if dedup_token:
            settings = f" SETTINGS insert_deduplication_token = {_string_literal(dedup_token)}"
        target = f"`{self.database}`.`{table}`"
        return f"INSERT INTO {target} ({cols}){settings} FORMAT {insert_format(fmt)}"


def insert_format(fmt: str) -> str:
    """`fmt` if it is one of INSERT_FORMATS (it is spliced into the statement)."""
    if fmt not in INSERT_FORMATS:
        raise WarehouseError(f"unsupported insert format {fmt!r}")
    return fmt


def _string_literal(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"
