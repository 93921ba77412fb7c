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
SELECT
    test_id,
    variant,
    uniqExact(user_id) AS users,
    countIf(conversion = 1) AS conversions,
    if(users = 0, 0, round(conversions / users, 4)) AS conversion_rate,
    round(sum(revenue), 2) AS total_revenue,
    if(users = 0, 0, round(sum(revenue) / users, 4)) AS revenue_per_user
FROM
(
    SELECT test_id, variant, user_id, conversion, revenue
    FROM ab_test_events
    WHERE timestamp >= {start_date:DateTime}
      AND timestamp <= {end_date:DateTime}
      AND ({test_id:String} = '' OR test_id = {test_id:String})
)
GROUP BY test_id, variant
ORDER BY test_id ASC, variant ASC
