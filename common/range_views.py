"""Range views: any time range answered exactly from an hourly aggregate projection.

A projection declared with `range_view` groups by `toStartOfHour(timestamp) AS hour` and
holds its distinct counts as mergeable states: bitmaps of dense id numbers
(`groupBitmapState`, common/id_numbers.py) on chDB, `uniqExactState` sets of the ids on a
ClickHouse server. Its view, a parameterized view of the
same name, gives the projection's columns per hour for `[start_date, end_date]`: the hours
wholly in range from the projection (a few rows per hour, whatever the traffic), the cut
hours at either end aggregated from their rows (at most two hours of them). Both halves
carry the same columns, so a query over the view merges them as if one table had answered:
counts add, states merge (`groupBitmapMerge`), a `max` is the larger of the two — exactly the
rows' answer for any range. services/query/sql/README.md shows the pattern from the SQL side.

A view that folds the hours (`fold_hours`) groups by the projection's other keys only: the
engine merges the whole hours' states per key as it reads the projection, so an endpoint
that never reads the hour gets one row per key and half, not one per key and hour.
"""

from __future__ import annotations

from dataclasses import dataclass

from common import id_numbers

# The bounds arrive as the view's parameters; every hour is judged from them alone, so
# the whole-hour half filters on the projection's key and nothing else.
_LAST_HOUR = "toStartOfHour({end_date:DateTime})"
# An end on the last second of its hour ends that hour. `+ 1` wraps the last DateTime
# (2106-02-07 06:28:15, the default end) to 1970, so it ends its hour too.
_ENDS_HOUR = f"toStartOfHour({{end_date:DateTime}} + 1) != {_LAST_HOUR}"
WHOLE_HOURS = (
    f"hour >= {{start_date:DateTime}}"
    f" AND (hour < {_LAST_HOUR} OR (hour = {_LAST_HOUR} AND {_ENDS_HOUR}))"
)
CUT_HOURS = (
    "timestamp >= {start_date:DateTime} AND timestamp <= {end_date:DateTime}"
    f" AND (hour < {{start_date:DateTime}} OR (hour = {_LAST_HOUR} AND NOT ({_ENDS_HOUR})))"
)


# A folding view drops the hour from its columns and keys, so its projection names the
# hour as this very item, which can be cut out of the SELECT without parsing it.
_HOUR_ITEM = "toStartOfHour(timestamp) AS hour"


@dataclass(frozen=True)
class RangeView:
    """The view of one projection: its name and the projection's `SELECT … GROUP BY …`;
    `fold_hours` when the view groups by the keys other than `hour`."""

    name: str
    query: str
    fold_hours: bool = False

    def __post_init__(self) -> None:
        select, group_by, keys = self.query.partition(" GROUP BY ")
        if not group_by or not select.startswith("SELECT ") or "AS hour" not in select:
            raise ValueError(
                f"range view {self.name}: the projection must be `SELECT … "
                f"toStartOfHour(timestamp) AS hour … GROUP BY …, hour`, got {self.query!r}"
            )
        if "hour" not in (key.strip() for key in keys.split(",")):
            raise ValueError(f"range view {self.name}: the projection must group by hour")
        if self.fold_hours and (_without_hour(select) is None or len(keys.split(",")) < 2):
            raise ValueError(
                f"range view {self.name}: a view that folds the hours needs a projection "
                f"that selects `{_HOUR_ITEM}` as one of its items and groups by another "
                "key too"
            )

    def create_sql(self, table: str, view: str, *, server_form: bool = False) -> str:
        """`CREATE OR REPLACE VIEW` of this view (`view`, qualified, `ON CLUSTER` included
        where it applies) over `table` (qualified). Idempotent, and a changed declaration
        replaces the old view. `server_form`: over a table whose ids have no numbers (a
        ClickHouse server), as its projection is there."""
        query = id_numbers.server_form(self.query) if server_form else self.query
        select, _, keys = query.partition(" GROUP BY ")
        if self.fold_hours:
            # The hour stays the name the bounds filter on, but is no column of the view.
            select = f"WITH {_HOUR_ITEM} SELECT {_without_hour(select)}"
            keys = ", ".join(key.strip() for key in keys.split(",") if key.strip() != "hour")
        return (
            f"CREATE OR REPLACE VIEW {view} AS\n"
            f"{select} FROM {table}\nWHERE {WHOLE_HOURS}\nGROUP BY {keys}\n"
            "UNION ALL\n"
            f"{select} FROM {table}\nWHERE {CUT_HOURS}\nGROUP BY {keys}"
        )


def _without_hour(select: str) -> str | None:
    """The items of `select` (`SELECT a, b, …`) with the hour's cut out, or None unless
    the hour is one of them, once. Splitting at `, ` and joining again gives the text
    back whatever commas the items hold, and only the item itself equals the hour's."""
    pieces = select.removeprefix("SELECT ").split(", ")
    if pieces.count(_HOUR_ITEM) != 1:
        return None
    pieces.remove(_HOUR_ITEM)
    return ", ".join(pieces)
