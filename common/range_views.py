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

A folded view with a day projection (`day_projection`: the same query per UTC day, which
the table declares beside the hourly one) reads three tiers: the whole days in range from
the day projection, the whole hours of the days the bounds cut from the hourly one, the
cut hours from the rows. Every hour lies in exactly one tier — an hour of a whole day is a
whole hour, which the hourly tier leaves to the day tier — so the answer is the same; a
month merges 30 states per key where the hours alone gave it 720 (2.5–4× less time at
10 M events). The view by day (`by_day`, named for the day projection) reads the same
three tiers and keeps the days apart: a `day` column in the hour's place, for an endpoint
whose periods are days or longer.

A folded view with a month projection as well (`month_projection`: the same query per UTC
month) reads four: the whole months from it, the whole days of the months the bounds cut
from the day projection, and the two tiers below as before. A calendar month, or a call
without dates over all of the data, then merges one state per key and month: 1,800 bitmaps
became 60 for `test_segments` at 10 M events, 58 → 16 ms.

Each view has a sibling for ranges of whole periods (`whole_name`): its first tier alone —
the whole days of a view that reads days (all of them, in a view that reads months too),
the whole hours of one that does not — and a view that reads months one for ranges of
whole months (`months_name`): the month tier alone. For such a
range the other tiers are empty, yet the engine plans each of them (its conditions, the
table's indexes, every aggregate projection it could use: 8–10 ms a tier at 10 M events
on chDB); the query service calls the sibling when the bounds say the range is whole
(services/query/whole_ranges.py), which is the same answer.

A call that reads no range at all (a pipe that reads one of two datasources gives the
other's view an empty range) goes to a third: a table of the view's columns that can hold no
row (`empty_name`, the Null engine). Even the one-tier sibling costs the engine the analysis
of its aggregation when it reads nothing (`retention` at 10 M events on chDB: 41 against
30 ms with the unread branch removed, measured alternating on one session); a table with
no projection, no index and no part costs it none.
"""

from __future__ import annotations

from dataclasses import dataclass

from common import id_numbers

# A view's siblings are named for it with these suffixes: for ranges of whole periods (days
# or hours), and of whole months.
WHOLE_SUFFIX = "__whole"
MONTHS_SUFFIX = "__months"
# The table that answers a call of no range is named for its view with this prefix: one of
# Pipit's own names (a team's datasource cannot take it), since it is replaced at every start.
EMPTY_PREFIX = "_pipit_empty_"
HOUR_SECONDS, DAY_SECONDS = 3600, 86400

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


def _whole_days(day: str) -> str:
    """Whether the UTC day starting at `day` lies wholly in range: judged like an hour,
    the last DateTime's `+ 1` wrapping to 1970 ends its day too."""
    last = "toStartOfDay({end_date:DateTime}, 'UTC')"
    ends = f"toStartOfDay({{end_date:DateTime}} + 1, 'UTC') != {last}"
    return f"{day} >= {{start_date:DateTime}} AND ({day} < {last} OR ({day} = {last} AND {ends}))"


WHOLE_DAYS = _whole_days("day")
# An hour of a whole day is read from the day tier, not again from the hours.
_HOURS_DAY = "toStartOfDay(hour, 'UTC')"
# Whether a bound cuts its day, judged from the bounds alone: when neither does, the range
# is whole days, this tier is a constant false and the engine reads nothing for it (the
# hourly projection's rows would otherwise be read to be filtered out).
_A_DAY_IS_CUT = (
    "(toStartOfDay({start_date:DateTime}, 'UTC') != {start_date:DateTime}"
    " OR toStartOfDay({end_date:DateTime} + 1, 'UTC') = toStartOfDay({end_date:DateTime}, 'UTC'))"
)
WHOLE_HOURS_OF_CUT_DAYS = f"{_A_DAY_IS_CUT} AND {WHOLE_HOURS} AND NOT ({_whole_days(_HOURS_DAY)})"


def _month_of(time: str) -> str:
    """The UTC month `time` is in, as the DateTime of its first second (toStartOfMonth
    gives a Date, which would compare with the bounds by day)."""
    return f"toDateTime(toStartOfMonth({time}, 'UTC'), 'UTC')"


_LAST_MONTH = _month_of("{end_date:DateTime}")
# The last DateTime's `+ 1` wraps to 1970: it ends its month too.
_ENDS_MONTH = f"{_month_of('{end_date:DateTime} + 1')} != {_LAST_MONTH}"


def _whole_months(month: str) -> str:
    """Whether the UTC month starting at `month` lies wholly in range (judged like a day)."""
    return (
        f"{month} >= {{start_date:DateTime}}"
        f" AND ({month} < {_LAST_MONTH} OR ({month} = {_LAST_MONTH} AND {_ENDS_MONTH}))"
    )


WHOLE_MONTHS = _whole_months("month")
# Whether a bound cuts its month, from the bounds alone: when neither does, the day tier is
# a constant false (as _A_DAY_IS_CUT is for the hours).
_A_MONTH_IS_CUT = (
    f"({_month_of('{start_date:DateTime}')} != {{start_date:DateTime}} OR NOT ({_ENDS_MONTH}))"
)
# A day of a whole month is read from the month tier, not again from the days.
WHOLE_DAYS_OF_CUT_MONTHS = (
    f"{_A_MONTH_IS_CUT} AND {WHOLE_DAYS} AND NOT ({_whole_months(_month_of('day'))})"
)


# A folding view drops the hour from its columns and keys, so its projection names the
# hour as this very item, which can be cut out of the SELECT without parsing it.
_HOUR_ITEM = "toStartOfHour(timestamp) AS hour"
# The day projection's item in the hour's place: UTC whatever the session's time zone, as
# the engine may compute it where none is set (a background MATERIALIZE).
_DAY_ITEM = "toStartOfDay(timestamp, 'UTC') AS day"
# An hour's day, in a view by day's tiers that read hours.
_HOURS_DAY_ITEM = f"{_HOURS_DAY} AS day"
# The month projection's item in the hour's place.
_MONTH_ITEM = f"{_month_of('timestamp')} AS month"


@dataclass(frozen=True)
class RangeView:
    """The view of one projection: its name and the projection's `SELECT … GROUP BY …`;
    `fold_hours` when the view groups by the keys other than `hour`; `day_projection`, the
    name of the projection of the same query per UTC day, which a folded view reads whole
    days from; `by_day` when the view is per day (a `day` column in the hour's place),
    named for that projection; `month_projection`, the projection of the same query per
    UTC month, which a folded view with days reads whole months from; `one_row_per_key`
    when a folded view groups its tiers' rows once more, one row per key for any range;
    `projection`, the hourly projection's name where the view is named apart from it (a
    folded view of its own name, a view by day); `table`, the datasource it reads (where
    a pipe's call is replaced by the view's SELECT: services/query/whole_ranges.py)."""

    name: str
    query: str
    fold_hours: bool = False
    day_projection: str = ""
    by_day: bool = False
    month_projection: str = ""
    one_row_per_key: bool = False
    projection: str = ""
    table: str = ""

    def __post_init__(self) -> None:
        select, group_by, keys = self.query.partition(" GROUP BY ")
        if not group_by or not select.startswith("SELECT ") or "AS hour" not in select:
            raise ValueError(
                f"range view {self.name}: the projection must be `SELECT … "
                f"toStartOfHour(timestamp) AS hour … GROUP BY …, hour`, got {self.query!r}"
            )
        if "hour" not in (key.strip() for key in keys.split(",")):
            raise ValueError(f"range view {self.name}: the projection must group by hour")
        if (self.fold_hours or self.day_projection) and _without_hour(select) is None:
            raise ValueError(
                f"range view {self.name}: a view that folds the hours or reads days needs "
                f"a projection that selects `{_HOUR_ITEM}` as one of its items"
            )
        if self.fold_hours and len(keys.split(",")) < 2:
            raise ValueError(
                f"range view {self.name}: a view that folds the hours needs a projection "
                "that groups by another key too"
            )
        if self.by_day and (self.fold_hours or self.name != self.day_projection):
            raise ValueError(
                f"range view {self.name}: a view by day is named for its day projection "
                "and keeps the days apart"
            )
        if self.day_projection and not (self.fold_hours or self.by_day):
            raise ValueError(
                f"range view {self.name}: an hourly view reads no days (a folded view or "
                "a view by day does)"
            )
        if self.one_row_per_key:
            if not self.fold_hours:
                raise ValueError(f"range view {self.name}: only a folded view groups its tiers")
            self._regrouped_columns()  # raises unless its aggregates can be grouped again
        if self.month_projection and not (self.fold_hours and self.day_projection):
            raise ValueError(
                f"range view {self.name}: only a folded view that reads days reads months "
                "(a view by day keeps the days apart)"
            )

    @property
    def hour_projection(self) -> str:
        """The projection the view reads whole hours from."""
        return self.projection or self.name

    @property
    def whole_name(self) -> str:
        """The sibling for ranges of whole periods (`period_seconds`): the whole periods'
        tier alone."""
        return self.name + WHOLE_SUFFIX

    @property
    def months_name(self) -> str:
        """The sibling for ranges of whole UTC months, where the view reads months: the
        month tier alone. Empty where it does not."""
        return self.name + MONTHS_SUFFIX if self.month_projection else ""

    @property
    def empty_name(self) -> str:
        """The table that answers a call of no range: the view's columns, no row."""
        return EMPTY_PREFIX + self.name

    def empty_sql(self, whole_view: str, table: str) -> str:
        """`CREATE OR REPLACE TABLE` of the empty table (`table`, qualified, `ON CLUSTER`
        included where it applies) with the columns of the whole sibling (`whole_view`,
        qualified), which must exist: a changed declaration changes both at the next start."""
        return (
            f"CREATE OR REPLACE TABLE {table} ENGINE = Null EMPTY AS SELECT * FROM "  # noqa: S608 - ours
            f"{whole_view}(start_date = toDateTime(0), end_date = toDateTime(0))"
        )

    @property
    def siblings(self) -> tuple[tuple[str, str], ...]:
        """Each sibling view's name and form (`create_sql`)."""
        whole = ((self.whole_name, "whole"),)
        return (*whole, (self.months_name, "months")) if self.month_projection else whole

    @property
    def period_seconds(self) -> int:
        """The period the first tier reads whole: a UTC day where the view reads days,
        else an hour."""
        return DAY_SECONDS if self.day_projection else HOUR_SECONDS

    def create_sql(
        self, table: str, view: str, *, server_form: bool = False, form: str = "full"
    ) -> str:
        """`CREATE OR REPLACE VIEW` of this view (`view`, qualified, `ON CLUSTER` included
        where it applies) over `table` (qualified): `select_sql`. Idempotent, and a changed
        declaration replaces the old view."""
        select = self.select_sql(table, server_form=server_form, form=form)
        return f"CREATE OR REPLACE VIEW {view} AS\n{select}"

    def select_sql(self, table: str, *, server_form: bool = False, form: str = "full") -> str:
        """The view's SELECT over `table`, its bounds the parameters `{start_date:DateTime}`
        and `{end_date:DateTime}`. `server_form`: over a table whose ids have no numbers (a
        ClickHouse server), as its projection is there. `form`: "full", every tier; "whole",
        the sibling that reads the whole periods alone (exact only for a range of whole
        `period_seconds`); "months", the sibling that reads whole months alone (exact only
        for a range of whole UTC months)."""
        query = id_numbers.server_form(self.query) if server_form else self.query
        select, _, keys = query.partition(" GROUP BY ")
        # The SELECT of the tier that reads days, and of those that read hours.
        if self.by_day:
            # The day in the hour's place: the day projection's, or each hour's day.
            days = _with_period(select, _DAY_ITEM)
            hours = f"WITH {_HOUR_ITEM} {_with_period(select, _HOURS_DAY_ITEM)}"
            keys = _period_keys(keys, "day")
        elif self.fold_hours:
            # The hour stays the name the bounds filter on, but is no column of the view.
            items = _without_hour(select)
            months = f"WITH {_MONTH_ITEM} SELECT {items}"
            days = f"WITH {_DAY_ITEM} SELECT {items}"
            hours = f"WITH {_HOUR_ITEM} SELECT {items}"
            keys = ", ".join(_folded_keys(keys))
        else:
            hours = select
        # Each tier with the projection it reads (none for the cut hours' rows).
        if self.day_projection:
            tiers = [
                (days, WHOLE_DAYS, self.day_projection),
                (hours, WHOLE_HOURS_OF_CUT_DAYS, self.hour_projection),
                (hours, CUT_HOURS, ""),
            ]
        else:
            tiers = [(hours, WHOLE_HOURS, self.hour_projection), (hours, CUT_HOURS, "")]
        # Every whole day of a range of whole days is in the first tier: with months too,
        # the sibling reads them there rather than plan a month tier that may be empty.
        if form == "whole":
            tiers = tiers[:1]
        elif self.month_projection:  # a folded view (__post_init__)
            month_tier = (months, WHOLE_MONTHS, self.month_projection)
            if form == "months":
                tiers = [month_tier]
            else:
                cut_months = (days, WHOLE_DAYS_OF_CUT_MONTHS, self.day_projection)
                tiers[:1] = [month_tier, cut_months]
        elif form != "full":
            raise ValueError(f"range view {self.name}: no form {form!r}")
        union = "\nUNION ALL\n".join(
            f"{head} FROM {table}\nWHERE {where}\nGROUP BY {keys}{_reading(projection)}"
            for head, where, projection in tiers
        )
        if self.one_row_per_key and len(tiers) > 1:
            # The tiers' rows grouped once more by the folded keys (`keys`).
            union = (
                f"SELECT {', '.join(self._regrouped_columns())}\nFROM (\n{union}\n)\n"
                f"GROUP BY {keys}"
            )
        return union

    def _regrouped_columns(self) -> list[str]:
        """The columns of a folded view that groups its tiers' rows once more: each key as
        it is, each aggregate added up or compared again under its own name. Raises unless
        the aggregates are sums, counts, minima or maxima (a state would need its own
        merge)."""
        select, _, keys = self.query.partition(" GROUP BY ")
        folded = _folded_keys(keys)
        columns = []
        for item in _top_level_items(select.removeprefix("SELECT ")):
            if item == _HOUR_ITEM:
                continue
            expression, _, alias = item.rpartition(" AS ")
            name = alias if expression else item
            function = expression.partition("(")[0]
            if name in folded:
                columns.append(name)
            elif function in _REGROUP:
                columns.append(f"{_REGROUP[function]}({name}) AS {name}")
            else:
                raise ValueError(
                    f"range view {self.name}: one row per key needs sums, counts, minima or "
                    f"maxima, or the keys themselves; {item!r} is neither"
                )
        return columns


def _reading(projection: str) -> str:
    """A tier's SETTINGS naming the projection it reads. The engine picks among a table's
    projections by the marks each would read, and on a tie by the order they were added,
    which an upgraded table's history sets: a day tier whose day projection was added after
    another one of as many marks read that one's 30× more rows (test_summary 25 → 45 ms at
    10 M events). The tier's own is always the one to read."""
    return f"\nSETTINGS preferred_optimize_projection_name = '{projection}'" if projection else ""


# How a folded view adds up or compares again each aggregate of its tiers' rows.
_REGROUP = {"sum": "sum", "count": "sum", "countIf": "sum", "max": "max", "min": "min"}


def _top_level_items(items: str) -> list[str]:
    """`a, f(b, c) AS d, …` split at the commas outside parentheses and quotes."""
    found, depth, quoted, start = [], 0, False, 0
    for at, char in enumerate(items):
        if char == "'" and (at == 0 or items[at - 1] != "\\"):
            quoted = not quoted
        elif not quoted and char == "(":
            depth += 1
        elif not quoted and char == ")":
            depth -= 1
        elif not quoted and depth == 0 and char == ",":
            found.append(items[start:at].strip())
            start = at + 1
    found.append(items[start:].strip())
    return found


def day_query(query: str) -> str:
    """The day projection's `SELECT … GROUP BY …` of an hourly projection's `query`: the
    hour's item and key per UTC day."""
    select, _, keys = query.partition(" GROUP BY ")
    return f"{_with_period(select, _DAY_ITEM)} GROUP BY {_period_keys(keys, 'day')}"


def month_query(query: str) -> str:
    """The month projection's `SELECT … GROUP BY …` of an hourly projection's `query`: the
    hour's item and key per UTC month."""
    select, _, keys = query.partition(" GROUP BY ")
    return f"{_with_period(select, _MONTH_ITEM)} GROUP BY {_period_keys(keys, 'month')}"


def _with_period(select: str, item: str) -> str:
    """`select` (`SELECT a, b, …`) with `item` (a day's or a month's) in the hour's place
    (split and joined at `, ` as in _without_hour)."""
    items = select.removeprefix("SELECT ").split(", ")
    items[items.index(_HOUR_ITEM)] = item
    return "SELECT " + ", ".join(items)


def _folded_keys(keys: str) -> list[str]:
    """The GROUP BY `keys` without the hour: a folded view's."""
    return [key.strip() for key in keys.split(",") if key.strip() != "hour"]


def _period_keys(keys: str, period: str) -> str:
    """The GROUP BY `keys` with `period` (a day's or a month's alias) for the hour."""
    return ", ".join(period if key.strip() == "hour" else key.strip() for key in keys.split(","))


def _without_hour(select: str) -> str | None:
    """The items of `select` (`SELECT a, b, …`) with the hour's cut out, or None unless
    the hour is one of them, once. Splitting at `, ` and joining again gives the text
    back whatever commas the items hold, and only the item itself equals the hour's."""
    pieces = select.removeprefix("SELECT ").split(", ")
    if pieces.count(_HOUR_ITEM) != 1:
        return None
    pieces.remove(_HOUR_ITEM)
    return ", ".join(pieces)
