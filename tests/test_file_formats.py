"""The bulk file readers' fast paths answer as the Events API's row-by-row validation does: a
CSV batch checked a column at a time, and Parquet columns converted by Arrow (times as epoch
seconds for a DateTime column), give the very block the same rows give as JSON objects; and a
batch with an invalid row falls back to naming it. Expected rows are written here as JSON."""

from __future__ import annotations

import csv
import dataclasses
import io
from datetime import UTC, datetime, timedelta

import orjson
import pyarrow as pa
import pyarrow.parquet as pq

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
