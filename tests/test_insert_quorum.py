"""PIPIT_INSERT_QUORUM (issue 13, item 0 on a cluster): with a quorum every flush is
inserted with ClickHouse's `insert_quorum` (auto = a majority of the shard's replicas)
and a synchronous Distributed insert, so ingest lets go of its write-ahead log only once
the rows are on that many replicas. Off by default (single node). Both engines take the
settings, and deduplication by token still drops a retried flush under them."""

from __future__ import annotations

import pytest
from conftest import unique_database

from common import config
from common.warehouse.base import Warehouse, insert_settings
from common.warehouse.clickhouse import ClickHouseWarehouse
from common.warehouse.embedded import EmbeddedWarehouse
from common.warehouse.factory import open_warehouse

QUORUM = {"insert_quorum": "auto", "distributed_foreground_insert": 1}


@pytest.mark.parametrize(
    "raw,parsed",
    [("auto", "auto"), ("AUTO", "auto"), ("2", "2"), ("02", "2"), ("0", "0"), ("1", "1")],
)
def test_the_quorum_is_auto_or_a_number_of_replicas(raw: str, parsed: str) -> None:
    assert config.load(environ={"PIPIT_INSERT_QUORUM": raw}).insert_quorum == parsed


@pytest.mark.parametrize("raw", ["most", "-1", "2.5", "", "２"])
def test_anything_else_is_refused_naming_the_setting(raw: str) -> None:
    with pytest.raises(SystemExit, match="PIPIT_INSERT_QUORUM"):
        config.load(environ={"PIPIT_INSERT_QUORUM": raw})


def test_off_by_default_and_below_two() -> None:
    assert config.load(environ={}).insert_quorum == "0"
    assert insert_settings("0") == insert_settings("1") == {}
    assert insert_settings("auto") == QUORUM
    assert insert_settings("3") == {"insert_quorum": 3, "distributed_foreground_insert": 1}


def test_the_configured_warehouse_carries_it(tmp_path) -> None:
    embedded = open_warehouse(config.load(environ={}, data_dir=tmp_path, insert_quorum="auto"))
    remote = open_warehouse(
        config.load(environ={}, clickhouse_url="http://h:8123", insert_quorum="auto")
    )
    assert embedded.insert_settings == remote.insert_settings == QUORUM
    assert open_warehouse(config.load(environ={}, data_dir=tmp_path)).insert_settings == {}


def test_the_insert_statement_names_the_quorum_and_the_token(tmp_path) -> None:
    warehouse = EmbeddedWarehouse(tmp_path, "db", insert_quorum="auto")
    assert warehouse.insert_statement("t", ("a",), "tok'en") == (
        "INSERT INTO `db`.`t` (`a`) SETTINGS insert_quorum = 'auto', "
        "distributed_foreground_insert = 1, insert_deduplication_token = 'tok\\'en', "
        "deduplicate_blocks_in_dependent_materialized_views = 1 FORMAT JSONEachRow"
    )


# The ClickHouse HTTP fixture is a process of its own: e2e (tests/tiers.py).
@pytest.fixture(params=["chdb", pytest.param("clickhouse-http", marks=pytest.mark.e2e)])
async def quorum_warehouse(request, chdb_dir):
    database = unique_database("quorum")
    if request.param == "chdb":
        warehouse: Warehouse = EmbeddedWarehouse(chdb_dir, database, insert_quorum="auto")
    else:
        url = request.getfixturevalue("clickhouse_url")
        warehouse = ClickHouseWarehouse(url, database, insert_quorum="auto")
    await warehouse.open()
    await warehouse.execute(
        f"CREATE TABLE `{database}`.t (a UInt8) ENGINE = MergeTree ORDER BY a "
        "SETTINGS non_replicated_deduplication_window = 100"
    )
    yield warehouse
    await warehouse.close()


async def test_both_engines_take_quorum_inserts_and_still_deduplicate(quorum_warehouse):
    for _ in range(2):  # the second is a retried flush: dropped
        await quorum_warehouse.insert_json_rows("t", ("a",), b'{"a":1}', dedup_token="tok-1")
    await quorum_warehouse.insert_json_rows("t", ("a",), b'{"a":2}', dedup_token="tok-2")
    result = await quorum_warehouse.query("SELECT a FROM t ORDER BY a", {})
    assert [row["a"] for row in result.data] == [1, 2]


async def test_the_http_engine_sends_the_settings_with_each_insert(clickhouse_url) -> None:
    warehouse = ClickHouseWarehouse(clickhouse_url, unique_database("quorum"), insert_quorum="2")
    await warehouse.open()
    sent = []
    client = warehouse._client  # noqa: SLF001 - what is handed to clickhouse-connect
    real = client.raw_insert

    async def spy(*args, **kwargs):
        sent.append(kwargs["settings"])
        return await real(*args, **kwargs)

    client.raw_insert = spy
    try:
        await warehouse.execute(f"CREATE TABLE `{warehouse.database}`.t (a UInt8) ENGINE = Memory")
        await warehouse.insert_json_rows("t", ("a",), b'{"a":1}', dedup_token="tok")
    finally:
        await warehouse.close()
    assert sent == [
        {
            "insert_quorum": 2,
            "distributed_foreground_insert": 1,
            "insert_deduplication_token": "tok",
            "deduplicate_blocks_in_dependent_materialized_views": 1,
        }
    ]
