"""The test-only ClickHouse HTTP fixture speaks enough ClickHouse for clickhouse-connect's sync
and async clients, and so for the product's ClickHouseWarehouse.

Every assertion holds against a real server too: set PIPIT_TEST_CLICKHOUSE_URL to run them there.
"""

from __future__ import annotations

import asyncio
import gzip
import urllib.error
import urllib.request
import uuid
import zlib
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from urllib.parse import unquote, urlencode, urlsplit

import clickhouse_connect
import lz4.frame
import orjson
import pytest
from clickhouse_connect.driver.client import Client
from clickhouse_connect.driver.exceptions import DatabaseError

# A sibling module: pytest puts tests/ (no package) on sys.path.
from clickhouse_http_fixture import ClickHouseHttpFixture, zstd

from common.datasources import registry
from common.warehouse.base import WarehouseError
from common.warehouse.clickhouse import ClickHouseWarehouse

pytestmark = pytest.mark.e2e  # the fixture's server is a process of its own

# A timezone no server is configured with, so a leaked setting cannot pass for the default.
ODD_TIMEZONE = "Pacific/Chatham"


def _database() -> str:
    return f"chfx_{uuid.uuid4().hex[:12]}"


def _sync_client(url: str, **kwargs: object) -> Client:
    parts = urlsplit(url)
    return clickhouse_connect.get_client(
        host=parts.hostname,
        port=parts.port,
        username=unquote(parts.username or "default"),
        password=unquote(parts.password or ""),
        **kwargs,
    )


def _http(
    url: str,
    params: dict[str, str],
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, dict[str, str], bytes]:
    """A raw request to the HTTP interface: status, headers, body (errors included)."""
    parts = urlsplit(url)
    request = urllib.request.Request(
        f"http://{parts.hostname}:{parts.port}/?{urlencode(params)}",
        data=body,
        headers={"X-ClickHouse-User": unquote(parts.username or "default"), **(headers or {})},
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310 - local test URL
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


@pytest.fixture
def database(clickhouse_url: str) -> Iterator[str]:
    """A fresh database, dropped afterwards (so runs against a real server leave nothing)."""
    name = _database()
    client = _sync_client(clickhouse_url)
    client.command(f"CREATE DATABASE {name}")
    yield name
    client.command(f"DROP DATABASE IF EXISTS {name}")
    client.close()


def test_ping_and_empty_get_answer_ok(clickhouse_url: str) -> None:
    parts = urlsplit(clickhouse_url)
    with urllib.request.urlopen(f"http://{parts.hostname}:{parts.port}/ping") as response:  # noqa: S310
        assert response.read() == b"Ok.\n"
    assert _http(clickhouse_url, {})[::2] == (200, b"Ok.\n")


@pytest.mark.parametrize("compress", [False, "lz4", "zstd", "gzip"])
def test_sync_client_creates_inserts_and_binds_parameters(
    clickhouse_url: str, database: str, compress: str | bool
) -> None:
    client = _sync_client(clickhouse_url, database=database, compress=compress)
    try:
        client.command(
            "CREATE TABLE people (id UInt32, name String, born DateTime('UTC'))"
            " ENGINE = MergeTree ORDER BY id"
        )
        rows = [
            (1, "ann", datetime(2020, 1, 2, 3, 4, 5)),
            (2, "tab\there é", datetime(2021, 6, 7, 8, 9, 10)),
            (3, "ann", datetime(2022, 11, 12, 13, 14, 15)),
        ]
        summary = client.insert("people", rows, column_names=["id", "name", "born"])
        assert summary.written_rows == 3

        result = client.query(
            "SELECT id, born FROM people WHERE name = {name:String} ORDER BY id",
            parameters={"name": "ann"},
        )
        assert result.result_rows == [(1, rows[0][2]), (3, rows[2][2])]
        tricky = client.query(
            "SELECT id FROM people WHERE name = {name:String}", parameters={"name": rows[1][1]}
        )
        assert tricky.result_rows == [(2,)]
        # Parameters this long travel in a multipart form rather than the URL.
        long = client.query("SELECT length({s:String})", parameters={"s": "é" * 5000})
        assert long.result_rows == [(10_000,)]
        assert client.command("SELECT count() FROM people") == 3
    finally:
        client.close()


def test_sync_client_inserts_many_blocks(clickhouse_url: str, database: str) -> None:
    """Enough rows for several Native blocks, each compressed as its own lz4 frame."""
    client = _sync_client(clickhouse_url, database=database, compress="lz4")
    try:
        client.command("CREATE TABLE big (n UInt64, s String) ENGINE = MergeTree ORDER BY n")
        rows = [(n, f"row-{n:08d}-" + "x" * 40) for n in range(120_000)]
        client.insert("big", rows, column_names=["n", "s"])
        assert client.query("SELECT count(), sum(n) FROM big").result_rows == [
            (120_000, sum(range(120_000)))
        ]
    finally:
        client.close()


def test_sql_errors_raise_database_error_with_the_server_message(clickhouse_url: str) -> None:
    client = _sync_client(clickhouse_url)
    try:
        with pytest.raises(DatabaseError, match="UNKNOWN_TABLE") as caught:
            client.query("SELECT * FROM default.no_such_table_anywhere")
        assert caught.value.code == 60
    finally:
        client.close()

    status, headers, body = _http(clickhouse_url, {"query": "SELEC 1"})
    assert status == 400
    assert headers["X-ClickHouse-Exception-Code"] == "62"
    assert body.startswith(b"Code: 62. DB::Exception: ") and b"(SYNTAX_ERROR)" in body


async def test_clickhouse_warehouse_round_trip(clickhouse_url: str) -> None:
    warehouse = ClickHouseWarehouse(clickhouse_url, _database())
    await warehouse.open()
    try:
        await warehouse.ensure_schema(list(registry().values()))
        columns = registry()["ab_test_events"].column_names
        rows = [
            {
                "timestamp": f"2024-03-0{1 + n % 3} 10:00:0{n % 10}",
                "user_id": f"u{n}",
                "test_id": "x" if n % 4 else "y",
                "variant": "a" if n % 2 else "b",
                "event_type": "view",
                "conversion": n % 2,
                "revenue": n / 10,
                "session_id": f"s{n}",
                "device": "mobile",
                "country": "NZ",
            }
            for n in range(20_000)
        ]
        await warehouse.insert_json_rows(
            "ab_test_events", columns, b"\n".join(orjson.dumps(row) for row in rows)
        )

        result = await warehouse.query(
            "SELECT count() AS c FROM ab_test_events WHERE test_id = {t:String}", {"t": "x"}
        )
        assert result.data == [{"c": 15_000}]  # a JSON number: 64-bit integers are not quoted
        assert result.meta == [{"name": "c", "type": "UInt64"}]
        assert result.rows == 1
        assert {"elapsed", "rows_read", "bytes_read"} <= result.statistics.keys()

        first = await warehouse.query(
            "SELECT toString(min(timestamp)) AS t FROM ab_test_events", {}
        )
        assert first.data == [{"t": "2024-03-01 10:00:00"}]  # stored and read back in UTC

        # Concurrent queries each get their own parameters.
        counts = await asyncio.gather(
            *(
                warehouse.query(
                    "SELECT count() AS c FROM ab_test_events WHERE user_id = {u:String}",
                    {"u": f"u{n}"},
                )
                for n in (1, 2, 99_999)
            )
        )
        assert [r.data for r in counts] == [[{"c": 1}], [{"c": 1}], [{"c": 0}]]

        assert await warehouse.ping()
        with pytest.raises(WarehouseError, match="UNKNOWN_TABLE"):
            await warehouse.query("SELECT * FROM no_such_table", {})
        with pytest.raises(WarehouseError, match="SYNTAX_ERROR"):
            await warehouse.execute("CREATE TABLE broken (")
    finally:
        await warehouse.execute(f"DROP DATABASE IF EXISTS `{warehouse.database}`")
        await warehouse.close()


def test_settings_and_database_do_not_leak_between_requests(
    clickhouse_url: str, database: str
) -> None:
    probe = {"query": "SELECT timezone(), currentDatabase()"}
    _, _, default = _http(clickhouse_url, probe)
    server_timezone = default.split(b"\t")[0].decode()
    assert server_timezone != ODD_TIMEZONE

    status, headers, body = _http(
        clickhouse_url, {**probe, "session_timezone": ODD_TIMEZONE, "database": database}
    )
    assert (status, body) == (200, f"{ODD_TIMEZONE}\t{database}\n".encode())
    assert headers["X-ClickHouse-Timezone"] == ODD_TIMEZONE

    # A SET inside a request is that request's alone as well.
    _http(clickhouse_url, {}, f"SET session_timezone = '{ODD_TIMEZONE}'".encode())

    status, headers, body = _http(clickhouse_url, probe)
    assert (status, body) == (200, default)
    assert body == f"{server_timezone}\tdefault\n".encode()
    assert headers["X-ClickHouse-Timezone"] == server_timezone

    client = _sync_client(clickhouse_url)
    try:
        changed = client.query("SELECT timezone()", settings={"session_timezone": ODD_TIMEZONE})
        assert changed.result_rows == [(ODD_TIMEZONE,)]
        assert client.query("SELECT timezone()").result_rows == [(server_timezone,)]
    finally:
        client.close()


def test_unknown_settings_and_writes_over_get_are_refused(clickhouse_url: str) -> None:
    status, headers, body = _http(clickhouse_url, {"query": "SELECT 1", "no_such_setting": "1"})
    assert (status, headers["X-ClickHouse-Exception-Code"]) == (404, "115")
    assert b"(UNKNOWN_SETTING)" in body

    name = _database()
    status, headers, _ = _http(clickhouse_url, {"query": f"CREATE DATABASE {name}"})
    assert (status, headers["X-ClickHouse-Exception-Code"]) == (500, "164")  # READONLY


def _two_frames(encoding: str, data: bytes) -> bytes:
    """`data` encoded as clickhouse-connect does: one frame (or gzip member) per block."""
    half = len(data) // 2
    if encoding == "deflate":  # a single stream: HTTP deflate has no concatenation
        return zlib.compress(data)
    compress = {"gzip": gzip.compress, "lz4": lz4.frame.compress, "zstd": zstd.compress}[encoding]
    return compress(data[:half]) + compress(data[half:])


@pytest.mark.parametrize("encoding", ["gzip", "deflate", "lz4", "zstd"])
def test_compressed_insert_bodies_are_decoded(
    clickhouse_url: str, database: str, encoding: str
) -> None:
    _http(clickhouse_url, {"database": database}, b"CREATE TABLE t (n UInt32) ENGINE = Memory")
    data = b"".join(b'{"n": %d}\n' % n for n in range(1000))
    status, headers, body = _http(
        clickhouse_url,
        {"database": database, "query": "INSERT INTO t (n) FORMAT JSONEachRow"},
        _two_frames(encoding, data),
        {"Content-Encoding": encoding},
    )
    assert status == 200, body
    status, _, body = _http(
        clickhouse_url, {"database": database}, b"SELECT count(), sum(n) FROM t"
    )
    assert body == f"1000\t{sum(range(1000))}\n".encode()


def test_data_dir_holds_the_tables(tmp_path: Path) -> None:
    """The fixture keeps its data where it is told, and restarts on the same data."""
    with ClickHouseHttpFixture(tmp_path / "data") as fixture:
        _http(fixture.url, {}, b"CREATE TABLE kept (n UInt8) ENGINE = MergeTree ORDER BY n")
        _http(fixture.url, {}, b"INSERT INTO kept VALUES (7)")
    with ClickHouseHttpFixture(tmp_path / "data") as fixture:
        assert _http(fixture.url, {"query": "SELECT n FROM kept"})[2] == b"7\n"
    with pytest.raises(RuntimeError, match="not running"):
        _ = fixture.url
