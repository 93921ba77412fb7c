-- feature_usage: how much each product feature is used.
-- Tutorial: 003 "SaaS user analytics" (feature_usage.pipe, described in prose only).
-- Parameters:
--   start_date DateTime  earliest event time included (inclusive)
--   end_date   DateTime  latest event time included (inclusive)
--   feature    String    '' = every feature, otherwise only this feature
-- Definitions: total_events = events on the feature; unique_users = distinct user_id;
--   unique_sessions = distinct session_id. Events of every type count. Events sent
--   without a feature form a row with feature '' (visible rather than hidden).
-- Ordering: total_events DESC (most used first), then feature ASC.
-- Cost: when the range is made of whole hours (the defaults, or bounds at :00:00 and
--   :59:59), the `features_hourly` projection answers (a row per feature and hour, its
--   distinct ids kept exactly); otherwise the rows do. Distinct counts over a range
--   cannot be added up from parts of it, so the projection serves whole-hour ranges only.
--   For a whole-hour range, "its hour is in range" keeps the same rows as "it is in
--   range"; only the first filters on the projection's key.
WITH
    {start_date:DateTime} = toStartOfHour({start_date:DateTime})
        AND ((toMinute({end_date:DateTime}) = 59 AND toSecond({end_date:DateTime}) = 59)
             -- The last representable DateTime ends every hour it is in.
             OR {end_date:DateTime} = toDateTime(4294967295)) AS whole_hours
SELECT
    feature,
    count() AS total_events,
    uniqExact(user_id) AS unique_users,
    uniqExact(session_id) AS unique_sessions
FROM app_events
WHERE if(
        whole_hours,
        toStartOfHour(timestamp) >= {start_date:DateTime}
            AND toStartOfHour(timestamp) <= {end_date:DateTime},
        timestamp >= {start_date:DateTime} AND timestamp <= {end_date:DateTime}
    )
  AND ({feature:String} = '' OR feature = {feature:String})
GROUP BY feature
ORDER BY total_events DESC, feature ASC
