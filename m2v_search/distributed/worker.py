"""What runs on the Dask workers: encode one partition into shard files, fill one IVF shard.

The model travels as a folder path (or a bundled model name): each worker process loads it
once, on its first task, and keeps it for the following ones. Shard files are written under
a temporary name, then renamed into the staging folder or uploaded to the staging URL under
their final name (``m2v_search.distributed.staging``), so a task retried after its worker
died never leaves half a shard or a second copy behind.

Shard ``part-NNNNN``:
    part-NNNNN.npy     float32 (m, dim) unit vectors, one row per record, in input order
    part-NNNNN.jsonl   one JSON array per record: [id, text, metadata_json, content_hash]
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from m2v_search.distributed.staging import check_open, fetch_to_scratch, publish, scratch_dir
from m2v_search.index.corpus import CorpusOptions
from m2v_search.index.docstore import content_hash
from m2v_search.index.records import Record
from m2v_search.index.urls import is_url
from m2v_search.index.vectors import normalize_rows

if TYPE_CHECKING:  # pragma: no cover
    from m2v_search.model import StaticModel

_MODELS: dict[str, StaticModel] = {}
_MODELS_LOCK = threading.Lock()
LOADS: list[str] = []  # model loads in this process (tests check "once per worker")


def worker_model(source: str, fingerprint: str | None = None) -> StaticModel:
    """The model at ``source`` (folder or bundled name), loaded once per process."""
    with _MODELS_LOCK:
        model = _MODELS.get(source)
        if model is None:
            from m2v_search.model import StaticModel

            model = StaticModel.from_pretrained(source)
            _MODELS[source] = model
            LOADS.append(source)
    if fingerprint is not None and model.fingerprint != fingerprint:
        from m2v_search.index.errors import ModelMismatchError

        raise ModelMismatchError(f"worker pid {os.getpid()} loaded model {source!r} with fingerprint "
                                 f"{model.fingerprint[:12]}, the driver has {fingerprint[:12]}: install the same "
                                 "model on every worker, or pass a model folder on shared storage")
    return model


def model_loads() -> list[str]:
    """Models this process has loaded (for ``client.run``)."""
    return list(LOADS)


@dataclass
class ShardInfo:
    """What a worker reports about the shard it wrote (small: the driver keeps one per partition).

    ``id_type_collisions``: records whose id repeated, as a string, an integer id of an earlier
    record of the same partition (or the other way round); the driver sees only string ids.
    """

    partition: int
    rows: int
    lines: int
    skipped: int
    vectors: str
    records: str
    id_type_collisions: int = 0


def encode_block(block: Any, partition: int, shard_dir: str, options: CorpusOptions, model_source: str,
                 fingerprint: str, batch_size: int) -> ShardInfo:
    """Read, encode and write one file block (JSONL byte range or Parquet row groups) as shard ``partition``."""
    from m2v_search.distributed.partitions import read_block

    records, reader = read_block(block, options)
    return _write_shard(records, partition, shard_dir, model_source, fingerprint, batch_size,
                        lambda: (reader.lines, reader.skipped, reader.id_type_collisions))


def encode_rows(rows: Any, partition: int, shard_dir: str, options: CorpusOptions, model_source: str,
                fingerprint: str, batch_size: int, name: str) -> ShardInfo:
    """Encode one partition of a Dask bag (JSON lines or dicts) as shard ``partition``."""
    from m2v_search.distributed.partitions import bag_records

    records, skipped = bag_records(list(rows), options, name, partition)
    return _write_shard(iter(records), partition, shard_dir, model_source, fingerprint, batch_size,
                        lambda: (len(records) + skipped, skipped, 0))


def _write_shard(records: Any, partition: int, shard_dir: str, model_source: str, fingerprint: str,
                 batch_size: int, counts: Any) -> ShardInfo:
    """Encode ``records`` into a temporary shard, then publish it under its partition's name
    (a retried task overwrites the same files, never adds a second copy)."""
    model = worker_model(model_source, fingerprint)
    check_open(shard_dir)
    stem = f"part-{partition:05d}"
    scratch = scratch_dir(shard_dir)
    temporary = f".tmp-{os.getpid()}-{threading.get_ident()}"
    vectors_tmp, records_tmp = scratch / f"{stem}{temporary}.npy", scratch / f"{stem}{temporary}.jsonl"
    try:
        with open(records_tmp, "w", encoding="utf-8") as out:
            vectors, rows = _encode_records(records, model, batch_size, out)
        np.save(vectors_tmp, vectors)
        check_open(shard_dir)
        published = publish({f"{stem}.npy": vectors_tmp, f"{stem}.jsonl": records_tmp}, shard_dir)
    finally:
        vectors_tmp.unlink(missing_ok=True)
        records_tmp.unlink(missing_ok=True)
        if scratch != Path(shard_dir):
            shutil.rmtree(scratch, ignore_errors=True)
    lines_read, skipped, collisions = counts()
    return ShardInfo(partition, rows, lines_read, skipped, published[f"{stem}.npy"], published[f"{stem}.jsonl"],
                     collisions)


def _encode_records(records: Any, model: StaticModel, batch_size: int, out: Any) -> tuple[np.ndarray, int]:
    """Encode ``records`` batch by batch, writing their rows to ``out``; returns (unit vectors, rows)."""
    from m2v_search.index.docstore import metadata_json

    blocks: list[np.ndarray] = []
    rows = 0
    while True:
        batch: list[Record] = []
        for record in records:
            batch.append(record)
            if len(batch) >= batch_size:
                break
        if not batch:
            break
        encoded = model.encode([r.text for r in batch], batch_size=len(batch), normalize=False)
        encoded = np.array(encoded, dtype=np.float32).reshape(len(batch), model.dim)
        normalize_rows(encoded)
        blocks.append(encoded)
        lines = []
        for record in batch:
            meta = metadata_json(record.metadata)
            lines.append(json.dumps([record.id, record.text, meta, content_hash(record.text, meta)],
                                    ensure_ascii=False))
        out.write("\n".join(lines) + "\n")
        rows += len(batch)
    return (np.concatenate(blocks) if blocks else np.zeros((0, model.dim), np.float32)), rows


def fill_ivf_shard(trained_path: str, vectors_path: str, first_id: int, dead: np.ndarray, output: str) -> int:
    """Add a shard's vectors (ids ``first_id + row``, rows in ``dead`` left out) to a copy of the
    trained empty index at ``trained_path``; write it to ``output``. Paths may be staging URLs.
    Returns the vectors added."""
    import faiss

    output_dir, output_name = output.rstrip("/").rsplit("/", 1) if is_url(output) else (
        str(Path(output).parent), Path(output).name)
    check_open(output_dir)
    scratch = Path(tempfile.mkdtemp(prefix="m2v-ivf-"))
    try:
        index = faiss.read_index(fetch_to_scratch(trained_path, scratch, "trained.faiss"))
        vectors = np.load(fetch_to_scratch(vectors_path, scratch, "vectors.npy"), mmap_mode="r")
        ids = np.arange(first_id, first_id + len(vectors), dtype=np.int64)
        keep = np.ones(len(vectors), dtype=bool)
        if len(dead):
            keep[np.asarray(dead, dtype=np.int64) - first_id] = False
        for start in range(0, len(vectors), 65_536):
            chunk_keep = keep[start:start + 65_536]
            chunk = np.ascontiguousarray(vectors[start:start + 65_536][chunk_keep], dtype=np.float32)
            if len(chunk):
                index.add_with_ids(chunk, ids[start:start + 65_536][chunk_keep])
        del vectors
        temporary = (scratch if is_url(output_dir) else Path(output_dir)) / f"{output_name}.tmp-{os.getpid()}"
        try:
            faiss.write_index(index, str(temporary))
            check_open(output_dir)
            publish({output_name: temporary}, output_dir)
        finally:
            temporary.unlink(missing_ok=True)
        return int(index.ntotal)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
