"""A writer lock per index directory: ``fcntl.flock`` on ``DIR/.lock``.

The operating system releases the lock when its holder exits, even on ``kill -9``, so a
crashed writer never leaves a stale lock behind.
"""

from __future__ import annotations

import os
from pathlib import Path
from types import TracebackType

from m2v_search.index.errors import IndexLockedError

LOCK_NAME = ".lock"


_REGISTRY: dict[Path, "WriterLock"] = {}


class WriterLock:
    """Exclusive, non-blocking writer lock between processes; re-entrant within one process.

    Use :meth:`for_directory` to get the process-wide lock object of a directory (two objects
    on the same file would refuse each other, since flock locks belong to open files).
    """

    @classmethod
    def for_directory(cls, directory: str | os.PathLike[str]) -> WriterLock:
        key = Path(directory).resolve()
        if key not in _REGISTRY:
            _REGISTRY[key] = cls(directory)
        return _REGISTRY[key]

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.directory = Path(directory)
        self.path = self.directory / LOCK_NAME
        self._fd: int | None = None
        self._depth = 0

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self) -> WriterLock:
        import fcntl

        if self._fd is not None:
            self._depth += 1
            return self
        self.directory.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_holder(fd)
            os.close(fd)
            raise IndexLockedError(
                f"{self.directory} is locked by another writer{holder}; wait for it to finish"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd
        self._depth = 1
        return self

    def release(self) -> None:
        import fcntl

        if self._fd is None:
            return
        self._depth -= 1
        if self._depth > 0:
            return
        fcntl.flock(self._fd, fcntl.LOCK_UN)
        os.close(self._fd)
        self._fd = None

    def __enter__(self) -> WriterLock:
        return self.acquire()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.release()


def _read_holder(fd: int) -> str:
    try:
        text = os.pread(fd, 32, 0).decode().strip()
    except OSError:
        return ""
    return f" (pid {text})" if text.isdigit() else ""
