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
-- Cost: read from `activity_bitmap_days`, the view by day of the `activity_bitmap_hours`
--   projection (services/query/sql/README.md): whole days from the day projection of that
--   name, the whole hours of the days the bounds cut from the hourly one, the cut hours
--   at either end from the rows; a cut day's distinct ids are merged from its hours'
--   bitmaps, so any range is exact.
SELECT
    toDate(day) AS date,
    toUInt64(groupBitmapMerge(user_ids)) AS unique_users,
    toUInt64(groupBitmapMerge(session_ids)) AS sessions,
    sum(event_count) AS total_events,
    sum(page_view_count) AS page_views,
    sum(click_count) AS clicks,
    if(page_views = 0, 0, round(clicks / page_views, 2)) AS click_through_rate
FROM activity_bitmap_days(start_date = {start_date:DateTime}, end_date = {end_date:DateTime})
GROUP BY date
ORDER BY date DESC
