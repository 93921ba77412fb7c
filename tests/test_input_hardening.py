"""Hostile and broken input through the Events API and the typed RPCs. Every line ends
up either in the datasource or in quarantine with its reason — never both, never
neither — and the response counts say which."""

from __future__ import annotations

import gzip
import json

import aiohttp
import grpc
import orjson
import pytest
from column_cases import ALL_TYPES, STORED, case_events
from google.api import httpbody_pb2
from harness import AUTH, TOKEN, start_suite
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipit.ingest.v1 import ingest_service_pb2 as pb

pytestmark = pytest.mark.e2e

GOOD = {
    "timestamp": "2023-06-15 14:30:00",
    "user_id": "u",
    "test_id": "t",
    "variant": "A",
    "event_type": "page_view",
    "conversion": 1,
    "revenue": 1.5,
    "session_id": "s",
    "device": "mobile",
    "country": "US",
}
GOOD_LINE = orjson.dumps(GOOD)
FIELD_LIMIT = 1000


@pytest.fixture(scope="module")
async def suite(chdb_dir):
    from conftest import unique_database

    from common.datasources import registry
    from common.warehouse.embedded import EmbeddedWarehouse

    warehouse = EmbeddedWarehouse(chdb_dir, unique_database("hardening"))
    await warehouse.open()
    await warehouse.ensure_schema([*registry().values(), ALL_TYPES])
    running = await start_suite(
        warehouse,
        max_field_bytes=FIELD_LIMIT,
        max_body_bytes=1_000_000,
        datasources=[ALL_TYPES],
    )
    yield running
    await running.stop()


async def _counts(suite, table: str = "ab_test_events") -> tuple[int, int]:
    kept = await suite.warehouse.query(f"SELECT count() AS n FROM {table}", {})  # noqa: S608
    held = await suite.warehouse.query(f"SELECT count() AS n FROM {table}_quarantine", {})  # noqa: S608
    return kept.data[0]["n"], held.data[0]["n"]


async def _post(suite, body: bytes, headers: dict | None = None):
    headers = {"Authorization": f"Bearer {TOKEN}", **(headers or {})}
    async with (
        aiohttp.ClientSession(auto_decompress=False) as http,
        http.post(
            f"{suite.gateway_url}/v0/events?name=ab_test_events&wait=true",
            data=body,
            headers=headers,
        ) as response,
    ):
        return response.status, await response.json()


BAD_LINES = {
    "truncated": GOOD_LINE[:40],
    "non-utf8": b'{"user_id": "\xff\xfe", ' + GOOD_LINE[1:],
    "wrong type": orjson.dumps({**GOOD, "conversion": "yes"}),
    "integer overflow": orjson.dumps({**GOOD, "conversion": 300}),
    "NaN": GOOD_LINE[:-1] + b', "revenue": NaN}',
    "Infinity": GOOD_LINE.replace(b'"revenue":1.5', b'"revenue":1e400'),
    "missing field": orjson.dumps({k: v for k, v in GOOD.items() if k != "session_id"}),
    "string over the limit": orjson.dumps({**GOOD, "user_id": "x" * (FIELD_LIMIT + 1)}),
    "deeply nested": b'{"user_id": ' + b"[" * 3000 + b"]" * 3000 + b"}",
    "lone surrogate": GOOD_LINE.replace(b'"u"', b'"\\ud800"'),
    "not an object": b"[1, 2, 3]",
}


@pytest.mark.parametrize("name", sorted(BAD_LINES))
async def test_each_bad_line_is_quarantined_and_its_neighbours_kept(suite, name):
    before = await _counts(suite)
    body = b"\n".join([GOOD_LINE, BAD_LINES[name], GOOD_LINE])
    status, answer = await _post(suite, body)
    assert (status, answer) == (200, {"successful_rows": 2, "quarantined_rows": 1})
    kept, held = await _counts(suite)
    assert (kept - before[0], held - before[1]) == (2, 1)
    latest = await suite.warehouse.query(
        "SELECT error FROM ab_test_events_quarantine ORDER BY arrived_at DESC LIMIT 1", {}
    )
    assert latest.data[0]["error"]


async def test_unknown_extra_fields_are_ignored(suite):
    status, answer = await _post(suite, orjson.dumps({**GOOD, "utm": {"a": 1}, "extra": None}))
    assert (status, answer) == (200, {"successful_rows": 1, "quarantined_rows": 0})


async def test_gzip_bodies_are_accepted_and_gzip_bombs_refused(suite):
    before = await _counts(suite)
    body = gzip.compress(b"\n".join([GOOD_LINE] * 50))
    status, answer = await _post(suite, body, {"Content-Encoding": "gzip"})
    assert (status, answer) == (200, {"successful_rows": 50, "quarantined_rows": 0})
    bomb = gzip.compress(b" " * 50_000_000)
    assert len(bomb) < 100_000
    status, answer = await _post(suite, bomb, {"Content-Encoding": "gzip"})
    assert status == 413
    assert "limit" in answer["message"]
    kept, held = await _counts(suite)
    assert (kept - before[0], held - before[1]) == (50, 0)


async def test_typed_rpc_quarantines_out_of_range_and_overlong_values(suite):
    from google.protobuf.timestamp_pb2 import Timestamp

    from pipit.datasources.v1 import ab_test_events_pb2

    def event(**changes):
        fields = {k: v for k, v in GOOD.items() if k != "timestamp"}
        fields.update(changes)
        return ab_test_events_pb2.AbTestEvent(timestamp=Timestamp(seconds=1686839400), **fields)

    response = await suite.ingest_stub().AppendAbTestEvents(
        pb.AppendAbTestEventsRequest(
            events=[event(), event(conversion=300), event(user_id="y" * (FIELD_LIMIT + 1))],
            wait=True,
        ),
        metadata=AUTH,
    )
    assert (response.successful_rows, response.quarantined_rows) == (1, 2)


LINE_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner),
    max_leaves=8,
)
EVENTISH = st.fixed_dictionaries(
    {}, optional={key: LINE_VALUES | st.just(value) for key, value in GOOD.items()}
)
LINES = st.lists(
    st.one_of(
        st.binary(max_size=60),
        # The standard library prints what orjson would refuse to (big integers,
        # lone surrogates), so the service sees those too.
        EVENTISH.map(lambda v: json.dumps(v).encode()),
        LINE_VALUES.map(lambda v: json.dumps(v).encode()),
        st.just(GOOD_LINE),
    ),
    min_size=1,
    max_size=8,
)


def _events_in(body: bytes) -> int:
    """How many events the Events API reads in a body: a JSON array's elements, one JSON
    value, or else its non-blank lines."""
    try:
        whole = orjson.loads(body)
    except orjson.JSONDecodeError:
        return sum(1 for line in body.split(b"\n") if line.strip())
    return len(whole) if isinstance(whole, list) else 1


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(lines=LINES)
async def test_any_ndjson_body_is_answered_and_every_line_accounted_for(suite, lines):
    # One event per line: newlines inside a "line" would make it several.
    lines = [line.replace(b"\n", b" ").replace(b"\r", b" ") for line in lines]
    body = b"\n".join(lines)
    request = pb.PostEventsRequest(
        name="ab_test_events", wait=True, body=httpbody_pb2.HttpBody(data=body)
    )
    before = await _counts(suite)
    try:
        response = await suite.ingest_stub().PostEvents(request, metadata=AUTH)
    except grpc.aio.AioRpcError as exc:
        # Only a body with nothing usable in it may be refused, and never as a 5xx.
        assert exc.code() == grpc.StatusCode.INVALID_ARGUMENT, exc.details()
        assert await _counts(suite) == before
        return
    assert response.successful_rows + response.quarantined_rows == _events_in(body)
    kept, held = await _counts(suite)
    assert (kept - before[0], held - before[1]) == (
        response.successful_rows,
        response.quarantined_rows,
    )


@settings(max_examples=80, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    events=case_events(
        {f"c{i}": case for i, case in enumerate(STORED)}, {"id": st.integers(0, 2**32 - 1)}
    )
)
async def test_events_of_every_column_type_are_stored_or_quarantined(suite, events):
    # Good and bad values of every type, and anything else: each event is stored or
    # quarantined with its reason, and the answer (given once the rows are written: an
    # insert the warehouse refused would never be) says which.
    lines = [json.dumps(event).encode() for event in events]
    if not lines:
        return
    before = await _counts(suite, ALL_TYPES.name)
    request = pb.PostEventsRequest(
        name=ALL_TYPES.name, wait=True, body=httpbody_pb2.HttpBody(data=b"\n".join(lines))
    )
    try:
        response = await suite.ingest_stub().PostEvents(request, metadata=AUTH)
    except grpc.aio.AioRpcError as exc:
        # Only a body with nothing usable in it (every line not JSON) may be refused.
        assert exc.code() == grpc.StatusCode.INVALID_ARGUMENT, exc.details()
        assert await _counts(suite, ALL_TYPES.name) == before
        return
    assert response.successful_rows + response.quarantined_rows == _events_in(request.body.data)
    kept, held = await _counts(suite, ALL_TYPES.name)
    assert (kept - before[0], held - before[1]) == (
        response.successful_rows,
        response.quarantined_rows,
    )
