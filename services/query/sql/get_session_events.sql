-- get_session_events: every event of one session, oldest first.
-- Tutorial: 004 "Build a Clickstream Analytics API" (get_session_events.pipe).
-- Parameters:
--   session_id String    required: the session
-- Ordering: timestamp ASC (oldest first), then event_id ASC.
-- Alike on purpose: get_user_journey.sql lists one user's events with these columns;
--   the columns are each tutorial pipe's own answer.
-- Cost: the session's rows from the `by_session_rows` projection (every column here, in
--   session order): a granule. `identity(timestamp)`: sorted by the bare column, the
--   engine would read the table in its own (time) order instead, and find the session's
--   rows through the bloom filter (services/query/sql/README.md, "Lookups").
SELECT
    event_id,
    user_id,
    timestamp,
    event_type,
    page_url,
    page_title,
    referrer,
    device_type,
    browser,
    properties
FROM clickstream_events
WHERE session_id = {session_id:String}
ORDER BY identity(timestamp) ASC, event_id ASC
