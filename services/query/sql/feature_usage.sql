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
-- Cost: read from `feature_bitmap_range`, the view of the `feature_bitmap_hours`
--   projection that folds the periods (services/query/sql/README.md): whole months, days
--   and hours from the projections of the month, day and hour, the cut hours at either
--   end from the rows, one row per feature and tier; distinct ids are merged from those
--   bitmaps, so any range is exact. A call without dates reads the month tier alone.
SELECT
    feature,
    sum(event_count) AS total_events,
    toUInt64(groupBitmapMerge(user_ids)) AS unique_users,
    toUInt64(groupBitmapMerge(session_ids)) AS unique_sessions
FROM feature_bitmap_range(start_date = {start_date:DateTime}, end_date = {end_date:DateTime})
WHERE {feature:String} = '' OR feature = {feature:String}
GROUP BY feature
ORDER BY total_events DESC, feature ASC
