"""A file streamed in a request, handed from the event loop (which receives its chunks) to
the importer's worker thread (which reads it like any binary file), with at most `capacity`
bytes in between: when the reader falls behind, the writer waits, so gRPC's flow control
slows the sender instead of memory growing."""

from __future__ import annotations

import asyncio
import collections
import io
import threading
from typing import Any

from services.ingest.file_formats import FileError


class BodyPipe(io.RawIOBase):
    """`write` (on the event loop) then `end` or `fail`; `readinto` (on a worker thread)
    blocks until bytes or the end arrive. `stop` (either side) ends the reading for good:
    a blocked read returns the end, and later writes are dropped."""

    def __init__(self, capacity: int) -> None:
        super().__init__()
        self._capacity = capacity
        self._chunks: collections.deque[memoryview] = collections.deque()
        self._held = 0
        self._ended = False
        self._stopped = False
        self._error = ""
        self._lock = threading.Condition()
        self._loop = asyncio.get_running_loop()
        self._room = asyncio.Event()
        self.received = 0

    def readable(self) -> bool:
        return True

    async def write(self, data: bytes) -> bool:
        """Hands `data` on once there is room; False when the reader stopped."""
        while True:
            with self._lock:
                if self._stopped:
                    return False
                if self._held < self._capacity or not self._chunks:
                    if data:
                        self._chunks.append(memoryview(data))
                        self._held += len(data)
                        self.received += len(data)
                        self._lock.notify()
                    return True
                # Cleared under the lock, so a read that makes room after this sets it again.
                self._room.clear()
            await self._room.wait()

    def end(self) -> None:
        """The file is complete."""
        with self._lock:
            self._ended = True
            self._lock.notify()

    def fail(self, reason: str) -> None:
        """The file will not be complete: the reader's next read raises FileError(reason)."""
        with self._lock:
            self._error = reason
            self._ended = True
            self._lock.notify()

    def stop(self) -> None:
        """No more reading: wakes a blocked reader with the end, and the writer."""
        with self._lock:
            self._stopped = True
            self._chunks.clear()
            self._held = 0
            self._lock.notify()
        self._loop.call_soon_threadsafe(self._room.set)

    def readinto(self, buffer: Any) -> int:
        with self._lock:
            while not self._chunks and not self._ended and not self._stopped:
                self._lock.wait()
            if self._stopped:
                return 0
            if not self._chunks:
                if self._error:
                    raise FileError(self._error)
                return 0
            chunk = self._chunks[0]
            size = min(len(buffer), len(chunk))
            buffer[:size] = chunk[:size]
            if size == len(chunk):
                self._chunks.popleft()
            else:
                self._chunks[0] = chunk[size:]
            self._held -= size
        self._loop.call_soon_threadsafe(self._room.set)
        return size
