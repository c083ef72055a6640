"""Where the workers of a Dask build put their shard files: a shared folder or an fsspec URL.

With a folder (the default, ``DIR/.dask-build``), workers write into it and the driver reads
it in place: it must be the same path on every machine (NFS, a local cluster). A folder the
user names (``--staging /mnt/shared``) gets a fresh ``build-<id>/`` inside it, and only that is
ever removed: the folder's other files are not the build's. With a URL
(``--staging s3://bucket/tmp``), every build gets its own prefix ``URL/<build id>/``; workers
write a shard locally and upload it under a name fixed by its partition number, so a task
retried after a worker died overwrites the same objects (no duplicates), and the driver
downloads each shard into its local work folder before merging.

A marker object ``<prefix>/BUILDING`` exists while the build runs: workers refuse to write
once it is gone, so tasks still running after a cancelled build leave nothing behind.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import socket
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from m2v_search.index.remote import RemoteStorageError
from m2v_search.index.urls import filesystem, is_url, redact, storage_errors

log = logging.getLogger("m2v_search.distributed")
MARKER = "BUILDING"


def join(base: str, name: str) -> str:
    """``base/name`` for a folder path or a URL."""
    return f"{base.rstrip('/')}/{name}" if is_url(base) else str(Path(base) / name)


@dataclass
class Staging:
    """The driver's view: ``local`` work folder, and ``shared`` (what the workers write to)."""

    local: Path
    remote: str | None = None

    @property
    def shared(self) -> str:
        return self.remote if self.remote is not None else str(self.local)

    @classmethod
    def in_folder(cls, folder: Path) -> Staging:
        """Start a fresh staging area ``folder/build-<id>`` in a shared folder the user named;
        the folder's other contents are left alone."""
        return cls.create(folder / f"build-{uuid.uuid4().hex[:12]}", None)

    @classmethod
    def create(cls, local: Path, remote: str | None) -> Staging:
        """Start a fresh staging area (a leftover local one is removed first)."""
        if local.exists():
            shutil.rmtree(local)
        local.mkdir(parents=True)
        if remote is None:
            return cls(local)
        prefix = join(remote, f"build-{uuid.uuid4().hex[:12]}")
        fs, path = filesystem(prefix)
        try:
            with fs.open(f"{path}/{MARKER}", "wb") as marker:
                marker.write(b"m2v-search dask build in progress\n")
        except storage_errors() as error:  # a missing bucket, a mistyped endpoint, no permission...
            raise RemoteStorageError(f"cannot write the staging area {redact(prefix)}: {error}") from None
        log.info("staging shards under %s", redact(prefix))
        return cls(local, prefix)

    def remove(self, attempts: int = 20) -> None:
        """Delete the staging area (after a failure, cancelled tasks may still write: retry)."""
        if self.remote is not None:
            fs, path = filesystem(self.remote)
            try:
                fs.rm(path, recursive=True)
            except FileNotFoundError:
                pass
            except storage_errors() as error:
                log.warning("could not remove the staging prefix %s (%s); delete it by hand",
                            redact(self.remote), error)
        for _ in range(attempts):
            shutil.rmtree(self.local, ignore_errors=True)
            if not self.local.exists():
                return
            time.sleep(0.05)
        log.warning("could not remove the staging area %s entirely; delete it by hand", self.local)

    def fetch(self, sources: list[str]) -> list[str]:
        """Local paths for ``sources``: as they are in a shared folder; URLs are downloaded into
        the work folder (concurrently, by the filesystem's own bulk ``get``)."""
        if self.remote is None or not sources:
            return list(sources)
        folder = self.local / "downloaded"
        folder.mkdir(parents=True, exist_ok=True)
        fs, _ = filesystem(sources[0])
        remote_paths = [filesystem(source)[1] for source in sources]
        local = [str(folder / path.rsplit("/", 1)[-1]) for path in remote_paths]
        if len(set(local)) != len(local):
            raise ValueError("staging files to download share a name")
        with _storage("downloading shards from", self.shared):
            fs.get(remote_paths, local)
        return local


@contextlib.contextmanager
def _storage(action: str, url: str) -> Iterator[None]:
    """Object-storage errors of the body as RemoteStorageError naming ``url`` and the machine: a
    worker may lack the credentials or the endpoint setting the driver has."""
    try:
        yield
    except storage_errors() as error:
        raise RemoteStorageError(f"{action} {redact(url)} failed on {socket.gethostname()} (pid {os.getpid()}): "
                                 f"{error}; every worker needs the driver's access to the staging storage "
                                 "(credentials, endpoint)") from None


def check_open(shared_dir: str) -> None:
    """Raise unless the staging area of a running build exists (called by workers before writing)."""
    if is_url(shared_dir):
        root = shared_dir.rstrip("/").rsplit("/", 1)[0]  # the build prefix above "shards" or "ivf"
        fs, path = filesystem(join(root, MARKER))
        with _storage("reading", join(root, MARKER)):
            building = fs.exists(path)
        if not building:
            raise FileNotFoundError(f"staging prefix {redact(root)} is gone: the build was cancelled or "
                                    "finished")
        return
    # the driver makes the folder; never recreate it after a cancelled build removed it
    if not Path(shared_dir).is_dir():
        raise FileNotFoundError(f"staging directory {shared_dir} does not exist on this worker: it must be on "
                                "storage shared by the driver and every worker (or the build was cancelled)")


def publish(files: dict[str, Path], shared_dir: str) -> dict[str, str]:
    """Move finished local files (final name -> temporary path) into the staging area.

    Folder: one ``os.replace`` each. URL: one upload each (an object PUT is atomic); the
    temporaries are deleted. Returns final name -> path or URL.
    """
    published: dict[str, str] = {}
    if is_url(shared_dir):
        fs, root = filesystem(shared_dir)
        for name, temporary in files.items():
            with _storage("uploading", join(shared_dir, name)):
                fs.put_file(str(temporary), f"{root}/{name}")
            published[name] = join(shared_dir, name)
        return published
    for name, temporary in files.items():
        final = Path(shared_dir) / name
        os.replace(temporary, final)
        published[name] = str(final)
    return published


def scratch_dir(shared_dir: str) -> Path:
    """Where a worker writes a file before publishing it: in the shared folder itself (same
    filesystem, so the rename is atomic) or, for a URL, a fresh local temporary folder."""
    if is_url(shared_dir):
        return Path(tempfile.mkdtemp(prefix="m2v-shard-"))
    return Path(shared_dir)


def fetch_to_scratch(source: str, scratch: Path, name: str) -> str:
    """A local path for ``source`` on a worker (downloaded into ``scratch`` when it is a URL)."""
    if not is_url(source):
        return source
    fs, path = filesystem(source)
    local = scratch / name
    with _storage("downloading", source):
        fs.get_file(path, str(local))
    return str(local)


def publish_copy(local: Path, url: str) -> str:
    """Upload a copy of the driver's file ``local`` to ``url`` (for the workers); returns ``url``."""
    fs, path = filesystem(url)
    with _storage("uploading", url):
        fs.put_file(str(local), path)
    return url
