-- test_segments: the test_summary metrics per A/B test, variant and segment, where the
-- segment is the event's device or its country.
-- Tutorial: 001 "Build a Real-time A/B Testing Analytics API" (test_segments, described
-- in prose as "a similar pattern ... across different segments").
-- Parameters:
--   test_id    String    '' = every test, otherwise only this test
--   segment    String    'device' (default) or 'country': which column fills `segment`;
--                        chosen with if() over the bound value, never spliced
--   start_date DateTime  earliest event time included (inclusive)
--   end_date   DateTime  latest event time included (inclusive)
-- Definitions: as test_summary (users = distinct user_id within the segment,
--   conversions = events with conversion = 1, conversion_rate = round(conversions /
--   users, 4), total_revenue = round(sum(revenue), 2), revenue_per_user =
--   round(sum(revenue) / users, 4)). A user seen on two devices counts in both.
-- Ordering: test_id, variant, segment (the group key, so there are no ties).
-- Cost: read from the `ab_segment_bitmap_hours` range view (services/query/sql/README.md):
--   whole months, whole days and whole hours from the projections of the month, day and
--   hour, the cut hours at either end from the rows; distinct users are merged from
--   those bitmaps, so any range is exact. The view folds the periods: one row per test,
--   variant, device, country and tier. A call without dates or over calendar months
--   reads the month tier alone (its sibling `ab_segment_bitmap_hours__months`).
-- Alike on purpose: test_summary.sql's metrics, computed per segment. Each endpoint is
--   its own file (an RPC plus its SQL), so the five metric lines stand in both.
SELECT
    test_id,
    variant,
    if({segment:String} = 'country', country, device) AS segment,
    toUInt64(groupBitmapMerge(user_ids)) AS users,
    sum(conversion_events) AS conversions,
    if(users = 0, 0, round(conversions / users, 4)) AS conversion_rate,
    round(sum(revenue_sum), 2) AS total_revenue,
    if(users = 0, 0, round(sum(revenue_sum) / users, 4)) AS revenue_per_user
FROM ab_segment_bitmap_hours(start_date = {start_date:DateTime}, end_date = {end_date:DateTime})
WHERE {test_id:String} = '' OR test_id = {test_id:String}
GROUP BY test_id, variant, segment
ORDER BY test_id ASC, variant ASC, segment ASC
