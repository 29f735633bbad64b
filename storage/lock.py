"""Who has a database file open: every `Database` holds a shared lock on `<file>.lock` while open, so `restore`
can tell that a bot (or any other paperbot process) is using the file by failing to take it exclusively."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from storage.files import FILE_MODE


class FileInUse(Exception):
    """Another process has the database open."""


def lock_path(database: str | Path) -> Path:
    return Path(f"{database}.lock")


class DatabaseLock:
    """An flock on `<database>.lock`: shared for users of the file, exclusive for replacing it."""

    def __init__(self, database: str | Path, *, exclusive: bool = False) -> None:
        self._path = lock_path(database)
        self._exclusive = exclusive
        self._fd: int | None = None

    def acquire(self) -> None:
        """Take the lock without waiting; FileInUse when another process holds it in a conflicting way."""
        fd = os.open(self._path, os.O_CREAT | os.O_RDWR, FILE_MODE)
        try:
            fcntl.flock(fd, (fcntl.LOCK_EX if self._exclusive else fcntl.LOCK_SH) | fcntl.LOCK_NB)
        except BlockingIOError as error:
            os.close(fd)
            raise FileInUse(str(self._path)) from error
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing drops the flock
            self._fd = None

    def __enter__(self) -> DatabaseLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
