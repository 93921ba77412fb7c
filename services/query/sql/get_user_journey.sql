-- get_user_journey: one user's clickstream across sessions, oldest first.
-- Tutorial: 004 "Build a Clickstream Analytics API" (get_user_journey.pipe).
-- Parameters:
--   user_id    String    required: the user
--   start_date DateTime  earliest event time included (inclusive)
--   end_date   DateTime  latest event time included (inclusive)
-- Ordering: timestamp ASC (oldest first), then event_id ASC.
-- Alike on purpose: get_session_events.sql and user_event_timeline.sql also list one
--   entity's raw events; the columns are each tutorial pipe's own answer.
-- Cost: the user's rows from the `by_user` projection (every column here, in user order):
--   a granule or two, whatever the range. `identity(timestamp)`: sorted by the bare
--   column, the engine would read the table in its own (time) order instead, and find
--   the user's rows through the bloom filter, a granule per session (services/query/sql/
--   README.md, "Lookups").
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
ORDER BY identity(timestamp) ASC, event_id ASC
