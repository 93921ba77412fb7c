"""chDB reader lanes: reads run side by side on `query_concurrency` sessions, so one
slow pipe query does not hold the others up; DDL and inserts stay on the main lane.

The slow query is one that cannot finish until the test lets it: it reads `url()` from
a local HTTP server that answers only once the other query has been answered. With a
single lane the other query would wait behind it forever (the test's timeout)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import orjson
from aiohttp import web
from conftest import unique_database

from common.warehouse.embedded import EMBEDDED_SETTINGS, EmbeddedWarehouse


async def test_a_blocked_read_does_not_hold_up_the_next(chdb_dir: Path) -> None:
    arrived, release = asyncio.Event(), asyncio.Event()

    async def held(_request: web.Request) -> web.Response:
        arrived.set()
        await release.wait()
        return web.Response(text="held\n")

    app = web.Application()
    app.router.add_get("/held.csv", held)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # noqa: SLF001 - the ephemeral port
    warehouse = EmbeddedWarehouse(chdb_dir, unique_database("lanes"), query_concurrency=2)
    await warehouse.open()
    try:
        slow = asyncio.create_task(
            warehouse.query(
                f"SELECT a FROM url('http://127.0.0.1:{port}/held.csv', 'CSV', 'a String')",  # noqa: S608 - a port number
                {},
            )
        )
        await asyncio.wait_for(arrived.wait(), timeout=60)  # the slow query is running
        quick = await asyncio.wait_for(warehouse.query("SELECT 1 AS one", {}), timeout=60)
        assert quick.data == [{"one": 1}]
        assert not slow.done()  # it really was held while the other one ran
        release.set()
        assert (await asyncio.wait_for(slow, timeout=60)).data == [{"a": "held"}]
    finally:
        release.set()
        await warehouse.close()
        await runner.cleanup()


async def test_readers_are_shared_by_the_process(chdb_dir: Path) -> None:
    first = EmbeddedWarehouse(chdb_dir, unique_database("lanes"), query_concurrency=3)
    second = first.sibling(unique_database("lanes"))
    await first.open()
    await second.open()
    try:
        assert second.query_concurrency == 3
        # Sessions are made once per process, not once per warehouse or database.
        assert first._readers == second._readers  # noqa: SLF001
        assert len(first._readers) == 3  # noqa: SLF001
    finally:
        await first.close()
        await second.close()


async def test_every_lane_starts_with_the_engine_settings(chdb_dir: Path) -> None:
    """The readers (the pipes), the ad-hoc lane (a stranger's SQL, capped on top) and the
    main lane all run chDB's own settings: the index-analysis budget among them."""
    warehouse = EmbeddedWarehouse(chdb_dir, unique_database("lanes"), query_concurrency=2)
    await warehouse.open()
    try:
        names = sorted(EMBEDDED_SETTINGS)
        sql = "SELECT " + ", ".join(f"toString(getSetting('{n}')) AS `{n}`" for n in names)
        wanted = [{n: str(EMBEDDED_SETTINGS[n]) for n in names}]
        assert (await warehouse.query(sql, {})).data == wanted
        assert (await warehouse.adhoc_query(sql, {})).data == wanted
        lanes = [*warehouse._readers, warehouse._engine.main]  # noqa: SLF001 - each session
        assert len(lanes) == 3
        for lane in lanes:
            assert orjson.loads(lane.run(warehouse.database, sql, "JSONEachRow", None)) == wanted[0]
    finally:
        await warehouse.close()
