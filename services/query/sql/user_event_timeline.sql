-- user_event_timeline: one user's events, newest first.
-- Tutorial: 002 "user behavior analytics" (user_event_timeline.pipe).
-- Parameters:
--   user_id    String    required: the user
--   start_date DateTime  earliest event time included (inclusive)
--   end_date   DateTime  latest event time included (inclusive)
--   event_type String    '' = every type, otherwise only this event type
--   limit      Int32     most events returned
-- Ordering: timestamp DESC (newest first), then event_id ASC.
-- Alike on purpose: get_user_journey.sql filters one user's events the same way, over
--   another datasource.
-- Cost: the user's rows from the `by_user` projection (every column here, in user order):
--   a granule or two, whatever the range. `identity(timestamp)`: sorted by the bare
--   column, the engine would read the table in its own (time) order instead, and find
--   the user's rows through the bloom filter, a granule per session (services/query/sql/
--   README.md, "Lookups").
SELECT
    event_id,
    user_id,
    session_id,
    event_type,
    page_url,
    referrer,
    device_type,
    browser,
    country,
    city,
    properties,
    timestamp
FROM user_events
WHERE user_id = {user_id:String}
  AND timestamp >= {start_date:DateTime}
  AND timestamp <= {end_date:DateTime}
  AND ({event_type:String} = '' OR event_type = {event_type:String})
ORDER BY identity(timestamp) DESC, event_id ASC
LIMIT {limit:Int32}
