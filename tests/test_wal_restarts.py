"""A property test of ingest's exactly-once promise over restart sequences: two ingest
replicas (each a batcher over its own write-ahead log) append batches, flush, restart
cleanly (idle restarts included), crash at the crash points of services/ingest/faults.py
or at any moment between steps (with a torn record left behind, sometimes), lose their
log directory for a fresh one, or start from a copy of another's log, while the
warehouse fails inserts now and then, before or after storing them.

Each replica runs on an event loop of its own, as a process would: a crash stops that
loop where it stands, and a new loop replays the log, as a restarted process does.

The warehouse is a fake that deduplicates exactly as ClickHouse's MergeTree does under
`insert_deduplication_token` (non_replicated_deduplication_window): per table, an insert
whose token is among the last WINDOW tokens is dropped whole and silently. Checked at the
end: no token ever came with two different bodies, and every acknowledged row is in the
warehouse exactly once (an unacknowledged one at most once)."""

from __future__ import annotations

import asyncio
import itertools
import shutil
import tempfile
from collections import defaultdict, deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from common.warehouse.base import Warehouse, WarehouseError
from services.ingest import batcher as batcher_module
from services.ingest.batcher import Batcher, FlushPolicy
from services.ingest.blocks import JSON_COMPACT_COLUMNS, Block
from services.ingest.faults import POINTS
from services.ingest.wal import WriteAheadLog

WINDOW = 10_000  # non_replicated_deduplication_window, as common/datasources.py sets it
TABLES = ("t", "u")
COLUMNS = ("k",)
REPLICAS = 2


class DedupWarehouse(Warehouse):
    """Test-only: stores rows per table and drops an insert whose token is among the
    table's last WINDOW tokens, as ClickHouse does. Can be told to fail the next insert
    before storing it, or after (the client hears an error, the rows are in)."""

    def __init__(self) -> None:
        super().__init__("db")
        self.rows: dict[str, list[str]] = defaultdict(list)
        self._windows: dict[str, deque[str]] = defaultdict(lambda: deque(maxlen=WINDOW))
        self.bodies: dict[tuple[str, str], set[bytes]] = defaultdict(set)
        self.failures: list[str] = []

    async def open(self) -> None:
        pass

    async def close(self) -> None:
        pass

    async def execute(self, sql: str) -> None:
        pass

    async def query(self, sql: str, params: Mapping[str, str]):
        raise NotImplementedError

    async def insert_json_rows(
        self,
        table: str,
        columns: Sequence[str],
        body: bytes,
        *,
        dedup_token: str = "",
        fmt: str = "JSONEachRow",
    ) -> None:
        failure = self.failures.pop(0) if self.failures else None
        if failure == "before":
            raise WarehouseError("connection reset (injected)")
        assert dedup_token, "every flush carries a token"
        self.bodies[(table, dedup_token)].add(body)
        window = self._windows[table]
        if dedup_token not in window:
            window.append(dedup_token)
            self.rows[table].extend(_keys(body, fmt))
        if failure == "after":
            raise WarehouseError("timeout reading the answer (injected)")


def _keys(body: bytes, fmt: str) -> list[str]:
    keys = []
    for line in body.split(b"\n"):
        value = orjson.loads(line)
        keys += value[0] if fmt == JSON_COMPACT_COLUMNS else [value["k"]]
    return keys


class SimulatedCrash(BaseException):
    """The process dies here (BaseException: no `except Exception` handler runs)."""


@dataclass
class Replica:
    """One ingest process: its own event loop, log directory, log and batcher."""

    directory: Path
    warehouse: DedupWarehouse
    loop: asyncio.AbstractEventLoop | None = None
    batcher: Batcher | None = None
    wal: WriteAheadLog | None = None
    armed: dict[str, int] = field(default_factory=dict)
    dead: bool = False

    def run(self, coroutine):
        assert self.loop is not None
        return self.loop.run_until_complete(coroutine)

    def start(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.dead = False
        self.wal = WriteAheadLog(self.directory, max_bytes=1 << 24, segment_bytes=700)
        # Flushes happen when the test says (and at replay), never on their own.
        self.batcher = Batcher(
            self.warehouse,
            FlushPolicy(
                max_rows=10**9,
                max_bytes=1 << 30,
                max_age=3600,
                retry_initial=0.001,
                retry_max=0.002,
            ),
            self.wal,
        )
        self.run(self.batcher.start())

    def crash_point(self, point: str) -> None:
        if point in self.armed:
            self.armed[point] -= 1
            if self.armed[point] <= 0:
                del self.armed[point]
                # SIGKILL: the loop stops where it stands; nothing more runs in it.
                self.dead = True
                assert self.loop is not None
                self.loop.stop()
                raise SimulatedCrash(point)

    def bury(self, torn: bytes = b"") -> None:
        """After death: lets a write the kernel already had (a worker thread's) finish,
        closes what the process held, and may leave a torn record at the log's end."""
        if self.loop is None:
            return
        assert self.wal is not None
        executor = getattr(self.loop, "_default_executor", None)
        if executor is not None:
            executor.shutdown(wait=True)
        if self.wal._file is not None:  # noqa: SLF001 - the dead process's descriptor
            self.wal._file.close()  # noqa: SLF001
        # A killed process reports nothing, where asyncio would report each of its tasks as
        # the collector finds them ("Task was destroyed but it is pending" for the log's
        # writer and the batcher's ticker, "Task exception was never retrieved" for a flush
        # the crash point stopped), through the loop's exception handler.
        self.loop.set_exception_handler(lambda loop, context: None)
        # Each coroutine still suspended is closed now, while its loop is open, not whenever
        # the collector finds it: the `async with` it stopped in (a flush's lock) would
        # then wake a waiter on a closed loop ("Event loop is closed", ignored but reported).
        for task in asyncio.all_tasks(self.loop):
            task.get_coro().close()
        self.loop.close()
        self.loop = self.batcher = self.wal = None
        if torn:
            last = max(self.directory.glob("*.wal"), key=lambda p: int(p.stem))
            with last.open("ab") as f:
                f.write(torn)

    def revive(self) -> None:
        """A dead process is restarted: it replays its log."""
        while self.dead:
            self.bury()
            self.start()

    def stop(self) -> None:
        """SIGTERM: flush everything, then exit."""
        assert self.batcher is not None and self.loop is not None
        self.run(self.batcher.close())
        self.loop.close()
        self.loop = self.batcher = self.wal = None


APPEND = st.tuples(
    st.just("append"),
    st.integers(0, REPLICAS - 1),
    st.sampled_from(TABLES),
    st.integers(1, 3),
)
FLUSH = st.tuples(st.just("flush"), st.integers(0, REPLICAS - 1))
RESTART = st.tuples(st.just("restart"), st.integers(0, REPLICAS - 1), st.integers(1, 3))
ARM = st.tuples(
    st.just("arm"), st.integers(0, REPLICAS - 1), st.sampled_from(POINTS), st.integers(1, 3)
)
KILL = st.tuples(st.just("kill"), st.integers(0, REPLICAS - 1), st.booleans())
FLAKY = st.tuples(st.just("flaky"), st.sampled_from(["before", "after"]))
FRESH = st.tuples(st.just("fresh"), st.integers(0, REPLICAS - 1))
CLONE = st.tuples(st.just("clone"), st.integers(0, REPLICAS - 1))
STEPS = st.lists(
    st.one_of(APPEND, APPEND, FLUSH, RESTART, ARM, KILL, FLAKY, FRESH, CLONE), max_size=40
)

TORN = b"\x40\x00\x00\x00\x01\x02\x03\x04half a record"


@dataclass
class Run:
    replicas: list[Replica]
    warehouse: DedupWarehouse
    acknowledged: set[str] = field(default_factory=set)
    keys: itertools.count = field(default_factory=itertools.count)

    def step(self, step: tuple) -> None:
        kind, *args = step
        if kind == "flaky":
            self.warehouse.failures.append(args[0])
            return
        replica = self.replicas[args[0]]
        try:
            self._step(replica, kind, args[1:])
        except (SimulatedCrash, RuntimeError):
            # RuntimeError: the loop stopped under run_until_complete (a crash in a
            # background flush). Whatever the process was answering is lost.
            if not replica.dead:
                raise
        replica.revive()

    def _step(self, replica: Replica, kind: str, args: list) -> None:
        if kind == "append":
            table, rows = args
            keys = [f"{table}-{next(self.keys)}" for _ in range(rows)]
            block = Block.from_columns([keys], rows)
            replica.run(replica.batcher.append_batches([(table, COLUMNS, block)]))
            self.acknowledged.update(keys)  # logged: the caller has its answer
        elif kind == "flush":
            replica.run(replica.batcher.flush_all())
        elif kind == "restart":
            for _ in range(args[0]):  # the later ones are idle restarts
                replica.stop()
                replica.start()
        elif kind == "arm":
            point, count = args
            replica.armed[point] = count
        elif kind == "kill":  # between two steps, maybe mid-write
            replica.dead = True
            replica.bury(TORN if args[0] else b"")
        elif kind in ("fresh", "clone"):
            # A new pod with an empty volume, or with a copy of another replica's
            # (flushed) volume: the copy has the same log id and numbering.
            other = self.replicas[self.replicas.index(replica) - 1]
            replica.armed.clear()
            other.armed.clear()
            replica.stop()
            shutil.rmtree(replica.directory)
            if kind == "clone":
                other.stop()
                shutil.copytree(other.directory, replica.directory)
                other.start()
            replica.start()

    def finish(self) -> None:
        self.warehouse.failures.clear()
        for replica in self.replicas:
            replica.armed.clear()
            replica.stop()
            replica.start()  # a last restart: replays whatever a crash left
            replica.run(replica.batcher.flush_all())
            replica.stop()


@pytest.mark.slow
@settings(max_examples=200, deadline=None, suppress_health_check=list(HealthCheck))
@given(steps=STEPS)
def test_tokens_never_repeat_and_acknowledged_rows_land_exactly_once(
    steps: list[tuple], monkeypatch: pytest.MonkeyPatch
) -> None:
    warehouse = DedupWarehouse()
    with tempfile.TemporaryDirectory(prefix="pipit-wal-prop-") as root:
        replicas = [Replica(Path(root) / f"r{i}", warehouse) for i in range(REPLICAS)]

        def crash_point(point: str) -> None:
            # Whichever replica's loop is running reached the point.
            running = asyncio.get_running_loop()
            for replica in replicas:
                if replica.loop is running:
                    replica.crash_point(point)

        monkeypatch.setattr(batcher_module, "crash_point", crash_point)
        run = Run(replicas, warehouse)
        for replica in replicas:
            replica.start()
        for step in steps:
            run.step(step)
        run.finish()

    repeated = {key: bodies for key, bodies in warehouse.bodies.items() if len(bodies) > 1}
    assert not repeated, f"tokens that came with different data: {repeated}"
    present = [key for rows in warehouse.rows.values() for key in rows]
    counts = defaultdict(int)
    for key in present:
        counts[key] += 1
    assert {key for key, n in counts.items() if n > 1} == set(), "rows counted twice"
    assert run.acknowledged - counts.keys() == set(), "acknowledged rows lost"
