"""Deterministic, realistic demo events for the four tutorials' datasources.

The same (datasource, events, days, seed, start) always yields the same events: every
choice comes from one `random.Random` seeded per datasource, never from global state or
the clock. Events are grouped in sessions (several events seconds apart, some sessions of
a single event, now and then two events in the same second), sessions of a user keep the
user's device and country, visitors walk between pages that link to each other, and A/B
variants convert at different rates. Session starts follow the run's progress through the
window with a daily rhythm, so the stream is roughly, not strictly, time-ordered.

Rows are JSON-ready dicts holding exactly the datasource's columns, in column order:
timestamps as `YYYY-MM-DD HH:MM:SS` UTC text, JSON columns (`properties`, `metadata`) as
JSON text, `conversion` as 0/1 and `revenue` rounded to cents.
"""

from __future__ import annotations

import bisect
import itertools
import math
import random
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

DATASOURCES = ("ab_test_events", "user_events", "app_events", "clickstream_events")

# A fixed default so that `pipit seed` output is reproducible; the tutorials' calls ask
# for June 2023.
DEFAULT_START = datetime(2023, 6, 1, tzinfo=UTC)

_DAY = 86_400

Row = dict[str, Any]


# --- shared pools ------------------------------------------------------------------------

_DEVICES = (("desktop", 55), ("mobile", 35), ("tablet", 10))
_OS_BY_DEVICE = {
    "desktop": (("Windows", 55), ("macOS", 35), ("Linux", 10)),
    "mobile": (("Android", 55), ("iOS", 45)),
    "tablet": (("iPadOS", 60), ("Android", 40)),
}
_BROWSERS_BY_OS = {
    "Windows": (("Chrome", 65), ("Edge", 20), ("Firefox", 15)),
    "macOS": (("Chrome", 50), ("Safari", 40), ("Firefox", 10)),
    "Linux": (("Firefox", 55), ("Chrome", 45)),
    "Android": (("Chrome", 80), ("Samsung Internet", 12), ("Firefox", 8)),
    "iOS": (("Safari", 85), ("Chrome", 15)),
    "iPadOS": (("Safari", 90), ("Chrome", 10)),
}
_BROWSER_VERSIONS = {
    "Chrome": ("114.0", "115.0", "116.0"),
    "Edge": ("114.0", "115.0"),
    "Firefox": ("113.0", "114.0", "115.0"),
    "Safari": ("15.6", "16.5", "13.0"),
    "Samsung Internet": ("21.0", "22.0"),
}
_SCREENS = {
    "desktop": ("1920x1080", "1440x900", "2560x1440", "1766x1010"),
    "mobile": ("390x844", "412x915", "375x667"),
    "tablet": ("810x1080", "820x1180", "1024x1366"),
}
# (ISO code, country name, cities, weight)
_COUNTRIES = (
    ("US", "United States", ("New York", "San Francisco", "Chicago", "Austin"), 30),
    ("GB", "United Kingdom", ("London", "Manchester", "Edinburgh"), 10),
    ("DE", "Germany", ("Berlin", "Munich", "Hamburg"), 9),
    ("FR", "France", ("Paris", "Lyon"), 7),
    ("CA", "Canada", ("Toronto", "Vancouver", "Montreal"), 7),
    ("IN", "India", ("Bangalore", "Mumbai", "Delhi"), 10),
    ("BR", "Brazil", ("São Paulo", "Rio de Janeiro"), 8),
    ("JP", "Japan", ("Tokyo", "Osaka"), 6),
    ("AU", "Australia", ("Sydney", "Melbourne"), 6),
    ("ES", "Spain", ("Madrid", "Barcelona"), 7),
)
# app_events' `location` as in the tutorial's sample ("UK").
_LOCATION_BY_CODE = {"GB": "UK"}

_SITE = "https://example.com"
# path -> (title, paths it links to)
_PAGES: dict[str, tuple[str, tuple[str, ...]]] = {
    "/": ("Home", ("/products", "/pricing", "/blog", "/about", "/signup")),
    "/products": (
        "Products",
        ("/products/analytics", "/products/pipelines", "/pricing", "/"),
    ),
    "/products/analytics": ("Real-time Analytics", ("/pricing", "/docs", "/signup")),
    "/products/pipelines": ("Data Pipelines", ("/pricing", "/docs", "/products")),
    "/pricing": ("Pricing", ("/signup", "/checkout", "/contact", "/products")),
    "/signup": ("Sign Up", ("/checkout", "/docs", "/")),
    "/checkout": ("Checkout", ("/checkout/complete", "/pricing")),
    "/checkout/complete": ("Order Complete", ("/docs", "/")),
    "/docs": ("Documentation", ("/docs/quickstart", "/products", "/blog")),
    "/docs/quickstart": ("Quickstart Guide", ("/docs", "/signup")),
    "/blog": ("Blog", ("/blog/real-time-analytics", "/blog/ab-testing", "/")),
    "/blog/real-time-analytics": (
        "What Is Real-time Analytics?",
        ("/products/analytics", "/blog", "/signup"),
    ),
    "/blog/ab-testing": ("A/B Testing Done Right", ("/blog", "/products", "/signup")),
    "/about": ("About Us", ("/contact", "/")),
    "/contact": ("Contact Page", ("/", "/pricing")),
}
_LANDING_PAGES = (
    ("/", 40),
    ("/blog/real-time-analytics", 12),
    ("/blog/ab-testing", 8),
    ("/pricing", 12),
    ("/products", 12),
    ("/docs", 10),
    ("/contact", 6),
)
_EXTERNAL_REFERRERS = (
    ("", 30),  # direct
    ("https://google.com", 35),
    ("https://twitter.com", 10),
    ("https://linkedin.com", 8),
    ("https://news.ycombinator.com", 7),
    ("https://facebook.com", 5),
    ("https://newsletter.example.com", 5),
)
_SECTIONS = ("header", "main", "sidebar", "footer")


# --- small helpers -----------------------------------------------------------------------


class _Weighted:
    """Fast weighted choice over a fixed table (random.choices recomputes sums)."""

    __slots__ = ("values", "cumulative", "total")

    def __init__(self, table: Sequence[tuple[Any, float]]) -> None:
        self.values = [value for value, _ in table]
        self.cumulative = list(itertools.accumulate(weight for _, weight in table))
        self.total = self.cumulative[-1]

    def pick(self, rng: random.Random) -> Any:
        return self.values[bisect.bisect_right(self.cumulative, rng.random() * self.total)]


_DEVICE_PICK = _Weighted(_DEVICES)
_OS_PICK = {device: _Weighted(table) for device, table in _OS_BY_DEVICE.items()}
_BROWSER_PICK = {os_: _Weighted(table) for os_, table in _BROWSERS_BY_OS.items()}
_COUNTRY_PICK = _Weighted([(entry[:3], entry[3]) for entry in _COUNTRIES])
_LANDING_PICK = _Weighted(_LANDING_PAGES)
_REFERRER_PICK = _Weighted(_EXTERNAL_REFERRERS)

# Share of a day's traffic per hour (UTC): quiet nights, busy afternoons.
_HOURLY = (2, 1, 1, 1, 1, 2, 3, 5, 7, 8, 9, 9, 9, 9, 9, 9, 8, 8, 7, 7, 6, 5, 4, 3)
_HOUR_CDF = [c / sum(_HOURLY) for c in itertools.accumulate(_HOURLY)]


def _json(value: dict[str, Any]) -> str:
    return orjson.dumps(value).decode()


class _Clock:
    """Formats epoch seconds as `YYYY-MM-DD HH:MM:SS` UTC, caching the date part."""

    def __init__(self) -> None:
        self._dates: dict[int, str] = {}

    def format(self, ts: int) -> str:
        day, second = divmod(ts, _DAY)
        date = self._dates.get(day)
        if date is None:
            date = (datetime(1970, 1, 1) + timedelta(days=day)).strftime("%Y-%m-%d")
            self._dates[day] = date
        hour, rest = divmod(second, 3600)
        minute, sec = divmod(rest, 60)
        return f"{date} {hour:02d}:{minute:02d}:{sec:02d}"


class _Device:
    __slots__ = ("device", "os", "browser", "browser_version", "screen")

    def __init__(self, rng: random.Random) -> None:
        self.device = _DEVICE_PICK.pick(rng)
        self.os = _OS_PICK[self.device].pick(rng)
        self.browser = _BROWSER_PICK[self.os].pick(rng)
        self.browser_version = rng.choice(_BROWSER_VERSIONS[self.browser])
        self.screen = rng.choice(_SCREENS[self.device])


class _User:
    __slots__ = ("user_id", "device", "code", "country", "city", "tier")

    def __init__(self, rng: random.Random, number: int) -> None:
        self.user_id = f"user_{number}"
        self.device = _Device(rng)
        self.code, self.country, cities = _COUNTRY_PICK.pick(rng)
        self.city = rng.choice(cities)
        self.tier = rng.choice(("free", "free", "basic", "basic", "pro", "enterprise"))


class _Session:
    """One visit: who, on what device, and when each of its events happened."""

    __slots__ = ("number", "user", "device", "times")

    def __init__(self, number: int, user: _User, device: _Device, times: list[int]) -> None:
        self.number = number
        self.user = user
        self.device = device
        self.times = times


def _sessions(rng: random.Random, events: int, start: int, span: int) -> Iterator[_Session]:
    """Sessions whose event counts add up to exactly `events`, spread over the window.

    A session starts where the run's progress puts it (so the stream is roughly
    time-ordered and covers the whole window), shifted within its day by the hourly
    rhythm. About one session in five has a single event."""
    users: dict[int, _User] = {}
    user_count = max(1, events // 25)
    emitted = 0
    number = 0
    last = start + span - 1
    while emitted < events:
        number += 1
        if rng.random() < 0.2:
            size = 1
        else:
            size = min(2 + int(rng.expovariate(1 / 4)), 40)
        size = min(size, events - emitted)
        # A few heavy users and a long tail of occasional ones.
        index = int(user_count * rng.random() ** 1.7)
        user = users.get(index)
        if user is None:
            user = users[index] = _User(rng, index + 1)
        device = user.device if rng.random() < 0.85 else _Device(rng)

        progress = span * emitted / events
        day_start = start + int(progress // _DAY) * _DAY
        hour = bisect.bisect_left(_HOUR_CDF, rng.random())
        ts = min(day_start + hour * 3600 + rng.randrange(3600), last)
        times = [ts]
        for _ in range(size - 1):
            gap = 0 if rng.random() < 0.08 else min(1 + int(rng.expovariate(1 / 45)), 900)
            ts = min(ts + gap, last)
            times.append(ts)
        emitted += size
        yield _Session(number, user, device, times)


# --- per datasource ----------------------------------------------------------------------

# test_id -> (variant -> per-session conversion probability), revenue mean and spread
_AB_TESTS: tuple[tuple[str, tuple[tuple[str, float], ...], float, float], ...] = (
    ("homepage_redesign", (("A", 0.10), ("B", 0.14)), 30.0, 12.0),
    ("checkout_flow", (("A", 0.18), ("B", 0.15), ("C", 0.23)), 75.0, 30.0),
    ("pricing_page", (("A", 0.06), ("B", 0.09)), 120.0, 45.0),
    ("onboarding_email", (("A", 0.25), ("B", 0.31)), 15.0, 5.0),
)
_AB_TEST_PICK = _Weighted([(test, w) for test, w in zip(_AB_TESTS, (40, 25, 20, 15), strict=True)])
_AB_BROWSE = _Weighted((("page_view", 50), ("click", 35), ("add_to_cart", 15)))


def _ab_test_events(
    rng: random.Random, sessions: Iterator[_Session], clock: _Clock
) -> Iterator[Row]:
    assignments: dict[tuple[str, str], tuple[str, float]] = {}
    for session in sessions:
        test_id, variants, revenue_mean, revenue_sd = _AB_TEST_PICK.pick(rng)
        key = (session.user.user_id, test_id)
        assigned = assignments.get(key)
        if assigned is None:
            assigned = assignments[key] = rng.choice(variants)
        variant, rate = assigned
        converts = len(session.times) > 1 and rng.random() < rate
        last = len(session.times) - 1
        for i, ts in enumerate(session.times):
            conversion = 0
            revenue = 0.0
            if i == 0:
                event_type = "impression"
            elif converts and i == last:
                event_type = "purchase"
                conversion = 1
                revenue = round(max(1.0, rng.gauss(revenue_mean, revenue_sd)), 2)
            else:
                event_type = _AB_BROWSE.pick(rng)
            yield {
                "timestamp": clock.format(ts),
                "user_id": session.user.user_id,
                "test_id": test_id,
                "variant": variant,
                "event_type": event_type,
                "conversion": conversion,
                "revenue": revenue,
                "session_id": f"session_{session.number}",
                "device": session.device.device,
                "country": session.user.code,
            }


_UE_ACTIONS = _Weighted(
    (("page_view", 40), ("click", 30), ("scroll", 20), ("form_submit", 5), ("video_play", 5))
)


def _walk(rng: random.Random, path: str) -> str:
    return rng.choice(_PAGES[path][1])


def _user_events(rng: random.Random, sessions: Iterator[_Session], clock: _Clock) -> Iterator[Row]:
    event_number = 0
    for session in sessions:
        path = _LANDING_PICK.pick(rng)
        referrer = _REFERRER_PICK.pick(rng)
        for i, ts in enumerate(session.times):
            event_type = "page_view" if i == 0 else _UE_ACTIONS.pick(rng)
            if i > 0 and event_type == "page_view":
                referrer = _SITE + path
                path = _walk(rng, path)
            if event_type == "click":
                properties = {
                    "button_id": f"btn_{rng.randrange(1, 9)}",
                    "page_section": rng.choice(_SECTIONS),
                }
            elif event_type == "scroll":
                properties = {"scroll_depth": rng.choice((25, 50, 75, 100))}
            else:
                properties = {"page_section": "main"}
            event_number += 1
            yield {
                "event_id": f"ev_{event_number}",
                "user_id": session.user.user_id,
                "session_id": f"s{session.number}",
                "event_type": event_type,
                "page_url": _SITE + path,
                "referrer": referrer,
                "device_type": session.device.device,
                "browser": session.device.browser,
                "country": session.user.country,
                "city": session.user.city,
                "properties": _json(properties),
                "timestamp": clock.format(ts),
            }


_FEATURES = _Weighted(
    (
        ("dashboard", 30),
        ("reports", 18),
        ("search", 12),
        ("integrations", 9),
        ("billing", 8),
        ("settings", 7),
        ("user_management", 6),
        ("notifications", 5),
        ("export", 3),
        ("api_keys", 2),
    )
)
_APP_ACTIONS = _Weighted(
    (("view", 40), ("click", 30), ("create", 10), ("update", 10), ("search", 6), ("delete", 4))
)


def _app_events(rng: random.Random, sessions: Iterator[_Session], clock: _Clock) -> Iterator[Row]:
    event_number = 0
    for session in sessions:
        feature = "dashboard"
        last = len(session.times) - 1
        logs_out = rng.random() < 0.3
        location = _LOCATION_BY_CODE.get(session.user.code, session.user.code)
        for i, ts in enumerate(session.times):
            if i == 0:
                event_type = "login"
            elif logs_out and i == last and i > 1:
                event_type = "logout"
            else:
                if rng.random() < 0.35:
                    feature = _FEATURES.pick(rng)
                event_type = _APP_ACTIONS.pick(rng)
            event_number += 1
            metadata = {
                "subscription_tier": session.user.tier,
                "duration": rng.randrange(1, 600),
            }
            yield {
                "event_id": f"evt_{event_number}",
                "user_id": session.user.user_id,
                "session_id": f"sess_{session.number}",
                "event_type": event_type,
                "feature": feature,
                "timestamp": clock.format(ts),
                "device_type": session.device.device,
                "browser": session.device.browser,
                "os": session.device.os,
                "location": location,
                "metadata": _json(metadata),
            }


_CS_ACTIONS = _Weighted(
    (("page_view", 45), ("click", 30), ("scroll", 15), ("add_to_cart", 5), ("form_submit", 5))
)


def _clickstream_events(
    rng: random.Random, sessions: Iterator[_Session], clock: _Clock
) -> Iterator[Row]:
    event_number = 0
    for session in sessions:
        path = _LANDING_PICK.pick(rng)
        referrer = _REFERRER_PICK.pick(rng)
        device = session.device
        for i, ts in enumerate(session.times):
            event_type = "page_view" if i == 0 else _CS_ACTIONS.pick(rng)
            if i > 0 and event_type == "page_view":
                referrer = _SITE + path
                path = _walk(rng, path)
            properties: dict[str, Any] = {
                "browser_version": device.browser_version,
                "screen_size": device.screen,
            }
            if event_type == "click":
                properties["element"] = rng.choice(("cta", "nav_link", "card", "button"))
            event_number += 1
            yield {
                "event_id": f"ev_{event_number}",
                "user_id": session.user.user_id,
                "session_id": f"sess_{session.number}",
                "event_type": event_type,
                "page_url": _SITE + path,
                "page_title": _PAGES[path][0],
                "referrer": referrer,
                "timestamp": clock.format(ts),
                "device_type": device.device,
                "browser": device.browser,
                "properties": _json(properties),
            }


_Generator = Callable[[random.Random, Iterator[_Session], _Clock], Iterator[Row]]
_GENERATORS: dict[str, _Generator] = {
    "ab_test_events": _ab_test_events,
    "user_events": _user_events,
    "app_events": _app_events,
    "clickstream_events": _clickstream_events,
}


# --- public API --------------------------------------------------------------------------


def _epoch(moment: datetime) -> int:
    """Naive datetimes are UTC, like the tutorials' timestamps."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return math.floor(moment.timestamp())


def generate(
    datasource: str,
    events: int,
    *,
    days: int = 30,
    seed: int = 42,
    start: datetime | None = None,
) -> Iterator[dict[str, Any]]:
    """Yields exactly `events` rows for `datasource`, spread over `days` days from
    `start` (default 2023-06-01 00:00:00 UTC). Same arguments, same rows."""
    if datasource not in _GENERATORS:
        raise ValueError(f"unknown datasource {datasource!r}; expected one of {DATASOURCES}")
    if events < 0:
        raise ValueError("events must be >= 0")
    if days < 1:
        raise ValueError("days must be >= 1")
    # Seeded by text so each datasource has its own stream, stable across processes.
    rng = random.Random(f"pipit-seed:{seed}:{datasource}")
    begin = _epoch(start if start is not None else DEFAULT_START)
    sessions = _sessions(rng, events, begin, days * _DAY)
    return _GENERATORS[datasource](rng, sessions, _Clock())


def generate_all(
    events_per_datasource: int,
    *,
    days: int = 30,
    seed: int = 42,
    start: datetime | None = None,
    datasources: Sequence[str] = DATASOURCES,
) -> dict[str, Iterator[dict[str, Any]]]:
    """One lazy row iterator per datasource (all four by default), in `datasources`
    order, each as `generate` would give it."""
    return {
        name: generate(name, events_per_datasource, days=days, seed=seed, start=start)
        for name in datasources
    }
