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
SELECT
    feature,
    count() AS total_events,
    uniqExact(user_id) AS unique_users,
    uniqExact(session_id) AS unique_sessions
FROM
(
    SELECT feature, user_id, session_id
    FROM app_events
    WHERE timestamp >= {start_date:DateTime}
      AND timestamp <= {end_date:DateTime}
      AND ({feature:String} = '' OR feature = {feature:String})
)
GROUP BY feature
ORDER BY total_events DESC, feature ASC
