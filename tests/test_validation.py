"""Row validation derived from the datasource schemas, and configuration loading."""

from __future__ import annotations

import argparse
import math

import pytest

from common import config
from common.datasources import registry
from common.timeparse import parse_datetime
from common.validation import InvalidValue, RowValidator

JUNE_15 = 1686839400  # 2023-06-15 14:30:00 UTC


@pytest.mark.parametrize(
    "value",
    [
        "2023-06-15 14:30:00",
        "2023-06-15T14:30:00Z",
        "2023-06-15T16:30:00+02:00",
        JUNE_15,
        str(JUNE_15),
        float(JUNE_15),
    ],
)
def test_timestamp_formats(value) -> None:
    assert parse_datetime(value) == JUNE_15


@pytest.mark.parametrize("value", ["tomorrow", "2023-02-30 00:00:00", -1, 2**33, math.nan, True])
def test_bad_timestamps(value) -> None:
    with pytest.raises(ValueError):
        parse_datetime(value)


def test_schemas_match_the_tutorials() -> None:
    sources = registry()
    assert set(sources) == {"ab_test_events", "user_events", "app_events", "clickstream_events"}
    ab = sources["ab_test_events"]
    assert [(c.name, c.type) for c in ab.columns] == [
        ("timestamp", "DateTime"),
        ("user_id", "String"),
        ("test_id", "String"),
        ("variant", "String"),
        ("event_type", "String"),
        ("conversion", "UInt8"),
        ("revenue", "Float64"),
        ("session_id", "String"),
        ("device", "String"),
        ("country", "String"),
    ]
    ddl = ab.create_table_sql("pipit")
    assert "ENGINE = MergeTree" in ddl
    assert "PARTITION BY toYYYYMM(timestamp)" in ddl
    assert "ORDER BY (timestamp, test_id, variant, user_id)" in ddl
    assert sources["user_events"].sorting_key == "timestamp, user_id, event_type"
    assert sources["app_events"].sorting_key == "timestamp, user_id, event_type"
    assert sources["clickstream_events"].sorting_key == "timestamp, user_id, session_id"


def test_json_text_columns_accept_objects() -> None:
    validator = RowValidator(registry()["user_events"])
    event = {c.name: "x" for c in validator.datasource.columns}
    event["timestamp"] = "2023-06-15 14:30:00"
    event["properties"] = {"plan": "pro", "n": 1}
    row = validator.from_json(event)
    assert row["properties"] == '{"plan":"pro","n":1}'
    event["user_id"] = {"not": "text"}
    with pytest.raises(InvalidValue, match="field 'user_id': expected a string"):
        validator.from_json(event)


def test_extra_fields_are_ignored_and_non_objects_refused() -> None:
    validator = RowValidator(registry()["ab_test_events"])
    with pytest.raises(InvalidValue, match="expected a JSON object"):
        validator.from_json([1, 2])


def test_flags_override_environment_over_defaults() -> None:
    parser = argparse.ArgumentParser()
    config.add_arguments(parser)
    args = parser.parse_args(["--query-port", "6000"])
    settings = config.load(args, {"PIPIT_QUERY_PORT": "5000", "PIPIT_FLUSH_ROWS": "7"})
    assert (settings.query_port, settings.flush_rows, settings.gateway_port) == (6000, 7, 7181)
    with pytest.raises(SystemExit, match="PIPIT_DATABASE"):
        config.load(None, {"PIPIT_DATABASE": "x; DROP"})
