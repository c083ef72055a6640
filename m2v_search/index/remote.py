"""Index directories on object storage (``s3://``, ``gs://``, ``az://``... any fsspec URL).

``upload_index(local_dir, url)`` copies a committed local index to ``url``: the generation's
files first (their names are unique per generation), ``manifest.json`` last. A single object
PUT is atomic on object stores, so the manifest is the commit point there too: a reader sees
the old manifest (whose files are still there) or the new one, never a mix; an upload that
fails part-way leaves the previous generation in use. Files of generations older than the
previous one are deleted after the commit (the previous one stays for readers mid-download);
no other object under the URL is touched, and a ``manifest.json`` there that is not an
index's is never overwritten.

``download_index(url, cache_dir)`` mirrors the current generation into a local folder (one
per URL under ``cache_dir``), reusing files already there, and verifies every size and sha256
of the manifest before returning the folder, which ``VectorIndex.open`` reads as usual.

Credentials come from the usual fsspec/boto mechanisms (environment, config files, instance
roles); URLs are logged without any ``user:password@`` part.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from m2v_search.index.errors import IndexCorruptError, IndexError_, IndexNotFoundError, OutputDirectoryError
from m2v_search.index.generations import GENERATION_FILE
from m2v_search.index.manifest import FORMAT_NAME, MANIFEST_NAME, read_manifest, sha256_file, verify_files
from m2v_search.index.manifest_schema import is_plain_name
from m2v_search.index.urls import bucket_of, filesystem, is_url, local_path, redact, storage_errors

log = logging.getLogger("m2v_search.index")
CACHE_ENV = "M2V_SEARCH_INDEX_CACHE"
_GENERATION_FILES = ("index.", "docstore.", "lexical.")


class RemoteIndexError(IndexNotFoundError):
    """No index at a URL (its manifest is missing), or it kept changing while it was read."""


class RemoteStorageError(OSError, IndexError_):
    """Object storage refused or failed a transfer (network, permission, quota); an ``OSError``."""


def default_cache_dir() -> Path:
    """``$M2V_SEARCH_INDEX_CACHE``, else ``~/.cache/m2v-search/indexes``."""
    configured = os.environ.get(CACHE_ENV)
    return Path(configured) if configured else Path.home() / ".cache" / "m2v-search" / "indexes"


def upload_index(local_dir: str | os.PathLike[str], url: str) -> str:
    """Upload the committed index in ``local_dir`` to ``url``, manifest last; returns its generation.

    Args:
        local_dir: a local index directory (its manifest and files are verified first).
        url: the fsspec URL of the remote index directory (``s3://bucket/indexes/docs``).

    Returns:
        The generation now current at ``url``.

    Raises:
        IndexCorruptError: the local index does not match its manifest.
        OutputDirectoryError: ``url`` holds a ``manifest.json`` that is not an m2v-search index's.
        RemoteStorageError: an upload failed; the previous remote generation, if any, stays current.
    """
    directory = Path(local_dir)
    manifest = read_manifest(directory)
    verify_files(directory, manifest)
    fs, root = filesystem(url)
    root = root.rstrip("/")
    previous = _previous_manifest(fs, root, url)
    try:
        present = {Path(info["name"]).name: _size(info) for info in fs.ls(root, detail=True, refresh=True)
                   } if fs.exists(root) else {}
        for name, entry in manifest["files"].items():
            if present.get(name) == entry["bytes"]:
                continue  # generation file names are unique: same name and size, same content
            log.info("uploading %s to %s", name, redact(url))
            fs.put_file(str(directory / name), f"{root}/{name}")
        fs.put_file(str(directory / MANIFEST_NAME), f"{root}/{MANIFEST_NAME}")  # the commit point
    except (*storage_errors(), ValueError) as error:
        raise RemoteStorageError(f"uploading {directory} to {redact(url)} failed ({error}); the previous index "
                                 "there, if any, is unchanged") from None
    previous_files = (previous or {}).get("files")
    _remove_stale(fs, root, keep={*manifest["files"], *(previous_files if isinstance(previous_files, dict) else ())})
    return str(manifest.get("generation"))


def download_index(url: str, cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """Mirror the current generation at ``url`` into a local folder and verify it; returns the folder.

    Args:
        url: the fsspec URL of an index directory written by ``upload_index``.
        cache_dir: where mirrors live (one subfolder per URL); default ``default_cache_dir()``.

    Returns:
        A local index directory that ``VectorIndex.open`` reads.

    Raises:
        RemoteIndexError: no index at ``url``.
        RemoteStorageError: a transfer failed.
        IndexCorruptError: a downloaded file does not match the manifest.
    """
    fs, root = filesystem(url)
    root = root.rstrip("/")
    target = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    target = target / hashlib.sha256(url.rstrip("/").encode("utf-8")).hexdigest()[:20]
    target.mkdir(parents=True, exist_ok=True)
    with _download_lock(target):
        for attempt in range(3):
            manifest_bytes = _read_manifest_bytes(fs, root, url)
            try:
                _mirror(fs, root, url, target, _parsed_manifest(manifest_bytes, url))
                break
            except FileNotFoundError:
                # a writer replaced the generation (and removed files) between our reads: read again
                if attempt == 2:
                    raise RemoteIndexError(f"{redact(url)} changed three times while it was "
                                           "downloaded") from None
        temporary = target / f".{MANIFEST_NAME}.download"
        temporary.write_bytes(manifest_bytes)
        os.replace(temporary, target / MANIFEST_NAME)
        manifest = read_manifest(target)
        verify_files(target, manifest)
        for path in target.iterdir():
            if path.name.startswith(_GENERATION_FILES) and path.name not in manifest["files"]:
                path.unlink(missing_ok=True)
        (target / "source.txt").write_text(redact(url) + "\n", encoding="utf-8")
    return target


def open_target(path: str | os.PathLike[str], cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """The local directory to open for ``path``: itself, or for a URL its verified local mirror.

    Args:
        path: an index directory or the fsspec URL of one.
        cache_dir: where URL mirrors live (default ``default_cache_dir()``).

    Returns:
        A local index directory.
    """
    return download_index(os.fspath(path), cache_dir) if is_url(path) else Path(local_path(path))


@contextlib.contextmanager
def build_target(output: str | os.PathLike[str], work_dir: str | os.PathLike[str] | None = None
                 ) -> Iterator[Path]:
    """The local directory a build commits to, uploaded afterwards when ``output`` is a URL.

    A local ``output`` is yielded as it is. For a URL, the build goes to ``work_dir`` (kept) or
    a temporary folder (removed afterwards); when the ``with`` body finishes without an error,
    the committed index is uploaded with ``upload_index`` (manifest last). The URL's current
    manifest is read first, so that a mistyped endpoint, missing credentials or a refused read
    fail before the build, not after it.

    Args:
        output: the index directory or fsspec URL the user asked for.
        work_dir: a local folder for URL outputs (default a temporary one).

    Yields:
        The local index directory to build into.

    Raises:
        OutputDirectoryError: the URL holds a ``manifest.json`` that is not an m2v-search index's,
            or names an object (a file).
        RemoteStorageError: the URL cannot be read, or the upload failed (the previous index at
            the URL stays current).
    """
    target = os.fspath(output)
    if not is_url(target):
        yield Path(local_path(target))
        return
    fs, root = filesystem(target)
    if _previous_manifest(fs, root.rstrip("/"), target) is None:  # reachable, readable with these credentials, ours
        _require_bucket(fs, root, target)  # found now, not after the whole build
        _refuse_an_object(fs, root.rstrip("/"), target)
    if work_dir is not None:
        Path(work_dir).mkdir(parents=True, exist_ok=True)
        yield Path(work_dir)
        upload_index(work_dir, target)
        return
    temporary = Path(tempfile.mkdtemp(prefix="m2v-index-build-"))
    try:
        yield temporary
        upload_index(temporary, target)
    finally:
        shutil.rmtree(temporary, ignore_errors=True)


# ---------------------------------------------------------------------- helpers
@contextlib.contextmanager
def _download_lock(target: Path) -> Iterator[None]:
    """One downloader at a time per mirror (others wait; the OS drops the lock if its holder dies)."""
    import fcntl

    fd = os.open(target / ".download.lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the flock


def _size(info: dict[str, Any]) -> int | None:
    size = info.get("size", info.get("Size"))
    return None if size is None else int(size)


def _read_manifest_bytes(fs: Any, root: str, url: str) -> bytes:
    try:
        return fs.cat_file(f"{root}/{MANIFEST_NAME}")
    except FileNotFoundError:
        raise RemoteIndexError(f"no index at {redact(url)}: {MANIFEST_NAME} is missing") from None
    except storage_errors() as error:
        raise RemoteStorageError(f"cannot read {redact(url)}: {error}") from None


def _refuse_an_object(fs: Any, root: str, url: str) -> None:
    """Refuse an output URL that names an object (a file), as a local build refuses a file: the
    index's objects would go under its name as a prefix, beside it.

    Raises:
        OutputDirectoryError: ``url`` is an object.
    """
    try:
        is_object = fs.isfile(root)
    except storage_errors():
        return  # the upload names the problem
    if is_object:
        raise OutputDirectoryError(f"{redact(url)} is an object (a file); the output (-o) names the index's "
                                   "folder (prefix): give a new one")


def _require_bucket(fs: Any, root: str, url: str) -> None:
    """Refuse an object-store URL whose bucket (or container) does not exist.

    Raises:
        RemoteStorageError: it does not, or the store cannot be asked.
    """
    bucket = bucket_of(fs, root)
    if bucket is None:
        return
    try:
        found = fs.exists(bucket)
    except storage_errors() as error:
        raise RemoteStorageError(f"cannot read {redact(url)}: {error}") from None
    if not found:
        raise RemoteStorageError(f"cannot write {redact(url)}: the bucket {bucket!r} does not exist (or these "
                                 "credentials cannot see it)")


def _remote_manifest(fs: Any, root: str, url: str, missing_ok: bool = False) -> dict[str, Any] | None:
    """The remote manifest's JSON object; None when missing (``missing_ok``) or damaged (the upload replaces it)."""
    try:
        manifest = json.loads(_read_manifest_bytes(fs, root, url))
    except RemoteIndexError:
        if missing_ok:
            return None
        raise
    except (ValueError, RecursionError):
        return None
    return manifest if isinstance(manifest, dict) else None


def _previous_manifest(fs: Any, root: str, url: str) -> dict[str, Any] | None:
    """The manifest an upload to ``url`` replaces (None: none, or a damaged one); refuses a
    ``manifest.json`` of something else (an application's, a website's), which must not be overwritten."""
    previous = _remote_manifest(fs, root, url, missing_ok=True)
    refuse_foreign_manifest(previous, url)
    return previous


def refuse_foreign_manifest(manifest: Any, where: str) -> None:
    """Refuse to replace the parsed ``manifest.json`` found at ``where`` unless it is an m2v-search
    index's (None, e.g. missing or damaged, is fine): an application's or a website's is not ours.

    Args:
        manifest: the JSON value read from ``where/manifest.json``, or None.
        where: the index directory or URL, for the message.

    Raises:
        OutputDirectoryError: ``manifest`` is a JSON object of some other format.
    """
    if isinstance(manifest, dict) and manifest.get("format") != FORMAT_NAME:
        raise OutputDirectoryError(f"{redact(where)}/{MANIFEST_NAME} is not an m2v-search index manifest (format "
                                   f"{str(manifest.get('format'))[:40]!r}); give a URL of its own to the index")


def _parsed_manifest(data: bytes, url: str) -> dict[str, Any]:
    """The remote manifest's JSON, checked enough to mirror its files safely (the full check runs
    on the mirror); raises IndexCorruptError naming the URL."""
    try:
        manifest = json.loads(data)
    except (ValueError, RecursionError) as error:
        raise IndexCorruptError(f"{redact(url)}/{MANIFEST_NAME} is not valid JSON ({error})") from None
    files = manifest.get("files") if isinstance(manifest, dict) else None
    if not isinstance(files, dict) or not files:
        raise IndexCorruptError(f"{redact(url)}/{MANIFEST_NAME} lists no files")
    unsafe = [name for name, entry in files.items() if not is_plain_name(name) or not isinstance(entry, dict)]
    if unsafe:  # never write outside the mirror folder
        raise IndexCorruptError(f"{redact(url)}/{MANIFEST_NAME} lists unsafe file names or entries {unsafe[:5]}")
    return manifest


def _mirror(fs: Any, root: str, url: str, target: Path, manifest: dict[str, Any]) -> None:
    files = manifest["files"]
    for leftover in target.glob(".*.download"):  # from a download that was killed
        leftover.unlink(missing_ok=True)
    for name, entry in files.items():
        local = target / name
        if _cached(local, entry):
            continue
        partial = target / f".{name}.download"
        log.info("downloading %s from %s", name, redact(url))
        try:
            fs.get_file(f"{root}/{name}", str(partial))
        except FileNotFoundError:
            partial.unlink(missing_ok=True)
            raise
        except storage_errors() as error:
            partial.unlink(missing_ok=True)
            raise RemoteStorageError(f"cannot download {name} from {redact(url)}: {error}") from None
        os.replace(partial, local)


def _cached(local: Path, entry: dict[str, Any]) -> bool:
    """Whether the mirror already holds this file (same size and sha256)."""
    return local.is_file() and local.stat().st_size == entry.get("bytes") and sha256_file(local) == entry.get("sha256")


def _remove_stale(fs: Any, root: str, keep: set[str]) -> None:
    """Delete generation files (named as commits name them) that neither the current nor the
    previous manifest lists; other objects (``index.html``...) are not the index's."""
    try:
        names = [Path(p).name for p in fs.ls(root, detail=False, refresh=True)]
        for name in names:
            if GENERATION_FILE.fullmatch(name) and name not in keep:
                fs.rm_file(f"{root}/{name}")
    except storage_errors() as error:  # the new generation is committed; leftovers only cost space
        log.warning("could not remove old index files under %s: %s", root, error)
