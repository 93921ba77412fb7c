"""The writer's numbering of a batch (common/warehouse/numbering.py), without an engine: each
id gets the number plain Python's first-sight count gives it, whatever the body's shape
(both formats, blocks joined by newlines, blank and CRLF lines, an empty row, a null or a
missing id, a column left out of the insert), the body keeps every row's own values beside
its numbers, and nothing is kept until the batch is."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from common.warehouse.base import WarehouseError
from common.warehouse.numbering import Numbering

COLUMNS = ("event_id", "user_id", "session_id")
NUMBERED = ("user_id", "session_id")
HIDDEN = {"user_id": "_pipit_user_id_number", "session_id": "_pipit_session_id_number"}


def fresh(**kept: dict[str, int]) -> Numbering:
    numbering = Numbering()
    for column in NUMBERED:
        assert numbering.read_after(column) == 0
        ids = kept.get(column, {})
        numbering.load(column, orjson.dumps([list(ids), list(ids.values())]) if ids else b"")
        assert numbering.read_after(column) is None
    return numbering


def first_sight(
    rows: list[dict[str, Any]], kept: dict[str, dict[str, int]]
) -> dict[str, dict[str, int]]:
    """Each column's ids: the kept ones' numbers, then the new ones after the highest, in
    the order the rows show them (a null or a missing id is '')."""
    out = {}
    for column in NUMBERED:
        numbers = dict(kept.get(column, {}))
        top = max(numbers.values(), default=0)
        for row in rows:
            value = row.get(column) or ""
            if value not in numbers:
                top += 1
                numbers[value] = top
        out[column] = numbers
    return out


def rows_of_each_row(body: bytes) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in body.split(b"\n")]


def rows_of_columns(body: bytes, columns: tuple[str, ...]) -> list[dict[str, Any]]:
    rows = []
    for block in body.split(b"\n"):
        values = orjson.loads(block)
        rows += [dict(zip(columns, row, strict=True)) for row in zip(*values, strict=True)]
    return rows


def check(
    rows: list[dict[str, Any]], out: list[dict[str, Any]], kept: dict[str, dict[str, int]]
) -> None:
    want = first_sight(rows, kept)
    assert len(out) == len(rows)
    for given, stored in zip(rows, out, strict=True):
        assert {k: v for k, v in stored.items() if k not in HIDDEN.values()} == given
        for column, hidden in HIDDEN.items():
            assert stored[hidden] == want[column][given.get(column) or ""]


ROWS = [
    {"event_id": "1", "user_id": "u1", "session_id": "s1"},
    {"event_id": "2", "user_id": "u2", "session_id": "s1"},
    {"event_id": "3", "user_id": "u1", "session_id": "s2"},
    {"event_id": "4", "user_id": 'q"uo\\te', "session_id": "ünï\ncødé"},
    {"event_id": "5", "user_id": None, "session_id": "s3"},
    {"event_id": "6", "session_id": "s4"},  # user_id left out: ''
    {"event_id": "7", "user_id": "u3", "session_id": "s2"},
]
KEPT = {"user_id": {"u2": 7, "old": 9}, "session_id": {"s2": 1}}


@pytest.mark.parametrize("kept", [{}, KEPT])
def test_json_each_row_lines_keep_their_values_and_gain_their_numbers(
    kept: dict[str, dict[str, int]],
) -> None:
    lines = [orjson.dumps(row) for row in ROWS]
    # Blank lines, CRLF endings and spaces are JSONEachRow too.
    lines[1] = b"  " + lines[1] + b"  \r"
    body = b"\n".join([lines[0], b"", *lines[1:4], b"   ", *lines[4:]])
    numbering = fresh(**kept)
    batch = numbering.number(body, "JSONEachRow", COLUMNS, NUMBERED)
    out = rows_of_each_row(batch.body)
    # None stays None in the row itself: only its number is ''s.
    check(ROWS, out, kept)
    want = first_sight(ROWS, kept)
    assert batch.new == {
        column: {i: n for i, n in want[column].items() if i not in kept.get(column, {})}
        for column in NUMBERED
    }


def test_an_empty_row_is_numbered_as_empty_ids() -> None:
    batch = fresh().number(b"{}\n" + orjson.dumps(ROWS[0]), "JSONEachRow", COLUMNS, NUMBERED)
    out = rows_of_each_row(batch.body)
    assert out[0] == {"_pipit_user_id_number": 1, "_pipit_session_id_number": 1}
    assert out[1]["_pipit_user_id_number"] == 2


@pytest.mark.parametrize("kept", [{}, KEPT])
def test_json_compact_columns_blocks_joined_share_one_numbering(
    kept: dict[str, dict[str, int]],
) -> None:
    def block(rows: list[dict[str, Any]]) -> bytes:
        return orjson.dumps([[row.get(c) for row in rows] for c in COLUMNS])

    body = block(ROWS[:3]) + b"\n" + block(ROWS[3:]) + b"\n"
    numbering = fresh(**kept)
    batch = numbering.number(body, "JSONCompactColumns", COLUMNS, NUMBERED)
    out = rows_of_columns(batch.body, (*COLUMNS, *HIDDEN.values()))
    check([{c: row.get(c) for c in COLUMNS} for row in ROWS], out, kept)


def test_a_numbered_column_left_out_of_the_insert_is_numbered_as_empty() -> None:
    columns = ("event_id", "session_id")
    body = orjson.dumps([["1", "2"], ["s1", "s2"]])
    batch = fresh(user_id={"": 4}).number(body, "JSONCompactColumns", columns, NUMBERED)
    assert orjson.loads(batch.body) == [["1", "2"], ["s1", "s2"], [4, 4], [1, 2]]
    assert batch.new == {"session_id": {"s1": 1, "s2": 2}}


def test_nothing_is_kept_until_the_batch_is_and_a_retry_gets_the_same_numbers() -> None:
    numbering = fresh(**KEPT)
    body = b"\n".join(orjson.dumps(row) for row in ROWS)
    first = numbering.number(body, "JSONEachRow", COLUMNS, NUMBERED)
    # Not kept (its numbers were never stored): the same batch is numbered the same again.
    again = numbering.number(body, "JSONEachRow", COLUMNS, NUMBERED)
    assert again == first
    numbering.keep(first)
    retried = numbering.number(body, "JSONEachRow", COLUMNS, NUMBERED)
    assert retried.body == first.body
    assert retried.new == {}
    assert retried.new_rows() == b""
    later = numbering.number(
        orjson.dumps({"event_id": "8", "user_id": "u9", "session_id": "s1"}),
        "JSONEachRow",
        COLUMNS,
        NUMBERED,
    )
    top = max(first_sight(ROWS, KEPT)["user_id"].values())
    assert later.new == {"user_id": {"u9": top + 1}}


def test_new_rows_are_the_numbers_table_s_columns() -> None:
    batch = fresh().number(orjson.dumps(ROWS[0]), "JSONEachRow", COLUMNS, NUMBERED)
    blocks = [orjson.loads(b) for b in batch.new_rows().split(b"\n")]
    assert blocks == [[["user_id"], ["u1"], [1]], [["session_id"], ["s1"], [1]]]


@pytest.mark.parametrize(
    ("body", "fmt", "message"),
    [
        (b'{"user_id": 5, "session_id": "s"}', "JSONEachRow", "got `int`"),
        (b'[["1"], [5], ["s"]]', "JSONCompactColumns", "got `int`"),
        (b'{"user_id": "u", "session_id": "s"', "JSONEachRow", "not the JSON"),
        (b'[{"user_id": "u"}]', "JSONEachRow", "Expected `object`"),
        (b'[["1"], ["u"]]', "JSONCompactColumns", "3 columns"),
        (b'{"a": 1}', "CSV", "unsupported"),
    ],
)
def test_a_batch_it_cannot_number_exactly_is_refused(body: bytes, fmt: str, message: str) -> None:
    with pytest.raises(WarehouseError, match=message):
        fresh().number(body, fmt, COLUMNS, NUMBERED)


def test_a_map_behind_reads_the_numbers_after_its_highest_and_keeps_the_rest() -> None:
    numbering = fresh(**KEPT)
    numbering.fall_behind()
    assert numbering.read_after("user_id") == 9
    assert numbering.read_after("session_id") == 1
    # What SQL numbered meanwhile: after the highest, as every number is.
    numbering.load("user_id", orjson.dumps([["u1", "u3"], [10, 11]]))
    numbering.load("session_id", b"[]")
    assert numbering.read_after("user_id") is None
    body = b"\n".join(orjson.dumps(row) for row in ROWS)
    batch = numbering.number(body, "JSONEachRow", COLUMNS, NUMBERED)
    check(
        ROWS,
        rows_of_each_row(batch.body),
        {**KEPT, "user_id": {"u2": 7, "old": 9, "u1": 10, "u3": 11}},
    )
