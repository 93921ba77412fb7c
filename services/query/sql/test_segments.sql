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
-- Cost: when the range is made of whole hours (the defaults, or bounds at :00:00 and
--   :59:59), the `segments_hourly` projection answers (a row per test, variant, device,
--   country and hour, its distinct users kept exactly); otherwise the rows do. Distinct
--   counts over a range cannot be added up from parts of it, so the projection serves
--   whole-hour ranges only.
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
    if({segment:String} = 'country', country, device) AS segment,
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
GROUP BY test_id, variant, segment
ORDER BY test_id ASC, variant ASC, segment ASC
