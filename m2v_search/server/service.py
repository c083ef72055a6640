"""The index behind the server: lock-free reads of a committed snapshot, one writer thread.

Readers lease the current snapshot (a :class:`VectorIndex` whose state is on disk) and search
it; they never wait for a write. Writes are queued to one writer thread, which opens the
committed index afresh, applies every queued write to that copy, saves it (a new generation,
atomically), and then swaps it in as the snapshot new readers get. A snapshot that was
swapped out is closed once its last reader is done. A failed write leaves the served snapshot
untouched (copy-on-write), so a reader sees the state before or after a commit, never between.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from m2v_search.errors import M2VSearchError
from m2v_search.index.errors import IndexConflictError

if TYPE_CHECKING:  # pragma: no cover
    from m2v_search.index import VectorIndex
    from m2v_search.model import StaticModel

log = logging.getLogger("m2v_search.server")

MAX_WRITES_PER_COMMIT = 256
_CONFLICT_RETRIES = 2


class ReadOnlyError(M2VSearchError, RuntimeError):
    """The served index cannot be written (no directory, or the server was started read-only)."""


class WriterBusyError(M2VSearchError, RuntimeError):
    """Too many writes are waiting for the writer thread (or it is shutting down); retry later."""


@dataclass
class WriteResult:
    """What one write did: ``value`` as its ``apply`` returned it, ``changed``: whether it
    modified the index (only then is a new generation saved)."""

    value: Any
    changed: bool


@dataclass
class _WriteRequest:
    apply: Callable[[VectorIndex], WriteResult]
    future: Future[Any] = field(default_factory=Future)


@dataclass
class _Snapshot:
    index: VectorIndex
    owned: bool
    readers: int = 0
    retired: bool = False


class IndexService:
    """A served index: concurrent readers, writes serialized in one background thread.

    Args:
        index: the index to serve first (its committed state, if it is to be written).
        owned: close ``index`` when it is replaced or the service stops (False: the caller's).
        writable: accept writes; they need ``index.path``.
        max_pending_writes: writes allowed to wait for the writer thread.
    """

    def __init__(self, index: VectorIndex, *, owned: bool, writable: bool = True,
                 max_pending_writes: int = 64) -> None:
        self._current = _Snapshot(index, owned)
        self._swap_lock = threading.Lock()
        self.path: Path | None = None if index.path is None else Path(index.path)
        self.writable = writable and self.path is not None
        self.model: StaticModel | None = index.model
        self.commits = 0
        self._queue: queue.Queue[_WriteRequest | None] = queue.Queue()
        self._max_pending = max_pending_writes
        self._submit_lock = threading.Lock()
        self._stopped = threading.Event()
        self._writer: threading.Thread | None = None
        if self.writable:
            self._writer = threading.Thread(target=self._write_loop, name="m2v-index-writer", daemon=True)
            self._writer.start()

    @classmethod
    def open(cls, path: str | Path, *, writable: bool = True, max_pending_writes: int = 64) -> IndexService:
        """Serve the index directory ``path`` (checksums verified as it opens).

        Raises:
            IndexNotFoundError: ``path`` holds no index.
            IndexCorruptError: a file of the index fails its checksum.
            ModelMismatchError, ModelLoadError: the index's model cannot be loaded.
        """
        from m2v_search.index import VectorIndex

        return cls(VectorIndex.open(path), owned=True, writable=writable, max_pending_writes=max_pending_writes)

    # ------------------------------------------------------------------ reads
    @contextmanager
    def reading(self) -> Iterator[VectorIndex]:
        """The current snapshot, kept open until the ``with`` block ends (never blocked by a write)."""
        with self._swap_lock:
            snapshot = self._current
            snapshot.readers += 1
        try:
            yield snapshot.index
        finally:
            with self._swap_lock:
                snapshot.readers -= 1
                done = snapshot.retired and snapshot.readers == 0
            if done:
                self._dispose(snapshot)

    # ------------------------------------------------------------------ writes
    def submit(self, apply: Callable[[VectorIndex], WriteResult]) -> Future[Any]:
        """Queue a write; the future gets ``apply``'s value once it is committed to disk.

        ``apply`` runs in the writer thread on a fresh copy of the committed index; if it raises,
        its future gets the error and nothing of it is kept.

        Raises:
            ReadOnlyError: the index cannot be written.
            WriterBusyError: too many writes are waiting, or the service is stopping.
        """
        if not self.writable:
            reason = "the server was started read-only" if self.path is not None else "the index has no directory"
            raise ReadOnlyError(f"this index is read-only: {reason}")
        request = _WriteRequest(apply)
        with self._submit_lock:
            if self._stopped.is_set():
                raise _shutting_down()
            if self._queue.qsize() >= self._max_pending:
                raise WriterBusyError(f"{self._max_pending} writes are already waiting; retry later")
            self._queue.put(request)
        return request.future

    def _write_loop(self) -> None:
        while True:
            first = self._queue.get()
            if first is None or self._stopped.is_set():
                if first is not None:
                    self._fail([first], _shutting_down())
                break
            batch, stop = [first], False
            while len(batch) < MAX_WRITES_PER_COMMIT:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    stop = True
                    break
                batch.append(item)
            try:
                self._commit(batch)
            except Exception as error:  # noqa: BLE001 - the writer thread must outlive any one batch
                log.exception("writing to %s failed", self.path)
                self._fail(batch, error)
            if stop:
                break
        self._fail_waiting()

    def _commit(self, batch: list[_WriteRequest]) -> None:
        """Apply ``batch`` to a fresh copy of the index, save it once, swap it in, resolve the futures.

        A write that raises is dropped and the rest applied again to another fresh copy, so that
        nothing of a failed write is kept; a conflict with another process's writer is retried.
        """
        pending = [request for request in batch if request.future.set_running_or_notify_cancel()]
        conflicts = 0
        while pending:
            try:
                writer = self._fresh_copy()
            except Exception as error:  # noqa: BLE001 - every waiting request gets the error
                self._fail(pending, error)
                return
            results, failed = self._apply_all(writer, pending)
            if failed is not None:
                writer.close()
                pending.remove(failed[0])
                failed[0].future.set_exception(failed[1])
                continue
            if not any(result.changed for result in results):
                writer.close()
            else:
                try:
                    writer.save()
                except IndexConflictError as error:
                    writer.close()
                    conflicts += 1
                    if conflicts <= _CONFLICT_RETRIES:
                        log.info("another process wrote %s; applying %d writes again", self.path, len(pending))
                        continue
                    self._fail(pending, error)
                    return
                except Exception as error:  # noqa: BLE001 - a failed save leaves the served snapshot as it was
                    writer.close()
                    self._fail(pending, error)
                    return
                self._swap(writer)
            for request, result in zip(pending, results):
                request.future.set_result(result.value)
            return

    def _fresh_copy(self) -> VectorIndex:
        from m2v_search.index import VectorIndex

        assert self.path is not None
        return VectorIndex.open(self.path, model=self.model)

    @staticmethod
    def _apply_all(writer: VectorIndex, pending: list[_WriteRequest]
                   ) -> tuple[list[WriteResult], tuple[_WriteRequest, BaseException] | None]:
        results: list[WriteResult] = []
        for request in pending:
            try:
                results.append(request.apply(writer))
            except Exception as error:  # noqa: BLE001 - the copy is thrown away: nothing of it is kept
                return results, (request, error)
        return results, None

    def _swap(self, index: VectorIndex) -> None:
        with self._swap_lock:
            old = self._current
            self._current = _Snapshot(index, owned=True)
            old.retired = True
            done = old.readers == 0
            self.commits += 1
        if done:
            self._dispose(old)

    @staticmethod
    def _dispose(snapshot: _Snapshot) -> None:
        if snapshot.owned:
            snapshot.index.close()

    @staticmethod
    def _fail(requests: list[_WriteRequest], error: BaseException) -> None:
        for request in requests:
            if not request.future.done():
                request.future.set_exception(error)

    def _fail_waiting(self) -> None:
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                return
            if item is not None and item.future.set_running_or_notify_cancel():
                item.future.set_exception(_shutting_down())

    # ------------------------------------------------------------------ lifetime
    def close(self, timeout: float | None = 30.0) -> None:
        """Finish the write in progress, refuse the waiting ones, and close the snapshot."""
        with self._submit_lock:
            if self._stopped.is_set():
                return
            self._stopped.set()
            self._queue.put(None)
        if self._writer is not None:
            self._writer.join(timeout)
        with self._swap_lock:
            snapshot = self._current
            snapshot.retired = True
            done = snapshot.readers == 0
        if done:
            self._dispose(snapshot)


def _shutting_down() -> WriterBusyError:
    return WriterBusyError("the server is shutting down; the write was not applied")
