-- page_paths: for one page, the pages viewed right after it and right before it within
-- sessions, with counts and shares.
-- Issue 19 item 4 (clickstream).
-- Parameters:
--   page_url   String    required: the page
--   start_date DateTime  earliest event time included (inclusive)
--   end_date   DateTime  latest event time included (inclusive)
--   limit      Int32     most pages returned in each direction
-- Definitions: a session's path = its in-range page views (event_type 'page_view', or
--   'pageview' as get_popular_pages counts them) ordered by (timestamp, event_id), with
--   consecutive views of one page collapsed into one (a reload is not a move). For each
--   place the page holds in a path, the page after it is a `next` transition and the page
--   before it a `previous` one (none at the path's end or start). transitions = their
--   count per (direction, page_url); share = transitions / all transitions of that
--   direction, rounded to 4 decimals (shares of the pages cut by `limit` still count in it).
-- Ordering: direction ASC ('next' before 'previous'), transitions DESC, page_url ASC;
--   at most `limit` rows per direction.
-- Cost: on chDB the writer keeps each session's moves (two neighbouring page views on
--   different pages, in the order above) in a hidden table (common/page_moves.py), sorted
--   by the page a move leaves with a projection by the page it reaches, so a call reads
--   the page's moves in range in each direction — a few thousand rows — and sums their
--   signs (the writer inserts a correction, signed -1, when a later batch puts a view
--   between two it had; the table's merges sum a move's rows, dropping it at 0). A move is in range when its first view is at or after the start
--   and its second at or before the end: the in-range views of a session are a run of its
--   order, whose transitions are exactly its moves inside the run. Measured on the 1 M
--   benchmark data (2026-12-01, the bench's three pages over a week, same answers):
--   93-155 ms grouping the sessions, 12-22 reading the moves.
--   A ClickHouse server keeps no moves (several ingest replicas write at once): it counts
--   the transitions with the query in the comment (`id_numbers.server_form`), which finds
--   the sessions that viewed the page in range from the `by_page` projection (page_url,
--   timestamp, event_type and session_id in (page_url, timestamp) order), then reads the
--   range's page views of those sessions, grouped per session and ordered; bounded by the
--   dates. At 10 M events a week's call spends about 300 ms of one core reading and
--   filtering the range's page views, 110 grouping them per session and 300 gathering the
--   arrays of strings (page_url, event_id: 3 % of a session's seconds hold two views, so
--   the tie-break is needed). Measured and not kept (branch paths3): the pages as numbers
--   in the range's list from `page_hours` (numeric arrays; 3-6 % less CPU, within noise,
--   and 35 ms more for a page with no views), the sessions as a set of 64-bit hashes (no
--   faster, and a page with no views in range then scans the range: 150 ms where this
--   answers in 20).
-- Per direction and page, its transitions; the two forms below count the same ones.
SELECT
    direction,
    page_url,
    transitions,
    round(transitions / sum(transitions) OVER (PARTITION BY direction), 4) AS share
FROM
(
    /*numbered*/
    SELECT 'next' AS direction, to_page AS page_url, toUInt64(sum(sign)) AS transitions
    FROM _pipit_page_move_counts_clickstream_events
    WHERE from_page = {page_url:String}
      AND from_time >= {start_date:DateTime}
      AND to_time <= {end_date:DateTime}
      -- Implied (a move's views are in order), and it bounds the sorting key's range.
      AND from_time <= {end_date:DateTime}
    GROUP BY to_page
    -- A count, as the server form's count() is (UInt64): the signs sum to none below 0.
    HAVING sum(sign) > 0

    UNION ALL

    SELECT 'previous' AS direction, from_page AS page_url, toUInt64(sum(sign)) AS transitions
    FROM _pipit_page_move_counts_clickstream_events
    WHERE to_page = {page_url:String}
      AND to_time <= {end_date:DateTime}
      AND from_time >= {start_date:DateTime}
      -- Implied, as above: it bounds the projection's key range.
      AND to_time >= {start_date:DateTime}
    GROUP BY from_page
    HAVING sum(sign) > 0
    /*server:
    WITH
        ('page_view', 'pageview') AS page_view_types,
        {page_url:String} AS page,
        sessions AS
        (
            SELECT DISTINCT session_id
            FROM clickstream_events
            WHERE timestamp >= {start_date:DateTime}
              AND timestamp <= {end_date:DateTime}
              AND event_type IN page_view_types
              AND page_url = page
        )
    SELECT
        neighbour.1 AS direction,
        neighbour.2 AS page_url,
        count() AS transitions
    FROM
    (
        SELECT
            -- Each view beside the one before it (shifted arrays): a lambda that indexed
            -- the array itself would copy it once per element.
            arraySort((p, t, e) -> (t, e, p), groupArray(page_url), groupArray(timestamp),
                groupArray(event_id)) AS views,
            arrayFilter((view, before, i) -> i = 1 OR view != before,
                views, arrayPushFront(arrayPopBack(views), ''), arrayEnumerate(views)) AS path,
            -- The path's moves: froms[i] -> tos[i].
            arrayPopBack(path) AS froms,
            arrayPopFront(path) AS tos
        FROM clickstream_events
        WHERE timestamp >= {start_date:DateTime}
          AND timestamp <= {end_date:DateTime}
          AND event_type IN page_view_types
          AND session_id IN sessions
        GROUP BY session_id
    )
    ARRAY JOIN arrayConcat(
        arrayMap(to -> ('next', to), arrayFilter((to, from) -> from = page, tos, froms)),
        arrayMap(from -> ('previous', from), arrayFilter((from, to) -> to = page, froms, tos))
    ) AS neighbour
    GROUP BY direction, page_url
    */
)
ORDER BY direction ASC, transitions DESC, page_url ASC
LIMIT {limit:Int32} BY direction
