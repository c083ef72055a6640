"""Building an index directory on a Dask cluster: workers encode, the driver merges shard by shard.

Phases (``build_index_dask``):

1. plan: the corpus is cut into partitions (byte ranges of JSONL files, whole gzip files, or
   the partitions of a Dask bag); workers count the newlines of each range so that every line
   keeps its number in the whole file (error messages, and ids of rows without an id);
2. encode: each worker loads the model once and writes one shard per partition (unit vectors
   ``.npy`` + records ``.jsonl``) into the staging area: a folder on shared storage, or an
   fsspec URL (``s3://...``) from which the driver downloads the shards
   (``m2v_search.distributed.staging``); inputs may be local or fsspec URLs, JSONL or Parquet;
3. docstore: the driver streams the shards' records into an on-disk SQLite docstore (same
   schema and rules as the single-machine build: int id = position in the corpus, a repeated
   id replaces the earlier record, an identical repeat is skipped);
4. index: flat indexes are streamed straight from the shard vectors into the FAISS file; IVF
   indexes get their coarse quantizer trained on the driver from a sample, the workers fill
   one IVF shard each, and the driver merges them with FAISS's on-disk inverted lists
   (``merge_ondisk``) before streaming the lists into the index file; other index types
   (HNSW, custom factories) are built in the driver's memory, shard by shard;
5. commit: the FAISS file, the docstore and ``manifest.json`` are written as a new generation
   with the index package's own writers, exactly as ``VectorIndex.save`` does; for an output
   URL, into a local folder that is then uploaded, manifest last (``m2v_search.index.remote``).

The driver holds at most one chunk of one shard's vectors (plus the training sample, at most
100k vectors); the docstore lives on disk. The result opens with ``VectorIndex.open`` and the
``m2v-index`` commands like any other index directory.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import sys
import time
import types
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from m2v_search.distributed.docstore_fill import fill_docstore
from m2v_search.distributed.staging import Staging, join, publish_copy
from m2v_search.index import factory as factories
from m2v_search.index_kinds import index_file_suffix
from m2v_search.index import lexical as lexical_part
from m2v_search.index.backends import Backend, create_backend
from m2v_search.index.build import BuildReport, check_output_directory, refuse_file_output, warn_repeated_ids
from m2v_search.index.corpus import CorpusOptions
from m2v_search.index.docstore import DocStore
from m2v_search.index.errors import CorpusError
from m2v_search.index.locking import WriterLock
from m2v_search.index.generations import commit_generation
from m2v_search.index.model_binding import load_model
from m2v_search.index.remote import build_target
from m2v_search.index.sources import is_parquet
from m2v_search.index.urls import is_url, local_path, redact
from m2v_search.index.manifest import file_entry, index_manifest
from m2v_search.index.vectors import MAX_TRAIN

if TYPE_CHECKING:  # pragma: no cover
    from m2v_search.distributed.worker import ShardInfo
    from m2v_search.model import StaticModel

log = logging.getLogger("m2v_search.distributed")
STAGING = ".dask-build"
DEFAULT_PARTITION_SIZE = 64 << 20   # bytes of JSONL per partition
CHUNK_ROWS = 65_536                 # vectors the driver reads at once from a shard


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


def build_index_dask(inputs: Any, output_dir: str | os.PathLike[str], *, model: StaticModel | str | None = None,
                     scheduler: str | None = None, client: Any = None, n_workers: int | None = None,
                     threads_per_worker: int = 1, partition_size: int = DEFAULT_PARTITION_SIZE,
                     index: str = "auto", factory: str | None = None, memory_budget: int | None = None,
                     id_field: str | None = None, text_field: str = "text",
                     metadata_fields: list[str] | None = None, skip_invalid: bool = False, batch_size: int = 4096,
                     staging_dir: str | os.PathLike[str] | None = None,
                     work_dir: str | os.PathLike[str] | None = None, show_progress: bool = True,
                     lexical: bool | str = True, force: bool = False) -> DaskBuildReport:
    """Index ``inputs`` into ``output_dir`` on a Dask cluster (the index there is replaced only at the end).

    Args:
        inputs: a JSONL(.gz) or Parquet file, a glob pattern or an fsspec URL (``s3://b/corpus/*.parquet``),
            a list of them, or a Dask bag (JSON lines or dicts) or dataframe.
        output_dir: the index directory, or an fsspec URL: the index is then built in ``work_dir``
            (default a temporary folder) and uploaded with its manifest last (``m2v_search.index.remote``).
        model: a ``StaticModel``, a model name or folder (default the bundled model).
        scheduler: the address of a running scheduler.
        client: an existing ``distributed.Client``; with neither, a local cluster of ``n_workers``
            processes (default one per core) is started and closed.
        n_workers: workers of the local cluster.
        threads_per_worker: threads of each local worker.
        partition_size: bytes of JSONL (uncompressed Parquet) per task.
        index: index kind (``auto``, ``flat``, ``hnsw``, ``ivf``, ``ivf-pq``).
        factory: a FAISS factory string (overrides ``index``).
        memory_budget: bytes for the ``auto`` choice.
        id_field: id field (Parquet: column); default ``id``, else ``_id``, else the line (row) number.
        text_field: text field (column).
        metadata_fields: fields (columns) kept as metadata (default every other one).
        skip_invalid: skip malformed rows and count them.
        batch_size: texts encoded at once on a worker.
        staging_dir: where workers put their shards: a folder reachable under the same path by every
            worker and the driver (the build uses, then removes, a fresh ``build-<id>`` folder in it;
            default ``output_dir/.dask-build``), or an fsspec URL (``s3://bucket/tmp``; default for a
            URL output: ``output_dir/.dask-build``).
        work_dir: the driver's local folder for a URL output (default a temporary folder).
        show_progress: a progress bar on stderr.
        lexical: the lexical (BM25) part: True (English), a Snowball language, or False for none;
            built at the end on the driver, from the docstore's texts.
        force: build into a non-empty directory that holds no index (its other files are left alone).

    Returns:
        The counts and timings of the build.

    Raises:
        CorpusError: a missing input or a malformed row (naming file and line, or row group and row).
        OutputDirectoryError: the output is a file, or a non-empty directory that holds no index
            (without ``force``).
        RemoteStorageError: the upload of a URL output failed (the previous index there stays current).
    """
    if factory is None and index not in factories.KINDS:
        raise ValueError(f"unknown index kind {index!r}; use one of {', '.join(factories.KINDS)}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    lexical_part.new_part(lexical)  # an unknown language fails before any cluster starts
    started = time.perf_counter()
    options = CorpusOptions(id_field=id_field, text_field=text_field, metadata_fields=metadata_fields,
                            skip_invalid=skip_invalid)
    if not _is_collection(inputs):  # bad paths fail before any cluster starts
        from m2v_search.distributed.partitions import expand_inputs

        inputs = expand_inputs(inputs)
    loaded, source = load_model(model, None)
    output = os.fspath(output_dir)
    requested = {"kind": "custom" if factory else index, "factory": factory, "memory_budget": memory_budget,
                 "lexical": lexical}
    cluster = (client, scheduler, n_workers, threads_per_worker)
    shared = os.fspath(staging_dir) if staging_dir is not None else None
    if shared is None and is_url(output):  # stage next to a URL output: the workers can reach it
        shared = join(output, STAGING)
    with build_target(output, work_dir) as directory, _writer_lock(directory, force):
        if shared is not None and not is_url(shared):
            staging = Staging.in_folder(Path(local_path(shared)))
        else:
            staging = Staging.create(directory / STAGING, shared)
        try:
            report = _run(cluster, inputs, directory, staging, options, loaded, source, requested,
                          partition_size, batch_size, show_progress, started)
        finally:
            staging.remove()
        mark = time.perf_counter()  # leaving build_target uploads a URL output
    if is_url(output):
        report.phases["upload"] = round(time.perf_counter() - mark, 3)
        report.directory = redact(output)
    report.seconds = round(time.perf_counter() - started, 3)
    return report


def _run(cluster: tuple[Any, str | None, int | None, int], inputs: Any, directory: Path, staging: Staging,
         options: CorpusOptions, loaded: StaticModel, source: str | None, requested: dict[str, Any],
         partition_size: int, batch_size: int, show_progress: bool, started: float) -> DaskBuildReport:
    """Plan, encode, fill the docstore, choose and fill the index, commit: the build's phases."""
    phases: dict[str, float] = {}
    worker_source = source
    if worker_source is None:  # an in-memory model: ship it as a folder in the staging area
        worker_source = str((staging.local / "model").resolve())
        loaded.save_pretrained(worker_source)
    with _cluster(*cluster) as (dask_client, address):
        workers = len(dask_client.scheduler_info(n_workers=-1)["workers"])
        log.info("Dask build on %s (%d workers)", address, workers)
        mark = time.perf_counter()
        plan = _plan(dask_client, inputs, partition_size, options)
        if plan.kind == "files" and len({task.path for task in plan.tasks}) > 1:
            options = dataclasses.replace(options, file_ids=True)  # as the local reader numbers id-less rows
        phases["plan"] = time.perf_counter() - mark
        mark = time.perf_counter()
        shared_shards = _encode(dask_client, plan, join(staging.shared, "shards"), options, worker_source,
                                loaded.fingerprint, batch_size, show_progress)
        phases["encode"] = time.perf_counter() - mark
        mark = time.perf_counter()
        shards = _localize(staging, shared_shards)
        docs, counts, dead = fill_docstore(staging.local / "docstore.sqlite", shards)
        phases["docstore"] = time.perf_counter() - mark
        try:
            records = sum(s.rows for s in shards)
            skipped = sum(s.skipped for s in shards)
            live = docs.count()
            if live == 0:
                lines = sum(s.lines for s in shards)
                raise CorpusError(f"{plan.name}: no records (read {lines} lines, {skipped} invalid); the "
                                  "previous index, if any, is unchanged")
            repeats = _repeated_ids(plan.name, counts, shards)
            spec, faiss_index = _choose_index(requested, live, loaded.dim, shards, dead, phases)
            build_info = {"complete": True, "corpus": plan.name, "records": records, "skipped_invalid": skipped,
                          "duplicate_ids": repeats.duplicates, "engine": "dask", "partitions": len(shards),
                          "workers": workers,
                          "index_choice": factories.choice_reason(requested, live, loaded.dim)}
            mark = time.perf_counter()
            merge = _Merge(staging, dask_client, shards, shared_shards, dead)
            _commit(directory, merge, loaded, source, spec, requested, faiss_index, docs, live, build_info,
                    started)
            phases["merge_and_commit"] = time.perf_counter() - mark
        finally:
            docs.close()
    seconds = time.perf_counter() - started
    return DaskBuildReport(str(directory), live, records, counts["added"], counts["replaced"], counts["unchanged"],
                           skipped, False, round(seconds, 3), round(records / seconds, 1) if seconds else 0.0,
                           spec.factory, repeats.duplicates, repeats.id_type_collisions, partitions=len(shards),
                           workers=workers, scheduler=address, phases={k: round(v, 3) for k, v in phases.items()})


def _repeated_ids(name: str, counts: dict[str, int], shards: list[ShardInfo]) -> types.SimpleNamespace:
    """The repeated ids, counted and logged as the single-machine build does: every record whose id
    an earlier record had (the docstore pass replaced it or skipped it as identical), and how many
    of them were an integer id matching a string id (the workers see that, within a partition)."""
    repeats = types.SimpleNamespace(name=name, duplicates=counts["replaced"] + counts["unchanged"],
                                    id_type_collisions=sum(shard.id_type_collisions for shard in shards))
    warn_repeated_ids(repeats)
    return repeats


def _localize(staging: Staging, shards: list[ShardInfo]) -> list[ShardInfo]:
    """The shards with local paths: as they are in a shared folder, downloaded from a staging URL."""
    if staging.remote is None:
        return shards
    paths = iter(staging.fetch([path for shard in shards for path in (shard.vectors, shard.records)]))
    return [dataclasses.replace(shard, vectors=next(paths), records=next(paths)) for shard in shards]


@dataclass
class _Merge:
    """What the index writers need: the staging area, the client, the shards (local copies, and
    the paths or URLs the workers wrote) and the positions left out."""

    staging: Staging
    client: Any
    shards: list[ShardInfo]
    shared_shards: list[ShardInfo]
    dead: np.ndarray


@contextlib.contextmanager
def _writer_lock(directory: Path, force: bool) -> Iterator[None]:
    """The output directory's writer lock, once it is known to be a directory that may be built into."""
    refuse_file_output(directory)
    check_output_directory(directory, force, STAGING, before_lock=True)  # no .lock left in a refused folder
    with WriterLock.for_directory(directory):
        check_output_directory(directory, force, STAGING)
        yield


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
    from m2v_search.distributed.partitions import (
        ParquetBlock,
        count_newlines,
        expand_inputs,
        number_lines,
        split_file,
        split_parquet,
    )
    from m2v_search.index.sources import parquet_row_groups

    if _is_collection(inputs):
        if hasattr(inputs, "columns") and hasattr(inputs, "to_bag"):
            inputs = inputs.to_bag(index=False, format="dict")  # a Dask dataframe
        return _Plan(list(inputs.to_delayed()), "bag", f"dask bag {getattr(inputs, 'name', '')}".strip())
    files = expand_inputs(inputs)
    parquet = [path for path in files if is_parquet(path)]
    groups = dict(zip(parquet, client.gather(client.map(parquet_row_groups, parquet, pure=False))))  # footers
    blocks: list[Any] = []
    for path in files:
        if path in groups:
            blocks.extend(split_parquet(path, groups[path], partition_size))
        else:
            blocks.extend(split_file(path, partition_size))
    lines = [block for block in blocks if not isinstance(block, ParquetBlock)]
    counts = client.gather(client.map(count_newlines, lines, pure=False))
    number_lines(lines, counts)
    name = redact(files[0]) if len(files) == 1 else f"{redact(files[0])} (+{len(files) - 1} files)"
    return _Plan(blocks, "files", name)


def _is_collection(inputs: Any) -> bool:
    """A Dask bag or dataframe (anything with ``to_delayed``), rather than file names."""
    return hasattr(inputs, "to_delayed") and not isinstance(inputs, (str, os.PathLike))


def _encode(client: Any, plan: _Plan, shard_dir: str, options: CorpusOptions, model_source: str,
            fingerprint: str, batch_size: int, show_progress: bool) -> list[ShardInfo]:
    from distributed import as_completed

    from m2v_search.distributed.worker import encode_block, encode_rows

    if not is_url(shard_dir):
        Path(shard_dir).mkdir(parents=True, exist_ok=True)
    if plan.kind == "files":
        futures = [client.submit(encode_block, block, number, shard_dir, options, model_source, fingerprint,
                                 batch_size, pure=False) for number, block in enumerate(plan.tasks)]
    else:
        import dask

        delayed = [dask.delayed(encode_rows)(part, number, shard_dir, options, model_source, fingerprint,
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
    if live <= MAX_TRAIN:
        ranks = np.arange(live, dtype=np.int64)
    else:
        ranks = np.sort(np.random.default_rng(0).choice(live, MAX_TRAIN, replace=False))
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


def _commit(directory: Path, merge: _Merge, model: StaticModel, model_path: str | None, spec: factories.IndexSpec,
            requested: dict[str, Any], trained: Any, docs: DocStore, live: int, build_info: dict[str, Any],
            started: float) -> None:
    """Write the index file, the docstore, the lexical part (built here, on the driver, from the
    docstore's texts) and the manifest as a new generation of ``directory``."""
    written: dict[str, int] = {}
    lexical = lexical_part.new_part(requested.get("lexical", True))
    if lexical is not None:
        mark = time.perf_counter()
        lexical = lexical_part.from_rows(((iid, text) for iid, _, text, _, _ in docs.iter_rows()), lexical.analyzer)
        log.info("lexical part: %d documents indexed on the driver in %.2f s", len(lexical), time.perf_counter() - mark)

    final_spec = trained.spec if isinstance(trained, Backend) else spec

    def write_index(path: Path) -> None:
        written["ntotal"] = _write_faiss(path, merge, model.dim, spec, trained, live)

    def manifest(generation: str, index_name: str, docs_name: str) -> dict[str, Any]:
        build_info["seconds"] = round(time.perf_counter() - started, 3)
        counts = {"documents": live, "vectors": written["ntotal"], "deleted": docs.count_tombstones()}
        written_manifest = index_manifest(generation=generation, model=model, model_path=model_path, dim=model.dim,
                                          index_file=index_name, docstore_file=docs_name,
                                          spec=final_spec,
                                          requested=requested, counts=counts, build=build_info, directory=directory)
        return lexical_part.add_to_manifest(written_manifest, lexical, generation, file_entry, directory)

    commit_generation(directory, write_index, docs, manifest,
                      lambda generation: lexical_part.generation_contents(lexical, generation),
                      index_suffix=index_file_suffix(final_spec.kind))


def _write_faiss(path: Path, merge: _Merge, dim: int, spec: factories.IndexSpec, trained: Any, live: int) -> int:
    import faiss

    from m2v_search.distributed.faiss_files import write_flat_idmap

    shards, dead = merge.shards, merge.dead
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
        return _merge_ivf(path, merge, trained)
    log.info("building %s in the driver, shard by shard", spec.factory)
    for ids, vectors in iter_vector_chunks(shards, dead):
        if len(ids):
            trained.add_with_ids(vectors, ids)
    faiss.write_index(trained, str(path))
    return int(trained.ntotal)


def _merge_ivf(path: Path, merge: _Merge, trained: Any) -> int:
    """Workers fill one IVF shard each; the driver merges them on disk and streams the lists out."""
    import faiss
    from faiss.contrib.ondisk import merge_ondisk

    from m2v_search.distributed.faiss_files import write_ivf
    from m2v_search.distributed.worker import fill_ivf_shard

    staging, dead = merge.staging, merge.dead
    trained_path = staging.local / "trained.faiss"
    faiss.write_index(trained, str(trained_path))
    shared_trained = str(trained_path)
    if staging.remote is not None:  # the workers read the trained index from the staging URL
        shared_trained = publish_copy(trained_path, join(staging.shared, "trained.faiss"))
    ivf_dir = join(staging.shared, "ivf")
    if staging.remote is None:
        Path(ivf_dir).mkdir(exist_ok=True)
    futures, names = [], []
    for shard, first in zip(merge.shared_shards, _first_ids(merge.shards).tolist()):
        own_dead = dead[(dead >= first) & (dead < first + shard.rows)]
        names.append(f"part-{shard.partition:05d}.faiss")
        futures.append(merge.client.submit(fill_ivf_shard, shared_trained, shard.vectors, first, own_dead,
                                           join(ivf_dir, names[-1]), pure=False))
    added = merge.client.gather(futures)
    outputs = staging.fetch([join(ivf_dir, name) for name in names])
    merged = faiss.read_index(str(trained_path))
    with _c_stdout_to_stderr():  # FAISS prints its file resizing on the C stdout: keep stdout for results
        merge_ondisk(merged, outputs, str(staging.local / "merged.ivfdata"))
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
