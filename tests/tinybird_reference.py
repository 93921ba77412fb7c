"""Plain-Python readings of the tutorials' five full pipes as their SQL is written
(tests/projects/tutorials/, from ../shared/seeds/): the same filters with the same
defaults, the same grouping and order, the tutorial's `'pageview'` spelling included.
Used against answers of those pipes built from the datafiles and run by Pipit."""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

Event = Mapping[str, Any]
_FORMAT = "%Y-%m-%d %H:%M:%S"


def _time(text: str) -> datetime:
    return datetime.strptime(text, _FORMAT)


def _between(events: Iterable[Event], start: str, end: str) -> list[Event]:
    low, high = _time(start), _time(end)
    return [e for e in events if low <= _time(e["timestamp"]) <= high]


def _round(value: float, digits: int) -> float:
    return round(value, digits)


def test_summary(
    events: Iterable[Event],
    test_id: str = "",
    start_date: str = "2023-01-01 00:00:00",
    end_date: str = "2023-12-31 23:59:59",
) -> list[dict[str, Any]]:
    groups: dict[tuple[str, str], list[Event]] = defaultdict(list)
    for e in _between(events, start_date, end_date):
        if e["test_id"] == test_id:
            groups[(e["test_id"], e["variant"])].append(e)
    rows = []
    for (test, variant), group in sorted(groups.items()):
        users = len({e["user_id"] for e in group})
        conversions = sum(1 for e in group if e["conversion"] == 1)
        revenue = math.fsum(e["revenue"] for e in group)
        rows.append(
            {
                "test_id": test,
                "variant": variant,
                "users": users,
                "conversions": conversions,
                "conversion_rate": _round(conversions / users, 4),
                "total_revenue": revenue,
                "revenue_per_user": _round(revenue / users, 4),
            }
        )
    return rows


def session_insights(
    events: Iterable[Event],
    user_id: str,
    start_date: str = "2023-01-01 00:00:00",
    end_date: str = "2024-12-31 23:59:59",
    limit: int = 100,
) -> list[dict[str, Any]]:
    keys = ("session_id", "user_id", "device_type", "browser", "os", "location")
    groups: dict[tuple, list[Event]] = defaultdict(list)
    for e in _between(events, start_date, end_date):
        if e["user_id"] == user_id:
            groups[tuple(e[k] for k in keys)].append(e)
    rows = []
    for key, group in groups.items():
        times = [_time(e["timestamp"]) for e in group]
        start, end = min(times), max(times)
        duration = int((end - start).total_seconds())
        if duration <= 0:
            continue
        row = dict(zip(keys, key, strict=True))
        rows.append(
            {
                "session_id": row["session_id"],
                "user_id": row["user_id"],
                "session_start": start.strftime(_FORMAT),
                "session_end": end.strftime(_FORMAT),
                "session_duration_seconds": duration,
                "event_count": len(group),
                "device_type": row["device_type"],
                "browser": row["browser"],
                "os": row["os"],
                "location": row["location"],
            }
        )
    rows.sort(key=lambda r: r["session_start"], reverse=True)
    return rows[:limit]


_JOURNEY = (
    "user_id",
    "session_id",
    "timestamp",
    "event_type",
    "page_url",
    "page_title",
    "referrer",
    "device_type",
    "browser",
)
_SESSION = (
    "event_id",
    "user_id",
    "timestamp",
    "event_type",
    "page_url",
    "page_title",
    "referrer",
    "device_type",
    "browser",
    "properties",
)


def get_user_journey(
    events: Iterable[Event],
    user_id: str = "",
    start_date: str = "2023-01-01 00:00:00",
    end_date: str = "2023-12-31 23:59:59",
) -> list[dict[str, Any]]:
    kept = [e for e in _between(events, start_date, end_date) if e["user_id"] == user_id]
    kept.sort(key=lambda e: e["timestamp"])
    return [{k: e[k] for k in _JOURNEY} for e in kept]


def get_session_events(events: Iterable[Event], session_id: str = "") -> list[dict[str, Any]]:
    kept = sorted(
        (e for e in events if e["session_id"] == session_id), key=lambda e: e["timestamp"]
    )
    return [{k: e[k] for k in _SESSION} for e in kept]


def get_popular_pages(
    events: Iterable[Event],
    start_date: str = "2023-01-01 00:00:00",
    end_date: str = "2023-12-31 23:59:59",
    limit: int = 10,
) -> list[dict[str, Any]]:
    counts: dict[tuple[str, str], int] = defaultdict(int)
    for e in _between(events, start_date, end_date):
        if e["event_type"] == "pageview":
            counts[(e["page_url"], e["page_title"])] += 1
    rows = [
        {"page_url": url, "page_title": title, "view_count": n}
        for (url, title), n in counts.items()
    ]
    rows.sort(key=lambda r: r["view_count"], reverse=True)
    return rows[:limit]
