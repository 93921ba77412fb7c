"""Reading a CSV file (already inflated) a batch of rows at a time, as the Events API's
`Events`, so batches go through the Events API's own validator.

Arrow parses it: the file is cut into chunks of whole rows (about a batch's worth; where a
row ends is found without parsing, services/ingest/csv_chunks.py), each parsed by
`pyarrow.csv` with every column as text and converted a column at a time by Arrow's compute
kernels (services/ingest/csv_cells.py), so no Python code runs per row. Python's `csv`
module stays the reference for what a file means: a chunk Arrow would read differently, or
whose error it cannot name by its line (`_CsvFile.arrow_table` says which), is read by the
csv module instead, that chunk only; so is a stretch where a quote stands where CSV allows
none (the chunk's end cannot be found without parsing). Either way a batch is the same:
the same rows, the same values, the same reasons for the rows refused.

Blocking (pyarrow, the csv module): the importer calls it on a worker thread."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import IO, Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from common.datasources import Datasource
from services.ingest.csv_cells import MISSING, ColumnRules, column_rules
from services.ingest.csv_chunks import Lines, lines_in, row_end
from services.ingest.events_api import ColumnDicts, Events

# A chunk is about a batch's worth of the file (learnt from the rows per byte so far), within
# these bounds: small batches still parse a useful piece at once, wide rows never make a
# chunk larger than this (a batch then takes several).
_MIN_CHUNK = 64 * 1024
_MAX_CHUNK = 8 * 1024 * 1024


@dataclass(frozen=True)
class Dialect:
    """Tinybird's CSV dialect options."""

    delimiter: str = ","
    escapechar: str = ""


def _csv_line(row: list[str], delimiter: str) -> bytes:
    out = io.StringIO()
    csv.writer(out, delimiter=delimiter, lineterminator="").writerow(row)
    return out.getvalue().encode()


class _CsvTexts(Sequence[bytes]):
    """A batch's rows as CSV lines for the quarantine, each written only when asked for:
    only invalid rows ever are."""

    def __init__(self, rows: list[list[str] | None], delimiter: str) -> None:
        self._rows = rows
        self._delimiter = delimiter

    def __len__(self) -> int:
        return len(self._rows)

    def __getitem__(self, index: Any) -> Any:
        row = self._rows[index]
        return b"" if row is None else _csv_line(row, self._delimiter)


class _ArrowTexts(Sequence[bytes]):
    """As _CsvTexts, for a batch Arrow read: a row's cells are taken from its columns only
    when the row is asked for."""

    def __init__(self, columns: list[pa.Array], delimiter: str) -> None:
        self._columns = columns
        self._delimiter = delimiter

    def __len__(self) -> int:
        return len(self._columns[0]) if self._columns else 0

    def __getitem__(self, index: Any) -> Any:
        return _csv_line([column[index].as_py() for column in self._columns], self._delimiter)


def _clean_events(
    names: list[str], converted: list[list[Any]], texts: Sequence[bytes], scan: Sequence[bool]
) -> Events:
    # `in` finds the sentinel by identity (a _Missing equals nothing but itself), in C; only
    # in the columns that `scan` says may hold it.
    missing = any(MISSING in column for column, may in zip(converted, scan, strict=True) if may)
    values = ColumnDicts(names, converted, skip=MISSING)
    return Events(
        texts,  # type: ignore[arg-type]
        values,  # type: ignore[arg-type]
        columns=None if missing else dict(zip(names, converted, strict=True)),
    )


def _csv_events(
    rows: list[list[str] | None], errors: dict[int, str], order: list[ColumnRules], delimiter: str
) -> Events:
    """A batch Python's csv module read: a column at a time when every row is whole."""
    names = [rules.column.name for rules in order]
    width = len(order)
    # The checks over every row run as C loops (map), not generators.
    if not errors and all(map(width.__eq__, map(len, rows))):  # type: ignore[arg-type]
        transposed = zip(*rows, strict=True)  # type: ignore[misc]
        converted = [
            rules.whole(list(cells)) for rules, cells in zip(order, transposed, strict=True)
        ]
        return _clean_events(names, converted, _CsvTexts(rows, delimiter), [True] * width)
    values: list[Any] = []
    for index, row in enumerate(rows):
        if row is None or index in errors:
            values.append(None)
            continue
        if len(row) > width:
            errors[index] = f"{len(row)} fields, more than the {width} columns"
            values.append(None)
            continue
        value = {}
        for rules, cell in zip(order, row, strict=False):
            parsed = rules.cell(cell)
            if parsed is not MISSING:
                value[rules.column.name] = parsed
        values.append(value)
    return Events(_CsvTexts(rows, delimiter), values, errors)  # type: ignore[arg-type]


def _arrow_events(table: pa.Table, order: list[ColumnRules], delimiter: str) -> Events:
    """A batch Arrow read (every row whole: Arrow refuses a chunk otherwise)."""
    names = [rules.column.name for rules in order]
    columns = [column.combine_chunks() for column in table.columns]
    converted, scan = zip(
        *(rules.arrow(array) for rules, array in zip(order, columns, strict=True)), strict=True
    )
    return _clean_events(names, list(converted), _ArrowTexts(columns, delimiter), scan)


class _CsvFile:
    """One file's reading state: the bytes read and not yet parsed, the lines before them,
    the columns in the file's order."""

    def __init__(
        self, stream: IO[bytes], ds: Datasource, batch_rows: int, dialect: Dialect
    ) -> None:
        self.stream = stream
        self.batch_rows = batch_rows
        self.delimiter = dialect.delimiter or ","
        self.escapechar = dialect.escapechar
        self.by_name = {column.name: column for column in ds.columns}
        self.order = [column_rules(column) for column in ds.columns]
        self.buffer = b""
        self.eof = False
        self.line = 0
        self.chunk = _MIN_CHUNK * 4
        self.parsed_bytes = 0
        self.parsed_rows = 0

    def fill(self) -> None:
        """Reads until the buffer holds a chunk's bytes, or the file ends."""
        pieces = [self.buffer]
        held = len(self.buffer)
        while held < self.chunk and not self.eof:
            more = self.stream.read(self.chunk - held)
            if not more:
                self.eof = True
            pieces.append(more)
            held += len(more)
        self.buffer = b"".join(pieces)

    def learn(self, size: int, rows: int) -> None:
        """The next chunk's size from the bytes per row so far: about a batch."""
        self.parsed_bytes += size
        self.parsed_rows += rows
        per_row = self.parsed_bytes / max(self.parsed_rows, 1)
        self.chunk = int(min(max(per_row * self.batch_rows, _MIN_CHUNK), _MAX_CHUNK))

    def reader(self, lines: Lines) -> Any:
        return csv.reader(
            lines,
            delimiter=self.delimiter,
            escapechar=self.escapechar or None,
            doublequote=True,
            strict=False,
        )

    def take_header(self) -> None:
        """Takes the first row as the columns' order when every cell of it names a column
        (else the datasource's order stands and the row is data)."""
        cut = [i for i in (self.buffer.find(b"\n"), self.buffer.find(b"\r")) if i >= 0]
        first = self.buffer[: min(cut)] if cut else self.buffer
        try:
            row = next(self.reader(Lines(first, io.BytesIO(), 1)), [])
        except csv.Error:
            return
        if row and all(cell.strip() in self.by_name for cell in row):
            self.order = [column_rules(self.by_name[cell.strip()]) for cell in row]
            # Its line's end stays: the lines are counted from there as the csv module does.
            self.buffer = self.buffer[len(first) :]

    def arrow_table(self, chunk: bytes) -> pa.Table | None:
        """The rows of a chunk of whole rows as text columns, or None when Python's csv
        module must read it: a row with another number of fields than the columns (it
        names or settles it), a field past its size limit (it refuses that line by number),
        text that is not UTF-8 (it reads it with replacement characters), an escape
        character (Arrow's escapes are not quite Python's)."""
        if self.escapechar and self.escapechar.encode() in chunk:
            return None
        names = [f"c{i}" for i in range(len(self.order))]
        try:
            table = pacsv.read_csv(
                pa.BufferReader(chunk),
                # One thread: the importer already reads a batch while the last is inserted,
                # and Arrow's own threads only contended with that insert for the cores (and
                # held more memory).
                read_options=pacsv.ReadOptions(column_names=names, use_threads=False),
                parse_options=pacsv.ParseOptions(
                    delimiter=self.delimiter,
                    quote_char='"',
                    double_quote=True,
                    escape_char=False,
                    newlines_in_values=b'"' in chunk,
                    ignore_empty_lines=True,
                ),
                convert_options=pacsv.ConvertOptions(
                    column_types=dict.fromkeys(names, pa.string()),
                    strings_can_be_null=False,
                    quoted_strings_can_be_null=False,
                ),
            )
        except pa.ArrowInvalid:
            return None
        limit = csv.field_size_limit()
        for column in table.columns:
            if len(column) and pc.max(pc.binary_length(column)).as_py() > limit:
                return None
        return table

    def python_rows(self, until: int) -> Iterator[Events]:
        """Python's csv module reads the buffer's rows up to byte `until` of it (on past it
        to the end of a row that crosses it), a batch at a time, naming each line it
        cannot read; the buffer then holds what follows."""
        lines = Lines(self.buffer, self.stream, _MIN_CHUNK)
        reader = self.reader(lines)
        rows: list[list[str] | None] = []
        errors: dict[int, str] = {}
        read = 0
        while lines.taken < until:
            try:
                row = next(reader)
            except StopIteration:
                break
            except csv.Error as exc:
                # The reader goes on with the next line.
                errors[len(rows)] = f"line {self.line + reader.line_num}: not valid CSV ({exc})"
                rows.append(None)
            else:
                if not row or row == [""]:
                    continue
                rows.append(row)
            if len(rows) >= self.batch_rows:
                yield _csv_events(rows, errors, self.order, self.delimiter)
                rows, errors = [], {}
            read += 1
        if rows:
            yield _csv_events(rows, errors, self.order, self.delimiter)
        self.learn(lines.taken, read)
        self.line += lines.count
        self.buffer = lines.rest()
        self.eof = self.eof or lines.ended


def read_csv(
    stream: IO[bytes], ds: Datasource, batch_rows: int, dialect: Dialect
) -> Iterator[Events]:
    """The rows of a CSV file, with a header row (every cell a column name: the columns in
    its order) or without (the datasource's column order), in batches of at most
    `batch_rows`. Holds about a batch of the file at once (two while a batch is cut)."""
    file = _CsvFile(stream, ds, batch_rows, dialect)
    delimiter = ord(file.delimiter)
    file.fill()
    file.take_header()
    waiting: list[pa.Table] = []
    held = 0
    while True:
        file.fill()
        if not file.buffer:
            break
        end = row_end(file.buffer, delimiter, file.eof)
        table = None if end is None else file.arrow_table(file.buffer[:end])
        if table is None:
            # Rows go out in the file's order: what Arrow read before goes first.
            if held:
                yield _arrow_events(pa.concat_tables(waiting), file.order, file.delimiter)
                waiting, held = [], 0
            yield from file.python_rows(len(file.buffer) if end is None else end)
            continue
        assert end is not None
        file.line += lines_in(file.buffer[:end])
        file.learn(end, table.num_rows)
        file.buffer = file.buffer[end:]
        waiting.append(table)
        held += table.num_rows
        while held >= batch_rows:
            whole = pa.concat_tables(waiting)
            yield _arrow_events(whole.slice(0, batch_rows), file.order, file.delimiter)
            waiting, held = [whole.slice(batch_rows)], held - batch_rows
    if held:
        yield _arrow_events(pa.concat_tables(waiting), file.order, file.delimiter)
