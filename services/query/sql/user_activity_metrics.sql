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
-- Cost: days wholly inside the range are read from the `activity_daily` projection (a
--   row per day and part); a day the range cuts is read from the rows. Each day comes
--   from one side only, so distinct counts need no merging across them. The day is
--   toStartOfInterval(timestamp, INTERVAL 1 DAY), the projection's key (see the proto).
WITH
    toStartOfDay({start_date:DateTime}) AS first_day,
    toStartOfDay({end_date:DateTime}) AS last_day,
    {start_date:DateTime} = first_day AS first_day_whole,
    -- The last representable DateTime ends every day it is in.
    (toHour({end_date:DateTime}) = 23 AND toMinute({end_date:DateTime}) = 59
        AND toSecond({end_date:DateTime}) = 59)
        OR {end_date:DateTime} = toDateTime(4294967295) AS last_day_whole
SELECT
    date,
    unique_users,
    sessions,
    total_events,
    page_views,
    clicks,
    if(page_views = 0, 0, round(clicks / page_views, 2)) AS click_through_rate
FROM
(
    SELECT
        toDate(toStartOfInterval(timestamp, INTERVAL 1 DAY)) AS date,
        uniqExact(user_id) AS unique_users,
        uniqExact(session_id) AS sessions,
        count() AS total_events,
        countIf(event_type = 'page_view') AS page_views,
        countIf(event_type = 'click') AS clicks
    FROM user_events
    WHERE (toStartOfInterval(timestamp, INTERVAL 1 DAY) > first_day
           OR (toStartOfInterval(timestamp, INTERVAL 1 DAY) = first_day AND first_day_whole))
      AND (toStartOfInterval(timestamp, INTERVAL 1 DAY) < last_day
           OR (toStartOfInterval(timestamp, INTERVAL 1 DAY) = last_day AND last_day_whole))
    GROUP BY date

    UNION ALL

    SELECT
        toDate(toStartOfInterval(timestamp, INTERVAL 1 DAY)) AS date,
        uniqExact(user_id) AS unique_users,
        uniqExact(session_id) AS sessions,
        count() AS total_events,
        countIf(event_type = 'page_view') AS page_views,
        countIf(event_type = 'click') AS clicks
    FROM user_events
    WHERE timestamp >= {start_date:DateTime}
      AND timestamp <= {end_date:DateTime}
      AND ((toStartOfInterval(timestamp, INTERVAL 1 DAY) = first_day AND NOT first_day_whole)
           OR (toStartOfInterval(timestamp, INTERVAL 1 DAY) = last_day AND NOT last_day_whole))
    GROUP BY date
)
ORDER BY date DESC
