"""The writer's numbering of a batch's ids (chDB; common/id_numbers.py says what the numbers
are for).

chDB opens a data path in one process, and every write to it runs on one lane, one thread
(common/warehouse/embedded.py), so numbers are handed out from a Python map of each numbered
column's ids, without racing and without asking the engine: the batch's numbered columns are
read here (msgspec, which skips the other values without making Python objects of them: a
third of a full parse's time), its new ids numbered in order of first sight after the
column's highest number, and the batch's body given its number columns, so the engine reads
it once, as it reads any batch. The new (column, id, number) rows are stored before the
batch that uses them (`_pipit_numbers`, whose view feeds the engine's own lookup for
`INSERT … SELECT`), and only then kept in the map: a batch retried after its answer was lost finds
its ids numbered and gets the same numbers, and a crash between the two inserts leaves
numbers that no row holds, which costs nothing. A column's map is read from `_pipit_numbers`
when a batch first needs it, so a process that only reads never holds one (about 130 bytes
per id: 0.6 GB for the 4.7 million ids of the 10 M-event benchmark, read in about 5 s); when
numbers may have been stored around it (SQL numbering a table's older rows, a failed insert
of new ones), only those after its highest are read again: every number is handed out after
its column's highest, wherever that happens."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import compress, repeat
from operator import is_
from typing import Any

import msgspec
import orjson

from common import id_numbers
from common.warehouse.base import WarehouseError

JSON_EACH_ROW = "JSONEachRow"
JSON_COMPACT_COLUMNS = "JSONCompactColumns"


@dataclass(frozen=True, slots=True)
class NumberedBatch:
    """A batch with its number columns, and the numbers it handed out."""

    body: bytes
    """The batch in its own format, each row with its `_pipit_<column>_number`s (after its
    columns in JSONCompactColumns, as the last keys of each row in JSONEachRow)."""
    new: dict[str, dict[str, int]]
    """Per column, the ids first seen in this batch and the numbers they were given."""

    def new_rows(self) -> bytes:
        """The new numbers as `_pipit_numbers` rows, JSONCompactColumns (column, id, number),
        or b"" when there are none."""
        return b"\n".join(
            orjson.dumps([[column] * len(ids), list(ids), list(ids.values())])
            for column, ids in self.new.items()
            if ids
        )


class Numbering:
    """One database's ids and their numbers, per numbered column. Used on the writer's
    thread only."""

    def __init__(self) -> None:
        self._numbers: dict[str, dict[str, int]] = {}
        self._last: dict[str, int] = {}
        self._behind: set[str] = set()

    def read_after(self, column: str) -> int | None:
        """None when `column`'s map is current; else the highest number it holds (0 when
        none), after which the kept numbers must be read (`load`) before a batch is numbered.
        Numbers only ever grow (each after its column's highest, wherever it is handed out),
        so those after it are all the map lacks."""
        if column in self._numbers and column not in self._behind:
            return None
        return self._last.get(column, 0)

    def load(self, column: str, kept: bytes) -> None:
        """Adds `column`'s numbers after `read_after`, as `_pipit_numbers` holds them
        (id_numbers.kept_sql, JSONCompactColumns: no columns when it holds none)."""
        ids, numbers = orjson.loads(kept or b"[]") or ([], [])
        self._numbers.setdefault(column, {}).update(zip(ids, numbers, strict=True))
        self._last[column] = max(numbers, default=self._last.get(column, 0))
        self._behind.discard(column)

    def fall_behind(self) -> None:
        """Numbers may have been stored other than through `keep` (SQL numbered ids, or an
        insert of new numbers failed after storing some): each column reads them before its
        next batch."""
        self._behind.update(self._numbers)

    def number(
        self, body: bytes, fmt: str, columns: Sequence[str], numbered: Sequence[str]
    ) -> NumberedBatch:
        """`body` (`fmt`, of `columns`) with the numbers of its `numbered` columns' ids
        (each `load`ed before); the map is left as it was until `keep`."""
        # Both formats have one JSON document per line (blocks joined by newlines).
        docs = [line for line in body.split(b"\n") if line.strip()]
        if fmt == JSON_EACH_ROW:
            return self._number_rows(docs, numbered)
        if fmt == JSON_COMPACT_COLUMNS:
            return self._number_columns(docs, columns, numbered)
        raise WarehouseError(f"unsupported insert format {fmt!r}")

    def keep(self, batch: NumberedBatch) -> None:
        """Adds the batch's new numbers to the map, once they are stored."""
        for column, ids in batch.new.items():
            if ids:
                self._numbers[column].update(ids)
                self._last[column] = max(self._last[column], *ids.values())

    def _number_rows(self, lines: list[bytes], numbered: Sequence[str]) -> NumberedBatch:
        rows = _decode(_ids_decoder(tuple(numbered)), b"[" + b",".join(lines) + b"]")
        new: dict[str, dict[str, int]] = {}
        per_column = [
            self._numbers_of(column, [getattr(row, column) for row in rows], new)
            for column in numbered
        ]
        keys = [id_numbers.column_name(column).encode() for column in numbered]
        # Each row's line with its numbers as its last keys: the line is not encoded again.
        after = b"%b" + b"".join(b',"' + key + b'":%d' for key in keys) + b"}"
        alone = b"%b" + b",".join(b'"' + key + b'":%d' for key in keys) + b"}"
        body = []
        for line, numbers in zip(lines, zip(*per_column, strict=True), strict=True):
            head = line.rstrip()[:-1]
            # `{` ends the head of an empty object only: any value ends otherwise.
            template = alone if head.rstrip()[-1:] == b"{" else after
            body.append(template % (head, *numbers))
        return NumberedBatch(b"\n".join(body), new)

    def _number_columns(
        self, docs: list[bytes], columns: Sequence[str], numbered: Sequence[str]
    ) -> NumberedBatch:
        new: dict[str, dict[str, int]] = {}
        out = []
        for doc in docs:
            # Each column as its JSON text: only the numbered ones are read into Python.
            values = _decode(_COLUMNS, doc)
            if len(values) != len(columns):
                raise WarehouseError(f"a JSONCompactColumns block must hold {len(columns)} columns")
            per_column = []
            for column in numbered:
                if column in columns:
                    ids = _decode(_IDS, values[columns.index(column)])
                else:  # left out of the insert: its type's default, '' for a String
                    ids = [""] * len(_decode(_COLUMNS, values[0])) if values else []
                per_column.append(self._numbers_of(column, ids, new))
            # The block's array of columns, with the number columns after its own (pieces
            # joined once: a view of the block is not a copy).
            out += [b"\n"] if out else []
            out += [memoryview(doc)[: len(doc.rstrip()) - 1]]
            out += [b"," + orjson.dumps(numbers) for numbers in per_column] + [b"]"]
        return NumberedBatch(b"".join(out), new)

    def _numbers_of(self, column: str, ids: list, new: dict[str, dict[str, int]]) -> list[int]:
        """Each id's number, the new ones numbered in `new` (shared by the blocks of one
        batch, so a block sees the ids an earlier one numbered)."""
        if None in ids:  # a null is stored as ''
            ids = ["" if value is None else value for value in ids]
        numbers = list(map(self._numbers[column].get, ids))
        if None not in numbers:
            return numbers
        fresh = new.setdefault(column, {})
        # The ids without a number, once each in order of first sight (dict keeps order).
        unseen = [
            value
            for value in dict.fromkeys(compress(ids, map(is_, numbers, repeat(None))))
            if value not in fresh
        ]
        last = self._last[column] + len(fresh)
        fresh.update(zip(unseen, range(last + 1, last + 1 + len(unseen)), strict=True))
        return [number or fresh[value] for number, value in zip(numbers, ids, strict=True)]


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
