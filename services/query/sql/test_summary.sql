-- test_summary: per A/B test and variant, how many users saw it, how many converted,
-- and the revenue it brought in.
-- Tutorial: 001 "Build a Real-time A/B Testing Analytics API" (test_summary.pipe).
-- Parameters:
--   test_id    String    '' = every test, otherwise only this test
--   start_date DateTime  earliest event time included (inclusive)
--   end_date   DateTime  latest event time included (inclusive)
-- Definitions (the tutorial's):
--   users            = distinct user_id
--   conversions      = events with conversion = 1 (a user may convert more than once)
--   conversion_rate  = round(conversions / users, 4)
--   total_revenue    = round(sum(revenue), 2): revenue arrives in cents, rounding to 2
--                      decimals removes float summation noise (29.99 prints as 29.99)
--   revenue_per_user = round(sum(revenue) / users, 4), from the unrounded sum
-- Divisions are guarded so no row can carry NaN or infinity.
-- Ordering: test_id, variant (the group key, so there are no ties).
-- Cost: when the range is made of whole hours (the defaults, or bounds at :00:00 and
--   :59:59), the `ab_hourly` projection answers (a row per test, variant and hour, its
--   distinct users kept exactly); otherwise the rows do. Distinct counts over a range
--   cannot be added up from parts of it, so the projection serves whole-hour ranges only.
--   For a whole-hour range, "its hour is in range" keeps the same rows as "it is in
--   range"; only the first filters on the projection's key.
WITH
    {start_date:DateTime} = toStartOfHour({start_date:DateTime})
        AND ((toMinute({end_date:DateTime}) = 59 AND toSecond({end_date:DateTime}) = 59)
             -- The last representable DateTime ends every hour it is in.
             OR {end_date:DateTime} = toDateTime(4294967295)) AS whole_hours
SELECT
    test_id,
    variant,
    uniqExact(user_id) AS users,
    countIf(conversion = 1) AS conversions,
    if(users = 0, 0, round(conversions / users, 4)) AS conversion_rate,
    round(sum(revenue), 2) AS total_revenue,
    if(users = 0, 0, round(sum(revenue) / users, 4)) AS revenue_per_user
FROM ab_test_events
WHERE if(
        whole_hours,
        toStartOfHour(timestamp) >= {start_date:DateTime}
            AND toStartOfHour(timestamp) <= {end_date:DateTime},
        timestamp >= {start_date:DateTime} AND timestamp <= {end_date:DateTime}
    )
  AND ({test_id:String} = '' OR test_id = {test_id:String})
GROUP BY test_id, variant
ORDER BY test_id ASC, variant ASC
