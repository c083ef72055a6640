"""``manifest.json``: what an index directory holds, and the sha256 of every file in it.

The manifest is the commit point of a save: files of a new generation are written under
new names first, then the manifest is replaced in one ``os.replace``. Readers verify every
checksum before FAISS or SQLite opens a file.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import platform
import re
import sqlite3
import stat
from pathlib import Path
from typing import Any, BinaryIO

from m2v_search.index.errors import IndexCorruptError, IndexNotFoundError, OutputDirectoryError
from m2v_search.index.manifest_schema import validate_manifest

MANIFEST_NAME = "manifest.json"
FORMAT_NAME = "m2v-search-index"
FORMAT_VERSION = 1
MAX_MANIFEST_BYTES = 16 << 20
TEMP_PREFIX = f".{MANIFEST_NAME}.tmp-"
STALE_TEMP = re.compile(re.escape(TEMP_PREFIX) + r"[0-9]+")


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while True:
            block = handle.read(chunk)
            if not block:
                break
            digest.update(block)
    return digest.hexdigest()


def library_versions() -> dict[str, str]:
    import numpy

    from m2v_search import __version__

    versions = {"m2v_search": __version__, "numpy": numpy.__version__, "python": platform.python_version(),
                "sqlite": sqlite3.sqlite_version}
    try:
        import faiss

        versions["faiss"] = faiss.__version__
    except ImportError:  # pragma: no cover
        pass
    return versions


def open_for_reading(path: Path) -> BinaryIO:
    """``path`` opened for reading, without following a symlink and without blocking on a FIFO.

    Args:
        path: A regular file.

    Returns:
        The open binary file (close it).

    Raises:
        FileNotFoundError: ``path`` does not exist.
        IndexCorruptError: ``path`` is a symbolic link or not a regular file.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0))
    except OSError as error:
        if error.errno == errno.ELOOP:
            raise IndexCorruptError(f"{path} is a symbolic link; an index reads only plain files") from None
        if isinstance(error, FileNotFoundError):
            raise
        raise IndexCorruptError(f"{path} cannot be read: {error.strerror}") from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):  # before fdopen, which refuses a directory naming only the fd
        os.close(fd)
        raise IndexCorruptError(f"{path} is not a regular file")
    return os.fdopen(fd, "rb")


def read_plain_file(path: Path, limit: int | None = None) -> bytes:
    """The bytes of ``path``, read through one descriptor (see :func:`open_for_reading`).

    Args:
        path: A regular file.
        limit: Most bytes accepted (None: any size).

    Returns:
        The file's content.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        IndexCorruptError: ``path`` is a symbolic link, not a regular file, or over ``limit``.
    """
    with open_for_reading(path) as handle:
        size = os.fstat(handle.fileno()).st_size
        if limit is not None and size > limit:
            raise IndexCorruptError(f"{path} has {size} bytes, more than the {limit} accepted")
        return handle.read()


def read_manifest(directory: Path) -> dict[str, Any]:
    """The parsed and type-checked manifest of ``directory`` (files not yet verified).

    Args:
        directory: An index directory.

    Returns:
        The manifest.

    Raises:
        IndexNotFoundError: ``directory`` or its manifest does not exist.
        IndexCorruptError: The manifest is not valid JSON, not of this format, or has a field
            missing or of the wrong type (the message names it).
    """
    path = directory / MANIFEST_NAME
    if not directory.exists():
        raise IndexNotFoundError(f"index directory {directory} does not exist")
    if not directory.is_dir():
        raise IndexNotFoundError(f"{directory} is a file, not an index directory")
    try:
        data = read_plain_file(path, MAX_MANIFEST_BYTES)
    except FileNotFoundError:
        raise IndexNotFoundError(f"{directory} is not an index: {MANIFEST_NAME} is missing") from None
    try:
        manifest = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise IndexCorruptError(f"{path} is not valid JSON: {error}") from None
    except RecursionError:
        raise IndexCorruptError(f"{path} is not a manifest: JSON nested too deeply") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT_NAME:
        raise IndexCorruptError(f"{path} is not an m2v-search index manifest")
    version = manifest.get("format_version")
    if version != FORMAT_VERSION:
        raise IndexCorruptError(f"{path} has format version {version!r}; this m2v-search reads "
                                f"version {FORMAT_VERSION}")
    validate_manifest(manifest, path)
    return manifest


def refuse_foreign_manifest(directory: Path, remedy: str = "give the index a directory of its own") -> bool:
    """Whether ``directory/manifest.json`` is an m2v-search index's (False: missing or unreadable,
    e.g. a damaged index's, which a new save may replace).

    Raises:
        OutputDirectoryError: it is a JSON object of some other format (an application's or a
            website's ``manifest.json``), which no save may replace.
    """
    path = Path(directory) / MANIFEST_NAME
    try:
        manifest = json.loads(read_plain_file(path, MAX_MANIFEST_BYTES))
    except (OSError, ValueError, RecursionError, IndexCorruptError):
        return False
    if isinstance(manifest, dict) and manifest.get("format") == FORMAT_NAME:
        return True
    raise OutputDirectoryError(f"{path} is not an m2v-search index manifest; {remedy} (saving there would replace "
                               "that file)")


def read_verified_files(directory: Path, manifest: dict[str, Any]) -> dict[str, bytes]:
    """The bytes of every file the manifest lists, each checked against its size and sha256.

    Every file is opened first (without following symlinks), then each is read once; the bytes
    returned are the bytes hashed: parse them, never the file again (no check-then-open race).

    Args:
        directory: The index directory.
        manifest: Its manifest (from :func:`read_manifest`).

    Returns:
        ``{file name: content}``.

    Raises:
        IndexCorruptError: A file is missing, a symlink, truncated or modified (naming it).
    """
    with contextlib.ExitStack() as stack:
        handles = {}
        for name in manifest["files"]:  # open them all first: a file removed later stays readable
            try:
                handles[name] = stack.enter_context(open_for_reading(directory / name))
            except FileNotFoundError:
                raise IndexCorruptError(f"{directory / name} is missing (listed in {MANIFEST_NAME})") from None
        contents = {name: handle.read() for name, handle in handles.items()}
    for name, data in contents.items():
        entry, path = manifest["files"][name], directory / name
        if len(data) != entry["bytes"]:
            raise IndexCorruptError(f"{path} has {len(data)} bytes, the manifest says {entry['bytes']} "
                                    "(truncated or modified)")
        if hashlib.sha256(data).hexdigest() != entry["sha256"]:
            raise IndexCorruptError(f"{path} does not match its sha256 in {MANIFEST_NAME} (corrupt or modified)")
    return contents


def verify_files(directory: Path, manifest: dict[str, Any]) -> None:
    """Check size and sha256 of every file the manifest lists (see :func:`read_verified_files`).

    Args:
        directory: The index directory.
        manifest: Its manifest.

    Raises:
        IndexCorruptError: A file is missing, truncated or modified.
    """
    read_verified_files(directory, manifest)


def file_entry(path: Path) -> dict[str, Any]:
    return {"bytes": path.stat().st_size, "sha256": sha256_file(path)}


def write_manifest(directory: Path, manifest: dict[str, Any]) -> None:
    """Atomically replace ``directory/manifest.json`` (temp file, fsync, rename, fsync dir).

    The caller holds the writer lock, so a temporary manifest of another process found there
    was left by a killed writer: it is removed first. The temporary file is created new
    (``O_EXCL``) without following symlinks.

    Args:
        directory: The index directory.
        manifest: The manifest to write.
    """
    remove_stale_temporaries(directory)
    target = directory / MANIFEST_NAME
    temporary = directory / f"{TEMP_PREFIX}{os.getpid()}"
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        with os.fdopen(os.open(temporary, flags, 0o644), "w", encoding="utf-8") as handle:
            json.dump(manifest, handle, indent=2, sort_keys=False)
            handle.write("\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, target)
    finally:
        temporary.unlink(missing_ok=True)
    fsync_dir(directory)


def remove_stale_temporaries(directory: Path, names_like: re.Pattern[str] = STALE_TEMP) -> None:
    """Remove temporary files a killed writer left in ``directory`` (only names of exactly that form).

    Args:
        directory: An index directory whose writer lock the caller holds.
        names_like: The names to remove (default ``.manifest.json.tmp-<pid>``).
    """
    try:
        names = os.listdir(directory)
    except OSError:
        return
    for name in names:
        if names_like.fullmatch(name):
            (directory / name).unlink(missing_ok=True)


def fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # pragma: no cover
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)


def fsync_file(path: Path) -> None:
    with open(path, "rb+") as handle:
        os.fsync(handle.fileno())


def index_manifest(*, generation: str, model: Any, model_path: str | None, dim: int, index_file: str,
                   docstore_file: str, spec: Any, requested: dict[str, Any], counts: dict[str, int],
                   build: dict[str, Any], directory: Path) -> dict[str, Any]:
    """The manifest of one generation of an index directory (its files must be written already).

    Args:
        generation: The generation's name.
        model: The StaticModel the vectors come from, or None for vectors computed elsewhere.
        model_path: The model's recorded source (bundled name or folder).
        dim: Dimensions of the vectors.
        index_file: Name of the FAISS file in ``directory``.
        docstore_file: Name of the docstore file in ``directory``.
        spec: The index in use (``kind``, ``factory``, ``params``).
        requested: What was asked for (``kind``, ``factory``, ``memory_budget``).
        counts: ``documents``, ``vectors`` and ``deleted``.
        build: Facts about the build (complete or not, corpus, timings).
        directory: Where the files are (their checksums are taken now).

    Returns:
        The manifest, ready for :func:`write_manifest`.
    """
    import time

    return {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "generation": generation,
        "saved_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "libraries": library_versions(),
        "model": {"external": True, "dim": dim} if model is None else {
            "name": model.name,
            "path": model_path,
            "fingerprint": model.fingerprint,
            "dim": dim,
            "tokenizer_backend": model.tokenizer_backend,
            "embedding_dtype": model.embedding_dtype,
        },
        "dim": dim,
        "metric": "inner_product",
        "normalized": True,
        "index": {
            "file": index_file,
            "kind": spec.kind,
            "factory": spec.factory,
            "search_params": spec.params,
            "requested": requested.get("kind"),
            "requested_factory": requested.get("factory"),
            "memory_budget": requested.get("memory_budget"),
        },
        "docstore": {"file": docstore_file, "schema": 1},
        "counts": counts,
        "build": build,
        "files": {name: file_entry(directory / name) for name in (index_file, docstore_file)},
    }
