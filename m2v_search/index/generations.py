"""Generations of an index directory: writing a new one atomically, reading the current one.

A generation is one FAISS file, one docstore file (and the lexical part's files) under names that embed the generation
(``index.<generation>.faiss``, ``docstore.<generation>.sqlite``). A commit writes and fsyncs
them, then replaces ``manifest.json`` (the commit point), then removes older generations. A
crash at any point leaves the previous manifest and its files in place.
"""

from __future__ import annotations

import os
import sqlite3
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from m2v_search.index.docstore import DocStore
from m2v_search.index.errors import IndexCorruptError, IndexNotFoundError
from m2v_search.index.manifest import fsync_dir, fsync_file, read_manifest, read_verified_files, write_manifest

_READ_ATTEMPTS = 5
LEXICAL_PATTERNS = ("lexical.*.json", "lexical.*.npz", ".lexical.*.tmp")  # the lexical part's files
REQUIRED_TABLES = {"docs", "tombstones", "meta"}


def commit_generation(directory: Path, write_index: Callable[[Path], Any], docs: DocStore,
                      manifest: Callable[[str, str, str], dict[str, Any]],
                      extra_files: Callable[[str], dict[str, bytes]] | None = None) -> str:
    """Write a new generation of an index directory and return its name.

    The caller holds the directory's writer lock.

    Args:
        directory: The index directory (it exists).
        write_index: Writes the FAISS file to the path it is given.
        docs: The docstore to save.
        manifest: Makes the manifest from ``(generation, index_file, docstore_file)``; called
            once the files are in place, so that their checksums can be taken.
        extra_files: More files of the generation (the lexical part) from its name:
            ``{file name: content}``, written and fsynced with the others, before the manifest.

    Returns:
        The new generation's name.

    Raises:
        OSError: A file could not be written; the previous generation stays in use.
    """
    on_disk = generation_on_disk(directory)
    sequence = int(str(on_disk or "0").split("-")[0] or 0) + 1
    generation = f"{sequence:06d}-{uuid.uuid4().hex[:8]}"
    index_name, docs_name = f"index.{generation}.faiss", f"docstore.{generation}.sqlite"
    staged_index, staged_docs = directory / f".{index_name}.tmp", directory / f".{docs_name}.tmp"
    extra = extra_files(generation) if extra_files is not None else {}
    staged_extra = {name: directory / f".{name}.tmp" for name in extra}
    try:
        write_index(staged_index)
        fsync_file(staged_index)
        docs.save_to(staged_docs)
        fsync_file(staged_docs)
        for name, content in extra.items():
            _write_new_file(staged_extra[name], content)
        os.replace(staged_index, directory / index_name)
        os.replace(staged_docs, directory / docs_name)
        for name, staged in staged_extra.items():
            os.replace(staged, directory / name)
    finally:
        for staged in (staged_index, staged_docs, *staged_extra.values()):
            staged.unlink(missing_ok=True)
    write_manifest(directory, manifest(generation, index_name, docs_name))
    remove_old_generations(directory, {index_name, docs_name, *extra})
    fsync_dir(directory)
    return generation


def _write_new_file(path: Path, content: bytes) -> None:
    """Create ``path`` (refusing anything there, a symlink included), write ``content`` and fsync it."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
    descriptor = os.open(path, flags, 0o644)
    with os.fdopen(descriptor, "wb") as handle:
        handle.write(content)
        handle.flush()
        os.fsync(handle.fileno())


def generation_on_disk(directory: Path) -> str | None:
    """The generation ``directory``'s manifest names, or None when it holds no readable index.

    Args:
        directory: An index directory (it need not exist).

    Returns:
        The generation's name, or None.
    """
    try:
        return read_manifest(directory).get("generation")
    except (IndexNotFoundError, IndexCorruptError):
        return None


def remove_old_generations(directory: Path, keep: set[str]) -> None:
    """Remove the files of generations other than the one whose file names are in ``keep``.

    Args:
        directory: The index directory.
        keep: File names to leave in place.
    """
    for pattern in ("index.*.faiss", "docstore.*.sqlite", ".index.*.tmp", ".docstore.*.tmp", *LEXICAL_PATTERNS):
        for path in directory.glob(pattern):
            if path.name not in keep:
                path.unlink(missing_ok=True)


def read_verified_generation(directory: Path) -> tuple[dict[str, Any], dict[str, bytes]]:
    """The manifest of ``directory`` and the verified bytes of every file it lists.

    A writer may commit a new generation (and remove an old one) while this reads: when a
    check fails and the manifest on disk names another generation by then, the new manifest
    is read and checked again.

    Args:
        directory: The index directory.

    Returns:
        ``(manifest, {file name: content})``; parse these bytes, not the files.

    Raises:
        IndexNotFoundError: ``directory`` holds no index.
        IndexCorruptError: A file is missing, truncated or does not match its checksum.
    """
    for attempt in range(_READ_ATTEMPTS):
        manifest = read_manifest(directory)
        try:
            return manifest, read_verified_files(directory, manifest)
        except IndexCorruptError:
            if attempt == _READ_ATTEMPTS - 1 or generation_on_disk(directory) == manifest["generation"]:
                raise
    raise AssertionError("unreachable")  # pragma: no cover


def docstore_from_bytes(data: bytes, path: Path) -> DocStore:
    """A docstore over a private in-memory copy of verified SQLite bytes (never the file again).

    Args:
        data: The verified content of a docstore file.
        path: Where it came from (for messages).

    Returns:
        The docstore (writable: writes change only the in-memory copy until a save).

    Raises:
        IndexCorruptError: ``data`` is not a docstore.
    """
    db = sqlite3.connect(":memory:", check_same_thread=False)
    try:
        db.deserialize(data)
        tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    except sqlite3.DatabaseError as error:
        db.close()
        raise IndexCorruptError(f"{path} is not a readable SQLite docstore: {error}") from None
    if not REQUIRED_TABLES <= tables:
        db.close()
        raise IndexCorruptError(f"{path} lacks the docstore tables ({', '.join(sorted(REQUIRED_TABLES))})")
    return DocStore(db, readonly=False, source=path)
