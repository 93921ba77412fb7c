"""Samples the size of a write-ahead log directory's segment files from a thread of its
own, continuously, so that a bound is checked between the event loop's steps too."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from types import TracebackType

from services.ingest.wal import SUFFIX


def segment_bytes(directory: Path) -> tuple[int, int]:
    """(bytes, files) of the segments in `directory` now."""
    total = files = 0
    try:
        entries = list(os.scandir(directory))
    except FileNotFoundError:
        return 0, 0
    for entry in entries:
        if entry.name.endswith(SUFFIX):
            try:
                total += entry.stat().st_size
            except FileNotFoundError:  # deleted between the listing and the stat
                continue
            files += 1
    return total, files


class DiskSampler:
    """`with DiskSampler(path) as sampler:` (or `start()` … `stop()`), then
    `sampler.largest`, `sampler.most_files`, `sampler.samples`."""

    def __init__(self, directory: Path, interval: float = 0.002) -> None:
        self.directory = directory
        self.interval = interval
        self.largest = 0
        self.most_files = 0
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="wal-disk-sampler", daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            size, files = segment_bytes(self.directory)
            self.largest = max(self.largest, size)
            self.most_files = max(self.most_files, files)
            self.samples += 1
            time.sleep(self.interval)

    def start(self) -> DiskSampler:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def __enter__(self) -> DiskSampler:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
