"""The shared test dataset for the endpoints: generated events for every datasource plus
hand-written edge cases, and the parameter combinations every endpoint is checked with
(on the SQL directly, and end to end through gRPC and HTTP on both engines)."""

from __future__ import annotations

from typing import Any

from journey_cases import FUNNEL_STEPS, JOURNEY_EVENTS, SITE
from journey_cases import RANGE as JOURNEYS
from samples import ab_test_event, tutorial_event

from pipit.seed.generator import generate_all

# --- the data -----------------------------------------------------------------------------

GENERATED_EVENTS = 3000
GENERATED_DAYS = 10  # 2023-06-01 .. 2023-06-10

_EXTRA: dict[str, list[dict[str, Any]]] = {
    "ab_test_events": [
        # The tutorial's POST sample (joins the generated homepage_redesign test).
        ab_test_event(),
        # A test with a single event.
        {
            "timestamp": "2023-07-20 09:00:00",
            "user_id": "user_solo",
            "test_id": "solo_test",
            "variant": "B",
            "event_type": "page_view",
            "conversion": 1,
            "revenue": 29.99,
            "session_id": "session_solo",
            "device": "mobile",
            "country": "US",
        },
        # The tutorial's data sample, years after the generated window.
        {
            "timestamp": "2025-04-28 18:42:22",
            "user_id": "user_455",
            "test_id": "test_5",
            "variant": "variant_a",
            "event_type": "click",
            "conversion": 1,
            "revenue": 84.55,
            "session_id": "session_3455",
            "device": "desktop",
            "country": "AU",
        },
    ],
    "user_events": [
        # The tutorial's data sample: a single event of a user seen nowhere else.
        tutorial_event("user_events", properties='{"button_id":"btn_2","page_section":"main"}'),
        # A session whose first second holds two events: the smaller event_id is first.
        *(
            {
                "event_id": event_id,
                "user_id": "user_tie",
                "session_id": "s_tie",
                "event_type": event_type,
                "page_url": "https://example.com/" + page,
                "referrer": "",
                "device_type": device,
                "browser": browser,
                "country": country,
                "city": "",
                "properties": "{}",
                "timestamp": timestamp,
            }
            for event_id, event_type, page, device, browser, country, timestamp in (
                (
                    "ev_tie_b",
                    "page_view",
                    "",
                    "desktop",
                    "Chrome",
                    "Germany",
                    "2023-06-04 10:00:00",
                ),
                ("ev_tie_a", "click", "", "tablet", "Safari", "France", "2023-06-04 10:00:00"),
                (
                    "ev_tie_c",
                    "page_view",
                    "pricing",
                    "mobile",
                    "Firefox",
                    "Spain",
                    "2023-06-04 10:05:00",
                ),
            )
        ),
        # A second session starting in the same second: ties by session_id.
        {
            "event_id": "ev_tie_d",
            "user_id": "user_tie",
            "session_id": "s_tia",
            "event_type": "page_view",
            "page_url": "https://example.com/docs",
            "referrer": "",
            "device_type": "mobile",
            "browser": "Chrome",
            "country": "Japan",
            "city": "Tokyo",
            "properties": "{}",
            "timestamp": "2023-06-04 10:00:00",
        },
    ],
    "app_events": [
        # The tutorial's data sample: a one-event session (0 s, so no session insight).
        tutorial_event("app_events", metadata='{"subscription_tier":"basic","duration":323}'),
        # Three events in the same second: a 0 s session.
        *(
            {
                "event_id": f"evt_zero_{n}",
                "user_id": "user_zero",
                "session_id": "sess_zero",
                "event_type": "click",
                "feature": "reports",
                "timestamp": "2023-06-05 12:00:00",
                "device_type": "desktop",
                "browser": "Chrome",
                "os": "Linux",
                "location": "DE",
                "metadata": "{}",
            }
            for n in range(3)
        ),
        # Tied first second with different devices; one event without a feature.
        *(
            {
                "event_id": event_id,
                "user_id": "user_tie",
                "session_id": "sess_tie",
                "event_type": "view",
                "feature": feature,
                "timestamp": timestamp,
                "device_type": device,
                "browser": browser,
                "os": os_,
                "location": location,
                "metadata": "{}",
            }
            for event_id, feature, device, browser, os_, location, timestamp in (
                (
                    "evt_tie_b",
                    "dashboard",
                    "desktop",
                    "Edge",
                    "Windows",
                    "US",
                    "2023-06-06 08:00:00",
                ),
                ("evt_tie_a", "", "mobile", "Safari", "iOS", "FR", "2023-06-06 08:00:00"),
                (
                    "evt_tie_c",
                    "billing",
                    "tablet",
                    "Chrome",
                    "Android",
                    "ES",
                    "2023-06-06 08:30:00",
                ),
            )
        ),
        # A second session starting in the same second: ties by session_id.
        *(
            {
                "event_id": event_id,
                "user_id": "user_tie",
                "session_id": "sess_tia",
                "event_type": "view",
                "feature": "search",
                "timestamp": timestamp,
                "device_type": "desktop",
                "browser": "Firefox",
                "os": "Linux",
                "location": "JP",
                "metadata": "{}",
            }
            for event_id, timestamp in (
                ("evt_tie_d", "2023-06-06 08:00:00"),
                ("evt_tie_e", "2023-06-06 08:00:09"),
            )
        ),
    ],
    "clickstream_events": [
        # The tutorial's data sample: a one-event session of a user seen nowhere else.
        tutorial_event("clickstream_events"),
        # The tutorial SQL's `pageview` spelling, and a page renamed after the window.
        *(
            {
                "event_id": event_id,
                "user_id": "user_legacy",
                "session_id": "sess_legacy",
                "event_type": event_type,
                "page_url": "https://example.com/" + page,
                "page_title": title,
                "referrer": "",
                "timestamp": timestamp,
                "device_type": "desktop",
                "browser": "Firefox",
                "properties": "{}",
            }
            for event_id, event_type, page, title, timestamp in (
                # Same second, inserted out of event_id order.
                ("ev_legacy_2", "pageview", "legacy", "Legacy Page", "2023-06-02 09:00:00"),
                ("ev_legacy_1", "pageview", "legacy", "Legacy Page", "2023-06-02 09:00:00"),
                ("ev_legacy_3", "pageview", "pricing", "Pricing", "2023-06-02 09:01:00"),
                ("ev_legacy_4", "page_view", "pricing", "Plans & Pricing", "2023-06-12 12:00:00"),
            )
        ),
    ],
}

DATA: dict[str, list[dict[str, Any]]] = {
    name: [*rows, *_EXTRA[name], *JOURNEY_EVENTS.get(name, [])]
    for name, rows in generate_all(GENERATED_EVENTS, days=GENERATED_DAYS, seed=7).items()
}


def _busiest(datasource: str, column: str) -> str:
    counts: dict[str, int] = {}
    for event in DATA[datasource]:
        counts[event[column]] = counts.get(event[column], 0) + 1
    return max(sorted(counts), key=counts.__getitem__)


def _session_with_tied_timestamps(datasource: str) -> str:
    seen: set[tuple[str, str]] = set()
    for event in DATA[datasource]:
        key = (event["session_id"], event["timestamp"])
        if key in seen:
            return event["session_id"]
        seen.add(key)
    raise AssertionError(f"no session of {datasource} has two events in one second")


# Bounds in the middle of days, so that sessions (and days, hours, weeks) get cut.
CUT = {"start_date": "2023-06-03 13:17:23", "end_date": "2023-06-07 08:41:09"}
EMPTY = {"start_date": "2001-01-01 00:00:00", "end_date": "2001-01-02 00:00:00"}
JUNE = {"start_date": "2023-06-01 00:00:00", "end_date": "2023-06-30 23:59:59"}


def at(timestamp: str) -> dict[str, str]:
    """Both bounds on one second: inclusive bounds keep that second's events."""
    return {"start_date": timestamp, "end_date": timestamp}


AB_USER = _busiest("ab_test_events", "user_id")
UE_USER = _busiest("user_events", "user_id")
APP_USER = _busiest("app_events", "user_id")
CS_USER = _busiest("clickstream_events", "user_id")
CS_SESSION = _busiest("clickstream_events", "session_id")
CS_TIED_SESSION = _session_with_tied_timestamps("clickstream_events")

CASES: list[tuple[str, dict[str, Any]]] = [
    # A/B testing
    ("test_summary", {}),
    ("test_summary", {"test_id": "homepage_redesign", **JUNE}),
    ("test_summary", {"test_id": "checkout_flow"}),
    ("test_summary", {"test_id": "solo_test"}),
    ("test_summary", {"test_id": "no_such_test"}),
    ("test_summary", CUT),
    ("test_summary", EMPTY),
    ("test_summary", at("2023-07-20 09:00:00")),
    ("test_results", {}),
    ("test_results", {"test_id": "homepage_redesign", **JUNE}),
    ("test_results", {"test_id": "checkout_flow", "control": "B", "weights": "1,2,1"}),
    ("test_results", {"sequential": "true"}),
    ("test_results", {"test_id": "solo_test"}),
    ("test_results", {"test_id": "no_such_test"}),
    ("test_results", CUT),
    ("test_results", EMPTY),
    ("test_segments", {}),
    ("test_segments", {"segment": "device"}),
    ("test_segments", {"segment": "country"}),
    ("test_segments", {"segment": "country", "test_id": "checkout_flow", **CUT}),
    ("test_segments", EMPTY),
    ("test_timeseries", {}),
    ("test_timeseries", {"interval": "hour"}),
    ("test_timeseries", {"interval": "day", "test_id": "pricing_page"}),
    ("test_timeseries", {"interval": "week"}),
    ("test_timeseries", {"interval": "hour", **CUT}),
    ("test_timeseries", {"interval": "week", **CUT}),
    ("test_timeseries", EMPTY),
    ("test_timeseries", at("2025-04-28 18:42:22")),
    # user behavior
    ("user_session_stats", {}),
    ("user_session_stats", {"limit": "10000"}),
    ("user_session_stats", {"limit": "1"}),
    ("user_session_stats", {"user_id": UE_USER}),
    ("user_session_stats", {"user_id": UE_USER, **CUT}),
    ("user_session_stats", {"limit": "10000", **CUT}),
    ("user_session_stats", {"user_id": "user_tie"}),
    ("user_session_stats", {"user_id": "user_902"}),
    ("user_session_stats", EMPTY),
    ("user_session_stats", at("2025-05-11 17:49:55")),
    ("user_event_timeline", {"user_id": UE_USER}),
    ("user_event_timeline", {"user_id": UE_USER, "event_type": "click"}),
    ("user_event_timeline", {"user_id": UE_USER, "event_type": "no_such_type"}),
    ("user_event_timeline", {"user_id": UE_USER, "limit": "5"}),
    ("user_event_timeline", {"user_id": UE_USER, "limit": "10000", **CUT}),
    ("user_event_timeline", {"user_id": "user_tie"}),
    # The limit cuts three events of one second: the oldest time kept is tied.
    ("user_event_timeline", {"user_id": "user_tie", "limit": "2"}),
    ("user_event_timeline", {"user_id": "user_902"}),
    ("user_event_timeline", {"user_id": "no_such_user"}),
    ("user_event_timeline", {"user_id": UE_USER, **EMPTY}),
    ("user_activity_metrics", {}),
    ("user_activity_metrics", CUT),
    ("user_activity_metrics", EMPTY),
    ("user_activity_metrics", at("2025-05-11 17:49:55")),
    # SaaS
    ("session_insights", {}),
    ("session_insights", {"limit": "10000"}),
    ("session_insights", {"limit": "1"}),
    ("session_insights", {"user_id": APP_USER}),
    ("session_insights", {"limit": "10000", **CUT}),
    ("session_insights", {"user_id": "user_tie"}),
    ("session_insights", {"user_id": "user_zero"}),
    ("session_insights", {"user_id": "user_2713"}),
    ("session_insights", EMPTY),
    ("feature_usage", {}),
    ("feature_usage", {"feature": "billing"}),
    ("feature_usage", {"feature": "no_such_feature"}),
    ("feature_usage", CUT),
    ("feature_usage", EMPTY),
    ("feature_usage", at("2025-05-11 21:25:07")),
    *(("active_users", {"interval": interval}) for interval in ("1 day", "1 week", "1 month")),
    *(("active_users", {"interval": interval}) for interval in ("day", "week", "month")),
    ("active_users", {}),
    *(("active_users", {"interval": interval, **CUT}) for interval in ("1 day", "week", "month")),
    ("active_users", EMPTY),
    # clickstream
    ("get_user_journey", {"user_id": CS_USER}),
    ("get_user_journey", {"user_id": CS_USER, **CUT}),
    ("get_user_journey", {"user_id": "user_742"}),
    ("get_user_journey", {"user_id": "user_legacy"}),
    ("get_user_journey", {"user_id": "no_such_user"}),
    ("get_user_journey", {"user_id": CS_USER, **EMPTY}),
    ("get_session_events", {"session_id": CS_SESSION}),
    ("get_session_events", {"session_id": CS_TIED_SESSION}),
    ("get_session_events", {"session_id": "sess_4742"}),
    ("get_session_events", {"session_id": "sess_legacy"}),
    ("get_session_events", {"session_id": "no_such_session"}),
    ("get_popular_pages", {}),
    ("get_popular_pages", {"limit": "1"}),
    ("get_popular_pages", {"limit": "10000"}),
    ("get_popular_pages", {"limit": "10000", **CUT}),
    ("get_popular_pages", {"end_date": "2023-06-11 00:00:00", "limit": "10000"}),
    ("get_popular_pages", EMPTY),
    ("get_popular_pages", at("2025-05-07 11:02:40")),
    # journeys: a list parameter (funnel's steps) travels as one value per item
    ("funnel", {"steps": FUNNEL_STEPS, **JOURNEYS}),
    ("funnel", {"steps": FUNNEL_STEPS, "window_seconds": "3600", **JOURNEYS}),
    ("funnel", {"steps": FUNNEL_STEPS, "window_seconds": "600", **JOURNEYS}),
    *(
        ("funnel", {"steps": FUNNEL_STEPS, "mode": mode, "window_seconds": "3600", **JOURNEYS})
        for mode in ("default", "strict_order", "strict_deduplication")
    ),
    *(
        ("funnel", {"steps": ["page_view", "click", "signup"], "breakdown": b, **JOURNEYS})
        for b in ("device", "browser", "country")
    ),
    ("funnel", {"steps": ["page_view", "click", "page_view", "purchase"], **JOURNEYS}),
    (
        "funnel",
        {"steps": ["page_view", "click", "page_view"], "mode": "strict_deduplication", **JOURNEYS},
    ),
    (
        "funnel",
        {
            "steps": [
                "click",
                "page_view",
                "scroll",
                "click",
                "signup",
                "page_view",
                "purchase",
                "scroll",
            ],
            "window_seconds": "31536000",
            **JOURNEYS,
        },
    ),
    (
        "funnel",
        {
            "steps": [SITE + "/", SITE + "/pricing", SITE + "/checkout"],
            "step_by": "page_url",
            "source": "clickstream_events",
            "window_seconds": "7200",
            **JOURNEYS,
        },
    ),
    (
        "funnel",
        {
            "steps": [SITE + "/pricing", SITE + "/signup"],
            "step_by": "page_url",
            "source": "clickstream_events",
            "mode": "strict_order",
            "breakdown": "country",
            **JOURNEYS,
        },
    ),
    ("funnel", {"steps": ["page_view", "click", "scroll"]}),  # the tutorials' data, ties too
    ("funnel", {"steps": ["page_view", "add_to_cart"], "source": "clickstream_events", **CUT}),
    ("funnel", {"steps": ["no_such_event", "page_view"], **JOURNEYS}),
    ("funnel", {"steps": FUNNEL_STEPS, **EMPTY}),
    ("retention", {}),
    *(("retention", {"period": period}) for period in ("day", "week", "month")),
    *(("retention", {"source": "app_events", "period": p}) for p in ("day", "week", "month")),
    ("retention", {"period": "week", **JOURNEYS}),
    ("retention", {"source": "app_events", "period": "day", **CUT}),
    ("retention", EMPTY),
    ("page_paths", {"page_url": "https://example.com/pricing"}),
    ("page_paths", {"page_url": "https://example.com/pricing", "limit": "1"}),
    ("page_paths", {"page_url": "https://example.com/", "limit": "1000"}),
    ("page_paths", {"page_url": SITE + "/pricing", **JOURNEYS}),
    ("page_paths", {"page_url": SITE + "/"}),
    ("page_paths", {"page_url": "https://example.com/docs", "limit": "3", **CUT}),
    ("page_paths", {"page_url": "https://example.com/legacy"}),
    ("page_paths", {"page_url": "no_such_page"}),
    ("page_paths", {"page_url": "https://example.com/pricing", **EMPTY}),
]


def case_id(case: tuple[str, dict[str, Any]]) -> str:
    name, given = case
    shown = {k: "|".join(v) if isinstance(v, list) else v for k, v in given.items()}
    return name + ("[" + ",".join(f"{k}={v}" for k, v in shown.items()) + "]" if given else "")
