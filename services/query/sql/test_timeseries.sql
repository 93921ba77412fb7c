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
-- Cost: read from the `ab_bitmap_hours` range view (services/query/sql/README.md): whole
--   hours from the projection of that name, the cut hours at either end from the rows;
--   distinct users are merged from per-hour bitmaps, so any range is exact.
--   Most of a dateless call's engine time is decoding the projection's one granule of
--   6,480 hourly bitmaps (every test's) to keep a test's 1,440. Measured and not kept
--   (2026-12-01, 10 M): the projection at 512 rows a granule (`WITH SETTINGS
--   (index_granularity = 512)`, chDB 26.9; a 25.8 server has no projection settings), so
--   the test_id key skips the other tests' granules: 55 -> 37 ms p50 on the engine. But
--   the engine picks among projections by marks, not rows: at 128 rows a granule this
--   projection had more marks than `ab_segment_bitmap_hours` and lost to it (86 ms), and
--   at 1 M events, where that one is smaller, 512 would lose too; an existing table
--   would also need MODIFY PROJECTION and a rewrite. Worth it once every aggregate
--   projection of a table has one granularity (marks then track rows) or the engine
--   compares rows (ClickHouse PR 103161).
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
FROM ab_bitmap_hours(start_date = {start_date:DateTime}, end_date = {end_date:DateTime})
WHERE {test_id:String} = '' OR test_id = {test_id:String}
GROUP BY test_id, variant, period
ORDER BY test_id ASC, variant ASC, period ASC
