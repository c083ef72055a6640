"""Exceptions raised by m2v_search. Each one names the file or input at fault.

The command line maps each class to an exit code (``m2v_search.cli.exit_codes``); a new error
class only needs the right base class here to get the right code.
"""

from __future__ import annotations

import errno
import os


class M2VSearchError(Exception):
    """Base class for every error this library raises on purpose."""


class InvalidInputError(M2VSearchError, ValueError):
    """Input data (a corpus line, a query, a metadata value, an argument) is malformed."""


class _NamesParameter:
    """An error about one argument of a call; ``param`` names it (the HTTP server's ``param``)."""

    def __init__(self, message: str, param: str) -> None:
        super().__init__(message)
        self.param = param


class ArgumentError(_NamesParameter, InvalidInputError):
    """An argument's value is refused (a bad mode, alpha or k, an empty query)."""


class ArgumentTypeError(_NamesParameter, M2VSearchError, TypeError):
    """An argument is of the wrong type (a str where a list of queries belongs)."""


class ModelLoadError(M2VSearchError, ValueError):
    """A model folder is missing, incomplete or corrupt, or a hub id cannot be resolved."""


class HubUnavailableError(ModelLoadError):
    """A hub id was given but the Hugging Face hub cannot be reached (or is disabled).

    Attributes:
        repo_id: the hub id asked for (None when unknown).
    """

    def __init__(self, message: str, repo_id: str | None = None) -> None:
        super().__init__(message)
        self.repo_id = repo_id


# the errnos a library error may stand for (their hints are in m2v_search.cli.exit_codes)
SYSTEM_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.EIO, errno.ELOOP)
_SQLITE_ERRNOS = {13: errno.ENOSPC, 10: errno.EIO}  # SQLITE_FULL, SQLITE_IOERR


def system_error(error: BaseException) -> OSError | None:
    """An OSError for a library error that stands for one: FAISS raises RuntimeError "... (No space
    left on device)" when a write fails, SQLite "database or disk is full"; else None."""
    if isinstance(error, OSError):
        return None
    sqlite_code = getattr(error, "sqlite_errorcode", None)
    if isinstance(sqlite_code, int) and sqlite_code & 0xFF in _SQLITE_ERRNOS:
        code = _SQLITE_ERRNOS[sqlite_code & 0xFF]
        return OSError(code, os.strerror(code))
    if not isinstance(error, RuntimeError):
        return None
    text = str(error)
    for code in SYSTEM_ERRNOS:
        if f"({os.strerror(code)})" in text:
            return OSError(code, os.strerror(code))
    return None
