"""A batch of rows encoded for the warehouse: one body, its row count and its format.

Validated batches are encoded a whole batch at a time as ClickHouse's
JSONCompactColumns (one JSON array per column: a single `orjson.dumps` per batch, and
the cheapest JSON format for the engine to parse). Several blocks of one table and one
format are inserted together by joining their bodies with newlines, which both formats
accept. JSONEachRow lines remain readable: the write-ahead log written before blocks
existed holds them."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import orjson

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
    def from_columns(cls, columns: Sequence[Sequence[Any]], rows: int) -> Block:
        """One list of values per column, each `rows` long."""
        return cls(orjson.dumps(columns) if rows else b"", rows, JSON_COMPACT_COLUMNS)

    def lines(self) -> list[bytes]:
        """The rows of a JSONEachRow block, one line each."""
        if self.fmt != JSON_EACH_ROW:
            raise ValueError(f"a {self.fmt} block has no lines")
        return self.body.split(b"\n") if self.rows else []


def join(blocks: Sequence[Block]) -> bytes:
    """One insert body for blocks of the same format."""
    return b"\n".join(block.body for block in blocks if block.rows)
