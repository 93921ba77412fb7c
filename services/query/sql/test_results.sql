-- test_results: per A/B test, each variant beside its control, with Welch's test of revenue
-- per user (ClickHouse's welchTTest); services/query/analysis/test_results.py finishes the
-- statistics (the z-test, Wilson intervals, lifts, chance to beat control, the
-- sample-ratio check, the sequential mode) from these rows. ClickHouse's proportionsZTest
-- would fit the z-test but answers NaN whenever a group has no conversions at all, a case
-- the z-test is defined for.
-- Parameters:
--   test_id    String    '' = every test, otherwise only this test
--   start_date DateTime  earliest event time included (inclusive)
--   end_date   DateTime  latest event time included (inclusive)
--   control    String    the variant compared against; '' or a variant the test does not
--                        have = the test's first variant in sort order
--   (weights and sequential are the analysis's alone)
-- Definitions (per user first, so every statistic is over users, not events):
--   users                  = distinct user_id of the variant's events in range; a user seen
--                            in two variants counts in both, as in test_summary
--   conversions            = users with at least one event with conversion = 1
--   revenue (of a user)    = sum of the user's revenue in the variant, 0 when none
--   revenue_per_user       = mean of the users' revenue; revenue_variance its sample
--                            variance (NaN, printed null, for a single user)
--   welch                  = [welchTTest(0.95)] over the users' revenue, the variant's users
--                            against the control's (the two per-variant states merged):
--                            [(t_statistic, p_value, confidence_interval_low, _high)] of the
--                            variant's mean minus the control's; [] where undefined
--   control_*              = the control's users, conversions, revenue mean and variance
-- Ordering: test_id, variant (the group key, so there are no ties).
-- Cost: no pass over the range's rows. Users are counted from the `ab_bitmap_hours` range view (as
--   test_summary counts them); only the users whose events convert or carry revenue — the
--   only ones whose revenue and conversion are not 0, about a fifth — are read one by one,
--   from the `ab_buyer_hours` range view (services/query/sql/README.md): whole hours from
--   the projection of that name, the cut hours at either end from the rows, so any range
--   is exact. Every other user's revenue is 0: the per-variant statistics run over the
--   buyers' revenues padded with that many zeros, the very sample the rows would give.
--   The windows run over the few variant rows only.
SELECT
    test_id,
    variant,
    control,
    users,
    conversions,
    revenue_per_user,
    revenue_variance,
    control_users,
    control_conversions,
    control_revenue_per_user,
    control_revenue_variance,
    -- welchTTest throws where its degrees of freedom are undefined (a single user, or no
    -- revenue variance on either side): the pair of states is filtered out first there.
    arrayMap(
        states -> arrayReduce('welchTTestMerge(0.95)', states),
        arrayFilter(
            states -> users > 1 AND control_users > 1
                AND (revenue_variance > 0 OR control_revenue_variance > 0),
            [[as_first, control_as_second]]
        )
    ) AS welch
FROM (
    SELECT
        *,
        anyIf(users, variant = control) OVER test AS control_users,
        anyIf(conversions, variant = control) OVER test AS control_conversions,
        anyIf(revenue_per_user, variant = control) OVER test AS control_revenue_per_user,
        anyIf(revenue_variance, variant = control) OVER test AS control_revenue_variance,
        anyIf(as_second, variant = control) OVER test AS control_as_second
    FROM (
        SELECT
            test_id,
            variant,
            users,
            conversions,
            if(
                countIf(variant = {control:String}) OVER test > 0,
                {control:String},
                min(variant) OVER test
            ) AS control,
            -- Every user's revenue: the buyers', then 0 for each of the other users.
            arrayConcat(revenues, arrayWithConstant(users - length(revenues), 0.)) AS revenue,
            arrayReduce('avg', revenue) AS revenue_per_user,
            arrayReduce('varSamp', revenue) AS revenue_variance,
            -- Welch's CI is of the first sample's mean minus the second's: variants
            -- take the first place, the control the second.
            arrayReduce('welchTTestState(0.95)', revenue, arrayWithConstant(users, toUInt8(0)))
                AS as_first,
            arrayReduce('welchTTestState(0.95)', revenue, arrayWithConstant(users, toUInt8(1)))
                AS as_second
        FROM (
            SELECT test_id, variant, toUInt64(groupBitmapMerge(user_ids)) AS users
            FROM ab_bitmap_hours(start_date = {start_date:DateTime}, end_date = {end_date:DateTime})
            WHERE {test_id:String} = '' OR test_id = {test_id:String}
            GROUP BY test_id, variant
        ) AS everyone
        -- A variant without buyers takes the defaults: no conversions, no revenues.
        LEFT JOIN (
            SELECT
                test_id,
                variant,
                sum(converted) AS conversions,
                groupArray(revenue) AS revenues
            FROM (
                SELECT
                    test_id,
                    variant,
                    buyer,
                    max(converted) AS converted,
                    sum(revenue_sum) AS revenue
                FROM ab_buyer_hours(start_date = {start_date:DateTime}, end_date = {end_date:DateTime})
                WHERE notable AND ({test_id:String} = '' OR test_id = {test_id:String})
                GROUP BY test_id, variant, buyer
            )
            GROUP BY test_id, variant
        ) AS notable USING (test_id, variant)
        WINDOW test AS (PARTITION BY test_id)
    )
    WINDOW test AS (PARTITION BY test_id)
)
ORDER BY test_id ASC, variant ASC
