"""VectorIndex: a FAISS index of unit vectors plus a SQLite docstore, saved atomically with a manifest.

Layout of an index directory::

    manifest.json              commit point: format, model, index, counts, sha256 of every file
    index.<generation>.faiss   faiss.write_index output (IDMap2 / IVF ids = docstore int ids)
    docstore.<generation>.sqlite
    .lock                      writer lock (flock)

A save writes a new generation under new names, fsyncs it, then replaces ``manifest.json``;
files of older generations are removed afterwards. A crash at any point leaves the previous
manifest and its files in place. Nothing is pickled.
"""

from __future__ import annotations

import json
import math
import os
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

import numpy as np

from m2v_search.index import factory as factories
from m2v_search.index.docstore import DocStore, content_hash, metadata_json
from m2v_search.index.errors import (
    IndexConflictError,
    IndexCorruptError,
    IndexNotFoundError,
    ModelMismatchError,
)
from m2v_search.index.locking import WriterLock
from m2v_search.index.manifest import (
    FORMAT_NAME,
    FORMAT_VERSION,
    MANIFEST_NAME,
    file_entry,
    fsync_dir,
    fsync_file,
    library_versions,
    read_manifest,
    verify_files,
    write_manifest,
)

if TYPE_CHECKING:  # pragma: no cover
    from m2v_search.model import StaticModel

SMALL_BATCH = 32            # fewer queries than this search on one thread: OpenMP start-up and spinning
                            # cost more than they save (25 ms instead of 0.4 ms per query on a busy host)
HNSW_EXACT_RATIO = 0.05      # filters matching less than this share of an HNSW index search exactly
HNSW_COMPACT_RATIO = 0.2     # tombstones above this share of an HNSW index trigger a rebuild on save
_MAX_TRAIN = 100_000
RERANK_FACTOR = 4            # lossy (PQ/SQ) indexes: candidates fetched per result, re-scored exactly
GIVEN_VECTORS_KEY = "given_vectors"  # docstore meta: some vectors were passed in, not encoded from the text


@dataclass
class Record:
    """One stored document."""

    id: str
    text: str
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass
class Hit:
    """One search result; ``score`` is the cosine similarity (higher is better)."""

    id: str
    score: float
    text: str
    metadata: dict[str, Any]
    vector: np.ndarray | None = None


@dataclass
class UpsertStats:
    """What the last upsert did (``skipped``: same id and same content already stored)."""

    added: int = 0
    replaced: int = 0
    skipped: int = 0


class VectorIndex:
    """Documents, their unit vectors in FAISS, and their text and metadata in SQLite.

    Create with :meth:`create` (in memory until :meth:`save`) or :meth:`open` (an existing
    directory, checksums verified first). Thread-safe: one lock guards every operation.
    """

    def __init__(self, *, model: StaticModel | None, model_path: str | None, index: Any, spec: factories.IndexSpec,
                 requested: dict[str, Any], docstore: DocStore, path: Path | None,
                 generation: str | None = None, build: dict[str, Any] | None = None) -> None:
        self.model = model  # None: the vectors come from elsewhere (see create(dim=...))
        self.model_path = model_path
        self.path = path
        self.dim = int(index.d)
        self._index = index
        self._spec = spec
        self._requested = requested
        self._docs = docstore
        self._generation = generation
        self._lock = threading.RLock()
        self._count = docstore.count()
        self._tombstones = docstore.count_tombstones()
        self._version = 0
        self._cache: dict[str, Any] = {}
        self.nprobe: int | None = None
        self.ef_search: int | None = None
        self.build_info: dict[str, Any] = dict(build or {"complete": True})
        self.last_upsert = UpsertStats()

    # ------------------------------------------------------------------ construction
    @classmethod
    def create(cls, path: str | os.PathLike[str] | None = None, model: StaticModel | str | None = None, *,
               dim: int | None = None, index: str = "auto", factory: str | None = None,
               memory_budget: int | None = None, model_path: str | None = None) -> VectorIndex:
        """A new, empty index (in memory until :meth:`save`; ``path`` is where save writes).

        ``model``: a StaticModel, a model name or folder, or None for the bundled default.
        ``dim`` without a model: an index of vectors computed elsewhere (any embedding model):
        every write and query then passes vectors, and the manifest records no model.
        ``index``: auto|flat|hnsw|ivf|ivf-pq; ``factory`` (a FAISS factory string) overrides it.
        Indexes that need training (IVF) collect vectors in an exact flat index and switch on save.
        """
        if factory is None and index not in factories.KINDS:
            raise ValueError(f"unknown index kind {index!r}; use one of {', '.join(factories.KINDS)}")
        if dim is not None and (isinstance(dim, bool) or not isinstance(dim, (int, np.integer)) or dim < 1):
            raise ValueError(f"dim must be a positive integer, got {dim!r}")
        loaded: StaticModel | None
        if dim is not None and model is None:
            loaded, source, width = None, None, int(dim)
        else:
            loaded, source = _load_model(model, model_path)
            width = int(loaded.dim)
            if dim is not None and int(dim) != width:
                raise ValueError(f"dim={dim} but model {loaded.name!r} gives {width}-dim vectors; "
                                 "leave dim out, or pass no model for vectors computed elsewhere")
        requested = {"kind": "custom" if factory else index, "factory": factory, "memory_budget": memory_budget}
        spec = factories.custom_spec(factory) if factory else factories.resolve(index, 0, width, memory_budget)
        if factory is None and index == "auto":
            spec = factories.flat_spec()
        faiss_index = factories.new_index(spec, width)
        if not faiss_index.is_trained:  # collect vectors exactly until there are enough to train
            spec, faiss_index = factories.flat_spec(), factories.new_index(factories.flat_spec(), width)
        return cls(model=loaded, model_path=source, index=faiss_index, spec=spec, requested=requested,
                   docstore=DocStore.in_memory(), path=None if path is None else Path(path))

    @classmethod
    def open(cls, path: str | os.PathLike[str], *, model: StaticModel | str | None = None, create: bool = False,
             allow_model_mismatch: bool = False, **create_kwargs: Any) -> VectorIndex:
        """Load an index directory; every checksum is verified before FAISS or SQLite reads a file.

        ``model``: None reloads the model recorded in the manifest; a different model than the
        one the index was built with raises ModelMismatchError unless ``allow_model_mismatch``.
        ``create=True`` makes a new index (``create_kwargs``) when ``path`` holds none.
        """
        directory = Path(path)
        if create and not (directory / MANIFEST_NAME).exists():
            return cls.create(directory, model, **create_kwargs)
        for attempt in range(3):
            manifest = read_manifest(directory)
            try:
                verify_files(directory, manifest)
                break
            except IndexCorruptError:
                # A writer may have replaced the generation between our two reads: retry then.
                if attempt == 2 or read_manifest(directory).get("generation") == manifest.get("generation"):
                    raise
        loaded, source = _model_for_manifest(manifest, model, allow_model_mismatch, directory)
        faiss_index = _read_faiss(directory / manifest["index"]["file"])
        docs = DocStore.open_file(directory / manifest["docstore"]["file"])
        if faiss_index.d != manifest["dim"]:
            raise IndexCorruptError(f"{directory}: the FAISS index has {faiss_index.d} dims, the manifest "
                                    f"{manifest['dim']}")
        live, dead = docs.count(), docs.count_tombstones()
        if faiss_index.ntotal != live + dead:
            raise IndexCorruptError(f"{directory}: the FAISS index holds {faiss_index.ntotal} vectors but the "
                                    f"docstore {live} documents (+{dead} deleted)")
        info = manifest["index"]
        spec = factories.IndexSpec(info["kind"], info["factory"], dict(info.get("search_params", {})))
        requested = {"kind": info.get("requested", spec.kind), "factory": info.get("requested_factory"),
                     "memory_budget": info.get("memory_budget")}
        return cls(model=loaded, model_path=source, index=faiss_index, spec=spec, requested=requested,
                   docstore=docs, path=directory, generation=manifest.get("generation"),
                   build=manifest.get("build"))

    # ------------------------------------------------------------------ basics
    def __len__(self) -> int:
        return self._count

    @property
    def kind(self) -> str:
        """Kind of the FAISS index in use now (flat, hnsw, ivf, ivf-pq or custom)."""
        return self._spec.kind

    @property
    def factory(self) -> str:
        return self._spec.factory

    @property
    def search_params(self) -> dict[str, Any]:
        params = dict(self._spec.params)
        if self.nprobe is not None:
            params["nprobe"] = self.nprobe
        if self.ef_search is not None:
            params["efSearch"] = self.ef_search
        return params

    @property
    def faiss_index(self) -> Any:
        return self._index

    def __enter__(self) -> VectorIndex:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        """Release the docstore."""
        with self._lock:
            self._docs.close()

    def __repr__(self) -> str:
        model = self.model.name if self.model is not None else None
        return (f"VectorIndex(path={str(self.path) if self.path else None!r}, documents={len(self)}, "
                f"dim={self.dim}, index={self._spec.factory!r}, model={model!r})")

    @property
    def external_vectors(self) -> bool:
        """True for an index of vectors computed elsewhere (created with ``dim=`` and no model)."""
        return self.model is None

    def _encode(self, texts: list[str], hint: str, batch_size: int | None = None) -> np.ndarray:
        """The model's (unnormalised) vectors of ``texts``; an external-vectors index has none."""
        if self.model is None:
            raise ValueError(f"this index holds vectors computed elsewhere ({self.dim} dims, no model) "
                             f"and cannot encode text: {hint}")
        if batch_size is None:
            return self.model.encode(texts, normalize=False)
        return self.model.encode(texts, batch_size=batch_size, normalize=False)

    # ------------------------------------------------------------------ locking
    def writer_lock(self, path: str | os.PathLike[str] | None = None) -> WriterLock:
        """The (process-wide, re-entrant) writer lock of ``path`` (default: this index's path).

        Hold it (``with index.writer_lock(): ...``) around a long series of writes to refuse other
        processes for the whole time; :meth:`save` takes it on its own otherwise.
        """
        target = Path(path) if path is not None else self.path
        if target is None:
            raise ValueError("this index has no path yet; pass one")
        return WriterLock.for_directory(target)

    # ------------------------------------------------------------------ writes
    def upsert(self, records: Iterable[Record | dict[str, Any]], *, vectors: np.ndarray | None = None,
               batch_size: int = 4096) -> list[str]:
        """Add or replace documents; returns their ids in order.

        A record is a Record or a dict with ``id``, ``text`` and optional ``metadata``. An id
        already stored is replaced (unchanged content is skipped). ``vectors`` (n, dim) are used
        instead of encoding the texts.
        """
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if vectors is not None:
            vectors = np.asarray(vectors, dtype=np.float32)
            if vectors.ndim != 2 or vectors.shape[1] != self.dim:
                raise ValueError(f"vectors must have shape (n, {self.dim}), got {vectors.shape}")
            if hasattr(records, "__len__") and len(records) != len(vectors):  # type: ignore[arg-type]
                raise ValueError(f"{len(records)} records but {len(vectors)} vectors")  # type: ignore[arg-type]
        stats = UpsertStats()
        ids: list[str] = []
        offset = 0
        iterator = iter(records)
        while True:
            batch = list(islice(iterator, batch_size))
            if not batch:
                break
            items = [_coerce_record(record, offset + position) for position, record in enumerate(batch)]
            batch_vectors = None
            if vectors is not None:
                batch_vectors = vectors[offset:offset + len(items)]
                if len(batch_vectors) != len(items):
                    raise ValueError(f"more records than vectors ({len(vectors)})")
            offset += len(items)
            self._upsert_batch(items, batch_vectors, stats)
            ids.extend(item[0] for item in items)
        if vectors is not None and offset != len(vectors):
            raise ValueError(f"{offset} records but {len(vectors)} vectors")
        self.last_upsert = stats
        return ids

    def add_texts(self, texts: Iterable[str], *, ids: Sequence[str] | None = None,
                  metadatas: Sequence[dict[str, Any]] | None = None, vectors: np.ndarray | None = None
                  ) -> list[str]:
        """Add texts (new uuid4 hex ids when ``ids`` is None); an existing id is replaced."""
        texts = list(texts)
        if ids is not None and len(ids) != len(texts):
            raise ValueError(f"{len(texts)} texts but {len(ids)} ids")
        if metadatas is not None and len(metadatas) != len(texts):
            raise ValueError(f"{len(texts)} texts but {len(metadatas)} metadatas")
        chosen = [uuid.uuid4().hex for _ in texts] if ids is None else [str(i) for i in ids]
        records = [Record(doc_id, text, dict(metadatas[i]) if metadatas is not None and metadatas[i] else {})
                   for i, (doc_id, text) in enumerate(zip(chosen, texts))]
        return self.upsert(records, vectors=vectors)

    def _upsert_batch(self, items: list[tuple[str, str, str]], vectors: np.ndarray | None,
                      stats: UpsertStats) -> None:
        last: dict[str, int] = {}
        for position, item in enumerate(items):
            last[item[0]] = position
        if len(last) != len(items):  # duplicate ids in one batch: the last one wins
            keep = sorted(last.values())
            items = [items[i] for i in keep]
            vectors = None if vectors is None else vectors[keep]
        hashes = [content_hash(text, meta) for _, text, meta in items]
        with self._lock:
            existing = self._docs.lookup([item[0] for item in items])
            if vectors is None:
                changed = [i for i, (item, digest) in enumerate(zip(items, hashes))
                           if existing.get(item[0], (None, None))[1] != digest]
            else:
                changed = list(range(len(items)))
            stats.skipped += len(items) - len(changed)
            if not changed:
                return
            replaced = [existing[items[i][0]][0] for i in changed if items[i][0] in existing]
            stats.replaced += len(replaced)
            stats.added += len(changed) - len(replaced)
            if vectors is None:
                new_vectors = self._encode([items[i][1] for i in changed], "pass the documents' vectors (vectors=)",
                                           batch_size=len(changed))
            else:
                new_vectors = np.array(vectors[changed], dtype=np.float32)
                if self._docs.get_meta(GIVEN_VECTORS_KEY) is None:
                    self._docs.set_meta(GIVEN_VECTORS_KEY, "1")  # _touch() below drops the cached answer
            _normalize_rows(new_vectors)
            iids = self._docs.next_iids(len(changed))
            if replaced:
                self._remove_vectors(np.asarray(replaced, dtype=np.int64))
                self._docs.delete_iids(replaced)
            self._docs.insert([(int(iid), items[i][0], items[i][1], items[i][2], hashes[i])
                               for iid, i in zip(iids, changed)])
            self._index.add_with_ids(new_vectors, iids)
            self._docs.commit()
            self._count += len(changed) - len(replaced)
            self._touch()

    def delete(self, ids: Iterable[str]) -> int:
        """Remove documents by id; unknown ids are ignored. Returns how many were removed."""
        wanted = list(dict.fromkeys(str(i) for i in ids))
        with self._lock:
            found = self._docs.lookup(wanted)
            if not found:
                return 0
            iids = np.asarray(sorted(iid for iid, _ in found.values()), dtype=np.int64)
            self._remove_vectors(iids)
            self._docs.delete_iids(iids.tolist())
            self._docs.commit()
            self._count -= len(iids)
            self._touch()
            return len(iids)

    def clear(self) -> None:
        """Remove every document (the index type and model stay)."""
        with self._lock:
            self._docs.clear()
            self._docs.delete_meta(GIVEN_VECTORS_KEY)
            self._docs.commit()
            self._index = factories.new_index(self._spec, self.dim) if not self._spec.factory.startswith("IVF") \
                else self._emptied_ivf()
            self._count = 0
            self._tombstones = 0
            self._touch()

    def _emptied_ivf(self) -> Any:
        self._index.reset()
        return self._index

    def _remove_vectors(self, iids: np.ndarray) -> None:
        if self._spec.kind == "hnsw" or self._tombstones:
            removable = False
        else:
            removable = True
        if removable:
            try:
                removed = self._index.remove_ids(iids)
                if removed != len(iids):
                    raise IndexCorruptError(f"FAISS removed {removed} of {len(iids)} vectors")
                return
            except RuntimeError:  # this index type cannot remove: mark them deleted instead
                pass
        self._docs.add_tombstones(iids.tolist())
        self._tombstones += len(iids)

    def _touch(self) -> None:
        self._version += 1
        self._cache.clear()

    # ------------------------------------------------------------------ reads
    def get(self, ids: Sequence[str]) -> list[Record]:
        """The stored documents among ``ids``, in the order asked (unknown ids left out)."""
        wanted = [str(i) for i in ids]
        with self._lock:
            rows = self._docs.rows_by_id(wanted)
        return [Record(doc_id, rows[doc_id][1], json.loads(rows[doc_id][2])) for doc_id in wanted if doc_id in rows]

    def ids(self, filter: dict[str, Any] | None = None) -> list[str]:
        """The ids of the stored documents whose metadata match ``filter`` (all of them for None),
        in insertion order; no vectors are searched."""
        with self._lock:
            return self._docs.match_ids(filter)

    def search(self, query: str | np.ndarray, k: int = 10, *, filter: dict[str, Any] | None = None,
               include_vectors: bool = False, nprobe: int | None = None, ef_search: int | None = None
               ) -> list[Hit]:
        """The ``k`` documents closest to ``query`` (a text or a vector), best first."""
        if isinstance(query, np.ndarray):
            if query.ndim != 1:
                raise ValueError(f"a query vector must be 1-D with {self.dim} values, got shape {query.shape}")
            queries: Any = query[None, :]
        elif isinstance(query, str):
            queries = [query]
        else:
            raise TypeError(f"query must be a str or a 1-D numpy array, got {type(query).__name__}")
        return self.search_batch(queries, k, filter=filter, include_vectors=include_vectors, nprobe=nprobe,
                                 ef_search=ef_search)[0]

    def search_batch(self, queries: Sequence[str] | np.ndarray, k: int = 10, *, filter: dict[str, Any] | None = None,
                     include_vectors: bool = False, nprobe: int | None = None, ef_search: int | None = None
                     ) -> list[list[Hit]]:
        """One list of hits per query. ``filter`` selects documents inside the FAISS search."""
        if not isinstance(k, (int, np.integer)) or isinstance(k, bool) or k < 1:
            raise ValueError(f"k must be a positive integer, got {k!r}")
        matrix = self._query_matrix(queries)
        with self._lock:
            empty: list[list[Hit]] = [[] for _ in range(len(matrix))]
            if len(matrix) == 0 or self._count == 0:
                return empty
            matched: np.ndarray | None = None
            if filter:
                matched = self._docs.match_iids(filter)
                if len(matched) == 0:
                    return empty
            elif self._tombstones:
                matched = self._live_iids()
            available = self._count if matched is None else len(matched)
            k_eff = int(min(k, available))
            rerank = self._reranks()
            k_search = int(min(k_eff * RERANK_FACTOR, available)) if rerank else k_eff
            with _omp_threads(1 if len(matrix) < SMALL_BATCH else None):
                scores, labels = self._faiss_search(matrix, k_search, matched, nprobe, ef_search)
            found = labels[labels >= 0]
            rows = self._docs.rows_by_iid(np.unique(found).tolist())
            if rerank:
                scores, labels = self._rerank_exact(matrix, labels, rows, k_eff)
            vectors = self._vectors_for(rows) if include_vectors else {}
        results: list[list[Hit]] = []
        metadata_cache: dict[int, dict[str, Any]] = {}
        for row_scores, row_labels in zip(scores, labels):
            hits = []
            for score, label in zip(row_scores.tolist(), row_labels.tolist()):
                if label < 0 or label not in rows:
                    continue
                doc_id, text, meta = rows[label]
                if label not in metadata_cache:
                    metadata_cache[label] = json.loads(meta)
                hits.append(Hit(doc_id, float(score), text, dict(metadata_cache[label]),
                                vectors.get(label) if include_vectors else None))
            results.append(hits)
        return results

    def _reranks(self) -> bool:
        """Whether searches re-score their candidates exactly: the index stores lossy codes (PQ,
        SQ), and every vector in it is the model's encoding of the stored text, so the static
        model can recompute the exact vectors of a few candidates for far less than storing them."""
        if "rerank" not in self._cache:
            self._cache["rerank"] = self._lossy() and self._vectors_from_model()
        return bool(self._cache["rerank"])

    def _vectors_from_model(self) -> bool:
        """Whether every stored vector is the model's encoding of its stored text."""
        return self.model is not None and self._docs.get_meta(GIVEN_VECTORS_KEY) is None

    def _lossy(self) -> bool:
        """Whether the index keeps compressed codes (PQ, SQ) instead of the vectors themselves."""
        return "PQ" in self._spec.factory or "SQ" in self._spec.factory

    def _rerank_exact(self, matrix: np.ndarray, labels: np.ndarray, rows: dict[int, tuple[str, str, str]],
                      k: int, block: int = 1024) -> tuple[np.ndarray, np.ndarray]:
        """The best ``k`` of each query's candidates (``labels``) by exact cosine with the vectors
        the model gives their stored texts (``block`` queries at a time bounds the gathered vectors)."""
        assert self.model is not None
        present = np.asarray(sorted(rows), dtype=np.int64)
        exact_scores = np.full(labels.shape, -np.inf, dtype=np.float32)
        if len(present):
            vectors = self.model.encode([rows[int(iid)][1] for iid in present], normalize=True)
            position = np.searchsorted(present, labels).clip(0, len(present) - 1)
            valid = (labels >= 0) & (present[position] == labels)
            for start in range(0, len(matrix), block):
                part = slice(start, start + block)
                scored = np.einsum("qd,qcd->qc", matrix[part], vectors[position[part]])
                exact_scores[part] = np.where(valid[part], scored, -np.inf)
        order = np.argsort(-exact_scores, axis=1, kind="stable")[:, :k]
        best_scores = np.take_along_axis(exact_scores, order, axis=1)
        best_labels = np.where(np.isfinite(best_scores), np.take_along_axis(labels, order, axis=1), -1)
        return best_scores, best_labels

    def _query_matrix(self, queries: Sequence[str] | np.ndarray) -> np.ndarray:
        if isinstance(queries, np.ndarray):
            if queries.ndim != 2 or queries.shape[1] != self.dim:
                raise ValueError(f"query vectors must have shape (n, {self.dim}), got {queries.shape}")
            matrix = np.array(queries, dtype=np.float32)
        else:
            if isinstance(queries, str):
                raise TypeError("search_batch takes a list of queries; use search() for one")
            texts = list(queries)
            for position, text in enumerate(texts):
                if not isinstance(text, str):
                    raise TypeError(f"queries[{position}] is {type(text).__name__}, expected str")
            matrix = self._encode(texts, "pass query vectors") if texts else np.zeros((0, self.dim), np.float32)
            matrix = np.array(matrix, dtype=np.float32)
        _normalize_rows(matrix)
        return matrix

    def _live_iids(self) -> np.ndarray:
        if "live" not in self._cache:
            self._cache["live"] = self._docs.match_iids(None)
        return self._cache["live"]

    def _faiss_search(self, matrix: np.ndarray, k: int, matched: np.ndarray | None, nprobe: int | None,
                      ef_search: int | None) -> tuple[np.ndarray, np.ndarray]:
        import faiss

        params = self.search_params
        ntotal = max(1, self._index.ntotal)
        ratio = 1.0 if matched is None else len(matched) / ntotal
        selector, _keep = _bitmap_selector(matched)
        hnsw = factories.hnsw_of(self._index)
        ivf = factories.ivf_of(self._index)
        if hnsw is not None:
            if matched is not None and ratio < HNSW_EXACT_RATIO:
                return self._hnsw_exact(matrix, k, matched)
            ef = int(ef_search or params.get("efSearch") or factories.HNSW_EF_SEARCH)
            ef = int(min(max(ef, k) / max(ratio, 1e-9), max(ef, k, 4096)))
            search_params = faiss.SearchParametersHNSW(efSearch=max(ef, k), sel=selector)
            scores, labels = self._index.search(matrix, k, params=search_params)
            short = np.flatnonzero((labels >= 0).sum(axis=1) < k)
            if len(short):  # the graph walk found too few matching documents: search those exactly
                scores[short], labels[short] = self._hnsw_exact(matrix[short], k, matched)
            return scores, labels
        if ivf is not None:
            probes = int(nprobe or params.get("nprobe") or 16)
            probes = int(min(ivf.nlist, math.ceil(probes / max(ratio, 1e-9))))
            scores, labels = self._index.search(matrix, k, params=faiss.SearchParametersIVF(nprobe=probes,
                                                                                           sel=selector))
            short = np.flatnonzero((labels >= 0).sum(axis=1) < k)
            if len(short) and probes < ivf.nlist:  # too few found in the probed lists: probe them all
                all_lists = faiss.SearchParametersIVF(nprobe=ivf.nlist, sel=selector)
                scores[short], labels[short] = self._index.search(matrix[short], k, params=all_lists)
            return scores, labels
        search_params = faiss.SearchParameters(sel=selector) if selector is not None else None
        return self._index.search(matrix, k, params=search_params)

    def _hnsw_exact(self, matrix: np.ndarray, k: int, matched: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        """Exact search over the HNSW's flat storage, restricted to ``matched`` (None: all live)."""
        import faiss

        hnsw = factories.hnsw_of(self._index)
        storage = faiss.downcast_index(hnsw.storage)
        id_map = self._id_map()
        if matched is None and self._tombstones:
            matched = self._live_iids()
        selector, keep = None, None
        if matched is not None:
            order = np.argsort(id_map, kind="stable")
            positions = order[np.searchsorted(id_map, matched, sorter=order)]
            selector, keep = _bitmap_selector(positions)
        params = faiss.SearchParameters(sel=selector) if selector is not None else None
        scores, positions_found = storage.search(matrix, k, params=params)
        labels = np.where(positions_found >= 0, id_map[np.maximum(positions_found, 0)], -1)
        del keep
        return scores, labels

    def _id_map(self) -> np.ndarray:
        import faiss

        if "id_map" not in self._cache:
            self._cache["id_map"] = faiss.vector_to_array(self._index.id_map).astype(np.int64)
        return self._cache["id_map"]

    def _vectors_for(self, rows: dict[int, tuple[str, str, str]]) -> dict[int, np.ndarray]:
        vectors: dict[int, np.ndarray] = {}
        missing: list[int] = []
        for iid in rows:
            try:
                vectors[iid] = np.asarray(self._index.reconstruct(int(iid)), dtype=np.float32)
            except RuntimeError:
                missing.append(iid)
        if missing:  # index without reconstruction: encode the stored texts again
            encoded = self._encode([rows[i][1] for i in missing],
                                   f"its {self._spec.factory!r} index cannot return the stored vectors")
            _normalize_rows(encoded)
            vectors.update(zip(missing, encoded))
        return vectors

    # ------------------------------------------------------------------ conversion
    def _all_vectors(self) -> tuple[np.ndarray, np.ndarray]:
        """(ids, vectors) of the live documents, for a flat or HNSW index with an IDMap."""
        import faiss

        id_map = self._id_map()
        inner = faiss.downcast_index(self._index.index)
        if isinstance(inner, faiss.IndexHNSW):
            inner = faiss.downcast_index(inner.storage)
        vectors = inner.reconstruct_n(0, inner.ntotal) if inner.ntotal else np.zeros((0, self.dim), np.float32)
        if self._tombstones:
            keep = np.isin(id_map, self._live_iids())
            return id_map[keep], vectors[keep]
        return id_map, vectors

    def _target_spec(self) -> factories.IndexSpec:
        if self._requested.get("factory"):
            return factories.custom_spec(self._requested["factory"])
        return factories.resolve(self._requested.get("kind", "auto"), self._count, self.dim,
                                 self._requested.get("memory_budget"))

    def finalize(self) -> None:
        """Switch from the exact staging index to the requested one once there are enough vectors
        (IVF needs training; ``auto`` picks by size), and compact an HNSW with many deletions.
        Called by :meth:`save`."""
        with self._lock:
            if self._spec.kind == "flat" and self._count:
                target = self._target_spec()
                if target.factory != self._spec.factory:
                    self._convert(target)
            elif self._spec.kind == "hnsw" and self._tombstones > HNSW_COMPACT_RATIO * max(1, self._index.ntotal):
                self._convert(self._spec)

    def _convert(self, target: factories.IndexSpec) -> None:
        ids, vectors = self._all_vectors()
        new = factories.new_index(target, self.dim)
        if not new.is_trained:
            nlist = int(target.params.get("nlist", 1))
            minimum = max(factories.IVF_MIN_VECTORS, 39 * nlist, 39 * 256 if target.kind == "ivf-pq" else 0)
            if len(ids) < minimum and self._requested.get("factory") is None:
                return  # too few vectors to train well: stay exact until the index grows
            rng = np.random.default_rng(0)
            sample = vectors if len(vectors) <= _MAX_TRAIN else vectors[np.sort(rng.choice(len(vectors), _MAX_TRAIN,
                                                                                           replace=False))]
            new.train(np.ascontiguousarray(sample))
        for start in range(0, len(ids), 65_536):
            new.add_with_ids(np.ascontiguousarray(vectors[start:start + 65_536]), ids[start:start + 65_536])
        self._index = new
        self._spec = target
        if self._tombstones:
            self._docs.clear_tombstones()
            self._docs.commit()
            self._tombstones = 0
        self._touch()

    # ------------------------------------------------------------------ persistence
    def save(self, path: str | os.PathLike[str] | None = None, *, finalize: bool = True) -> None:
        """Write a new generation atomically (files first, then the manifest); ``path`` None = self.path.

        ``finalize=False`` saves the index as it is (a build checkpoint), without switching type.

        Raises IndexLockedError when another process is writing there, and IndexConflictError when
        the index on disk changed since this one was opened from it.
        """
        import faiss

        target = Path(path) if path is not None else self.path
        if target is None:
            raise ValueError("this index has no path: pass save(path)")
        with self._lock, self.writer_lock(target):
            if finalize:
                self.finalize()
            same_place = self.path is not None and target.resolve() == self.path.resolve()
            on_disk = _generation_on_disk(target)
            if same_place and self._generation is not None and on_disk != self._generation:
                raise IndexConflictError(f"{target} was changed by another writer since it was opened "
                                         f"(generation {self._generation} -> {on_disk}); open it again")
            generation = commit_generation(
                target, lambda path: faiss.write_index(self._index, str(path)), self._docs,
                lambda generation, index_name, docs_name: self._manifest(generation, index_name, docs_name, target))
            self.path = target
            self._generation = generation

    def _manifest(self, generation: str, index_name: str, docs_name: str, directory: Path) -> dict[str, Any]:
        return {
            "format": FORMAT_NAME,
            "format_version": FORMAT_VERSION,
            "generation": generation,
            "saved_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "libraries": library_versions(),
            "model": {"external": True, "dim": self.dim} if self.model is None else {
                "name": self.model.name,
                "path": self.model_path,
                "fingerprint": self.model.fingerprint,
                "dim": self.dim,
                "tokenizer_backend": self.model.tokenizer_backend,
                "embedding_dtype": self.model.embedding_dtype,
            },
            "dim": self.dim,
            "metric": "inner_product",
            "normalized": True,
            "index": {
                "file": index_name,
                "kind": self._spec.kind,
                "factory": self._spec.factory,
                "search_params": self._spec.params,
                "requested": self._requested.get("kind"),
                "requested_factory": self._requested.get("factory"),
                "memory_budget": self._requested.get("memory_budget"),
            },
            "docstore": {"file": docs_name, "schema": 1},
            "counts": {"documents": self._count, "vectors": int(self._index.ntotal), "deleted": self._tombstones},
            "build": self.build_info,
            "files": {name: file_entry(directory / name) for name in (index_name, docs_name)},
        }

    # ------------------------------------------------------------------ checks
    def verify(self) -> list[str]:
        """Deep consistency check (beyond checksums): every document has exactly one vector."""
        problems: list[str] = []
        with self._lock:
            status = self._docs.integrity_check()
            if status != "ok":
                problems.append(f"docstore integrity check: {status}")
            live = self._docs.match_iids(None)
            tombstones = self._docs.tombstones()
            if self._index.ntotal != len(live) + len(tombstones):
                problems.append(f"FAISS holds {self._index.ntotal} vectors, docstore {len(live)} documents "
                                f"+ {len(tombstones)} deleted")
            if hasattr(self._index, "id_map"):
                stored = np.sort(self._id_map())
                expected = np.sort(np.concatenate([live, tombstones]))
                if stored.shape != expected.shape or not np.array_equal(stored, expected):
                    problems.append("FAISS ids and docstore ids differ")
            if len(live):
                sample = live[np.linspace(0, len(live) - 1, min(len(live), 64)).astype(np.int64)]
                rows = self._docs.rows_by_iid(sample.tolist())
                try:
                    stored_vectors = np.stack([self._index.reconstruct(int(i)) for i in sample])
                except RuntimeError:
                    stored_vectors = None
                if stored_vectors is not None and not self._lossy() and self._vectors_from_model():
                    assert self.model is not None
                    fresh = self.model.encode([rows[int(i)][1] for i in sample], normalize=False)
                    _normalize_rows(fresh)
                    worst = float(np.max(np.abs(fresh - stored_vectors)))
                    if worst > 1e-3:
                        problems.append(f"stored vectors differ from the model's encoding (max |diff| {worst:.3g})")
        return problems

    def iter_records(self) -> Iterator[Record]:
        for _, doc_id, text, meta, _ in self._docs.iter_rows():
            yield Record(doc_id, text, json.loads(meta))


# ---------------------------------------------------------------------- helpers
def _coerce_record(record: Record | dict[str, Any], position: int) -> tuple[str, str, str]:
    """(id, text, metadata_json) of a record, with errors naming its position."""
    if isinstance(record, Record):
        doc_id, text, metadata = record.id, record.text, record.metadata
    elif isinstance(record, dict):
        if "text" not in record:
            raise ValueError(f"records[{position}] has no 'text'")
        if "id" not in record or record["id"] is None:
            raise ValueError(f"records[{position}] has no 'id'")
        doc_id, text, metadata = record["id"], record["text"], record.get("metadata") or {}
    else:
        raise TypeError(f"records[{position}] is {type(record).__name__}; expected a Record or a dict")
    if isinstance(doc_id, (int, np.integer)) and not isinstance(doc_id, bool):
        doc_id = str(doc_id)
    if not isinstance(doc_id, str) or not doc_id:
        raise ValueError(f"records[{position}] id must be a non-empty str, got {doc_id!r}")
    if not isinstance(text, str):
        raise TypeError(f"records[{position}] text is {type(text).__name__}, expected str")
    if not isinstance(metadata, dict):
        raise TypeError(f"records[{position}] metadata is {type(metadata).__name__}, expected a dict")
    try:
        return doc_id, text, metadata_json(metadata)
    except (TypeError, ValueError) as error:
        raise ValueError(f"records[{position}] metadata is not JSON-serialisable: {error}") from None


class _omp_threads:  # noqa: N801 - used as a context manager
    """Run FAISS with ``count`` OpenMP threads in this thread (None: leave as is)."""

    def __init__(self, count: int | None) -> None:
        self.count = count
        self.previous: int | None = None

    def __enter__(self) -> None:
        if self.count is not None:
            import faiss

            self.previous = faiss.omp_get_max_threads()
            faiss.omp_set_num_threads(self.count)

    def __exit__(self, *exc: object) -> None:
        if self.previous is not None:
            import faiss

            faiss.omp_set_num_threads(self.previous)


def _normalize_rows(matrix: np.ndarray) -> None:
    """Scale rows to unit length in place; zero rows stay zero."""
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    np.divide(matrix, norms, out=matrix, where=norms > 0)


def _bitmap_selector(ids: np.ndarray | None) -> tuple[Any, Any]:
    """A FAISS IDSelectorBitmap over ``ids`` and the buffer it reads (keep it alive while searching)."""
    if ids is None:
        return None, None
    import faiss

    size = int(ids.max()) + 1 if len(ids) else 1
    bits = np.zeros(size, dtype=bool)
    bits[ids] = True
    packed = np.packbits(bits, bitorder="little")
    return faiss.IDSelectorBitmap(len(packed), faiss.swig_ptr(packed)), packed


def _read_faiss(path: Path) -> Any:
    import faiss

    try:
        return faiss.read_index(str(path))
    except RuntimeError as error:
        raise IndexCorruptError(f"{path} is not a readable FAISS index: {str(error).splitlines()[0]}") from None


def commit_generation(directory: Path, write_index: Callable[[Path], Any], docs: DocStore,
                      manifest: Callable[[str, str, str], dict[str, Any]]) -> str:
    """Write a new generation of an index directory and return its name.

    The FAISS file (``write_index(path)``) and the docstore are written under new names and
    fsynced, then ``manifest(generation, index_file, docstore_file)`` replaces ``manifest.json``
    (the commit point), then older generations are removed. A crash before the manifest is
    replaced leaves the previous generation in use; the caller holds the writer lock.
    """
    on_disk = _generation_on_disk(directory)
    sequence = int(str(on_disk or "0").split("-")[0] or 0) + 1
    generation = f"{sequence:06d}-{uuid.uuid4().hex[:8]}"
    index_name, docs_name = f"index.{generation}.faiss", f"docstore.{generation}.sqlite"
    staged_index, staged_docs = directory / f".{index_name}.tmp", directory / f".{docs_name}.tmp"
    try:
        write_index(staged_index)
        fsync_file(staged_index)
        docs.save_to(staged_docs)
        fsync_file(staged_docs)
        os.replace(staged_index, directory / index_name)
        os.replace(staged_docs, directory / docs_name)
    finally:
        for staged in (staged_index, staged_docs):
            staged.unlink(missing_ok=True)
    write_manifest(directory, manifest(generation, index_name, docs_name))
    _remove_old_generations(directory, {index_name, docs_name})
    fsync_dir(directory)
    return generation


def _generation_on_disk(directory: Path) -> str | None:
    try:
        return read_manifest(directory).get("generation")
    except (IndexNotFoundError, IndexCorruptError):
        return None


def _remove_old_generations(directory: Path, keep: set[str]) -> None:
    for pattern in ("index.*.faiss", "docstore.*.sqlite", ".index.*.tmp", ".docstore.*.tmp"):
        for path in directory.glob(pattern):
            if path.name not in keep:
                path.unlink(missing_ok=True)


def model_source(name_or_path: str | None) -> str:
    """What the manifest records for a model given by name or path: bundled name or absolute path."""
    from m2v_search.persistence import DEFAULT_MODEL_NAME, bundled_model_names

    if name_or_path is None:
        return DEFAULT_MODEL_NAME
    if name_or_path in bundled_model_names() or name_or_path == DEFAULT_MODEL_NAME:
        return name_or_path
    path = Path(name_or_path).expanduser()
    return str(path.resolve()) if path.exists() else name_or_path


def _load_model(model: StaticModel | str | os.PathLike[str] | None, model_path: str | None
                ) -> tuple[StaticModel, str | None]:
    from m2v_search.model import StaticModel

    if isinstance(model, StaticModel):
        if model_path is None:
            from m2v_search.persistence import bundled_model_names

            model_path = model.name if model.name in bundled_model_names() else None
        return model, model_path
    if model is not None and not isinstance(model, (str, os.PathLike)):
        raise TypeError(f"model must be a StaticModel, a name or a folder, got {type(model).__name__}")
    source = model_source(None if model is None else os.fspath(model))
    key = (source, _mtime(source))
    if key not in _MODEL_CACHE:  # reopening an index in one process does not reload its model
        if len(_MODEL_CACHE) >= 4:
            _MODEL_CACHE.pop(next(iter(_MODEL_CACHE)))
        _MODEL_CACHE[key] = StaticModel.from_pretrained(None if model is None else os.fspath(model))
    return _MODEL_CACHE[key], model_path or source


_MODEL_CACHE: dict[tuple[str, int], StaticModel] = {}


def _mtime(source: str) -> int:
    from m2v_search.persistence import BUNDLED_MODELS_DIR

    for folder in (Path(source), BUNDLED_MODELS_DIR / source):
        try:
            return max(p.stat().st_mtime_ns for p in folder.iterdir())
        except (OSError, ValueError):
            continue
    return 0


def _model_for_manifest(manifest: dict[str, Any], model: StaticModel | str | None, allow_mismatch: bool,
                        directory: Path) -> tuple[StaticModel | None, str | None]:
    recorded = manifest["model"]
    if recorded.get("external"):
        if model is not None and not allow_mismatch:
            raise ModelMismatchError(f"{directory} holds vectors computed elsewhere (no model); open it without "
                                     "model=, or force a model (allow_model_mismatch=True) whose vectors match")
        if model is None:
            return None, None
    if model is None:
        if not recorded.get("path"):
            raise ModelMismatchError(f"{directory} was built with an in-memory model ({recorded.get('name')!r}) "
                                     "whose folder was not recorded: pass model=")
        loaded, source = _load_model(recorded["path"], recorded["path"])
    else:
        loaded, source = _load_model(model, None)
        source = source or recorded.get("path")
    if loaded.dim != manifest["dim"]:
        raise ModelMismatchError(f"{directory} holds {manifest['dim']}-dim vectors; model {loaded.name!r} "
                                 f"gives {loaded.dim}")
    if loaded.fingerprint != recorded.get("fingerprint") and not allow_mismatch:
        raise ModelMismatchError(
            f"{directory} was built with model {recorded.get('name')!r} (fingerprint "
            f"{str(recorded.get('fingerprint'))[:12]}), but {loaded.name!r} has fingerprint "
            f"{loaded.fingerprint[:12]}; use the same model, or force it (allow_model_mismatch=True, "
            "--force-model) knowing that its vectors are not comparable")
    return loaded, source
