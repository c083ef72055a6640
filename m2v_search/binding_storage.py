"""Saving an index to, and opening one from, a local folder or any fsspec filesystem, for
:class:`~m2v_search.binding.IndexBinding`: locally the index writes its own directory atomically;
elsewhere a local save is uploaded (data files first, the manifest last) and an opened one is
downloaded (the manifest and the files it lists) to a private folder, verified as it opens."""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from m2v_search.index import VectorIndex
    from m2v_search.model import StaticModel


def save_index(index: VectorIndex, path: str | os.PathLike[str], fs: Any = None) -> None:
    """Save ``index`` as a directory at ``path`` (atomic locally; no pickle).

    Args:
        index: the index.
        path: the directory; with no ``fs``, a URL (``s3://bucket/idx``) names its filesystem.
        fs: an fsspec filesystem; None or a local one writes ``path`` directly, any other gets
            the files of a local save uploaded, the manifest last.

    Raises:
        ValueError: ``path`` is a URL and fsspec (or the filesystem's package) is missing.
        OutputDirectoryError: ``path`` on ``fs`` holds a ``manifest.json`` that is not an index's.
    """
    path, fs = _filesystem_of(path, fs)
    if _is_local(fs):
        Path(path).mkdir(parents=True, exist_ok=True)
        index.save(Path(path))
        return
    with tempfile.TemporaryDirectory(prefix="m2v-upload-") as scratch:
        index.save(Path(scratch) / "index")
        _upload(Path(scratch) / "index", str(path), fs)


def open_index(path: str | os.PathLike[str], fs: Any = None, *,
               model: StaticModel | str | os.PathLike[str] | None = None, external: bool = False,
               embedder: str = "another embedding model") -> tuple[VectorIndex, str | None]:
    """Open an index directory (checksums verified before anything is parsed).

    Args:
        path: the directory (on ``fs`` when given; with no ``fs``, a URL names its filesystem).
        fs: an fsspec filesystem; a non-local one is downloaded to a private temporary folder.
        model: the model to search with (None: the one recorded in the index).
        external: the caller embeds with a non-m2v model, so the index must hold external vectors.
        embedder: how errors name the caller's embedding model.

    Returns:
        The index, and the temporary folder it was downloaded to (None for a local path); the
        caller removes that folder once the index is no longer used.

    Raises:
        IndexNotFoundError: no index at ``path``.
        IndexCorruptError: a file is missing or fails its checksum, or the manifest is malformed.
        ModelMismatchError: the index was built with another model, or for vectors of another kind.
    """
    from m2v_search.index import ModelMismatchError, VectorIndex

    path, fs = _filesystem_of(path, fs)
    scratch = None if _is_local(fs) else tempfile.mkdtemp(prefix="m2v-download-")
    try:
        local = Path(path) if scratch is None else Path(scratch) / "index"
        if scratch is not None:
            _download(str(path), local, fs)
        try:
            index = VectorIndex.open(local, model=None if external else model)
        except ModelMismatchError as error:
            if external:
                raise ModelMismatchError(f"{path} was built with an m2v model; its documents cannot be "
                                         f"searched with {embedder} vectors ({error})") from error
            raise
        if external and index.model is not None:
            index.close()
            raise ModelMismatchError(f"{path} was built with the m2v model {index.model.name!r}; its "
                                     f"documents cannot be searched with {embedder} vectors")
    except BaseException:
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)
        raise
    return index, scratch


_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://")


def _filesystem_of(path: str | os.PathLike[str], fs: Any) -> tuple[str | os.PathLike[str], Any]:
    """``(path, fs)``, where a URL given without ``fs`` is resolved to its fsspec filesystem (a
    local path would otherwise make a folder named ``s3:`` here, and nothing would reach S3)."""
    if fs is not None or not isinstance(path, str) or not _URL.match(path):
        return path, fs
    from m2v_search.index.urls import redact, refuse_credentials, storage_options  # never a secret in a message

    refuse_credentials(path)
    try:
        import fsspec

        fs, resolved = fsspec.core.url_to_fs(path, **storage_options(path))
    except (ImportError, ValueError) as error:
        raise ValueError(f"{redact(path)} is a URL, but its filesystem is not available ({error}); install fsspec and "
                         "the filesystem's package (e.g. s3fs), or pass fs=") from None
    return resolved, fs


def _is_local(fs: Any) -> bool:
    if fs is None:
        return True
    protocol = getattr(fs, "protocol", "file")
    protocols = {protocol} if isinstance(protocol, str) else set(protocol)
    return bool({"file", "local"} & protocols)


def _upload(local: Path, remote: str, fs: Any) -> None:
    """Copy a saved index directory to ``fs``: data files first, the manifest last, then drop the
    files that only the replaced manifest listed (a reader of the old manifest still finds its
    files until then). Nothing else in ``remote`` is touched."""
    from m2v_search.index.remote import refuse_foreign_manifest

    fs.makedirs(remote, exist_ok=True)
    root = remote.rstrip("/")
    old_manifest = f"{root}/manifest.json"
    old = fs.cat_file(old_manifest) if fs.exists(old_manifest) else None
    refuse_foreign_manifest(_json_or_none(old), root)
    replaced = _manifest_files(old) if old is not None else None
    names = sorted(p.name for p in local.iterdir() if p.is_file() and not p.name.startswith("."))
    manifest = [n for n in names if n == "manifest.json"]
    for name in [n for n in names if n != "manifest.json"] + manifest:
        fs.put_file(str(local / name), f"{root}/{name}")
    for name in sorted((replaced or set()) - set(names)):
        if fs.exists(f"{root}/{name}"):
            fs.rm_file(f"{root}/{name}")


def _download(remote: str, local: Path, fs: Any) -> None:
    """Copy the manifest of an index directory from ``fs`` and the files it lists (the index
    verifies them on open); other files there are left alone."""
    from m2v_search.index import IndexCorruptError, IndexNotFoundError

    root = remote.rstrip("/")
    if not fs.exists(f"{root}/manifest.json"):
        raise IndexNotFoundError(f"{remote}: no m2v-search index there (no manifest.json) on {fs.protocol}")
    local.mkdir(parents=True)
    fs.get_file(f"{root}/manifest.json", str(local / "manifest.json"))
    listed = _manifest_files((local / "manifest.json").read_bytes())
    if listed is None:
        raise IndexCorruptError(f"{remote}/manifest.json is not an m2v-search manifest (no 'files' listing)")
    for name in sorted(listed):
        if fs.exists(f"{root}/{name}"):
            fs.get_file(f"{root}/{name}", str(local / name))


def _json_or_none(data: bytes | None) -> Any:
    """``data`` parsed as JSON; None when missing or not JSON."""
    import json

    try:
        return None if data is None else json.loads(data)
    except (ValueError, RecursionError):
        return None


def _manifest_files(manifest: bytes) -> set[str] | None:
    """The data files a manifest lists (plain names only), or None when it is not a manifest."""
    from m2v_search.index.manifest_schema import is_plain_name

    parsed = _json_or_none(manifest)
    files = parsed.get("files") if isinstance(parsed, dict) else None
    if not isinstance(files, dict):
        return None
    return {name for name in files if is_plain_name(name) and name != "manifest.json"}
