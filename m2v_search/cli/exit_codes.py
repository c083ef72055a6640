"""Exit codes of ``m2v`` and ``m2v-index``, derived from the error hierarchy in one table.

An error's code is the code of the first class in its method resolution order that the table
names, so a subclass gets its base class's code unless the table says otherwise (an
``IndexNotFoundError`` is also a ``FileNotFoundError``, but is listed itself). New error classes
need only the right base class (``m2v_search.errors``) to exit with the right code.

=====  ================================================================================
code   meaning
=====  ================================================================================
0      success
1      unexpected error (a bug): one line on stderr; ``--debug`` or ``M2V_DEBUG=1`` shows
       the traceback
2      usage: bad arguments, no index at the path given, or an output directory that is a
       file, or not empty and not an index (without ``--force``)
3      bad input: a corpus line, query, filter, metadata value or input file is malformed
       or missing
4      corrupt or unsafe index: a file is missing, truncated or fails its checksum, the
       manifest is malformed, or a symbolic/hard link sits where the index writes a file
5      busy: another writer holds the index's lock, or changed it since it was opened
6      model problem: the model cannot be loaded, differs from the index's, or the index
       holds external vectors and has no model to encode text with
7      the system refused: permission denied, read-only file system, disk full, I/O error
130    interrupted (Ctrl-C); the index on disk is unchanged
143    terminated (SIGTERM, e.g. ``kill``); the index on disk is unchanged
=====  ================================================================================
"""

from __future__ import annotations

import errno
import functools
import os

from m2v_search.errors import M2VSearchError, system_error

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_INPUT = 3
EXIT_CORRUPT = 4
EXIT_BUSY = 5
EXIT_MODEL = 6
EXIT_SYSTEM = 7
EXIT_INTERRUPTED = 130
EXIT_TERMINATED = 143  # 128 + SIGTERM, what a shell reports for a process SIGTERM ended

EXIT_BAD_INPUT = EXIT_INPUT  # the name the ``m2v`` command used
EXIT_LOCKED = EXIT_BUSY

MEANINGS = {
    EXIT_OK: "success",
    EXIT_ERROR: "unexpected error (rerun with --debug for the traceback)",
    EXIT_USAGE: "usage: bad arguments, no index at the path, or an unusable output directory",
    EXIT_INPUT: "bad input: corpus, queries, filter, metadata or an input file",
    EXIT_CORRUPT: "corrupt index, or a link planted where it writes",
    EXIT_BUSY: "index locked or changed by another writer",
    EXIT_MODEL: "model problem: cannot load, mismatch, or an index without a model",
    EXIT_SYSTEM: "the system refused: permission, read-only file system, disk full, I/O error",
    EXIT_INTERRUPTED: "interrupted",
    EXIT_TERMINATED: "terminated (SIGTERM)",
}


class UsageError(Exception):
    """Bad command-line arguments found after parsing (exit 2, with the command's usage line)."""


@functools.lru_cache(maxsize=1)
def exit_code_table() -> tuple[tuple[type[BaseException], int], ...]:
    """(error class, exit code) pairs; the first class in an error's MRO that is listed wins.

    Built on first use so that ``m2v --help`` does not import the index package.
    """
    from m2v_search.errors import InvalidInputError, M2VSearchError, ModelLoadError
    from m2v_search.index.errors import (
        IndexConflictError,
        IndexCorruptError,
        IndexLockedError,
        IndexNotFoundError,
        ModelMismatchError,
        NoModelError,
        OutputDirectoryError,
        UnsafeFileError,
    )

    return (
        (UsageError, EXIT_USAGE),
        (IndexNotFoundError, EXIT_USAGE),
        (OutputDirectoryError, EXIT_USAGE),
        (IndexCorruptError, EXIT_CORRUPT),
        (UnsafeFileError, EXIT_CORRUPT),
        (IndexLockedError, EXIT_BUSY),
        (IndexConflictError, EXIT_BUSY),
        (ModelLoadError, EXIT_MODEL),
        (ModelMismatchError, EXIT_MODEL),
        (NoModelError, EXIT_MODEL),
        (InvalidInputError, EXIT_INPUT),
        (M2VSearchError, EXIT_INPUT),
        (FileNotFoundError, EXIT_INPUT),   # an input file named on the command line
        (IsADirectoryError, EXIT_INPUT),
        (NotADirectoryError, EXIT_INPUT),
        (OSError, EXIT_SYSTEM),            # permission, read-only, disk full, I/O error
        (MemoryError, EXIT_SYSTEM),
        (RecursionError, EXIT_INPUT),      # input nested too deeply
        (OverflowError, EXIT_INPUT),       # a number past what SQLite or FAISS take
        (UnicodeError, EXIT_INPUT),        # lone surrogates and other unencodable text
        (ValueError, EXIT_INPUT),          # a library function refused an argument's value
        (TypeError, EXIT_INPUT),
        (KeyboardInterrupt, EXIT_INTERRUPTED),
    )


def exit_code_for(error: BaseException) -> int:
    """The exit code of ``error``.

    Args:
        error: any exception.

    Returns:
        The table's code for the first listed class in the MRO of ``error`` (or of the OSError it
        stands for, see :func:`system_error`), else 1.
    """
    error = system_error(error) or error
    table = dict(exit_code_table())
    for cls in type(error).__mro__:
        if cls in table:
            return table[cls]
    return EXIT_ERROR


_OS_HINTS = {
    errno.ENOSPC: "the disk is full; free some space and run again (files already on disk, an index included, are unchanged)",
    errno.EDQUOT: "the disk quota is exceeded; free some space and run again (files already on disk, an index included, are unchanged)",
    errno.EROFS: "the file system is read-only",
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
    errno.EIO: "input/output error (a failing disk or network file system?)",
    errno.ELOOP: "refusing to follow a symbolic link",
}


def describe(error: BaseException) -> str:
    """One line saying what went wrong, without a traceback.

    Args:
        error: any exception.

    Returns:
        Its message on one line; for an OS error the file and a hint (disk full, read-only ...);
        for an unexpected error its type and how to see the traceback.
    """
    error = system_error(error) or error
    if isinstance(error, OSError) and not isinstance(error, FileNotFoundError) and error.errno in _OS_HINTS:
        if error.filename is None and error.strerror and error.strerror != os.strerror(error.errno):
            return _one_line(f"{error.strerror} ({_OS_HINTS[error.errno]})")  # a message of our own
        where = f"{error.filename}: " if error.filename is not None else ""
        return f"{where}{_OS_HINTS[error.errno]}"
    if isinstance(error, OSError) and error.strerror and error.filename is not None:
        return f"{error.filename}: {error.strerror}"
    if isinstance(error, RecursionError):
        return "input nested too deeply to process"
    if isinstance(error, MemoryError):
        return "out of memory"
    if isinstance(error, UnicodeError) and not isinstance(error, M2VSearchError):
        return f"text that cannot be encoded or decoded ({_one_line(str(error))})"
    text = _one_line(str(error)) or type(error).__name__
    if exit_code_for(error) == EXIT_ERROR:
        return f"unexpected {type(error).__name__}: {text} (rerun with --debug, or set M2V_DEBUG=1, for the traceback)"
    return text


def _one_line(text: str) -> str:
    return " ".join(text.split())
