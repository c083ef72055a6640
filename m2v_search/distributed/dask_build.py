"""Building an index directory on a Dask cluster: workers encode, the driver merges shard by shard.

Phases (``build_index_dask``):

1. plan: the corpus is cut into partitions (byte ranges of JSONL files, whole gzip files, or
   the partitions of a Dask bag); workers count the newlines of each range so that every line
   keeps its number in the whole file (error messages, and ids of rows without an id);
2. encode: each worker loads the model once and writes one shard per partition (unit vectors
   ``.npy`` + records ``.jsonl``) under the staging directory, which must be shared storage;
3. docstore: the driver streams the shards' records into an on-disk SQLite docstore (same
   schema and rules as the single-machine build: int id = position in the corpus, a repeated
   id replaces the earlier record, an identical repeat is skipped);
4. index: flat indexes are streamed straight from the shard vectors into the FAISS file; IVF
   indexes get their coarse quantizer trained on the driver from a sample, the workers fill
   one IVF shard each, and the driver merges them with FAISS's on-disk inverted lists
   (``merge_ondisk``) before streaming the lists into the index file; other index types
   (HNSW, custom factories) are built in the driver's memory, shard by shard;
5. commit: the FAISS file, the docstore and ``manifest.json`` are written as a new generation
   with the index package's own writers, exactly as ``VectorIndex.save`` does.

The driver holds at most one chunk of one shard's vectors (plus the training sample, at most
100k vectors); the docstore lives on disk. The result opens with ``VectorIndex.open`` and the
``m2v-index`` commands like any other index directory.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import sqlite3
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from m2v_search.index import factory as factories
from m2v_search.index.backends import Backend, create_backend
from m2v_search.index.build import BuildReport
from m2v_search.index.corpus import CorpusOptions
from m2v_search.index.docstore import SCHEMA, DocStore
from m2v_search.index.errors import CorpusError
from m2v_search.index.locking import WriterLock
from m2v_search.index.generations import commit_generation
from m2v_search.index.model_binding import load_model as _load_model
from m2v_search.index.store import VectorIndex
from m2v_search.index.vectors import MAX_TRAIN as _MAX_TRAIN

if TYPE_CHECKING:  # pragma: no cover
    from m2v_search.distributed.worker import ShardInfo
    from m2v_search.model import StaticModel

log = logging.getLogger("m2v_search.distributed")
STAGING = ".dask-build"
DEFAULT_PARTITION_SIZE = 64 << 20   # bytes of JSONL per partition
CHUNK_ROWS = 65_536                 # vectors the driver reads at once from a shard
_DOC_BATCH = 4096                   # records per docstore transaction step


@dataclass
class DaskBuildReport(BuildReport):
    """``BuildReport`` of the single-machine build, plus what the cluster did."""

    engine: str = "dask"
    partitions: int = 0
    workers: int = 0
    scheduler: str = ""
    phases: dict[str, float] = field(default_factory=dict)


@dataclass
class _Plan:
    tasks: list[Any]          # FileBlock or dask Delayed partitions
    kind: str                 # "files" or "bag"
    name: str                 # the corpus, as the manifest records it


class _Counted:
    """Stands in for the FAISS index when the manifest is made (it reads ``ntotal`` and ``d``)."""

    def __init__(self, ntotal: int, dim: int) -> None:
        self.ntotal = ntotal
        self.d = dim


def build_index_dask(inputs: Any, output_dir: str | os.PathLike[str], *, model: StaticModel | str | None = None,
                     scheduler: str | None = None, client: Any = None, n_workers: int | None = None,
                     threads_per_worker: int = 1, partition_size: int = DEFAULT_PARTITION_SIZE,
                     index: str = "auto", factory: str | None = None, memory_budget: int | None = None,
                     id_field: str | None = None, text_field: str = "text", metadata_fields: list[str] | None = None,
                     skip_invalid: bool = False, batch_size: int = 4096,
                     staging_dir: str | os.PathLike[str] | None = None, show_progress: bool = True
                     ) -> DaskBuildReport:
    """Index ``inputs`` into ``output_dir`` on a Dask cluster (the index there is replaced only at the end).

    ``inputs``: a JSONL(.gz) file, a glob pattern, a list of them, or a Dask bag of JSON lines
    or dicts. ``scheduler``: the address of a running scheduler; ``client``: an existing
    ``distributed.Client``; with neither, a local cluster of ``n_workers`` processes (default:
    one per core) is started and closed. ``partition_size``: bytes of JSONL per task.
    ``staging_dir`` (default ``output_dir/.dask-build``) must be reachable by every worker and by
    the driver under the same path. Other arguments as in the single-machine build.
    """
    if factory is None and index not in factories.KINDS:
        raise ValueError(f"unknown index kind {index!r}; use one of {', '.join(factories.KINDS)}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    started = time.perf_counter()
    phases: dict[str, float] = {}
    directory = Path(output_dir)
    options = CorpusOptions(id_field=id_field, text_field=text_field, metadata_fields=metadata_fields,
                            skip_invalid=skip_invalid)
    if not _is_collection(inputs):  # bad paths fail before any cluster starts
        from m2v_search.distributed.partitions import expand_inputs

        inputs = expand_inputs(inputs)
    loaded, source = _load_model(model, None)
    with WriterLock.for_directory(directory):
        staging = Path(staging_dir) if staging_dir is not None else directory / STAGING
        if staging.exists():
            shutil.rmtree(staging)
        staging.mkdir(parents=True)
        worker_source = source
        if worker_source is None:  # an in-memory model: ship it as a folder in the staging area
            worker_source = str((staging / "model").resolve())
            loaded.save_pretrained(worker_source)
        try:
            with _cluster(client, scheduler, n_workers, threads_per_worker) as (dask_client, address):
                workers = len(dask_client.scheduler_info(n_workers=-1)["workers"])
                log.info("Dask build on %s (%d workers)", address, workers)
                mark = time.perf_counter()
                plan = _plan(dask_client, inputs, partition_size, options)
                phases["plan"] = time.perf_counter() - mark
                mark = time.perf_counter()
                shards = _encode(dask_client, plan, staging / "shards", options, worker_source, loaded.fingerprint,
                                 batch_size, show_progress)
                phases["encode"] = time.perf_counter() - mark
                mark = time.perf_counter()
                docs_path = staging / "docstore.sqlite"
                docs, counts, dead = _fill_docstore(docs_path, shards)
                phases["docstore"] = time.perf_counter() - mark
                try:
                    records = sum(s.rows for s in shards)
                    skipped = sum(s.skipped for s in shards)
                    live = docs.count()
                    if live == 0:
                        lines = sum(s.lines for s in shards)
                        raise CorpusError(f"{plan.name}: no records (read {lines} lines, {skipped} invalid); the "
                                          "previous index, if any, is unchanged")
                    requested = {"kind": "custom" if factory else index, "factory": factory,
                                 "memory_budget": memory_budget}
                    spec, faiss_index = _choose_index(requested, live, loaded.dim, shards, dead, phases)
                    build_info = {"complete": True, "corpus": plan.name, "records": records,
                                  "skipped_invalid": skipped, "engine": "dask", "partitions": len(shards),
                                  "workers": workers,
                                  "index_choice": factories.choice_reason(requested, live, loaded.dim)}
                    mark = time.perf_counter()
                    _commit(directory, staging, dask_client, loaded, source, spec, requested, faiss_index, docs,
                            shards, dead, live, build_info, started)
                    phases["merge_and_commit"] = time.perf_counter() - mark
                finally:
                    docs.close()
        finally:
            _remove_staging(staging)
    seconds = time.perf_counter() - started
    return DaskBuildReport(str(directory), live, records, counts["added"], counts["replaced"], counts["unchanged"],
                           skipped, False, round(seconds, 3), round(records / seconds, 1) if seconds else 0.0,
                           spec.factory, partitions=len(shards), workers=workers, scheduler=address,
                           phases={k: round(v, 3) for k, v in phases.items()})


def _remove_staging(staging: Path, attempts: int = 20) -> None:
    """Delete the staging area. After a failure, tasks already running on workers (cancelling
    does not stop them) may still drop a temporary file into it while it is removed: retry."""
    for _ in range(attempts):
        shutil.rmtree(staging, ignore_errors=True)
        if not staging.exists():
            return
        time.sleep(0.05)
    log.warning("could not remove the staging area %s entirely; delete it by hand", staging)


# ---------------------------------------------------------------------- cluster
@contextlib.contextmanager
def _cluster(client: Any, scheduler: str | None, n_workers: int | None, threads_per_worker: int
             ) -> Iterator[tuple[Any, str]]:
    if client is not None:
        yield client, str(client.scheduler.address)
        return
    from distributed import Client, LocalCluster

    if scheduler:
        with Client(scheduler) as remote:
            yield remote, scheduler
        return
    workers = n_workers or os.cpu_count() or 1
    if workers < 1:
        raise ValueError(f"n_workers must be >= 1, got {n_workers}")
    with LocalCluster(n_workers=workers, threads_per_worker=threads_per_worker, processes=True,
                      dashboard_address=":0", silence_logs=logging.ERROR) as cluster, Client(cluster) as local:
        yield local, f"local cluster ({workers} processes)"


# ---------------------------------------------------------------------- phases
def _plan(client: Any, inputs: Any, partition_size: int, options: CorpusOptions) -> _Plan:
    from m2v_search.distributed.partitions import count_newlines, expand_inputs, number_lines, split_file

    if _is_collection(inputs):
        if hasattr(inputs, "columns") and hasattr(inputs, "to_bag"):
            inputs = inputs.to_bag(index=False, format="dict")  # a Dask dataframe
        return _Plan(list(inputs.to_delayed()), "bag", f"dask bag {getattr(inputs, 'name', '')}".strip())
    files = expand_inputs(inputs)
    blocks = [block for path in files for block in split_file(path, partition_size)]
    counts = client.gather(client.map(count_newlines, blocks, pure=False))
    number_lines(blocks, counts)
    name = str(files[0]) if len(files) == 1 else f"{files[0]} (+{len(files) - 1} files)"
    return _Plan(blocks, "files", name)


def _is_collection(inputs: Any) -> bool:
    """A Dask bag or dataframe (anything with ``to_delayed``), rather than file names."""
    return hasattr(inputs, "to_delayed") and not isinstance(inputs, (str, os.PathLike))


def _encode(client: Any, plan: _Plan, shard_dir: Path, options: CorpusOptions, model_source: str,
            fingerprint: str, batch_size: int, show_progress: bool) -> list[ShardInfo]:
    from distributed import as_completed

    from m2v_search.distributed.worker import encode_block, encode_rows

    shard_dir.mkdir(parents=True, exist_ok=True)
    if plan.kind == "files":
        futures = [client.submit(encode_block, block, number, str(shard_dir), options, model_source, fingerprint,
                                 batch_size, pure=False) for number, block in enumerate(plan.tasks)]
    else:
        import dask

        delayed = [dask.delayed(encode_rows)(part, number, str(shard_dir), options, model_source, fingerprint,
                                             batch_size, plan.name, dask_key_name=f"m2v-encode-{uuid.uuid4().hex}")
                   for number, part in enumerate(plan.tasks)]
        futures = client.compute(delayed)
    progress = _progress(show_progress, len(futures))
    results: dict[int, ShardInfo] = {}
    try:
        for future in as_completed(futures):
            info = future.result()  # re-raises a worker's error (e.g. CorpusError naming file and line)
            results[info.partition] = info
            if progress is not None:
                progress.update(1)
                progress.set_postfix(texts=sum(r.rows for r in results.values()))
    except BaseException:
        client.cancel(futures)
        raise
    finally:
        if progress is not None:
            progress.close()
    return [results[number] for number in range(len(futures))]


def _fill_docstore(path: Path, shards: list[ShardInfo]) -> tuple[DocStore, dict[str, int], np.ndarray]:
    """Stream every shard's records into an on-disk docstore; int id = position in the corpus.

    Returns the docstore, counts (added, replaced, unchanged) and the sorted positions whose
    vectors must not enter the index (records replaced later, or identical repeats).
    """
    connection = sqlite3.connect(path, check_same_thread=False)
    connection.execute("PRAGMA journal_mode=OFF")   # staging file: a crash restarts the build
    connection.execute("PRAGMA synchronous=OFF")
    connection.executescript(SCHEMA)
    docs = DocStore(connection, readonly=False, source=path)
    total = sum(s.rows for s in shards)
    docs.set_meta("next_iid", str(total))
    counts = {"added": 0, "replaced": 0, "unchanged": 0}
    dead: list[int] = []
    position = 0
    for shard in shards:
        with open(shard.records, encoding="utf-8") as handle:
            while True:
                lines = [line for _, line in zip(range(_DOC_BATCH), handle)]
                if not lines:
                    break
                rows = [json.loads(line) for line in lines]
                position = _insert_batch(docs, rows, position, counts, dead)
        docs.commit()
    return docs, counts, np.unique(np.asarray(dead, dtype=np.int64))


def _insert_batch(docs: DocStore, rows: list[list[str]], position: int, counts: dict[str, int],
                  dead: list[int]) -> int:
    existing = docs.lookup(list(dict.fromkeys(row[0] for row in rows)))
    pending: dict[str, tuple[int, str, str, str, str]] = {}
    removed: list[int] = []
    for doc_id, text, meta, digest in rows:
        previous = pending.get(doc_id)
        if previous is not None:
            earlier, earlier_hash = previous[0], previous[4]
        elif doc_id in existing:
            earlier, earlier_hash = existing[doc_id]
        else:
            earlier, earlier_hash = None, None
        if earlier is None:
            pending[doc_id] = (position, doc_id, text, meta, digest)
            counts["added"] += 1
        elif earlier_hash == digest:  # the same record again: keep the first
            dead.append(position)
            counts["unchanged"] += 1
        else:  # a new version replaces the earlier one
            dead.append(earlier)
            if previous is None:
                removed.append(earlier)
                existing.pop(doc_id)
            pending[doc_id] = (position, doc_id, text, meta, digest)
            counts["replaced"] += 1
        position += 1
    if removed:
        docs.delete_iids(removed)
    docs.insert(sorted(pending.values()))
    return position


def _choose_index(requested: dict[str, Any], live: int, dim: int, shards: list[ShardInfo], dead: np.ndarray,
                  phases: dict[str, float]) -> tuple[factories.IndexSpec, Any]:
    """The index the single-machine build would end with for ``live`` vectors, trained if needed.

    Returns (spec, trained empty FAISS index), or (flat spec, None) for the streamed flat file.
    """
    if requested["factory"]:
        target = factories.custom_spec(requested["factory"])
    else:
        target = factories.resolve(requested["kind"], live, dim, requested["memory_budget"])
    if target.factory == factories.flat_spec().factory:
        return factories.flat_spec(), None
    if target.kind in factories.BINARY_KINDS:  # built in the driver from the merged vectors (see _write_faiss)
        backend = create_backend(target, dim)
        backend.train(_training_sample(shards, dead, live))
        return target, backend
    new = factories.new_index(target, dim)
    if not new.is_trained:
        nlist = int(target.params.get("nlist", 1))
        if live < max(factories.IVF_MIN_VECTORS, 39 * nlist) and requested["factory"] is None:
            log.info("%d vectors are too few to train %s: the index stays exact (flat)", live, target.factory)
            return factories.flat_spec(), None
        mark = time.perf_counter()
        sample = _training_sample(shards, dead, live)
        log.info("training %s on %d vectors", target.factory, len(sample))
        new.train(sample)
        phases["train"] = time.perf_counter() - mark
    return target, new


def _training_sample(shards: list[ShardInfo], dead: np.ndarray, live: int) -> np.ndarray:
    """The vectors the single-machine build trains on: all live ones up to 100k, else the same
    seeded random choice of live ranks; read row by row from the shard files."""
    if live <= _MAX_TRAIN:
        ranks = np.arange(live, dtype=np.int64)
    else:
        ranks = np.sort(np.random.default_rng(0).choice(live, _MAX_TRAIN, replace=False))
    live_before_dead = dead - np.arange(len(dead), dtype=np.int64)
    positions = ranks + np.searchsorted(live_before_dead, ranks, side="right")
    firsts = _first_ids(shards)
    owners = np.searchsorted(firsts, positions, side="right") - 1
    pieces = []
    for owner in np.unique(owners):
        rows = positions[owners == owner] - firsts[owner]
        vectors = np.load(shards[owner].vectors, mmap_mode="r")
        pieces.append(np.asarray(vectors[rows], dtype=np.float32))
    return np.ascontiguousarray(np.concatenate(pieces))


def _first_ids(shards: list[ShardInfo]) -> np.ndarray:
    return np.concatenate([[0], np.cumsum([s.rows for s in shards])[:-1]]).astype(np.int64)


def iter_vector_chunks(shards: list[ShardInfo], dead: np.ndarray) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(ids, vectors) of the live records, shard by shard, at most ``CHUNK_ROWS`` rows at a time."""
    for shard, first in zip(shards, _first_ids(shards).tolist()):
        if shard.rows == 0:
            continue
        vectors = np.load(shard.vectors, mmap_mode="r")
        for start in range(0, shard.rows, CHUNK_ROWS):
            stop = min(shard.rows, start + CHUNK_ROWS)
            ids = np.arange(first + start, first + stop, dtype=np.int64)
            keep = ~np.isin(ids, dead[(dead >= first + start) & (dead < first + stop)])
            yield ids[keep], np.asarray(vectors[start:stop][keep], dtype=np.float32)


def _commit(directory: Path, staging: Path, client: Any, model: StaticModel, model_path: str | None,
            spec: factories.IndexSpec, requested: dict[str, Any], trained: Any, docs: DocStore,
            shards: list[ShardInfo], dead: np.ndarray, live: int, build_info: dict[str, Any], started: float) -> None:
    """Write the index file, the docstore and the manifest as a new generation of ``directory``."""
    written: dict[str, int] = {}

    def write_index(path: Path) -> None:
        written["ntotal"] = _write_faiss(path, staging, client, model.dim, spec, trained, shards, dead, live)

    def manifest(generation: str, index_name: str, docs_name: str) -> dict[str, Any]:
        build_info["seconds"] = round(time.perf_counter() - started, 3)
        record = VectorIndex(model=model, model_path=model_path, index=_Counted(written["ntotal"], model.dim),
                             spec=spec, requested=requested, docstore=docs, path=directory, build=build_info,
                             backend=trained if isinstance(trained, Backend) else None)
        return record._manifest(generation, index_name, docs_name, directory)

    commit_generation(directory, write_index, docs, manifest)


def _write_faiss(path: Path, staging: Path, client: Any, dim: int, spec: factories.IndexSpec, trained: Any,
                 shards: list[ShardInfo], dead: np.ndarray, live: int) -> int:
    import faiss

    from m2v_search.distributed.faiss_files import write_flat_idmap

    if trained is None:  # exact index: vectors streamed from the shards into the file
        write_flat_idmap(path, dim, live, lambda: iter_vector_chunks(shards, dead))
        return live
    if isinstance(trained, Backend):  # binary codes: the driver codes the shards' vectors one chunk at a time
        for ids, vectors in iter_vector_chunks(shards, dead):
            trained.add(ids, vectors)
        trained.write(path)
        return trained.ntotal
    factories.apply_build_params(trained, spec)
    if isinstance(faiss.downcast_index(trained), faiss.IndexIVF):
        return _merge_ivf(path, staging, client, trained, shards, dead)
    log.info("building %s in the driver, shard by shard", spec.factory)
    for ids, vectors in iter_vector_chunks(shards, dead):
        if len(ids):
            trained.add_with_ids(vectors, ids)
    faiss.write_index(trained, str(path))
    return int(trained.ntotal)


def _merge_ivf(path: Path, staging: Path, client: Any, trained: Any, shards: list[ShardInfo],
               dead: np.ndarray) -> int:
    """Workers fill one IVF shard each; the driver merges them on disk and streams the lists out."""
    import faiss
    from faiss.contrib.ondisk import merge_ondisk

    from m2v_search.distributed.faiss_files import write_ivf
    from m2v_search.distributed.worker import fill_ivf_shard

    trained_path = staging / "trained.faiss"
    faiss.write_index(trained, str(trained_path))
    ivf_dir = staging / "ivf"
    ivf_dir.mkdir(exist_ok=True)
    firsts = _first_ids(shards).tolist()
    futures = []
    for shard, first in zip(shards, firsts):
        own_dead = dead[(dead >= first) & (dead < first + shard.rows)]
        output = ivf_dir / f"{Path(shard.vectors).stem}.faiss"
        futures.append(client.submit(fill_ivf_shard, str(trained_path), shard.vectors, first, own_dead, str(output),
                                     pure=False))
    added = client.gather(futures)
    outputs = [str(ivf_dir / f"{Path(shard.vectors).stem}.faiss") for shard in shards]
    merged = faiss.read_index(str(trained_path))
    with _c_stdout_to_stderr():  # FAISS prints its file resizing on the C stdout: keep stdout for results
        merge_ondisk(merged, outputs, str(staging / "merged.ivfdata"))
    invlists = faiss.extract_index_ivf(merged).invlists
    empty = faiss.read_index(str(trained_path))
    total = write_ivf(path, empty, invlists)
    if total != sum(added):
        raise RuntimeError(f"merged {total} vectors, the workers added {sum(added)}")
    del merged
    return total


@contextlib.contextmanager
def _c_stdout_to_stderr() -> Iterator[None]:
    try:
        sys.stdout.flush()
        saved = os.dup(1)
    except (OSError, ValueError):  # no real stdout (e.g. some embedded interpreters)
        yield
        return
    try:
        os.dup2(2, 1)
        yield
    finally:
        os.dup2(saved, 1)
        os.close(saved)


def _progress(enabled: bool, total: int) -> Any:
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, unit=" partitions", desc="Encoding (dask)", mininterval=0.5, file=sys.stderr)
