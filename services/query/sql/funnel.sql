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
--   back through the steps once per user. Besides the rows, every call pays the engine's
--   parsing, analysis and planning of this text (tens of ms, whatever the rows): the parser
--   backtracks over nested calls, the analyzer copies an alias's expression at every use,
--   and each layer is a step of the plan. So a value used several times is a column of
--   the layer before it, and a step past those asked for, or a mode not asked for, is an
--   if() on the bound parameters whose dead branch the analyzer drops. It still analyzes
--   that branch first: measured on the 1 M benchmark data (2026-12-01), a call with no row
--   in range costs 66-86 ms, of which 15 are the read of `matched` and 10-20 the layers of
--   steps 4-8 of a 3-step call (with them cut from the text: 57-65 ms); a week's call
--   (156-188 ms) spends about 80 ms reading and grouping the rows. Planning, not rows, is
--   most of a small call's cost.
WITH
    {steps:Array(String)} AS steps,
    length(steps) AS step_count,
    {window_seconds:Int32} AS window_length,
    {mode:String} AS mode,
    -- Per user: the breakdown value, and the matches sorted in (time, step) order, each
    -- packed in a number, time * 16 + step (step 0: an event matching no step); st, ts and
    -- match_no are each match's step, time and index, which every layer below reads.
    matched AS
    (
        SELECT
            breakdown,
            arrayMap(c -> toUInt8(bitAnd(c, 15)), matches) AS st,
            arrayMap(c -> bitShiftRight(c, 4), matches) AS ts,
            arrayEnumerate(matches) AS match_no
        FROM
        (
            SELECT
                breakdown,
                -- A key given at several places in steps matches at each (the read below
                -- keeps its first place only): repeated here, when steps repeat a value.
                arraySort(if(length(arrayDistinct(steps)) = step_count, codes, arrayFlatten(arrayMap(
                    c -> arrayMap(p -> bitOr(bitAnd(c, bitNot(toUInt64(15))), p),
                        if(bitAnd(c, 15) = 0, [toUInt64(0)],
                            arrayFilter(j -> steps[j] = steps[bitAnd(c, 15)], range(1, step_count + 1)))),
                    codes)))) AS matches
            FROM
            (
                SELECT
                    user_key,
                    -- Only a breakdown asked for is computed. The smallest (time, value) is
                    -- the smallest text of the time's four bytes, most significant first,
                    -- followed by the value: a minimum of strings costs half that of tuples.
                    if({breakdown:String} = 'none', '',
                        substring(minIf(concat(reverse(reinterpretAsFixedString(toUInt32(timestamp))), dimension),
                            key = steps[1] AND {breakdown:String} != 'none'), 5))
                        AS breakdown,
                    groupArray(toUInt64(toUInt32(timestamp)) * 16 + indexOf(steps, key)) AS codes
                FROM
                (
                    SELECT
                        -- A user's key: on chDB its id's number, whose column reads in
                        -- half the time of the ids' text (a week at 10 M: 1.9 M matches
                        -- grouped by user in 220 ms instead of 310); as text, as the other
                        -- branch's ids are: one branch reads rows, so the two never meet.
                        /*numbered*/ toString(_pipit_user_id_number) /*server: user_id */ AS user_key,
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

                    -- The same read of the other datasource: one SELECT each, since their
                    -- columns differ (clickstream has no country) and the source parameter
                    -- leaves one reading rows.
                    UNION ALL

                    SELECT
                        user_id AS user_key,
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
                GROUP BY user_key
                HAVING countIf(key = steps[1]) > 0
            )
        )
    ),
    -- chain_k[i]: the chain held for step k after match i, as its step-1 time * 2^32 + the
    -- index of its step-k match (so the match before it is chain_(k-1)'s at that index), 0
    -- while there is none. A step past the last one asked for is an empty array (the
    -- analyzer keeps only the if() branch the bound steps choose, so it costs nothing).
    -- One UInt64 a match (not the chain's every time packed wide): the layers' arithmetic is
    -- on machine words, and the path is followed back once per user, below.
    -- held_2 … held_8 are alike by design (tools list them as repeats): SQL has no loop over
    -- the steps, and a layer per step is what runs fastest (an arrayFold over the steps,
    -- the shortest text, copies every user's chains at each step: at 10 M events that cost
    -- more CPU than its shorter analysis saved). They differ only in k and k - 1; a change to
    -- one is a change to all seven.
    held_1 AS
    (
        SELECT
            *,
            -- (A match at second 0 starts no chain, as when the chain was its times.)
            arrayFill(x -> x > 0, arrayMap((s, t, i) -> if(s = 1 AND t > 0,
                bitOr(bitShiftLeft(toUInt64(t), 32), i), toUInt64(0)), st, ts, match_no))
                AS chain_1
        FROM matched
    ),
    held_2 AS
    (
        SELECT
            *,
            (countEqual(chain_1, 0) + 1) % (length(chain_1) + 1) AS first_1,
            if(step_count < 2, [], arrayFill(x -> x > 0, arrayMap(
                (s, h, t, i) -> if(s = 2 AND h > 0 AND t <= bitShiftRight(h, 32) + window_length,
                    bitOr(bitAnd(h, 0xFFFFFFFF00000000), i), toUInt64(0)),
                st, chain_1, ts, match_no))) AS chain_2
        FROM held_1
    ),
    held_3 AS
    (
        SELECT
            *,
            (countEqual(chain_2, 0) + 1) % (length(chain_2) + 1) AS first_2,
            if(step_count < 3, [], arrayFill(x -> x > 0, arrayMap(
                (s, h, t, i) -> if(s = 3 AND h > 0 AND t <= bitShiftRight(h, 32) + window_length,
                    bitOr(bitAnd(h, 0xFFFFFFFF00000000), i), toUInt64(0)),
                st, chain_2, ts, match_no))) AS chain_3
        FROM held_2
    ),
    held_4 AS
    (
        SELECT
            *,
            (countEqual(chain_3, 0) + 1) % (length(chain_3) + 1) AS first_3,
            if(step_count < 4, [], arrayFill(x -> x > 0, arrayMap(
                (s, h, t, i) -> if(s = 4 AND h > 0 AND t <= bitShiftRight(h, 32) + window_length,
                    bitOr(bitAnd(h, 0xFFFFFFFF00000000), i), toUInt64(0)),
                st, chain_3, ts, match_no))) AS chain_4
        FROM held_3
    ),
    held_5 AS
    (
        SELECT
            *,
            (countEqual(chain_4, 0) + 1) % (length(chain_4) + 1) AS first_4,
            if(step_count < 5, [], arrayFill(x -> x > 0, arrayMap(
                (s, h, t, i) -> if(s = 5 AND h > 0 AND t <= bitShiftRight(h, 32) + window_length,
                    bitOr(bitAnd(h, 0xFFFFFFFF00000000), i), toUInt64(0)),
                st, chain_4, ts, match_no))) AS chain_5
        FROM held_4
    ),
    held_6 AS
    (
        SELECT
            *,
            (countEqual(chain_5, 0) + 1) % (length(chain_5) + 1) AS first_5,
            if(step_count < 6, [], arrayFill(x -> x > 0, arrayMap(
                (s, h, t, i) -> if(s = 6 AND h > 0 AND t <= bitShiftRight(h, 32) + window_length,
                    bitOr(bitAnd(h, 0xFFFFFFFF00000000), i), toUInt64(0)),
                st, chain_5, ts, match_no))) AS chain_6
        FROM held_5
    ),
    held_7 AS
    (
        SELECT
            *,
            (countEqual(chain_6, 0) + 1) % (length(chain_6) + 1) AS first_6,
            if(step_count < 7, [], arrayFill(x -> x > 0, arrayMap(
                (s, h, t, i) -> if(s = 7 AND h > 0 AND t <= bitShiftRight(h, 32) + window_length,
                    bitOr(bitAnd(h, 0xFFFFFFFF00000000), i), toUInt64(0)),
                st, chain_6, ts, match_no))) AS chain_7
        FROM held_6
    ),
    held_8 AS
    (
        SELECT
            *,
            (countEqual(chain_7, 0) + 1) % (length(chain_7) + 1) AS first_7,
            if(step_count < 8, [], arrayFill(x -> x > 0, arrayMap(
                (s, h, t, i) -> if(s = 8 AND h > 0 AND t <= bitShiftRight(h, 32) + window_length,
                    bitOr(bitAnd(h, 0xFFFFFFFF00000000), i), toUInt64(0)),
                st, chain_7, ts, match_no))) AS chain_8
        FROM held_7
    ),
    -- first[k]: the match that first extends a chain to step k (0: none), were the search
    -- never stopped: the chain is filled forward, so the zeros before that match are its
    -- index - 1 (an empty chain, a step not asked for, gives 0 too). first_k is counted in
    -- the layer after chain_k's, where chain_k is a column: in its own layer the alias
    -- would copy chain_k's whole expression into first_k's.
    firsts AS
    (
        SELECT
            breakdown, st, ts, match_no,
            chain_1, chain_2, chain_3, chain_4, chain_5, chain_6, chain_7,
            [first_1, first_2, first_3, first_4, first_5, first_6, first_7,
                (countEqual(chain_8, 0) + 1) % (length(chain_8) + 1)] AS first
        FROM held_8
    ),
    -- Per user, the match a strict mode stops at (0: none). A chain, once held for a step,
    -- is held for good, so "no chain for step k yet" is "before first[k]". Each mode's
    -- search is an if() on the bound mode: the analyzer keeps the one asked for.
    ended AS
    (
        SELECT
            *,
            if(mode = 'strict_order',
                arrayFirstIndex(
                    (s, i) -> i > first[1] AND (s = 0 OR (s >= 2 AND (first[s - 1] = 0 OR i < first[s - 1]))),
                    st, match_no),
                if(mode = 'strict_deduplication',
                    arrayFirstIndex((s, i) -> s >= 2 AND first[s] > 0 AND i > first[s], st, match_no),
                    0)) AS stop_at
        FROM firsts
    ),
    -- Per user, the level: the steps whose first chain came before the stop.
    leveled AS
    (
        SELECT *, toUInt8(arrayCount(r -> r > 0 AND (stop_at = 0 OR r < stop_at), first)) AS level
        FROM ended
    ),
    -- Per user, the path (the first chain that reached the level) followed back from its last
    -- match, at_k being its step-k match (0 past the level), and the gaps between its steps:
    -- the level is one more than their count.
    paths AS
    (
        SELECT
            breakdown,
            level,
            if(level = 8, first[8], 0) AS at_8,
            if(level = 7, first[7], bitAnd(chain_7[at_8], 0xFFFFFFFF)) AS at_7,
            if(level = 6, first[6], bitAnd(chain_6[at_7], 0xFFFFFFFF)) AS at_6,
            if(level = 5, first[5], bitAnd(chain_5[at_6], 0xFFFFFFFF)) AS at_5,
            if(level = 4, first[4], bitAnd(chain_4[at_5], 0xFFFFFFFF)) AS at_4,
            if(level = 3, first[3], bitAnd(chain_3[at_4], 0xFFFFFFFF)) AS at_3,
            if(level = 2, first[2], bitAnd(chain_2[at_3], 0xFFFFFFFF)) AS at_2,
            if(level = 1, first[1], bitAnd(chain_1[at_2], 0xFFFFFFFF)) AS at_1,
            arraySlice(arrayDifference(
                [ts[at_1], ts[at_2], ts[at_3], ts[at_4], ts[at_5], ts[at_6], ts[at_7], ts[at_8]]),
                2, level - 1) AS gaps
        FROM leveled
    )
-- An index past an array's end reads 0: a step no user reached has 0 users and median 0,
-- and step 1 (index 0) has median 0; a previous step of 0 users has 0 after it too.
SELECT
    breakdown,
    toUInt8(step) AS step,
    steps[step] AS step_name,
    reached_by[step] AS users,
    round(users / greatest(reached_by[greatest(step - 1, 1)], 1), 4) AS conversion_from_previous,
    round(users / greatest(reached_by[1], 1), 4) AS conversion_overall,
    medians[step - 1] AS median_seconds_from_previous
FROM
(
    -- Per breakdown value, one row of per-step arrays: users who reached each step, and the
    -- median of the gaps before each step (the i-th gap exists for users past step i).
    SELECT
        breakdown,
        sumForEach(arrayWithConstant(level, toUInt64(1))) AS reached_by,
        quantileExactInclusiveForEach(0.5)(gaps) AS medians
    FROM paths
    GROUP BY breakdown
)
ARRAY JOIN range(1, step_count + 1) AS step
ORDER BY breakdown ASC, step ASC
