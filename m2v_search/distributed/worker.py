"""What runs on the Dask workers: encode one partition into shard files, fill one IVF shard.

The model travels as a folder path (or a bundled model name): each worker process loads it
once, on its first task, and keeps it for the following ones. Shard files are written under
a temporary name and renamed, so a retried task never leaves half a shard behind.

Shard ``part-NNNNN``:
    part-NNNNN.npy     float32 (m, dim) unit vectors, one row per record, in input order
    part-NNNNN.jsonl   one JSON array per record: [id, text, metadata_json, content_hash]
"""

from __future__ import annotations

import json
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from m2v_search.index.corpus import CorpusOptions
from m2v_search.index.docstore import content_hash
from m2v_search.index.records import Record
from m2v_search.index.vectors import normalize_rows as _normalize_rows

if TYPE_CHECKING:  # pragma: no cover
    from m2v_search.distributed.partitions import FileBlock
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
    """What a worker reports about the shard it wrote (small: the driver keeps one per partition)."""

    partition: int
    rows: int
    lines: int
    skipped: int
    vectors: str
    records: str


def encode_block(block: FileBlock, partition: int, shard_dir: str, options: CorpusOptions, model_source: str,
                 fingerprint: str, batch_size: int) -> ShardInfo:
    """Read, encode and write one file block as shard ``partition``."""
    from m2v_search.distributed.partitions import read_block

    records, reader = read_block(block, options)
    return _write_shard(records, partition, shard_dir, model_source, fingerprint, batch_size,
                        lambda: (reader.lines, reader.skipped))


def encode_rows(rows: Any, partition: int, shard_dir: str, options: CorpusOptions, model_source: str,
                fingerprint: str, batch_size: int, name: str) -> ShardInfo:
    """Encode one partition of a Dask bag (JSON lines or dicts) as shard ``partition``."""
    from m2v_search.distributed.partitions import bag_records

    records, skipped = bag_records(list(rows), options, name, partition)
    return _write_shard(iter(records), partition, shard_dir, model_source, fingerprint, batch_size,
                        lambda: (len(records) + skipped, skipped))


def _write_shard(records: Any, partition: int, shard_dir: str, model_source: str, fingerprint: str,
                 batch_size: int, counts: Any) -> ShardInfo:
    from m2v_search.index.docstore import metadata_json

    model = worker_model(model_source, fingerprint)
    directory = Path(shard_dir)
    if not directory.is_dir():  # the driver makes it; never recreate it after a cancelled build removed it
        raise FileNotFoundError(f"staging directory {directory} does not exist on this worker: it must be on "
                                "storage shared by the driver and every worker (or the build was cancelled)")
    stem = f"part-{partition:05d}"
    vectors_path, records_path = directory / f"{stem}.npy", directory / f"{stem}.jsonl"
    temporary = f".tmp-{os.getpid()}-{threading.get_ident()}"
    vectors_tmp, records_tmp = directory / f"{stem}{temporary}.npy", directory / f"{stem}{temporary}.jsonl"
    blocks: list[np.ndarray] = []
    rows = 0
    try:
        with open(records_tmp, "w", encoding="utf-8") as out:
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
                _normalize_rows(encoded)
                blocks.append(encoded)
                lines = []
                for record in batch:
                    meta = metadata_json(record.metadata)
                    lines.append(json.dumps([record.id, record.text, meta, content_hash(record.text, meta)],
                                            ensure_ascii=False))
                out.write("\n".join(lines) + "\n")
                rows += len(batch)
        vectors = np.concatenate(blocks) if blocks else np.zeros((0, model.dim), np.float32)
        np.save(vectors_tmp, vectors)
        os.replace(vectors_tmp, vectors_path)
        os.replace(records_tmp, records_path)
    finally:
        vectors_tmp.unlink(missing_ok=True)
        records_tmp.unlink(missing_ok=True)
    lines_read, skipped = counts()
    return ShardInfo(partition, rows, lines_read, skipped, str(vectors_path), str(records_path))


def fill_ivf_shard(trained_path: str, vectors_path: str, first_id: int, dead: np.ndarray, output: str) -> int:
    """Add a shard's vectors (ids ``first_id + row``, rows in ``dead`` left out) to a copy of the
    trained empty index at ``trained_path``; write it to ``output``. Returns the vectors added."""
    import faiss

    index = faiss.read_index(trained_path)
    vectors = np.load(vectors_path, mmap_mode="r")
    ids = np.arange(first_id, first_id + len(vectors), dtype=np.int64)
    keep = np.ones(len(vectors), dtype=bool)
    if len(dead):
        keep[np.asarray(dead, dtype=np.int64) - first_id] = False
    for start in range(0, len(vectors), 65_536):
        chunk_keep = keep[start:start + 65_536]
        chunk = np.ascontiguousarray(vectors[start:start + 65_536][chunk_keep], dtype=np.float32)
        if len(chunk):
            index.add_with_ids(chunk, ids[start:start + 65_536][chunk_keep])
    temporary = f"{output}.tmp-{os.getpid()}"
    faiss.write_index(index, temporary)
    os.replace(temporary, output)
    return int(index.ntotal)
