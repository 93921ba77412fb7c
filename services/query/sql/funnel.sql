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
--   step, unless strict_order; only the columns the parameters use), grouped by user into
--   one array of numbers each; then, per step asked for, two vectorised passes over every
--   user's matches. No pass is per match: the chain held for each step is carried forward
--   by arrayFill as one UInt64 (its start and its last match), and the path is followed
--   back through the steps once per user. A call's fixed cost is the engine's parsing and
--   analysis of this text (tens of ms, whatever the rows; ClickHouse's parser backtracks
--   on nested calls and the analyzer copies an alias's expression at every use), so the
--   per-step work is written once, as a fold over the steps asked for, not once per
--   possible step; a value used several times is a column of the layer before; and a
--   branch the bound parameters rule out is an if() on them, which the analyzer drops.
WITH
    {steps:Array(String)} AS steps,
    length(steps) AS step_count,
    {window_seconds:Int32} AS window_length,
    {mode:String} AS mode,
    matched AS
    (
        SELECT
            breakdown,
            arraySort(if(length(arrayDistinct(steps)) = step_count, codes, arrayFlatten(arrayMap(
                c -> arrayMap(p -> bitOr(bitAnd(c, bitNot(toUInt64(15))), p),
                    if(bitAnd(c, 15) = 0, [toUInt64(0)],
                        arrayFilter(j -> steps[j] = steps[bitAnd(c, 15)], range(1, step_count + 1)))),
                codes)))) AS matches
        FROM
        (
            SELECT
                user_id,
                if({breakdown:String} = 'none', '',
                    substring(minIf(concat(reverse(reinterpretAsFixedString(toUInt32(timestamp))), dimension),
                        key = steps[1] AND {breakdown:String} != 'none'), 5))
                    AS breakdown,
                groupArray(toUInt64(toUInt32(timestamp)) * 16 + indexOf(steps, key)) AS codes
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
                  AND (mode = 'strict_order' OR has(steps, key))

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
                  AND (mode = 'strict_order' OR has(steps, key))
            )
            GROUP BY user_id
            HAVING countIf(key = steps[1]) > 0
        )
    ),
    chained AS
    (
        SELECT
            breakdown,
            matches,
            arrayFold((held, k) -> arrayPushBack(held, arrayFill(x -> x > 0, arrayMap(
                    (c, h, i) -> if(bitAnd(c, 15) = k AND h > 0 AND bitShiftRight(c, 4) <= bitShiftRight(h, 32) + window_length,
                        bitOr(bitAnd(h, 0xFFFFFFFF00000000), i), 0),
                    matches, held[-1], arrayEnumerate(matches)))),
                range(2, step_count + 1),
                [arrayFill(x -> x > 0, arrayMap((c, i) -> if(bitAnd(c, 15) = 1 AND c > 15,
                    bitOr(bitShiftLeft(bitShiftRight(c, 4), 32), i), 0), matches, arrayEnumerate(matches)))])
                AS chains
        FROM matched
    ),
    firsts AS
    (
        SELECT *, arrayMap(h -> (countEqual(h, 0) + 1) % (length(h) + 1), chains) AS first
        FROM chained
    ),
    ended AS
    (
        SELECT
            *,
            if(mode = 'strict_order',
                arrayFirstIndex((c, i) -> i > first[1] AND (bitAnd(c, 15) = 0
                    OR (bitAnd(c, 15) >= 2 AND (first[bitAnd(c, 15) - 1] = 0 OR i < first[bitAnd(c, 15) - 1]))),
                    matches, arrayEnumerate(matches)),
                if(mode = 'strict_deduplication',
                    arrayFirstIndex((c, i) -> bitAnd(c, 15) >= 2 AND first[bitAnd(c, 15)] > 0 AND i > first[bitAnd(c, 15)],
                        matches, arrayEnumerate(matches)),
                    0)) AS stop_at
        FROM firsts
    ),
    leveled AS
    (
        SELECT *, toUInt8(arrayCount(r -> r > 0 AND (stop_at = 0 OR r < stop_at), first)) AS level
        FROM ended
    ),
    paths AS
    (
        SELECT
            breakdown,
            level,
            arrayPopFront(arrayDifference(arrayMap(i -> bitShiftRight(matches[i], 4),
                arrayFold((acc, k) -> arrayPushFront(acc, bitAnd(chains[k][acc[1]], 0xFFFFFFFF)),
                    arrayReverse(range(1, level)), [toUInt64(first[level])]))))
                AS gaps
        FROM leveled
    )
SELECT
    breakdown,
    toUInt8(step) AS step,
    steps[step] AS step_name,
    reached_by[step] AS users,
    round(users / greatest(reached_by[greatest(step - 1, 1)], 1), 4) AS conversion_from_previous,
    round(users / reached_by[1], 4) AS conversion_overall,
    medians[step - 1] AS median_seconds_from_previous
FROM
(
    SELECT
        breakdown,
        sumForEach(arrayWithConstant(level, toUInt64(1))) AS reached_by,
        quantileExactInclusiveForEach(0.5)(gaps) AS medians
    FROM paths
    GROUP BY breakdown
)
ARRAY JOIN range(1, step_count + 1) AS step
ORDER BY breakdown ASC, step ASC
