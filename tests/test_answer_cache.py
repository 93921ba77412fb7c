"""Built-in pipes' answers kept on chDB: an answer is served again only while the data is as
it was when it was computed. Each test reads, writes, and reads again; the second read must
be the data's. That a repeated read is served without running is seen from the engine's
own count of queries (system.events `SelectQuery`)."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from pathlib import Path

import orjson
import pytest
from conftest import unique_database

from common.warehouse.base import Shape
from common.warehouse.embedded import EmbeddedWarehouse
from services.query.service import builtin_sql

COUNT = "SELECT count() AS n, sum(x) AS total FROM t WHERE x >= {low:UInt32}"


@pytest.fixture
async def warehouse(chdb_dir: Path) -> AsyncIterator[EmbeddedWarehouse]:
    opened = EmbeddedWarehouse(chdb_dir, unique_database("answers"))
    await opened.open()
    await opened.execute("CREATE TABLE t (x UInt32) ENGINE = MergeTree ORDER BY x")
    await opened.execute("INSERT INTO t SELECT number FROM numbers(100)")
    yield opened
    await opened.close()


async def selects(warehouse: EmbeddedWarehouse) -> int:
    # Run by the ad-hoc lane, which keeps nothing, so it counts itself once per call.
    result = await warehouse.adhoc_query(
        "SELECT sum(value) AS n FROM system.events WHERE event = 'SelectQuery'", {}
    )
    return int(result.data[0]["n"])


async def count(warehouse: EmbeddedWarehouse, low: int) -> tuple[int, int]:
    answer = await warehouse.query_raw_repeatable(COUNT, {"low": str(low)}, "JSONEachRow")
    row = orjson.loads(answer)
    return row["n"], row["total"]


async def test_a_repeated_read_is_not_run_again(warehouse: EmbeddedWarehouse) -> None:
    assert await count(warehouse, 0) == (100, sum(range(100)))
    before = await selects(warehouse)
    assert await count(warehouse, 0) == (100, sum(range(100)))
    assert await selects(warehouse) == before + 1  # only the counting query itself ran


async def test_bound_values_are_part_of_the_key(warehouse: EmbeddedWarehouse) -> None:
    assert await count(warehouse, 0) == (100, sum(range(100)))
    assert await count(warehouse, 90) == (10, sum(range(90, 100)))
    assert await count(warehouse, 0) == (100, sum(range(100)))


async def test_an_insert_ends_the_kept_answers(warehouse: EmbeddedWarehouse) -> None:
    assert await count(warehouse, 0) == (100, sum(range(100)))
    await warehouse.insert_json_rows("t", ["x"], b'{"x": 1000}\n{"x": 1001}')
    assert await count(warehouse, 0) == (102, sum(range(100)) + 2001)


async def test_a_delete_ends_the_kept_answers(warehouse: EmbeddedWarehouse) -> None:
    assert await count(warehouse, 0) == (100, sum(range(100)))
    await warehouse.execute("ALTER TABLE t DELETE WHERE x < 50 SETTINGS mutations_sync = 2")
    assert await count(warehouse, 0) == (50, sum(range(50, 100)))


async def test_the_writers_delete_ends_the_kept_answers(warehouse: EmbeddedWarehouse) -> None:
    # Its mutation runs off the write lane (common/warehouse/embedded.py): what is kept
    # while the rows go is forgotten when the delete returns.
    assert await count(warehouse, 0) == (100, sum(range(100)))
    await warehouse.delete_rows("t", f"`{warehouse.database}`.`t`", "x < 50")
    assert await count(warehouse, 0) == (50, sum(range(50, 100)))


async def test_a_write_during_the_read_keeps_nothing(warehouse: EmbeddedWarehouse) -> None:
    # The read starts before the insert and may or may not see its rows; either way its
    # answer is not kept, so the read after the insert sees them.
    read = warehouse.query_raw_repeatable(COUNT, {"low": "0"}, "JSONEachRow")
    insert = warehouse.insert_json_rows("t", ["x"], b'{"x": 5000}')
    first, _ = await asyncio.gather(read, insert)
    assert orjson.loads(first)["n"] in (100, 101)
    assert await count(warehouse, 0) == (101, sum(range(100)) + 5000)


class Counting:
    """A shape that says how many times it was made: the answer's row count, as text."""

    def __init__(self) -> None:
        self.made = 0

    def shape(self) -> Shape:
        return Shape(self, self.make)

    async def make(self, answer: bytes) -> bytes:
        self.made += 1
        return str(orjson.loads(answer)["n"]).encode()


async def shaped(warehouse: EmbeddedWarehouse, counting: Counting) -> int:
    answer = await warehouse.query_raw_repeatable(
        COUNT, {"low": "0"}, "JSONEachRow", counting.shape()
    )
    return int(answer)


async def test_a_shape_is_made_once_per_kept_answer(warehouse: EmbeddedWarehouse) -> None:
    counting = Counting()
    assert await shaped(warehouse, counting) == 100
    assert await shaped(warehouse, counting) == 100
    assert counting.made == 1
    # The plain answer is still there, and another shape is made from it.
    assert await count(warehouse, 0) == (100, sum(range(100)))
    other = Counting()
    assert await shaped(warehouse, other) == 100
    assert (counting.made, other.made) == (1, 1)


async def test_a_write_ends_the_kept_shapes(warehouse: EmbeddedWarehouse) -> None:
    counting = Counting()
    assert await shaped(warehouse, counting) == 100
    await warehouse.insert_json_rows("t", ["x"], b'{"x": 1000}')
    assert await shaped(warehouse, counting) == 101
    assert counting.made == 2


async def test_a_write_while_shaping_keeps_no_shape(warehouse: EmbeddedWarehouse) -> None:
    written = Counting()

    async def make_while_writing(answer: bytes) -> bytes:
        # The answer was kept before the write; what is made of it is that answer's
        # (100 rows), and is not kept for the data after the write.
        await warehouse.insert_json_rows("t", ["x"], b'{"x": 1000}')
        return await written.make(answer)

    await count(warehouse, 0)  # kept
    answer = await warehouse.query_raw_repeatable(
        COUNT, {"low": "0"}, "JSONEachRow", Shape(written, make_while_writing)
    )
    assert int(answer) == 100
    assert await shaped(warehouse, written) == 101
    assert written.made == 2


async def test_a_shape_is_made_each_time_when_nothing_is_kept(chdb_dir: Path) -> None:
    warehouse = EmbeddedWarehouse(chdb_dir, unique_database("answers"), answer_cache_bytes=0)
    await warehouse.open()
    await warehouse.execute("CREATE TABLE t (x UInt32) ENGINE = MergeTree ORDER BY x")
    await warehouse.execute("INSERT INTO t SELECT number FROM numbers(100)")
    counting = Counting()
    try:
        assert await shaped(warehouse, counting) == 100
        assert await shaped(warehouse, counting) == 100
        assert counting.made == 2
    finally:
        await warehouse.close()


async def test_each_database_has_its_own_answers(warehouse: EmbeddedWarehouse) -> None:
    other = warehouse.sibling(unique_database("answers"))
    await other.open()
    await other.execute("CREATE TABLE t (x UInt32) ENGINE = MergeTree ORDER BY x")
    await other.execute("INSERT INTO t VALUES (7)")
    assert await count(warehouse, 0) == (100, sum(range(100)))
    assert await count(other, 0) == (1, 7)
    assert await count(warehouse, 0) == (100, sum(range(100)))


async def test_nothing_is_kept_when_turned_off(chdb_dir: Path) -> None:
    warehouse = EmbeddedWarehouse(chdb_dir, unique_database("answers"), answer_cache_bytes=0)
    await warehouse.open()
    await warehouse.execute("CREATE TABLE t (x UInt32) ENGINE = MergeTree ORDER BY x")
    await warehouse.execute("INSERT INTO t SELECT number FROM numbers(10)")
    try:
        assert await count(warehouse, 0) == (10, 45)
        before = await selects(warehouse)
        assert await count(warehouse, 0) == (10, 45)
        assert await selects(warehouse) == before + 2
    finally:
        await warehouse.close()


async def test_the_builtin_pipes_depend_on_the_data_alone(
    embedded_warehouse: EmbeddedWarehouse,
) -> None:
    # Every name called in the built-in SQL (a function, a table function, a view) is
    # either a function the engine calls deterministic or one of the range views.
    # Comments, `{name:Type}` placeholders and string literals (`'Array(UInt32)'`) hold
    # no calls.
    texts = [re.sub(r"--[^\n]*|\{[^}]*\}|'[^']*'", "", sql) for sql in builtin_sql()]
    called = {
        name for text in texts for name in re.findall(r"\b([A-Za-z_][A-Za-z0-9_]*)\s*\(", text)
    }
    views = {
        row["name"]
        for row in (
            await embedded_warehouse.adhoc_query(
                "SELECT name FROM system.tables WHERE database = currentDatabase() "
                "AND engine = 'View'",
                {},
            )
        ).data
    }
    # An aggregate's answer is the rows' (the engine marks none of them deterministic).
    known = {
        row["name"]: row["deterministic"] or row["is_aggregate"]
        for row in (
            await embedded_warehouse.adhoc_query(
                "SELECT name, deterministic, is_aggregate FROM system.functions", {}
            )
        ).data
    }
    # SQL keywords followed by a parenthesis are no calls.
    keywords = {
        *("IN", "AS", "FROM", "VALUES", "USING", "OVER", "AND", "OR", "NOT", "WITH"),
        *("JOIN", "ON", "WHERE", "HAVING", "SELECT", "WHEN", "THEN", "ELSE"),
    }
    calls = {combined(name, known) for name in called if name.upper() not in keywords}
    unknown = {name for name in calls if name not in known and name not in views}
    assert not unknown, f"not functions, not range views: {sorted(unknown)}"
    assert not {name for name in calls if name in known and not known[name]}
    assert views & calls  # the check saw the views, so it would have seen a table function
    assert not known["now"] and not known["rand"]  # and the engine does tell the clock


def combined(name: str, known: dict[str, int]) -> str:
    """The aggregate function under its combinators (`uniqExactMerge` → `uniqExact`)."""
    while name not in known:
        suffix = next((s for s in _COMBINATORS if name.endswith(s) and name != s), None)
        if suffix is None:
            return name
        name = name.removesuffix(suffix)
    return name


_COMBINATORS = ("If", "Merge", "State", "ForEach", "Array", "Distinct", "OrNull", "OrDefault")
