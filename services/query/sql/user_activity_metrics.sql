-- user_activity_metrics: daily activity -- users, sessions, events, page views, clicks
-- and click-through rate per UTC day.
-- Tutorial: 002 "user behavior analytics" (user_activity_metrics.pipe).
-- Parameters:
--   start_date DateTime  earliest event time included (inclusive)
--   end_date   DateTime  latest event time included (inclusive)
-- Definitions: date = toDate(timestamp) (UTC day); unique_users = distinct user_id;
--   sessions = distinct session_id seen that day (a session crossing midnight counts on
--   both days); total_events = events; page_views = events with event_type =
--   'page_view'; clicks = events with event_type = 'click' (the tutorial's spellings);
--   click_through_rate = round(clicks / page_views, 2), 0 when the day has no page
--   views (never NaN or infinity). A bound inside a day keeps only its in-range events.
--   Only days with events appear.
-- Ordering: date DESC (newest day first); the date is the group key, so no ties.
SELECT
    date,
    uniqExact(user_id) AS unique_users,
    uniqExact(session_id) AS sessions,
    count() AS total_events,
    countIf(event_type = 'page_view') AS page_views,
    countIf(event_type = 'click') AS clicks,
    if(page_views = 0, 0, round(clicks / page_views, 2)) AS click_through_rate
FROM
(
    SELECT toDate(timestamp) AS date, user_id, session_id, event_type
    FROM user_events
    WHERE timestamp >= {start_date:DateTime}
      AND timestamp <= {end_date:DateTime}
)
GROUP BY date
ORDER BY date DESC
