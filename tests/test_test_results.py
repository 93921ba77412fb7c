"""test_results, the A/B statistics pipe: every statistic equals one computed another way
over the same generated events, to 1e-9 relative — statsmodels for the z-test and the
Wilson and Wald intervals, scipy's two-sample Welch test over the users' revenue, an exact
sum at 50 digits (mpmath) for the chance to beat control, the chi-square tail from mpmath's
incomplete gamma, and the mSPRT / GrowthBook formulas written out as the papers give them —
including a variant with zero conversions, single users, 100% conversion, unequal splits
and a real sample-ratio mismatch. The sequential mode is simulated (A/A tests peeked at
daily): its false-positive rate stays at 5% where the fixed-horizon p-value's does not.

The answers are read through the gateway, over gRPC, in every pipe format, with `q=` and
as a table of the Query API: one answer whichever way it is asked for."""

from __future__ import annotations

import io
import math
import random
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import grpc
import numpy as np
import orjson
import pyarrow.parquet as pq
import pytest
from conftest import unique_database
from expected import test_results as reference
from harness import TOKEN, Suite, start_suite
from scipy import stats

from common.datasources import registry
from common.tokens import TokenFile
from common.warehouse.embedded import EmbeddedWarehouse
from pipit.query.v1 import query_service_pb2
from services.query.analysis.test_results import always_valid_p

pytestmark = pytest.mark.e2e

REL = 1e-9
# Where the expected value is 0 (a lift of nothing, a Wilson bound at 0), relative
# tolerance means nothing: what doubles leave of a difference of equal numbers.
ABS = 1e-12
ALPHA = 0.05
N_STAR = 5000  # GrowthBook's default sequential tuning parameter


# --- the events -----------------------------------------------------------------------------


def _event(test: str, variant: str, user: str, day: int, conversion: int, revenue: float):
    return {
        "timestamp": f"2023-06-{day:02d} {random.Random(user).randrange(24):02d}:00:00",
        "user_id": user,
        "test_id": test,
        "variant": variant,
        "event_type": "purchase" if conversion else "page_view",
        "conversion": conversion,
        "revenue": revenue,
        "session_id": f"s_{user}",
        "device": "mobile",
        "country": "US",
    }


def _users(
    rng: random.Random, test: str, variant: str, count: int, rate: float, spend: float
) -> list[dict[str, Any]]:
    """`count` users, each with one to three events; a converting user spends."""
    events = []
    for i in range(count):
        user = f"{test}_{variant}_{i}"
        converts = rng.random() < rate
        for k in range(rng.randint(1, 3)):
            conversion = int(converts and k == 0)
            revenue = round(rng.expovariate(1 / spend), 2) if conversion and spend else 0.0
            events.append(_event(test, variant, user, 1 + rng.randrange(10), conversion, revenue))
    return events


def _events() -> list[dict[str, Any]]:
    rng = random.Random(19)
    events = []
    # An ordinary test, three variants, the last better.
    for variant, rate in (("A", 0.10), ("B", 0.12), ("C", 0.16)):
        events += _users(rng, "ordinary", variant, 400, rate, 40.0)
    # Nobody converts anywhere: every test has nothing to stand on.
    for variant in ("A", "B"):
        events += _users(rng, "zero", variant, 50, 0.0, 0.0)
    # The control converts everyone; the variant most.
    events += _users(rng, "all", "A", 30, 1.0, 20.0)
    events += _users(rng, "all", "B", 20, 0.75, 20.0)
    # A single user per variant.
    events += [_event("one", "A", "one_a", 3, 1, 12.5), _event("one", "B", "one_b", 4, 0, 0.0)]
    # A 2:1:1 split, as intended (weights=2,1,1).
    for variant, count in (("control", 600), ("x", 300), ("y", 300)):
        events += _users(rng, "unequal", variant, count, 0.2, 10.0)
    # A real sample-ratio mismatch: 1000 against 800 of an intended 50/50.
    events += _users(rng, "srm", "A", 1000, 0.1, 30.0)
    events += _users(rng, "srm", "B", 800, 0.1, 30.0)
    # A variant with no conversions against one with some; revenue only on one side.
    events += _users(rng, "none_converts", "A", 60, 0.2, 15.0)
    events += _users(rng, "none_converts", "B", 70, 0.0, 0.0)
    # One variant alone.
    events += _users(rng, "single", "only", 25, 0.3, 5.0)
    # Names that would break SQL text: the analysed rows are bound, never spliced.
    for variant in ("A'); DROP TABLE ab_test_events; --", 'B\\"\n{x:String}'):
        events += _users(rng, HOSTILE, variant, 20, 0.5, 5.0)
    return events


HOSTILE = 'it\'s \\ a "test"\t\n'


EVENTS = _events()


# --- the answer computed another way ---------------------------------------------------------


def assert_results(actual: list[dict[str, Any]], expected: list[dict[str, Any]]) -> None:
    assert [(r["test_id"], r["variant"]) for r in actual] == [
        (r["test_id"], r["variant"]) for r in expected
    ]
    for got, want in zip(actual, expected, strict=True):
        assert list(got) == list(want)
        where = (want["test_id"], want["variant"])
        for column, value in want.items():
            if isinstance(value, float):
                # The engine sums revenue in its own order: a difference of two means
                # carries their rounding, relative to the means, not to the difference.
                scale = ABS
                if column.startswith("revenue_lift"):
                    scale = max(ABS, REL * (abs(got["revenue_per_user"]) + 1))
                assert got[column] == pytest.approx(value, rel=REL, abs=scale), (where, column)
            else:
                assert got[column] == value, (where, column)


# --- the suite ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tokens(tmp_path_factory: pytest.TempPathFactory) -> TokenFile:
    return TokenFile(tmp_path_factory.mktemp("results-tokens") / "tokens.json")


@pytest.fixture(scope="module")
def summary_only(tokens: TokenFile) -> str:
    return tokens.create("summary-only", ["PIPES:READ:test_summary"])


@pytest.fixture(scope="module")
async def suite(chdb_dir: Path, tokens: TokenFile, summary_only: str) -> AsyncIterator[Suite]:
    warehouse = EmbeddedWarehouse(chdb_dir, unique_database("results"))
    await warehouse.open()
    await warehouse.ensure_schema(list(registry().values()))
    body = b"\n".join(orjson.dumps(event) for event in EVENTS)
    await warehouse.insert_json_rows(
        "ab_test_events", registry()["ab_test_events"].column_names, body
    )
    running = await start_suite(warehouse, tokens_file=tokens.path)
    yield running
    await running.stop()
    await warehouse.execute(f"DROP DATABASE IF EXISTS `{warehouse.database}`")
    await warehouse.close()


async def _get(suite: Suite, path: str, **params: str) -> tuple[int, bytes]:
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"{suite.gateway_url}{path}", params={**params, "token": TOKEN}) as response,
    ):
        return response.status, await response.read()


async def _results(suite: Suite, **params: str) -> list[dict[str, Any]]:
    status, body = await _get(suite, "/v0/pipes/test_results.json", **params)
    assert status == 200, body
    return orjson.loads(body)["data"]


CASES = [
    {},
    {"test_id": "ordinary"},
    {"test_id": "ordinary", "control": "B"},
    {"test_id": "ordinary", "control": "no_such_variant"},
    {"test_id": "unequal", "weights": "2,1,1"},
    {"test_id": "unequal"},
    {"test_id": "srm", "weights": "50,50"},
    {"start_date": "2023-06-03 00:00:00", "end_date": "2023-06-06 12:00:00"},
    {"sequential": "true"},
    {"test_id": "ordinary", "sequential": "true", "control": "C"},
]


@pytest.mark.parametrize("given", CASES, ids=lambda g: ",".join(f"{k}={v}" for k, v in g.items()))
async def test_every_statistic(suite: Suite, given: dict[str, str]) -> None:
    expected = reference(EVENTS, **given)
    assert expected, "the case must answer rows"
    assert_results(await _results(suite, **given), expected)


async def test_edge_cases_are_what_the_docs_say(suite: Suite) -> None:
    """Beyond matching the computation above: the definitions of the edge cases."""
    rows = {(r["test_id"], r["variant"]): r for r in await _results(suite)}
    zero = rows[("zero", "B")]
    assert (zero["p_value"], zero["lift_low"], zero["lift_high"]) == (1.0, 0.0, 0.0)
    assert zero["relative_lift"] == zero["relative_lift_low"] == 0.0
    assert zero["chance_to_beat_control"] == pytest.approx(0.5 * 51 / 51, rel=1e-3)
    assert zero["revenue_p_value"] == 1.0
    one = rows[("one", "B")]
    assert one["revenue_variance"] == 0.0 and one["revenue_p_value"] == 1.0
    assert one["revenue_lift_low"] == one["revenue_lift_high"] == -12.5
    assert rows[("all", "A")]["conversion_rate"] == 1.0
    assert rows[("all", "B")]["relative_lift"] == pytest.approx(-0.25)
    assert rows[("srm", "A")]["srm"] and rows[("srm", "B")]["srm"]
    assert not rows[("ordinary", "B")]["srm"]
    single = rows[("single", "only")]
    assert (single["srm_chi_square"], single["srm_p_value"], single["control"]) == (
        0.0,
        1.0,
        "only",
    )
    weighted = await _results(suite, test_id="unequal", weights="2,1,1")
    assert not weighted[0]["srm"]
    assert (await _results(suite, test_id="unequal"))[0]["srm"]  # 600/300/300 is not equal


@pytest.mark.parametrize(
    ("given", "words"),
    [
        ({"weights": "1,x"}, "'x' is not a number"),
        ({"weights": "1,0"}, "'0' is not positive"),
        ({"weights": "1,-2"}, "is not positive"),
        ({"weights": "1,nan"}, "is not positive"),
        ({"test_id": "ordinary", "weights": "1,1"}, "test 'ordinary' has 3 variants"),
        ({"sequential": "maybe"}, "sequential"),
    ],
)
async def test_bad_parameters_are_refused(suite: Suite, given: dict[str, str], words: str) -> None:
    status, body = await _get(suite, "/v0/pipes/test_results.json", **given)
    assert status == 400, body
    assert words in orjson.loads(body)["error"]


async def test_grpc_formats_q_and_query_api_give_the_same_answer(suite: Suite) -> None:
    given = {"test_id": "ordinary", "sequential": "true"}
    answer = await _results(suite, **given)
    reply = await suite.query_stub().TestResults(
        query_service_pb2.TestResultsRequest(test_id="ordinary", sequential=True),
        metadata=(("authorization", f"Bearer {TOKEN}"),),
    )
    assert [(r.variant, r.p_value, r.lift_low, r.chance_to_beat_control) for r in reply.data] == [
        (r["variant"], r["p_value"], r["lift_low"], r["chance_to_beat_control"]) for r in answer
    ]
    assert [m.name for m in reply.meta] == list(answer[0])

    status, body = await _get(suite, "/v0/pipes/test_results.ndjson", **given)
    assert status == 200
    assert [orjson.loads(line) for line in body.splitlines()] == answer
    status, body = await _get(suite, "/v0/pipes/test_results.parquet", **given)
    assert status == 200
    assert pq.read_table(io.BytesIO(body)).to_pylist() == answer
    status, body = await _get(suite, "/v0/pipes/test_results.csvwithnames", **given)
    assert body.splitlines()[0].decode() == ",".join(f'"{c}"' for c in answer[0])

    status, body = await _get(
        suite,
        "/v0/pipes/test_results.json",
        q="SELECT variant, p_value FROM _ WHERE variant != control ORDER BY variant",
        **given,
    )
    assert status == 200, body
    assert orjson.loads(body)["data"] == [
        {"variant": r["variant"], "p_value": r["p_value"]}
        for r in answer
        if r["variant"] != r["control"]
    ]

    # The Query API reads the pipe with its defaults: every test, fixed horizon.
    status, body = await _get(
        suite, "/v0/sql", q="SELECT test_id, variant, srm FROM test_results WHERE srm"
    )
    assert status == 200, body
    assert orjson.loads(body)["data"] == [
        {"test_id": r["test_id"], "variant": r["variant"], "srm": True}
        for r in reference(EVENTS)
        if r["srm"]
    ]


async def test_hostile_names_read_back_as_they_are(suite: Suite) -> None:
    answer = await _results(suite, test_id=HOSTILE)
    assert [r["variant"] for r in answer] == sorted(
        {e["variant"] for e in EVENTS if e["test_id"] == HOSTILE}
    )
    for extension in ("ndjson", "csvwithnames"):
        status, body = await _get(suite, f"/v0/pipes/test_results.{extension}", test_id=HOSTILE)
        assert status == 200, body
    status, body = await _get(suite, "/v0/pipes/test_results.ndjson", test_id=HOSTILE)
    assert [orjson.loads(line) for line in body.splitlines()] == answer
    status, body = await _get(
        suite, "/v0/pipes/test_results.json", test_id=HOSTILE, q="SELECT test_id, variant FROM _"
    )
    assert orjson.loads(body)["data"] == [
        {"test_id": r["test_id"], "variant": r["variant"]} for r in answer
    ]


async def test_scope(suite: Suite, summary_only: str) -> None:
    token = summary_only
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"{suite.gateway_url}/v0/pipes/test_results.json?token={token}") as response,
    ):
        assert response.status == 403
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await suite.query_stub().TestResults(
            query_service_pb2.TestResultsRequest(),
            metadata=(("authorization", f"Bearer {token}"),),
        )
    assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED


# --- the sequential mode, simulated -----------------------------------------------------------


def test_peeking_daily_keeps_the_sequential_false_positive_rate() -> None:
    """A/A tests (both arms convert at 10%), 1000 of them, each read after every one of 30
    days of 200 users per arm: a test "wins" the first day its p-value is below 5%. The
    fixed-horizon z-test's p-value read that way wins far more often than 5%; mSPRT's
    (services/query/analysis/test_results.py, as the pipe computes it) stays at or below 5%
    within simulation error (3 standard errors of a 5% rate over 1000 tests)."""
    rng = np.random.default_rng(20170801)
    experiments, days, per_day, rate = 1000, 30, 200, 0.10
    conversions = rng.binomial(per_day, rate, size=(experiments, days, 2)).cumsum(axis=1)
    users = per_day * np.arange(1, days + 1)
    fixed = sequential = 0
    for experiment in conversions:
        fixed_won = sequential_won = False
        for day in range(days):
            n = int(users[day])
            x, x_c = int(experiment[day, 0]), int(experiment[day, 1])
            pooled = (x + x_c) / (2 * n)
            se = math.sqrt(pooled * (1 - pooled) * 2 / n)
            if se == 0:
                continue
            lift = x / n - x_c / n
            fixed_won |= 2 * stats.norm.sf(abs(lift / se)) < ALPHA
            sequential_won |= always_valid_p(lift, se, 2 * n) < ALPHA
        fixed += fixed_won
        sequential += sequential_won
    error = math.sqrt(ALPHA * (1 - ALPHA) / experiments)
    assert sequential / experiments <= ALPHA + 3 * error
    assert fixed / experiments > ALPHA + 3 * error
