"""SQLite docstore: string id <-> int64 id, text, metadata (JSON) and content hash per document.

An opened file is read in place (read-only); the first write copies it into memory, so the
file on disk never changes until a save writes a new one. Filters run as SQL over the JSON
metadata column.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import sqlite3
import threading
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from m2v_search.errors import InvalidInputError, system_error
from m2v_search.index.errors import IndexCorruptError, UnsafeFileError
from m2v_search.index.locking import open_plain_file
from m2v_search.index.filters import filter_to_sql

if TYPE_CHECKING:  # pragma: no cover
    from m2v_search.index.lexical import LexicalIndex

SCHEMA = """
CREATE TABLE IF NOT EXISTS docs (
    iid INTEGER PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    text TEXT NOT NULL,
    metadata TEXT NOT NULL,
    hash TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS tombstones (iid INTEGER PRIMARY KEY);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""
_CHUNK = 900  # parameters per IN (...) query


def content_hash(text: str, metadata_json: str) -> str:
    """sha256 of the text and its canonical metadata JSON (what a resume or upsert compares).

    Raises:
        InvalidInputError: the text holds a lone surrogate (not valid Unicode).
    """
    return hashlib.sha256(utf8(text, "a document's text") + b"\x00" + metadata_json.encode()).hexdigest()


def utf8(text: str, what: str) -> bytes:
    """``text`` as UTF-8.

    Raises:
        InvalidInputError: ``text`` holds a lone surrogate (e.g. from a JSON ``"\\ud800"`` escape).
    """
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError as error:
        raise InvalidInputError(f"{what} holds a lone surrogate (U+{ord(text[error.start]):04X} at position "
                                f"{error.start}), which is not valid Unicode text") from None


def _check_ids(ids: Sequence[Any]) -> None:
    """InvalidInputError for an id holding a lone surrogate (SQLite would raise UnicodeEncodeError)."""
    for doc_id in ids:
        if isinstance(doc_id, str):
            utf8(doc_id, f"document id {doc_id!r}")


def metadata_json(metadata: dict[str, Any] | None) -> str:
    """The canonical JSON of a metadata dict (sorted keys, no spaces), as stored and hashed.

    Raises:
        InvalidInputError: a value is NaN or infinite (JSON has no such numbers: filters and
            readers of the output would break), a key or string holds a lone surrogate or a NUL
            character, or the value is nested too deeply.
        TypeError: a value is not JSON-serialisable.
    """
    if not metadata:  # most corpora carry none: skip the walk and the encoder
        return "{}"
    problem = find_invalid_value(metadata)
    if problem is not None:
        raise InvalidInputError(f"metadata {problem}")
    try:
        return json.dumps(metadata, ensure_ascii=False, sort_keys=True, separators=(",", ":"),
                          allow_nan=False)
    except RecursionError:
        raise InvalidInputError(f"metadata is nested more than {MAX_DEPTH} levels deep") from None


MAX_DEPTH = 100  # metadata nesting accepted (JSON parsers and SQLite's json functions stop near 1000)


def find_invalid_value(value: Any, path: str = "", depth: int = 0, *, nul: bool = False) -> str | None:
    """Where ``value`` holds something a stored JSON document must not: NaN or infinity, an integer
    past 64 bits, a lone surrogate in a key or string, a NUL character in a key or string inside a dict or list
    (SQLite's JSON functions end text at a NUL, so a filter on ``"a"`` would match ``"a\\x00b"``),
    or nesting deeper than ``MAX_DEPTH``; None if nothing.

    Args:
        value: The value (a metadata dict, an id, a text).
        path: Its field path, for the message.
        depth: Its nesting depth.
        nul: Refuse a NUL in ``value`` itself when it is a string (keys and strings inside a dict
            or list are always checked; a document's text and id may hold NUL).

    Returns:
        A phrase naming the field, e.g. ``"field 'scores[2]' is NaN"``.
    """
    shown = path if len(path) <= 60 else path[:57] + "..."
    where = f"field {shown!r}" if path else "value"
    if depth > MAX_DEPTH:
        return f"{where} is nested more than {MAX_DEPTH} levels deep"
    if isinstance(value, float):
        if value != value or value in (math.inf, -math.inf):
            shown = "NaN" if value != value else "Infinity" if value > 0 else "-Infinity"
            return f"{where} is {shown}; JSON has no such number (use null or a string)"
        return None
    if isinstance(value, int) and not isinstance(value, bool) and not -2**63 <= value < 2**63:
        return f"{where} is an integer outside the signed 64-bit range, which metadata filters cannot compare (store it as a string)"
    if isinstance(value, str):
        if not _is_utf8(value):
            return f"{where} holds a lone surrogate (not valid Unicode text)"
        return f"{where} holds a NUL character (U+0000), which metadata filters cannot see past" \
            if nul and "\x00" in value else None
    if isinstance(value, dict):
        for key, item in value.items():
            name = key if isinstance(key, str) else str(key)
            if not _is_utf8(name):
                return f"key {name!r} holds a lone surrogate (not valid Unicode text)"
            if "\x00" in name:
                return f"key {name!r} holds a NUL character (U+0000), which metadata filters cannot see past"
            found = find_invalid_value(item, f"{path}.{name}" if path else name, depth + 1, nul=True)
            if found is not None:
                return found
        return None
    if isinstance(value, (list, tuple)):
        for position, item in enumerate(value):
            found = find_invalid_value(item, f"{path}[{position}]", depth + 1, nul=True)
            if found is not None:
                return found
    return None


def _is_utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


class DocStore:
    """Thread-safe wrapper around one SQLite connection.

    ``lexical``: the lexical (BM25) index over the stored texts, or None; every insert, delete
    and clear here updates it too, so it always indexes exactly the rows of ``docs``.
    """

    def __init__(self, connection: sqlite3.Connection, *, readonly: bool, source: Path | None = None) -> None:
        self._db = connection
        self._readonly = readonly
        self.source = source
        self._lock = threading.RLock()
        self.lexical: LexicalIndex | None = None

    @classmethod
    def in_memory(cls, lexical: LexicalIndex | None = None) -> DocStore:
        """A new, empty docstore in memory (with ``lexical`` as its lexical part, if given)."""
        db = sqlite3.connect(":memory:", check_same_thread=False)
        db.executescript(SCHEMA)
        db.execute("INSERT INTO meta VALUES ('next_iid', '0')")
        db.commit()
        store = cls(db, readonly=False)
        store.lexical = lexical
        return store

    @classmethod
    def open_file(cls, path: Path) -> DocStore:
        """Open a saved docstore read-only (verified by the manifest first)."""
        try:
            db = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro&immutable=1", uri=True,
                                 check_same_thread=False)
            tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        except sqlite3.DatabaseError as error:
            raise IndexCorruptError(f"{path} is not a readable SQLite docstore: {error}") from None
        if not {"docs", "tombstones", "meta"} <= tables:
            raise IndexCorruptError(f"{path} lacks the docstore tables (docs, tombstones, meta)")
        return cls(db, readonly=True, source=path)

    # ------------------------------------------------------------------ writes
    def _writable(self) -> sqlite3.Connection:
        if self._readonly:
            memory = sqlite3.connect(":memory:", check_same_thread=False)
            self._db.backup(memory)
            self._db.close()
            self._db = memory
            self._readonly = False
        return self._db

    def next_iids(self, count: int) -> np.ndarray:
        """Reserve ``count`` new int ids (never reused, so ids of other documents stay stable)."""
        with self._lock:
            db = self._writable()
            start = int(db.execute("SELECT value FROM meta WHERE key='next_iid'").fetchone()[0])
            db.execute("UPDATE meta SET value=? WHERE key='next_iid'", (str(start + count),))
            return np.arange(start, start + count, dtype=np.int64)

    def insert(self, rows: Sequence[tuple[int, str, str, str, str]]) -> None:
        """Insert (iid, id, text, metadata_json, hash) rows; ids must not exist yet.

        Raises:
            InvalidInputError: an id or text holds a lone surrogate (SQLite stores UTF-8 only).
        """
        for _, doc_id, text, _, _ in rows:
            utf8(doc_id, f"document id {doc_id!r}")
            utf8(text, f"the text of document {doc_id!r}")
        with self._lock:
            db = self._writable()
            db.executemany("INSERT INTO docs (iid, id, text, metadata, hash) VALUES (?, ?, ?, ?, ?)", rows)
            if self.lexical is not None:
                self.lexical.add([row[0] for row in rows], [row[2] for row in rows])

    def delete_iids(self, iids: Iterable[int]) -> None:
        with self._lock:
            db = self._writable()
            iids = [int(i) for i in iids]
            db.executemany("DELETE FROM docs WHERE iid=?", [(i,) for i in iids])
            if self.lexical is not None:
                self.lexical.delete(iids)

    def add_tombstones(self, iids: Iterable[int]) -> None:
        with self._lock:
            self._writable().executemany("INSERT OR IGNORE INTO tombstones VALUES (?)", [(int(i),) for i in iids])

    def clear_tombstones(self) -> None:
        with self._lock:
            self._writable().execute("DELETE FROM tombstones")

    def clear(self) -> None:
        with self._lock:
            db = self._writable()
            db.execute("DELETE FROM docs")
            db.execute("DELETE FROM tombstones")
            if self.lexical is not None:
                self.lexical.clear()

    def commit(self) -> None:
        with self._lock:
            if not self._readonly:
                self._db.commit()

    def set_meta(self, key: str, value: str) -> None:
        with self._lock:
            self._writable().execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, value))

    def delete_meta(self, key: str) -> None:
        with self._lock:
            self._writable().execute("DELETE FROM meta WHERE key=?", (key,))

    # ------------------------------------------------------------------ reads
    def get_meta(self, key: str) -> str | None:
        with self._lock:
            row = self._db.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
            return None if row is None else row[0]

    def lookup(self, ids: Sequence[str]) -> dict[str, tuple[int, str]]:
        """id -> (iid, hash) for the ids that exist.

        Raises:
            InvalidInputError: an id holds a lone surrogate.
        """
        _check_ids(ids)
        found: dict[str, tuple[int, str]] = {}
        with self._lock:
            for start in range(0, len(ids), _CHUNK):
                chunk = ids[start:start + _CHUNK]
                query = f"SELECT id, iid, hash FROM docs WHERE id IN ({', '.join('?' * len(chunk))})"
                for doc_id, iid, digest in self._db.execute(query, chunk):
                    found[doc_id] = (iid, digest)
        return found

    def rows_by_id(self, ids: Sequence[str]) -> dict[str, tuple[int, str, str]]:
        """id -> (iid, text, metadata_json).

        Raises:
            InvalidInputError: an id holds a lone surrogate.
        """
        _check_ids(ids)
        found: dict[str, tuple[int, str, str]] = {}
        with self._lock:
            for start in range(0, len(ids), _CHUNK):
                chunk = list(ids[start:start + _CHUNK])
                query = f"SELECT id, iid, text, metadata FROM docs WHERE id IN ({', '.join('?' * len(chunk))})"
                for doc_id, iid, text, meta in self._db.execute(query, chunk):
                    found[doc_id] = (iid, text, meta)
        return found

    def rows_by_iid(self, iids: Sequence[int]) -> dict[int, tuple[str, str, str]]:
        """iid -> (id, text, metadata_json)."""
        found: dict[int, tuple[str, str, str]] = {}
        with self._lock:
            for start in range(0, len(iids), _CHUNK):
                chunk = [int(i) for i in iids[start:start + _CHUNK]]
                query = f"SELECT iid, id, text, metadata FROM docs WHERE iid IN ({', '.join('?' * len(chunk))})"
                for iid, doc_id, text, meta in self._db.execute(query, chunk):
                    found[iid] = (doc_id, text, meta)
        return found

    def match_iids(self, filter: dict[str, Any] | None) -> np.ndarray:
        """Sorted int ids of the live documents whose metadata match ``filter``."""
        where, params = filter_to_sql(filter)
        with self._lock:
            rows = self._db.execute(f"SELECT iid FROM docs WHERE {where} ORDER BY iid", params).fetchall()
        return np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))

    def match_ids(self, filter: dict[str, Any] | None) -> list[str]:
        """Document ids of the live documents whose metadata match ``filter``, in insertion order."""
        where, params = filter_to_sql(filter)
        with self._lock:
            rows = self._db.execute(f"SELECT id FROM docs WHERE {where} ORDER BY iid", params).fetchall()
        return [row[0] for row in rows]

    def tombstones(self) -> np.ndarray:
        with self._lock:
            rows = self._db.execute("SELECT iid FROM tombstones ORDER BY iid").fetchall()
        return np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))

    def count(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM docs").fetchone()[0])

    def count_tombstones(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM tombstones").fetchone()[0])

    def iter_rows(self, batch: int = 10_000) -> Iterable[tuple[int, str, str, str, str]]:
        """All (iid, id, text, metadata_json, hash) rows in iid order, up to the last stored when
        the iteration starts: a row written meanwhile (a replaced document gets a new iid) is not
        read, so a loop that rewrites what it reads ends, and sees each document once."""
        last = -1
        with self._lock:
            (end,) = self._db.execute("SELECT COALESCE(MAX(iid), -1) FROM docs").fetchone()
        while True:
            with self._lock:
                rows = self._db.execute("SELECT iid, id, text, metadata, hash FROM docs WHERE iid > ? AND iid <= ? "
                                        "ORDER BY iid LIMIT ?", (last, end, batch)).fetchall()
            if not rows:
                return
            yield from rows
            last = rows[-1][0]

    # ------------------------------------------------------------------ persistence
    def save_to(self, path: Path) -> None:
        """Write the whole store to a new SQLite file at ``path`` (fsynced).

        The file is created with ``O_EXCL | O_NOFOLLOW`` first: a file or symbolic link already
        at ``path`` is refused, never written through; a swap while SQLite writes is detected.

        Raises:
            FileExistsError: something already exists at ``path``.
            UnsafeFileError: ``path`` was replaced while it was being written.
            OSError: the disk is full (ENOSPC) or SQLite cannot write it (EIO).
        """
        with self._lock:
            if not self._readonly:
                self._db.commit()
            fd = open_plain_file(path, os.O_RDWR | os.O_CREAT | os.O_EXCL)
            try:
                target = sqlite3.connect(path)
                try:
                    target.execute("PRAGMA journal_mode=OFF")  # a new file: nothing to roll back to
                    self._db.backup(target)
                    target.commit()
                except sqlite3.Error as error:  # "database or disk is full" is a full disk, as for any file
                    system = system_error(error)
                    if system is None:
                        raise
                    raise OSError(system.errno, system.strerror, str(path)) from error
                finally:
                    target.close()
                ours, now = os.fstat(fd), os.stat(path, follow_symlinks=False)
                if (ours.st_dev, ours.st_ino) != (now.st_dev, now.st_ino):
                    raise UnsafeFileError(f"{path} was replaced while the docstore was written to it")
                os.fsync(fd)
            finally:
                os.close(fd)

    def integrity_check(self) -> str:
        with self._lock:
            return str(self._db.execute("PRAGMA integrity_check").fetchone()[0])

    def close(self) -> None:
        with self._lock:
            self._db.close()
