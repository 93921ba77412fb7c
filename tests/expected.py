"""Reference answers for the analytics endpoints, in plain Python.

Written from the endpoints' definitions (issues 2 and 3, the SQL files' headers), not
from their SQL: each function takes the events as the generator yields them (dicts with
`YYYY-MM-DD HH:MM:SS` UTC timestamps) and the request parameters as the HTTP API gets
them (strings, with the same defaults), and returns the rows the endpoint must answer:
the same column names in the same order, the same ordering and tie-breakers. Times come
back as `YYYY-MM-DD HH:MM:SS` text, days as `YYYY-MM-DD`, counts as ints.

Shared rules:
- date bounds are inclusive at both ends and filter events before anything is
  aggregated, so a bound that cuts a session keeps only the session's in-range events;
- a session's first event is the smallest (timestamp, event_id), ties beyond that broken
  by the reported values themselves; its device fields (and user) are reported;
- an empty optional filter (test_id, user_id, event_type, feature) means no filter.
"""

from __future__ import annotations

import math
import statistics
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from functools import cache
from typing import Any

import mpmath
from scipy import stats
from statsmodels.stats.proportion import (
    confint_proportions_2indep,
    proportion_confint,
    proportions_ztest,
)

from pipit.query.v1 import query_service_pb2

Event = Mapping[str, Any]
Row = dict[str, Any]

DEFAULT_START_DATE = "1970-01-01 00:00:00"
DEFAULT_END_DATE = "2106-02-07 06:28:15"

_TIME_FORMAT = "%Y-%m-%d %H:%M:%S"
_PAGE_VIEW_TYPES = ("page_view", "pageview")


# --- helpers -------------------------------------------------------------------------------


# Every call reads the same events again: parsing each timestamp once took most of the
# references' time (datetimes are immutable, so one may serve every caller).
@cache
def _parse_time(text: str) -> datetime:
    return datetime.strptime(text, _TIME_FORMAT)


def _format_time(moment: datetime) -> str:
    return moment.strftime(_TIME_FORMAT)


def _in_range(
    events: Iterable[Event], start_date: str, end_date: str
) -> list[tuple[datetime, Event]]:
    """The events with start_date <= timestamp <= end_date, each with its parsed time."""
    start = _parse_time(start_date)
    end = _parse_time(end_date)
    kept = []
    for event in events:
        moment = _parse_time(event["timestamp"])
        if start <= moment <= end:
            kept.append((moment, event))
    return kept


def _ratio(numerator: float, denominator: float, digits: int) -> float:
    """numerator / denominator rounded, 0 when there is nothing to divide by."""
    if denominator == 0:
        return 0.0
    return round(numerator / denominator, digits)


def _limit(limit: str) -> int:
    value = int(limit)
    if value < 1:
        raise ValueError(f"limit must be positive, got {limit!r}")
    return value


def _newest_first(rows: list[Row], start_key: str) -> list[Row]:
    """Sorts by start time descending, ties by session_id ascending."""
    rows.sort(key=lambda row: row["session_id"])
    rows.sort(key=lambda row: row[start_key], reverse=True)  # stable: keeps session_id order
    return rows


def _bucket(moment: datetime, unit: str) -> datetime:
    day = moment.replace(hour=0, minute=0, second=0, microsecond=0)
    if unit == "hour":
        return moment.replace(minute=0, second=0, microsecond=0)
    if unit == "day":
        return day
    if unit == "week":  # weeks start on Monday
        return day - timedelta(days=day.weekday())
    if unit == "month":
        return day.replace(day=1)
    raise ValueError(f"unknown bucket unit {unit!r}")


# --- A/B testing (tutorial 001) ---------------------------------------------------------


def _ab_metrics(events: list[Event]) -> dict[str, Any]:
    users = len({event["user_id"] for event in events})
    conversions = sum(1 for event in events if event["conversion"] == 1)
    revenue = math.fsum(event["revenue"] for event in events)
    return {
        "users": users,
        "conversions": conversions,
        "conversion_rate": _ratio(conversions, users, 4),
        "total_revenue": round(revenue, 2),
        "revenue_per_user": _ratio(revenue, users, 4),
    }


def _ab_events(
    events: Iterable[Event], test_id: str, start_date: str, end_date: str
) -> list[tuple[datetime, Event]]:
    return [
        (moment, event)
        for moment, event in _in_range(events, start_date, end_date)
        if test_id == "" or event["test_id"] == test_id
    ]


def test_summary(
    events: Iterable[Event],
    *,
    test_id: str = "",
    start_date: str = DEFAULT_START_DATE,
    end_date: str = DEFAULT_END_DATE,
) -> list[Row]:
    """Per (test_id, variant): users, conversions, rates and revenue; by test, variant."""
    groups: dict[tuple[str, str], list[Event]] = defaultdict(list)
    for _, event in _ab_events(events, test_id, start_date, end_date):
        groups[(event["test_id"], event["variant"])].append(event)
    return [
        {"test_id": test, "variant": variant, **_ab_metrics(group)}
        for (test, variant), group in sorted(groups.items())
    ]


_AB_ALPHA = 0.05
_AB_N_STAR = 5000  # GrowthBook's default sequential tuning parameter


def _ab_users(events: Iterable[Mapping[str, Any]], start: str, end: str):
    """{test: {variant: {user: [converted, revenue]}}} over the events in range."""
    users: dict[str, dict[str, dict[str, list]]] = defaultdict(lambda: defaultdict(dict))
    for event in events:
        if not start <= event["timestamp"] <= end:
            continue
        user = users[event["test_id"]][event["variant"]].setdefault(event["user_id"], [False, 0.0])
        user[0] = user[0] or event["conversion"] == 1
        user[1] += event["revenue"]
    return users


def _chance_exact(x: int, n: int, x_c: int, n_c: int) -> float:
    """P(Beta(1+x, 1+n-x) > Beta(1+x_c, 1+n_c-x_c)) by Evan Miller's closed form
    (https://www.evanmiller.org/bayesian-ab-testing.html), summed at 50 digits."""
    with mpmath.workdps(50):
        a_b, b_b, a_a, b_a = 1 + x, 1 + n - x, 1 + x_c, 1 + n_c - x_c
        total = mpmath.fsum(
            mpmath.beta(a_a + i, b_a + b_b)
            / ((b_b + i) * mpmath.beta(1 + i, b_b) * mpmath.beta(a_a, b_a))
            for i in range(a_b)
        )
        return float(total)


def _msprt(estimate: float, se: float, total: int) -> tuple[float, float, float]:
    """(always-valid p, interval low, high): Johari et al.'s normal-mixture likelihood
    ratio with the mixing variance GrowthBook's tuning gives, and GrowthBook's interval
    (docs.growthbook.io/statistics/sequential), each as written there."""
    if se == 0:
        return 1.0, estimate, estimate
    rho2 = (-2 * math.log(_AB_ALPHA) + math.log(-2 * math.log(_AB_ALPHA) + 1)) / _AB_N_STAR
    sigma2 = se**2 * total  # per-unit variance
    v = se**2
    tau2 = rho2 * sigma2
    ratio = math.sqrt(v / (v + tau2)) * math.exp(tau2 * estimate**2 / (2 * v * (v + tau2)))
    half = math.sqrt(sigma2) * math.sqrt(
        (2 * (total * rho2 + 1)) / (total**2 * rho2)
        * math.log(math.sqrt(total * rho2 + 1) / _AB_ALPHA)
    )  # fmt: skip
    return min(1.0, 1 / ratio), estimate - half, estimate + half


def test_results(
    events: Iterable[Event],
    *,
    test_id: str = "",
    start_date: str = DEFAULT_START_DATE,
    end_date: str = DEFAULT_END_DATE,
    control: str = "",
    weights: str = "",
    sequential: str = "false",
) -> list[Row]:
    """Per (test_id, variant): the variant against its control, every statistic computed
    another way than the pipe's: statsmodels' z-test and Wilson and Wald intervals, scipy's
    Welch test over the users' revenue, an exact 50-digit sum for the chance to beat control,
    mpmath's incomplete gamma for the chi-square tail, the mSPRT and GrowthBook formulas as
    their papers write them. Definitions: services/query/analysis/test_results.py."""
    is_sequential = sequential == "true"
    start, end = start_date, end_date
    rows = []
    z = stats.norm.ppf(1 - _AB_ALPHA / 2)
    for test, variants in sorted(_ab_users(events, start, end).items()):
        if test_id and test != test_id:
            continue
        names = sorted(variants)
        chosen = control if control in variants else names[0]
        counts = [len(variants[v]) for v in names]
        if len(names) > 1:
            shares = [float(w) for w in weights.split(",")] if weights else [1.0] * len(names)
            expected = [sum(counts) * s / sum(shares) for s in shares]
            chi2 = math.fsum((o - e) ** 2 / e for o, e in zip(counts, expected, strict=True))
            srm_p = float(mpmath.gammainc((len(names) - 1) / 2, chi2 / 2, mpmath.inf, True))
        else:
            chi2, srm_p = 0.0, 1.0
        base = variants[chosen]
        n_c = len(base)
        x_c = sum(converted for converted, _ in base.values())
        rev_c = [revenue for _, revenue in base.values()]
        for name in names:
            users = variants[name]
            n = len(users)
            x = sum(converted for converted, _ in users.values())
            rev = [revenue for _, revenue in users.values()]
            rate, rate_c = x / n, x_c / n_c
            low, high = proportion_confint(x, n, alpha=_AB_ALPHA, method="wilson")
            row = {
                "test_id": test,
                "variant": name,
                "control": chosen,
                "users": n,
                "conversions": x,
                "conversion_rate": rate,
                "conversion_rate_low": low,
                "conversion_rate_high": high,
            }
            mean, mean_c = statistics.fmean(rev), statistics.fmean(rev_c)
            variance = statistics.variance(rev) if n > 1 else 0.0
            variance_c = statistics.variance(rev_c) if n_c > 1 else 0.0
            if name == chosen:
                comparison = dict.fromkeys(
                    ("lift", "lift_low", "lift_high", "relative_lift", "relative_lift_low",
                     "relative_lift_high"), 0.0,
                )  # fmt: skip
                p, chance = 1.0, 0.5
                revenue = {"revenue_lift": 0.0, "revenue_lift_low": 0.0, "revenue_lift_high": 0.0,
                           "revenue_p_value": 1.0}  # fmt: skip
            else:
                lift = rate - rate_c
                pooled = (x + x_c) / (n + n_c)
                pooled_se = math.sqrt(pooled * (1 - pooled) * (1 / n + 1 / n_c))
                unpooled_se = math.sqrt(rate * (1 - rate) / n + rate_c * (1 - rate_c) / n_c)
                if rate_c > 0:
                    rel = rate / rate_c - 1
                    rel_se = math.sqrt(
                        rate * (1 - rate) / (n * rate_c**2)
                        + rate**2 * rate_c * (1 - rate_c) / (n_c * rate_c**4)
                    )
                else:
                    rel, rel_se = 0.0, 0.0
                if is_sequential:
                    p = _msprt(lift, pooled_se, n + n_c)[0]
                    _, lift_low, lift_high = _msprt(lift, unpooled_se, n + n_c)
                    _, rel_low, rel_high = _msprt(rel, rel_se, n + n_c)
                else:
                    p = 1.0 if pooled_se == 0 else float(proportions_ztest([x, x_c], [n, n_c])[1])
                    if unpooled_se == 0:
                        lift_low = lift_high = lift
                    else:
                        lift_low, lift_high = confint_proportions_2indep(
                            x, n, x_c, n_c, method="wald", compare="diff", alpha=_AB_ALPHA
                        )
                    rel_low, rel_high = rel - z * rel_se, rel + z * rel_se
                comparison = {
                    "lift": lift,
                    "lift_low": lift_low,
                    "lift_high": lift_high,
                    "relative_lift": rel,
                    "relative_lift_low": rel_low,
                    "relative_lift_high": rel_high,
                }
                chance = _chance_exact(x, n, x_c, n_c)
                revenue_lift = mean - mean_c
                se = math.sqrt(variance / n + variance_c / n_c) if n > 1 and n_c > 1 else 0.0
                if se == 0:
                    rp, rlow, rhigh = 1.0, revenue_lift, revenue_lift
                elif is_sequential:
                    rp, rlow, rhigh = _msprt(revenue_lift, se, n + n_c)
                else:
                    welch = stats.ttest_ind(rev, rev_c, equal_var=False)
                    interval = welch.confidence_interval(1 - _AB_ALPHA)
                    rp, rlow, rhigh = float(welch.pvalue), interval.low, interval.high
                revenue = {
                    "revenue_lift": revenue_lift,
                    "revenue_lift_low": rlow,
                    "revenue_lift_high": rhigh,
                    "revenue_p_value": rp,
                }
            rows.append(
                {
                    **row,
                    **comparison,
                    "p_value": p,
                    "significant": p < _AB_ALPHA,
                    "chance_to_beat_control": chance,
                    "revenue_per_user": mean,
                    "revenue_variance": variance,
                    **revenue,
                    "srm_chi_square": chi2,
                    "srm_p_value": srm_p,
                    "srm": srm_p < 0.001,
                    "sequential": is_sequential,
                }
            )
    return rows


_SEGMENT_COLUMNS = {"device": "device", "country": "country"}


def test_segments(
    events: Iterable[Event],
    *,
    test_id: str = "",
    segment: str = "device",
    start_date: str = DEFAULT_START_DATE,
    end_date: str = DEFAULT_END_DATE,
) -> list[Row]:
    """Per (test_id, variant, segment value): the summary metrics."""
    column = _SEGMENT_COLUMNS[segment]
    groups: dict[tuple[str, str, str], list[Event]] = defaultdict(list)
    for _, event in _ab_events(events, test_id, start_date, end_date):
        groups[(event["test_id"], event["variant"], event[column])].append(event)
    return [
        {"test_id": test, "variant": variant, "segment": value, **_ab_metrics(group)}
        for (test, variant, value), group in sorted(groups.items())
    ]


_TIMESERIES_UNITS = {"hour": "hour", "day": "day", "week": "week"}


def test_timeseries(
    events: Iterable[Event],
    *,
    test_id: str = "",
    interval: str = "day",
    start_date: str = DEFAULT_START_DATE,
    end_date: str = DEFAULT_END_DATE,
) -> list[Row]:
    """Per (test_id, variant, bucket start): users, conversions, rate, revenue."""
    unit = _TIMESERIES_UNITS[interval]
    groups: dict[tuple[str, str, datetime], list[Event]] = defaultdict(list)
    for moment, event in _ab_events(events, test_id, start_date, end_date):
        groups[(event["test_id"], event["variant"], _bucket(moment, unit))].append(event)
    rows = []
    for (test, variant, period), group in sorted(groups.items()):
        metrics = _ab_metrics(group)
        del metrics["revenue_per_user"]
        rows.append(
            {"test_id": test, "variant": variant, "period": _format_time(period), **metrics}
        )
    return rows


# --- sessions (shared by tutorials 002 and 003) -------------------------------------------


def _sessions(
    kept: Iterable[tuple[datetime, Event]], first_columns: Sequence[str]
) -> dict[str, dict[str, Any]]:
    """Per session: start, end, its events, and its first event's `first_columns`."""
    sessions: dict[str, dict[str, Any]] = {}
    for moment, event in kept:
        key = (moment, event["event_id"], *(event[c] for c in first_columns))
        session = sessions.get(event["session_id"])
        if session is None:
            sessions[event["session_id"]] = {
                "start": moment,
                "end": moment,
                "first": key,
                "events": [event],
            }
            continue
        session["start"] = min(session["start"], moment)
        session["end"] = max(session["end"], moment)
        session["first"] = min(session["first"], key)
        session["events"].append(event)
    return sessions


# --- user behavior (tutorial 002) ---------------------------------------------------------


def user_session_stats(
    events: Iterable[Event],
    *,
    user_id: str = "",
    start_date: str = DEFAULT_START_DATE,
    end_date: str = DEFAULT_END_DATE,
    limit: str = "100",
) -> list[Row]:
    """One row per session; newest session first, ties by session_id."""
    kept = [
        (moment, event)
        for moment, event in _in_range(events, start_date, end_date)
        if user_id == "" or event["user_id"] == user_id
    ]
    first_columns = ("user_id", "device_type", "browser", "country")
    rows = []
    for session_id, session in _sessions(kept, first_columns).items():
        first = dict(zip(first_columns, session["first"][2:], strict=True))
        group = session["events"]
        rows.append(
            {
                "session_id": session_id,
                "user_id": first["user_id"],
                "session_start": session["start"],
                "session_end": session["end"],
                "duration_seconds": int((session["end"] - session["start"]).total_seconds()),
                "event_count": len(group),
                "page_views": sum(1 for event in group if event["event_type"] == "page_view"),
                "unique_pages": len({event["page_url"] for event in group}),
                "device_type": first["device_type"],
                "browser": first["browser"],
                "country": first["country"],
            }
        )
    rows = _newest_first(rows, "session_start")[: _limit(limit)]
    for row in rows:
        row["session_start"] = _format_time(row["session_start"])
        row["session_end"] = _format_time(row["session_end"])
    return rows


_TIMELINE_COLUMNS = (
    "event_id",
    "user_id",
    "session_id",
    "event_type",
    "page_url",
    "referrer",
    "device_type",
    "browser",
    "country",
    "city",
    "properties",
)


def user_event_timeline(
    events: Iterable[Event],
    *,
    user_id: str,
    start_date: str = DEFAULT_START_DATE,
    end_date: str = DEFAULT_END_DATE,
    event_type: str = "",
    limit: str = "100",
) -> list[Row]:
    """The user's events, newest first, ties by event_id."""
    kept = [
        (moment, event)
        for moment, event in _in_range(events, start_date, end_date)
        if event["user_id"] == user_id and (event_type == "" or event["event_type"] == event_type)
    ]
    kept.sort(key=lambda pair: pair[1]["event_id"])
    kept.sort(key=lambda pair: pair[0], reverse=True)
    return [
        {**{c: event[c] for c in _TIMELINE_COLUMNS}, "timestamp": _format_time(moment)}
        for moment, event in kept[: _limit(limit)]
    ]


def user_activity_metrics(
    events: Iterable[Event],
    *,
    start_date: str = DEFAULT_START_DATE,
    end_date: str = DEFAULT_END_DATE,
) -> list[Row]:
    """Per UTC day with events: users, sessions, events, page views, clicks, CTR."""
    days: dict[str, list[Event]] = defaultdict(list)
    for moment, event in _in_range(events, start_date, end_date):
        days[moment.date().isoformat()].append(event)
    rows = []
    for day in sorted(days, reverse=True):
        group = days[day]
        page_views = sum(1 for event in group if event["event_type"] == "page_view")
        clicks = sum(1 for event in group if event["event_type"] == "click")
        rows.append(
            {
                "date": day,
                "unique_users": len({event["user_id"] for event in group}),
                "sessions": len({event["session_id"] for event in group}),
                "total_events": len(group),
                "page_views": page_views,
                "clicks": clicks,
                "click_through_rate": _ratio(clicks, page_views, 2),
            }
        )
    return rows


# --- SaaS (tutorial 003) ------------------------------------------------------------------


def session_insights(
    events: Iterable[Event],
    *,
    start_date: str = DEFAULT_START_DATE,
    end_date: str = DEFAULT_END_DATE,
    user_id: str = "",
    limit: str = "100",
) -> list[Row]:
    """Sessions lasting more than 0 s; newest first, ties by session_id."""
    kept = [
        (moment, event)
        for moment, event in _in_range(events, start_date, end_date)
        if user_id == "" or event["user_id"] == user_id
    ]
    first_columns = ("user_id", "device_type", "browser", "os", "location")
    rows = []
    for session_id, session in _sessions(kept, first_columns).items():
        duration = int((session["end"] - session["start"]).total_seconds())
        if duration <= 0:
            continue
        first = dict(zip(first_columns, session["first"][2:], strict=True))
        rows.append(
            {
                "session_id": session_id,
                "user_id": first["user_id"],
                "session_start": session["start"],
                "session_end": session["end"],
                "session_duration_seconds": duration,
                "event_count": len(session["events"]),
                "device_type": first["device_type"],
                "browser": first["browser"],
                "os": first["os"],
                "location": first["location"],
            }
        )
    rows = _newest_first(rows, "session_start")[: _limit(limit)]
    for row in rows:
        row["session_start"] = _format_time(row["session_start"])
        row["session_end"] = _format_time(row["session_end"])
    return rows


def feature_usage(
    events: Iterable[Event],
    *,
    start_date: str = DEFAULT_START_DATE,
    end_date: str = DEFAULT_END_DATE,
    feature: str = "",
) -> list[Row]:
    """Per feature: events, distinct users and sessions; most used first, ties by name."""
    groups: dict[str, list[Event]] = defaultdict(list)
    for _, event in _in_range(events, start_date, end_date):
        if feature == "" or event["feature"] == feature:
            groups[event["feature"]].append(event)
    rows = [
        {
            "feature": name,
            "total_events": len(group),
            "unique_users": len({event["user_id"] for event in group}),
            "unique_sessions": len({event["session_id"] for event in group}),
        }
        for name, group in groups.items()
    ]
    rows.sort(key=lambda row: (-row["total_events"], row["feature"]))
    return rows


_ACTIVE_USERS_UNITS = {
    "1 day": "day",
    "day": "day",
    "1 week": "week",
    "week": "week",
    "1 month": "month",
    "month": "month",
}


def active_users(
    events: Iterable[Event],
    *,
    start_date: str = DEFAULT_START_DATE,
    end_date: str = DEFAULT_END_DATE,
    interval: str = "1 day",
) -> list[Row]:
    """Per period with events: distinct users, sessions, events; oldest first."""
    unit = _ACTIVE_USERS_UNITS[interval]
    periods: dict[datetime, list[Event]] = defaultdict(list)
    for moment, event in _in_range(events, start_date, end_date):
        periods[_bucket(moment, unit)].append(event)
    return [
        {
            "period": _format_time(period),
            "active_users": len({event["user_id"] for event in group}),
            "sessions": len({event["session_id"] for event in group}),
            "total_events": len(group),
        }
        for period, group in sorted(periods.items())
    ]


# --- clickstream (tutorial 004) -----------------------------------------------------------


def _oldest_first(kept: list[tuple[datetime, Event]]) -> list[tuple[datetime, Event]]:
    return sorted(kept, key=lambda pair: (pair[0], pair[1]["event_id"]))


def get_user_journey(
    events: Iterable[Event],
    *,
    user_id: str,
    start_date: str = DEFAULT_START_DATE,
    end_date: str = DEFAULT_END_DATE,
) -> list[Row]:
    """The user's events across sessions, oldest first, ties by event_id."""
    kept = [
        (moment, event)
        for moment, event in _in_range(events, start_date, end_date)
        if event["user_id"] == user_id
    ]
    return [
        {
            "user_id": event["user_id"],
            "session_id": event["session_id"],
            "timestamp": _format_time(moment),
            "event_type": event["event_type"],
            "page_url": event["page_url"],
            "page_title": event["page_title"],
            "referrer": event["referrer"],
            "device_type": event["device_type"],
            "browser": event["browser"],
        }
        for moment, event in _oldest_first(kept)
    ]


def get_session_events(events: Iterable[Event], *, session_id: str) -> list[Row]:
    """Every event of the session, oldest first, ties by event_id."""
    kept = [
        (_parse_time(event["timestamp"]), event)
        for event in events
        if event["session_id"] == session_id
    ]
    return [
        {
            "event_id": event["event_id"],
            "user_id": event["user_id"],
            "timestamp": _format_time(moment),
            "event_type": event["event_type"],
            "page_url": event["page_url"],
            "page_title": event["page_title"],
            "referrer": event["referrer"],
            "device_type": event["device_type"],
            "browser": event["browser"],
            "properties": event["properties"],
        }
        for moment, event in _oldest_first(kept)
    ]


def get_popular_pages(
    events: Iterable[Event],
    *,
    start_date: str = DEFAULT_START_DATE,
    end_date: str = DEFAULT_END_DATE,
    limit: str = "10",
) -> list[Row]:
    """Per page_url: page views (`page_view` or `pageview`) and the title of the latest
    one (largest (timestamp, event_id, title)); most viewed first, ties by url, title."""
    pages: dict[str, dict[str, Any]] = {}
    for moment, event in _in_range(events, start_date, end_date):
        if event["event_type"] not in _PAGE_VIEW_TYPES:
            continue
        latest = (moment, event["event_id"], event["page_title"])
        page = pages.setdefault(event["page_url"], {"views": 0, "latest": latest})
        page["views"] += 1
        page["latest"] = max(page["latest"], latest)
    rows = [
        {"page_url": url, "page_title": page["latest"][2], "view_count": page["views"]}
        for url, page in pages.items()
    ]
    rows.sort(key=lambda row: (-row["view_count"], row["page_url"], row["page_title"]))
    return rows[: _limit(limit)]


# --- journeys (issue 19) ---------------------------------------------------------------


def _epoch(moment: datetime) -> int:
    return int((moment - datetime(1970, 1, 1)).total_seconds())


def _funnel_path(matches: list[tuple[int, int]], steps: int, window: int, mode: str) -> list[int]:
    """windowFunnel's search over one user's (epoch second, step) matches, sorted; step 0 is
    an event matching no step (strict_order only). Returns the first chain of timestamps
    that reached the deepest step: its length is the user's level.

    chains[k] is the chain held for step k+1: the step-1 time it started from and the time
    of each later step. A step-1 match starts a chain; a step-k match extends the chain held
    for step k-1 if it lies within `window` seconds of that chain's start; the last step
    ends the search. strict_order: after a step-1 match, an event matching no step, or a
    step whose previous step holds no chain, ends it. strict_deduplication: a step-k match
    (k > 1) while step k holds a chain ends it."""
    chains: list[list[int] | None] = [None] * steps
    best: list[int] = []
    for moment, step in matches:
        if step == 0:
            if chains[0] is not None:
                break
            continue
        if step == 1:
            chains[0] = [moment]
            if not best:
                best = [moment]
            continue
        if mode == "strict_deduplication" and chains[step - 1] is not None:
            break
        if mode == "strict_order" and chains[0] is not None and chains[step - 2] is None:
            break
        previous = chains[step - 2]
        if previous is not None and moment <= previous[0] + window:
            chains[step - 1] = [*previous, moment]
            if step > len(best):
                best = chains[step - 1]
            if step == steps:
                break
    return best


def funnel(
    data: Mapping[str, Iterable[Event]],
    *,
    steps: Sequence[str],
    step_by: str = "event_type",
    source: str = "user_events",
    window_seconds: str = "86400",
    mode: str = "default",
    breakdown: str = "none",
    start_date: str = DEFAULT_START_DATE,
    end_date: str = DEFAULT_END_DATE,
) -> list[Row]:
    """Per user of `source`, over the user's in-range events: each event matches every
    position of `steps` its `step_by` value equals (none: step 0, seen by strict_order
    only); matches sorted by (time, step) go through _funnel_path. Users with level >= 1
    are grouped by the breakdown value of their first step-1 event (smallest (time, value));
    per group and step: users with level >= step, conversion from the previous step and
    from step 1 (4 decimals), and the median (statistics.median) of path[step] -
    path[step - 1] over those users (0 for step 1 or nobody). Ordered by breakdown, step."""
    column = {"device": "device_type", "browser": "browser", "country": "country"}.get(breakdown)
    matches: dict[str, list[tuple[int, int]]] = defaultdict(list)
    firsts: dict[str, tuple[datetime, str]] = {}
    for moment, event in _in_range(data[source], start_date, end_date):
        key = event[step_by]
        positions = [i + 1 for i, step in enumerate(steps) if step == key]
        if not positions:
            if mode != "strict_order":
                continue
            positions = [0]
        user = event["user_id"]
        matches[user].extend((_epoch(moment), position) for position in positions)
        if key == steps[0]:
            value = event.get(column, "") if column else ""
            firsts[user] = min(firsts.get(user, (moment, value)), (moment, value))
    groups: dict[str, list[list[int]]] = defaultdict(list)
    for user, found in matches.items():
        path = _funnel_path(sorted(found), len(steps), int(window_seconds), mode)
        if path:
            groups[firsts[user][1]].append(path)
    rows = []
    for value in sorted(groups):
        paths = groups[value]
        reached = [sum(1 for path in paths if len(path) >= k) for k in range(1, len(steps) + 1)]
        for k in range(1, len(steps) + 1):
            gaps = [path[k - 1] - path[k - 2] for path in paths if k > 1 and len(path) >= k]
            rows.append(
                {
                    "breakdown": value,
                    "step": k,
                    "step_name": steps[k - 1],
                    "users": reached[k - 1],
                    "conversion_from_previous": _ratio(reached[k - 1], reached[max(k - 2, 0)], 4),
                    "conversion_overall": _ratio(reached[k - 1], reached[0], 4),
                    "median_seconds_from_previous": float(statistics.median(gaps)) if gaps else 0.0,
                }
            )
    return rows


def retention(
    data: Mapping[str, Iterable[Event]],
    *,
    source: str = "user_events",
    period: str = "day",
    start_date: str = DEFAULT_START_DATE,
    end_date: str = DEFAULT_END_DATE,
) -> list[Row]:
    """Per user of `source`: cohort = the period of the first in-range event; active in
    every period holding an in-range event. Per (cohort, periods since the cohort): users
    active, the cohort's size, and their ratio (4 decimals). Months count by calendar
    month, weeks from Mondays, days by UTC date. Ordered by cohort, period_number."""
    first: dict[str, datetime] = {}
    active: dict[str, set[datetime]] = defaultdict(set)
    for moment, event in _in_range(data[source], start_date, end_date):
        user = event["user_id"]
        first[user] = min(first.get(user, moment), moment)
        active[user].add(_bucket(moment, period))
    counts: dict[tuple[datetime, int], int] = defaultdict(int)
    for user, seen in first.items():
        cohort = _bucket(seen, period)
        for moment in active[user]:
            if period == "month":
                number = (moment.year - cohort.year) * 12 + moment.month - cohort.month
            else:
                number = (moment - cohort).days // (7 if period == "week" else 1)
            counts[(cohort, number)] += 1
    return [
        {
            "cohort": cohort.strftime("%Y-%m-%d"),
            "period_number": number,
            "cohort_users": counts[(cohort, 0)],
            "active_users": users,
            "retention": _ratio(users, counts[(cohort, 0)], 4),
        }
        for (cohort, number), users in sorted(counts.items())
    ]


def page_paths(
    events: Iterable[Event],
    *,
    page_url: str,
    start_date: str = DEFAULT_START_DATE,
    end_date: str = DEFAULT_END_DATE,
    limit: str = "10",
) -> list[Row]:
    """Each session's in-range page views (`page_view` or `pageview`) in (time, event_id,
    url) order, runs of one url collapsed; around each place `page_url` holds, the url after
    it counts as `next`, the one before as `previous`. Per direction: counts, share of the
    direction's total (4 decimals), most first (ties by url), `limit` of each."""
    views: dict[str, list[tuple[datetime, str, str]]] = defaultdict(list)
    for moment, event in _in_range(events, start_date, end_date):
        if event["event_type"] in _PAGE_VIEW_TYPES:
            views[event["session_id"]].append((moment, event["event_id"], event["page_url"]))
    counts: dict[tuple[str, str], int] = defaultdict(int)
    for session in views.values():
        path: list[str] = []
        for _, _, url in sorted(session):
            if not path or path[-1] != url:
                path.append(url)
        for i, url in enumerate(path):
            if url != page_url:
                continue
            if i + 1 < len(path):
                counts[("next", path[i + 1])] += 1
            if i > 0:
                counts[("previous", path[i - 1])] += 1
    rows = []
    for direction in ("next", "previous"):
        mine = sorted(
            ((url, n) for (d, url), n in counts.items() if d == direction),
            key=lambda item: (-item[1], item[0]),
        )
        total = sum(n for _, n in mine)
        rows.extend(
            {
                "direction": direction,
                "page_url": url,
                "transitions": n,
                "share": _ratio(n, total, 4),
            }
            for url, n in mine[: _limit(limit)]
        )
    return rows


# --- catalogue and comparison ---------------------------------------------------------


# endpoint -> (datasource it reads, reference implementation); "" for a pipe whose `source`
# parameter names the datasource: its reference takes every datasource's events, by name.
ENDPOINTS: dict[str, tuple[str, Callable[..., list[Row]]]] = {
    "test_summary": ("ab_test_events", test_summary),
    "test_results": ("ab_test_events", test_results),
    "test_segments": ("ab_test_events", test_segments),
    "test_timeseries": ("ab_test_events", test_timeseries),
    "user_session_stats": ("user_events", user_session_stats),
    "user_event_timeline": ("user_events", user_event_timeline),
    "user_activity_metrics": ("user_events", user_activity_metrics),
    "session_insights": ("app_events", session_insights),
    "feature_usage": ("app_events", feature_usage),
    "active_users": ("app_events", active_users),
    "get_user_journey": ("clickstream_events", get_user_journey),
    "get_session_events": ("clickstream_events", get_session_events),
    "get_popular_pages": ("clickstream_events", get_popular_pages),
    "funnel": ("", funnel),
    "retention": ("", retention),
    "page_paths": ("clickstream_events", page_paths),
}

# Rounded columns may legitimately differ by one unit in the last kept decimal: the
# warehouse sums floats in another order and rounds x * 10^n, Python rounds the exact
# binary value (ClickHouse gives round(2.675, 2) = 2.68, Python 2.67).
FLOAT_TOLERANCES: dict[str, dict[str, float]] = {
    "test_summary": {"conversion_rate": 1e-4, "total_revenue": 1e-2, "revenue_per_user": 1e-4},
    # Not rounding: sums in another order (tests/test_test_results.py checks 1e-9 relative).
    "test_results": dict.fromkeys(
        [
            f.name
            for f in query_service_pb2.TestResultsRow.DESCRIPTOR.fields
            if f.type == f.TYPE_DOUBLE
        ],
        1e-9,
    ),
    "test_segments": {"conversion_rate": 1e-4, "total_revenue": 1e-2, "revenue_per_user": 1e-4},
    "test_timeseries": {"conversion_rate": 1e-4, "total_revenue": 1e-2},
    "user_activity_metrics": {"click_through_rate": 1e-2},
    "funnel": {"conversion_from_previous": 1e-4, "conversion_overall": 1e-4},
    "retention": {"retention": 1e-4},
    "page_paths": {"share": 1e-4},
}

_EPSILON = 1e-9


def assert_rows_match(
    actual_rows: Sequence[Mapping[str, Any]],
    expected_rows: Sequence[Mapping[str, Any]],
    float_tolerance: float | Mapping[str, float] = 0.0,
) -> None:
    """Asserts same row count, same columns in the same order, and equal values: exact
    for strings and integers, within an absolute tolerance (one for every column or one
    per column name, missing names exact) when either side is a float."""
    assert len(actual_rows) == len(expected_rows), (
        f"{len(actual_rows)} rows, expected {len(expected_rows)}; "
        f"first actual {list(actual_rows[:3])}, first expected {list(expected_rows[:3])}"
    )
    for index, (actual, expected) in enumerate(zip(actual_rows, expected_rows, strict=True)):
        assert list(actual) == list(expected), (
            f"row {index}: columns {list(actual)}, expected {list(expected)}"
        )
        for column, want in expected.items():
            got = actual[column]
            if isinstance(want, float) or isinstance(got, float):
                assert isinstance(got, int | float) and not isinstance(got, bool), (
                    f"row {index} column {column}: {got!r} is not a number (expected {want!r})"
                )
                if isinstance(float_tolerance, Mapping):
                    tolerance = float_tolerance.get(column, 0.0)
                else:
                    tolerance = float_tolerance
                assert math.isfinite(got) and abs(got - want) <= tolerance + _EPSILON, (
                    f"row {index} column {column}: {got!r}, expected {want!r} "
                    f"(tolerance {tolerance}); row {dict(actual)} vs {dict(expected)}"
                )
            else:
                assert got == want and type(got) is type(want), (
                    f"row {index} column {column}: {got!r}, expected {want!r}; "
                    f"row {dict(actual)} vs {dict(expected)}"
                )
