"""Every column type a datasource may declare, through both ways in: decoded JSON events
(`RowValidator.from_json` and the batch path `columns_from_json`, which must agree) and
typed events (`columns_from_messages`, messages of a datasource declared at test time with
the fields `common.column_types.event_field` gives). Plus json_path, DEFAULT columns and
types refused when the validator is built."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from column_cases import (
    CASES,
    UNSUPPORTED,
    Case,
    case_events,
    set_timestamp,
    typed_event,
    typed_value,
)
from datasource_protos import Spec, build
from hypothesis import HealthCheck, given, settings

from common.column_types import event_field, parse
from common.validation import OMITTED, InvalidValue, RowValidator


def _encoded(value: Any) -> str:
    """What the block encoder writes for a validated value (OMITTED shown as such)."""
    return orjson.dumps(value, default=lambda v: "<OMITTED>" if v is OMITTED else None).decode()


def _batch(validator: RowValidator, columns_and_bad: tuple[list, list]) -> tuple[str, list]:
    columns, bad = columns_and_bad
    return _encoded(columns), bad


def _row_by_row(validator: RowValidator, items: list, validate) -> tuple[str, list]:
    rows, bad = [], []
    for index, item in enumerate(items):
        try:
            rows.append(list(validate(item).values()))
        except InvalidValue as exc:
            bad.append((index, str(exc)))
    width = len(validator.datasource.columns)
    return _encoded([list(c) for c in zip(*rows, strict=True)] or [[]] * width), bad


def _single(kind: str, **options: Any) -> RowValidator:
    return RowValidator(build("t", [Spec("c", kind, **options)]))


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_good_values_are_stored_as_clickhouse_reads_them(case: Case) -> None:
    validator = _single(case.type)
    events = [{"c": value} for value, _, _ in case.good]
    for event, (_, expected, _) in zip(events, case.good, strict=True):
        assert _encoded(validator.from_json(event)["c"]) == expected, event
    columns, bad = validator.columns_from_json(events)
    assert bad == []
    assert _encoded(columns) == _encoded([[orjson.Fragment(e) for _, e, _ in case.good]])


@pytest.mark.parametrize(
    ("case", "value", "reason"),
    [(case, value, reason) for case in CASES for value, reason in case.bad],
    ids=lambda p: p.id if isinstance(p, Case) else None,
)
def test_bad_values_are_refused_naming_the_field(case: Case, value: Any, reason: str) -> None:
    validator = _single(case.type)
    with pytest.raises(InvalidValue) as raised:
        validator.from_json({"c": value})
    message = str(raised.value)
    if reason.startswith(("[", ".")):  # inside the value: the field's name says where
        where, reason = reason.split(": ", 1)
        assert message.startswith(f"field 'c{where}': "), message
    else:
        assert message.startswith("field 'c': "), message
    assert reason in message
    # The batch path refuses the same event for the same reason and keeps its neighbours.
    good = {"c": case.good[0][0]}
    events = [good, {"c": value}, good]
    columns, bad = validator.columns_from_json(events)
    assert bad == [(1, message)]
    assert _batch(validator, (columns, bad)) == _row_by_row(validator, events, validator.from_json)


def test_every_case_type_is_one_event_field_can_carry() -> None:
    for case in CASES:
        assert event_field(case.type)  # the lead's mapping knows each of them
        assert parse(case.type)


@pytest.mark.parametrize(("kind", "reason"), UNSUPPORTED)
def test_types_that_cannot_be_ingested_are_refused_when_the_validator_is_built(
    kind: str, reason: str
) -> None:
    ds = build("t", [Spec("ok", "String"), Spec("c", kind, proto=("", "string"))])
    with pytest.raises(ValueError, match="column c: unsupported ClickHouse type") as raised:
        RowValidator(ds)
    assert reason in str(raised.value)


# --- missing fields, nulls, defaults and paths ------------------------------------------


def _validator_with_absent_columns() -> RowValidator:
    return RowValidator(
        build(
            "t",
            [
                Spec("id", "UInt32"),
                Spec("maybe", "Nullable(String)"),
                Spec("counted", "UInt64", default="length(id)"),
                Spec("maybe_counted", "Nullable(UInt64)", default="7"),
                Spec("deep", "String", json_path="$.a.b"),
                Spec("deep_or", "Nullable(Int8)", json_path="$.a.c"),
            ],
        )
    )


@pytest.mark.parametrize(
    ("event", "row"),
    [
        (
            {"id": 1, "maybe": "m", "counted": 3, "maybe_counted": 4, "a": {"b": "x", "c": 5}},
            [1, "m", 3, 4, "x", 5],
        ),
        # A missing field: NULL where Nullable, the DEFAULT where one is declared.
        ({"id": 1, "a": {"b": "x"}}, [1, None, OMITTED, OMITTED, "x", None]),
        # A null: NULL where Nullable (the column's null, even with a DEFAULT), else DEFAULT.
        (
            {"id": 1, "maybe": None, "counted": None, "maybe_counted": None, "a": {"b": "x"}},
            [1, None, OMITTED, None, "x", None],
        ),
        # A path through something that is not an object finds nothing.
        ({"id": 1, "a": {"b": "x", "c": None}}, [1, None, OMITTED, OMITTED, "x", None]),
    ],
)
def test_missing_and_null_fields(event: dict, row: list) -> None:
    validator = _validator_with_absent_columns()
    assert list(validator.from_json(event).values()) == row
    columns, bad = validator.columns_from_json([event, event])
    assert bad == []
    assert columns == [[value, value] for value in row]


@pytest.mark.parametrize(
    ("event", "reason"),
    [
        ({"maybe": "m", "a": {"b": "x"}}, "missing required field 'id'"),
        ({"id": None, "a": {"b": "x"}}, "missing required field 'id'"),
        ({"id": 1}, "missing required field 'a.b'"),
        ({"id": 1, "a": "b"}, "missing required field 'a.b'"),
        ({"id": 1, "a": {"b": None}}, "missing required field 'a.b'"),
        ({"id": 1, "a": {"b": 5}}, "field 'a.b': expected a string, got a number"),
        ({"id": 1, "a": {"b": "x", "c": 128}}, "field 'a.c': 128 is out of range for Int8"),
        ({"id": 1, "a": {"b": "x"}, "counted": -1}, "field 'counted': -1 is out of range"),
        # A path names keys, not the column: the column's own name is just another key.
        ({"id": 1, "deep": "x"}, "missing required field 'a.b'"),
    ],
)
def test_absent_required_fields_and_bad_values_under_a_path(event: dict, reason: str) -> None:
    validator = _validator_with_absent_columns()
    with pytest.raises(InvalidValue) as raised:
        validator.from_json(event)
    assert reason in str(raised.value)
    good = {"id": 2, "a": {"b": "y"}}
    columns, bad = validator.columns_from_json([good, event])
    assert bad == [(1, str(raised.value))]
    assert columns[0] == [2]


# --- agreement of the batch path with the row path, on anything -------------------------

ALL = [Spec(f"c{i}", case.type) for i, case in enumerate(CASES)]


@pytest.mark.slow
@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@given(events=case_events({spec.name: case for spec, case in zip(ALL, CASES, strict=True)}))
def test_the_batch_path_answers_as_the_row_path(events: list[Any]) -> None:
    validator = _ALL_VALIDATOR
    assert _batch(validator, validator.columns_from_json(events)) == _row_by_row(
        validator, events, validator.from_json
    )


_ALL_VALIDATOR = RowValidator(build("all", ALL))


def test_a_batch_of_only_good_values_takes_the_fast_path() -> None:
    # Every good value of every type in one batch: nothing is quarantined, and the answer
    # is the row path's.
    width = max(len(case.good) for case in CASES)
    events = [
        {spec.name: case.good[i % len(case.good)][0] for spec, case in zip(ALL, CASES, strict=True)}
        for i in range(width)
    ]
    columns, bad = _ALL_VALIDATOR.columns_from_json(events)
    assert bad == []
    assert _encoded(columns) == _row_by_row(_ALL_VALIDATOR, events, _ALL_VALIDATOR.from_json)[0]


# --- typed events -------------------------------------------------------------------------


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_typed_events_store_what_the_same_json_event_stores(case: Case) -> None:
    ds = build("t", [Spec("c", case.type)])
    validator = RowValidator(ds)
    pairs = [(value, typed_value(case.type, value)) for value, _, _ in case.good]
    pairs = [(value, typed) for value, typed in pairs if typed is not ...]
    assert pairs, "no good value of this type fits its typed field"
    events = [typed_event(ds, typed) for _, typed in pairs]
    expected = [[validator.from_json({"c": value})["c"] for value, _ in pairs]]
    columns, bad = validator.columns_from_messages(events)
    assert bad == []
    assert _encoded(columns) == _encoded(expected)
    assert _batch(validator, (columns, bad)) == _row_by_row(
        validator, events, validator.from_message
    )


@pytest.mark.parametrize(
    ("case", "value", "reason"),
    [
        (case, value, reason)
        for case in CASES
        for value, reason in case.bad
        if isinstance(value, str)
        and event_field(case.type) == ("", "string")
        and parse(case.type).name not in ("JSON", "Object", "Map", "Tuple")
    ],
    ids=lambda p: p.id if isinstance(p, Case) else None,
)
def test_bad_text_in_typed_events_is_refused_naming_the_field(
    case: Case, value: Any, reason: str
) -> None:
    ds = build("t", [Spec("c", case.type)])
    validator = RowValidator(ds)
    good = typed_event(ds, typed_value(case.type, case.good[0][0]))
    events = [good, typed_event(ds, typed_value(case.type, value)), good]
    columns, bad = validator.columns_from_messages(events)
    assert len(bad) == 1 and bad[0][0] == 1
    assert bad[0][1].startswith(("field 'c", "missing required field 'c'")), bad
    assert _batch(validator, (columns, bad)) == _row_by_row(
        validator, events, validator.from_message
    )


def test_unset_typed_fields_are_null_default_or_missing() -> None:
    ds = build(
        "t",
        [
            Spec("id", "UInt32"),
            Spec("maybe", "Nullable(Int128)"),
            Spec("when", "Nullable(DateTime)"),
            Spec("stamp", "DateTime", default="now()"),
            Spec("big", "Int128"),
            Spec("attrs", "Map(String, UInt8)", default="map()"),
            Spec("amount", "Decimal(10, 2)", default="0"),
            Spec("name", "String"),
        ],
    )
    validator = RowValidator(ds)
    event = ds.message_class(id=1, big="5")
    row = validator.from_message(event)
    # proto3: an unset string is "", which is no Int128/Map/Decimal; an unset string column
    # is the empty string.
    assert row == {
        "id": 1,
        "maybe": None,
        "when": None,
        "stamp": OMITTED,
        "big": "5",
        "attrs": OMITTED,
        "amount": OMITTED,
        "name": "",
    }
    assert validator.columns_from_messages([event]) == ([[v] for v in row.values()], [])
    with pytest.raises(InvalidValue, match="missing required field 'big'"):
        validator.from_message(ds.message_class(id=1))
    event.maybe = "-1"
    set_timestamp(event, "when", 1686839400, 999_999_999)
    event.attrs = '{"a": 1}'
    event.amount = "1.25"
    row = validator.from_message(event)
    assert (row["maybe"], row["when"], row["attrs"], row["amount"]) == (
        "-1",
        1686839400,
        {"a": 1},
        "1.25",
    )
    event.attrs = "{not json"
    with pytest.raises(InvalidValue, match="field 'attrs': expected JSON text"):
        validator.from_message(event)


def test_typed_arrays_of_composites_carry_json_text_per_element() -> None:
    ds = build("t", [Spec("c", "Array(Map(String, UInt8))")])
    validator = RowValidator(ds)
    good = ds.message_class(c=['{"a": 1}', "{}"])
    bad = ds.message_class(c=['{"a": 1}', '{"b": 256}'])
    columns, invalid = validator.columns_from_messages([good, bad])
    assert columns == [[[{"a": 1}, {}]]]
    assert invalid == [(1, "field 'c[1]['b']': 256 is out of range for UInt8 (0..255)")]


def test_a_timestamp_field_keeps_its_nanoseconds_in_a_datetime64_column() -> None:
    ds = build(
        "t",
        [
            Spec("c", "DateTime64(9)", proto=("", "google.protobuf.Timestamp")),
            Spec("d", "Date32", proto=("", "google.protobuf.Timestamp")),
        ],
    )
    validator = RowValidator(ds)
    event = ds.message_class()
    set_timestamp(event, "c", -1, 5)
    set_timestamp(event, "d", -1, 5)
    row = validator.from_message(event)
    assert (_encoded(row["c"]), row["d"]) == ("-0.999999995", "1969-12-31")
    assert _encoded(validator.columns_from_messages([event])[0]) == _encoded(
        [[row["c"]], [row["d"]]]
    )
