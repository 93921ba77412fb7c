"""services/query/whole_ranges.py: a range-view call goes to the view's sibling (its first
tier alone) exactly when the bounds make the range whole by the view's own rules, judged
per call; anything it cannot judge keeps the view. That both give the same answers on
data is tests/test_projections.py's `test_a_whole_range_answers_alike_from_both_views`."""

from __future__ import annotations

import dataclasses
import re

import pytest

from common.datasources import registry
from common.range_views import EMPTY_PREFIX, MONTHS_SUFFIX, WHOLE_SUFFIX, RangeView
from services.query.service import builtin_endpoints, builtin_sql
from services.query.whole_ranges import WholeRanges, missing_sibling, views_only

HOURS = RangeView(
    "hours_view", "SELECT a, toStartOfHour(timestamp) AS hour, count() AS n GROUP BY a, hour"
)
DAYS = RangeView(
    "days_view",
    "SELECT a, toStartOfHour(timestamp) AS hour, count() AS n GROUP BY a, hour",
    fold_hours=True,
    day_projection="days_projection",
)
SQL = (
    "SELECT * FROM hours_view(start_date = {start_date:DateTime}, end_date = {end_date:DateTime})"
    " UNION ALL SELECT * FROM days_view(start_date = {from:DateTime}, end_date = {to:DateTime})"
    " UNION ALL SELECT * FROM other_view(start_date = {start_date:DateTime}, "
    "end_date = {end_date:DateTime})"
)
RANGES = WholeRanges.of(SQL, [HOURS, DAYS])
LAST = "2106-02-07 06:28:15"


def _chosen(values: dict[str, str]) -> tuple[bool, bool]:
    assert RANGES is not None
    sql = RANGES.sql_for(values)
    assert "other_view__whole" not in sql  # not a range view: never touched
    return f"hours_view{WHOLE_SUFFIX}(" in sql, f"days_view{WHOLE_SUFFIX}(" in sql


@pytest.mark.parametrize(
    "start,end,hours_whole,days_whole",
    [
        ("2023-06-01 00:00:00", "2023-06-30 23:59:59", True, True),
        ("1970-01-01 00:00:00", LAST, True, True),  # the defaults: the last DateTime ends all
        ("2023-06-01 00:00:00", LAST, True, True),
        ("2023-06-01 13:00:00", "2023-06-02 08:59:59", True, False),
        ("2023-06-01 13:00:00", LAST, True, False),
        ("2023-06-01 00:00:00", "2023-06-02 08:59:59", True, False),
        ("2023-06-01 00:00:01", "2023-06-30 23:59:59", False, False),
        ("2023-06-01 00:00:00", "2023-06-30 23:59:58", False, False),
        ("2023-06-01 00:00:00", "2023-06-30 23:00:00", False, False),
        ("2023-06-01 00:00:00", "2106-02-07 06:28:14", False, False),
        ("2023-06-01", "2023-06-30 23:59:59", True, True),  # a bare date is its first second
        ("2023-06-01T00:00:00Z", "2023-06-30T23:59:59+00:00", True, True),
        ("2023-06-01T02:00:00+02:00", "2023-06-30T23:59:59Z", True, True),  # UTC midnight
        ("2023-06-01T00:00:00+02:00", "2023-06-30T23:59:59Z", True, False),  # 22:00 UTC
        ("not a date", "2023-06-30 23:59:59", False, False),
    ],
)
def test_a_call_goes_to_the_sibling_only_when_its_range_is_whole(
    start: str, end: str, hours_whole: bool, days_whole: bool
) -> None:
    same = {"start_date": start, "end_date": end, "from": start, "to": end}
    assert _chosen(same) == (hours_whole, days_whole)


def test_each_call_is_judged_by_its_own_bounds() -> None:
    whole_hours_only = {"start_date": "2023-06-01 13:00:00", "end_date": "2023-06-01 13:59:59"}
    whole_days = {"from": "2023-06-01 00:00:00", "to": "2023-06-01 23:59:59"}
    assert _chosen(
        whole_hours_only | {"from": "2023-06-01 13:00:00", "to": "2023-06-01 13:59:59"}
    ) == (True, False)
    assert _chosen({"start_date": "2023-06-01 13:00:01", "end_date": LAST} | whole_days) == (
        False,
        True,
    )
    assert _chosen(whole_days) == (False, True)  # a bound missing: not whole


def test_every_form_is_made_and_the_sql_is_otherwise_untouched() -> None:
    assert RANGES is not None
    forms = RANGES.forms()
    assert len(forms) == 4 and SQL in forms
    for form in forms:
        assert form.replace(WHOLE_SUFFIX, "") == SQL
        assert views_only(form) == SQL  # a missing sibling's fallback


MONTHS = RangeView(
    "months_view",
    "SELECT a, toStartOfHour(timestamp) AS hour, count() AS n GROUP BY a, hour",
    fold_hours=True,
    day_projection="days_projection",
    month_projection="months_projection",
)
MONTHS_SQL = (
    "SELECT * FROM months_view(start_date = {start_date:DateTime}, end_date = {end_date:DateTime})"
)


@pytest.mark.parametrize(
    "start,end,form",
    [
        ("1970-01-01 00:00:00", LAST, "months"),  # the defaults: every month whole
        ("2023-06-01 00:00:00", "2023-06-30 23:59:59", "months"),
        ("2023-02-01 00:00:00", "2023-02-28 23:59:59", "months"),
        ("2024-02-01 00:00:00", "2024-02-29 23:59:59", "months"),  # a leap year's February
        ("2024-02-01 00:00:00", "2024-02-28 23:59:59", "whole"),
        ("2023-06-01 00:00:00", LAST, "months"),
        ("2023-05-31 00:00:00", "2023-06-30 23:59:59", "whole"),
        ("2023-06-01 00:00:00", "2023-07-01 23:59:59", "whole"),
        ("2023-06-01 00:00:00", "2023-06-30 23:59:58", "full"),
        ("2023-06-01 00:00:01", "2023-06-30 23:59:59", "full"),
        ("2023-06-01 13:00:00", "2023-06-30 23:59:59", "full"),  # whole hours are not days
        ("2023-06-01T02:00:00+02:00", "2023-06-30T23:59:59Z", "months"),  # UTC midnight
        ("2023-06-01T00:00:00+02:00", "2023-06-30T23:59:59Z", "full"),  # 31 May 22:00 UTC
        ("not a date", "2023-06-30 23:59:59", "full"),
    ],
)
def test_a_view_with_months_has_a_sibling_for_whole_months(start: str, end: str, form: str) -> None:
    ranges = WholeRanges.of(MONTHS_SQL, [MONTHS])
    assert ranges is not None
    sql = ranges.sql_for({"start_date": start, "end_date": end})
    suffix = {"months": MONTHS_SUFFIX, "whole": WHOLE_SUFFIX, "full": ""}[form]
    assert sql == MONTHS_SQL.replace("months_view(", f"months_view{suffix}(")
    assert views_only(sql) == MONTHS_SQL
    assert len(ranges.forms()) == 3


def test_only_a_folded_view_that_reads_days_reads_months() -> None:
    with pytest.raises(ValueError, match="reads months"):
        RangeView("v", HOURS.query, month_projection="m")
    with pytest.raises(ValueError, match="reads months"):
        RangeView("d", HOURS.query, day_projection="d", by_day=True, month_projection="m")
    assert (HOURS.months_name, [n for n, _ in HOURS.siblings]) == ("", [HOURS.whole_name])
    assert [n for n, _ in MONTHS.siblings] == ["months_view__whole", "months_view__months"]


def test_a_missing_sibling_is_told_from_other_failures() -> None:
    assert missing_sibling(
        RuntimeError("Code: 46. DB::Exception: Unknown table function ab_bitmap_range__whole.")
    )
    assert missing_sibling(
        RuntimeError("Code: 46. DB::Exception: Unknown table function `t__months`.")
    )
    assert not missing_sibling(
        RuntimeError("Code: 46. DB::Exception: Unknown table function ab_bitmap_range.")
    )
    assert not missing_sibling(RuntimeError("Unknown identifier no_such__whole_column"))
    # An empty table, as chDB and a ClickHouse server say it is missing.
    assert missing_sibling(
        RuntimeError(
            "Code: 60. DB::Exception: Unknown table expression identifier "
            f"'pipit.{EMPTY_PREFIX}activity_bitmap_days'. (UNKNOWN_TABLE)"
        )
    )
    assert missing_sibling(
        RuntimeError(f"Code: 60. DB::Exception: Table pipit.{EMPTY_PREFIX}v doesn't exist.")
    )
    assert not missing_sibling(
        RuntimeError("Unknown table expression identifier 'pipit.activity_bitmap_days'")
    )


def test_sql_without_a_range_view_call_has_none() -> None:
    assert WholeRanges.of("SELECT 1", [HOURS, DAYS]) is None
    # Another spelling of the call is left alone (the view answers it, exactly).
    assert (
        WholeRanges.of(
            "SELECT * FROM hours_view(start_date={a:DateTime}, end_date={b:DateTime})", [HOURS]
        )
        is None
    )


def test_the_built_in_pipes_whole_ranges_are_sent_to_siblings_that_exist() -> None:
    """Every sibling a built-in pipe may call is a view the datasources declare, and every
    form is a built-in SQL (so its answers are kept, as the view's are)."""
    views = [v for ds in registry().values() for v in ds.range_views]
    siblings = {n for v in views for n, _ in v.siblings}
    called, emptied = set(), set()
    for endpoint in builtin_endpoints(1024).values():
        ranges = getattr(endpoint, "ranges", None)
        if ranges is None:
            continue
        for form in ranges.forms():
            assert form in builtin_sql()
            called |= set(re.findall(rf"(\w+(?:{WHOLE_SUFFIX}|{MONTHS_SUFFIX}))\(", form))
            emptied |= set(re.findall(rf"\b({EMPTY_PREFIX}\w+)/\*", form))
    assert called and called <= siblings
    assert any(name.endswith(MONTHS_SUFFIX) for name in called)
    assert emptied and emptied <= {v.empty_name for v in views}  # retention's two sources


GUARDED_SQL = (
    "WITH toDateTime(0) AS first_second, toDateTime(4294967295) AS last_second "
    "SELECT * FROM hours_view(start_date = if({source:String} = 'hours', {start_date:DateTime}, "
    "last_second), end_date = if({source:String} = 'hours', {end_date:DateTime}, first_second))"
    " UNION ALL SELECT * FROM days_view(start_date = if({source:String} = 'days', "
    "{start_date:DateTime}, last_second), end_date = if({source:String} = 'days', "
    "{end_date:DateTime}, first_second))"
)


def _form_of(sql: str, view: str) -> str:
    """How `sql` calls `view`: "whole" (its sibling), "empty" (its empty table), "full"."""
    if f"{view}{WHOLE_SUFFIX}(" in sql:
        return "whole"
    if re.search(rf"\b{EMPTY_PREFIX}{view}/\*\(start_date = .*?\)\*/", sql):
        assert f"{view}(" not in sql
        return "empty"
    assert f"{view}(" in sql
    return "full"


@pytest.mark.parametrize(
    "source,start,end,hours_form,days_form",
    [
        # The call of the source bound is judged by its bounds; the other reads nothing and
        # is replaced by its view's empty table.
        ("hours", "2023-06-01 13:00:00", "2023-06-01 13:59:59", "whole", "empty"),
        ("hours", "2023-06-01 13:00:01", "2023-06-01 13:59:59", "full", "empty"),
        ("days", "2023-06-01 13:00:00", "2023-06-01 13:59:59", "empty", "full"),
        ("days", "2023-06-01 00:00:00", "2023-06-01 23:59:59", "empty", "whole"),
        ("days", "not a date", "2023-06-01 23:59:59", "empty", "full"),
        ("neither", "2023-06-01 13:00:01", "2023-06-01 13:59:59", "empty", "empty"),
    ],
)
def test_a_call_guarded_by_a_parameter_reads_its_range_only_where_the_guard_holds(
    source: str, start: str, end: str, hours_form: str, days_form: str
) -> None:
    ranges = WholeRanges.of(GUARDED_SQL, [HOURS, DAYS])
    assert ranges is not None and len(ranges.calls) == 2
    assert [call.guard for call in ranges.calls] == [("source", "hours"), ("source", "days")]
    sql = ranges.sql_for({"source": source, "start_date": start, "end_date": end})
    assert (_form_of(sql, "hours_view"), _form_of(sql, "days_view")) == (hours_form, days_form)
    assert views_only(sql) == GUARDED_SQL  # a missing sibling's fallback: the calls back


def test_a_guarded_call_has_every_form_an_unguarded_one_has_and_the_empty_one() -> None:
    ranges = WholeRanges.of(GUARDED_SQL, [HOURS, DAYS])
    assert ranges is not None
    assert len(ranges.forms()) == 3 * 3  # full, whole or empty, per call
    assert all(views_only(form) == GUARDED_SQL for form in ranges.forms())
    plain = WholeRanges.of(SQL, [HOURS, DAYS])
    assert plain is not None
    assert not any(EMPTY_PREFIX in form for form in plain.forms())  # needs a guard


def test_a_guard_that_differs_between_the_bounds_is_not_a_guarded_call() -> None:
    # Each bound's own guard would leave a range half open: the view answers it as written.
    sql = GUARDED_SQL.replace(
        "end_date = if({source:String} = 'hours'", "end_date = if({source:String} = 'days'"
    )
    ranges = WholeRanges.of(sql, [HOURS, DAYS])
    assert ranges is not None
    assert [call.view.name for call in ranges.calls] == ["days_view"]


def test_retention_sends_the_source_it_does_not_read_to_its_empty_table() -> None:
    endpoint = builtin_endpoints(1024)["Retention"]
    assert endpoint.ranges is not None
    week = {"start_date": "2023-06-12 00:00:00", "end_date": "2023-06-18 23:59:59"}
    cut = {"start_date": "2023-06-12 00:00:01", "end_date": "2023-06-18 23:59:59"}
    for source, read, unread in [
        ("user_events", "activity_bitmap_days", "app_bitmap_days"),
        ("app_events", "app_bitmap_days", "activity_bitmap_days"),
    ]:
        whole = endpoint.sql_for({"source": source, "period": "day", **week})
        assert (_form_of(whole, read), _form_of(whole, unread)) == ("whole", "empty")
        full = endpoint.sql_for({"source": source, "period": "day", **cut})
        assert (_form_of(full, read), _form_of(full, unread)) == ("full", "empty")


# The views as a datasource declares them: with the table they read, so a call can be
# replaced by the view's SELECT.
HOURS_OF_T = dataclasses.replace(HOURS, table="t")
DAYS_OF_T = dataclasses.replace(DAYS, table="t")
HOURS_CALL = "hours_view(start_date = {start_date:DateTime}, end_date = {end_date:DateTime})"
DAYS_CALL = "days_view(start_date = {from:DateTime}, end_date = {to:DateTime})"


def _select(view: RangeView, form: str, start: str, end: str, *, numbered: bool = True) -> str:
    select = view.select_sql("`t`", server_form=not numbered, form=form)
    select = select.replace("{start_date:DateTime}", f"{{{start}:DateTime}}")
    return "(\n" + select.replace("{end_date:DateTime}", f"{{{end}:DateTime}}") + "\n)"


def test_an_inlined_call_is_its_forms_select_over_the_calls_own_bounds() -> None:
    """The query service runs each call as the SELECT of the form its bounds choose (the
    engine plans it sooner than the view's call), the view's bounds renamed to the call's
    parameters; a call of a view no datasource declares stays as written."""
    ranges = WholeRanges.of(SQL, [HOURS_OF_T, DAYS_OF_T])
    assert ranges is not None
    hours_whole = {"start_date": "2023-06-01 13:00:00", "end_date": "2023-06-01 13:59:59"}
    cut_days = {"from": "2023-06-01 13:00:00", "to": "2023-06-02 08:59:59"}
    sql = ranges.sql_for(hours_whole | cut_days, inline=True)
    assert sql == SQL.replace(
        HOURS_CALL, _select(HOURS_OF_T, "whole", "start_date", "end_date")
    ).replace(DAYS_CALL, _select(DAYS_OF_T, "full", "from", "to"))
    assert not re.search(r"\b(?:hours|days)_view\w*\(", sql) and "other_view(" in sql
    # By name unless asked: the Query API's read-only lane refuses the SELECTs' SETTINGS.
    assert ranges.sql_for(hours_whole | cut_days) == SQL.replace(
        "hours_view(", f"hours_view{WHOLE_SUFFIX}("
    )
    assert sql in ranges.forms()
    # By name and inlined (the views number no ids: a server's SELECTs are the same).
    assert len(ranges.forms()) == 2 * 4


def test_an_inlined_call_over_a_servers_table_reads_its_distinct_ids_as_its_projection_does() -> (
    None
):
    view = RangeView(
        "ids_view",
        "SELECT a, toStartOfHour(timestamp) AS hour, groupBitmapState(_pipit_user_id_number) "
        "AS ids GROUP BY a, hour",
        table="t",
    )
    call = "ids_view(start_date = {s:DateTime}, end_date = {e:DateTime})"
    sql = f"SELECT * FROM {call}"  # noqa: S608 - a constant
    ranges = WholeRanges.of(sql, [view])
    assert ranges is not None
    values = {"s": "2023-06-01 00:00:00", "e": "2023-06-01 23:59:59"}
    numbered = ranges.sql_for(values, inline=True)
    server = ranges.sql_for(values, inline=True, numbered=False)
    assert "groupBitmapState(_pipit_user_id_number)" in numbered
    assert "uniqExactState(user_id)" in server and "_pipit_user_id_number" not in server
    assert server == sql.replace(call, _select(view, "whole", "s", "e", numbered=False))


def test_an_inlined_guarded_call_reads_the_bound_parameters_where_its_guard_holds() -> None:
    """Where the guard holds, the call's `if(…)` bounds are its parameters: the SELECT reads
    them directly; the call that reads nothing is the empty table, put back by `views_only`."""
    ranges = WholeRanges.of(GUARDED_SQL, [HOURS_OF_T, DAYS_OF_T])
    assert ranges is not None
    values = {"source": "days", "start_date": "2023-06-01 00:00:00", "end_date": LAST}
    sql = ranges.sql_for(values, inline=True)
    assert _select(DAYS_OF_T, "whole", "start_date", "end_date") in sql
    assert "days_view(" not in sql and "if({source:String} = 'days'" not in sql
    assert re.search(rf"\b{EMPTY_PREFIX}hours_view/\*\(start_date = .*?\)\*/", sql)
    assert "hours_view(start_date = if(" in views_only(sql)


def test_the_built_in_pipes_run_no_range_view_call() -> None:
    """What the query service runs for a built-in pipe reads the tables, never a view (an
    empty table aside), and is a built-in SQL (its answers are kept, as the calls' were)."""
    views = [v for ds in registry().values() for v in ds.range_views]
    names = {n for v in views for n in (v.name, *(s for s, _ in v.siblings))}
    for endpoint in builtin_endpoints(1024).values():
        ranges = getattr(endpoint, "ranges", None)
        if ranges is None:
            continue
        whole = {"start_date": "2023-06-01 00:00:00", "end_date": "2023-06-30 23:59:59"}
        bound = {**endpoint.bind(endpoint.request_class()), **whole}
        for numbered in (True, False):
            sql = endpoint.sql_for(bound, inline=True, numbered=numbered)
            assert not set(re.findall(r"\b(\w+)\(", sql)) & names, endpoint.name
            assert "preferred_optimize_projection_name" in sql  # a tier's projection
            assert sql in builtin_sql()
