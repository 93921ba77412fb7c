"""The sample event the tests share: tutorial 001's POST body, the A/B test event the README's
walkthrough sends too. One copy, so the tests that post it cannot drift apart."""

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
