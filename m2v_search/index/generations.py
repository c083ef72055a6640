"""Generations of an index directory: writing a new one atomically, reading the current one.

A generation is one FAISS file, one docstore file (and the lexical part's files) under names that embed the generation
(``index.<generation>.faiss``, or ``.m2vbin`` for the binary kinds' own format; ``docstore.<generation>.sqlite``).
A commit writes and fsyncs them, then replaces ``manifest.json`` (the commit point), then removes older generations. A
crash at any point leaves the previous manifest and its files in place; the files it was staging
(``.index.<generation>.faiss.tmp``...) are removed by the next commit.
"""

from __future__ import annotations

import json
import os
import re
import sqlite3
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from m2v_search.index.docstore import DocStore
from m2v_search.index.errors import IndexCorruptError, IndexNotFoundError
from m2v_search.index.manifest import (
    MAX_MANIFEST_BYTES,
    fsync_dir,
    fsync_file,
    read_manifest,
    read_plain_file,
    read_verified_files,
    remove_stale_temporaries,
    write_manifest,
)

_READ_ATTEMPTS = 5
REQUIRED_COLUMNS = {"docs": {"iid", "id", "text", "metadata", "hash"}, "tombstones": {"iid"}, "meta": {"key", "value"}}
GENERATION = re.compile(r"([0-9]{1,18})-[0-9a-f]{8}")
# the names commits give files (the lexical part's too); only such recorded files are ever removed
GENERATION_FILE = re.compile(r"(?:index\.{g}\.(?:faiss|m2vbin)|docstore\.{g}\.sqlite|lexical\.{g}\.(?:json|npz))".replace("{g}", GENERATION.pattern))
# a generation file being written; one found while the writer lock is held was left by a killed writer
STAGED_FILE = re.compile(rf"\.(?:{GENERATION_FILE.pattern})\.tmp")
# the files a commit put in place before its manifest; left only by a writer killed in between
PENDING_FILE = re.compile(rf"\.pending\.({GENERATION.pattern})\.json")


# the directories this process has committed a generation to (the CLI's message after a signal
# says whether the change is on disk)
COMMITTED: set[Path] = set()


def commit_generation(directory: Path, write_index: Callable[[Path], Any], docs: DocStore,
                      manifest: Callable[[str, str, str], dict[str, Any]],
                      extra_files: Callable[[str], dict[str, bytes]] | None = None, *, index_suffix: str = "faiss") -> str:
    """Write a new generation of an index directory and return its name.

    The caller holds the directory's writer lock. Once the new manifest is in place, the files
    the previous manifest recorded are removed (only names of the form commits give them); a
    file the index did not record is never touched. A reader that read the previous manifest
    either has its files open already (removal does not disturb an open file) or finds them
    gone and reads the new manifest (see :func:`read_verified_generation`).

    Args:
        directory: The index directory (it exists).
        write_index: Writes the FAISS file to the path it is given (created empty, a plain
            file, beforehand).
        docs: The docstore to save.
        manifest: Makes the manifest from ``(generation, index_file, docstore_file)``; called
            once the files are in place, so that their checksums can be taken.
        extra_files: More files of the generation (the lexical part) from its name:
            ``{file name: content}``, written and fsynced with the others, before the manifest.
        index_suffix: the index file's extension (``index_kinds.index_file_suffix``).

    Returns:
        The new generation's name.

    Raises:
        OSError: A file could not be written; the previous generation stays in use.
    """
    remove_stale_temporaries(directory, STAGED_FILE)  # whole copies of the index a killed writer left
    previous = _readable_manifest(directory)
    _finish_interrupted_commits(directory, previous)
    sequence = int(GENERATION.fullmatch(previous["generation"])[1]) + 1 \
        if previous and GENERATION.fullmatch(previous["generation"]) else 1
    generation = f"{sequence:06d}-{uuid.uuid4().hex[:8]}"
    index_name, docs_name = f"index.{generation}.{index_suffix}", f"docstore.{generation}.sqlite"
    staged_index, staged_docs = directory / f".{index_name}.tmp", directory / f".{docs_name}.tmp"
    extra = extra_files(generation) if extra_files is not None else {}
    staged_extra = {name: directory / f".{name}.tmp" for name in extra}
    published: list[Path] = []
    replaced = [name for name in (previous or {}).get("files", {})  # recorded, and named as commits name files
                if name not in (index_name, docs_name, *extra) and GENERATION_FILE.fullmatch(name)]
    # what a writer killed mid-commit leaves to the next one: this commit's files if its manifest never
    # made it, the replaced generation's files if it did
    pending = directory / f".pending.{generation}.json"
    try:
        try:
            create_private_file(staged_index)  # the first file: whether the directory can be written at all
        except OSError as error:  # name the directory, not a hidden temporary file in it
            raise type(error)(error.errno, error.strerror, str(directory)) from None
        write_index(staged_index)
        fsync_file(staged_index)
        docs.save_to(staged_docs)  # creates the file itself, with O_EXCL | O_NOFOLLOW
        fsync_file(staged_docs)
        for name, content in extra.items():
            _write_new_file(staged_extra[name], content)
        _write_new_file(pending, json.dumps({"files": [index_name, docs_name, *extra], "replaced": replaced}
                                            ).encode("utf-8"))
        for staged, name in ((staged_index, index_name), (staged_docs, docs_name), *((staged_extra[n], n) for n in extra)):
            os.replace(staged, directory / name)
            published.append(directory / name)
        write_manifest(directory, manifest(generation, index_name, docs_name))
        COMMITTED.add(directory)
    except BaseException:
        current = _readable_manifest(directory)
        if not current or current.get("generation") != generation:  # never published: nothing refers to them
            for path in published:
                path.unlink(missing_ok=True)
            pending.unlink(missing_ok=True)
        else:
            COMMITTED.add(directory)
        raise
    finally:
        for staged in (staged_index, staged_docs, *staged_extra.values()):
            staged.unlink(missing_ok=True)
    for name in replaced:
        (directory / name).unlink(missing_ok=True)
    pending.unlink(missing_ok=True)
    fsync_dir(directory)
    return generation


def _finish_interrupted_commits(directory: Path, current: dict[str, Any] | None) -> None:
    """Finish the commits a killed writer left: each left a ``.pending.<generation>.json`` marker. If
    the manifest records that generation, the commit took effect and the files it replaced are
    removed; otherwise the files it had put in place are. Only names the marker lists, named as
    commits name files and not recorded by the current manifest, are removed: never a user's file."""
    recorded = set((current or {}).get("files") or {})
    for marker in directory.iterdir():
        match = PENDING_FILE.fullmatch(marker.name)
        if match is None or marker.is_symlink() or not marker.is_file():  # only a plain marker is ours
            continue
        try:
            listed = json.loads(read_plain_file(marker, MAX_MANIFEST_BYTES))
        except (OSError, ValueError, IndexCorruptError):
            listed = {}
        took_effect = bool(current) and current.get("generation") == match[1]
        names = listed.get("replaced" if took_effect else "files") if isinstance(listed, dict) else None
        for name in names if isinstance(names, list) else []:
            if isinstance(name, str) and GENERATION_FILE.fullmatch(name) and name not in recorded:
                (directory / name).unlink(missing_ok=True)
        marker.unlink(missing_ok=True)


def create_private_file(path: Path) -> None:
    """Create ``path`` as a new, empty plain file (refusing an existing file or a symlink there).

    Args:
        path: The file to create.

    Raises:
        FileExistsError: Something exists at ``path`` already.
    """
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
    os.close(os.open(path, flags, 0o644))


def _readable_manifest(directory: Path) -> dict[str, Any] | None:
    try:
        return read_manifest(directory)
    except (IndexNotFoundError, IndexCorruptError):
        return None


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
    manifest = _readable_manifest(directory)
    return None if manifest is None else manifest["generation"]


def read_verified_generation(directory: Path) -> tuple[dict[str, Any], dict[str, bytes]]:
    """The manifest of ``directory`` and the verified bytes of every file it lists.

    Every listed file is opened right after the manifest is read, before any is read, so a
    writer committing meanwhile (it removes the previous generation) can only make a file
    missing, never change what an open descriptor reads; then the manifest on disk names
    another generation, and it is read and checked again.

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
        missing = [f"{table}.{column}" for table, columns in REQUIRED_COLUMNS.items()
                   for column in sorted(columns - {row[1] for row in db.execute(f"PRAGMA table_info({table})")})]
    except sqlite3.DatabaseError as error:
        db.close()
        raise IndexCorruptError(f"{path} is not a readable SQLite docstore: {error}") from None
    if missing:
        db.close()
        raise IndexCorruptError(f"{path} lacks docstore columns: {', '.join(missing)}")
    return DocStore(db, readonly=False, source=path)
