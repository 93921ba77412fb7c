-- get_session_events: every event of one session, oldest first.
-- Tutorial: 004 "Build a Clickstream Analytics API" (get_session_events.pipe).
-- Parameters:
--   session_id String    required: the session
-- Ordering: timestamp ASC (oldest first), then event_id ASC.
-- Alike on purpose: get_user_journey.sql lists one user's events with these columns;
--   the columns are each tutorial pipe's own answer.
-- Cost: the session's times come from the narrow `by_session` projection (its rows in
--   session order), then only the table's granules holding those times are read, found
--   through the sorting key, instead of the session's bloom filter checked in every
--   granule. The id filter stays, as the times hold other sessions' rows too.
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
  AND timestamp IN (SELECT timestamp FROM clickstream_events WHERE session_id = {session_id:String})
ORDER BY timestamp ASC, event_id ASC
