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
A projection declared with `range_months` also has a month tier (`<name>_months`, the same
query per UTC month), from which its totals view reads the months wholly in range.
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

# The month tier (a projection declared with `range_months`): a month wholly in range is
# read from the projection per month. Its bucket is taken in UTC whatever the session's or
# the server's zone, so the one written with the parts is the one the view asks for.
MONTH = "toStartOfMonth(timestamp, 'UTC') AS month"
MONTHS_SUFFIX = "_months"
_LAST_MONTH = "toStartOfMonth({end_date:DateTime}, 'UTC')"
# As for hours: an end on its month's last second ends that month; the last DateTime too.
_ENDS_MONTH = f"toStartOfMonth({{end_date:DateTime}} + 1, 'UTC') != {_LAST_MONTH}"


def _whole_months(month: str) -> str:
    return (
        f"{month} >= {{start_date:DateTime}}"
        f" AND ({month} < {_LAST_MONTH} OR ({month} = {_LAST_MONTH} AND {_ENDS_MONTH}))"
    )


WHOLE_MONTHS = _whole_months("month")
# The whole hours of the months that are not wholly in range. A cut hour lies in no whole
# month (a month starting at or after the start holds no hour before it; a month the end
# ends holds no hour the end cuts), so the three parts of a range never overlap.
_MONTH_OF_HOUR = "toStartOfMonth(hour, 'UTC')"
WHOLE_HOURS_OUTSIDE_MONTHS = f"{WHOLE_HOURS} AND NOT ({_whole_months(_MONTH_OF_HOUR)})"
# The engine rewrites `toStartOfMonth(timestamp) < x` as a bound on `timestamp` itself,
# which the month projection does not hold, and would read the rows instead.
_KEEP_MONTHS = "SETTINGS optimize_time_filter_with_preimage = 0"


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
    months: bool = False

    @classmethod
    def of(cls, projection: str, query: str, months: bool = False) -> tuple[RangeView, ...]:
        """The hourly view of a projection, and its totals view where it groups by more
        than the hour (grouped by nothing, a total would be one row even for no rows),
        reading whole months from the `<projection>_months` tier when `months`."""
        hourly = cls(projection, query)
        if not hourly._other_keys():
            if months:
                raise ValueError(f"range view {projection}: a month tier needs other keys")
            return (hourly,)
        return hourly, cls(projection + TOTAL_SUFFIX, query, total=True, months=months)

    def months_projection(self) -> str:
        """`<name> (<query>)` of the month tier: the projection's query per month."""
        select, _, keys = self.query.partition(" GROUP BY ")
        query = (
            select.replace(HOUR, MONTH, 1)
            + " GROUP BY "
            + ", ".join([*self._other_keys(), "month"])
        )
        return f"`{self.name.removesuffix(TOTAL_SUFFIX)}{MONTHS_SUFFIX}` ({query})"

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
            columns = select.replace(f"{HOUR}, ", "", 1).removeprefix("SELECT ")
            select = f"WITH {HOUR} SELECT {columns}"
            keys = ", ".join(self._other_keys())
            if self.months:
                by_month = select.replace(HOUR, MONTH, 1)
                return (
                    f"CREATE OR REPLACE VIEW {view} AS\n"
                    f"{by_month} FROM {table}\nWHERE {WHOLE_MONTHS}\n"
                    f"GROUP BY {keys}\n{_KEEP_MONTHS}\n"
                    "UNION ALL\n"
                    f"{select} FROM {table}\nWHERE {WHOLE_HOURS_OUTSIDE_MONTHS}\n"
                    f"GROUP BY {keys}\n"
                    "UNION ALL\n"
                    f"{select} FROM {table}\nWHERE {CUT_HOURS}\nGROUP BY {keys}"
                )
        return (
            f"CREATE OR REPLACE VIEW {view} AS\n"
            f"{select} FROM {table}\nWHERE {WHOLE_HOURS}\nGROUP BY {keys}\n"
            "UNION ALL\n"
            f"{select} FROM {table}\nWHERE {CUT_HOURS}\nGROUP BY {keys}"
        )
