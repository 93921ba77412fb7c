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
-- Cost: when the range is made of whole hours (the defaults, or bounds at :00:00 and
--   :59:59), the `ab_hourly` projection answers (a row per test, variant and hour, its
--   distinct users kept exactly); otherwise the rows do. Distinct counts over a range
--   cannot be added up from parts of it, so the projection serves whole-hour ranges only.
--   Periods are computed from toStartOfHour(timestamp), the projection's key (an hour
--   lies in one day and one week, so the period is the same).
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
    multiIf(
        {interval:String} = 'hour', toStartOfHour(timestamp),
        {interval:String} = 'week', toDateTime(toMonday(toStartOfHour(timestamp))),
        toStartOfDay(toStartOfHour(timestamp))
    ) AS period,
    uniqExact(user_id) AS users,
    countIf(conversion = 1) AS conversions,
    if(users = 0, 0, round(conversions / users, 4)) AS conversion_rate,
    round(sum(revenue), 2) AS total_revenue
FROM ab_test_events
WHERE if(
        whole_hours,
        toStartOfHour(timestamp) >= {start_date:DateTime}
            AND toStartOfHour(timestamp) <= {end_date:DateTime},
        timestamp >= {start_date:DateTime} AND timestamp <= {end_date:DateTime}
    )
  AND ({test_id:String} = '' OR test_id = {test_id:String})
GROUP BY test_id, variant, period
ORDER BY test_id ASC, variant ASC, period ASC
