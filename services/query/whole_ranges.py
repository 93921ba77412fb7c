"""A pipe's range-view calls, pointed at the views' siblings when the bounds are whole.

A range view (common/range_views.py) answers any range from up to three tiers; for a range
of whole periods — whole UTC days for a view that reads days, whole hours otherwise — all
but the first are empty, yet the engine plans each one (8–10 ms a tier at 10 M events on
chDB, about a third of a whole-month `test_summary`). Every view has a sibling holding the
first tier alone (`RangeView.whole_name`). A call written in a pipe's SQL as

    <view>(start_date = {a:DateTime}, end_date = {b:DateTime})

is sent to the sibling when the values bound to `a` and `b` make the range whole, judged
as the view's own conditions judge it: `a` starts a period, and `b` is the last second of
one or the last DateTime (where the view's `b + 1` wraps to 1970). A view that reads months
has a second sibling, its month tier alone (`RangeView.months_name`), for a range of whole
UTC months — a calendar month, or a call without dates — judged the same way. The answer
is the same either way; `tests/test_projections.py` holds both forms to the plain-Python reference.
A pipe that reads one of several datasources chosen by a parameter gives each view it
does not read an empty range, each bound written as

    if({g:String} = 'v', {a:DateTime}, <an alias of a moment on the far side of the range>)

(`retention.sql`): where the bound `g` is `v` the call is judged by `a` and `b` as above;
where it is not, the call reads nothing, and the whole call (the view and its arguments) is
replaced by the view's empty table (`RangeView.empty_name`: its columns, no row), which the
engine plans in no time where even the one-tier sibling costs it the analysis of an
aggregation (common/range_views.py); the arguments stay beside it in a comment, so the call
can be put back (`views_only`). Anything else — another spelling, a bound that does not
parse — keeps the view. Where the
schema is made by another process (`pipit migrate` on a cluster) a service may start before
the siblings exist: such a call is answered from the views instead (`views_only`).

The query service runs no call at all (`sql_for(…, inline=True)`): each call that reads a
range is replaced by the SELECT of its form (`RangeView.select_sql`), which the engine
plans sooner than a parameterized view's call (4–6 ms of 25–45 at 10 M events), in the
warehouse's form (ids numbered on chDB, not on a server). The Query API keeps the calls:
its read-only lane refuses the SELECTs' SETTINGS, which name each tier's projection."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cached_property
from itertools import product
from typing import Any, TypeVar

import structlog

from common.range_views import DAY_SECONDS, EMPTY_PREFIX, MONTHS_SUFFIX, WHOLE_SUFFIX, RangeView
from common.timeparse import DATETIME_MAX, parse_datetime_fast
from common.warehouse.base import WarehouseError

log = structlog.get_logger("query")
T = TypeVar("T")

_CALL = re.compile(
    r"\b(?P<view>\w+)\(start_date = \{(?P<start>\w+):DateTime\}, "
    r"end_date = \{(?P<end>\w+):DateTime\}\)"
)
_GUARDED_CALL = re.compile(
    r"\b(?P<view>\w+)\("
    r"start_date = if\(\{(?P<guard>\w+):String\} = '(?P<value>\w+)', "
    r"\{(?P<start>\w+):DateTime\}, \w+\), "
    r"end_date = if\(\{(?P=guard):String\} = '(?P=value)', "
    r"\{(?P<end>\w+):DateTime\}, \w+\)\)"
)

# A view's bounds in its SELECT.
_BOUND = re.compile(r"\{(start_date|end_date):DateTime\}")


def _starts_month(moment: int) -> bool:
    return moment % DAY_SECONDS == 0 and datetime.fromtimestamp(moment, UTC).day == 1


@dataclass(frozen=True)
class _Call:
    start: int  # where the view's name starts in the SQL
    end: int  # where the call (the name and its arguments) ends
    view: RangeView
    start_param: str
    end_param: str
    # (parameter, value): the call reads its range only where the parameter has the value.
    guard: tuple[str, str] | None = None

    def form(self, values: Mapping[str, Any]) -> str:
        """The view's form that answers the bound range: "empty", "months", "whole" or
        "full"."""
        if self.guard is not None and values.get(self.guard[0]) != self.guard[1]:
            # An empty range: every form answers nothing, the empty table soonest.
            return "empty"
        try:
            start = parse_datetime_fast(values[self.start_param])
            end = parse_datetime_fast(values[self.end_param])
        except (KeyError, TypeError, ValueError):
            return "full"
        # The last DateTime ends every period: the views' `end_date + 1` wraps to 1970.
        after = 0 if end == DATETIME_MAX else end + 1
        if self.view.month_projection and _starts_month(start) and _starts_month(after):
            return "months"
        period = self.view.period_seconds
        if start % period == 0 and after % period == 0:
            return "whole"
        return "full"

    def inlined(self, form: str, *, numbered: bool) -> str:
        """The call replaced by the SELECT of the view's `form` ("full", "whole" or
        "months"), its bounds this call's parameters (a guarded call is given a range only
        where its guard holds: the bounds are then the parameters themselves)."""
        select = self.view.select_sql(f"`{self.view.table}`", server_form=not numbered, form=form)
        bounds = {"start_date": self.start_param, "end_date": self.end_param}
        select = _BOUND.sub(lambda found: f"{{{bounds[found[1]]}:DateTime}}", select)
        return f"(\n{select}\n)"

    @cached_property
    def names(self) -> dict[str, str]:
        """The view's name in each form: its own, then its siblings' (RangeView.siblings)."""
        names = {"full": self.view.name, **{form: name for name, form in self.view.siblings}}
        # Only a guarded call can be given no range.
        return {**names, "empty": self.view.empty_name} if self.guard is not None else names


@dataclass(frozen=True)
class WholeRanges:
    """A pipe's SQL and its calls of range views; `sql_for` the SQL to run for the
    values bound."""

    sql: str
    calls: tuple[_Call, ...]

    @classmethod
    def of(cls, sql: str, views: Iterable[RangeView]) -> WholeRanges | None:
        """None when `sql` calls none of `views` in the form above."""
        known = {view.name: view for view in views}
        plain = (
            _Call(m.start("view"), m.end(), known[m["view"]], m["start"], m["end"])
            for m in _CALL.finditer(sql)
            if m["view"] in known
        )
        guarded = (
            _Call(
                m.start("view"),
                m.end(),
                known[m["view"]],
                m["start"],
                m["end"],
                (m["guard"], m["value"]),
            )
            for m in _GUARDED_CALL.finditer(sql)
            if m["view"] in known
        )
        calls = tuple(sorted((*plain, *guarded), key=lambda call: call.start))
        return cls(sql, calls) if calls else None

    @classmethod
    def forms_of(cls, sql: str, views: Iterable[RangeView]) -> frozenset[str]:
        """Every SQL `sql` may be run as."""
        ranges = cls.of(sql, views)
        return frozenset({sql}) if ranges is None else ranges.forms()

    def sql_for(
        self, values: Mapping[str, Any], *, inline: bool = False, numbered: bool = True
    ) -> str:
        """The SQL with each call whose bounds are whole sent to the view's sibling; with
        `inline`, each call that reads a range replaced by that form's SELECT (over a table
        whose ids are `numbered`, or a server's), which the engine plans sooner than the
        view's call (services/query/sql/README.md)."""
        written = numbered if inline and self._inlinable else None
        return self._forms[tuple(call.form(values) for call in self.calls), written]

    def forms(self) -> frozenset[str]:
        """Every SQL `sql_for` may give."""
        return frozenset(self._forms.values())

    @cached_property
    def _inlinable(self) -> bool:
        # A view declared without its datasource (a test's) can only be called.
        return all(call.view.table for call in self.calls)

    @cached_property
    def _forms(self) -> dict[tuple[tuple[str, ...], bool | None], str]:
        # A pipe calls a view or two: every combination is made once, up front, with the
        # calls by name (None) and inlined over numbered ids (True) or a server's (False).
        forms = {}
        for written in (None, True, False) if self._inlinable else (None,):
            for choice in product(*(call.names for call in self.calls)):
                forms[choice, written] = self._written(choice, written)
        return forms

    def _written(self, choice: tuple[str, ...], numbered: bool | None) -> str:
        sql = self.sql
        # From the last call back, so the earlier calls' offsets still hold.
        for call, form in reversed(list(zip(self.calls, choice, strict=True))):
            name_end = call.start + len(call.view.name)
            if form == "empty":  # a table: the arguments kept in a comment
                arguments = sql[name_end : call.end]
                sql = f"{sql[: call.start]}{call.names[form]}/*{arguments}*/{sql[call.end :]}"
            elif numbered is None:
                sql = sql[: call.start] + call.names[form] + sql[name_end:]
            else:
                sql = sql[: call.start] + call.inlined(form, numbered=numbered) + sql[call.end :]
        return sql


_SIBLING_CALL = re.compile(rf"\b(\w+)(?:{WHOLE_SUFFIX}|{MONTHS_SUFFIX})\(")
# An empty table and the arguments of the call it replaced (no `*/` in them: _GUARDED_CALL).
_EMPTY_CALL = re.compile(rf"\b{EMPTY_PREFIX}(\w+)/\*(\(.*?\))\*/")
_MISSING_SIBLING = re.compile(
    rf"Unknown table function `?\w+(?:{WHOLE_SUFFIX}|{MONTHS_SUFFIX})\b"
    # A missing table, as chDB and a ClickHouse server word it.
    rf"|Unknown table expression identifier '(?:\w+\.)?{EMPTY_PREFIX}\w+'"
    rf"|Table `?\w+`?\.`?{EMPTY_PREFIX}\w+`? does(?:n't| not) exist"
)


def views_only(sql: str) -> str:
    """`sql` (one of `WholeRanges.forms`) with every sibling's call back on its view."""
    return _SIBLING_CALL.sub(r"\1(", _EMPTY_CALL.sub(r"\1\2", sql))


def missing_sibling(error: Exception) -> bool:
    """Whether the engine failed a query for lack of a sibling view or an empty table (a
    schema older than this release's, until `pipit migrate` or the next start brings it up
    to date)."""
    return _MISSING_SIBLING.search(str(error)) is not None


def _as_written(sql: str) -> str:
    return sql


async def from_views_if_siblings_missing(
    sqls: Iterable[str], attempt: Callable[[Callable[[str], str]], Awaitable[T]]
) -> T:
    """`attempt(form)` runs a query made of `sqls`, each passed through `form`: first as
    written; where the engine lacks a sibling one of them calls (a schema older than this
    release's, until `pipit migrate` or a start that manages it brings it up to date), once
    more with every sibling's call back on its view (`views_only`) — the same answer.
    Any other failure, or one where no SQL calls a sibling, is raised."""
    try:
        return await attempt(_as_written)
    except WarehouseError as exc:
        if not missing_sibling(exc) or all(views_only(sql) == sql for sql in sqls):
            raise
        log.warning(
            "a range view's sibling is missing: answered from the view until the schema is "
            "brought up to date (pipit migrate, or a start that manages it)",
            error=str(exc)[:300],
        )
    return await attempt(views_only)
