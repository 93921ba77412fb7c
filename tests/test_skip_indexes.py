"""Data-skipping indexes declared in the protos: in the DDL, added to tables created
before them, and used by one user's or one session's lookups without changing answers."""

from __future__ import annotations

import orjson

from common.datasources import registry
from pipit.seed.generator import generate


def test_the_lookup_columns_are_indexed() -> None:
    sources = registry()
    assert [i.split()[0] for i in sources["user_events"].skip_indexes] == ["`idx_user_id`"]
    assert [i.split()[0] for i in sources["clickstream_events"].skip_indexes] == [
        "`idx_user_id`",
        "`idx_session_id`",
    ]
    ddl = sources["clickstream_events"].create_table_sql("pipit")
    assert "INDEX `idx_session_id` session_id TYPE bloom_filter(0.01) GRANULARITY 1" in ddl


async def test_an_older_table_gets_the_indexes_and_lookups_skip_granules(embedded_warehouse):
    ds = registry()["clickstream_events"]
    database = embedded_warehouse.database
    await embedded_warehouse.execute(f"DROP TABLE `{database}`.`{ds.name}`")
    without = ds.create_table_sql(database).split("    INDEX")[0].rstrip(",\n") + "\n)"
    without += ds.create_table_sql(database).split("\n)", 1)[1]
    await embedded_warehouse.execute(
        without.replace("SETTINGS ", "SETTINGS index_granularity = 64, ")
    )
    rows = list(generate(ds.name, 5_000, seed=9))
    await embedded_warehouse.insert_json_rows(
        ds.name, ds.column_names, b"\n".join(orjson.dumps(r) for r in rows)
    )
    for _ in range(2):  # idempotent
        await embedded_warehouse.ensure_schema([ds])
    indexes = await embedded_warehouse.query(
        "SELECT name FROM system.data_skipping_indices WHERE database = {d:String} "
        "AND table = {t:String} ORDER BY name",
        {"d": database, "t": ds.name},
    )
    assert [r["name"] for r in indexes.data] == ["idx_session_id", "idx_user_id"]
    await embedded_warehouse.execute(
        f"ALTER TABLE `{database}`.`{ds.name}` MATERIALIZE INDEX idx_session_id "
        "SETTINGS mutations_sync = 2"
    )
    session = rows[2_500]["session_id"]
    # Projections off: the start has written `by_session_rows` into the older part too,
    # which would answer a session's lookup with or without the index.
    sql = (
        "SELECT event_id FROM clickstream_events WHERE session_id = {s:String} ORDER BY event_id "
        "SETTINGS optimize_use_projections = 0"
    )
    used = await embedded_warehouse.query(sql, {"s": session})
    unused = await embedded_warehouse.query(sql + ", use_skip_indexes = 0", {"s": session})
    assert (
        used.data
        == unused.data
        == [
            {"event_id": r["event_id"]}
            for r in sorted(rows, key=lambda r: r["event_id"])
            if r["session_id"] == session
        ]
    )
    assert used.statistics["rows_read"] < unused.statistics["rows_read"] / 4
