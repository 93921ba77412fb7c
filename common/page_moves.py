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
in any order, or a view older than the newest one kept. So the writer reconciles: for some
sessions, it computes their moves from the datasource's rows as they now stand, subtracts
those the table holds (a `sign` column: a move is counted by the sum of its signs), and
inserts the difference. It reads those sessions' rows, and their moves, within the span of
all their views (a hidden table of each session's first and last view, which each reconcile
extends with the views it read: `spans_table`), along the datasource's time order and
each page's times: found by id instead, a second's few thousand random sessions touch
nearly every granule of a lookup sorted by session, so that every reconcile read the whole
table (0.35-0.6 s at 10 M rows, against 0.12-0.26 within the spans; measured 2026-12-02
with 2,000-row batches five times a second of new sessions, ids like the table's). Which
sessions: those a write brought a page view of since the last reconcile, which a
materialized view records in a pending table, with the span of those views, as the rows are
inserted (by any path: the ingest's batches, an import, SQL). Reconciling ten 10,000-row batches'
sessions at once costs a third to a half of reconciling them batch by batch (the engine's
planning and its read of the parts are paid once; measured 2026-12-01), so the writer does
it for all pending sessions together, in the same lane call as a batch's insert once a
second — or ten times the last reconcile's cost where that is longer, which bounds their
share of the writes at any size of table (`SettleSchedule`) — or once many bytes are
pending, and always before a query reads the moves:
page_paths answers from settled moves only. The reconcile and the pending table's truncation
run in one call on the lane every chDB write runs on, so no write comes between; a reconcile
repeated (a crash before the truncation) finds no difference. A batch retried after its
answer was lost is deduplicated before the view sees it. A delete keeps the sessions of the
rows it deletes in a table of its own first (a settle meanwhile would empty the pending
table while the rows are still there), and makes them pending once the rows are gone; a
start finishes what a stopped process left of one. The table sums a move's rows as its parts
merge, and drops a move whose signs sum to 0 (a SummingMergeTree keyed by the whole move),
so it holds about one row per move that stands, however often later views undid earlier
moves: a long-running site's out-of-order views would otherwise leave a +1 and a -1 row for
ever.
A write that replaces rows wholesale (a truncate, a replace, SQL the writer cannot see)
makes the table again from the rows, replacing it at once. On a ClickHouse
server, where several ingest replicas write at once, nothing is kept: page_paths groups
the sessions there (`id_numbers.server_form`)."""

from __future__ import annotations

import re
from dataclasses import dataclass

# What page_paths counts as a page view (services/query/sql/page_paths.sql).
PAGE_VIEW_TYPES = ("page_view", "pageview")
_PAGE_VIEWS = ", ".join(f"'{t}'" for t in PAGE_VIEW_TYPES)  # as SQL literals
# The columns a datasource with page moves must have.
SOURCE_COLUMNS = ("session_id", "page_url", "event_type", "timestamp", "event_id")
# The tables of deletes under way (`deleting_table`), found again after a restart.
DELETING_PREFIX = "_pipit_deleting_moves_"
# A query reading a moves table names it (page_paths.sql): the datasource is the rest.
_PREFIX = "_pipit_page_move_counts_"
_READ = re.compile(rf"\b{_PREFIX}(\w+)")
# The moves table of releases before 2026-12-02: a plain MergeTree, which kept every +1 and
# -1 row. Dropped, and the moves computed again into the table above (`retired_sql`).
_RETIRED_PREFIX = "_pipit_page_moves_"

_COLUMNS = "session_id, from_page, to_page, from_time, to_time, sign"

# When a writer reconciles the sessions its batches left pending (`SettleSchedule`): once
# the oldest of those writes is SETTLE_SECONDS old, or SETTLE_TIMES the last reconcile's
# cost if that is longer, or once SETTLE_BYTES were inserted since.
SETTLE_SECONDS = 1.0
SETTLE_TIMES = 10.0
SETTLE_BYTES = 64 << 20


@dataclass
class SettleSchedule:
    """When a writer reconciles a datasource's pending sessions. A reconcile of many
    batches' sessions together costs a fraction of one per batch (the engine's planning
    and its read of the sessions' rows are paid once: that read finds random session ids
    across the whole table, so its cost grows with the table — 0.1 to 0.4 s at 10 M rows
    — where the batches' own do not). So the writer waits at least a second from the
    first write it has not reconciled, and ten times what the last reconcile took if that
    is longer: reconciles then take at most a tenth of the write lane's time however big
    the table grows, where a reconcile every second would take all of it past a few
    tens of millions of rows. Nothing reads the moves unsettled (a read settles them
    first), so the wait costs no answer its exactness; the bytes bound what a read or a
    reconcile may find waiting."""

    pending_since: float | None = None
    """When the oldest write not yet reconciled was made (monotonic seconds); None: none."""
    pending_bytes: int = 0
    last_cost: float = 0.0
    """How long the last reconcile took, in seconds."""

    def written(self, now: float, size: int) -> bool:
        """Records a write of `size` bytes at `now`; whether its reconcile is due."""
        if self.pending_since is None:
            self.pending_since = now
        self.pending_bytes += size
        wait = max(SETTLE_SECONDS, SETTLE_TIMES * self.last_cost)
        return now - self.pending_since >= wait or self.pending_bytes >= SETTLE_BYTES

    def settled(self, cost: float | None) -> None:
        """Records a reconcile of every pending session that took `cost` seconds (None:
        the moves made again from the rows, which says nothing of a reconcile's cost)."""
        self.pending_since = None
        self.pending_bytes = 0
        if cost is not None:
            self.last_cost = cost


def table(source: str) -> str:
    """The hidden table of `source`'s moves (a `_pipit_` name: no datasource, and the Query
    API reads none)."""
    return f"{_PREFIX}{source}"


def retired_table(source: str) -> str:
    """The moves table an older release kept for `source` (a plain MergeTree)."""
    return f"{_RETIRED_PREFIX}{source}"


def pending_table(source: str) -> str:
    """The hidden table of the sessions whose moves wait for a reconcile."""
    return f"_pipit_pending_moves_{source}"


def stale_table(source: str) -> str:
    """The hidden table whose presence says `source`'s rows are being replaced wholesale
    and its moves are to be made again (`stale_sql`): made before the rows change, dropped
    by `rebuild_sql` once the moves are the rows' again, so a process stopped in between
    leaves it to the next start."""
    return f"_pipit_stale_moves_{source}"


def stale_sql(database: str, source: str) -> str:
    """Marks `source`'s moves as to be made again (`stale_table`)."""
    return (
        f"CREATE TABLE IF NOT EXISTS `{database}`.`{stale_table(source)}` (marked DateTime) "
        "ENGINE = MergeTree ORDER BY tuple()"
    )


def pending_view(source: str) -> str:
    """The materialized view that fills `pending_table` from the datasource's inserts."""
    return f"_pipit_pending_spans_{source}_view"


def spans_table(source: str) -> str:
    """The hidden table of each session's span: the times of its first and last page views
    (a row per reconcile until merges fold them). A reconcile reads the rows of the pending
    sessions in the span of them all, along the datasource's time order, instead of
    finding them by id across the whole table (`settle_sql`). Rows deleted leave a span
    wider than the rows, never narrower: the read still finds every view. The views a
    write brings wait in the pending table with their own spans, and reach this one with
    their reconcile (`settle_sql`): one insert a reconcile, where a view of its own on
    every write cost 8% of the inserts' time (0.98 s against 0.90 a round of ten
    10,000-row batches, measured 2026-12-03)."""
    return f"_pipit_session_spans_{source}"


# The views of releases before 2026-12-03: the pending sessions without their spans, and
# the spans extended on every write. Dropped at start (`pending_schema_sql`).
_RETIRED_VIEWS = ("_pipit_pending_moves_{}_view", "_pipit_session_spans_{}_view")
# The pending table's span columns. A row that brings no span (a delete's sessions; a row
# an older release left) takes the defaults: the latest time as its first view, the
# earliest as its last, so that min and max skip it.
_SPAN_COLUMNS = (
    "first_view DateTime DEFAULT toDateTime(4294967295)",
    "last_view DateTime DEFAULT toDateTime(0)",
)


def sources_read(sql: str) -> list[str]:
    """The datasources whose moves `sql` reads."""
    return list(dict.fromkeys(_READ.findall(sql)))


def _table_sql(database: str, name: str, create: str = "CREATE TABLE IF NOT EXISTS") -> str:
    """A moves table named `name`: sorted by the page a move leaves, a projection by the page
    it reaches (page_paths' two directions), and one by session (the reconcile's read). The
    sorting key is the whole move, so that merges sum each move's signs (and drop it at 0);
    the projections are made again from the merged rows (`deduplicate_merge_projection_mode`),
    which a Summing table's projections need."""
    return (
        f"{create} `{database}`.`{name}` ("
        "session_id String, from_page String, to_page String, "
        "from_time DateTime, to_time DateTime, sign Int32, "
        "PROJECTION by_to (SELECT * ORDER BY to_page, to_time), "
        "PROJECTION by_session (SELECT * ORDER BY session_id, from_time)"
        ") ENGINE = SummingMergeTree(sign) "
        "ORDER BY (from_page, from_time, to_page, to_time, session_id) "
        "SETTINGS deduplicate_merge_projection_mode = 'rebuild'"
    )


def pending_schema_sql(database: str, source: str) -> list[str]:
    """The pending sessions with the span of their new views, the view that records them as
    rows are inserted, and the views of older releases dropped (a table of theirs gains
    the span columns; its rows have none, their spans being in `spans_table` already)."""
    pending = f"`{database}`.`{pending_table(source)}`"
    return [
        f"CREATE TABLE IF NOT EXISTS {pending} (session_id String, "
        f"{', '.join(_SPAN_COLUMNS)}) ENGINE = MergeTree ORDER BY session_id",
        f"ALTER TABLE {pending} "
        + ", ".join(f"ADD COLUMN IF NOT EXISTS {column}" for column in _SPAN_COLUMNS),
        # Made before the old views go, so that no insert meanwhile goes unrecorded.
        f"CREATE MATERIALIZED VIEW IF NOT EXISTS `{database}`.`{pending_view(source)}` "  # noqa: S608 - names are ours
        f"TO {pending} AS SELECT session_id, min(timestamp) AS first_view, "
        f"max(timestamp) AS last_view FROM `{database}`.`{source}` "
        f"WHERE event_type IN ({_PAGE_VIEWS}) GROUP BY session_id",
        *(f"DROP VIEW IF EXISTS `{database}`.`{view.format(source)}`" for view in _RETIRED_VIEWS),
    ]


def spans_sql(database: str, source: str, *, fill: bool) -> list[str]:
    """The sessions' spans: the table made from the rows and the moves (`fill`, replacing
    one there; a start that adds the spans beside rows, or a rebuild of the moves, after
    the moves table is made) or made empty where missing. Spans are minima and maxima,
    which rows counted twice leave alone. To run on the write lane, together."""
    spans = f"`{database}`.`{spans_table(source)}`"
    columns = (
        "(session_id String, first_view SimpleAggregateFunction(min, DateTime), "
        "last_view SimpleAggregateFunction(max, DateTime)) "
        "ENGINE = AggregatingMergeTree ORDER BY session_id"
    )
    # Made beside moves already kept (the moves table exists by then), the spans cover
    # their times too: a session still pending may hold moves of rows deleted since
    # (an older release's delete), which its reconcile must read to take them back.
    moves = f"`{database}`.`{table(source)}`"
    of_rows_and_moves = f"""
        SELECT session_id, min(t) AS first_view, max(t) AS last_view
        FROM
        (
            SELECT session_id, timestamp AS t FROM `{database}`.`{source}`
            WHERE event_type IN ({_PAGE_VIEWS})
            UNION ALL SELECT session_id, from_time FROM {moves}
            UNION ALL SELECT session_id, to_time FROM {moves}
        )
        GROUP BY session_id"""  # noqa: S608 - names are ours
    return [
        f"CREATE OR REPLACE TABLE {spans} {columns} AS {of_rows_and_moves}"
        if fill
        else f"CREATE TABLE IF NOT EXISTS {spans} {columns}"
    ]


def schema_sql(database: str, source: str, *, spans: bool = True) -> list[str]:
    """The moves table (where it is missing, an empty one: see `rebuild_sql` for one
    beside rows), the pending sessions and their view, and the sessions' spans (made
    from the rows where `spans` is false: a table of moves from before them)."""
    return [
        _table_sql(database, table(source)),
        *pending_schema_sql(database, source),
        *spans_sql(database, source, fill=not spans),
    ]


def rebuild_sql(database: str, source: str, *, from_retired: bool = False) -> list[str]:
    """The moves table made again, filled before it takes its name (CREATE OR REPLACE … AS
    SELECT): from the rows, or from the table an older release kept (`from_retired`: its
    moves summed, a copy of what it had settled, the pending sessions still pending); then
    the mark that asked for it (`stale_sql`) and the older release's table dropped. Where
    a moves table exists, it is replaced at once (a reader sees the old moves or the new
    ones, never none); where none does, a start stopped half-way leaves none, and the next
    one makes it again — a table made empty, then filled, would be taken by that next start
    for a full one. To run after `pending_schema_sql`, on the write lane, together."""
    if from_retired:
        before = []
        moves = (
            f"SELECT {_COLUMNS.replace('sign', 'toInt32(sum(sign)) AS total')} "  # noqa: S608 - names are ours
            f"FROM `{database}`.`{retired_table(source)}` "
            "GROUP BY session_id, from_page, to_page, from_time, to_time HAVING total != 0"
        )
    else:
        # Every session is reconciled below: none waits any more.
        before = [f"TRUNCATE TABLE `{database}`.`{pending_table(source)}`"]
        moves = _all_moves_sql(database, source)
    return [
        *before,
        _table_sql(database, table(source), "CREATE OR REPLACE TABLE") + f" AS {moves}",
        # The spans from the same rows (an older release's table came without them).
        *spans_sql(database, source, fill=True),
        f"DROP TABLE IF EXISTS `{database}`.`{stale_table(source)}`",
        *retired_sql(database, source),
    ]


def kept_tables(source: str) -> tuple[str, ...]:
    """The tables kept beside `source` for its moves (`schema_sql`), views apart."""
    return (pending_table(source), spans_table(source), table(source))


def dropped_sql(database: str, source: str) -> list[str]:
    """Drops everything kept beside `source` for its moves (`schema_sql`): the views first,
    so that no insert writes into a table going."""
    return [
        *(
            f"DROP VIEW IF EXISTS `{database}`.`{view}`"
            for view in (pending_view(source), *(v.format(source) for v in _RETIRED_VIEWS))
        ),
        *(f"DROP TABLE IF EXISTS `{database}`.`{hidden}`" for hidden in kept_tables(source)),
    ]


def retired_sql(database: str, source: str) -> list[str]:
    """Drops the moves table an older release kept (`retired_table`), once its moves are in
    `table` (`rebuild_sql`)."""
    return [f"DROP TABLE IF EXISTS `{database}`.`{retired_table(source)}`"]


def _span_sql(database: str, source: str, sessions: str) -> str:
    """`span`: the times between which every page view of the pending sessions (`sessions`
    selects them) lies — their spans kept (`spans_table`) and those of the views waiting
    with them — or, should one of them have neither (a delete's, whose kept span was
    lost), all times."""
    return f"""
        (
            SELECT if(
                uniqExact(session_id) = (SELECT uniqExact(session_id) FROM ({sessions})),
                (min(first_view), max(last_view)),
                (toDateTime(0), toDateTime(4294967295)))
            FROM
            (
                SELECT session_id, first_view, last_view
                FROM `{database}`.`{spans_table(source)}`
                WHERE session_id IN ({sessions})
                UNION ALL
                SELECT session_id, first_view, last_view
                FROM `{database}`.`{pending_table(source)}`
            )
            WHERE first_view <= last_view
        ) AS span"""  # noqa: S608 - names are ours


def _moves_of(database: str, source: str, sessions: str) -> str:
    """Each move of the sessions `sessions` selects (all sessions when empty), counted 1;
    their rows read within `span` (`_span_sql`, in scope), which the datasource's time
    order bounds."""
    where = (
        f"AND session_id IN ({sessions}) AND timestamp >= span.1 AND timestamp <= span.2"
        if sessions
        else ""
    )
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
            WHERE event_type IN ({_PAGE_VIEWS}) {where}
            GROUP BY session_id
        )
        ARRAY JOIN arrayFilter(m -> m.1 != m.2, arrayZip(arrayPopBack(pages), arrayPopFront(pages),
            arrayPopBack(times), arrayPopFront(times))) AS move"""  # noqa: S608 - names are ours


def pending_sql(database: str, source: str) -> str:
    """A row when some session waits for a reconcile, none when none does."""
    return f"SELECT 1 FROM `{database}`.`{pending_table(source)}` LIMIT 1"  # noqa: S608 - names are ours


def deleting_table(source: str, suffix: str) -> str:
    """The hidden table that holds, while a delete of `source`'s rows runs, the sessions
    whose moves it changes (one per delete: `suffix` tells them apart)."""
    return f"{DELETING_PREFIX}{source}_{suffix}"


def deleting_sql(database: str, source: str, suffix: str, condition: str) -> str:
    """Keeps the sessions with a page view where `condition` (checked SQL) holds, before
    those rows are deleted: their moves change once the rows are gone."""
    return (
        f"CREATE TABLE `{database}`.`{deleting_table(source, suffix)}` "  # noqa: S608 - names are ours, condition checked
        "ENGINE = MergeTree ORDER BY session_id AS "
        f"SELECT DISTINCT session_id FROM `{database}`.`{source}` "
        f"WHERE ({condition}) AND event_type IN ({_PAGE_VIEWS})"
    )


def deleted_sql(database: str, source: str, suffix: str) -> list[str]:
    """Once the delete is done: its sessions made pending (to settle next), the table that
    kept them dropped."""
    kept = f"`{database}`.`{deleting_table(source, suffix)}`"
    return [
        f"INSERT INTO `{database}`.`{pending_table(source)}` (session_id) "  # noqa: S608 - names are ours
        f"SELECT session_id FROM {kept}",
        f"DROP TABLE {kept}",
    ]


def settle_sql(database: str, source: str) -> list[str]:
    """Brings the moves of the pending sessions to what the rows of `source` now say (inserts,
    signed, the difference between the two), then empties the pending table. To run on
    the write lane, together."""
    pending = f"`{database}`.`{pending_table(source)}`"
    sessions = f"SELECT DISTINCT session_id FROM {pending}"  # noqa: S608 - names are ours
    moves = f"`{database}`.`{table(source)}`"
    # Both sides read within the sessions' span: the rows along the datasource's time
    # order, the moves along each page's times (the table's sorting key) where that reads
    # less than finding the sessions by id (`by_session`: a few sessions).
    reconcile = f"""
        INSERT INTO {moves} ({_COLUMNS})
        WITH {_span_sql(database, source, sessions)}
        SELECT session_id, from_page, to_page, from_time, to_time, toInt32(sum(count)) AS d
        FROM
        (
            {_moves_of(database, source, sessions)}
            UNION ALL
            SELECT session_id, from_page, to_page, from_time, to_time, -toInt64(sign)
            FROM {moves}
            WHERE session_id IN ({sessions}) AND from_time >= span.1 AND from_time <= span.2
        )
        GROUP BY session_id, from_page, to_page, from_time, to_time
        HAVING d != 0"""  # noqa: S608 - names are ours
    # The new views' spans kept, after the reconcile that reads them where they wait (a
    # reconcile repeated after a stop in between reads the same span: it finds no
    # difference).
    spans = (
        f"INSERT INTO `{database}`.`{spans_table(source)}` (session_id, first_view, last_view) "  # noqa: S608 - names are ours
        f"SELECT session_id, min(first_view), max(last_view) FROM {pending} "
        "WHERE first_view <= last_view GROUP BY session_id"
    )
    return [reconcile, spans, f"TRUNCATE TABLE {pending}"]


def _all_moves_sql(database: str, source: str) -> str:
    """Every move of `source`'s rows, in the moves table's columns."""
    return (
        f"SELECT session_id, from_page, to_page, from_time, to_time, toInt32(count) AS sign "  # noqa: S608 - names are ours
        f"FROM ({_moves_of(database, source, '')})"
    )
