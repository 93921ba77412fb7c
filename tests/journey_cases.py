"""Events for the journeys (funnel, retention, page paths): generated users whose events
never share a second (so the order of each user's events is never in doubt), and users
written by hand for the funnel's edge cases. All of it lies in February and March 2024,
away from the tutorials' generated window, so a date range selects it alone."""

from __future__ import annotations

import random
from datetime import datetime, timedelta
from typing import Any

START = datetime(2024, 2, 1)
END = datetime(2024, 3, 20)
RANGE = {"start_date": "2024-02-01 00:00:00", "end_date": "2024-03-31 23:59:59"}
SITE = "https://shop.example.com"  # its own pages: the tutorials' page counts stay theirs
PAGES = ("/", "/pricing", "/signup", "/checkout", "/docs", "/blog")
FUNNEL_STEPS = ["page_view", "signup", "purchase"]

_TYPES = (("page_view", 5), ("click", 3), ("signup", 2), ("purchase", 1), ("scroll", 2))
_DEVICES = (("desktop", "Chrome", "US"), ("mobile", "Safari", "FR"), ("tablet", "Firefox", "JP"))


def _text(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%S")


def _user_event(
    n: str,
    user: str,
    session: str,
    kind: str,
    page: str,
    when: datetime,
    device: tuple[str, str, str],
) -> dict[str, Any]:
    return {
        "event_id": f"jr_ev_{n}",
        "user_id": user,
        "session_id": session,
        "event_type": kind,
        "page_url": SITE + page,
        "referrer": "",
        "device_type": device[0],
        "browser": device[1],
        "country": device[2],
        "city": "",
        "properties": "{}",
        "timestamp": _text(when),
    }


def _click_event(
    n: str,
    user: str,
    session: str,
    kind: str,
    page: str,
    when: datetime,
    device: tuple[str, str, str],
) -> dict[str, Any]:
    return {
        "event_id": f"jr_cs_{n}",
        "user_id": user,
        "session_id": session,
        "event_type": kind,
        "page_url": SITE + page,
        "page_title": page,
        "referrer": "",
        "timestamp": _text(when),
        "device_type": device[0],
        "browser": device[1],
        "properties": "{}",
    }


def _app_event(
    n: str, user: str, session: str, when: datetime, device: tuple[str, str, str]
) -> dict[str, Any]:
    return {
        "event_id": f"jr_app_{n}",
        "user_id": user,
        "session_id": session,
        "event_type": "view",
        "feature": "reports",
        "timestamp": _text(when),
        "device_type": device[0],
        "browser": device[1],
        "os": "Linux",
        "location": device[2],
        "metadata": "{}",
    }


# Hand-written funnel users for FUNNEL_STEPS (seconds after their first event):
# a skipped step, repeated steps, a step outside an hour's window, a second chain that
# completes after a first that did not, and steps with another event between them.
_EDGE_USERS: dict[str, list[tuple[int, str]]] = {
    "jr_skip": [(0, "page_view"), (60, "purchase")],
    "jr_repeat": [
        (0, "page_view"),
        (100, "page_view"),
        (200, "signup"),
        (300, "signup"),
        (400, "purchase"),
    ],
    "jr_late": [(0, "page_view"), (3000, "signup"), (4000, "purchase")],
    "jr_restart": [
        (0, "page_view"),
        (100, "signup"),
        (5000, "page_view"),
        (5100, "signup"),
        (5250, "purchase"),
    ],
    "jr_between": [
        (0, "signup"),
        (50, "page_view"),
        (70, "click"),
        (90, "signup"),
        (130, "purchase"),
    ],
}


def journey_events(seed: int = 19) -> dict[str, list[dict[str, Any]]]:
    """user_events, clickstream_events and app_events rows, tie-free per user."""
    rng = random.Random(seed)
    kinds, weights = zip(*_TYPES, strict=True)
    out: dict[str, list[dict[str, Any]]] = {
        "user_events": [],
        "clickstream_events": [],
        "app_events": [],
    }
    number = 0
    span = int((END - START).total_seconds())
    for u in range(60):
        user = f"jr_user_{u}"
        used: dict[str, set[datetime]] = {name: set() for name in out}
        for s in range(rng.randint(1, 5)):
            device = rng.choice(_DEVICES)
            start = START + timedelta(seconds=rng.randrange(span))
            for name in out:
                when = start + timedelta(seconds=rng.randrange(600))
                page = rng.choice(PAGES)
                for _ in range(rng.randint(2, 12)):
                    while when in used[name]:  # one second holds one event of the user
                        when += timedelta(seconds=1)
                    used[name].add(when)
                    number += 1
                    session = f"jr_{name[:2]}_{u}_{s}"
                    if name == "user_events":
                        kind = rng.choices(kinds, weights)[0]
                        row = _user_event(str(number), user, session, kind, page, when, device)
                    elif name == "clickstream_events":
                        kind = "page_view" if rng.random() < 0.75 else "click"
                        row = _click_event(str(number), user, session, kind, page, when, device)
                        if rng.random() < 0.6:  # otherwise the page is seen again (a reload)
                            page = rng.choice(PAGES)
                    else:
                        row = _app_event(str(number), user, session, when, device)
                    out[name].append(row)
                    when += timedelta(seconds=1 + int(rng.expovariate(1 / 900)))
    for i, (user, script) in enumerate(sorted(_EDGE_USERS.items())):
        first = datetime(2024, 2, 10 + i, 9, 0, 0)
        for j, (offset, kind) in enumerate(script):
            out["user_events"].append(
                _user_event(
                    f"{user}_{j}",
                    user,
                    f"{user}_s",
                    kind,
                    "/",
                    first + timedelta(seconds=offset),
                    _DEVICES[j % 3],
                )
            )
    return out


JOURNEY_EVENTS = journey_events()
