"""A batch of rows encoded for the warehouse: one body, its row count and its format.

Validated batches are encoded a whole batch at a time as ClickHouse's
JSONCompactColumns (one JSON array per column: a single `orjson.dumps` per batch, and
the cheapest JSON format for the engine to parse). Several blocks of one table and one
format are inserted together by joining their bodies with newlines, which both formats
accept. JSONEachRow lines remain readable: the write-ahead log written before blocks
existed holds them.

A batch in which some event left out a field whose column has a DEFAULT expression (the
validator's OMITTED) is encoded as JSONEachRow instead, each row without its omitted keys:
ClickHouse computes a column's DEFAULT only for a field a row leaves out (a null in
JSONCompactColumns becomes the type's zero, not the DEFAULT), and a row format is the only
one that can leave a field out of one row."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson

from common.validation import OMITTED

JSON_EACH_ROW = "JSONEachRow"
JSON_COMPACT_COLUMNS = "JSONCompactColumns"
FORMATS = frozenset({JSON_EACH_ROW, JSON_COMPACT_COLUMNS})


@dataclass(frozen=True, slots=True)
class Block:
    """Encoded rows of one table."""

    body: bytes
    rows: int
    fmt: str

    @property
    def size(self) -> int:
        """Bytes it holds in memory and in the log (its body and a separator)."""
        return len(self.body) + 1

    @classmethod
    def from_lines(cls, lines: Sequence[bytes]) -> Block:
        """JSONEachRow lines, one JSON object per row."""
        return cls(b"\n".join(lines), len(lines), JSON_EACH_ROW)

    @classmethod
    def from_columns(
        cls, columns: Sequence[Sequence[Any]], rows: int, names: Sequence[str] = ()
    ) -> Block:
        """One list of values per column, each `rows` long; `names` are the columns',
        needed when a value may be OMITTED."""
        if not rows:
            return cls(b"", 0, JSON_COMPACT_COLUMNS)
        try:
            return cls(orjson.dumps(columns), rows, JSON_COMPACT_COLUMNS)
        except orjson.JSONEncodeError:
            if not names or not any(OMITTED in column for column in columns):
                raise
        return cls.from_lines(
            [
                orjson.dumps(
                    {
                        name: value
                        for name, value in zip(names, row, strict=True)
                        if value is not OMITTED
                    }
                )
                for row in zip(*columns, strict=True)
            ]
        )

    def lines(self) -> list[bytes]:
        """The rows of a JSONEachRow block, one line each."""
        if self.fmt != JSON_EACH_ROW:
            raise ValueError(f"a {self.fmt} block has no lines")
        return self.body.split(b"\n") if self.rows else []


def join(blocks: Sequence[Block]) -> bytes:
    """One insert body for blocks of the same format."""
    return b"\n".join(block.body for block in blocks if block.rows)


def quarantine_block(bad: Sequence[tuple[str, str]]) -> Block:
    """Quarantine rows (the raw text and the reason of each), arriving now."""
    arrived = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]
    return Block.from_columns(
        [[raw for raw, _ in bad], [error for _, error in bad], [arrived] * len(bad)],
        len(bad),
    )


def row_texts(block: Block, columns: Sequence[str]) -> list[str]:
    """Each row of `block` as a JSON object: how a row the warehouse refused is kept in
    quarantine."""
    if block.fmt == JSON_EACH_ROW:
        return [line.decode("utf-8", "replace") for line in block.lines()]
    values = orjson.loads(block.body) if block.rows else []
    return [
        orjson.dumps(dict(zip(columns, row, strict=True))).decode()
        for row in zip(*values, strict=True)
    ]
