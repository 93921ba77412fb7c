-- retention: cohorts of users by the period they were first seen, and the share of each
-- cohort active in every later period (a cohort triangle).
-- Issue 19 item 3.
-- Parameters:
--   source     String    'user_events' (default) or 'app_events'; each source's branches
--                        below hold only when it is the one bound, so the other reads no
--                        rows (no table name is spliced)
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
-- Cost: when the range's events lie within 256 days in a row (the source's first and last
--   event bound them, read from its parts' min/max indexes), each user's days come as
--   bits from the range views `user_hours` / `app_user_hours` (services/query/sql/README.md),
--   which fold the hours: the engine merges the projection's per-hour rows into one row per
--   user as it reads the whole hours, and the cut hours at either end come from the rows;
--   the two halves are merged per user here, then users with the same days are counted once
--   per set of days (a week holds at most 127 sets), so the triangle is built from the sets.
--   Wider spans group the range's rows by user_id instead. Bounded by the dates.
--   Measured at 10 M events and not kept (branch paths3): keying the projection by
--   (user, window of 256 days) as well, which names every day exactly and so drops the
--   min/max subqueries and the wider-span branch, cut the fixed cost of a call (an empty
--   range) by a third but gathering each user's windows cost more than it saved (CPU
--   1.5x); keying users by their UInt32 number instead of sipHash128 gained nothing.
WITH
    toDateTime(0) AS first_second,
    toDateTime(4294967295) AS last_second,
    if({source:String} = 'app_events',
        (SELECT (min(timestamp), max(timestamp)) FROM app_events),
        (SELECT (min(timestamp), max(timestamp)) FROM user_events)) AS stored,
    -- UTC day numbers, counted as the projections count them.
    intDiv(toUInt32(greatest({start_date:DateTime}, stored.1)), 86400) AS first_day,
    intDiv(toUInt32(least({end_date:DateTime}, stored.2)), 86400) AS last_day,
    -- A day's bit is its number mod 256, which names one day of 256 in a row.
    toInt64(last_day) - first_day < 256 AS by_bits,
    by_bits AND {source:String} = 'user_events' AS user_bits,
    by_bits AND {source:String} = 'app_events' AS app_bits
SELECT
    cohort,
    period_number,
    max(active_users) OVER (PARTITION BY cohort) AS cohort_users,
    active_users,
    round(active_users / cohort_users, 4) AS retention
FROM
(
    SELECT
        -- The days come in ascending order, so the periods do: the first is the cohort.
        active_periods[1] AS cohort,
        toUInt32(multiIf(
            {period:String} = 'week', intDiv(dateDiff('day', cohort, active_period), 7),
            {period:String} = 'month', dateDiff('month', cohort, active_period),
            dateDiff('day', cohort, active_period)
        )) AS period_number,
        sum(users) AS active_users
    FROM
    (
        SELECT
            arrayDistinct(arrayMap(day_number -> multiIf(
                {period:String} = 'week', toMonday(toDate('1970-01-01') + day_number),
                {period:String} = 'month', toStartOfMonth(toDate('1970-01-01') + day_number),
                toDate('1970-01-01') + day_number
            ), days)) AS active_periods,
            users
        FROM
        (
            SELECT
                arraySort(arrayMap(bit -> first_day + (bit + 256 - first_day % 256) % 256,
                    bitPositionsToArray(day_bits))) AS days,
                count() AS users
            FROM
            (
                SELECT groupBitOr(day_bits) AS day_bits
                FROM
                (
                    -- A view takes no condition: a branch not taken gets a range that
                    -- ends before it starts, so its view reads no part (a WHERE outside
                    -- the view would drop its rows only after they were read and merged).
                    SELECT user_key, day_bits
                    FROM user_hours(
                        start_date = if(user_bits, {start_date:DateTime}, last_second),
                        end_date = if(user_bits, {end_date:DateTime}, first_second))

                    UNION ALL

                    SELECT user_key, day_bits
                    FROM app_user_hours(
                        start_date = if(app_bits, {start_date:DateTime}, last_second),
                        end_date = if(app_bits, {end_date:DateTime}, first_second))
                )
                GROUP BY user_key
            )
            GROUP BY day_bits

            UNION ALL

            SELECT
                arraySort(groupUniqArray(intDiv(toUInt32(timestamp), 86400))) AS days,
                toUInt64(1) AS users
            FROM
            (
                SELECT user_id, timestamp
                FROM user_events
                WHERE NOT by_bits
                  AND {source:String} = 'user_events'
                  AND timestamp >= {start_date:DateTime}
                  AND timestamp <= {end_date:DateTime}

                UNION ALL

                SELECT user_id, timestamp
                FROM app_events
                WHERE NOT by_bits
                  AND {source:String} = 'app_events'
                  AND timestamp >= {start_date:DateTime}
                  AND timestamp <= {end_date:DateTime}
            )
            GROUP BY user_id
        )
    )
    ARRAY JOIN active_periods AS active_period
    GROUP BY cohort, period_number
)
ORDER BY cohort ASC, period_number ASC
