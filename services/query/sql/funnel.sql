-- funnel: how many users go through 2 to 8 ordered steps within a conversion window, with
-- the conversion and the median time between steps; optionally broken down.
-- Issue 19 item 2; ClickHouse's windowFunnel() semantics, written out so that the path each
-- user took (and so the time between steps) is known, not only the deepest step.
-- Parameters:
--   steps          Array(String)  required, 2..8 values: the steps in order, each an event
--                                 type or a page URL (`step_by`)
--   step_by        String         'event_type' (default) or 'page_url': what a step matches
--   source         String         'user_events' (default) or 'clickstream_events'; each
--                                 source's branch below holds only when it is the one bound,
--                                 so the other reads no rows (no table name is spliced)
--   window_seconds Int32          conversion window: every step must follow the first
--                                 step's event by at most this many seconds
--   mode           String         'default', 'strict_order' or 'strict_deduplication',
--                                 windowFunnel's modes of the same names
--   breakdown      String         'none' (default), 'device', 'browser' or 'country'
--                                 (clickstream_events has no country: its value is '')
--   start_date     DateTime       earliest event time included (inclusive)
--   end_date       DateTime       latest event time included (inclusive)
-- Definitions (per user, over the user's in-range events):
--   An event matches step k when its key (event_type or page_url) equals steps[k]; an event
--   whose key is given twice in steps matches both positions. The matches are taken in
--   (timestamp, step) order (so tied timestamps have one answer), and, as windowFunnel does:
--   a step-1 match starts a new chain (replacing the step-1 chain held); a step-k match
--   (k > 1) extends the chain held for step k-1 when it is within window_seconds of that
--   chain's step-1 event, becoming the chain held for step k; reaching the last step ends.
--   strict_order: once a step-1 match was seen, an event matching no step, or a step whose
--   previous step has no chain yet, ends the search. strict_deduplication: a step-k match
--   (k > 1) while a chain is held for step k ends the search.
--   A user's level is the deepest step any chain reached; the user's path is the first chain
--   that reached that level (its timestamps, one per step).
--   breakdown value = that of the user's first step-1 event (ties: the smallest value);
--   users who never match step 1 are not counted.
-- Answer: per breakdown value with at least one user, one row per step:
--   users = users whose level >= step; conversion_from_previous = users / users of the
--   previous step (1 for step 1); conversion_overall = users / users of step 1; both rounded
--   to 4 decimals; median_seconds_from_previous = median over those users of (path[step] -
--   path[step-1]) seconds, the mean of the middle two for an even count; 0 for step 1 and
--   for a step no user reached.
-- Ordering: breakdown ASC, step ASC (the group key, so no ties).
-- Cost: one pass over the range's rows of the chosen source (only the events matching a
--   step, unless strict_order), grouped by user; bounded by the dates.
WITH
    {steps:Array(String)} AS steps,
    length(steps) AS step_count,
    {mode:String} = 'strict_order' AS strict_order,
    {mode:String} = 'strict_deduplication' AS strict_deduplication,
    users AS
    (
        SELECT
            user_id,
            minIf((timestamp, dimension), key = steps[1]).2 AS breakdown,
            arraySort(arrayFlatten(groupArray(arrayMap(
                position -> (toUInt32(timestamp), position),
                -- strict_order sees every event: one matching no step has position 0
                if(has(steps, key), arrayFilter(i -> steps[i] = key, range(1, step_count + 1)), [0])
            )))) AS matches,
            arrayFold(
                (state, match) -> if(
                    state.3 = 1,
                    state,
                    multiIf(
                        match.2 = 0,
                        (state.1, state.2, toUInt8(notEmpty(state.1[1]))),
                        match.2 = 1,
                        (
                            arrayMap((chain, i) -> if(i = 1, [match.1], chain),
                                state.1, arrayEnumerate(state.1)),
                            if(empty(state.2), [match.1], state.2),
                            toUInt8(0)
                        ),
                        strict_deduplication AND notEmpty(state.1[match.2]),
                        (state.1, state.2, toUInt8(1)),
                        strict_order AND notEmpty(state.1[1]) AND empty(state.1[match.2 - 1]),
                        (state.1, state.2, toUInt8(1)),
                        notEmpty(state.1[match.2 - 1])
                            AND match.1 <= state.1[match.2 - 1][1] + {window_seconds:Int32},
                        (
                            arrayMap(
                                (chain, i) -> if(i = match.2,
                                    arrayPushBack(state.1[match.2 - 1], match.1), chain),
                                state.1, arrayEnumerate(state.1)),
                            if(length(state.2) < match.2,
                                arrayPushBack(state.1[match.2 - 1], match.1), state.2),
                            toUInt8(match.2 = step_count)
                        ),
                        state
                    )
                ),
                matches,
                (arrayWithConstant(step_count, CAST([], 'Array(UInt32)')),
                    CAST([], 'Array(UInt32)'), toUInt8(0))
            ).2 AS path,
            length(path) AS level
        FROM
        (
            SELECT
                user_id,
                timestamp,
                if({step_by:String} = 'page_url', page_url, event_type) AS key,
                multiIf(
                    {breakdown:String} = 'device', device_type,
                    {breakdown:String} = 'browser', browser,
                    {breakdown:String} = 'country', country,
                    ''
                ) AS dimension
            FROM user_events
            WHERE {source:String} = 'user_events'
              AND timestamp >= {start_date:DateTime}
              AND timestamp <= {end_date:DateTime}

            UNION ALL

            SELECT
                user_id,
                timestamp,
                if({step_by:String} = 'page_url', page_url, event_type) AS key,
                multiIf(
                    {breakdown:String} = 'device', device_type,
                    {breakdown:String} = 'browser', browser,
                    ''
                ) AS dimension
            FROM clickstream_events
            WHERE {source:String} = 'clickstream_events'
              AND timestamp >= {start_date:DateTime}
              AND timestamp <= {end_date:DateTime}
        )
        WHERE strict_order OR has(steps, key)
        GROUP BY user_id
        HAVING level >= 1
    )
SELECT
    breakdown,
    toUInt8(step) AS step,
    steps[step] AS step_name,
    users,
    if(previous_users = 0, 0, round(users / previous_users, 4)) AS conversion_from_previous,
    if(first_users = 0, 0, round(users / first_users, 4)) AS conversion_overall,
    if(isNaN(median_seconds), 0, median_seconds) AS median_seconds_from_previous
FROM
(
    SELECT
        breakdown,
        step,
        countIf(level >= step) AS users,
        countIf(level >= greatest(step - 1, 1)) AS previous_users,
        count() AS first_users,
        quantileExactInclusiveIf(0.5)(
            toFloat64(path[step]) - toFloat64(path[step - 1]), step > 1 AND level >= step
        ) AS median_seconds
    FROM users
    ARRAY JOIN range(1, step_count + 1) AS step
    GROUP BY breakdown, step
)
ORDER BY breakdown ASC, step ASC
