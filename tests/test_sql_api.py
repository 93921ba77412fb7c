"""The Query API: read-only SQL over the datasources a token may read, refused for
writes, DDL, table functions, system tables and datasources outside the token's scope, by
GET and by POST alike (formats, pipes and caps: test_query_api_formats.py)."""

from __future__ import annotations

import aiohttp
import orjson
import pytest
from harness import TOKEN, start_suite

from common.datasources import registry
from common.tokens import TokenFile

pytestmark = pytest.mark.e2e

EVENT = {
    "timestamp": "2023-06-15 14:30:00",
    "user_id": "u1",
    "test_id": "t",
    "variant": "A",
    "event_type": "page_view",
    "conversion": 1,
    "revenue": 2.5,
    "session_id": "s",
    "device": "mobile",
    "country": "US",
}


@pytest.fixture(scope="module")
async def api(chdb_dir, tmp_path_factory):
    from conftest import unique_database

    from common.warehouse.embedded import EmbeddedWarehouse

    tokens = TokenFile(tmp_path_factory.mktemp("sqltokens") / "tokens.json")
    reader = tokens.create("ab-reader", ["DATASOURCES:READ:ab_test_events"])
    warehouse = EmbeddedWarehouse(chdb_dir, unique_database("sqlapi"))
    await warehouse.open()
    await warehouse.ensure_schema(list(registry().values()))
    body = b"\n".join(orjson.dumps({**EVENT, "user_id": f"u{i}"}) for i in range(3))
    await warehouse.insert_json_rows(
        "ab_test_events", registry()["ab_test_events"].column_names, body
    )
    suite = await start_suite(warehouse, tokens_file=tokens.path)
    yield suite, reader
    await suite.stop()


async def _sql(suite, q: str, token: str = TOKEN, method: str = "GET") -> tuple[int, dict]:
    url = f"{suite.gateway_url}/v0/sql"
    async with aiohttp.ClientSession() as http:
        if method == "GET":
            request = http.get(url, params={"q": q, "token": token})
        else:  # the SQL as the body, as the SDKs send it
            request = http.post(
                url, params={"token": token}, data=q, headers={"Content-Type": "text/plain"}
            )
        async with request as r:
            return r.status, await r.json()


async def test_a_select_answers_in_the_pipe_shape(api):
    suite, reader = api
    status, body = await _sql(
        suite,
        "SELECT variant, count() AS n, sum(revenue) AS r FROM ab_test_events GROUP BY variant",
        reader,
    )
    assert status == 200, body
    assert [m["name"] for m in body["meta"]] == ["variant", "n", "r"]
    assert [m["type"] for m in body["meta"]] == ["String", "UInt64", "Float64"]
    assert body["data"] == [{"variant": "A", "n": 3, "r": 7.5}]
    assert body["rows"] == 1
    assert set(body["statistics"]) == {"elapsed", "rows_read", "bytes_read"}


@pytest.mark.parametrize(
    ("q", "status", "message"),
    [
        ("INSERT INTO ab_test_events SELECT * FROM ab_test_events", 403, "only SELECT"),
        ("ALTER TABLE ab_test_events DELETE WHERE 1", 403, "only SELECT"),
        ("DROP TABLE ab_test_events", 403, "only SELECT"),
        ("SELECT * FROM file('/etc/passwd', 'LineAsString')", 403, "table functions"),
        ("SELECT * FROM url('http://127.0.0.1:1/x', 'CSV', 'a String')", 403, "table functions"),
        ("SELECT * FROM numbers(10)", 403, "table functions"),
        ("SELECT name FROM system.tables", 403, "only datasources"),
        ("SELECT count() FROM user_events", 403, "DATASOURCES:READ:user_events"),
        (
            "SELECT count() FROM ab_test_events WHERE user_id IN (SELECT user_id FROM app_events)",
            403,
            "DATASOURCES:READ:app_events",
        ),
        ("SELECT 1; DROP TABLE ab_test_events", 400, "Multi-statements are not allowed"),
        ("SELECT 1 FROM ab_test_events) ; DROP TABLE ab_test_events; SELECT (1", 400, ""),
        ("SELECT count() FROM ab_test_events SETTINGS max_execution_time = 1e9", 403, "SETTINGS"),
        ("", 400, "parameter 'q' is required"),
    ],
)
@pytest.mark.parametrize("method", ["GET", "POST"])
async def test_refusals(api, q, status, message, method):
    suite, reader = api
    got, body = await _sql(suite, q, reader, method)
    assert got == status, body
    assert message in body["message"]
    result = await suite.warehouse.query("SELECT count() AS n FROM ab_test_events", {})
    assert result.data == [{"n": 3}]


async def test_admin_may_read_every_datasource_and_tokens_are_required(api):
    suite, _ = api
    status, body = await _sql(suite, "SELECT count() AS n FROM user_events")
    assert (status, body["data"]) == (200, [{"n": 0}])
    status, body = await _sql(suite, "SELECT 1 FROM ab_test_events", "wrong")
    assert (status, body["code"]) == (403, 16)  # Tinybird's status, UNAUTHENTICATED
