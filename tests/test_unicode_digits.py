"""Numbers and timestamps from requests are read in ASCII digits only. Python's int(),
str.isdigit() and strip() take any Unicode digit or space, so "１６８６" was read as 1686
epoch seconds (1970-01-01 00:28:06): event timestamps (common/validation.py), pipe
parameters (services/query/binder.py) and the same through the gateway."""

from __future__ import annotations

import aiohttp
import orjson
import pytest
from google.protobuf.descriptor import FieldDescriptor
from harness import TOKEN, start_suite

from common.datasources import registry
from common.timeparse import parse_datetime
from common.validation import RowValidator
from services.query.binder import InvalidParameter
from services.query.service import builtin_endpoints

pytestmark = pytest.mark.e2e

JUNE_15 = 1686839400  # 2023-06-15 14:30:00 UTC
# The zero of some of the digit sets Python reads as decimal digits.
ZEROS = {
    "fullwidth": "\uff10",
    "arabic-indic": "\u0660",
    "extended-arabic-indic": "\u06f0",
    "devanagari": "\u0966",
    "bengali": "\u09e6",
    "thai": "\u0e50",
    "mathematical-bold": "\U0001d7ce",
}


def _digits(text: str, zero: str) -> str:
    return "".join(chr(ord(zero) + int(c)) if c.isascii() and c.isdigit() else c for c in text)


def _variants() -> list[tuple[str, str]]:
    cases = []
    for name, zero in ZEROS.items():
        cases += [
            (f"{name}: epoch seconds", _digits(str(JUNE_15), zero)),
            (f"{name}: the issue's 1686", _digits("1686", zero)),
            (f"{name}: whole date-time", _digits("2023-06-15 14:30:00", zero)),
            (f"{name}: one digit", "2023-06-15 14:30:0" + _digits("0", zero)),
            (f"{name}: offset", "2023-06-15T16:30:00+" + _digits("02:00", zero)),
            (f"{name}: fraction", "2023-06-15 14:30:00." + _digits("5", zero)),
        ]
    cases += [
        ("superscript", "168\u00b2"),
        ("ideographic space", f"\u3000{JUNE_15}"),
        ("no-break space", f"{JUNE_15}\u00a0"),
    ]
    return cases


VARIANTS = _variants()
IDS = [name for name, _ in VARIANTS]


@pytest.mark.parametrize(("name", "value"), VARIANTS, ids=IDS)
def test_event_timestamps(name: str, value: str) -> None:
    with pytest.raises(ValueError, match="only ASCII digits"):
        parse_datetime(value)


@pytest.mark.parametrize(("name", "value"), VARIANTS, ids=IDS)
def test_event_rows_are_quarantined_on_both_validation_paths(name: str, value: str) -> None:
    validator = RowValidator(registry()["ab_test_events"])
    good = {c.name: "x" for c in validator.datasource.columns}
    good.update(timestamp="2023-06-15 14:30:00", conversion=1, revenue=1.5)
    bad = dict(good, timestamp=value)
    # The column-at-a-time path, then the row-by-row one it falls back to.
    columns, invalid = validator.columns_from_json([good, bad, good])
    assert [index for index, _ in invalid] == [1]
    assert "field 'timestamp'" in invalid[0][1]
    assert columns[0] == [JUNE_15, JUNE_15]


def _datetime_parameters() -> list[tuple[str, str]]:
    found = []
    for rpc, endpoint in builtin_endpoints(1024).items():
        for parameter in endpoint.parameters:
            if parameter.option.type == "DateTime":
                assert parameter.field.type == FieldDescriptor.TYPE_STRING
                found.append((rpc, parameter.name))
    return found


DATETIME_PARAMETERS = _datetime_parameters()


@pytest.mark.parametrize(("name", "value"), VARIANTS, ids=IDS)
def test_pipe_date_parameters(name: str, value: str) -> None:
    assert len(DATETIME_PARAMETERS) >= 20  # every dated endpoint, both bounds
    endpoints_by_rpc = builtin_endpoints(1024)
    for rpc, parameter in DATETIME_PARAMETERS:
        endpoint = endpoints_by_rpc[rpc]
        request = endpoint.request_class(**{parameter: value})
        for required in endpoint.parameters:
            if required.option.required and required.field.is_repeated:
                getattr(request, required.name).extend(["x", "y"])
            elif required.option.required:
                setattr(request, required.name, "x")
        with pytest.raises(InvalidParameter) as caught:
            endpoint.bind(request)
        assert f"parameter '{parameter}'" in str(caught.value)
        assert "only ASCII digits" in str(caught.value)


@pytest.fixture(scope="module")
async def suite(chdb_dir):
    from conftest import unique_database

    from common.warehouse.embedded import EmbeddedWarehouse

    warehouse = EmbeddedWarehouse(chdb_dir, unique_database("digits"))
    await warehouse.open()
    await warehouse.ensure_schema(list(registry().values()))
    running = await start_suite(warehouse)
    yield running
    await running.stop()
    await warehouse.close()


FULLWIDTH_1686 = _digits("1686", ZEROS["fullwidth"])


async def test_through_the_gateway(suite):
    """The issue's request: the event is quarantined, not stored at 1970-01-01 00:28:06;
    a pipe parameter or a `limit` in other digits is a 400 naming it."""
    auth = {"Authorization": f"Bearer {TOKEN}"}
    event = {
        "timestamp": FULLWIDTH_1686,
        "user_id": "u1",
        "test_id": "digits",
        "variant": "A",
        "event_type": "view",
        "conversion": 0,
        "revenue": 0,
        "session_id": "s1",
        "device": "mobile",
        "country": "US",
    }
    pipe = f"{suite.gateway_url}/v0/pipes/test_summary.json"
    async with aiohttp.ClientSession() as http:
        async with http.post(
            f"{suite.gateway_url}/v0/events",
            params={"name": "ab_test_events", "wait": "true"},
            data=orjson.dumps(event),
            headers=auth,
        ) as r:
            assert (r.status, await r.json()) == (
                200,
                {"successful_rows": 0, "quarantined_rows": 1},
            )
        async with http.get(
            pipe, params={"test_id": "digits", "start_date": FULLWIDTH_1686}, headers=auth
        ) as r:
            assert r.status == 400
            assert "parameter 'start_date'" in (await r.json())["message"]
        async with http.get(
            f"{suite.gateway_url}/v0/pipes/get_popular_pages.json",
            params={"limit": _digits("5", ZEROS["arabic-indic"])},
            headers=auth,
        ) as r:
            assert r.status == 400
            assert "limit" in (await r.json())["message"]
        async with http.get(pipe, params={"test_id": "digits"}, headers=auth) as r:
            assert (await r.json())["data"] == []
