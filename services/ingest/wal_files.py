"""The write-ahead log's files: created private (they hold every accepted event), their
directory entries fsync'd, and the lock that lets one process at a time use a log."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from typing import BinaryIO

FILE_MODE = 0o600
DIRECTORY_MODE = 0o700
LOCK_FILE = "wal.lock"


class WalInUse(RuntimeError):
    """Another process holds the log: two writers (an ingest and a drain) would each
    insert its unflushed batches under tokens of their own, so the warehouse would
    count them twice."""


def lock(directory: Path) -> BinaryIO:
    """Holds `directory`'s log for this process until the returned file is closed (or
    the process ends, however it ends). Raises WalInUse when another holds it."""
    directory.mkdir(mode=DIRECTORY_MODE, parents=True, exist_ok=True)
    handle = open_private(directory / LOCK_FILE)
    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        raise WalInUse(f"another process is using the write-ahead log in {directory}") from None
    return handle


def open_private(path: Path) -> BinaryIO:
    """`path` for appending, created readable by this user only."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, FILE_MODE)
    return os.fdopen(fd, "ab")


def fsync_directory(directory: Path) -> None:
    """Makes the entries of `directory` (a file just made or renamed) survive a crash."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
