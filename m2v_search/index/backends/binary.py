"""Binary codes with exact re-scoring: ``binary`` (FAISS IndexBinaryFlat) and ``binary-hnsw``.

Each unit vector is stored twice, small: its sign code (one bit per dimension, 32 bytes for
256 dims) and its int8 copy with a per-vector scale (``x ~ scale * int8``). A search ranks
every code (or walks an HNSW graph of the codes) by Hamming distance to the query's code,
keeps the ``rescore`` nearest as candidates, scores those by the inner product of the float
query with their int8 copies, and returns the best ``k``. Memory for search is the codes plus
the int8 copies: 0.28x of a float32 flat index at 256 dims.

Measured on the GCIDE definitions (m2v-base, 256 dims; 1,000 half-definition queries; recall@10
against exact float32 search; ``benchmarks/index_speed.py --binary`` for the end-to-end figures):

* codes are signs of the vector minus the mean of the indexed vectors: centring balances the
  bits (std of the share of ones per bit 0.076 -> 0.005) and raised recall at 400 candidates
  from 0.987 to 0.990 on 172k; a random rotation gave the same, ITQ (30 iterations) +0.005 at
  100 candidates and nothing at 400+, so neither is used;
* re-scoring from int8 loses ~0.003 recall against float32 or float16 copies (score error std
  4.4e-4) at a quarter of float32's memory (float16 would be 0.53x flat, over the 0.3x target);
  re-encoding the stored texts of the best 40 as a second stage added +0.003 recall but 0.8 ms
  per query (fetching and encoding 40 texts), doubling the latency, so it is not done;
* candidates needed for recall@10 >= 0.99 grow as queries get farther from the documents: 640
  gave 0.992 on all 172k but 0.98 on the first 20k and 60k definitions (whose queries mostly
  come from definitions left out); :data:`~m2v_search.index.factory.BINARY_RESCORE` = 1536 gave
  0.992 / 0.990 / 0.994 on 20k / 60k / 172k. Hamming selection of 2,560 of 172k codes takes
  0.45 ms with FAISS's counting selection (``use_heap = False``) and 1.25 ms with its heap;
* for larger corpora a graph of codes (``binary-hnsw``) rather than inverted lists: FAISS
  IndexBinaryIVF on the 172k codes kept only 0.91 (256 lists) / 0.94 (1,024 lists) recall@10
  with 30% of the lists probed, at more time than scanning every code, and it takes no id
  selector for filters.

Deletions are tombstones (the codes and copies stay until a save compacts an index with more
than 20% of them). Filters: a filter keeping few vectors is scored exactly over its matches;
otherwise an id selector restricts the Hamming search, so results always satisfy the filter.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from m2v_search.index import factory as factories
from m2v_search.index.backends import binary_file
from m2v_search.index.backends.base import Backend, SearchOptions, bitmap_selector
from m2v_search.index.errors import IndexCorruptError

COMPACT_RATIO = 0.2      # tombstones above this share of the stored vectors call for a rebuild
EXACT_FACTOR = 4         # a filter keeping at most this many times the candidates is scored exactly
SCORE_BLOCK = 1 << 20    # int8 values gathered at a time (per thread) when re-scoring a batch of queries


class Int8Vectors:
    """A growable store of int8 vectors with per-vector scales and their ids, in insertion order.

    Args:
        dim: Dimensions.
        ids: Stored ids (n,) int64.
        codes: (n, dim) int8.
        scales: (n,) float32: each vector is ``scales[i] * codes[i]``.
    """

    def __init__(self, dim: int, ids: np.ndarray | None = None, codes: np.ndarray | None = None,
                 scales: np.ndarray | None = None) -> None:
        self.dim = dim
        self.ids = np.zeros(0, np.int64) if ids is None else np.array(ids, dtype=np.int64)
        self.codes = np.zeros((0, dim), np.int8) if codes is None else np.array(codes, dtype=np.int8)
        self.scales = np.zeros(0, np.float32) if scales is None else np.array(scales, dtype=np.float32)
        self.count = len(self.ids)

    @staticmethod
    def quantize(vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(int8 codes, scales)`` with ``vectors ~ scales[:, None] * codes`` (max |value| -> 127)."""
        peaks = np.abs(vectors).max(axis=1) if len(vectors) else np.zeros(0, np.float32)
        scales = (peaks / 127.0).astype(np.float32)
        safe = np.where(scales > 0, scales, 1.0).astype(np.float32)
        codes = np.clip(np.rint(vectors / safe[:, None]), -127, 127).astype(np.int8)
        return codes, scales

    def append(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        """Store ``vectors`` under ``ids`` (capacity grows geometrically: amortised O(1) per vector)."""
        codes, scales = self.quantize(np.asarray(vectors, dtype=np.float32))
        needed = self.count + len(ids)
        if needed > len(self.ids):
            capacity = max(needed, int(len(self.ids) * 1.5), 1024)
            self.ids = _grown(self.ids, capacity)
            self.codes = _grown(self.codes, capacity)
            self.scales = _grown(self.scales, capacity)
        self.ids[self.count:needed] = ids
        self.codes[self.count:needed] = codes
        self.scales[self.count:needed] = scales
        self.count = needed

    def vectors(self, positions: np.ndarray) -> np.ndarray:
        """The float32 approximations of the vectors at ``positions``."""
        return self.codes[positions].astype(np.float32) * self.scales[positions, None]

    def scores(self, queries: np.ndarray, positions: np.ndarray, threads: int = 1) -> np.ndarray:
        """Inner products of each query with its candidates' int8 copies.

        Args:
            queries: (nq, dim) float32.
            positions: (nq, c) positions in this store (-1: none; scored -inf).
            threads: Blocks of queries scored at once (numpy releases the GIL while it gathers
                and multiplies); one for a single query.

        Returns:
            (nq, c) float32.

        ``einsum`` rather than ``matmul``: BLAS spreads a (2560, 256) product over its threads,
        which took 17 ms instead of 0.4 ms per query on a busy 2-core host; ``np.take`` gathers
        rows about 25% faster than fancy indexing.
        """
        scores = np.full(positions.shape, -np.inf, dtype=np.float32)
        if not positions.size:
            return scores
        block = max(1, SCORE_BLOCK // max(1, positions.shape[1] * self.dim))
        safe = np.maximum(positions, 0)

        def score_block(start: int) -> None:
            part = slice(start, start + block)
            rows = safe[part]
            gathered = np.take(self.codes, rows, axis=0).astype(np.float32)  # (b, c, dim)
            raw = np.einsum("bcd,bd->bc", gathered, queries[part]) * np.take(self.scales, rows)
            scores[part] = np.where(positions[part] >= 0, raw, -np.inf)

        starts = range(0, len(queries), block)
        if threads <= 1 or len(starts) == 1:
            for start in starts:
                score_block(start)
        else:
            from concurrent.futures import ThreadPoolExecutor

            with ThreadPoolExecutor(min(threads, len(starts))) as pool:
                list(pool.map(score_block, starts))
        return scores


def _grown(array: np.ndarray, capacity: int) -> np.ndarray:
    grown = np.zeros((capacity, *array.shape[1:]), dtype=array.dtype)
    grown[:len(array)] = array
    return grown


def sign_codes(vectors: np.ndarray, center: np.ndarray) -> np.ndarray:
    """Packed sign bits of ``vectors - center``: (n, dim/8) uint8, as FAISS binary indexes take them."""
    return np.packbits(np.asarray(vectors, dtype=np.float32) - center > 0, axis=1)


class BinaryBackend(Backend):
    """Sign codes in a FAISS IndexBinaryFlat, candidates re-scored from int8 copies (module docstring).

    ``index`` holds the codes under their storage positions; :class:`Int8Vectors` maps positions
    to ids. The centre of the codes is learnt by :meth:`train` (the mean of a sample), so new
    indexes collect vectors exactly (flat) until the first save, like IVF.

    Args:
        index: The FAISS binary index (labels are positions in ``store``).
        spec: Kind, factory and search defaults (``rescore``).
        tombstones: Ids deleted but still stored.
        store: The int8 copies and ids (None: empty).
        center: The mean subtracted before taking signs (None: not trained yet).
    """

    kinds = ("binary",)

    def __init__(self, index: Any, spec: factories.IndexSpec, tombstones: np.ndarray | None = None, *,
                 store: Int8Vectors | None = None, center: np.ndarray | None = None) -> None:
        super().__init__(index, spec, tombstones)
        self._store = store if store is not None else Int8Vectors(int(index.d))
        self._center = None if center is None else np.asarray(center, dtype=np.float32)

    # ------------------------------------------------------------------ construction
    @classmethod
    def new_codes_index(cls, spec: factories.IndexSpec, dim: int) -> Any:
        """An empty FAISS binary index of ``dim`` bits for ``spec``."""
        import faiss

        index = faiss.IndexBinaryFlat(dim)
        index.use_heap = False  # counting selection: 0.45 ms instead of 1.25 ms for 2,560 of 172k codes
        return index

    @classmethod
    def create(cls, spec: factories.IndexSpec, dim: int) -> Backend:
        """A new, empty, untrained backend (see :meth:`Backend.create`).

        Raises:
            ValueError: ``dim`` is not a multiple of 8 (codes are whole bytes).
        """
        if dim % 8:
            raise ValueError(f"binary indexes need dims divisible by 8, got {dim}")
        return cls(cls.new_codes_index(spec, dim), spec)

    @classmethod
    def from_bytes(cls, data: bytes | np.ndarray, spec: factories.IndexSpec,
                   tombstones: np.ndarray | None = None) -> Backend:
        """A backend read from :meth:`to_bytes`'s file (see :mod:`.binary_file`).

        Raises:
            IndexCorruptError: The file is not a binary index, or its parts disagree.
        """
        import faiss

        meta, arrays = binary_file.read_arrays(data)
        wanted = {"faiss": 1, "ids": 1, "int8": 2, "scales": 1, "center": 1}
        for name, ndim in wanted.items():
            if name not in arrays or arrays[name].ndim != ndim:
                raise IndexCorruptError(f"binary index file lacks array {name!r} of {ndim} dimension(s)")
        try:
            index = faiss.deserialize_index_binary(np.ascontiguousarray(arrays["faiss"], dtype=np.uint8))
        except RuntimeError as error:
            raise IndexCorruptError(f"not a readable FAISS binary index: {str(error).splitlines()[0]}") from None
        count, dim = arrays["int8"].shape
        if meta.get("kind") != spec.kind or int(index.d) != dim or int(index.ntotal) != count \
                or len(arrays["ids"]) != count or len(arrays["scales"]) != count or len(arrays["center"]) != dim:
            raise IndexCorruptError(f"binary index parts disagree: kind {meta.get('kind')!r} (manifest "
                                    f"{spec.kind!r}), {int(index.ntotal)} codes of {int(index.d)} bits, "
                                    f"{count} int8 vectors of {dim} dims, {len(arrays['ids'])} ids")
        store = Int8Vectors(dim, arrays["ids"], arrays["int8"], arrays["scales"])
        backend = cls(index, spec, tombstones, store=store, center=arrays["center"])
        backend.apply_search_defaults()
        return backend

    def apply_search_defaults(self) -> None:
        """Set the FAISS search settings that are not saved with the index."""
        self.index.use_heap = False

    def _parts(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        import faiss

        if self._center is None:
            raise ValueError("an untrained binary index cannot be saved (train it first)")
        n = self._store.count
        return ({"kind": self.spec.kind, "count": n},
                {"faiss": faiss.serialize_index_binary(self.index), "ids": self._store.ids[:n],
                 "int8": self._store.codes[:n], "scales": self._store.scales[:n], "center": self._center})

    def to_bytes(self) -> bytes:
        """The index file's bytes (codes, int8 copies, scales, ids, centre; see :mod:`.binary_file`)."""
        return binary_file.to_bytes(*self._parts())

    def write(self, path: Path) -> None:
        """Write the index file (same bytes as :meth:`to_bytes`).

        Args:
            path: The file to write.
        """
        binary_file.write_arrays(path, *self._parts())

    # ------------------------------------------------------------------ facts
    @property
    def dim(self) -> int:
        """Dimensions of the vectors (bits of a code)."""
        return self._store.dim

    @property
    def ntotal(self) -> int:
        """Vectors stored, tombstoned ones included."""
        return self._store.count

    @property
    def is_trained(self) -> bool:
        """Whether the centre of the codes is known."""
        return self._center is not None

    @property
    def lossy(self) -> bool:
        """True: the stored copies are int8 (scores are within ~1e-3 of the exact cosine)."""
        return True

    @property
    def rescores_internally(self) -> bool:
        """True: :meth:`search` already re-scores its candidates; the front need not re-encode texts."""
        return True

    def min_training_vectors(self) -> int:
        """One: the centre is a mean, and any sample gives one (candidates are re-scored anyway)."""
        return 1

    def needs_compaction(self) -> bool:
        """Whether tombstones exceed 20% of the stored vectors."""
        return self.tombstone_count > COMPACT_RATIO * max(1, self.ntotal)

    def removes_in_place(self) -> bool:
        """Never: deleted vectors become tombstones until a compaction."""
        return False

    # ------------------------------------------------------------------ writes
    def train(self, vectors: np.ndarray) -> None:
        """Learn the centre of the codes: the mean of ``vectors``.

        Args:
            vectors: (n, dim) unit rows, n >= 1.
        """
        self._center = np.asarray(vectors, dtype=np.float32).mean(axis=0).astype(np.float32)

    def add(self, ids: np.ndarray, vectors: np.ndarray, chunk: int = 65_536) -> None:
        """Store unit ``vectors`` under ``ids`` (codes and int8 copies).

        Args:
            ids: int64 ids, not stored yet.
            vectors: (n, dim) float32 unit rows.
            chunk: Vectors coded at a time.

        Raises:
            ValueError: The backend is not trained.
        """
        if self._center is None:
            raise ValueError("train the binary index before adding vectors")
        ids = np.asarray(ids, dtype=np.int64)
        for start in range(0, len(ids), chunk):
            part = np.asarray(vectors[start:start + chunk], dtype=np.float32)
            self.index.add(sign_codes(part, self._center))
            self._store.append(ids[start:start + chunk], part)
        self._cache.clear()

    def reset(self) -> Backend:
        """An empty backend of the same kind that keeps the learnt centre."""
        return type(self)(self.new_codes_index(self.spec, self.dim), self.spec, center=self._center)

    # ------------------------------------------------------------------ reads
    def stored_ids(self) -> np.ndarray:
        """Every id stored, in storage order."""
        return self._store.ids[:self._store.count]

    def _positions(self, ids: np.ndarray) -> np.ndarray:
        """Storage positions of stored ``ids``."""
        if "order" not in self._cache:
            self._cache["order"] = np.argsort(self.stored_ids(), kind="stable")
        order = self._cache["order"]
        return order[np.searchsorted(self.stored_ids(), ids, sorter=order)]

    def _live_selector(self) -> tuple[Any, Any]:
        """The id selector of the live positions and its buffer, kept until the next write."""
        if "live_bitmap" not in self._cache:
            live = np.ones(self._store.count, dtype=bool)
            live[self._positions(self._tombstones)] = False
            self._cache["live_bitmap"] = np.packbits(live, bitorder="little")
        import faiss

        packed = self._cache["live_bitmap"]
        return faiss.IDSelectorBitmap(len(packed), faiss.swig_ptr(packed)), packed

    def reconstruct(self, ids: list[int]) -> dict[int, np.ndarray]:
        """The int8 approximations of the stored vectors of ``ids`` (unknown ids left out)."""
        wanted = np.asarray(ids, dtype=np.int64)
        if not len(wanted) or not self._store.count:
            return {}
        positions = self._positions(wanted)
        found = self.stored_ids()[positions] == wanted
        vectors = self._store.vectors(positions[found])
        return {int(i): v for i, v in zip(wanted[found], vectors)}

    def live_vectors(self) -> tuple[np.ndarray, np.ndarray]:
        """``(ids, int8 approximations)`` of every live vector (re-quantising them gives the same codes)."""
        ids = self.live_ids()
        return ids, self._store.vectors(self._positions(ids)) if len(ids) else np.zeros((0, self.dim), np.float32)

    def search(self, queries: np.ndarray, k: int, allowed: np.ndarray | None,
               options: SearchOptions) -> tuple[np.ndarray, np.ndarray]:
        """Top ``k`` after re-scoring the Hamming-nearest candidates (see :meth:`Backend.search`).

        ``options.rescore`` (default: the spec's ``rescore``) sets the candidates per query.
        """
        import faiss

        live_only = allowed is None and self.tombstone_count > 0
        allowed = self.allowed_or_live(allowed)
        candidates = max(k, int(options.rescore or self.spec.params.get("rescore") or factories.BINARY_RESCORE))
        if allowed is not None and len(allowed) <= EXACT_FACTOR * candidates:
            positions = np.broadcast_to(self._positions(allowed), (len(queries), len(allowed)))
        else:
            count = self._store.count if allowed is None else len(allowed)
            selector, keep = self._live_selector() if live_only else \
                bitmap_selector(None if allowed is None else self._positions(allowed))
            positions = self._candidates(sign_codes(queries, self._center), min(candidates, count), selector,
                                         allowed, options)
            del keep

        # as many threads as FAISS may use here: the front allows one for a single query (or a
        # small batch) and every core for a large batch
        scores = self._store.scores(queries, np.ascontiguousarray(positions), threads=faiss.omp_get_max_threads())
        return self._best(scores, positions, k)

    def _candidates(self, codes: np.ndarray, count: int, selector: Any, allowed: np.ndarray | None,
                    options: SearchOptions) -> np.ndarray:
        """Positions of the ``count`` codes nearest ``codes`` in Hamming distance, among ``selector``'s."""
        import faiss

        params = faiss.SearchParameters(sel=selector) if selector is not None else None
        _, positions = self.index.search(codes, count, params=params)
        return positions

    def _best(self, scores: np.ndarray, positions: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` best scored candidates per query, as ``(scores, ids)`` (-1 where missing)."""
        width = min(k, scores.shape[1])
        if width < scores.shape[1]:
            part = np.argpartition(-scores, width - 1, axis=1)[:, :width]
        else:
            part = np.broadcast_to(np.arange(width), (len(scores), width))
        top_scores = np.take_along_axis(scores, part, axis=1)
        order = np.argsort(-top_scores, axis=1, kind="stable")
        best = np.take_along_axis(part, order, axis=1)
        best_scores = np.take_along_axis(top_scores, order, axis=1)
        best_positions = np.take_along_axis(positions, best, axis=1)
        ids = np.where(np.isfinite(best_scores) & (best_positions >= 0),
                       self.stored_ids()[np.maximum(best_positions, 0)], -1)
        out_scores = np.full((len(scores), k), -np.inf, dtype=np.float32)
        out_ids = np.full((len(scores), k), -1, dtype=np.int64)
        out_scores[:, :width], out_ids[:, :width] = best_scores, ids
        return out_scores, out_ids


class BinaryHnswBackend(BinaryBackend):
    """Sign codes in a FAISS IndexBinaryHNSW graph, re-scored like :class:`BinaryBackend`.

    For corpora where scanning every code costs too much: the walk visits ``efSearch`` (at least
    the candidate count) codes. A filter keeping under 5% of the index, and queries whose walk
    found too few matches, rank the codes exhaustively instead (the graph's flat storage).
    """

    kinds = ("binary-hnsw",)
    EXACT_RATIO = 0.05

    @classmethod
    def new_codes_index(cls, spec: factories.IndexSpec, dim: int) -> Any:
        """An empty IndexBinaryHNSW with the spec's ``M`` and ``efConstruction``."""
        import faiss

        index = faiss.IndexBinaryHNSW(dim, int(spec.params.get("M", factories.HNSW_M)))
        index.hnsw.efConstruction = int(spec.params.get("efConstruction", factories.HNSW_EF_CONSTRUCTION))
        return index

    def apply_search_defaults(self) -> None:
        """Restore ``efConstruction`` (FAISS does not save it) for later additions."""
        self.index.hnsw.efConstruction = int(self.spec.params.get("efConstruction", factories.HNSW_EF_CONSTRUCTION))

    def _candidates(self, codes: np.ndarray, count: int, selector: Any, allowed: np.ndarray | None,
                    options: SearchOptions) -> np.ndarray:
        import faiss

        ratio = 1.0 if allowed is None else len(allowed) / max(1, self.ntotal)
        if ratio < self.EXACT_RATIO:
            return self._exhaustive(codes, count, selector)
        ef = int(options.ef_search or self.spec.params.get("efSearch") or factories.HNSW_EF_SEARCH)
        ef = int(max(ef, count) / max(ratio, 1e-9))
        _, positions = self.index.search(codes, count, params=faiss.SearchParametersHNSW(efSearch=ef, sel=selector))
        short = np.flatnonzero((positions >= 0).sum(axis=1) < count)
        if len(short):  # the walk found too few (matching) codes: rank those queries exhaustively
            positions[short] = self._exhaustive(codes[short], count, selector)
        return positions

    def _exhaustive(self, codes: np.ndarray, count: int, selector: Any) -> np.ndarray:
        import faiss

        storage = faiss.downcast_IndexBinary(self.index.storage)
        storage.use_heap = False  # counting selection, as in BinaryBackend.new_codes_index
        params = faiss.SearchParameters(sel=selector) if selector is not None else None
        _, positions = storage.search(codes, count, params=params)
        return positions
