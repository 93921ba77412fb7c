"""The warehouse interface the services program against."""

from __future__ import annotations

import abc
import re
from collections.abc import Awaitable, Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from common.datasources import QUARANTINE_TTL_DAYS, Datasource

# Applied to every query on both engines so that answers are identical: times are
# UTC, and 64-bit counts print as JSON numbers as Tinybird's do.
QUERY_SETTINGS: dict[str, Any] = {
    "session_timezone": "UTC",
    "output_format_json_quote_64bit_integers": 0,
    "output_format_json_quote_denormals": 0,
}


@dataclass(frozen=True)
class AdhocLimits:
    """Caps on the ad-hoc lane, where the Query API runs a stranger's SQL: a query that
    needs more time, memory or threads than these fails on its own instead of slowing
    the pipes and ingest, which run elsewhere. A result of more than `max_result_rows`
    rows is an error (TOO_MANY_ROWS_OR_BYTES), never an answer cut short without a word;
    the cap counts the rows of the answer only, not those a subquery or an `IN` reads."""

    max_seconds: float = 10.0
    max_memory_bytes: int = 1024 * 1024 * 1024
    max_threads: int = 1
    max_result_rows: int = 10_000

    def settings(self) -> dict[str, Any]:
        return {
            "max_execution_time": self.max_seconds,
            "max_memory_usage": self.max_memory_bytes,
            "max_threads": self.max_threads,
            "max_result_rows": self.max_result_rows,
            "result_overflow_mode": "throw",
        }


# How ClickHouse (and chDB) number an exception in its text: `Code: 60. DB::Exception: …`.
_ERROR_CODE = re.compile(r"\bCode: (\d+)\.")

# The JSON formats rows are inserted in: JSONEachRow (an object per line) and
# JSONCompactColumns (an array per column; blocks of it may follow one another).
INSERT_FORMATS = frozenset({"JSONEachRow", "JSONCompactColumns"})


def insert_settings(quorum: str) -> dict[str, Any]:
    """Settings every insert runs with. With a quorum (`auto` for a majority, or a number
    of replicas), an insert answers only once that many replicas of each shard it writes
    have its rows, so ingest releases its write-ahead log only then; a Distributed table
    then inserts synchronously (distributed_foreground_insert), or it would answer once
    the rows were queued on the node that took them and the quorum would wait for
    nothing. ClickHouse itself disables a quorum below 2."""
    if quorum in ("", "0", "1"):
        return {}
    return {
        "insert_quorum": quorum if quorum == "auto" else int(quorum),
        "distributed_foreground_insert": 1,
    }


def deduplication_settings(token: str) -> dict[str, Any]:
    """Settings of an insert under a deduplication token. A retried flush is dropped by the
    table it reaches, and, with `deduplicate_blocks_in_dependent_materialized_views`, by
    every materialized pipe's target too: the views' blocks are named for the same token,
    so a retry after the source took the rows (but the answer was lost) never counts twice
    downstream either."""
    if not token:
        return {}
    return {
        "insert_deduplication_token": token,
        "deduplicate_blocks_in_dependent_materialized_views": 1,
    }


class Literal:
    """A bound value given as ClickHouse's own literal text (an Array's `['a','b\\'c']`):
    bound as it is, where a scalar's text is escaped first."""

    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text

    def __str__(self) -> str:  # clickhouse-connect binds a non-str object as its str()
        return self.text

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Literal) and other.text == self.text

    def __hash__(self) -> int:
        return hash(self.text)


def quoted_string(text: str) -> str:
    """A string as an item of an array literal: ClickHouse's quoted form, where only the
    backslash and the quote itself need escaping (any other character, newline and NUL
    included, is read as itself)."""
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


class WarehouseError(RuntimeError):
    """The warehouse refused or failed a statement. `code` is the engine's error code
    (ClickHouse's `Code: <n>`), None when the engine never answered (unreachable, timed
    out, not open)."""

    def __init__(self, message: str, *, code: int | None = None) -> None:
        super().__init__(message)
        if code is None and (found := _ERROR_CODE.search(message)) is not None:
            code = int(found[1])
        self.code = code


@dataclass(frozen=True)
class QueryResult:
    """A query's answer in ClickHouse's JSON output format (Tinybird's pipe shape)."""

    meta: list[dict[str, str]]
    data: list[dict[str, Any]]
    rows: int
    statistics: dict[str, float]
    # What the engine says about a query with a LIMIT; None without one.
    rows_before_limit_at_least: int | None = None

    @classmethod
    def from_json(cls, payload: bytes) -> QueryResult:
        doc = orjson.loads(payload)
        return cls(
            meta=doc.get("meta", []),
            data=doc.get("data", []),
            rows=int(doc.get("rows", 0)),
            statistics=doc.get("statistics", {}),
            rows_before_limit_at_least=doc.get("rows_before_limit_at_least"),
        )


@dataclass(frozen=True, slots=True)
class Shape:
    """What a caller makes of a repeatable query's answer (a pipe's encoded response
    message), so that an answer served again is served in its final form: made once per
    kept answer and kept beside it under `key`. `make` may depend on nothing but the answer
    and the call's SQL, parameters and format, which the kept answer's own key holds."""

    key: Hashable
    make: Callable[[bytes], Awaitable[bytes]]


async def shaped(answer: bytes, shape: Shape | None) -> bytes:
    """`answer` as the caller asked for it: made into `shape`, or as it is."""
    return answer if shape is None else await shape.make(answer)


class Warehouse(abc.ABC):
    """Where datasource rows are stored and pipes are answered."""

    # Whether the ids of datasources' `numbered_columns` get dense numbers as they are
    # written (common/id_numbers.py): only where one process writes (chDB).
    numbers_ids = False

    def __init__(
        self,
        database: str,
        adhoc_limits: AdhocLimits | None = None,
        *,
        insert_quorum: str = "0",
    ) -> None:
        self.database = database
        self.adhoc_limits = adhoc_limits or AdhocLimits()
        self.insert_settings = insert_settings(insert_quorum)

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

    async def delete_rows(self, table: str, target: str, condition: str) -> None:
        """Deletes the rows of `table` where `condition` (checked SQL) holds, through
        `target` (the table, or on a cluster every shard's local table); returns when every
        replica has applied it."""
        await self.execute(
            f"ALTER TABLE {target} DELETE WHERE {condition} SETTINGS mutations_sync = 2"
        )

    async def rows_replacing(self, table: str) -> None:  # noqa: B027 - a no-op but on chDB
        """Before a statement that deletes, drops or swaps `table`'s rows wholesale: what
        the engine keeps beside the rows is marked as to be made again, so that a process
        stopped before `rows_replaced` leaves it to the next start (chDB's page moves,
        common/page_moves.py; a ClickHouse server keeps nothing)."""

    async def rows_replaced(self, table: str) -> None:  # noqa: B027 - a no-op but on chDB
        """After a statement that deleted, dropped or swapped `table`'s rows wholesale: what
        the engine keeps beside the rows is made from them again (chDB's page moves,
        common/page_moves.py; a ClickHouse server keeps nothing)."""

    @abc.abstractmethod
    async def query(self, sql: str, params: Mapping[str, str]) -> QueryResult:
        """Runs a SELECT in the configured database, binding `{name:Type}` placeholders
        server-side from `params`."""

    async def query_raw(self, sql: str, params: Mapping[str, str], fmt: str) -> bytes:
        """Runs a SELECT like `query`, answering the engine's own output in the ClickHouse
        format `fmt` (CSV, Parquet, JSON…), byte for byte as the engine writes it."""
        raise WarehouseError(f"{type(self).__name__} cannot answer in {fmt}")

    def builtin_form(self, sql: str) -> str:
        """A built-in pipe's SQL as this engine runs it (services.query.service.engine_sql):
        as written, unless the engine lacks what it reads (a server's form, clickhouse.py)."""
        return sql

    async def query_raw_repeatable(
        self, sql: str, params: Mapping[str, str], fmt: str, shape: Shape | None = None
    ) -> bytes:
        """`query_raw` of a query whose answer depends on the data alone (no clock, no
        randomness, no table functions): the same call with no write between may be
        answered again without running it. Runs it, unless the engine knows every write
        (chDB, see embedded.py); a ClickHouse server is written by other processes too.
        With `shape`, what it makes of the answer instead (kept beside a kept answer)."""
        return await shaped(await self.query_raw(sql, params, fmt), shape)

    def sibling(self, database: str) -> Warehouse:
        """A warehouse like this one in another database (not yet open): the scratch
        database a build validates a project in."""
        raise WarehouseError(f"{type(self).__name__} cannot open another database")

    async def adhoc_query(self, sql: str, params: Mapping[str, str]) -> QueryResult:
        """Runs a SELECT in the ad-hoc lane: a connection of its own, read-only, within
        `adhoc_limits`, so that a slow or failing ad-hoc query never delays or breaks the
        pipes and ingest, which use the other connection(s). Engines without such a lane
        (test doubles) refuse."""
        raise WarehouseError(f"{type(self).__name__} has no ad-hoc lane")

    async def adhoc_raw(self, sql: str, params: Mapping[str, str], fmt: str) -> bytes:
        """`adhoc_query` answering the engine's own output in the format `fmt`."""
        raise WarehouseError(f"{type(self).__name__} has no ad-hoc lane")

    async def adhoc_explain(self, statement: str) -> list[str]:
        """The parser's tree of `statement` (`EXPLAIN AST`, which parses and evaluates
        nothing) from the ad-hoc lane, a line of the dump per item."""
        plan = await self.adhoc_query(f"EXPLAIN AST {statement}", {})
        return [line for row in plan.data for line in str(row.get("explain", "")).split("\n")]

    async def ping(self) -> bool:
        """True when the warehouse answers."""
        try:
            await self.query("SELECT 1 AS ok", {})
        except Exception:  # noqa: BLE001 - any failure means not reachable
            return False
        return True

    async def ensure_schema(
        self, datasources: Sequence[Datasource], *, quarantine_ttl_days: int = QUARANTINE_TTL_DAYS
    ) -> None:
        """Creates every datasource table and its quarantine table, idempotently, and brings
        those that were already there up to date (a table created here needs no upgrade).
        Processes that create one database at once create the same tables, unless they are
        of different releases: then an older release's table is brought up to date at the
        next start. A projection a table lacked is written into its older parts
        (`Datasource.upgrade_sql`)."""
        existing = await self.table_names()
        projections = await self.projection_names()
        views = await self.view_selects()
        for ds in datasources:
            for statement in ds.schema_sql(
                self.database,
                quarantine_ttl_days,
                existing=existing,
                numbered=self.numbers_ids,
                projections=projections,
                views=views,
            ):
                await self.execute(statement)

    async def projection_names(self) -> dict[str, frozenset[str]] | None:
        """Each table's projections in this warehouse's database, or None where the
        engine has no `system.projections` (a server older than 24.x): then a start drops
        every retired projection again, as it did before this was known."""
        try:
            result = await self.query(
                "SELECT table, name FROM system.projections WHERE database = {database:String}",
                {"database": self.database},
            )
        except WarehouseError:
            return None
        names: dict[str, set[str]] = {}
        for row in result.data:
            names.setdefault(str(row["table"]), set()).add(str(row["name"]))
        return {table: frozenset(found) for table, found in names.items()}

    async def view_selects(self) -> dict[str, str] | None:
        """The plain views in this warehouse's database, each with its SELECT; None where
        the engine cannot say (then no stale range view is dropped:
        `Datasource.stale_views_sql`)."""
        try:
            result = await self.query(
                "SELECT name, as_select FROM system.tables "
                "WHERE database = {database:String} AND engine = 'View'",
                {"database": self.database},
            )
        except WarehouseError:
            return None
        return {str(row["name"]): str(row["as_select"]) for row in result.data}

    async def table_names(self) -> frozenset[str]:
        """The names of the tables (and views) in this warehouse's database."""
        result = await self.query(
            "SELECT name FROM system.tables WHERE database = {database:String}",
            {"database": self.database},
        )
        return frozenset(str(row["name"]) for row in result.data)

    def insert_statement(
        self,
        table: str,
        columns: Sequence[str],
        dedup_token: str = "",
        fmt: str = "JSONEachRow",
    ) -> str:
        """`INSERT INTO <table> (<columns>) SETTINGS … FORMAT <fmt>`, with the quorum and the
        token's deduplication."""
        cols = ", ".join(f"`{c}`" for c in columns)
        values: dict[str, Any] = {**self.insert_settings, **deduplication_settings(dedup_token)}
        clause = ""
        if values:
            clause = " SETTINGS " + ", ".join(
                f"{name} = {_setting_literal(value)}" for name, value in values.items()
            )
        target = f"`{self.database}`.`{table}`"
        return f"INSERT INTO {target} ({cols}){clause} FORMAT {insert_format(fmt)}"


def insert_format(fmt: str) -> str:
    """`fmt` if it is one of INSERT_FORMATS (it is spliced into the statement)."""
    if fmt not in INSERT_FORMATS:
        raise WarehouseError(f"unsupported insert format {fmt!r}")
    return fmt


def _string_literal(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _setting_literal(value: Any) -> str:
    return str(value) if isinstance(value, int) else _string_literal(str(value))
