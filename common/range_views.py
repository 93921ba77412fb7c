"""Range views: any time range answered exactly from an hourly aggregate projection.

A projection declared with `range_view` groups by `toStartOfHour(timestamp) AS hour` and
holds its distinct counts as `uniqExactState` sets. Its view, a parameterized view of the
same name, gives the projection's columns per hour for `[start_date, end_date]`: the hours
wholly in range from the projection (a few rows per hour, whatever the traffic), the cut
hours at either end aggregated from their rows (at most two hours of them). Both halves
carry the same columns, so a query over the view merges them as if one table had answered:
counts add, states merge (`uniqExactMerge`), a `max` is the larger of the two — exactly the
rows' answer for any range. services/query/sql/README.md shows the pattern from the SQL side.

Each such projection that groups by more than the hour also has a totals view,
`<name>_total`: the same two halves grouped by every key but the hour, for an endpoint that
wants the range's total per key and not its hours. Reading an aggregate projection
aggregates its rows on the query's keys anyway: grouped by hour, that makes a state per key
and hour, which the endpoint then merges a second time; without the hour, the whole hours'
rows merge straight into one state per key, so each hourly set is merged once, not twice.
"""

from __future__ import annotations

from dataclasses import dataclass

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


# The hour item every range view's projection selects; the totals view bounds the range by
# it (named in WITH, so both halves filter as the hourly view does) but does not group by it.
HOUR = "toStartOfHour(timestamp) AS hour"
TOTAL_SUFFIX = "_total"


@dataclass(frozen=True)
class RangeView:
    """The view of one projection: its name and the projection's `SELECT … GROUP BY …`;
    `total` for the totals view (`<projection>_total`, grouped by every key but the hour)."""

    name: str
    query: str
    total: bool = False

    @classmethod
    def of(cls, projection: str, query: str) -> tuple[RangeView, ...]:
        """The hourly view of a projection, and its totals view where it groups by more
        than the hour (grouped by nothing, a total would be one row even for no rows)."""
        hourly = cls(projection, query)
        if not hourly._other_keys():
            return (hourly,)
        return hourly, cls(projection + TOTAL_SUFFIX, query, total=True)

    def _other_keys(self) -> list[str]:
        keys = self.query.partition(" GROUP BY ")[2]
        return [key.strip() for key in keys.split(",") if key.strip() != "hour"]

    def __post_init__(self) -> None:
        select, group_by, keys = self.query.partition(" GROUP BY ")
        if not group_by or not select.startswith("SELECT ") or "AS hour" not in select:
            raise ValueError(
                f"range view {self.name}: the projection must be `SELECT … "
                f"toStartOfHour(timestamp) AS hour … GROUP BY …, hour`, got {self.query!r}"
            )
        if "hour" not in (key.strip() for key in keys.split(",")):
            raise ValueError(f"range view {self.name}: the projection must group by hour")
        if f"{HOUR}, " not in select:
            raise ValueError(
                f"range view {self.name}: the projection must select `{HOUR}, ` before its "
                f"other columns' aggregates, got {self.query!r}"
            )

    def create_sql(self, table: str, view: str) -> str:
        """`CREATE OR REPLACE VIEW` of this view (`view`, qualified, `ON CLUSTER` included
        where it applies) over `table` (qualified). Idempotent, and a changed declaration
        replaces the old view."""
        select, _, keys = self.query.partition(" GROUP BY ")
        if self.total:
            select = f"WITH {HOUR} " + select.replace(f"{HOUR}, ", "", 1)
            keys = ", ".join(self._other_keys())
        return (
            f"CREATE OR REPLACE VIEW {view} AS\n"
            f"{select} FROM {table}\nWHERE {WHOLE_HOURS}\nGROUP BY {keys}\n"
            "UNION ALL\n"
            f"{select} FROM {table}\nWHERE {CUT_HOURS}\nGROUP BY {keys}"
        )
