"""Ingest's per-batch fast paths give the answers of the row-by-row reference: column-at-a-
time validation (JSON and typed events), the cached timestamp parse, NDJSON decoding in
one pass; and the encoded blocks they produce survive the write-ahead log (including
records written before blocks existed) and are inserted one format per insert."""

from __future__ import annotations

import math
import random
import struct
import zlib
from collections.abc import Sequence
from pathlib import Path

import orjson
import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from samples import tutorial_event

from common.datasources import registry
from common.timeparse import parse_datetime, parse_datetime_fast
from common.validation import OMITTED, InvalidValue, RowValidator
from common.warehouse.base import Warehouse
from services.ingest import events_api
from services.ingest.batcher import Batcher, FlushPolicy
from services.ingest.blocks import JSON_COMPACT_COLUMNS, JSON_EACH_ROW, Block
from services.ingest.wal import DATA, WriteAheadLog

AB = registry()["ab_test_events"]
APP = registry()["app_events"]
GOOD = {
    "timestamp": "2023-06-15 14:30:00",
    "user_id": "user_1",
    "test_id": "homepage_redesign",
    "variant": "B",
    "event_type": "page_view",
    "conversion": 1,
    "revenue": 29.99,
    "session_id": "session_1",
    "device": "mobile",
    "country": "US",
}


def row_by_row(validator: RowValidator, values: Sequence, validate) -> tuple[list, list]:
    """The reference: each value on its own, then transposed."""
    rows, bad = [], []
    for index, value in enumerate(values):
        try:
            rows.append(list(validate(value).values()))
        except InvalidValue as exc:
            bad.append((index, str(exc)))
    width = len(validator.datasource.columns)
    return [list(column) for column in zip(*rows, strict=True)] or [[]] * width, bad


# Values a field may hold in an event: right, wrong, borderline.
FIELD_VALUES = st.one_of(
    st.sampled_from(
        [
            "2023-06-15 14:30:00",
            "2023-06-15T14:30:00Z",
            "2023-06-15 24:00:00",
            "1969-12-31 23:59:59",
            "2106-02-07 06:28:16",
            "tomorrow",
            "1686839400",
            1686839400,
            1686839400.5,
            -1,
            2**33,
            255,
            256,
            0,
            1.0,
            True,
            None,
            math.nan,
            math.inf,
            2**70,
            "",
            "x" * 70_000,
            "é" * 20_000,
            {"a": 1},
            [1, 2],
        ]
    ),
    st.text(max_size=20),
    st.integers(),
    st.floats(),
)
EVENTS = st.lists(
    st.one_of(
        st.just(GOOD),
        st.fixed_dictionaries({}, optional={name: FIELD_VALUES for name in GOOD}).map(
            lambda partial: {**GOOD, **partial}
        ),
        st.dictionaries(st.sampled_from(sorted(GOOD)), FIELD_VALUES),
        st.sampled_from([1, "event", None, [GOOD]]),
    ),
    max_size=12,
)


@pytest.mark.slow  # 300 examples
@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@given(values=EVENTS)
def test_json_columns_equal_row_by_row(values) -> None:
    validator = RowValidator(AB)
    assert validator.columns_from_json(values) == row_by_row(validator, values, validator.from_json)


def test_json_text_columns_take_objects_on_the_fast_path() -> None:
    validator = RowValidator(APP)
    # The tutorial's app event with its metadata a JSON object, as the README posts it.
    event = tutorial_event("app_events", metadata={"subscription_tier": "basic"})
    values = [event, {**event, "metadata": '{"a":1}'}]
    columns, bad = validator.columns_from_json(values)
    assert bad == []
    assert (columns, bad) == row_by_row(validator, values, validator.from_json)


def _message(**changes):
    event = AB.message_class(**{k: v for k, v in GOOD.items() if k != "timestamp"})
    event.timestamp.CopyFrom(Timestamp(seconds=parse_datetime(GOOD["timestamp"])))
    for name, value in changes.items():
        if name == "timestamp":
            if value is None:
                event.ClearField("timestamp")
            else:
                event.timestamp.CopyFrom(Timestamp(seconds=value))
        else:
            setattr(event, name, value)
    return event


@pytest.mark.parametrize(
    "changes",
    [
        [{}],
        [{}, {"conversion": 300}, {}],
        [{"revenue": math.nan}, {"revenue": -math.inf}],
        [{"timestamp": None}, {}],
        [{"timestamp": -5}, {"timestamp": 2**33}],
        [{"user_id": "x" * 70_000}, {"user_id": "é" * 16_000}, {"user_id": "é" * 17_000}],
        [],
    ],
)
def test_message_columns_equal_row_by_row(changes) -> None:
    validator = RowValidator(AB, max_string_bytes=64 * 1024)
    events = [_message(**change) for change in changes]
    expected = row_by_row(validator, events, validator.from_message)
    assert validator.columns_from_messages(events) == expected


def test_the_fast_timestamp_parse_answers_as_parse_datetime() -> None:
    rng = random.Random(5)
    cases = ["2023-06-15 14:30:00", "2106-02-07 06:28:15", "2106-02-07 06:28:16"]
    for _ in range(5_000):
        text = list("2023-06-15 14:30:00")
        for _ in range(rng.randint(0, 2)):
            text[rng.randrange(len(text))] = rng.choice("0123456789-: T+Z١")
        cases.append("".join(text))

    def outcome(parse, value):
        try:
            return parse(value)
        except ValueError as exc:
            return str(exc)

    for _ in range(2):  # the second time from the caches
        for case in cases:
            assert outcome(parse_datetime_fast, case) == outcome(parse_datetime, case), case


def test_ndjson_decodes_line_by_line_in_one_pass_or_with_errors() -> None:
    good = orjson.dumps(GOOD)
    events = events_api.decode(good + b"\n\n  " + good + b"  \n")
    assert (events.texts, events.values, events.errors) == ([good, good], [GOOD, GOOD], {})
    events = events_api.decode(good + b"\n{not json\n" + good)
    assert events.texts == [good, b"{not json", good]
    assert list(events.errors) == [1]
    assert events.errors[1].startswith("line 2: not valid JSON")
    # An element spanning lines is not an event, even when the lines join into JSON.
    events = events_api.decode(b"[1\n2]\n3")
    assert sorted(events.errors) == [0, 1]


class Recorder(Warehouse):
    """Records inserts instead of making them."""

    def __init__(self) -> None:
        super().__init__("db")
        self.inserts: list[tuple[str, str, bytes]] = []

    async def open(self) -> None:
        pass

    async def close(self) -> None:
        pass

    async def execute(self, sql: str) -> None:
        pass

    async def insert_json_rows(self, table, columns, body, *, dedup_token="", fmt="JSONEachRow"):
        self.inserts.append((table, fmt, body))

    async def query(self, sql, params):
        raise NotImplementedError


def test_a_batch_with_omitted_fields_is_encoded_a_row_at_a_time_without_them() -> None:
    # ClickHouse computes a DEFAULT only for a field a row leaves out.
    block = Block.from_columns([[1, 2], ["a", OMITTED]], 2, ("id", "name"))
    assert (block.fmt, block.lines()) == (JSON_EACH_ROW, [b'{"id":1,"name":"a"}', b'{"id":2}'])
    assert Block.from_columns([[1, 2], ["a", "b"]], 2, ("id", "name")).fmt == JSON_COMPACT_COLUMNS
    with pytest.raises(TypeError):  # without the names it cannot leave anything out
        Block.from_columns([[1], [OMITTED]], 1)


async def test_blocks_survive_the_log_and_one_insert_has_one_format(tmp_path: Path) -> None:
    wal_dir = tmp_path / "wal"
    log = WriteAheadLog(wal_dir, max_bytes=1 << 20, segment_bytes=1 << 20)
    await log.open()
    columns_block = Block.from_columns([[1, 2], ["a", "b"]], 2)
    await log.append_block("t", ("n", "s"), columns_block)
    await log.append("t", ("n", "s"), [b'{"n":3,"s":"c"}'])
    await log.append_block("t", ("n", "s"), Block.from_columns([[4], ["d"]], 1))
    await log.close()
    # A record as logs wrote it before blocks: no format, JSONEachRow lines.
    legacy = b'{"table":"t","columns":["n","s"]}\n{"n":5,"s":"e"}\n{"n":6,"s":"f"}'
    header = struct.pack("<IIQB", len(legacy), zlib.crc32(legacy), 99, DATA)
    with (wal_dir / f"{99:020d}.wal").open("wb") as segment:
        segment.write(header + legacy)

    warehouse = Recorder()
    batcher = Batcher(
        warehouse,
        FlushPolicy(max_rows=100, max_age=60),
        WriteAheadLog(wal_dir, max_bytes=1 << 20, segment_bytes=1 << 20),
    )
    await batcher.start()
    await batcher.flush_all()
    await batcher.close()
    formats = [(fmt, body) for _, fmt, body in warehouse.inserts]
    assert formats == [
        (JSON_COMPACT_COLUMNS, b'[[1,2],["a","b"]]'),
        (JSON_EACH_ROW, b'{"n":3,"s":"c"}'),
        (JSON_COMPACT_COLUMNS, b'[[4],["d"]]'),
        (JSON_EACH_ROW, b'{"n":5,"s":"e"}\n{"n":6,"s":"f"}'),
    ]


async def test_compact_column_blocks_insert_together(embedded_warehouse) -> None:
    first = Block.from_columns([[1686839400], ["a"]], 1)
    second = Block.from_columns([[1686839401, 1686839402], ["b", "c"]], 2)
    await embedded_warehouse.execute(
        f"CREATE TABLE `{embedded_warehouse.database}`.blocks (ts DateTime, s String) "
        "ENGINE = MergeTree ORDER BY ts"
    )
    await embedded_warehouse.insert_json_rows(
        "blocks", ("ts", "s"), first.body + b"\n" + second.body, fmt=JSON_COMPACT_COLUMNS
    )
    result = await embedded_warehouse.query(
        "SELECT toString(ts) AS t, s FROM blocks ORDER BY ts", {}
    )
    assert [(r["t"], r["s"]) for r in result.data] == [
        ("2023-06-15 14:30:00", "a"),
        ("2023-06-15 14:30:01", "b"),
        ("2023-06-15 14:30:02", "c"),
    ]


class TokenRecorder(Recorder):
    """Records the token of each insert too."""

    def __init__(self) -> None:
        super().__init__()
        self.tokens: list[str] = []

    async def insert_json_rows(self, table, columns, body, *, dedup_token="", fmt="JSONEachRow"):
        self.tokens.append(dedup_token)
        await super().insert_json_rows(table, columns, body, fmt=fmt)


async def test_a_failed_intent_is_logged_again_under_its_token(tmp_path: Path, monkeypatch) -> None:
    log = WriteAheadLog(tmp_path, max_bytes=1 << 20, segment_bytes=1 << 20)
    real = log.append_flush
    written: list[tuple[str, tuple[int, ...]]] = []

    async def reaches_disk_then_fails(table, token, members):
        written.append((token, tuple(members)))
        sequence = await real(table, token, members)
        if len(written) == 1:
            raise OSError(5, "Input/output error")  # e.g. the fsync after the write
        return sequence

    warehouse = TokenRecorder()
    batcher = Batcher(warehouse, FlushPolicy(max_rows=100, max_age=3600, retry_initial=0.001), log)
    await batcher.start()
    await batcher.append("t", ("n",), [b'{"n":1}', b'{"n":2}'])
    await batcher.append("t", ("n",), [b'{"n":3}'])
    monkeypatch.setattr(log, "append_flush", reaches_disk_then_fails)
    await batcher.flush_all()
    await batcher.close()
    # Written twice, the same token over the same batches both times; inserted once.
    assert len(written) == 2 and written[0] == written[1]
    assert warehouse.tokens == [written[0][0]]
    # Both copies are on disk; the replay inserts nothing again.
    warehouse = TokenRecorder()
    again = Batcher(
        warehouse, FlushPolicy(), WriteAheadLog(tmp_path, max_bytes=1 << 20, segment_bytes=1 << 20)
    )
    await again.start()
    await again.flush_all()
    await again.close()
    assert warehouse.tokens == []
