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
SELECT
    period,
    uniqExact(user_id) AS active_users,
    uniqExact(session_id) AS sessions,
    count() AS total_events
FROM
(
    SELECT
        multiIf(
            {interval:String} IN ('1 week', 'week'), toDateTime(toMonday(timestamp)),
            {interval:String} IN ('1 month', 'month'), toDateTime(toStartOfMonth(timestamp)),
            toStartOfDay(timestamp)
        ) AS period,
        user_id,
        session_id
    FROM app_events
    WHERE timestamp >= {start_date:DateTime}
      AND timestamp <= {end_date:DateTime}
)
GROUP BY period
ORDER BY period ASC
