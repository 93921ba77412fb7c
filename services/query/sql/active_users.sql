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
-- Cost: when the range is made of whole hours (the defaults, or bounds at :00:00 and
--   :59:59), the `features_hourly` projection answers, re-aggregated over features (its
--   distinct ids are kept exactly); otherwise the rows do. Distinct counts over a range
--   cannot be added up from parts of it, so the projection serves whole-hour ranges only.
--   Periods are computed from toStartOfHour(timestamp), the projection's key (an hour
--   lies in one day, one week and one month, so the period is the same).
--   For a whole-hour range, "its hour is in range" keeps the same rows as "it is in
--   range"; only the first filters on the projection's key.
WITH
    {start_date:DateTime} = toStartOfHour({start_date:DateTime})
        AND ((toMinute({end_date:DateTime}) = 59 AND toSecond({end_date:DateTime}) = 59)
             -- The last representable DateTime ends every hour it is in.
             OR {end_date:DateTime} = toDateTime(4294967295)) AS whole_hours
SELECT
    multiIf(
        {interval:String} IN ('1 week', 'week'), toDateTime(toMonday(toStartOfHour(timestamp))),
        {interval:String} IN ('1 month', 'month'),
        toDateTime(toStartOfMonth(toStartOfHour(timestamp))),
        toStartOfDay(toStartOfHour(timestamp))
    ) AS period,
    uniqExact(user_id) AS active_users,
    uniqExact(session_id) AS sessions,
    count() AS total_events
FROM app_events
WHERE if(
        whole_hours,
        toStartOfHour(timestamp) >= {start_date:DateTime}
            AND toStartOfHour(timestamp) <= {end_date:DateTime},
        timestamp >= {start_date:DateTime} AND timestamp <= {end_date:DateTime}
    )
GROUP BY period
ORDER BY period ASC
