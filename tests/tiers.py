"""The test tiers (pyproject's markers) and the check that keeps them honest.

A test that starts something a tier stands for (a `pipit` process, the real Envoy) must carry that
tier's marker, else `pytest -m quick` would quietly start it: the helpers that start those things
call `require_tier`, which fails an unmarked test and says which marker it lacks."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import pytest

F = TypeVar("F", bound=Callable[..., Any])

# What each tier needs beyond the in-process code; every test in none of them is `quick`.
TIERS = ("slow", "e2e", "browser", "envoy", "k8s", "bench")

_running: pytest.Item | None = None


def entering(item: pytest.Item | None) -> None:
    """Called by conftest.py around each test's setup, call and teardown."""
    global _running
    _running = item


def require_tier(marker: str, what: str) -> None:
    """Fails the running test unless it carries `marker` (outside a test, e.g. in a benchmark,
    there is nothing to check)."""
    if _running is not None and _running.get_closest_marker(marker) is None:
        pytest.fail(
            f"{_running.nodeid} {what} but is not marked `{marker}`: add "
            f"`@pytest.mark.{marker}` (or `pytestmark = pytest.mark.{marker}` for the module)",
            pytrace=False,
        )


def mark_quick(items: list[pytest.Item]) -> None:
    """Marks `quick` every test that is in no tier, so `pytest -m quick` is the local tier."""
    for item in items:
        if not any(item.get_closest_marker(tier) for tier in TIERS):
            item.add_marker(pytest.mark.quick)


def tier(*markers: str) -> Callable[[F], F]:
    """Puts every test that uses the decorated fixture, directly or through other fixtures, in
    `markers` (apply it under `@pytest.fixture`)."""

    def mark(fixture: F) -> F:
        fixture.pipit_tiers = markers  # type: ignore[attr-defined]
        return fixture

    return mark


def mark_by_fixtures(items: list[pytest.Item]) -> None:
    """Adds the tiers of the fixtures each test uses (see `tier`)."""
    for item in items:
        info = getattr(item, "_fixtureinfo", None)
        if info is None:
            continue
        for name in item.fixturenames:
            for fixturedef in info.name2fixturedefs.get(name, ()):
                for marker in getattr(fixturedef.func, "pipit_tiers", ()):
                    item.add_marker(marker)
