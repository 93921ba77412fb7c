"""The attack corpus for the Query API: queries a hostile token would send to read files,
reach the network, write files, read other tables, change settings, run more than one
statement or learn about the host, each also nested where a checker could miss it.

Placeholders, filled in by the tests: {secret} a file holding a canary secret, {out} a path
that must never be created, {tokens} the token file, {listener} host:port of a socket that
must never be connected to, {victim} the datasource the read-only token may read, {other} a
datasource it may not, {database} Pipit's database."""

from __future__ import annotations

# Expressions that must never be evaluated, whatever query they appear in.
EXPRESSIONS = {
    "file": "file('{secret}')",
    "file-environ": "toUInt8(file('/proc/self/environ'))",
    "file-upper": "FILE('{secret}')",
    "file-quoted": "`file`('{secret}')",
    "version": "version()",
    "getSetting": "getSetting('max_memory_usage')",
    "filesystemAvailable": "filesystemAvailable()",
    "hostName": "hostName()",
    "fqdn": "FQDN()",
    "currentUser": "currentUser()",
    "currentDatabase": "currentDatabase()",
    "uptime": "uptime()",
    "serverUUID": "serverUUID()",
    "getMacro": "getMacro('shard')",
    "getServerPort": "getServerPort('tcp_port')",
    "buildId": "buildId()",
    "dictGet": "dictGet('d', 'x', toUInt64(1))",
    "joinGet": "joinGet('{other}', 'user_id', 'u1')",
    "hasColumnInTable": "hasColumnInTable('system', 'users', 'name')",
    "sleep": "sleep(3)",
    "sleepEachRow": "sleepEachRow(1)",
    "throwIf": "throwIf(1, 'boom')",
    "scalar-subquery-file": "(SELECT file('{secret}'))",
    "scalar-subquery-other": "(SELECT count() FROM {other})",
    "scalar-subquery-system": "(SELECT count() FROM system.tables)",
    "in-other-table": "user_id IN {other}",
    "in-system-table": "toString(1) IN system.users",
}

# Where each expression is put.
NESTINGS = {
    "plain": "SELECT {expr} FROM {victim} LIMIT 1",
    "no-from": "SELECT {expr}",
    "cte": "WITH x AS (SELECT {expr} AS v FROM {victim}) SELECT * FROM x",
    "with-expression": "WITH {expr} AS v SELECT v FROM {victim}",
    "subquery": "SELECT * FROM (SELECT {expr} AS v FROM {victim})",
    "lambda": "SELECT arrayMap(p -> {expr}, ['a']) FROM {victim} LIMIT 1",
    "default-argument": "SELECT ifNull(NULL, {expr}) FROM {victim} LIMIT 1",
    "where": "SELECT count() FROM {victim} WHERE {expr} IS NOT NULL",
}

# Table sources that must never be read.
SOURCES = {
    "file": "file('{secret}', 'LineAsString')",
    "url": "url('http://{listener}/x', 'LineAsString')",
    "s3": "s3('http://{listener}/bucket/x.csv', 'CSV', 'a String')",
    "remote": "remote('{listener}', system.tables)",
    "remoteSecure": "remoteSecure('{listener}', system.tables)",
    "input": "input('a String')",
    "numbers": "numbers(1000000000000)",
    "generateRandom": "generateRandom('a String')",
    "dictionary": "dictionary('d')",
    "merge": "merge('system', '.*')",
    "executable": "executable('cat', 'LineAsString', 'x String')",
    "format": "format(LineAsString, 'x')",
    "system-tables": "system.tables",
    "system-columns": "system.columns",
    "system-settings": "system.settings",
    "system-quoted": "`system.tables`",
    "system-backquoted-parts": "`system`.`tables`",
    "information-schema": "INFORMATION_SCHEMA.TABLES",
    "information-schema-lower": "information_schema.columns",
    "other-datasource": "{other}",
    "other-qualified": "{database}.{other}",
    "other-quarantine": "{other}_quarantine",
    # The range views are parameterized views over a datasource's projections, and each has
    # a sibling for whole ranges (common/range_views.py): not datasources, so never read,
    # whether the datasource beneath is another or the one the token may read.
    "other-range-view": (
        "activity_bitmap_days(start_date = '1970-01-01 00:00:00', end_date = '2106-02-07 06:28:15')"
    ),
    # app_events' view by day (active_users, retention), declared after the others.
    "other-range-view-by-day": (
        "app_bitmap_days(start_date = '1970-01-01 00:00:00', end_date = '2106-02-07 06:28:15')"
    ),
    "other-range-view-sibling": (
        "activity_bitmap_days__whole(start_date = '1970-01-01 00:00:00', "
        "end_date = '2106-02-07 06:28:15')"
    ),
    "own-range-view-sibling": (
        "ab_bitmap_range__whole(start_date = '1970-01-01 00:00:00', "
        "end_date = '2106-02-07 06:28:15')"
    ),
    # A view that reads months has a second sibling, its month tier alone.
    "other-range-view-months": (
        "feature_bitmap_range__months(start_date = '1970-01-01 00:00:00', "
        "end_date = '2106-02-07 06:28:15')"
    ),
    "own-range-view-months": (
        "ab_segment_bitmap_hours__months(start_date = '1970-01-01 00:00:00', "
        "end_date = '2106-02-07 06:28:15')"
    ),
    # And a table of each view's columns that holds no row, for a call of no range: no
    # datasource, though it reads nothing, so never named by a token's SQL either.
    "range-view-empty-table": "_pipit_empty_activity_bitmap_days",
    "range-view-empty-table-comment": "_pipit_empty_ab_bitmap_range/*(start_date = now())*/",
    # The page moves chDB keeps beside clickstream_events (common/page_moves.py): no
    # datasource either, so never read, whatever the token may read.
    "page-moves": "_pipit_page_move_counts_clickstream_events",
    # And the sessions waiting for their moves, with the view that records them.
    "pending-moves": "_pipit_pending_moves_clickstream_events",
    "pending-moves-view": "_pipit_pending_spans_clickstream_events_view",
    "retired-pending-moves-view": "_pipit_pending_moves_clickstream_events_view",
    # The mark a truncate or replace leaves until the moves are made again, and the table
    # an older release kept them in (a start drops it).
    "stale-moves": "_pipit_stale_moves_clickstream_events",
    "retired-page-moves": "_pipit_page_moves_clickstream_events",
    # Each session's span of page views, and the view an older release extended it with.
    "session-spans": "_pipit_session_spans_clickstream_events",
    "retired-session-spans-view": "_pipit_session_spans_clickstream_events_view",
    # The copy a `CREATE OR REPLACE TABLE` builds beside the table it replaces, which a
    # process stopped midway leaves until the next start drops it: no datasource either.
    "replace-leftover": "`_tmp_replace_9f3c2a_1`",
    "replace-leftover-dotted": "`.tmp_replace_77e1b0_2`",
}

SOURCE_NESTINGS = {
    "plain": "SELECT * FROM {source}",
    "cte": "WITH x AS (SELECT * FROM {source}) SELECT * FROM x",
    "subquery": "SELECT * FROM (SELECT * FROM {source})",
    "join": "SELECT * FROM {victim} AS v JOIN {source} AS s ON 1 = 1",
    "union": "SELECT toString(1) AS a FROM {victim} UNION ALL SELECT toString(1) FROM {source}",
    "in-subquery": (
        "SELECT count() FROM {victim} WHERE user_id IN (SELECT toString(1) FROM {source})"
    ),
    "scalar": "SELECT (SELECT count() FROM {source}) FROM {victim}",
    "default-argument": "SELECT ifNull(NULL, (SELECT count() FROM {source})) FROM {victim}",
    "lambda": "SELECT arrayMap(p -> (SELECT count() FROM {source}), [1]) FROM {victim}",
}

# Whole statements.
STATEMENTS = {
    "outfile": "SELECT 1 FROM {victim} LIMIT 1 INTO OUTFILE '{out}'",
    "outfile-relative": "SELECT 1 FROM {victim} LIMIT 1 INTO OUTFILE 'pipit-probe.txt'",
    "outfile-append": "SELECT 1 FROM {victim} LIMIT 1 INTO OUTFILE '{out}' APPEND",
    "outfile-truncate": "SELECT 1 FROM {victim} LIMIT 1 INTO OUTFILE '{out}' TRUNCATE",
    "outfile-tokens": "SELECT 1 FROM {victim} LIMIT 1 INTO OUTFILE '{tokens}' TRUNCATE FORMAT CSV",
    "outfile-compressed": (
        "SELECT 1 FROM {victim} LIMIT 1 INTO OUTFILE '{out}' COMPRESSION 'gzip' LEVEL 1"
    ),
    "outfile-and-stdout": "SELECT 1 FROM {victim} INTO OUTFILE '{out}' AND STDOUT",
    "outfile-in-subquery": "SELECT * FROM (SELECT 1 FROM {victim} INTO OUTFILE '{out}')",
    "insert-function": "INSERT INTO FUNCTION file('{out}', 'CSV') SELECT 1",
    "insert": "INSERT INTO {victim} SELECT * FROM {victim}",
    "create": "CREATE TABLE pwned (a String) ENGINE = Memory",
    "drop": "DROP TABLE {victim}",
    "truncate": "TRUNCATE TABLE {victim}",
    "alter-delete": "ALTER TABLE {victim} DELETE WHERE 1",
    "set": "SET readonly = 0",
    "system-command": "SYSTEM FLUSH LOGS",
    "explain-optimize": "EXPLAIN AST optimize = 1 SELECT file('{secret}')",
    "explain-syntax": "EXPLAIN SYNTAX SELECT file('{secret}')",
    "show": "SHOW TABLES FROM system",
    "describe": "DESCRIBE TABLE {other}",
    "settings-timeout": "SELECT count() FROM {victim} SETTINGS max_execution_time = 1000",
    "settings-readonly": "SELECT count() FROM {victim} SETTINGS readonly = 0",
    "settings-memory": "SELECT count() FROM {victim} SETTINGS max_memory_usage = 0",
    "settings-in-subquery": (
        "SELECT * FROM (SELECT count() FROM {victim} SETTINGS max_threads = 64)"
    ),
    "format-template": (
        "SELECT 1 FROM {victim} FORMAT Template SETTINGS format_template_resultset = '{secret}'"
    ),
    "multi-file": "SELECT 1; SELECT file('{secret}')",
    "multi-insert": "SELECT 1; INSERT INTO FUNCTION file('{out}', 'CSV') SELECT 1",
    "multi-drop": "SELECT 1 FROM {victim}; DROP TABLE {victim}",
    "multi-comment": "SELECT 1 /* ; */; SELECT file('{secret}') -- ;",
    "breakout": "SELECT 1 FROM {victim}) ; SELECT file('{secret}') FROM (SELECT 1",
    "parameter": "SELECT {{p:String}} FROM {victim}",
    "apply": "SELECT * APPLY(file) FROM (SELECT '{secret}' AS a)",
    "newline-identifier": "SELECT 1 AS `a\n      Function plus` FROM {victim}",
    "newline-table": "SELECT * FROM `{victim}\n      TableIdentifier {victim}`",
    "cte-shadowing-internal": (
        "WITH {other} AS (SELECT * FROM {victim}) SELECT * FROM {other}_quarantine"
    ),
    # Pipes read as tables are bound ahead of the query as CTEs: a query's own CTE of a
    # pipe's name, or a pipe beside another datasource, still reads what it names.
    "pipe-shadowed-by-cte": (
        "WITH test_summary AS (SELECT * FROM {other}) SELECT * FROM test_summary"
    ),
    "pipe-and-other": "SELECT * FROM test_summary WHERE test_id IN (SELECT user_id FROM {other})",
    "pipe-format-smuggled": "SELECT * FROM test_summary FORMAT TSV SETTINGS max_threads = 8",
}


def corpus() -> dict[str, str]:
    """Every attack by id, with placeholders still in."""
    attacks = {}
    for name, expr in EXPRESSIONS.items():
        for where, template in NESTINGS.items():
            attacks[f"expr:{name}:{where}"] = template.replace("{expr}", expr)
    for name, source in SOURCES.items():
        for where, template in SOURCE_NESTINGS.items():
            attacks[f"source:{name}:{where}"] = template.replace("{source}", source)
    for name, statement in STATEMENTS.items():
        attacks[f"statement:{name}"] = statement
    return attacks


# Attacks that only read another datasource: refused for a token without its READ scope,
# answered for one with it (the admin token).
CROSS_DATASOURCE = frozenset(
    attack
    for attack in corpus()
    if any(
        part in attack
        for part in (
            "source:other-datasource:",
            "source:other-qualified:",
            "source:other-quarantine:",
            "expr:scalar-subquery-other:",
            "statement:cte-shadowing-internal",
            "statement:pipe-shadowed-by-cte",
            "statement:pipe-and-other",
        )
    )
)


# What the same tokens must still be able to do: analytics over the datasource they may read,
# in every shape the checker looks inside (so a checker that refused everything would fail).
LEGITIMATE = {
    "count": "SELECT count() AS n FROM {victim}",
    "constant": "SELECT 1 + 1 AS two, toDate('2023-06-15') AS d",
    "qualified": "SELECT count() AS n FROM {database}.{victim}",
    "cte": "WITH v AS (SELECT user_id FROM {victim}) SELECT count() AS n FROM v",
    "scalar-with": "WITH 2 AS k SELECT k * count() AS n FROM {victim}",
    "lambda": "SELECT arrayMap(x -> x * 2, [1, 2]) AS a, count() AS n FROM {victim}",
    "window": (
        "SELECT user_id, row_number() OVER (PARTITION BY variant ORDER BY user_id) AS r "
        "FROM {victim} ORDER BY user_id"
    ),
    "combinators": (
        "SELECT countIf(conversion = 1) AS c, uniqExactIf(user_id, revenue > 0) AS u, "
        "quantilesTDigest(0.5, 0.9)(revenue) AS q FROM {victim}"
    ),
    "states": (
        "SELECT sumMerge(s) AS total, uniqExactMerge(u) AS users FROM "
        "(SELECT variant, sumState(revenue) AS s, uniqExactState(user_id) AS u "
        "FROM {victim} GROUP BY variant)"
    ),
    "in-subquery": (
        "SELECT count() AS n FROM {victim} WHERE user_id IN (SELECT user_id FROM {victim})"
    ),
    "in-cte": "WITH v AS (SELECT user_id FROM {victim}) SELECT count() AS n FROM {victim} "
    "WHERE user_id IN v",
    "union": "SELECT user_id FROM {victim} UNION ALL SELECT user_id FROM {victim}",
    "join": "SELECT count() AS n FROM {victim} AS a JOIN {victim} AS b USING (user_id)",
    "quarantine": "SELECT count() AS n FROM {victim}_quarantine",
    "functions": (
        "SELECT toStartOfHour(timestamp) AS h, multiIf(variant = 'A', 1, 2) AS v, "
        "JSONExtractString('{{\"a\": \"b\"}}', 'a') AS j, lower(country) AS c, "
        "round(avg(revenue), 2) AS r FROM {victim} GROUP BY h, v, j, c ORDER BY h"
    ),
    "case-and-cast": (
        "SELECT CASE WHEN conversion = 1 THEN 'yes' ELSE 'no' END AS converted, "
        "revenue::String AS s, CAST(conversion AS UInt16) AS c FROM {victim} LIMIT 1"
    ),
    "trailing-semicolon": "SELECT count() AS n FROM {victim};",
    "comment": "SELECT count() AS n -- how many\nFROM {victim} /* all of them */",
}
