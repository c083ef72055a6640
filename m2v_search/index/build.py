"""Building an index directory from a streamed corpus, with checkpoints and ``resume``.

The build writes checkpoints (complete, verifiable generations) into ``DIR/.build/`` every
``checkpoint_every`` records; the index in ``DIR`` itself is replaced only when the whole
corpus is in. A killed build therefore leaves the previous index untouched, and ``resume``
reopens the last checkpoint and skips the records already stored with the same content.

What a build may delete: only a ``DIR/.build`` holding the marker (``build.json``) that a build
writes when it creates that folder, and only once this build has a checkpoint of its own to put
there, or at the end. A ``.build`` without the marker is never touched (the build refuses to
start). ``DIR`` must be new, empty, or an index already, unless ``force`` (its other files are
then left alone). ``resume`` checks that the corpus is the one the checkpoint was made from
(path, size and sha256 of its first MiB) and refuses another.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import stat
import tempfile
import time
from contextlib import contextmanager
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from m2v_search.index.corpus import CorpusReader
from m2v_search.index.errors import CorpusError, OutputDirectoryError
from m2v_search.index.locking import LOCK_NAME, WriterLock, open_plain_file
from m2v_search.index.manifest import MANIFEST_NAME, fsync_dir, refuse_foreign_manifest
from m2v_search.index.store import Record, VectorIndex

if TYPE_CHECKING:  # pragma: no cover
    from m2v_search.model import StaticModel

log = logging.getLogger("m2v_search.index")
STAGING = ".build"
OLD_INFIX = ".old-"  # ".build.old-*": checkpoints renamed away at the end of a build, being deleted
BUILD_MARKER = "build.json"  # in STAGING: written by the build that created the folder
MARKER_FORMAT = "m2v-search-build-checkpoint"
_IDENTITY_BYTES = 1 << 20


@dataclass
class BuildReport:
    directory: str
    documents: int
    records_read: int
    added: int
    replaced: int
    unchanged: int
    skipped_invalid: int
    resumed: bool
    seconds: float
    texts_per_second: float
    factory: str
    duplicate_ids: int = 0
    id_type_collisions: int = 0

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def warn_repeated_ids(corpus: Any) -> None:
    """Log how many records of ``corpus`` (a reader, after reading) repeated an earlier record's id."""
    if corpus.duplicates:
        log.warning("%s: %d record(s) repeated an id of an earlier record (%d of them an integer id matching a "
                    "string id); the later record of each id was kept", corpus.name, corpus.duplicates,
                    corpus.id_type_collisions)


def stream_upsert(index: VectorIndex, records: Iterable[Record], *, batch_size: int, progress: Any = None,
                  checkpoint: Any = None, checkpoint_every: int = 0) -> tuple[int, int, int, int]:
    """Upsert ``records`` batch by batch; returns (read, added, replaced, unchanged)."""
    read = added = replaced = unchanged = 0
    since_checkpoint = 0
    iterator: Iterator[Record] = iter(records)
    while True:
        batch = list(islice(iterator, batch_size))
        if not batch:
            break
        index.upsert(batch, batch_size=len(batch))
        stats = index.last_upsert
        read += len(batch)
        added, replaced, unchanged = added + stats.added, replaced + stats.replaced, unchanged + stats.skipped
        since_checkpoint += len(batch)
        if progress is not None:
            progress.update(len(batch))
        if checkpoint is not None and checkpoint_every and since_checkpoint >= checkpoint_every:
            checkpoint()
            since_checkpoint = 0
    return read, added, replaced, unchanged


def build_index(corpus: CorpusReader, directory: str | Path, *, model: StaticModel | str | None = None,
                index: str = "auto", factory: str | None = None, memory_budget: int | None = None,
                batch_size: int = 4096, resume: bool = False, checkpoint_every: int = 100_000,
                allow_model_mismatch: bool = False, show_progress: bool = True, force: bool = False,
                lexical: bool | str = True, rescore: int | None = None) -> BuildReport:
    """Index ``corpus`` into ``directory``, replacing any index there only at the very end.

    Args:
        corpus: the records to index.
        directory: the index directory: new, empty, or holding an index (see ``force``).
        model: the model encoding the texts (default: the bundled model).
        index: index kind (``auto``, ``flat``, ``hnsw``, ``ivf``, ``ivf-pq``, ``binary``, ``binary-hnsw``).
        factory: a FAISS factory string, overriding ``index``.
        memory_budget: bytes the ``auto`` choice may use.
        batch_size: records encoded per batch (>= 1).
        resume: continue from the checkpoint in ``directory/.build`` (made from this same corpus).
        checkpoint_every: records between checkpoints (0: none).
        allow_model_mismatch: resume with another model than the checkpoint's.
        show_progress: a progress bar on stderr.
        force: build into a non-empty directory that holds no index (other files are left alone).
        lexical: keep a lexical (BM25) part: True (English), a Snowball language, or False for none.
        rescore: binary kinds: candidates re-scored per query (default: recall@10 >= 0.99).

    Returns:
        What was read, added, replaced, skipped and repeated, and how fast.

    Raises:
        OutputDirectoryError: ``directory`` is a file, a non-empty directory that is not an index
            (without ``force``), or holds a ``.build`` folder that no build made.
        CorpusError: a bad record, no records, or ``resume`` with another corpus.
    """
    directory = Path(directory)
    started = time.perf_counter()
    refuse_file_output(directory)
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    check_output_directory(directory, force, before_lock=True)
    created = [folder for folder in (directory, *directory.parents) if not folder.exists()]
    with WriterLock.for_directory(directory):  # a second build refused here removes nothing of the first's
        try:
            return _build_locked(corpus, directory, model, index, factory, memory_budget, batch_size, resume,
                                 checkpoint_every, allow_model_mismatch, show_progress, force, lexical, rescore,
                                 started)
        except BaseException:
            _remove_if_only_the_lock(created)  # a build that wrote nothing leaves no folders behind
            raise


def _remove_if_only_the_lock(created: list[Path]) -> None:
    """Remove the folders (deepest first) this build created, while each holds nothing but the
    writer lock file: a build that failed before writing anything leaves the file system as it was.
    Called under the lock, so the lock file is this build's own (held, so no other writer is inside)."""
    for folder in created:
        try:
            if {entry.name for entry in os.scandir(folder)} <= {LOCK_NAME}:
                (folder / LOCK_NAME).unlink(missing_ok=True)
                folder.rmdir()
        except OSError:
            return


def _build_locked(corpus: CorpusReader, directory: Path, model: StaticModel | str | None, index: str,
                  factory: str | None, memory_budget: int | None, batch_size: int, resume: bool,
                  checkpoint_every: int, allow_model_mismatch: bool, show_progress: bool, force: bool,
                  lexical: bool | str, rescore: int | None, started: float) -> BuildReport:
    """``build_index`` under the directory's writer lock."""
    _remove_abandoned_new_folders(directory)
    check_output_directory(directory, force)
    staging = _Staging(directory / STAGING, corpus)
    vectors = staging.open_checkpoint(model, allow_model_mismatch) if resume else None
    resumed = vectors is not None
    if vectors is None:
        vectors = VectorIndex.create(None, model, index_kind=index, factory=factory, memory_budget=memory_budget,
                                     lexical=lexical, rescore=rescore)
    try:
        vectors.build_info = {"complete": False, "corpus": corpus.name}
        with progress_bar(show_progress, "Indexing") as progress:
            read, added, replaced, unchanged = stream_upsert(
                vectors, corpus, batch_size=batch_size, progress=progress,
                checkpoint=lambda: staging.save(vectors, resumed), checkpoint_every=checkpoint_every)
        if read == 0 and not resumed:
            raise CorpusError(f"{corpus.name}: no records (read {corpus.lines} lines, "
                              f"{corpus.skipped} invalid); the previous index, if any, is unchanged")
        warn_repeated_ids(corpus)
        seconds = time.perf_counter() - started
        vectors.build_info = {"complete": True, "corpus": corpus.name, "records": read,
                              "skipped_invalid": corpus.skipped, "duplicate_ids": corpus.duplicates,
                              "seconds": round(seconds, 3)}
        vectors.save(directory)
        staging.remove()
        seconds = time.perf_counter() - started
        return BuildReport(str(directory), len(vectors), read, added, replaced, unchanged, corpus.skipped,
                           resumed, round(seconds, 3), round(read / seconds, 1) if seconds else 0.0,
                           vectors.factory, corpus.duplicates, corpus.id_type_collisions)
    finally:
        vectors.close()


def _remove_abandoned_new_folders(directory: Path) -> None:
    """Delete ``.build.new-*`` folders that hold at most a build marker: a build killed between
    making one and renaming it to ``.build`` leaves it. Only called under the writer lock, so no
    build is making one now; a folder with anything else in it is left alone. ``.build.old-*``
    folders (a finished build's checkpoints, renamed away, whose deletion was cut short) go too."""
    prefix = STAGING + ".new-"
    for entry in os.scandir(directory):
        if entry.name.startswith(STAGING + OLD_INFIX) and entry.is_dir(follow_symlinks=False):
            shutil.rmtree(entry.path, ignore_errors=True)
            log.debug("removed %s, left by a build stopped while deleting its checkpoints", entry.path)
            continue
        if not entry.name.startswith(prefix) or not entry.is_dir(follow_symlinks=False):
            continue
        contents = os.listdir(entry.path)
        if set(contents) <= {BUILD_MARKER} and not os.path.islink(os.path.join(entry.path, BUILD_MARKER)):
            shutil.rmtree(entry.path)
            log.debug("removed %s, left by a build killed while making its folder", entry.path)


def refuse_file_output(directory: Path) -> None:
    """Refuse an output path that is a file (before a writer lock is taken next to it).

    Raises:
        OutputDirectoryError: ``directory`` exists and is not a directory.
    """
    if directory.exists() and not directory.is_dir():
        raise OutputDirectoryError(f"{directory} is a file; the output (-o) names the index directory to create")
    for parent in directory.parents:  # the nearest existing folder above it must be a folder too
        if parent.exists():
            if not parent.is_dir():
                raise OutputDirectoryError(f"{parent} is a file, so {directory} cannot be created inside it")
            break


def check_output_directory(directory: Path, force: bool, staging: str = STAGING, *, before_lock: bool = False
                           ) -> None:
    """Refuse a non-empty directory that holds no index, unless ``force`` (call it under the writer lock;
    also before taking it, with ``before_lock``, so that a refused folder does not get a ``.lock``).

    Args:
        directory: the output directory (a missing one passes).
        force: build into it anyway (its other files are left alone).
        staging: the name of the build's own staging folder there (not counted as another file).
        before_lock: also pass folders a killed build left (``.build.new-*``), which the build
            removes under the lock before the strict check.

    Raises:
        OutputDirectoryError: ``directory`` holds files and no index, and ``force`` is False.
    """
    if not directory.is_dir():
        return
    if (directory / MANIFEST_NAME).exists() and refuse_foreign_manifest(
            directory, "give the index a directory of its own (--force does not change that)"):
        return
    if force:
        return
    others = sorted(name for name in os.listdir(directory) if name not in (LOCK_NAME, staging)
                    and not (before_lock and name.startswith(STAGING + ".new-")) and not _left_by_a_writer(name))
    if others:
        shown = ", ".join(others[:5]) + (f" and {len(others) - 5} more" if len(others) > 5 else "")
        raise OutputDirectoryError(
            f"{directory} is not empty and holds no index ({shown}); give a new or empty directory, or pass "
            "--force to build into it (its other files are left alone)")


def _left_by_a_writer(name: str) -> bool:
    """Names this library's writers give files in transit (a killed build's or add's leftovers, which
    the next commit removes): not a user's files."""
    from m2v_search.index.generations import PENDING_FILE, STAGED_FILE
    from m2v_search.index.manifest import TEMP_PREFIX

    return (bool(STAGED_FILE.fullmatch(name) or PENDING_FILE.fullmatch(name)) or name.startswith(TEMP_PREFIX)
            or name.startswith(STAGING + OLD_INFIX))


def corpus_identity(source: str | Path) -> dict[str, Any] | None:
    """Path, size and sha256 of the first MiB of a corpus file; None for stdin or a pipe."""
    if str(source) == "-":
        return None
    path = Path(source).resolve()
    try:
        info = path.stat()
        if not stat.S_ISREG(info.st_mode):
            return None
        with open(path, "rb") as handle:
            head = handle.read(_IDENTITY_BYTES)
    except OSError:
        return None  # the reader reports the problem with the file
    return {"path": str(path), "bytes": info.st_size, "sha256_first_mib": hashlib.sha256(head).hexdigest()}


class _Staging:
    """``DIR/.build``: checkpoints of one build, with the marker that says a build made the folder."""

    def __init__(self, path: Path, corpus: CorpusReader) -> None:
        self.path = path
        self.corpus = corpus
        self.identity = corpus_identity(corpus.source)
        self.created = False  # by this build
        self.marker = self._read_marker()

    def _read_marker(self) -> dict[str, Any] | None:
        """The marker of an existing folder; raises if the folder exists without one."""
        if not os.path.lexists(self.path):
            return None
        marker = self.path / BUILD_MARKER
        try:
            if self.path.is_symlink() or not self.path.is_dir() or marker.is_symlink():
                raise ValueError
            content = json.loads(marker.read_text(encoding="utf-8"))
            if not isinstance(content, dict) or content.get("format") != MARKER_FORMAT:
                raise ValueError
        except (OSError, ValueError):
            raise OutputDirectoryError(
                f"{self.path} exists but was not made by an m2v-index build (no valid {BUILD_MARKER} in it); "
                "it is left alone: move it away or remove it, then build again") from None
        return content

    def open_checkpoint(self, model: Any, allow_model_mismatch: bool) -> VectorIndex | None:
        """The checkpoint to resume from, if there is one made from this corpus."""
        if self.marker is None or not (self.path / MANIFEST_NAME).exists():
            log.info("no checkpoint in %s: building from the start", self.path)
            return None
        made_from = self.marker.get("corpus")
        recorded_name = self.marker.get("corpus_name")
        if self.identity is None and recorded_name is not None and recorded_name != self.corpus.name:
            raise CorpusError(f"--resume: the checkpoint in {self.path} was made from {recorded_name}, not from "
                              f"{self.corpus.name}; resume with that corpus, or build without --resume to start over")
        if made_from is None or self.identity is None:
            log.warning("cannot check that %s is the corpus the checkpoint in %s was made from (%s); resuming",
                        self.corpus.name, self.path, self.marker.get("corpus_name"))
        elif made_from != self.identity:
            same_size = made_from.get("bytes") == self.identity["bytes"]
            raise CorpusError(
                f"--resume: the checkpoint in {self.path} was made from {made_from.get('path')} "
                f"({made_from.get('bytes')} bytes), not from this corpus {self.identity['path']} "
                f"({self.identity['bytes']} bytes{', other content' if same_size else ''}); "
                "resume with that corpus, or build without --resume to start over")
        vectors = VectorIndex.open(self.path, model=model, allow_model_mismatch=allow_model_mismatch)
        log.info("resuming from the checkpoint in %s (%d documents)", self.path, len(vectors))
        return vectors

    def save(self, vectors: VectorIndex, resumed: bool) -> None:
        """Write a checkpoint; the first one of a fresh build replaces an older build's folder."""
        if not self.created and not resumed:
            self.remove()
            self._create_with_marker()
            self.marker, self.created = {"format": MARKER_FORMAT}, True
        vectors.save(self.path, finalize=False)
        log.debug("checkpoint: %d documents in %s", len(vectors), self.path)

    def _create_with_marker(self) -> None:
        """Create the folder with its marker in one step: the marker is written and fsynced in a
        new folder beside it, which is then renamed into place (a crash cannot leave a
        ``.build`` without a marker, which later builds would refuse to touch)."""
        fresh = Path(tempfile.mkdtemp(prefix=f"{self.path.name}.new-", dir=self.path.parent))  # a name no one has
        fd = open_plain_file(fresh / BUILD_MARKER, os.O_WRONLY | os.O_CREAT | os.O_EXCL)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump({"format": MARKER_FORMAT, "corpus": self.identity, "corpus_name": self.corpus.name,
                       "pid": os.getpid(), "created": time.strftime("%Y-%m-%dT%H:%M:%S%z")}, handle)
            handle.write("\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.rename(fresh, self.path)
        fsync_dir(self.path.parent)

    def remove(self) -> None:
        """Delete the folder if a build made it (the marker says so); never anything else.

        It is renamed away first (one step), then deleted: a signal or kill in the middle of the
        deletion leaves a ``.build.old-*`` folder, which the next writer removes, never a
        ``.build`` without its marker or files, which would block the next build."""
        if self.marker is None or not os.path.lexists(self.path):
            return
        self._read_marker()  # still ours?
        old = Path(tempfile.mkdtemp(prefix=f"{self.path.name}{OLD_INFIX}", dir=self.path.parent))
        os.rename(self.path, old / "build")
        self.marker = None
        shutil.rmtree(old)


@contextmanager
def progress_bar(enabled: bool, description: str) -> Iterator[Any]:
    """A tqdm progress bar on stderr counting texts (None when not ``enabled``), closed on exit."""
    if not enabled:
        yield None
        return
    from tqdm.auto import tqdm

    bar = tqdm(unit=" texts", desc=description, mininterval=0.5, smoothing=0.1, unit_scale=True)
    try:
        yield bar
    finally:
        bar.close()
