-- test_timeseries: per A/B test and variant, the summary metrics per time bucket.
-- Tutorial: 001 "Build a Real-time A/B Testing Analytics API" (test_timeseries,
-- described in prose as the same analysis "over time").
-- Parameters:
--   test_id    String    '' = every test, otherwise only this test
--   interval   String    'hour', 'day' (default) or 'week' (weeks start on Monday);
--                        chosen with multiIf() over the bound value, never spliced
--   start_date DateTime  earliest event time included (inclusive)
--   end_date   DateTime  latest event time included (inclusive)
-- Definitions: period = the bucket's start as a UTC DateTime (toStartOfHour,
--   toStartOfDay, or Monday 00:00 of the week); users = distinct user_id in the bucket;
--   conversions = events with conversion = 1; conversion_rate = round(conversions /
--   users, 4); total_revenue = round(sum(revenue), 2). Only buckets with events appear.
--   A bound inside a bucket keeps only the bucket's in-range events.
-- Ordering: test_id, variant, period (the group key, so there are no ties).
-- Cost: read from the `ab_variant_hours` range view (services/query/sql/README.md): whole
--   hours from the projection of that name, the cut hours at either end from the rows;
--   distinct users are merged from per-hour bitmaps, so any range is exact. The
--   projection keeps 512 rows a granule (options.proto `index_granularity`): at the
--   table's 8,192 a dateless call decoded one granule of every test's 6,480 hourly bitmaps
--   to keep a test's 1,440, now the granules of that test (10 M events: 50 -> 35 ms p50 on
--   the engine, measured with the views naming their projections; before they did, a
--   projection of more marks could lose to `ab_segment_bitmap_hours`: 86 ms at 128 rows a
--   granule).
SELECT
    test_id,
    variant,
    -- An hour lies in one day and one week, so the period is the hour's.
    multiIf(
        {interval:String} = 'hour', hour,
        {interval:String} = 'week', toDateTime(toMonday(hour)),
        toStartOfDay(hour)
    ) AS period,
    toUInt64(groupBitmapMerge(user_ids)) AS users,
    sum(conversion_events) AS conversions,
    if(users = 0, 0, round(conversions / users, 4)) AS conversion_rate,
    round(sum(revenue_sum), 2) AS total_revenue
FROM ab_variant_hours(start_date = {start_date:DateTime}, end_date = {end_date:DateTime})
WHERE {test_id:String} = '' OR test_id = {test_id:String}
GROUP BY test_id, variant, period
ORDER BY test_id ASC, variant ASC, period ASC
