"""The sample events the tests share: tutorial 001's POST body (the A/B test event the README's
walkthrough sends too) and the other tutorials' sample events, as their curl calls send
them. One copy, so the tests that post them cannot drift apart."""

from __future__ import annotations

from typing import Any

import orjson

# Pretty-printed as the tutorial prints it: the Events API must take a body in that form.
AB_TEST_EVENT_BODY = b"""{
    "timestamp": "2023-06-15 14:30:00",
    "user_id": "user_12345",
    "test_id": "homepage_redesign",
    "variant": "B",
    "event_type": "page_view",
    "conversion": 1,
    "revenue": 29.99,
    "session_id": "session_789012",
    "device": "mobile",
    "country": "US"
  }"""


def ab_test_event(**changes: Any) -> dict[str, Any]:
    """A fresh copy of the event (a test may change it freely), with `changes` applied."""
    return {**orjson.loads(AB_TEST_EVENT_BODY), **changes}


# Tutorials 002-004's sample events, one per datasource.
_TUTORIAL_EVENTS: dict[str, dict[str, Any]] = {
    "user_events": {
        "event_id": "ev_73902",
        "user_id": "user_902",
        "session_id": "session_3902",
        "event_type": "scroll",
        "page_url": "https://example.com/about",
        "referrer": "https://twitter.com",
        "device_type": "tablet",
        "browser": "Safari",
        "country": "Canada",
        "city": "Toronto",
        "properties": '{"button_id":"btn_2"}',
        "timestamp": "2025-05-11 17:49:55",
    },
    "app_events": {
        "event_id": "evt_372713",
        "user_id": "user_2713",
        "session_id": "sess_22713",
        "event_type": "login",
        "feature": "billing",
        "timestamp": "2025-05-11 21:25:07",
        "device_type": "mobile",
        "browser": "Firefox",
        "os": "iOS",
        "location": "UK",
        "metadata": '{"subscription_tier": "basic"}',
    },
    "clickstream_events": {
        "event_id": "ev_14742",
        "user_id": "user_742",
        "session_id": "sess_4742",
        "event_type": "page_view",
        "page_url": "https://example.com/contact",
        "page_title": "Contact Page",
        "referrer": "https://google.com",
        "timestamp": "2025-05-07 11:02:40",
        "device_type": "desktop",
        "browser": "Safari",
        "properties": '{"browser_version":"13.0", "screen_size":"1766x1010"}',
    },
}


def tutorial_event(datasource: str, **changes: Any) -> dict[str, Any]:
    """A fresh copy of the tutorials' sample event of `datasource`, `changes` applied."""
    if datasource == "ab_test_events":
        return ab_test_event(**changes)
    return {**_TUTORIAL_EVENTS[datasource], **changes}


def keyed_ab_event(user_id: str, test_id: str, **changes: Any) -> dict[str, Any]:
    """A plain A/B test event, told apart by its user (the key the ingest tests count
    arrivals by) and its test, with `changes` applied."""
    return {
        "timestamp": "2023-06-15 14:30:00",
        "user_id": user_id,
        "test_id": test_id,
        "variant": "A",
        "event_type": "view",
        "conversion": 0,
        "revenue": 0,
        "session_id": "s",
        "device": "d",
        "country": "c",
        **changes,
    }
