-- test_results: per A/B test and variant, its control, the users, conversions and the
-- moments of revenue per user; services/query/analysis/test_results.py finishes the
-- statistics from these rows (the z-test, Wilson intervals, lifts, chance to beat
-- control, Welch's test of revenue per user, the sample-ratio check, the sequential mode).
-- ClickHouse's proportionsZTest would fit the z-test but answers NaN whenever a group has no
-- conversions at all, a case the z-test is defined for; its welchTTest would need every
-- user's revenue, zeros included, as rows (below: only the buyers are read one by one).
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
--   buyers                 = users whose events convert or carry revenue (the only ones whose
--                            revenue may be other than 0), 0 when none
--   buyer_revenue_mean     = mean of the buyers' revenue (0 when no buyer)
--   buyer_revenue_variance = population variance of the buyers' revenue, by Welford's
--                            stable update (varPopStable; 0 when no buyer): the analysis
--                            joins the users - buyers zeros to these moments (Chan et al.)
-- Ordering: test_id, variant (the group key, so there are no ties).
-- Cost: no pass over the range's rows. Users are counted from `ab_bitmap_range` (as
--   test_summary counts them); the buyers — about a fifth of the users — are read one by
--   one from the `ab_buyer_arms` range view (services/query/sql/README.md): whole hours
--   from its hourly projection, the cut hours at either end from the rows, so any range
--   is exact. `ab_buyer_arms` folds the hours and gives one row per buyer
--   (`one_row_per_key`: a range cut inside its hours has the view group its two tiers'
--   rows once more; a whole range, read by the sibling, has one tier), so the moments are
--   taken from its rows as they come (grouping the buyers here again cost 25 of ~95 ms at
--   10 M). Its keys are numbers, which the engine groups sooner than strings: the test as
--   `test_key` = cityHash64(test_id), the variant as `arm` = cityHash64(test_id, variant),
--   the buyer as its id's number. So the buyers' moments are grouped by `arm` and matched
--   to the users' row of the same hash: a hash of another test's variant (a `test_key`
--   shared by two tests) has no users' row here and is dropped; two variants of one hash
--   would be one row, which the query refuses (throwIf) rather than answer wrong.
--   (A day projection of the buyers was measured and not kept: a buyer is seldom seen in
--   two hours of a day, so it saved no merging and cost a third tier's planning: 134–150
--   ms p50 without it, 166–169 with.)
SELECT
    test_id,
    variant,
    if(
        countIf(variant = {control:String}) OVER test > 0,
        {control:String},
        min(variant) OVER test
    ) AS control,
    users,
    conversions,
    buyers,
    buyer_revenue_mean,
    buyer_revenue_variance
FROM (
    -- Each column comes from one branch, the other's 0 (or ''): the sum (or the larger)
    -- is that branch's value.
    SELECT
        max(arm_test) AS test_id,
        max(arm_variant) AS variant,
        sum(user_count) + throwIf(countIf(users_row) > 1, 'two A/B variants share a hash')
            AS users,
        sum(converted_users) AS conversions,
        sum(buyer_count) AS buyers,
        sum(mean) AS buyer_revenue_mean,
        sum(variance) AS buyer_revenue_variance
    FROM (
        -- Two branches of a UNION ALL, not a join, so the engine runs them side by side (a
        -- join builds one side before it reads the other). A variant without buyers has
        -- no row in the second: no conversions, no buyers, moments 0.
        SELECT
            cityHash64(test_id, variant) AS arm,
            test_id AS arm_test,
            variant AS arm_variant,
            1 AS users_row,
            toUInt64(groupBitmapMerge(user_ids)) AS user_count,
            0 AS converted_users,
            0 AS buyer_count,
            0. AS mean,
            0. AS variance
        FROM ab_bitmap_range(start_date = {start_date:DateTime}, end_date = {end_date:DateTime})
        WHERE {test_id:String} = '' OR test_id = {test_id:String}
        GROUP BY test_id, variant
        UNION ALL
        -- One row per buyer (the view's `one_row_per_key`), whatever the range.
        SELECT
            arm, '', '', 0, 0, sum(converted), count(), avg(revenue_sum), varPopStable(revenue_sum)
        FROM ab_buyer_arms(start_date = {start_date:DateTime}, end_date = {end_date:DateTime})
        WHERE notable AND ({test_id:String} = '' OR test_key = cityHash64({test_id:String}))
        GROUP BY arm
    )
    GROUP BY arm
    HAVING countIf(users_row) > 0
)
WINDOW test AS (PARTITION BY test_id)
ORDER BY test_id ASC, variant ASC
