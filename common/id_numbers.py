"""Dense numbers for ids, so that distinct counts are bitmaps (chDB only).

A datasource's `numbered_columns` (user_id, session_id) each get a hidden column
`_pipit_<name>_number`: UInt32, MATERIALIZED from a lookup, so `SELECT *`, the schema and the
appends are unchanged. Its projections then hold `groupBitmapState(_pipit_<name>_number)`, and
merging a month of hourly bitmaps of numbers that were handed out in order of first sight
(an hour's ids lie close together) is an order of magnitude cheaper than merging hash sets
of the strings, and as exact.

A number is handed out once and kept forever, in two tables per database:

- `_pipit_numbers`, a MergeTree: every (column, id, number) ever handed out, durable;
- `_pipit_number_of`, a Join table the lookup reads (`joinGet`), held in memory, fed from
  the first by a materialized view and filled from it again when the process starts.

The writer numbers a batch's new ids before inserting it, asking the lookup which ids
have none (common/warehouse/numbering.py): chDB writes a data path from one process and one
lane (common/warehouse/embedded.py), so numbering never races. Bulk imports, the Events API
and the streaming RPC all insert through that one path. Every row, however it comes, gets
its numbers from the lookup: a batch once the writer has numbered its ids, an `INSERT …
SELECT` into a numbered table of ids numbered already (as any copied from another numbered
table are), and the older rows of a table made before numbering once the upgrade has
numbered the ids it holds (`number_sql`). The hidden column refuses an id
that has no number (the insert fails) rather than store 0, which would make counts
quietly wrong.

On a ClickHouse server several ingest replicas write at once, and handing out max + 1 would
race, so nothing is numbered there: `server_form` reads each bitmap of numbers as the
`uniqExact` set of the ids themselves (same answers, the older cost), and any other use of
a number as the id it stands for (a projection sorted by sessions' numbers, which puts a
site's newest sessions together whatever their ids look like, is sorted by the ids there).
A pipe that does set algebra on the bitmaps (`retention`: a cohort less the users seen
before it) has no `uniqExact` equivalent: it marks that query `/*numbered*/ … /*server:
<the server's query> */`, and `server_form` keeps the query in the comment.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

NUMBERS = "_pipit_numbers"
NUMBER_OF = "_pipit_number_of"
FEED = "_pipit_numbers_feed"
PREFIX = "_pipit_"
SUFFIX = "_number"


def column_name(column: str) -> str:
    """The hidden column that holds `column`'s numbers (Pipit's own: `_pipit_`, so a
    deploy never takes it for a column of the project's)."""
    return f"{PREFIX}{column}{SUFFIX}"


def lookup(database: str, column: str, key: str) -> str:
    """The number of `column`'s id `key` (an expression), 0 when it has none."""
    return f"joinGet('{database}.{NUMBER_OF}', 'number', '{column}', {key})"


def highest(database: str, column: str) -> str:
    """`column`'s highest number kept, 0 when none, as a scalar subquery: the table is in
    (column, number) order, so it reads the last granule."""
    return (
        f"ifNull((SELECT number FROM `{database}`.`{NUMBERS}` "  # noqa: S608 - our own names
        f"WHERE column = '{column}' ORDER BY column DESC, number DESC LIMIT 1), 0)"
    )


def number_column(database: str, column: str) -> str:
    """The definition of `column`'s hidden number column in a table of `database`."""
    number = lookup(database, column, f"`{column}`")
    return (
        f"`{column_name(column)}` UInt32 MATERIALIZED "
        f"{number} + throwIf({number} = 0, '{column} has no number')"
    )


def schema_sql(database: str) -> list[str]:
    """The numbering tables of `database`, idempotently. The lookup's keys are hashed
    (128 bits, as uniqExact hashes strings), so it is read by joinGet only."""
    return [
        f"CREATE TABLE IF NOT EXISTS `{database}`.`{NUMBERS}` "
        "(column LowCardinality(String), id String, number UInt32) "
        "ENGINE = MergeTree ORDER BY (column, number)",
        f"CREATE TABLE IF NOT EXISTS `{database}`.`{NUMBER_OF}` "
        "(column LowCardinality(String), id String, number UInt32) "
        "ENGINE = Join(ANY, LEFT, column, id) SETTINGS persistent = 0",
        f"CREATE MATERIALIZED VIEW IF NOT EXISTS `{database}`.`{FEED}` "  # noqa: S608 - ours
        f"TO `{database}`.`{NUMBER_OF}` AS SELECT column, id, number "
        f"FROM `{database}`.`{NUMBERS}`",
    ]


def refill_sql(database: str) -> str:
    """Fills the lookup from the durable table (once per process: it starts empty)."""
    return (
        f"INSERT INTO `{database}`.`{NUMBER_OF}` "  # noqa: S608 - our own names
        f"SELECT column, id, number FROM `{database}`.`{NUMBERS}`"
    )


def mend_sql(database: str, column: str, after: int) -> str:
    """Adds to the lookup the numbers of `column` kept after `after` that it lacks: when a
    batch failed after its new numbers' insert began, which may have stored them in
    `_pipit_numbers` without its view feeding them on (the lookup would then call those
    ids new, and a retry number them twice). Only the column's highest numbers are read:
    the table is in (column, number) order."""
    return (
        f"INSERT INTO `{database}`.`{NUMBER_OF}` "  # noqa: S608 - our own names
        f"SELECT column, id, number FROM `{database}`.`{NUMBERS}` "
        f"WHERE column = '{column}' AND number > {int(after)} "
        f"AND joinGet('{database}.{NUMBER_OF}', 'number', column, id) = 0"
    )


def number_sql(database: str, columns: Sequence[str], source: str, first: str) -> str:
    """Numbers the ids of `columns` in `source` (a FROM clause) that have no number yet,
    each column's after its highest, in the order `first` (an expression over a row) first
    sees them."""
    pairs = ", ".join(f"('{column}', `{column}`)" for column in columns)
    last = " UNION ALL ".join(
        f"SELECT '{column}' AS column, {highest(database, column)} AS last" for column in columns
    )
    return (
        f"INSERT INTO `{database}`.`{NUMBERS}` (column, id, number)\n"  # noqa: S608 - ours
        "SELECT column, id, toUInt32(known.last + row_number() OVER "
        "(PARTITION BY column ORDER BY first, id))\n"
        "FROM (\n"
        "    SELECT pair.1 AS column, pair.2 AS id, min(seen) AS first\n"
        f"    FROM (SELECT arrayJoin([{pairs}]) AS pair, {first} AS seen FROM {source})\n"
        f"    WHERE joinGet('{database}.{NUMBER_OF}', 'number', pair.1, pair.2) = 0\n"
        "    GROUP BY column, id\n"
        f") AS new\nINNER JOIN ({last}) AS known USING column"
    )


def numbered(name: str, default_expression: str) -> str | None:
    """The column a table's hidden column numbers, from its name and expression (what
    `number_column` wrote), or None for any other column."""
    if not name.startswith(PREFIX) or f".{NUMBER_OF}'" not in default_expression:
        return None
    return name.removeprefix(PREFIX).removesuffix(SUFFIX)


_STATE = re.compile(rf"groupBitmapState\({PREFIX}([A-Za-z_][A-Za-z0-9_]*){SUFFIX}\)")
_MERGE = re.compile(r"\bgroupBitmapMerge\(")
_NUMBER = re.compile(rf"\b{PREFIX}([A-Za-z_][A-Za-z0-9_]*?){SUFFIX}\b")
_NUMBERED_QUERY = re.compile(r"/\*numbered\*/.*?/\*server:(.*?)\*/", re.DOTALL)


def server_form(sql: str) -> str:
    """A projection, range view or built-in pipe as a ClickHouse server runs it, where
    nothing is numbered: `groupBitmapState(_pipit_<c>_number)` becomes `uniqExactState(<c>)` and
    `groupBitmapMerge(` becomes `uniqExactMerge(` — the exact distinct count either way; any
    other `_pipit_<c>_number` becomes `<c>`, the id it stands for (a lookup or a key by the
    number is one by the id); a query marked `/*numbered*/ … /*server: … */` becomes the one
    in the comment (where numbers are used as numbers: bitmaps intersected, say)."""
    sql = _NUMBERED_QUERY.sub(lambda found: found[1], sql)
    sql = _MERGE.sub("uniqExactMerge(", _STATE.sub(r"uniqExactState(\1)", sql))
    return _NUMBER.sub(r"\1", sql)
