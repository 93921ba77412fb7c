-- retention: cohorts of users by the period they were first seen, and the share of each
-- cohort active in every later period (a cohort triangle).
-- Issue 19 item 3.
-- Parameters:
--   source     String    'user_events' (default) or 'app_events'; each source's branch below
--                        holds only when it is the one bound, so the other reads no rows
--                        (no table name is spliced)
--   period     String    'day' (default), 'week' (weeks start on Monday) or 'month'; chosen
--                        with multiIf() over the bound value, never spliced
--   start_date DateTime  earliest event time included (inclusive)
--   end_date   DateTime  latest event time included (inclusive)
-- Definitions: only in-range events count, so "first seen" is first seen in the range.
--   A user's cohort = the period (UTC) of the user's first in-range event; the user is
--   active in a period when at least one in-range event falls in it; period_number = whole
--   periods from the cohort's period to the active period (0 = the cohort's own period).
--   cohort_users = users of the cohort (all active in period 0); active_users = users of
--   the cohort active in that period; retention = active_users / cohort_users rounded to 4
--   decimals. A period in which no user of the cohort is active has no row.
-- Ordering: cohort ASC, period_number ASC (the group key, so no ties).
-- Cost: one pass over the range's user_id and timestamp columns of the chosen source,
--   grouped by user; bounded by the dates.
SELECT
    cohort,
    period_number,
    max(active_users) OVER (PARTITION BY cohort) AS cohort_users,
    active_users,
    round(active_users / cohort_users, 4) AS retention
FROM
(
    SELECT
        multiIf(
            {period:String} = 'week', toMonday(first_seen),
            {period:String} = 'month', toStartOfMonth(first_seen),
            toDate(first_seen)
        ) AS cohort,
        toUInt32(multiIf(
            {period:String} = 'week', intDiv(dateDiff('day', cohort, active_period), 7),
            {period:String} = 'month', dateDiff('month', cohort, active_period),
            dateDiff('day', cohort, active_period)
        )) AS period_number,
        count() AS active_users
    FROM
    (
        SELECT
            user_id,
            min(timestamp) AS first_seen,
            groupUniqArray(multiIf(
                {period:String} = 'week', toMonday(timestamp),
                {period:String} = 'month', toStartOfMonth(timestamp),
                toDate(timestamp)
            )) AS active_periods
        FROM
        (
            SELECT user_id, timestamp
            FROM user_events
            WHERE {source:String} = 'user_events'
              AND timestamp >= {start_date:DateTime}
              AND timestamp <= {end_date:DateTime}

            UNION ALL

            SELECT user_id, timestamp
            FROM app_events
            WHERE {source:String} = 'app_events'
              AND timestamp >= {start_date:DateTime}
              AND timestamp <= {end_date:DateTime}
        )
        GROUP BY user_id
    )
    ARRAY JOIN active_periods AS active_period
    GROUP BY cohort, period_number
)
ORDER BY cohort ASC, period_number ASC
