-- retention: cohorts of users by the period they were first seen, and the share of each
-- cohort active in every later period (a cohort triangle).
-- Issue 19 item 3.
-- Parameters:
--   source     String    'user_events' (default) or 'app_events'; the view of the source
--                        not bound gets a range that ends before it starts, so it reads no
--                        part (no table name is spliced; services/query/whole_ranges.py
--                        replaces that call by the view's empty table, which the engine
--                        need not plan)
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
-- Cost: set algebra over bitmaps, never a row per user. Each period's active users are one
--   bitmap of user numbers, merged from the day views of the sources' bitmap projections
--   (`activity_bitmap_days`, `app_bitmap_days`: whole days from the day projection,
--   cut hours from the rows; services/query/sql/README.md). A cohort is its period's users
--   less everyone active before it (the union of the earlier periods, kept as a running
--   window), and each cell of the triangle is the size of a cohort's intersection with a
--   later period's users. So a call costs the periods' bitmaps plus P²/2 intersections for
--   P periods with events, whatever the number of users: a week by day at 10 M events is
--   28 cells over ~266,000 users (the grouping by user this replaced cost 5× as much, and
--   a month by day 4×, measured on the engine with the same answers).
--   A ClickHouse server numbers no ids, so its views hold no bitmaps to intersect
--   (common/id_numbers.py): it runs the query in the comment at the end instead, which
--   groups the range's rows by user, one array of active periods each, and counts users
--   per (first period, period) — the same answer, at the cost of the rows.
/*numbered*/
WITH
    toDateTime(0) AS first_second,
    toDateTime(4294967295) AS last_second
SELECT
    cohort,
    toUInt32(multiIf(
        {period:String} = 'week', intDiv(dateDiff('day', cohort, period), 7),
        {period:String} = 'month', dateDiff('month', cohort, period),
        dateDiff('day', cohort, period)
    )) AS period_number,
    bitmapCardinality(members) AS cohort_users,
    bitmapAndCardinality(members, users) AS active_users,
    round(active_users / cohort_users, 4) AS retention
FROM
(
    -- Each period with the cohorts of it and of every period before it, so a cohort meets
    -- each later period once (the views are read once: a CTE named twice would be read twice).
    SELECT
        period,
        users,
        groupArray(period) OVER so_far AS cohorts,
        groupArray(bitmapAndnot(users, earlier_users)) OVER so_far AS cohort_members
    FROM
    (
        SELECT
            period,
            users,
            groupBitmapMergeState(users) OVER (
                ORDER BY period ASC ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING
            ) AS earlier_users
        FROM
        (
            SELECT
                -- A UTC day lies in one week and one month, so the period is the day's.
                multiIf(
                    {period:String} = 'week', toMonday(day),
                    {period:String} = 'month', toStartOfMonth(day),
                    toDate(day)
                ) AS period,
                groupBitmapMergeState(user_ids) AS users
            FROM
            (
                SELECT day, user_ids
                FROM activity_bitmap_days(start_date = if({source:String} = 'user_events', {start_date:DateTime}, last_second), end_date = if({source:String} = 'user_events', {end_date:DateTime}, first_second))

                UNION ALL

                SELECT day, user_ids
                FROM app_bitmap_days(start_date = if({source:String} = 'app_events', {start_date:DateTime}, last_second), end_date = if({source:String} = 'app_events', {end_date:DateTime}, first_second))
            )
            GROUP BY period
        )
    )
    WINDOW so_far AS (ORDER BY period ASC ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW)
)
ARRAY JOIN cohorts AS cohort, cohort_members AS members
WHERE active_users > 0
ORDER BY cohort ASC, period_number ASC
/*server:
SELECT
    cohort,
    period_number,
    max(active_users) OVER (PARTITION BY cohort) AS cohort_users,
    active_users,
    round(active_users / cohort_users, 4) AS retention
FROM
(
    SELECT
        -- The periods are sorted, so the first is the cohort.
        active_periods[1] AS cohort,
        toUInt32(multiIf(
            {period:String} = 'week', intDiv(dateDiff('day', cohort, active_period), 7),
            {period:String} = 'month', dateDiff('month', cohort, active_period),
            dateDiff('day', cohort, active_period)
        )) AS period_number,
        count() AS active_users
    FROM
    (
        SELECT arraySort(groupUniqArray(multiIf(
            {period:String} = 'week', toMonday(day),
            {period:String} = 'month', toStartOfMonth(day),
            day
        ))) AS active_periods
        FROM
        (
            -- The UTC day of the stored seconds: no time zone enters.
            SELECT user_id, toDate('1970-01-01') + intDiv(toUInt32(timestamp), 86400) AS day
            FROM user_events
            WHERE {source:String} = 'user_events'
              AND timestamp >= {start_date:DateTime}
              AND timestamp <= {end_date:DateTime}

            UNION ALL

            SELECT user_id, toDate('1970-01-01') + intDiv(toUInt32(timestamp), 86400) AS day
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
*/
