"""Building an index directory from a streamed corpus, with checkpoints and ``resume``.

The build writes checkpoints (complete, verifiable generations) into ``DIR/.build/`` every
``checkpoint_every`` records; the index in ``DIR`` itself is replaced only when the whole
corpus is in. A killed build therefore leaves the previous index untouched, and ``resume``
reopens the last checkpoint and skips the records already stored with the same content.
"""

from __future__ import annotations

import logging
import shutil
import time
from contextlib import contextmanager
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import TYPE_CHECKING, Any

from m2v_search.index.corpus import CorpusReader
from m2v_search.index.errors import CorpusError
from m2v_search.index.locking import WriterLock
from m2v_search.index.manifest import MANIFEST_NAME
from m2v_search.index.store import Record, VectorIndex

if TYPE_CHECKING:  # pragma: no cover
    from m2v_search.model import StaticModel

log = logging.getLogger("m2v_search.index")
STAGING = ".build"


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

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


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
                allow_model_mismatch: bool = False, show_progress: bool = True) -> BuildReport:
    """Index ``corpus`` into ``directory`` (replacing any index there only at the very end)."""
    directory = Path(directory)
    started = time.perf_counter()
    with WriterLock.for_directory(directory):
        staging = directory / STAGING
        resumed = False
        if resume and (staging / MANIFEST_NAME).exists():
            vectors = VectorIndex.open(staging, model=model, allow_model_mismatch=allow_model_mismatch)
            resumed = True
            log.info("resuming from the checkpoint in %s (%d documents)", staging, len(vectors))
        else:
            if resume:
                log.info("no checkpoint in %s: building from the start", staging)
            if staging.exists():
                shutil.rmtree(staging)
            vectors = VectorIndex.create(None, model, index=index, factory=factory, memory_budget=memory_budget)
        try:
            vectors.build_info = {"complete": False, "corpus": corpus.name}

            def checkpoint() -> None:
                staging.mkdir(parents=True, exist_ok=True)
                vectors.save(staging, finalize=False)
                log.debug("checkpoint: %d documents in %s", len(vectors), staging)

            with progress_bar(show_progress, "Indexing") as progress:
                read, added, replaced, unchanged = stream_upsert(
                    vectors, corpus, batch_size=batch_size, progress=progress, checkpoint=checkpoint,
                    checkpoint_every=checkpoint_every)
            if read == 0 and not resumed:
                raise CorpusError(f"{corpus.name}: no records (read {corpus.lines} lines, "
                                  f"{corpus.skipped} invalid); the previous index, if any, is unchanged")
            seconds = time.perf_counter() - started
            vectors.build_info = {"complete": True, "corpus": corpus.name, "records": read,
                                  "skipped_invalid": corpus.skipped, "seconds": round(seconds, 3)}
            vectors.save(directory)
            if staging.exists():
                shutil.rmtree(staging)
            seconds = time.perf_counter() - started
            return BuildReport(str(directory), len(vectors), read, added, replaced, unchanged, corpus.skipped,
                               resumed, round(seconds, 3), round(read / seconds, 1) if seconds else 0.0,
                               vectors.factory)
        finally:
            vectors.close()


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
