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
-- Alike on purpose: test_segments.sql computes these metrics per segment too.
-- Cost: read from `ab_bitmap_range`, the folded view of the `ab_variant_hours` projection
--   (services/query/sql/README.md): whole days from `ab_bitmap_days`, the whole hours of
--   the days the bounds cut from `ab_variant_hours`, the cut hours at either end from the
--   rows; distinct users are merged from per-day and per-hour bitmaps, so any range is
--   exact.
SELECT
    test_id,
    variant,
    toUInt64(groupBitmapMerge(user_ids)) AS users,
    sum(conversion_events) AS conversions,
    if(users = 0, 0, round(conversions / users, 4)) AS conversion_rate,
    round(sum(revenue_sum), 2) AS total_revenue,
    if(users = 0, 0, round(sum(revenue_sum) / users, 4)) AS revenue_per_user
FROM ab_bitmap_range(start_date = {start_date:DateTime}, end_date = {end_date:DateTime})
WHERE {test_id:String} = '' OR test_id = {test_id:String}
GROUP BY test_id, variant
ORDER BY test_id ASC, variant ASC
