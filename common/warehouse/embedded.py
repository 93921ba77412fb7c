"""chDB: ClickHouse's engine in-process, the default a newcomer gets.

chDB allows one data path per process, but several sessions on it. A session runs one query
at a time and is not safe for concurrent queries (bound parameters of one query leak into
another), so each session has one worker thread of its own: a *lane*. Ingest and DDL use
the main lane; reads (the pipes) go to the least busy of `query_concurrency` reader lanes,
which run side by side (chDB releases the GIL while a query runs), so a slow pipe does not
queue the others behind it; the Query API's ad-hoc SQL has a lane of its own, read-only
and capped, so a slow or failing ad-hoc query never holds up the others. The event loop
stays free.

Answers to repeatable queries (`query_raw_repeatable`: the built-in pipes) are kept and
served again while the data is as it was, which is exact by construction: every write to
this data path runs on this process's main lane (chDB opens a path in one process only),
and each write moves a generation counter when it starts and when it ends. An answer is
kept under the generation its query started in, and only when no write started or ran
meanwhile, so it is served only until the next write starts. (chDB's engine has no query
cache of its own: clickhouse-local fixes its size at 0.) What a caller makes of a kept
answer (`Shape`: the query service's encoded response message) is kept beside it, so a
call served again is not parsed, built and encoded again either: that was most of its
CPU, a few milliseconds for an answer of a thousand rows.

The same single writer makes dense id numbers safe here (common/id_numbers.py): a batch's
new ids are numbered on the main lane's thread, from the engine's own lookup
(common/warehouse/numbering.py), and stored just before the batch is inserted there."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import threading
import time
import uuid
from collections.abc import Callable, Hashable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import orjson
import structlog
from clickhouse_connect.driver.binding import BS, must_escape

from common import id_numbers, page_moves
from common.config import Settings
from common.datasources import QUARANTINE_TTL_DAYS, Datasource
from common.sized_cache import SizedCache
from common.warehouse import numbering
from common.warehouse.base import (
    QUERY_SETTINGS,
    AdhocLimits,
    Literal,
    QueryResult,
    Shape,
    Warehouse,
    WarehouseError,
    shaped,
)

_T = TypeVar("_T")
log = structlog.get_logger("warehouse")


def _setting_literal(value: Any) -> str:
    if isinstance(value, int | float):
        return str(value)
    return "'" + str(value).replace("\\", "\\\\").replace("'", "\\'") + "'"


def _set_statements(settings: Mapping[str, Any]) -> list[str]:
    return [f"SET {name} = {_setting_literal(value)}" for name, value in settings.items()]


# Settings of chDB's engine (26.x) that a ClickHouse server of the production overlay (25.8)
# does not know, so they are set here and not in QUERY_SETTINGS.
EMBEDDED_SETTINGS: dict[str, Any] = {
    # A budget for the primary key's generic exclusion search, per part. Where a filter
    # names a key column after the first (`test_id` of a table ordered by timestamp, test_id,
    # …) over a range of many granules, the search splits down to every granule and prunes
    # none: 1,727 steps and 5-11 ms at 10 M events, spent each time the engine weighs an
    # aggregate projection against the table it would otherwise read (every range view's
    # tier). Spent largest ranges first, 128 steps still isolate a key's granules in parts of
    # 100 M rows; past it the rest is read whole, the same answer. Measured on the bench's
    # calls (10 M, alternating on one session): 1.10-1.34x at p50 for the pipes that filter
    # on a test or a page, none slower. It caps a stranger's ad-hoc SQL's index analysis too.
    "merge_tree_generic_exclusion_search_max_steps": 128,
}


# The names the engine gives the copy a `CREATE OR REPLACE TABLE` builds before it swaps it
# in (`_tmp_replace_<hash>_<random>`; `.tmp_replace_…` in later releases).
REPLACE_LEFTOVERS = ("_tmp_replace_", ".tmp_replace_")


def session_setup() -> list[str]:
    """The SET statements every chDB session of Pipit starts with (the services' lanes and
    the benchmark's bare session alike)."""
    return _set_statements({**QUERY_SETTINGS, **EMBEDDED_SETTINGS})


class _Lane:
    """One chDB session and the one thread allowed to use it."""

    def __init__(self, path: Path, name: str, setup: Sequence[str]) -> None:
        from chdb import session

        self.session = session.Session(str(path))
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"chdb-{name}")
        self.current_database = ""
        # Queries handed to this lane and not yet answered; read and written on the
        # event loop only, to pick the least busy reader.
        self.in_flight = 0
        for statement in setup:
            self.session.query(statement)

    def run(self, database: str, sql: str, fmt: str, params: Mapping[str, str] | None) -> bytes:
        """Runs on the lane's worker thread only."""
        try:
            if database and database != self.current_database:
                self.session.query(f"USE `{database}`")
                self.current_database = database
            result = self.session.query(sql, fmt, params=dict(params) if params else None)
        except Exception as exc:  # chDB raises its own error type per version
            self._discard_leftovers()
            raise WarehouseError(str(exc)) from exc
        return result.bytes() if result is not None else b""

    def _discard_leftovers(self) -> None:
        # chDB keeps what a failed query had already written (half a JSON document, say) and
        # hands it out ahead of the next query's own answer on this session. One throwaway
        # query takes it, so the next real answer is whole.
        with contextlib.suppress(Exception):
            self.session.query("SELECT 1", "CSV")


class _Engine:
    """The process-wide chDB data path and its lanes."""

    _instance: _Engine | None = None
    _lock = threading.Lock()

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lanes: dict[tuple[str, ...], _Lane] = {}
        self._lanes_lock = threading.Lock()
        self.main = self.lane("main", ())
        self.readers: list[_Lane] = []
        self._readers_lock = threading.Lock()
        self.answers = _Answers()
        # Databases whose id lookup this process has filled (it starts empty each start).
        self.numbers_loaded: set[str] = set()
        # Each (database, numbered column)'s highest number, as the writer last handed one
        # out or read it; forgotten after any statement (SQL may number ids, or drop them),
        # read again when missing.
        self.highest_numbers: dict[tuple[str, str], int] = {}
        # Each table's columns (name: type, default kind and expression) by (database,
        # table), for numbering a batch's ids. Engine-wide, not per warehouse: another
        # warehouse over the same database may change a table (an upgrade adding numbered
        # columns), and a writer still holding the old columns would insert without numbers.
        self.columns: dict[tuple[str, str], dict[str, tuple[str, str, str]]] = {}
        # Counts the forgettings, so a read of columns that raced a statement is not kept.
        self.columns_epoch = 0
        # Per (database, table) with page moves: when its writes' pending sessions are
        # reconciled (none before the first reconcile of this process, so the first write
        # after a start settles what an earlier process left). Main lane only.
        self.moves_schedules: dict[tuple[str, str], page_moves.SettleSchedule] = {}
        # The deletes this process runs, by the suffix of the table keeping their sessions:
        # any other such table a start finds is one a stopped process left. Event loop only.
        self.deletes_under_way: set[str] = set()

    def forget_columns(self) -> None:
        """After any statement that may have changed a table (or numbered ids)."""
        self.columns_epoch += 1
        self.columns.clear()
        self.highest_numbers.clear()

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

    def lane(self, name: str, settings: Sequence[str]) -> _Lane:
        """The lane named `name` whose session runs `settings` (SET statements) after the
        common ones; made on first use. Lanes with other settings are other sessions."""
        key = (name, *settings)
        with self._lanes_lock:
            if key not in self._lanes:
                setup = [*session_setup(), *settings]
                self._lanes[key] = _Lane(self.path, name, setup)
            return self._lanes[key]

    def ensure_readers(self, count: int) -> list[_Lane]:
        """At least `count` reader lanes (sessions made once, kept for the process)."""
        with self._readers_lock:
            while len(self.readers) < count:
                self.readers.append(self.lane(f"read-{len(self.readers)}", ()))
            return list(self.readers)


class _Kept:
    """A kept answer and what callers made of it (`Shape`), by their shape's key."""

    __slots__ = ("answer", "shaped")

    def __init__(self, answer: bytes) -> None:
        self.answer = answer
        self.shaped: dict[Hashable, bytes] = {}


class _Answers:
    """Answers of repeatable queries, kept until the next write to the data path; the
    least recently used go first when they (and their shapes) outgrow their bytes. Used on
    event loops only."""

    def __init__(self) -> None:
        # Moved when a write starts and when it ends: a value seen with no write in flight
        # names one state of the data.
        self.generation = 0
        self.writes_in_flight = 0
        self._kept: SizedCache[tuple[Any, ...], _Kept] = SizedCache()

    def write_started(self) -> None:
        self.generation += 1
        self.writes_in_flight += 1
        self._kept.clear()  # none of them is sure to be the data's any more

    def write_ended(self) -> None:
        self.writes_in_flight -= 1
        self.generation += 1

    def state(self) -> int | None:
        """The data's generation now, or None while a write is in flight."""
        return None if self.writes_in_flight else self.generation

    def get(self, key: tuple[Any, ...]) -> _Kept | None:
        return self._kept.get(key)

    def keep(self, key: tuple[Any, ...], started: int, answer: bytes, limit: int) -> _Kept | None:
        """Keeps `answer` if the data is still in generation `started`, when its query
        started (no write began since, so the answer is that state's)."""
        if self.state() != started:
            return None
        kept = _Kept(answer)
        return kept if self._kept.put(key, kept, len(answer), limit) else None

    def keep_shaped(
        self, key: tuple[Any, ...], kept: _Kept, shape: Hashable, value: bytes, limit: int
    ) -> None:
        """Keeps a shape of a kept answer beside it, while the answer is still kept (a
        write since has dropped it, and the shape is that answer's, not the data's)."""
        if self._kept.peek(key) is not kept:
            return
        kept.shaped[shape] = value
        self._kept.grow(key, len(value), limit)


def adhoc_lane_settings(limits: AdhocLimits) -> list[str]:
    """The ad-hoc session's SET statements: the caps, then `readonly = 1` last, after
    which nothing on that session can write, create, or change a setting (a query's own
    SETTINGS clause included)."""
    return [*_set_statements(limits.settings()), "SET readonly = 1"]


class EmbeddedWarehouse(Warehouse):
    """chDB in a data directory."""

    numbers_ids = True

    def __init__(
        self,
        data_dir: Path,
        database: str,
        adhoc_limits: AdhocLimits | None = None,
        *,
        insert_quorum: str = "0",
        query_concurrency: int = 0,
        answer_cache_bytes: int = Settings.answer_cache_bytes,
    ) -> None:
        super().__init__(database, adhoc_limits, insert_quorum=insert_quorum)
        self.data_dir = data_dir
        self.query_concurrency = query_concurrency or os.cpu_count() or 1
        self.answer_cache_bytes = answer_cache_bytes
        self._engine: _Engine | None = None
        self._readers: list[_Lane] = []
        # Finishing the deletes a stopped process left (`_finish_deletes`), while this
        # warehouse serves.
        self._finishing: asyncio.Task[None] | None = None

    def sibling(self, database: str) -> EmbeddedWarehouse:
        return EmbeddedWarehouse(
            self.data_dir,
            database,
            self.adhoc_limits,
            query_concurrency=self.query_concurrency,
            answer_cache_bytes=self.answer_cache_bytes,
        )

    async def _run(
        self,
        sql: str,
        fmt: str = "CSV",
        params: Mapping[str, str] | None = None,
        database: str = "",
        lane: _Lane | None = None,
    ) -> bytes:
        if self._engine is None:
            raise WarehouseError("warehouse is not open")
        lane = lane or self._engine.main
        return await self._on_lane(lane, lane.run, database, sql, fmt, params)

    async def _on_lane(self, lane: _Lane, call: Callable[..., _T], *args: Any) -> _T:
        """`call(*args)` on `lane`'s thread."""
        assert self._engine is not None
        # Whatever runs on the main lane may write; reads run on the others.
        answers = self._engine.answers if lane is self._engine.main else None
        loop = asyncio.get_running_loop()
        lane.in_flight += 1
        if answers is not None:
            answers.write_started()
        try:
            return await loop.run_in_executor(lane.executor, call, *args)
        finally:
            lane.in_flight -= 1
            if answers is not None:
                answers.write_ended()

    async def open(self) -> None:
        loop = asyncio.get_running_loop()
        self._engine = await loop.run_in_executor(None, _Engine.get, self.data_dir / "chdb")
        self._readers = (
            await loop.run_in_executor(None, self._engine.ensure_readers, self.query_concurrency)
        )[: self.query_concurrency]
        await self._run(f"CREATE DATABASE IF NOT EXISTS `{self.database}`")
        await self._load_numbers()

    async def _load_numbers(self) -> None:
        """Fills the id lookup, which starts empty in each process, from the numbers kept,
        before anything is inserted or read (common/id_numbers.py); once per process. A
        database without them gets them empty from ensure_schema, which is as full."""
        engine = self._engine
        if engine is None or self.database in engine.numbers_loaded:
            return
        exists = await self._run(
            f"EXISTS TABLE `{self.database}`.`{id_numbers.NUMBERS}`", "TabSeparated"
        )
        if exists.strip() == b"1":
            await self._run(id_numbers.refill_sql(self.database))
        engine.numbers_loaded.add(self.database)

    async def close(self) -> None:
        # The session lives as long as the process: chDB cannot reopen another path,
        # and other warehouses in this process (tests) may still use it. A delete left
        # unfinished is finished by the next start (its kept sessions stay until then).
        if self._finishing is not None:
            self._finishing.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._finishing
            self._finishing = None
        self._engine = None

    async def ensure_schema(
        self, datasources: Sequence[Datasource], *, quarantine_ttl_days: int = QUARANTINE_TTL_DAYS
    ) -> None:
        # The copy a `CREATE OR REPLACE TABLE` builds beside the table it replaces (the
        # page moves' rebuild, the range views' empty tables) stays for ever where the
        # process stopped inside the statement. None is being built now: every DDL
        # statement runs whole on the main lane, and this drop runs there after any other
        # caller's.
        for name in sorted(await self.table_names()):
            if name.startswith(REPLACE_LEFTOVERS):
                await self.execute(f"DROP TABLE IF EXISTS `{self.database}`.`{name}` SYNC")
        # A table made before numbering gets its number columns from the upgrade, and its
        # older parts would compute them through the lookup at every read until they merge
        # (a big part may never): the engine writes them into those parts in the background
        # (a mutation; reads are exact meanwhile). Only when the columns are new, so a start
        # does not rewrite them again.
        unnumbered = await self._unnumbered(datasources)
        await super().ensure_schema(datasources, quarantine_ttl_days=quarantine_ttl_days)
        for table, column in unnumbered:
            await self.execute(
                f"ALTER TABLE `{self.database}`.`{table}` MATERIALIZE COLUMN `{column}` "
                "SETTINGS mutations_sync = 0"  # chDB's default waits for it: a start would too
            )
        await self._start_finishing_deletes([ds for ds in datasources if ds.page_moves])

    async def _unnumbered(self, datasources: Sequence[Datasource]) -> list[tuple[str, str]]:
        """(table, hidden number column) of each existing table that lacks the column."""
        wanted = {
            (ds.name, id_numbers.column_name(column))
            for ds in datasources
            for column in ds.numbered_columns
        }
        if not wanted:
            return []
        found = await self.query(
            "SELECT table, name FROM system.columns WHERE database = {database:String}",
            {"database": self.database},
        )
        columns = {(str(row["table"]), str(row["name"])) for row in found.data}
        tables = {table for table, _ in columns}
        return sorted(
            (table, column)
            for table, column in wanted
            if table in tables and (table, column) not in columns
        )

    async def execute(self, sql: str) -> None:
        # In the database, as a ClickHouse server's client runs it: a materialized view's
        # SQL names its tables unqualified, and the engine qualifies them when it is created.
        if self._engine is None:
            raise WarehouseError("warehouse is not open")
        main = self._engine.main
        await self._on_lane(main, self._execute_on_main, main, sql)

    def _execute_on_main(self, main: _Lane, sql: str) -> None:
        assert self._engine is not None
        try:
            main.run(self.database, sql, "CSV", None)
        finally:
            # On the main lane's thread, after the statement: a columns read queued before
            # it has run already, and the epoch tells it its answer may be stale.
            self._engine.forget_columns()

    async def insert_json_rows(
        self,
        table: str,
        columns: Sequence[str],
        body: bytes,
        *,
        dedup_token: str = "",
        fmt: str = "JSONEachRow",
    ) -> None:
        known = await self._table_columns(table, columns)
        numbered = [
            column
            for name, (_, kind, default) in known.items()
            if kind == "MATERIALIZED" and (column := id_numbers.numbered(name, default))
        ]
        moves = await self._has_moves(table)
        if not numbered and not moves:
            text = body.decode("utf-8")
            await self._run(self.insert_statement(table, columns, dedup_token, fmt) + "\n" + text)
            return
        assert self._engine is not None
        main = self._engine.main
        await self._on_lane(
            main, self._write_batch, main, table, columns, numbered, body, dedup_token, fmt, moves
        )

    def _write_batch(
        self,
        main: _Lane,
        table: str,
        columns: Sequence[str],
        numbered: Sequence[str],
        body: bytes,
        dedup_token: str,
        fmt: str,
        moves: bool,
    ) -> None:
        """The batch numbered and inserted, then, when it is their time, the pending page
        moves reconciled (common/page_moves.py): one call on the main lane's thread, so no
        other write comes between and the kept answers are forgotten once for both."""
        self._insert_numbered(main, table, columns, numbered, body, dedup_token, fmt)
        if not moves:
            return
        assert self._engine is not None
        schedule = self._engine.moves_schedules.get((self.database, table))
        if schedule is None or schedule.written(time.monotonic(), len(body)):
            self._settle_on_main(main, table)

    def _settle_on_main(self, main: _Lane, table: str) -> None:
        """The pending sessions' moves reconciled and the pending table emptied, on the main
        lane's thread."""
        # A failure fails the call: after a batch's insert, the batch is retried, its rows
        # deduplicated, and the sessions still pending (the table is emptied last).
        started = time.monotonic()
        for statement in page_moves.settle_sql(self.database, table):
            main.run(self.database, statement, "CSV", None)
        self._mark_settled(table, time.monotonic() - started)

    def _mark_settled(self, table: str, cost: float | None) -> None:
        """No session of `table` waits any more; a reconcile took `cost` seconds (None:
        the moves were made again from the rows)."""
        assert self._engine is not None
        schedules = self._engine.moves_schedules
        schedules.setdefault((self.database, table), page_moves.SettleSchedule()).settled(cost)

    async def settle_page_moves(self, table: str) -> None:
        """Brings `table`'s page moves up to its rows, when some sessions wait (a read of
        the moves needs them settled)."""
        if not await self._has_moves(table):
            return
        pending = page_moves.pending_sql(self.database, table)
        if not await self._run(pending, "CSV", None, "", self._least_busy_reader()):
            return
        assert self._engine is not None
        main = self._engine.main
        await self._on_lane(main, self._settle_on_main, main, table)

    def _insert_numbered(
        self,
        main: _Lane,
        table: str,
        columns: Sequence[str],
        numbered: Sequence[str],
        body: bytes,
        dedup_token: str,
        fmt: str,
    ) -> None:
        """Numbers the batch's new ids and inserts it (common/warehouse/numbering.py), on the
        main lane's thread: no other write, and no other numbering, runs meanwhile."""
        assert self._engine is not None
        highest = self._engine.highest_numbers
        new: dict[str, dict[str, int]] = {}
        before: dict[str, int] = {}
        batch = {
            column: ids
            for column, ids in (
                numbering.batch_ids(body, fmt, columns, numbered) if numbered else {}
            ).items()
            if ids
        }
        if batch:
            sql, params = numbering.unseen_query(self.database, batch)
            answer = orjson.loads(main.run(self.database, sql, "JSONCompact", _escaped(params)))
            for (column, ids), unseen in zip(batch.items(), answer["data"][0], strict=True):
                key = (self.database, column)
                if key not in highest:
                    top = main.run(self.database, numbering.highest_sql(*key), "TSV", None)
                    highest[key] = int(top)
                before[column] = highest[key]
                new[column] = numbering.new_numbers(ids, unseen, highest[key])
        store = numbering.store_sql(self.database, new)
        # The hidden columns are computed from the lookup, which holds every id now.
        statement = self.insert_statement(table, columns, dedup_token, fmt)
        try:
            if store:
                main.run(self.database, store, "CSV", None)
                for column, ids in new.items():
                    highest[self.database, column] += len(ids)
            main.run(self.database, statement + "\n" + body.decode(), "CSV", None)
        except WarehouseError:
            # New numbers may be stored all the same and not in the lookup: a retry must
            # find them there, not number those ids again (and reads the highest again).
            for column, ids in new.items():
                highest.pop((self.database, column), None)
                if ids:
                    with contextlib.suppress(WarehouseError):
                        mend = id_numbers.mend_sql(self.database, column, before[column])
                        main.run(self.database, mend, "CSV", None)
            raise

    async def _has_moves(self, table: str) -> bool:
        """Whether `table` has a page moves table: one with columns, as last read."""
        return bool(await self._table_columns(page_moves.table(table), ()))

    async def delete_rows(self, table: str, target: str, condition: str) -> None:
        # The mutation rewrites every part holding a deleted row, projections included (at
        # 10 M events a minute for nine rows): it runs in the engine's background, not on
        # the main lane, so the batches that arrive meanwhile are written meanwhile.
        moves = await self._has_moves(table)
        assert self._engine is not None
        main = self._engine.main
        suffix = uuid.uuid4().hex[:12]
        under_way = self._engine.deletes_under_way
        under_way.add(suffix)
        try:
            mutation = await self._on_lane(
                main, self._start_delete_on_main, main, table, target, condition, moves, suffix
            )
            try:
                await self._mutation_done(table, mutation)
            except WarehouseError:
                # A failed mutation is retried by the engine for ever, and every later one
                # of the table waits behind it: it is stopped (the parts it did are not
                # undone).
                await self._stop_failed(table, mutation)
                raise
            finally:
                # Whatever rows are gone, their sessions' moves follow.
                await self._on_lane(main, self._deleted_on_main, main, table, moves, suffix)
        finally:
            under_way.discard(suffix)

    def _start_delete_on_main(
        self,
        main: _Lane,
        table: str,
        target: str,
        condition: str,
        moves: bool,
        suffix: str,
    ) -> str:
        """Keeps the sessions whose moves the delete changes, starts the mutation, and
        answers its id (the table's newest: no other statement runs on this lane between)."""
        if moves:
            main.run(
                self.database,
                page_moves.deleting_sql(self.database, table, suffix, condition),
                "CSV",
                None,
            )
        self._execute_on_main(
            main, f"ALTER TABLE {target} DELETE WHERE {condition} SETTINGS mutations_sync = 0"
        )
        newest = main.run(
            self.database,
            "SELECT mutation_id FROM system.mutations "
            "WHERE database = {database:String} AND table = {table:String} "
            "ORDER BY toUInt64OrZero(extract(mutation_id, '[0-9]+')) DESC LIMIT 1",
            "TabSeparated",
            _escaped({"database": self.database, "table": table}),
        )
        return newest.decode().strip()

    async def _mutation_done(self, table: str, mutation: str) -> None:
        """Returns once `mutation` of `table` is done (every one before it too: a table's
        mutations run in order); raises its failure, as mutations_sync does."""
        pause = 0.02
        while True:
            state = await self.query(
                "SELECT is_done, latest_fail_reason FROM system.mutations "
                "WHERE database = {database:String} AND table = {table:String} "
                "AND ({mutation:String} = '' OR mutation_id = {mutation:String}) "
                "ORDER BY is_done ASC LIMIT 1",
                {"database": self.database, "table": table, "mutation": mutation},
            )
            if not state.data or int(state.data[0]["is_done"]):
                return
            reason = str(state.data[0]["latest_fail_reason"])
            if reason:
                raise WarehouseError(f"the delete failed: {reason}")
            await asyncio.sleep(pause)
            pause = min(pause * 2, 0.5)

    async def _stop_failed(self, table: str, mutation: str) -> None:
        """Stops `mutation` of `table` (every failed one of it, when ''): the parts it did
        are not undone."""
        database, name, which = (f"'{escaped_text(v)}'" for v in (self.database, table, mutation))
        await self.execute(
            f"KILL MUTATION WHERE database = {database} AND table = {name} "
            f"AND if({which} = '', latest_fail_reason != '', mutation_id = {which}) SYNC"
        )

    def _deleted_on_main(self, main: _Lane, table: str, moves: bool, suffix: str) -> None:
        """After the mutation: its sessions' moves settled. A main-lane call in any case:
        the answers kept while the rows were going are forgotten."""
        if moves:
            for statement in page_moves.deleted_sql(self.database, table, suffix):
                self._execute_on_main(main, statement)
            self._settle_on_main(main, table)

    async def _start_finishing_deletes(self, datasources: Sequence[Datasource]) -> None:
        """Finishes the deletes a stopped process left under way in the background: their
        mutations may run for minutes (a minute at 10 M rows), and a start that waited for
        them would not be ready meanwhile — nor, past a probe's patience, at all. Until
        then the moves of their sessions are those from before the delete, as while any
        delete runs."""
        if self._engine is None:
            return
        names = await self.table_names()
        # Not left: this process finishes them (its own, and those another warehouse of it
        # over the same database is finishing already).
        ours = self._engine.deletes_under_way
        left: dict[str, list[str]] = {}
        for ds in datasources:
            pattern = re.compile(
                re.escape(page_moves.DELETING_PREFIX + ds.name) + "_([0-9a-f]{12})"
            )
            suffixes = [
                m.group(1)
                for name in sorted(names)
                if (m := pattern.fullmatch(name)) and m.group(1) not in ours
            ]
            if suffixes:
                left[ds.name] = suffixes
        if not left or (self._finishing is not None and not self._finishing.done()):
            return
        log.info("finishing the deletes a stopped process left", tables=sorted(left))
        ours.update(suffix for suffixes in left.values() for suffix in suffixes)
        self._finishing = asyncio.create_task(self._finish_deletes(left), name="finish-deletes")

    async def deletes_finished(self) -> None:
        """Returns once the deletes a stopped process left (found by the last
        `ensure_schema`) are finished."""
        if self._finishing is not None:
            await asyncio.shield(self._finishing)

    async def _finish_deletes(self, left: Mapping[str, Sequence[str]]) -> None:
        """The deletes a stopped process left under way (their kept sessions' suffixes,
        by table): once the table's mutations are done, their sessions' moves settled."""
        try:
            for table, suffixes in left.items():
                await self._finish_table_deletes(table, suffixes)
        except Exception as exc:  # a task of its own: its failure is logged; the next start retries
            log.error("finishing a stopped process's delete failed", error=str(exc)[:1000])
        else:
            log.info("the deletes a stopped process left are finished", tables=sorted(left))
        finally:
            if self._engine is not None:
                self._engine.deletes_under_way.difference_update(
                    suffix for suffixes in left.values() for suffix in suffixes
                )

    async def _finish_table_deletes(self, table: str, suffixes: Sequence[str]) -> None:
        try:
            await self._mutation_done(table, "")
        except WarehouseError:  # a failed one would be waited for for ever
            await self._stop_failed(table, "")
            await self._mutation_done(table, "")
        assert self._engine is not None
        main = self._engine.main
        for suffix in suffixes:
            await self._on_lane(main, self._deleted_on_main, main, table, True, suffix)

    async def rows_replacing(self, table: str) -> None:
        if await self._has_moves(table):
            await self.execute(page_moves.stale_sql(self.database, table))

    async def rows_replaced(self, table: str) -> None:
        if await self._has_moves(table):
            assert self._engine is not None
            main = self._engine.main
            # One call: no batch's moves reconciled into the table being replaced.
            await self._on_lane(main, self._rebuild_moves_on_main, main, table)

    def _rebuild_moves_on_main(self, main: _Lane, table: str) -> None:
        for statement in page_moves.rebuild_sql(self.database, table):
            self._execute_on_main(main, statement)
        self._mark_settled(table, None)

    async def _table_columns(
        self, table: str, columns: Sequence[str]
    ) -> dict[str, tuple[str, str, str]]:
        """The table's columns (name: type, default kind, default expression), as last
        read; read again when an insert names a column not among them."""
        engine = self._engine
        if engine is None:
            raise WarehouseError("warehouse is not open")
        key = (self.database, table)
        known = engine.columns.get(key)
        if known is None or not set(columns) <= known.keys():
            epoch = engine.columns_epoch
            found = await self._run(
                "SELECT name, type, default_kind, default_expression FROM system.columns "
                "WHERE database = {database:String} AND table = {table:String} "
                "ORDER BY position",
                "JSONCompact",
                _escaped({"database": self.database, "table": table}),
            )
            rows = orjson.loads(found)["data"] if found else []
            known = {n: (t, k, d) for n, t, k, d in rows}
            if engine.columns_epoch == epoch:
                engine.columns[key] = known
        return known

    async def query(self, sql: str, params: Mapping[str, str]) -> QueryResult:
        return QueryResult.from_json(await self.query_raw(sql, params, "JSON"))

    async def query_raw(self, sql: str, params: Mapping[str, str], fmt: str) -> bytes:
        # A read of page moves answers from settled ones (common/page_moves.py).
        for source in page_moves.sources_read(sql):
            await self.settle_page_moves(source)
        return await self._run(sql, fmt, _escaped(params), self.database, self._least_busy_reader())

    def _least_busy_reader(self) -> _Lane | None:
        """The reader lane with the fewest queries in flight (none: the main lane)."""
        return min(self._readers, key=lambda lane: lane.in_flight, default=None)

    async def query_raw_repeatable(
        self, sql: str, params: Mapping[str, str], fmt: str, shape: Shape | None = None
    ) -> bytes:
        if self._engine is None or not self.answer_cache_bytes:
            return await super().query_raw_repeatable(sql, params, fmt, shape)
        answers = self._engine.answers
        started = answers.state()
        if started is None:  # a write is in flight: its data may or may not be read
            return await super().query_raw_repeatable(sql, params, fmt, shape)
        # The bound values as the engine reads them: two spellings of one value are one.
        key = (self.database, sql, fmt, started, *sorted(_escaped(params).items()))
        kept = answers.get(key)
        if kept is None:
            answer = await self.query_raw(sql, params, fmt)
            kept = answers.keep(key, started, answer, self.answer_cache_bytes)
            if kept is None:  # too large to keep
                return await shaped(answer, shape)
        if shape is None:
            return kept.answer
        value = kept.shaped.get(shape.key)
        if value is None:
            value = await shape.make(kept.answer)
            answers.keep_shaped(key, kept, shape.key, value, self.answer_cache_bytes)
        return value

    async def adhoc_query(self, sql: str, params: Mapping[str, str]) -> QueryResult:
        return QueryResult.from_json(await self.adhoc_raw(sql, params, "JSON"))

    async def adhoc_raw(self, sql: str, params: Mapping[str, str], fmt: str) -> bytes:
        if self._engine is None:
            raise WarehouseError("warehouse is not open")
        loop = asyncio.get_running_loop()
        lane = await loop.run_in_executor(
            None, self._engine.lane, "adhoc", adhoc_lane_settings(self.adhoc_limits)
        )
        return await self._run(sql, fmt, _escaped(params), self.database, lane)


# clickhouse-connect's escape_str, as one C-level pass: its per-character generator took 20
# ms for the 100 KB of a 10,000-id batch's lookup (common/warehouse/numbering.py).
_ESCAPES = str.maketrans({c: BS + c for c in must_escape})


def escaped_text(value: str) -> str:
    """`value` in ClickHouse's escaped text format, as clickhouse-connect's escape_str."""
    return value.translate(_ESCAPES)


def _escaped(params: Mapping[str, str]) -> dict[str, str]:
    # ClickHouse reads bound values in its escaped text format, so a backslash or a quote
    # must be escaped to mean itself. clickhouse-connect does this on the HTTP path; the
    # same escapes here keep both engines reading identical values.
    # A Literal (an Array's text) is ClickHouse's literal already: bound as it is.
    return {
        name: str(value) if isinstance(value, Literal) else escaped_text(value)
        for name, value in params.items()
    }
