"""The writer's numbering of a batch's ids (chDB; common/id_numbers.py says what the numbers
are for).

chDB opens a data path in one process, and every write to it runs on one lane, one thread
(common/warehouse/embedded.py), so numbers are handed out without racing: before a batch is
inserted, its numbered columns' ids are read here (msgspec, which skips the other values
without making Python objects of them: a third of a full parse's time), the engine's own
lookup (`_pipit_number_of`) says which of them have no number yet (`unseen_query`), and those
are numbered in order of first sight after the column's highest and stored
(`_pipit_numbers`, whose view feeds the lookup in the same insert). The batch is then
inserted as it came: each row's hidden number columns are computed from the lookup, which
now holds every id of the batch. A batch retried after its answer was lost finds its ids
numbered and gets the same numbers; a crash between the two inserts leaves numbers that no
row holds, which costs nothing.

Nothing is kept in Python between batches. An earlier writer kept a map of every id it had
numbered (about 130 bytes an id: 0.6 GB, read in 5-9 s at the first write after each start,
at the 10 M-event benchmark's 4.7 million ids) beside the engine's lookup, which holds the
same ids; asking the lookup costs about 1 µs an id, a batch's ids in one query."""

from __future__ import annotations

import functools
from collections.abc import Collection, Mapping, Sequence
from typing import Any

import msgspec
import orjson

from common import id_numbers
from common.warehouse.base import WarehouseError

JSON_EACH_ROW = "JSONEachRow"
JSON_COMPACT_COLUMNS = "JSONCompactColumns"


def batch_ids(
    body: bytes, fmt: str, columns: Sequence[str], numbered: Sequence[str]
) -> dict[str, list[str]]:
    """Per numbered column, the distinct ids of `body` (`fmt`, of `columns`) in order of first
    sight; a null or missing id is '', as the engine stores it. A value the engine would
    store as some other text (a number, an object) is refused rather than numbered as text
    the engine might spell differently."""
    # dict keeps the order of first sight.
    return {
        column: list(dict.fromkeys(values))
        for column, values in batch_values(body, fmt, columns, numbered).items()
    }


def batch_values(
    body: bytes, fmt: str, columns: Sequence[str], wanted: Sequence[str]
) -> dict[str, list[str]]:
    """Per wanted column (each a String), its value in each row of `body` (`fmt`, of
    `columns`), in row order; a null or missing value is '', as the engine stores it."""
    # Both formats have one JSON document per line (blocks joined by newlines).
    docs = [line for line in body.split(b"\n") if line.strip()]
    if fmt == JSON_EACH_ROW:
        rows = _decode(_ids_decoder(tuple(wanted)), b"[" + b",".join(docs) + b"]")
        per_column = {column: [getattr(row, column) for row in rows] for column in wanted}
    elif fmt == JSON_COMPACT_COLUMNS:
        per_column = {column: [] for column in wanted}
        for doc in docs:
            # Each column as its JSON text: only the wanted ones are read into Python.
            values = _decode(_COLUMNS, doc)
            if len(values) != len(columns):
                raise WarehouseError(f"a JSONCompactColumns block must hold {len(columns)} columns")
            rows = len(_decode(_COLUMNS, values[0])) if values else 0
            for column in wanted:
                if column in columns:
                    per_column[column] += _decode(_IDS, values[columns.index(column)])
                else:
                    # Left out of the insert: its type's default, '' for a String.
                    per_column[column] += [""] * rows
    else:
        raise WarehouseError(f"unsupported insert format {fmt!r}")
    return {
        column: ["" if value is None else value for value in values]
        for column, values in per_column.items()
    }


def unseen_query(database: str, ids: Mapping[str, Sequence[str]]) -> tuple[str, dict[str, str]]:
    """The query, and its bound values, of each column's `ids` that have no number in it:
    one row, an array per column in the order of `ids` (each array in no particular order),
    so a batch asks once. Each column's ids are bound as one string: split at newlines where
    none holds one (a third of a JSON array's cost), else a JSON array."""
    selects, params = [], {}
    for i, (column, values) in enumerate(ids.items()):
        if any("\n" in value for value in values):
            bound = f"JSONExtract({{ids_{i}:String}}, 'Array(String)')"
            params[f"ids_{i}"] = orjson.dumps(list(values)).decode()
        else:
            bound = f"splitByChar('\\n', {{ids_{i}:String}})"
            params[f"ids_{i}"] = "\n".join(values)
        lookup = id_numbers.lookup(database, column, "id")
        selects.append(
            f"(SELECT groupArray(id) FROM (SELECT arrayJoin({bound}) AS id) WHERE {lookup} = 0)"  # noqa: S608
        )
    return "SELECT " + ", ".join(selects), params


def highest_sql(database: str, column: str) -> str:
    """`column`'s highest number (0 when none)."""
    return f"SELECT {id_numbers.highest(database, column)}"


def new_numbers(ids: Sequence[str], unseen: Collection[str], highest: int) -> dict[str, int]:
    """The `unseen` of `ids` numbered after `highest`, in the order of `ids`."""
    if not unseen:
        return {}
    unseen = set(unseen)
    fresh = [value for value in ids if value in unseen]
    return dict(zip(fresh, range(highest + 1, highest + 1 + len(fresh)), strict=True))


def store_sql(database: str, new: Mapping[str, Mapping[str, int]]) -> str:
    """The insert that stores each column's new ids and their numbers in `_pipit_numbers`
    (whose view feeds the lookup), or "" when there are none."""
    rows = b"\n".join(
        orjson.dumps([[column] * len(ids), list(ids), list(ids.values())])
        for column, ids in new.items()
        if ids
    )
    if not rows:
        return ""
    return (
        f"INSERT INTO `{database}`.`{id_numbers.NUMBERS}` (column, id, number) "
        f"FORMAT JSONCompactColumns\n{rows.decode()}"
    )


_COLUMNS = msgspec.json.Decoder(list[msgspec.Raw])
_IDS = msgspec.json.Decoder(list[str | None])


@functools.cache
def _ids_decoder(numbered: tuple[str, ...]) -> msgspec.json.Decoder:
    """Reads the `numbered` fields of JSONEachRow objects and skips the others (a missing
    one is '', as the engine stores it)."""
    ids = msgspec.defstruct("Ids", [(column, str | None, "") for column in numbered])
    return msgspec.json.Decoder(list[ids])


def _decode(decoder: msgspec.json.Decoder, text: bytes) -> Any:
    try:
        return decoder.decode(text)
    except msgspec.ValidationError as exc:
        # Any JSON value but a string or null the engine stores as its text, which the
        # parse no longer has: refused rather than numbered as some other text.
        raise WarehouseError(f"the batch's ids cannot be numbered: {exc}") from exc
    except msgspec.DecodeError as exc:
        raise WarehouseError(f"the batch is not the JSON its format says: {exc}") from exc
