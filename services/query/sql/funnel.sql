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
--   step, unless strict_order), grouped by user; then, per user, a few array passes per step
--   over the user's matches (no per-match state is copied: windowFunnel's search written
--   step by step, not match by match). Bounded by the dates.
WITH
    {steps:Array(String)} AS steps,
    length(steps) AS step_count,
    -- positions[i]: every place in steps holding the value at place i (i included).
    arrayMap(i -> arrayFilter(j -> steps[j] = steps[i], range(1, step_count + 1)),
        range(1, step_count + 1)) AS positions,
    {mode:String} = 'strict_order' AS strict_order,
    {mode:String} = 'strict_deduplication' AS strict_deduplication,
    {window_seconds:Int32} AS window_length,
    users AS
    (
        SELECT
            breakdown,
            level,
            -- The first chain to reach the deepest step, followed back to its step 1:
            -- chain_k = the match of its step k (0 past the level). Written out for the
            -- 8 steps there can be, so no lambda captures the user's arrays.
            if(level >= 8, reached[8], 0) AS chain_8,
            if(level > 7, levels.3[8][chain_8], if(level = 7, reached[7], 0))
                AS chain_7,
            if(level > 6, levels.3[7][chain_7], if(level = 6, reached[6], 0))
                AS chain_6,
            if(level > 5, levels.3[6][chain_6], if(level = 5, reached[5], 0))
                AS chain_5,
            if(level > 4, levels.3[5][chain_5], if(level = 4, reached[4], 0))
                AS chain_4,
            if(level > 3, levels.3[4][chain_4], if(level = 3, reached[3], 0))
                AS chain_3,
            if(level > 2, levels.3[3][chain_3], if(level = 2, reached[2], 0))
                AS chain_2,
            if(level > 1, levels.3[2][chain_2], if(level = 1, reached[1], 0))
                AS chain_1,
            arraySlice(
                [ts[chain_1], ts[chain_2], ts[chain_3], ts[chain_4],
                 ts[chain_5], ts[chain_6], ts[chain_7], ts[chain_8]],
                1, level
            ) AS path
        FROM
        (
            SELECT
                user_id,
                minIf((timestamp, dimension), key = steps[1]).2 AS breakdown,
                arraySort(groupArray((toUInt32(timestamp), position))) AS matches,
                arrayMap(m -> m.1, matches) AS ts,
                arrayMap(m -> m.2, matches) AS st,
                arrayEnumerate(matches) AS pos,
                -- Step by step (k = 2..), each a few passes over the user's matches: ok[i] = i when
                -- match i extends a chain to step k, else 0; held[i] = where the chain held for
                -- step k-1 at match i was made (the last such success, carried forward); start[i]
                -- = that chain's step-1 time. No inner lambda captures an array (it would be
                -- copied once per element). Also kept, per match at its own step: the chain held
                -- for the step before (strict_order) and the successes at that step before it
                -- (strict_deduplication).
                arrayFold(
                    (state, k) -> (
                        arrayMap((s, t0, t, i) -> if(s = k AND t0 > 0 AND t <= t0 + window_length, i, 0),
                            st,
                            arrayFill(x -> x > 0, arrayMap((o, t) -> if(o > 0, t, 0), state.1, state.2)),
                            ts, pos) AS ok,
                        arrayFill(x -> x > 0, arrayMap((o, t) -> if(o > 0, t, 0), state.1, state.2)),
                        arrayPushBack(state.3, arrayFill(x -> x > 0, state.1)),
                        arrayPushBack(state.4, ok),
                        arrayMap((own, s, h) -> if(s = k, h, own), state.5, st, arrayFill(x -> x > 0, state.1)),
                        arrayMap((own, s, c, o) -> if(s = k, toUInt32(c - (o > 0)), own),
                            state.6, st, arrayCumSum(arrayMap(x -> toUInt32(x > 0), ok)), ok)
                    ),
                    range(2, step_count + 1),
                    (
                        arrayMap((s, i) -> if(s = 1, i, 0), st, pos),
                        ts,
                        [CAST([], 'Array(UInt32)')],
                        [arrayMap((s, i) -> if(s = 1, i, 0), st, pos)],
                        arrayWithConstant(length(st), toUInt32(1)),
                        arrayWithConstant(length(st), toUInt32(0))
                    )
                ) AS levels,
                -- Where the search ends: the first match a strict mode stops at, else past the end.
                indexOf(st, 1) AS first_start,
                multiIf(
                    strict_order AND first_start > 0,
                    arrayFirstIndex(
                        (s, i, held) -> i > first_start AND (s = 0 OR (s >= 2 AND held = 0)),
                        st, pos, levels.5),
                    strict_deduplication,
                    arrayFirstIndex((s, before) -> s >= 2 AND before > 0, st, levels.6),
                    0
                ) AS stop_at,
                if(stop_at = 0, length(st) + 1, stop_at) AS search_end,
                arrayMap(ok -> arrayFirstIndex(x -> x > 0 AND x < search_end, ok), levels.4) AS reached,
                arrayCount(x -> x > 0, reached) AS level
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

                -- The same read of the other datasource: one SELECT each, since their columns
                -- differ (clickstream has no country) and the source parameter leaves one reading rows.
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
            -- strict_order sees every event: one matching no step has position 0. An event
            -- whose key stands at several places in steps is a match at each.
            ARRAY JOIN if(has(steps, key), positions[indexOf(steps, key)], [0]) AS position
            WHERE strict_order OR has(steps, key)
            GROUP BY user_id
            HAVING level >= 1
        )
    )
SELECT
    breakdown,
    toUInt8(step) AS step,
    steps[step] AS step_name,
    reached_by[step] AS users,
    if(reached_by[greatest(step - 1, 1)] = 0, 0,
        round(users / reached_by[greatest(step - 1, 1)], 4)) AS conversion_from_previous,
    if(reached_by[1] = 0, 0, round(users / reached_by[1], 4)) AS conversion_overall,
    if(step = 1 OR step - 1 > length(medians), 0, medians[step - 1])
        AS median_seconds_from_previous
FROM
(
    -- Per breakdown value, one row of per-step arrays: users who reached each step, and the
    -- median of the gaps before each step (the i-th gap exists for users past step i).
    SELECT
        breakdown,
        sumForEach(arrayMap(k -> toUInt64(level >= k), range(1, step_count + 1))) AS reached_by,
        quantileExactInclusiveForEach(0.5)(
            arrayMap(k -> toFloat64(path[k]) - toFloat64(path[k - 1]), range(2, level + 1))
        ) AS medians
    FROM users
    GROUP BY breakdown
)
ARRAY JOIN range(1, step_count + 1) AS step
ORDER BY breakdown ASC, step ASC
