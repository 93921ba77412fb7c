"""The bulk file readers' fast paths answer as the Events API's row-by-row validation does: a
CSV batch checked a column at a time, and Parquet columns converted by Arrow (times as epoch
seconds for a DateTime column), give the very block the same rows give as JSON objects; and a
batch with an invalid row falls back to naming it. Expected rows are written here as JSON."""

from __future__ import annotations

import csv
import dataclasses
import io
import tracemalloc
from datetime import UTC, datetime, timedelta

import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from common.datasources import registry
from common.validation import RowValidator
from services.ingest import file_formats
from services.ingest.events_api import Events
from services.ingest.service import validated

DS = registry()["ab_test_events"]
COLUMNS = list(DS.column_names)


def _rows(count: int) -> list[dict]:
    start = datetime(2024, 3, 1)
    return [
        {
            "timestamp": (start + timedelta(seconds=61 * i)).strftime("%Y-%m-%d %H:%M:%S"),
            "user_id": f"u{i}",
            "test_id": "t",
            "variant": "AB"[i % 2],
            "event_type": "view",
            "conversion": i % 2,
            "revenue": i / 4,
            "session_id": f"s{i}",
            "device": "d",
            "country": "ES",
        }
        for i in range(count)
    ]


def _as_json(rows: list[dict]) -> Events:
    texts = [orjson.dumps(r) for r in rows]
    return Events(texts, [orjson.loads(t) for t in texts])


def _csv(rows: list[list]) -> io.BytesIO:
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerows([COLUMNS, *rows])
    return io.BytesIO(out.getvalue().encode())


def test_a_clean_csv_batch_checked_whole_gives_the_json_block():
    rows = _rows(300)
    [events] = file_formats.read_csv(
        _csv([[r[c] for c in COLUMNS] for r in rows]), DS, 1000, file_formats.Dialect()
    )
    assert events.columns is not None  # the column-at-a-time path
    validator = RowValidator(DS)
    assert validated(validator, events) == validated(validator, _as_json(rows))
    # The same events without their columns (the row-by-row path) agree too.
    assert validated(validator, dataclasses.replace(events, columns=None)) == validated(
        validator, _as_json(rows)
    )


def test_a_csv_batch_with_a_bad_row_names_it():
    rows = [[r[c] for c in COLUMNS] for r in _rows(5)]
    rows[3][5] = "7000"  # conversion is a UInt8
    [events] = file_formats.read_csv(_csv(rows), DS, 1000, file_formats.Dialect())
    block, reasons = validated(RowValidator(DS), events)
    assert block.rows == 4
    assert [(i, "conversion" in why and "7000" in why) for i, why in reasons] == [(3, True)]
    assert events.texts[3] == ",".join(map(str, rows[3])).encode()


def test_a_line_the_csv_reader_refuses_is_named_and_the_rest_read_on():
    """The reader goes on after a line it cannot parse (a field past csv's size limit),
    across batch boundaries: that line is an error naming it, every other row is read."""
    rows = [[r[c] for c in COLUMNS] for r in _rows(7)]
    rows[4][1] = "x" * (csv.field_size_limit() + 1)
    batches = list(file_formats.read_csv(_csv(rows), DS, 3, file_formats.Dialect()))
    read = [row for events in batches for row in events.texts]
    errors = [why for events in batches for why in events.errors.values()]
    assert len(read) == 7 and len(errors) == 1
    assert "line 6: not valid CSV" in errors[0]  # the header is line 1
    kept = [
        text for events in batches for i, text in enumerate(events.texts) if i not in events.errors
    ]
    assert kept == [",".join(map(str, row)).encode() for i, row in enumerate(rows) if i != 4]


def test_parquet_times_from_arrow_give_the_json_block():
    rows = _rows(200)
    table = pa.Table.from_pylist(
        [
            {
                **r,
                "timestamp": datetime.strptime(r["timestamp"], "%Y-%m-%d %H:%M:%S").replace(
                    tzinfo=UTC
                ),
            }
            for r in rows
        ]
    )
    out = io.BytesIO()
    pq.write_table(table, out)
    out.seek(0)
    [events] = file_formats.read_parquet(out, DS, 1000)
    assert events.columns is not None
    assert events.columns["timestamp"][:2] == [1709251200, 1709251261]  # epoch seconds
    validator = RowValidator(DS)
    assert validated(validator, events) == validated(validator, _as_json(rows))


@pytest.mark.slow  # half a million rows validated under tracemalloc
def test_a_parquet_file_is_read_in_bounded_memory(tmp_path):
    # A regression test for pre_buffer (on, pyarrow kept what it read of every row group
    # until the file closed): what is held while a Parquet file is read and validated (the
    # bytes read from the file, Python's, and Arrow's buffers) stays about a row group's worth,
    # far below the file's size, however many row groups have gone by.
    groups, per_group = 100, 5000
    rows = _rows(per_group)
    table = pa.Table.from_pylist(
        [{**r, "timestamp": datetime.strptime(r["timestamp"], "%Y-%m-%d %H:%M:%S")} for r in rows]
    )
    path = tmp_path / "big.parquet"
    with pq.ParquetWriter(path, table.schema, compression="none") as writer:
        for _ in range(groups):
            writer.write_table(table, row_group_size=per_group)
    size = path.stat().st_size
    del table
    validator = RowValidator(DS)
    held = []
    count = 0
    before = pa.total_allocated_bytes()
    tracemalloc.start()
    try:
        with path.open("rb") as raw:
            for events in file_formats.read_parquet(raw, DS, per_group):
                block, reasons = validated(validator, events)
                assert reasons == []
                count += block.rows
                del events, block
                held.append(
                    tracemalloc.get_traced_memory()[0] + pa.total_allocated_bytes() - before
                )
    finally:
        tracemalloc.stop()
    assert count == groups * per_group
    # Measured: flat at about a row group's worth with pre_buffer off; with it on, the whole
    # file's bytes from the first batch on, and growing.
    assert max(held) < size / 4, (max(held), size)
    assert held[-1] < held[0] + size / groups, held
