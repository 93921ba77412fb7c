-- get_user_journey: one user's clickstream across sessions, oldest first.
-- Tutorial: 004 "Build a Clickstream Analytics API" (get_user_journey.pipe).
-- Parameters:
--   user_id    String    required: the user
--   start_date DateTime  earliest event time included (inclusive)
--   end_date   DateTime  latest event time included (inclusive)
-- Ordering: timestamp ASC (oldest first), then event_id ASC.
-- Alike on purpose: get_session_events.sql and user_event_timeline.sql also list one
--   entity's raw events; the columns are each tutorial pipe's own answer.
SELECT
    user_id,
    session_id,
    timestamp,
    event_type,
    page_url,
    page_title,
    referrer,
    device_type,
    browser
FROM clickstream_events
WHERE user_id = {user_id:String}
  AND timestamp >= {start_date:DateTime}
  AND timestamp <= {end_date:DateTime}
ORDER BY timestamp ASC, event_id ASC
