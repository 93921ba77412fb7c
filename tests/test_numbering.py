"""The writer's reading of a batch's ids (common/warehouse/numbering.py), without an engine:
each numbered column's distinct ids in the order plain Python's first sight gives them,
whatever the body's shape (both formats, blocks joined by newlines, blank and CRLF lines, an
empty row, a null or a missing id, a column left out of the insert); values the engine would
store as other text refused; new ids numbered after the highest; and the lookup's query, with
ids a format must carry as they are, asked of the engine (tests/test_id_numbers.py numbers
whole batches through it)."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from clickhouse_connect.driver.binding import escape_str

from common.warehouse.base import WarehouseError
from common.warehouse.embedded import EmbeddedWarehouse, escaped_text
from common.warehouse.numbering import batch_ids, highest_sql, new_numbers, store_sql, unseen_query

COLUMNS = ("event_id", "user_id", "session_id")
NUMBERED = ("user_id", "session_id")

ROWS = [
    {"event_id": "1", "user_id": "u1", "session_id": "s1"},
    {"event_id": "2", "user_id": "u2", "session_id": "s1"},
    {"event_id": "3", "user_id": "u1", "session_id": "s2"},
    {"event_id": "4", "user_id": 'q"uo\\te', "session_id": "ünï\ncødé"},
    {"event_id": "5", "user_id": None, "session_id": "s3"},
    {"event_id": "6", "session_id": "s4"},  # user_id left out: ''
    {"event_id": "7", "user_id": "u3", "session_id": "s2"},
]


def first_sight(rows: list[dict[str, Any]]) -> dict[str, list[str]]:
    """Each column's distinct ids in the order the rows show them (null or missing: '')."""
    out: dict[str, list[str]] = {}
    for column in NUMBERED:
        seen: list[str] = []
        for row in rows:
            value = row.get(column) or ""
            if value not in seen:
                seen.append(value)
        out[column] = seen
    return out


def test_json_each_row_lines_give_their_ids_in_order_of_first_sight() -> None:
    lines = [orjson.dumps(row) for row in ROWS]
    # Blank lines, CRLF endings and spaces are JSONEachRow too.
    lines[1] = b"  " + lines[1] + b"  \r"
    body = b"\n".join([lines[0], b"", *lines[1:4], b"   ", *lines[4:]])
    assert batch_ids(body, "JSONEachRow", COLUMNS, NUMBERED) == first_sight(ROWS)


def test_an_empty_row_has_empty_ids() -> None:
    body = b"{}\n" + orjson.dumps(ROWS[0])
    assert batch_ids(body, "JSONEachRow", COLUMNS, NUMBERED) == {
        "user_id": ["", "u1"],
        "session_id": ["", "s1"],
    }


def test_json_compact_columns_blocks_joined_are_one_batch() -> None:
    def block(rows: list[dict[str, Any]]) -> bytes:
        return orjson.dumps([[row.get(c) for row in rows] for c in COLUMNS])

    body = block(ROWS[:3]) + b"\n" + block(ROWS[3:]) + b"\n"
    assert batch_ids(body, "JSONCompactColumns", COLUMNS, NUMBERED) == first_sight(ROWS)


def test_a_numbered_column_left_out_of_the_insert_has_the_empty_id() -> None:
    columns = ("event_id", "session_id")
    body = orjson.dumps([["1", "2"], ["s1", "s2"]]) + b"\n" + orjson.dumps([[], []])
    assert batch_ids(body, "JSONCompactColumns", columns, NUMBERED) == {
        "user_id": [""],
        "session_id": ["s1", "s2"],
    }
    # A block of no rows has no ids, not even the empty one.
    empty = orjson.dumps([[], []])
    assert batch_ids(empty, "JSONCompactColumns", columns, NUMBERED) == {
        "user_id": [],
        "session_id": [],
    }


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
        batch_ids(body, fmt, COLUMNS, NUMBERED)


def test_new_ids_are_numbered_after_the_highest_and_stored_as_the_numbers_table_s_columns() -> None:
    # In the order of the batch's ids, whatever the order the lookup answers in.
    assert new_numbers(["c", "b", "x", "a"], ["a", "b", "c"], 7) == {"c": 8, "b": 9, "a": 10}
    assert new_numbers(["c"], [], 7) == {}
    new = {"user_id": {"u1": 1}, "session_id": {}, "other": {"x": 4, "y": 5}}
    head, *lines = store_sql("db", new).split("\n")
    assert head == (
        "INSERT INTO `db`.`_pipit_numbers` (column, id, number) FORMAT JSONCompactColumns"
    )
    blocks = [orjson.loads(b) for b in lines]
    assert blocks == [[["user_id"], ["u1"], [1]], [["other", "other"], ["x", "y"], [4, 5]]]
    assert store_sql("db", {"user_id": {}}) == ""


# Ids a format has to carry as they are: quotes, backslashes, a newline, a tab, non-ASCII, '';
# and an attacker's, who sends SQL or another bound value's placeholder as a user id.
ODD_IDS = [
    "o'brien",
    "back\\slash",
    'say "hi"',
    "new\nline",
    "tab\there",
    "ünïcødé ✓",
    "",
    "x') OR 1 = 1; DROP TABLE _pipit_numbers; --",
    "{ids_1:String}",
]


@pytest.mark.parametrize("odd", [ODD_IDS, [i for i in ODD_IDS if "\n" not in i]])
async def test_the_lookup_answers_the_ids_without_a_number_and_the_highest_number(
    embedded_warehouse: EmbeddedWarehouse, odd: list[str]
) -> None:
    """Both ways of binding the ids (a newline in one of them, or none) carry them as they are."""
    wh = embedded_warehouse
    db = wh.database

    async def unseen(column: str, ids: list[str]) -> list[str]:
        sql, params = unseen_query(db, {column: ids})
        answer = await wh.query(sql, params)
        return sorted(next(iter(answer.data[0].values())))

    async def highest(column: str) -> int:
        answer = await wh.query(highest_sql(db, column), {})
        return int(next(iter(answer.data[0].values())))

    assert await unseen("user_id", odd) == sorted(odd)
    assert await highest("user_id") == 0
    numbered = dict(zip(odd[::2], [3, 5, 9, 11], strict=False))
    await wh.execute(store_sql(db, {"user_id": numbered}))
    assert await unseen("user_id", [*odd, "new"]) == sorted(
        [i for i in odd if i not in numbered] + ["new"]
    )
    assert await highest("user_id") == max(numbered.values())
    assert await unseen("session_id", odd[:2]) == sorted(odd[:2])
    assert await highest("session_id") == 0
    # Both columns in one query, each answered for its own ids.
    sql, params = unseen_query(db, {"session_id": ["s", *odd[:1]], "user_id": [*odd, "n"]})
    both = list((await wh.query(sql, params)).data[0].values())
    assert [sorted(ids) for ids in both] == [
        sorted(["s", *odd[:1]]),
        sorted([i for i in odd if i not in numbered] + ["n"]),
    ]


def test_bound_values_are_escaped_as_clickhouse_connect_escapes_them() -> None:
    """The lookup's ids, and every other bound value on chDB, escaped as the HTTP path's
    client escapes them, so both engines read the same values."""
    for value in [*ODD_IDS, "\\'`\t\n\r\x00 plain", "\n".join(ODD_IDS), "é" * 3]:
        assert escaped_text(value) == escape_str(value)
