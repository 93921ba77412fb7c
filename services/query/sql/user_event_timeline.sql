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
-- Cost: the user's in-range times come from the narrow `by_user` projection (its rows in
--   user order), then only the table's granules holding those times are read, newest
--   first until `limit` rows are found, through the sorting key, instead of the user's
--   bloom filter checked in every granule. The lookup has no ORDER BY of its own: one by
--   timestamp makes the engine read the table in order instead of the projection.
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
  AND timestamp IN (
      SELECT timestamp
      FROM user_events
      WHERE user_id = {user_id:String}
        AND timestamp >= {start_date:DateTime}
        AND timestamp <= {end_date:DateTime}
  )
ORDER BY timestamp DESC, event_id ASC
LIMIT {limit:Int32}
