"""Quarantine is bounded (issue 13, item 10): a request with more invalid events than
PIPIT_MAX_QUARANTINE_ROWS is refused whole with 400 INVALID_ARGUMENT naming the count
and the first reason, and stores nothing, on the Events API, the typed appends and the
stream; and every quarantine table carries a TTL of PIPIT_QUARANTINE_TTL_DAYS, set on
tables created before it too."""

from __future__ import annotations

import aiohttp
import grpc
import orjson
import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from harness import AUTH, TOKEN, start_suite
from samples import keyed_ab_event

from common import config
from common.datasources import registry
from pipit.datasources.v1 import ab_test_events_pb2
from pipit.ingest.v1 import ingest_service_pb2 as pb

pytestmark = pytest.mark.e2e

CAP = 5
VALID = keyed_ab_event("u", "cap")


@pytest.fixture
async def suite(embedded_warehouse):
    running = await start_suite(embedded_warehouse, max_quarantine_rows=CAP)
    yield running
    await running.stop()


async def _counts(warehouse) -> tuple[int, int]:
    result = await warehouse.query(
        "SELECT (SELECT count() FROM ab_test_events) AS rows, "
        "(SELECT count() FROM ab_test_events_quarantine) AS quarantined",
        {},
    )
    return result.data[0]["rows"], result.data[0]["quarantined"]


def _body(valid: int, invalid: int) -> bytes:
    lines = [orjson.dumps(VALID)] * valid + [b"{}"] * invalid
    return b"\n".join(lines)


async def _post(suite, body: bytes) -> tuple[int, dict]:
    async with (
        aiohttp.ClientSession() as http,
        http.post(
            f"{suite.gateway_url}/v0/events?name=ab_test_events&wait=true",
            data=body,
            headers={"Authorization": f"Bearer {TOKEN}"},
        ) as response,
    ):
        return response.status, await response.json()


async def test_events_api_takes_up_to_the_cap_and_refuses_past_it_storing_nothing(suite):
    assert await _post(suite, _body(2, CAP)) == (
        200,
        {"successful_rows": 2, "quarantined_rows": CAP},
    )
    status, answer = await _post(suite, _body(2, CAP + 1))
    assert (status, answer["code"]) == (400, 3)
    assert answer["message"].startswith(f"{CAP + 1} of {CAP + 3} events are invalid")
    assert f"more than the {CAP} one request may quarantine" in answer["message"]
    assert "nothing was stored" in answer["message"]
    assert "event 3: missing required field 'timestamp'" in answer["message"]
    await suite.ingest.batcher.flush_all()
    assert await _counts(suite.warehouse) == (2, CAP)  # the refused request left nothing


async def test_one_body_of_empty_objects_is_refused_not_amplified(embedded_warehouse):
    # The report: 10 MiB of `{}` lines became 3.5 M quarantined rows. With the
    # default cap the body is refused and nothing is written.
    suite = await start_suite(embedded_warehouse)
    try:
        body = b"\n".join([b"{}"] * 200_000)
        status, answer = await _post(suite, body)
        assert (status, answer["code"]) == (400, 3)
        default = config.Settings().max_quarantine_rows
        assert answer["message"].startswith(
            f"200000 of 200000 events are invalid, more than the {default}"
        )
        await suite.ingest.batcher.flush_all()
        assert await _counts(suite.warehouse) == (0, 0)
    finally:
        await suite.stop()


def _typed(**changes) -> ab_test_events_pb2.AbTestEvent:
    event = ab_test_events_pb2.AbTestEvent(
        timestamp=Timestamp(seconds=1686839400),
        user_id="u",
        test_id="cap",
        variant="A",
        event_type="view",
        session_id="s",
        device="d",
        country="c",
    )
    for name, value in changes.items():
        setattr(event, name, value)
    return event


def _typed_batch(valid: int, invalid: int) -> pb.AppendAbTestEventsRequest:
    events = [_typed() for _ in range(valid)] + [_typed(conversion=300) for _ in range(invalid)]
    return pb.AppendAbTestEventsRequest(events=events, wait=True)


async def test_typed_append_refuses_past_the_cap(suite):
    stub = suite.ingest_stub()
    response = await stub.AppendAbTestEvents(_typed_batch(1, CAP), metadata=AUTH)
    assert (response.successful_rows, response.quarantined_rows) == (1, CAP)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.AppendAbTestEvents(_typed_batch(1, CAP + 1), metadata=AUTH)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert caught.value.details().startswith(f"{CAP + 1} of {CAP + 2} events are invalid")
    assert "event 2: field 'conversion': 300 is out of range" in caught.value.details()
    await suite.ingest.batcher.flush_all()
    assert await _counts(suite.warehouse) == (1, CAP)


async def test_stream_refuses_the_batch_past_the_cap_and_says_what_was_accepted(suite):
    async def batches():
        yield pb.StreamEventsRequest(ab_test_events=_typed_batch(3, 1))
        yield pb.StreamEventsRequest(ab_test_events=_typed_batch(3, CAP + 1))
        yield pb.StreamEventsRequest(ab_test_events=_typed_batch(3, 0))

    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await suite.ingest_stub().StreamEvents(batches(), metadata=AUTH)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    details = caught.value.details()
    assert details.startswith(f"message 2 of the stream: {CAP + 1} of {CAP + 4} events")
    assert details.endswith("(the first 1 batches of this stream were accepted)")
    await suite.ingest.batcher.flush_all()
    assert await _counts(suite.warehouse) == (3, 1)


def test_the_cap_and_the_ttl_are_settings() -> None:
    loaded = config.load(
        environ={"PIPIT_MAX_QUARANTINE_ROWS": "7", "PIPIT_QUARANTINE_TTL_DAYS": "3"}
    )
    assert (loaded.max_quarantine_rows, loaded.quarantine_ttl_days) == (7, 3)
    for name in ("PIPIT_MAX_QUARANTINE_ROWS", "PIPIT_QUARANTINE_TTL_DAYS"):
        with pytest.raises(SystemExit, match=name):
            config.load(environ={name: "0"})


async def _table_ttl(warehouse, table: str) -> str:
    result = await warehouse.query(
        "SELECT engine_full FROM system.tables WHERE database = {db:String} AND name = {t:String}",
        {"db": warehouse.database, "t": table},
    )
    engine = result.data[0]["engine_full"]
    return engine.split(" TTL ", 1)[1].split(" SETTINGS ", 1)[0] if " TTL " in engine else ""


async def test_quarantine_tables_expire_rows_and_older_tables_get_the_ttl(embedded_warehouse):
    warehouse = embedded_warehouse
    datasources = list(registry().values())
    for ds in datasources:
        assert await _table_ttl(warehouse, ds.quarantine_table) == (
            "toDateTime(arrived_at) + toIntervalDay(30)"
        )
    # A quarantine table as an older Pipit created it: no TTL.
    ds = registry()["ab_test_events"]
    await warehouse.execute(f"DROP TABLE `{warehouse.database}`.`{ds.quarantine_table}`")
    old_ddl = ds.create_quarantine_sql(warehouse.database).replace(
        "TTL toDateTime(arrived_at) + INTERVAL 30 DAY\n", ""
    )
    await warehouse.execute(old_ddl)
    assert await _table_ttl(warehouse, ds.quarantine_table) == ""
    rows = b"\n".join(
        [
            orjson.dumps({"raw": "{}", "error": "old", "arrived_at": "2020-01-01 00:00:00.000"}),
            orjson.dumps({"raw": "{}", "error": "new", "arrived_at": "2099-01-01 00:00:00.000"}),
        ]
    )
    await warehouse.insert_json_rows(ds.quarantine_table, ("raw", "error", "arrived_at"), rows)

    await warehouse.ensure_schema(datasources, quarantine_ttl_days=7)
    assert await _table_ttl(warehouse, ds.quarantine_table) == (
        "toDateTime(arrived_at) + toIntervalDay(7)"
    )
    await warehouse.execute(f"OPTIMIZE TABLE `{warehouse.database}`.`{ds.quarantine_table}` FINAL")
    result = await warehouse.query(f"SELECT error FROM {ds.quarantine_table}", {})  # noqa: S608
    assert [row["error"] for row in result.data] == ["new"]


def test_pipit_migrate_prints_the_configured_ttl(capsys: pytest.CaptureFixture[str]) -> None:
    from pipit import cli

    assert cli.main(["migrate", "--print", "--quarantine-ttl-days", "14"]) == 0
    out = capsys.readouterr().out
    quarantines = len(registry())
    assert out.count("TTL toDateTime(arrived_at) + INTERVAL 14 DAY\n") == quarantines
    assert out.count("MODIFY TTL toDateTime(arrived_at) + INTERVAL 14 DAY;") == quarantines
