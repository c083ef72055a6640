"""A writer lock per index directory: ``fcntl.flock`` on ``DIR/.lock``.

The operating system releases the lock when its holder exits, even on ``kill -9``, so a
crashed writer never leaves a stale lock behind. The lock file is opened with ``O_NOFOLLOW``
and must be a plain file with one link: a symbolic link, hard link, FIFO or device planted as
``.lock`` is refused, never written through.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path
from types import TracebackType

from m2v_search.index.errors import IndexLockedError, UnsafeFileError

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
        fd = open_plain_file(self.path, os.O_RDWR | os.O_CREAT)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_holder(fd)
            os.close(fd)
            raise IndexLockedError(
                f"{self.directory} is locked by another writer{holder}; wait for it to finish"
            ) from None
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        except OSError:  # the pid is only a hint for the message of a refused writer
            pass
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


def open_plain_file(path: Path, flags: int, mode: int = 0o644) -> int:
    """``os.open`` that never follows a symbolic link and only returns a plain file with one link.

    Args:
        path: the file to open.
        flags: ``os.O_*`` flags; ``O_NOFOLLOW``, ``O_NONBLOCK`` and ``O_CLOEXEC`` are added.
        mode: permissions of a file created by ``O_CREAT``.

    Returns:
        The open file descriptor.

    Raises:
        UnsafeFileError: ``path`` is a symbolic link, a hard link to another file, or not a
            regular file (a FIFO, a device, a directory).
    """
    try:
        fd = os.open(path, flags | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, mode)
    except OSError as error:
        if error.errno == errno.ELOOP or error.errno == errno.EEXIST and os.path.islink(path):
            raise UnsafeFileError(f"{path} is a symbolic link; refusing to follow it (remove it: an index "
                                  "never makes links)") from None
        if error.errno in (errno.EISDIR, errno.ENXIO):
            raise UnsafeFileError(f"{path} is not a plain file; remove it") from None
        raise
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode) or info.st_nlink != 1:
        os.close(fd)
        kind = "has other hard links" if stat.S_ISREG(info.st_mode) else "is not a plain file"
        raise UnsafeFileError(f"{path} {kind}; refusing to write to it (remove it)")
    return fd


def _read_holder(fd: int) -> str:
    try:
        text = os.pread(fd, 32, 0).decode().strip()
    except OSError:
        return ""
    return f" (pid {text})" if text.isdigit() else ""
