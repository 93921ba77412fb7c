"""The gateway's kept bodies (gateway/answer_bodies.py): a body is served again only for the
very bytes and the very route it was printed from, within a size."""

from __future__ import annotations

import dataclasses

import pytest

from gateway.answer_bodies import AnswerBodies
from gateway.app import default_descriptor_set
from gateway.routes import Route, load_routes

JSON = "application/json"


@pytest.fixture(scope="module")
def route() -> Route:
    table = load_routes(default_descriptor_set(), ["pipit.query.v1.QueryService"])
    match = table.match("GET", "/v0/pipes/test_summary.json")
    assert match is not None
    return match.route


def test_a_body_is_served_for_the_same_bytes_only(route: Route) -> None:
    bodies = AnswerBodies()
    bodies.keep(route, b"\x08\x01", b'{"rows":1}', JSON)
    assert bodies.get(route, b"\x08\x01") == (b'{"rows":1}', JSON)
    assert bodies.get(route, bytes([8, 1])) == (b'{"rows":1}', JSON)  # equal, not identical
    assert bodies.get(route, b"\x08\x02") is None
    assert bodies.get(route, b"\x08\x01\x00") is None


def test_another_route_of_the_same_method_prints_its_own(route: Route) -> None:
    # A deploy's table has a route of the same name that may print other messages.
    bodies = AnswerBodies()
    bodies.keep(route, b"\x08\x01", b'{"rows":1}', JSON)
    redeployed = dataclasses.replace(route)
    assert redeployed == route and redeployed is not route
    assert bodies.get(redeployed, b"\x08\x01") is None
    bodies.keep(redeployed, b"\x08\x01", b'{"rows":"1"}', JSON)
    assert bodies.get(redeployed, b"\x08\x01") == (b'{"rows":"1"}', JSON)
    assert bodies.get(route, b"\x08\x01") is None


def test_the_least_recently_used_go_past_the_limit(route: Route) -> None:
    bodies = AnswerBodies(limit_bytes=30)  # each entry below is 10 bytes
    for answer in (b"aaaa", b"bbbb", b"cccc"):
        bodies.keep(route, answer, answer.upper() + b"!!", JSON)
    assert bodies.get(route, b"aaaa") is not None  # now the most recently used
    bodies.keep(route, b"dddd", b"DDDD!!", JSON)
    assert bodies.get(route, b"bbbb") is None
    assert [bodies.get(route, a) is not None for a in (b"aaaa", b"cccc", b"dddd")] == [True] * 3


def test_an_answer_larger_than_the_limit_is_not_kept(route: Route) -> None:
    bodies = AnswerBodies(limit_bytes=30)
    bodies.keep(route, b"small", b"SMALL", JSON)
    bodies.keep(route, b"x" * 20, b"X" * 20, JSON)
    assert bodies.get(route, b"x" * 20) is None
    assert bodies.get(route, b"small") == (b"SMALL", JSON)


def test_keeping_the_same_answer_twice_counts_it_once(route: Route) -> None:
    bodies = AnswerBodies(limit_bytes=20)
    bodies.keep(route, b"aaaa", b"AAAAAA", JSON)
    bodies.keep(route, b"aaaa", b"AAAAAA", JSON)
    bodies.keep(route, b"bbbb", b"BB", JSON)  # 10 + 6 bytes: both fit
    assert bodies.get(route, b"aaaa") is not None
    assert bodies.get(route, b"bbbb") is not None
