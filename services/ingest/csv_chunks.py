"""Cutting a CSV file's bytes into whole rows without parsing them: where the last whole
row of a piece ends, and the lines of a file as Python's csv module reads them."""

from __future__ import annotations

from collections import deque
from typing import IO

import numpy as np

_QUOTE = ord('"')
_LF, _CR = ord("\n"), ord("\r")


def lines_in(data: bytes) -> int:
    """Lines as Python's csv reader counts them (universal newlines: \\n, \\r\\n, \\r)."""
    lines = data.count(b"\n")
    # Most files have no \r: one pass, not three (this runs over every byte of a file).
    if b"\r" not in data:
        return lines
    return lines + data.count(b"\r") - data.count(b"\r\n")


def row_end(buf: bytes, delimiter: int, at_eof: bool) -> int | None:
    """Where the last whole row of `buf` ends: after a newline outside quotes (or, at the
    file's end, the end). None when no row ends in it, or when a quote stands where a CSV
    file may not have one (inside an unquoted field, or text right after a closing quote):
    Python's csv reads such a quote as text, so counting quotes would not tell where a
    quoted field ends."""
    if _QUOTE not in buf:
        end = len(buf) if at_eof else buf.rfind(b"\n") + 1
        return end or None
    data = np.frombuffer(buf, np.uint8)
    quotes = np.flatnonzero(data == _QUOTE)
    if at_eof and len(quotes) % 2 == 0:
        end = len(buf)
    else:
        newlines = np.flatnonzero(data == _LF)
        # A newline with an even number of quotes before it is outside every quoted field.
        outside = newlines[np.searchsorted(quotes, newlines) % 2 == 0]
        if not len(outside):
            return None
        end = int(outside[-1]) + 1
    quotes = quotes[quotes < end]
    opening, closing = quotes[0::2], quotes[1::2]
    before = data[np.maximum(opening - 1, 0)]
    # An opening quote starts a field (or is the second of a doubled quote); a closing one
    # ends it (or is the first of a doubled quote).
    starts = (opening == 0) | np.isin(before, (delimiter, _LF, _CR, _QUOTE))
    after = data[np.minimum(closing + 1, len(buf) - 1)]
    ends = (closing == len(buf) - 1) | np.isin(after, (delimiter, _LF, _CR, _QUOTE))
    if not (starts.all() and ends.all()):
        return None
    return end


class Lines:
    """The lines of the file from `head` on, as TextIOWrapper(newline="") gives them to the
    csv module (split at \\n, \\r\\n and \\r, decoded with replacement characters), reading
    on from `stream` as they are taken; `taken` bytes and `count` lines handed out."""

    def __init__(self, head: bytes, stream: IO[bytes], piece: int) -> None:
        self._buffer = head
        self._stream = stream
        self._piece = piece
        self._ready: deque[bytes] = deque()
        self._eof = False
        self.taken = 0
        self.count = 0

    @property
    def ended(self) -> bool:
        """Whether the file's end was read."""
        return self._eof

    def __iter__(self) -> Lines:
        return self

    def __next__(self) -> str:
        while not self._ready:
            if not self._split():
                raise StopIteration
        line = self._ready.popleft()
        self.taken += len(line)
        self.count += 1
        return line.decode("utf-8", "replace")

    def _split(self) -> bool:
        if self._buffer:
            lines = self._buffer.splitlines(keepends=True)
            last = lines[-1]
            # A last line without its end (or a \r that a \n may follow) waits for more.
            if not self._eof and (last.endswith(b"\r") or not last.endswith(b"\n")):
                self._buffer = lines.pop()
            else:
                self._buffer = b""
            if lines:
                self._ready.extend(lines)
                return True
        if self._eof:
            return False
        more = self._stream.read(self._piece)
        if more:
            self._buffer += more
        else:
            self._eof = True
        return True

    def rest(self) -> bytes:
        """What was read from the file and not handed out."""
        return b"".join(self._ready) + self._buffer
