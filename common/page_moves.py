"""Page moves (chDB): each session's consecutive page views on two different pages, kept in a
hidden table beside a datasource declared with `page_moves` (options.proto), so page_paths
reads one page's moves — a few thousand rows found by its sorting key — instead of grouping
every session of the range (services/query/sql/page_paths.sql says what a move counts as).

A session's page views are ordered by (timestamp, event_id, page_url), the order page_paths
defines; a move is two neighbours of that order on different pages (a reload is not a move).
Counted for a range when its first view is at or after the start and its second at or
before the end, the moves are exactly the transitions of the sessions' in-range paths: the
in-range views of a session are a run of that order, and collapsing a run's repeats leaves
the neighbours that differ.

Which moves a session has depends on all its views, and a batch may hold a session's views
in any order, or a view older than the newest one kept. So the writer reconciles, on the one
lane every chDB write runs on and in the same call as the batch's insert
(common/warehouse/embedded.py): for the sessions of the batch, it computes their moves from
the datasource's rows as they now stand, subtracts those the table holds (a `sign` column:
a move is counted by the sum of its signs), and inserts the difference. A batch retried
after its answer was lost inserts nothing new and reconciles to no difference; a write that
replaces rows wholesale (a delete, a truncate, a replace) rebuilds the table from the rows
in a staging table, swapped in at once. On a ClickHouse server, where several ingest
replicas write at once, nothing is kept: page_paths groups the sessions there
(`id_numbers.server_form`)."""

from __future__ import annotations

from collections.abc import Sequence

import orjson

# What page_paths counts as a page view (services/query/sql/page_paths.sql).
PAGE_VIEW_TYPES = ("page_view", "pageview")
# The columns a datasource with page moves must have.
SOURCE_COLUMNS = ("session_id", "page_url", "event_type", "timestamp", "event_id")
SESSIONS_PARAM = "sessions"

_COLUMNS = "session_id, from_page, to_page, from_time, to_time, sign"


def table(source: str) -> str:
    """The hidden table of `source`'s moves (a `_pipit_` name: no datasource, and the Query
    API reads none)."""
    return f"_pipit_page_moves_{source}"


def schema_sql(database: str, source: str) -> str:
    """The moves table: sorted by the page a move leaves, a projection by the page it
    reaches (page_paths' two directions), and one by session (the writer's reconcile)."""
    return (
        f"CREATE TABLE IF NOT EXISTS `{database}`.`{table(source)}` ("
        "session_id String, from_page String, to_page String, "
        "from_time DateTime, to_time DateTime, sign Int8, "
        "PROJECTION by_to (SELECT * ORDER BY to_page, to_time), "
        "PROJECTION by_session (SELECT * ORDER BY session_id, from_time)"
        ") ENGINE = MergeTree ORDER BY (from_page, from_time)"
    )


def _moves_of(database: str, source: str, sessions: str) -> str:
    """Each move of the sessions `sessions` selects (all sessions when empty), counted 1."""
    where = f"AND session_id IN ({sessions})" if sessions else ""
    types = ", ".join(f"'{t}'" for t in PAGE_VIEW_TYPES)
    return f"""
        SELECT session_id, move.1 AS from_page, move.2 AS to_page, move.3 AS from_time,
            move.4 AS to_time, toInt64(1) AS count
        FROM
        (
            SELECT
                session_id,
                arraySort((p, t, e) -> (t, e, p), groupArray(page_url), groupArray(timestamp),
                    groupArray(event_id)) AS pages,
                -- The times in the same order (a tie in time and id has one time).
                arraySort((t, e) -> (t, e), groupArray(timestamp), groupArray(event_id)) AS times
            FROM `{database}`.`{source}`
            WHERE event_type IN ({types}) {where}
            GROUP BY session_id
        )
        ARRAY JOIN arrayFilter(m -> m.1 != m.2, arrayZip(arrayPopBack(pages), arrayPopFront(pages),
            arrayPopBack(times), arrayPopFront(times))) AS move"""  # noqa: S608 - names are ours


def reconcile_sql(database: str, source: str) -> str:
    """Brings the moves of the sessions bound to `{sessions:String}` (a JSON array, as
    `sessions_param` makes it) to what the rows of `source` now say: inserts, signed, the
    difference between the two."""
    sessions = f"SELECT arrayJoin(JSONExtract({{{SESSIONS_PARAM}:String}}, 'Array(String)'))"
    moves = f"`{database}`.`{table(source)}`"
    return f"""
        INSERT INTO {moves} ({_COLUMNS})
        SELECT session_id, from_page, to_page, from_time, to_time, toInt8(if(d > 0, 1, -1))
        FROM
        (
            SELECT session_id, from_page, to_page, from_time, to_time, sum(count) AS d
            FROM
            (
                {_moves_of(database, source, sessions)}
                UNION ALL
                SELECT session_id, from_page, to_page, from_time, to_time, -toInt64(sign)
                FROM {moves}
                WHERE session_id IN ({sessions})
            )
            GROUP BY session_id, from_page, to_page, from_time, to_time
            HAVING d != 0
        )
        ARRAY JOIN range(toUInt64(abs(d))) AS copy"""  # noqa: S608 - names are ours


def touched(sessions: Sequence[str], event_types: Sequence[str]) -> list[str]:
    """The sessions of a batch's rows (their `session_id`s and `event_type`s, row by row)
    whose moves it may change: those it brings a page view of."""
    return list(
        dict.fromkeys(s for s, t in zip(sessions, event_types, strict=True) if t in PAGE_VIEW_TYPES)
    )


def sessions_param(sessions: Sequence[str]) -> dict[str, str]:
    """The bound value of `reconcile_sql`'s sessions."""
    return {SESSIONS_PARAM: orjson.dumps(list(sessions)).decode()}


def rebuild_sql(database: str, source: str) -> list[str]:
    """Every move of `source` computed again into a staging table, then swapped in at once
    (a reader sees the old moves or the new ones, never none)."""
    moves = f"`{database}`.`{table(source)}`"
    staging = f"`{database}`.`{table(source)}_staging`"
    return [
        f"DROP TABLE IF EXISTS {staging}",
        f"CREATE TABLE {staging} AS {moves}",
        f"INSERT INTO {staging} ({_COLUMNS}) "  # noqa: S608 - names are ours
        f"SELECT session_id, from_page, to_page, from_time, to_time, toInt8(count) "
        f"FROM ({_moves_of(database, source, '')})",
        f"EXCHANGE TABLES {moves} AND {staging}",
        f"DROP TABLE {staging}",
    ]
