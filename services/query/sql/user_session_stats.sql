-- user_session_stats: one row per session with its span, size, pages and device.
-- Tutorial: 002 "user behavior analytics" (user_session_stats.pipe).
-- Parameters:
--   user_id    String    '' = every user, otherwise only this user's events
--   start_date DateTime  earliest event time included (inclusive)
--   end_date   DateTime  latest event time included (inclusive)
--   limit      Int32     most sessions returned
-- Date bounds filter EVENTS first, then sessions are aggregated: a bound that cuts a
-- session counts only that session's in-range events (its start, end, counts and first
-- event are those of the in-range part).
-- Definitions:
--   session_start / session_end = min / max event timestamp
--   duration_seconds = session_end - session_start in seconds (0 for one event)
--   event_count = events; page_views = events with event_type = 'page_view' (the
--   tutorial's spelling in this datasource); unique_pages = distinct page_url
--   user_id, device_type, browser, country = those of the session's first event, the
--   smallest (timestamp, event_id) -- with the value columns themselves as the last
--   tie-breakers, so even duplicated events give one deterministic answer.
-- Ordering: session_start DESC (newest session first), then session_id ASC.
-- Cost: only the `limit` newest sessions are answered, and a session that starts at or
--   after a time T has every in-range event at or after T. So T (`recent_from`) is the
--   oldest of the newest 50 x limit in-range events, read backwards along the sorting
--   key; the sessions seen at or after T are looked up by their numbers (the
--   `by_session_number` projection, where numbers handed out as sessions are first seen
--   put the newest together whatever their ids; a server, which numbers nothing, reads
--   the ids in their place) for where they truly start (`recent_sessions`, the `limit`
--   + 1 newest starts and their ties: no other can be in the answer). When at
--   least `limit` of them start at or after T (`recent_suffice`), they hold the answer,
--   since every other session starts before T, and only their rows at or after T are
--   aggregated. Otherwise (few or long sessions in range, or one user's) every session
--   is aggregated, as defined above. The same lookup stands in session_insights.sql over
--   app_events: a range view cannot serve it (a bound that cuts a session moves its
--   start), see services/query/sql/README.md.
WITH
    (
        SELECT min(timestamp)
        FROM
        (
            SELECT timestamp
            FROM user_events
            -- One user's rows are few and found through the user_id index: aggregate
            -- them all, without the lookups (recent_from is then NULL).
            WHERE {user_id:String} = ''
              AND timestamp >= {start_date:DateTime}
              AND timestamp <= {end_date:DateTime}
            ORDER BY timestamp DESC
            LIMIT 50 * {limit:Int32}
        )
    ) AS recent_from,
    recent_sessions AS
    (
        -- By the sessions' numbers, which the `by_session_number` projection is sorted by.
        SELECT _pipit_session_id_number AS session_number
        FROM user_events
        WHERE {user_id:String} = ''  -- as above: nothing to look up for one user
          AND timestamp >= {start_date:DateTime}
          AND timestamp <= {end_date:DateTime}
          -- recent_from is an in-range time, so it implies the start bound.
          AND _pipit_session_id_number IN (
              SELECT _pipit_session_id_number
              FROM user_events
              WHERE timestamp >= recent_from AND timestamp <= {end_date:DateTime}
          )
        GROUP BY session_number
        HAVING min(timestamp) >= recent_from
        -- Only the `limit` newest of them (and any that tie with the last): the
        -- answer is among those, and the step below reads the rows of these alone
        -- (about 1,000 sessions start after T at 50 x limit events). One more, so that
        -- the answer's rows_before_limit_at_least still says when there are more.
        ORDER BY min(timestamp) DESC
        LIMIT {limit:Int32} + 1 WITH TIES
    ),
    -- One scalar, computed once: a CTE named twice (counted, then matched) is run twice.
    (SELECT groupArray(session_number) FROM recent_sessions) AS recent_list,
    length(recent_list) >= {limit:Int32} AS recent_suffice
SELECT
    session_id,
    first_event.3 AS user_id,
    session_start,
    session_end,
    dateDiff('second', session_start, session_end) AS duration_seconds,
    event_count,
    page_views,
    unique_pages,
    first_event.4 AS device_type,
    first_event.5 AS browser,
    first_event.6 AS country
FROM
(
    SELECT
        session_id,
        min(timestamp) AS session_start,
        max(timestamp) AS session_end,
        count() AS event_count,
        countIf(event_type = 'page_view') AS page_views,
        uniqExact(page_url) AS unique_pages,
        min((timestamp, event_id, user_id, device_type, browser, country)) AS first_event
    FROM user_events
    WHERE timestamp >= {start_date:DateTime}
      AND timestamp <= {end_date:DateTime}
      AND ({user_id:String} = '' OR user_id = {user_id:String})
      AND if(
          recent_suffice,
          timestamp >= recent_from
          AND _pipit_session_id_number IN (
              SELECT id FROM (SELECT recent_list AS ids) ARRAY JOIN ids AS id
          ),
          1
      )
    GROUP BY session_id
)
ORDER BY session_start DESC, session_id ASC
LIMIT {limit:Int32}
