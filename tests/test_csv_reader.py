"""The CSV reader reads with Arrow and answers as Python's csv module does: the same rows and
values, the same reasons for the rows refused, across chunk and batch boundaries, whatever
the file holds (quoted delimiters, quotes and line breaks, CRLF, blank lines, a quote CSV
does not allow, text that is not UTF-8, rows with too few or too many fields, cells Arrow
and Python might parse differently). Expected rows are written here as JSON objects, or,
for the cells whose meaning is the csv module's, read with the csv module alone."""

from __future__ import annotations

import csv
import gzip
import io
import random
from datetime import datetime, timedelta

import orjson
import pytest

from common.datasources import registry
from common.validation import RowValidator
from services.ingest import csv_reader, file_formats
from services.ingest.events_api import Events
from services.ingest.service import validated

DS = registry()["ab_test_events"]
COLUMNS = list(DS.column_names)
# Text a CSV writer must quote, or that Arrow and Python must both keep as it is.
_AWKWARD = [
    "a,b",
    'say "hi"',
    '"',
    "line\nbreak",
    "cr\r\nlf",
    "ñandú ☃",
    "",
    " spaced ",
    "\\N",
    "tab\there",
]


def _rows(count: int, seed: int) -> list[dict]:
    rng = random.Random(seed)
    start = datetime(2024, 3, 1)
    return [
        {
            "timestamp": (start + timedelta(seconds=61 * i)).strftime("%Y-%m-%d %H:%M:%S"),
            "user_id": rng.choice(_AWKWARD) + str(i),
            "test_id": rng.choice(_AWKWARD),
            "variant": "AB"[i % 2],
            "event_type": "view",
            "conversion": i % 2,
            "revenue": rng.randrange(100_000) / 100,
            "session_id": f"s{i}",
            "device": rng.choice(_AWKWARD),
            "country": "ES",
        }
        for i in range(count)
    ]


def _file(rows: list[dict], header: bool = True, terminator: str = "\n") -> bytes:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator=terminator)
    if header:
        writer.writerow(COLUMNS)
    writer.writerows([row[c] for c in COLUMNS] for row in rows)
    return out.getvalue().encode()


def _read(data: bytes, batch_rows: int) -> tuple[list[tuple], list[tuple[bytes, str]], list[str]]:
    """Every batch of the file validated: the stored rows, the (text, reason) of each refused
    row, and which reader read each batch."""
    validator = RowValidator(DS)
    stored: list[tuple] = []
    refused: list[tuple[bytes, str]] = []
    readers = []
    for events in file_formats.read_csv(io.BytesIO(data), DS, batch_rows, csv_reader.Dialect()):
        assert 0 < len(events) <= batch_rows
        readers.append("arrow" if isinstance(events.texts, csv_reader._ArrowTexts) else "csv")
        block, reasons = validated(validator, events)
        stored += _block_rows(block)
        refused += [(events.texts[i], why) for i, why in reasons]
    return stored, refused, readers


def _block_rows(block) -> list[tuple]:
    if not block.rows:
        return []
    return list(zip(*orjson.loads(block.body), strict=True))


def _expected(rows: list[dict]) -> list[tuple]:
    texts = [orjson.dumps(r) for r in rows]
    block, reasons = validated(RowValidator(DS), Events(texts, [orjson.loads(t) for t in texts]))
    assert reasons == []
    return _block_rows(block)


@pytest.mark.parametrize("terminator", ["\n", "\r\n"])
def test_awkward_text_across_chunks_is_read_by_arrow_as_written(terminator):
    rows = _rows(6000, seed=1)
    data = _file(rows, terminator=terminator)
    assert len(data) > 4 * 64 * 1024  # several chunks
    stored, refused, readers = _read(data, 500)
    assert refused == []
    assert stored == _expected(rows)
    assert set(readers) == {"arrow"}
    assert len(readers) == 12


def test_blank_lines_no_header_and_gzip():
    rows = _rows(3000, seed=2)
    body = (
        _file(rows, header=False)
        .replace(b"\n2024-03-02", b"\n\n\n2024-03-02")
        .replace(b"\n2024-03-03", b"\n\r\n2024-03-03")
    )
    stored, refused, readers = _read(gzip.compress(body), 400)
    assert refused == []
    assert stored == _expected(rows)
    assert set(readers) == {"arrow"}


def test_rows_arrow_cannot_read_are_read_by_the_csv_module_and_named():
    """A quote inside an unquoted field (text, to the csv module), a row with a field too
    many or too few, bytes that are not UTF-8: the chunk holding one is read by the csv
    module, the chunks around it by Arrow."""
    rows = _rows(20_000, seed=3)
    body = _file(rows, header=False)
    # Rows whose text needs no quoting: each is one line, written here by hand.
    plain = [
        i
        for i, row in enumerate(rows)
        if not any(mark in str(v) for v in row.values() for mark in ',"\n\r')
    ]
    literal, extra, short, latin1 = (plain[len(plain) * k // 8] for k in (1, 3, 5, 7))
    assert short - literal > 1000  # far apart: chunks of their own
    cells = {i: [str(rows[i][c]) for c in COLUMNS] for i in (literal, extra, short, latin1)}
    originals = {i: (",".join(cells[i]) + "\n").encode() for i in cells}
    cells[literal][7] = 'ab"c'  # session_id, unquoted: the quote is text
    cells[extra].append("more")
    cells[short].pop()
    replaced = {i: (",".join(cells[i]) + "\n").encode() for i in cells}
    replaced[latin1] = originals[latin1].replace(b",s", ",s\xe9".encode("latin-1"), 1)
    for i in cells:
        assert body.count(originals[i]) == 1
        body = body.replace(originals[i], replaced[i])
    stored, refused, readers = _read(body, 300)

    expected_rows = [dict(r) for r in rows]
    expected_rows[literal]["session_id"] = 'ab"c'
    latin1_cells = next(csv.reader([replaced[latin1].decode("utf-8", "replace")]))
    expected_rows[latin1] = {
        c: type(expected_rows[latin1][c])(v) for c, v in zip(COLUMNS, latin1_cells, strict=True)
    }
    assert "\ufffd" in "".join(latin1_cells)
    kept = [r for i, r in enumerate(expected_rows) if i not in (extra, short)]
    assert stored == _expected(kept)
    assert refused == [
        (replaced[extra].rstrip(b"\n"), "11 fields, more than the 10 columns"),
        (replaced[short].rstrip(b"\n"), "missing required field 'country'"),
    ]
    assert "arrow" in readers and "csv" in readers


def test_cells_arrow_converts_answer_as_the_csv_module_does(monkeypatch):
    """Cells whose numbers or times Arrow might read otherwise than Python, each in a batch
    of its own (a column is converted whole, so one odd cell would hide another): the
    batches Arrow read give what the same file gives read by the csv module alone."""
    odd = {
        "conversion": [
            *("0x10", "0X1f", "+5", "-0", "007", "1_0", " 5", "256", "-1", "9" * 25, "", "\\N"),
        ],
        "revenue": [
            *("1e3", ".5", "5.", "inf", "-inf", "nan", "NaN", "Infinity", "1_000.5", "0x1p3"),
            *("1e400", "+1.5", "1.5e", "", "\\N", " 2"),
        ],
        "timestamp": [
            *("2024-02-30 00:00:00", "2024-01-01 24:00:00", "2024-01-01 23:59:60"),
            *("1969-12-31 23:59:59", "1970-01-01 00:00:00", "2106-02-07 06:28:15"),
            *("2106-02-07 06:28:16", "2024-1-01 00:00:00", "2024-01-01T00:00:00"),
            *("2024-01-01 00:00:00Z", "0000-01-01 00:00:00", "", "2024-02-29 12:00:00"),
            *("2024-01-01 00:00+01", "2024-01-01 00:00:0Z", "2024-01-01 0:00:00 "),
        ],
    }
    rows = _rows(50 * sum(map(len, odd.values())), seed=4)
    at = 0
    for column, cells in odd.items():
        for cell in cells:
            rows[at][column] = cell
            at += 50
    data = _file(rows)
    by_arrow = _read(data, 50)
    assert by_arrow[2].count("arrow") == len(by_arrow[2])
    monkeypatch.setattr(csv_reader._CsvFile, "arrow_table", lambda _self, _chunk: None)
    by_csv = _read(data, 50)
    assert set(by_csv[2]) == {"csv"}
    assert by_arrow[:2] == by_csv[:2]
    assert len(by_arrow[1]) > 20  # the odd cells refused are a good part of them
