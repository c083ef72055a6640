"""Errors raised by the index package; each names the file, line or directory at fault."""

from __future__ import annotations

from m2v_search.errors import InvalidInputError, M2VSearchError


class IndexError_(M2VSearchError):  # noqa: N801 - avoid shadowing the builtin IndexError
    """Base class for index errors."""


class IndexNotFoundError(IndexError_, FileNotFoundError):
    """The index directory (or its manifest) does not exist."""


class IndexCorruptError(IndexError_, ValueError):
    """A file of the index is missing, truncated, or does not match its checksum."""


class IndexLockedError(IndexError_, RuntimeError):
    """Another process holds the writer lock of this index directory."""


class IndexConflictError(IndexError_, RuntimeError):
    """The index on disk changed since it was opened; saving would lose the other writer's work."""


class ModelMismatchError(IndexError_, ValueError):
    """The model given is not the one the index was built with."""


class CorpusError(IndexError_, InvalidInputError):
    """A corpus record is malformed; the message names the file and line."""


class IndexClosedError(IndexError_, RuntimeError):
    """The index was closed (``close()``, or the end of its ``with`` block); open it again."""


class NoModelError(IndexError_, ValueError):
    """The index holds vectors computed elsewhere (no model), and an operation needs to encode text."""


class UnsafeFileError(IndexError_, PermissionError):
    """A file the index writes is a symbolic link, a hard link or not a plain file (refused, never followed)."""


class OutputDirectoryError(IndexError_, ValueError):
    """A build's output directory is a file, or a non-empty directory that is not an index (without force)."""


class NoLexicalPartError(IndexError_, ValueError):
    """A lexical or hybrid search of an index without a lexical part (built with --no-lexical, or before it existed)."""
