"""Where a batch goes when the warehouse refuses it for good (an unknown column or table,
a value its column cannot hold: common/warehouse/failures.py), so that it neither stays
in the write-ahead log forever, holding up every later row of its table, nor is lost.

Its rows go to the datasource's quarantine table, each row's JSON beside the reason, as
rows that fail validation do; under a deduplication token made from the batch's own, so a
replay after a crash (the same batch under the same token, refused the same way) does
not quarantine them twice. When the quarantine table refuses them too (the batch was a
quarantine batch, or the table is gone), the batch is written whole to a file in the
dead-letter directory beside the log (fsync'd, readable by this user only: it holds
events) for an operator to read. Either way the reason is logged and the rows counted
(`pipit_ingest_set_aside_rows_total`) before the log lets the batch go."""

from __future__ import annotations

import asyncio
import hashlib
import os
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path

import orjson
import structlog

from common.datasources import QUARANTINE_COLUMNS, QUARANTINE_SUFFIX
from common.warehouse.base import WarehouseError
from services.ingest import metrics
from services.ingest.blocks import Block, quarantine_block, row_texts

log = structlog.get_logger("dead_letter")

DIRECTORY = "dead-letter"
_FILE_MODE = 0o600
_DIRECTORY_MODE = 0o700
# A reason is the engine's message; its stack trace (if any) helps nobody reading quarantine.
_REASON_CHARS = 1000

Insert = Callable[[str, Sequence[str], Sequence[Block], str], Awaitable[None]]
"""Inserts blocks into a table under a deduplication token, retrying what may pass and
raising WarehouseError for what cannot."""


def reason_of(error: BaseException) -> str:
    """The engine's message without its stack trace, short enough to store per row."""
    text = str(error).split(" Stack trace", 1)[0].strip()
    return text[:_REASON_CHARS]


def dead_letter_directory(wal_directory: Path) -> Path:
    """Beside the log's segments, on the same volume, so it outlives a restart."""
    return wal_directory / DIRECTORY


class DeadLetters:
    """Sets aside batches the warehouse refuses for good."""

    def __init__(self, insert: Insert, directory: Path) -> None:
        self._insert = insert
        self.directory = directory

    async def set_aside(
        self,
        table: str,
        columns: Sequence[str],
        blocks: Sequence[Block],
        token: str,
        error: WarehouseError,
    ) -> None:
        """Quarantines the rows of `blocks` (refused as `error`), else files them in the
        dead-letter directory. Returns once they are in one or the other."""
        reason = reason_of(error)
        rows = sum(block.rows for block in blocks)
        log.error(
            "the warehouse refused a batch for good; setting it aside",
            table=table,
            rows=rows,
            reason=reason,
        )
        if not table.endswith(QUARANTINE_SUFFIX):
            texts = [text for block in blocks for text in row_texts(block, columns)]
            refused = f"the warehouse refused this row's batch: {reason}"
            quarantined = quarantine_block([(text, refused) for text in texts])
            try:
                await self._insert(
                    table + QUARANTINE_SUFFIX, QUARANTINE_COLUMNS, [quarantined], f"{token}:q"
                )
            except WarehouseError as again:
                reason = f"{reason}; its quarantine table refused it too: {reason_of(again)}"
            else:
                metrics.SET_ASIDE.labels(table, "quarantine").inc(rows)
                return
        path = await asyncio.to_thread(self._write, table, columns, blocks, token, reason)
        metrics.SET_ASIDE.labels(table, "dead_letter").inc(rows)
        log.error("batch written to the dead-letter directory", table=table, path=str(path))

    def _write(
        self,
        table: str,
        columns: Sequence[str],
        blocks: Sequence[Block],
        token: str,
        reason: str,
    ) -> Path:
        # Named for its token: a replay of the same batch writes the same file again.
        name = f"{table}-{hashlib.sha256(token.encode()).hexdigest()[:32]}.json"
        path = self.directory / name
        staged = path.with_suffix(".tmp")
        self.directory.mkdir(mode=_DIRECTORY_MODE, parents=True, exist_ok=True)
        header = {
            "table": table,
            "columns": list(columns),
            "token": token,
            "reason": reason,
            "set_aside_at": datetime.now(UTC).isoformat(),
            "blocks": [{"format": b.fmt, "rows": b.rows, "bytes": len(b.body)} for b in blocks],
        }
        fd = os.open(staged, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, _FILE_MODE)
        with os.fdopen(fd, "wb") as f:
            # A JSON header line, then each block's body on its own line.
            f.write(orjson.dumps(header) + b"\n")
            for block in blocks:
                f.write(block.body + b"\n")
            f.flush()
            os.fsync(f.fileno())
        staged.replace(path)
        directory = os.open(self.directory, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)
        return path
