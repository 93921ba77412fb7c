"""chDB's deletes (`EmbeddedWarehouse.delete_rows`): the mutation runs in the engine's
background while the job waits for it; one that fails is reported with the engine's reason
and stopped, so the table's later deletes are not queued behind it for ever."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from conftest import unique_database

from common.warehouse.base import WarehouseError
from common.warehouse.embedded import EmbeddedWarehouse


@pytest.fixture
async def warehouse(chdb_dir: Path) -> AsyncIterator[EmbeddedWarehouse]:
    opened = EmbeddedWarehouse(chdb_dir, unique_database("deletes"))
    await opened.open()
    await opened.execute("CREATE TABLE t (x UInt32) ENGINE = MergeTree ORDER BY x")
    await opened.execute("INSERT INTO t SELECT number FROM numbers(100)")
    yield opened
    await opened.execute(f"DROP DATABASE IF EXISTS `{opened.database}`")
    await opened.close()


async def _left(warehouse: EmbeddedWarehouse) -> list[int]:
    result = await warehouse.query("SELECT x FROM t ORDER BY x", {})
    return [int(row["x"]) for row in result.data]


async def _unfinished(warehouse: EmbeddedWarehouse) -> int:
    result = await warehouse.query(
        "SELECT count() AS n FROM system.mutations "
        "WHERE database = {d:String} AND table = 't' AND is_done = 0",
        {"d": warehouse.database},
    )
    return int(result.data[0]["n"])


async def test_the_delete_returns_once_the_rows_are_gone(warehouse: EmbeddedWarehouse) -> None:
    await warehouse.delete_rows("t", f"`{warehouse.database}`.`t`", "x % 3 = 0")
    assert await _left(warehouse) == [x for x in range(100) if x % 3]
    assert await _unfinished(warehouse) == 0


async def test_a_failed_delete_is_reported_and_stopped(warehouse: EmbeddedWarehouse) -> None:
    target = f"`{warehouse.database}`.`t`"
    # Fails on a row the mutation reaches (the engine retries such a mutation for ever).
    with pytest.raises(WarehouseError, match="throwIf"):
        await warehouse.delete_rows("t", target, "throwIf(x = 5) = 0 AND x < 10")
    assert await _unfinished(warehouse) == 0
    # The next delete of the table is not queued behind it.
    await warehouse.delete_rows("t", target, "x >= 90")
    assert await _left(warehouse) == list(range(90))
