-- session_insights: sessions that lasted longer than 0 seconds, with their span, size
-- and the device they started on.
-- Tutorial: 003 "SaaS user analytics" (session_insights.pipe).
-- Parameters:
--   start_date DateTime  earliest event time included (inclusive)
--   end_date   DateTime  latest event time included (inclusive)
--   user_id    String    '' = every user (the tutorial's prose: "optionally by user"),
--                        otherwise only this user's events
--   limit      Int32     most sessions returned
-- Date bounds filter EVENTS first, then sessions are aggregated: a bound that cuts a
-- session counts only its in-range events, so a cut session may fall to 0 s and drop out.
-- Definitions:
--   one row per session_id (unlike the tutorial, which also grouped by the device
--   columns and so split a session that changed browser)
--   session_start / session_end = min / max event timestamp
--   session_duration_seconds = session_end - session_start; only rows with > 0 kept
--   event_count = events
--   user_id, device_type, browser, os, location = those of the session's first event,
--   the smallest (timestamp, event_id) -- with the value columns themselves as the last
--   tie-breakers, so even duplicated events give one deterministic answer.
-- Ordering: session_start DESC (newest first), then session_id ASC.
-- Cost: only the `limit` newest sessions are answered, and a session that starts at or
--   after a time T has every in-range event at or after T. So T (`recent_from`) is the
--   oldest of the newest 50 x limit in-range events, read backwards along the sorting
--   key; the sessions seen at or after T are looked up by their numbers (the
--   `by_session_number` projection, where numbers handed out as sessions are first seen
--   put the newest together whatever their ids; a server, which numbers nothing, reads
--   the ids in their place) for where they truly start (`recent_sessions`, the `limit`
--   + 1 newest starts and their ties: no other can be in the answer). When at
--   least `limit` of them start at or after T and last longer than 0 s
--   (`recent_suffice`), they hold the answer, since every other session starts before T,
--   and only their rows at or after T are aggregated. Otherwise (few or long sessions in
--   range, or one user's) every session is aggregated, as defined above. The same lookup
--   stands in user_session_stats.sql over user_events: a range view cannot serve it (a
--   bound that cuts a session moves its start), see services/query/sql/README.md.
WITH
    (
        SELECT min(timestamp)
        FROM
        (
            SELECT timestamp
            FROM app_events
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
        FROM app_events
        WHERE {user_id:String} = ''  -- as above: nothing to look up for one user
          AND timestamp >= {start_date:DateTime}
          AND timestamp <= {end_date:DateTime}
          -- recent_from is an in-range time, so it implies the start bound.
          AND _pipit_session_id_number IN (
              SELECT _pipit_session_id_number
              FROM app_events
              WHERE timestamp >= recent_from AND timestamp <= {end_date:DateTime}
          )
        GROUP BY session_number
        HAVING min(timestamp) >= recent_from AND max(timestamp) > min(timestamp)
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
    session_duration_seconds,
    event_count,
    first_event.4 AS device_type,
    first_event.5 AS browser,
    first_event.6 AS os,
    first_event.7 AS location
FROM
(
    SELECT
        session_id,
        min(timestamp) AS session_start,
        max(timestamp) AS session_end,
        dateDiff('second', session_start, session_end) AS session_duration_seconds,
        count() AS event_count,
        min((timestamp, event_id, user_id, device_type, browser, os, location)) AS first_event
    FROM app_events
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
    HAVING session_duration_seconds > 0
)
ORDER BY session_start DESC, session_id ASC
LIMIT {limit:Int32}
