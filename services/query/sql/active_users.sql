-- active_users: distinct active users, sessions and events per day, week or month.
-- Tutorial: 003 "SaaS user analytics" (active_users.pipe, described in prose and by its
-- call `interval=1 week`).
-- Parameters:
--   start_date DateTime  earliest event time included (inclusive)
--   end_date   DateTime  latest event time included (inclusive)
--   interval   String    '1 day' (default), '1 week', '1 month', or 'day', 'week',
--                        'month'; chosen with multiIf() over the bound value, never
--                        spliced (anything else falls back to a day; the binder refuses
--                        values outside the list)
-- Definitions: period = the period's start as a UTC DateTime (00:00 of the day, of the
--   week's Monday, or of the month's first day); active_users = distinct user_id;
--   sessions = distinct session_id seen in the period; total_events = events. A bound
--   inside a period keeps only its in-range events. Only periods with events appear.
-- Ordering: period ASC (oldest first); the period is the group key, so no ties.
-- Cost: read from `app_bitmap_days`, the view by day of the `app_bitmap_hours`
--   projection (services/query/sql/README.md): whole days from the day projection of that
--   name, the whole hours of the days the bounds cut from the hourly one, the cut hours
--   at either end from the rows; distinct ids are merged from per-day bitmaps, so any
--   range is exact.
SELECT
    -- A UTC day lies in one week and one month, so the period is the day's.
    multiIf(
        {interval:String} IN ('1 week', 'week'), toDateTime(toMonday(day)),
        {interval:String} IN ('1 month', 'month'), toDateTime(toStartOfMonth(day)),
        toDateTime(toDate(day))
    ) AS period,
    toUInt64(groupBitmapMerge(user_ids)) AS active_users,
    toUInt64(groupBitmapMerge(session_ids)) AS sessions,
    sum(event_count) AS total_events
FROM app_bitmap_days(start_date = {start_date:DateTime}, end_date = {end_date:DateTime})
GROUP BY period
ORDER BY period ASC
