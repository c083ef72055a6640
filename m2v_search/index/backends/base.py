"""The interface every index backend implements.

A backend owns one FAISS index of unit vectors under the inner-product metric: its arguments
(an :class:`~m2v_search.index.factory.IndexSpec` dataclass: kind, factory string, default
search parameters), the int64 ids stored with the vectors (the docstore's internal ids), and
the tombstones of vectors deleted from an index that cannot remove them in place. It knows how
to train, add, search (restricted to a set of allowed ids, for filters), remove, list its
vectors for a conversion, and serialise itself.

It knows nothing of texts, metadata, models or files on disk: the front object
(:class:`~m2v_search.index.VectorIndex`) owns those, normalises every vector before it reaches
a backend, and persists the tombstones in its docstore.

Adding an index kind is one new module with a :class:`Backend` subclass, plus one line in
``m2v_search/index/backends/__init__.py`` (``BACKENDS``) and, for a kind users can ask for by
name, its entry in ``m2v_search.index.factory`` (``KINDS`` and :func:`~m2v_search.index.factory.resolve`).
The defaults here suit FAISS float indexes with ids (``index_factory``, ``serialize_index``);
a backend over another FAISS family (binary codes: ``IndexBinaryIDMap2``) overrides
:meth:`Backend.create`, :meth:`Backend.from_bytes`, :meth:`Backend.to_bytes`,
:meth:`Backend.write` and :attr:`Backend.dim` (bits are not dimensions), and
:meth:`Backend.reconstruct` / :meth:`Backend.live_vectors` when it cannot give float vectors
back (return ``{}`` from ``reconstruct``; a conversion away from it then needs its own source
of vectors). :attr:`Backend.lossy` true makes the front re-score candidates exactly with the
model's vectors of their texts (re-ranking), when the vectors come from the model.
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from m2v_search.index import factory as factories
from m2v_search.index.errors import IndexCorruptError

MAX_SEARCH_PARAMETER = 1 << 20
"""Largest nprobe or ef_search accepted (FAISS takes a C int; far past any useful value)."""


@dataclass(frozen=True)
class SearchOptions:
    """Per-search overrides of a backend's default search parameters (None: the default).

    Attributes:
        nprobe: IVF lists probed per query.
        ef_search: HNSW candidate list size.
        rescore: Candidates re-scored exactly per query (binary kinds).
    """

    nprobe: int | None = None
    ef_search: int | None = None
    rescore: int | None = None

    def __post_init__(self) -> None:
        """Refuse values FAISS cannot take.

        Raises:
            ValueError: A value is not an integer from 1 to ``MAX_SEARCH_PARAMETER``.
        """
        for name in ("nprobe", "ef_search"):
            value = getattr(self, name)
            if value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) \
                    or not 1 <= value <= MAX_SEARCH_PARAMETER:
                raise ValueError(f"{name} must be an integer from 1 to {MAX_SEARCH_PARAMETER}, got {value!r}")


class Backend(ABC):
    """One FAISS index, its ids and its tombstones; see the module docstring.

    Subclasses set ``kinds`` (the index kinds they serve) and implement :meth:`search`; the
    other methods have implementations that suit any FAISS index with ids and may be overridden.

    Args:
        index: The FAISS index (it holds unit vectors; ids are the docstore's int64 ids).
        spec: Kind, factory string and default search parameters of ``index``.
        tombstones: Ids of vectors still in ``index`` but deleted (sorted or not; None: none).
    """

    kinds: ClassVar[tuple[str, ...]] = ()

    def __init__(self, index: Any, spec: factories.IndexSpec, tombstones: np.ndarray | None = None) -> None:
        self.index = index
        self.spec = spec
        self._tombstones = np.unique(np.asarray([] if tombstones is None else tombstones, dtype=np.int64))
        self._cache: dict[str, np.ndarray] = {}

    # ------------------------------------------------------------------ construction
    @classmethod
    def create(cls, spec: factories.IndexSpec, dim: int) -> Backend:
        """A new, empty backend.

        Args:
            spec: What to build (a kind this class serves).
            dim: Dimensions of the vectors.

        Returns:
            The backend; it may still need :meth:`train` (see :attr:`is_trained`).

        Raises:
            ValueError: FAISS cannot build ``spec.factory``.
        """
        return cls(factories.new_index(spec, dim), spec)

    @classmethod
    def from_bytes(cls, data: bytes | np.ndarray, spec: factories.IndexSpec,
                   tombstones: np.ndarray | None = None) -> Backend:
        """A backend read from the bytes :meth:`to_bytes` (or :meth:`write`) produced.

        Args:
            data: The serialised index (already verified against its checksum).
            spec: What the manifest records for it.
            tombstones: Ids deleted but still stored (from the docstore).

        Returns:
            The backend.

        Raises:
            IndexCorruptError: ``data`` is not a FAISS index.
        """
        import faiss

        buffer = np.frombuffer(data, dtype=np.uint8) if isinstance(data, (bytes, bytearray, memoryview)) else data
        try:
            index = faiss.deserialize_index(buffer)
        except RuntimeError as error:
            raise IndexCorruptError(f"not a readable FAISS index: {str(error).splitlines()[0]}") from None
        factories.apply_build_params(index, spec)
        return cls(index, spec, tombstones)

    def to_bytes(self) -> bytes:
        """The index serialised (what :meth:`from_bytes` reads back); tombstones are not included."""
        import faiss

        return faiss.serialize_index(self.index).tobytes()

    def write(self, path: Path) -> None:
        """Write the serialised index to ``path`` (same bytes as :meth:`to_bytes`, streamed).

        The file is opened once, without following a symlink, and FAISS writes through it.

        Args:
            path: The file to write (created or truncated).
        """
        import faiss

        flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
        with os.fdopen(os.open(path, flags, 0o644), "wb") as handle:
            writer = faiss.PyCallbackIOWriter(handle.write)
            faiss.write_index(self.index, writer)
            del writer

    # ------------------------------------------------------------------ facts
    @property
    def dim(self) -> int:
        """Dimensions of the vectors."""
        return int(self.index.d)

    @property
    def ntotal(self) -> int:
        """Vectors stored, tombstoned ones included."""
        return int(self.index.ntotal)

    @property
    def tombstone_count(self) -> int:
        """Vectors deleted but still stored."""
        return len(self._tombstones)

    @property
    def tombstones(self) -> np.ndarray:
        """Sorted ids of the vectors deleted but still stored."""
        return self._tombstones.copy()

    @property
    def is_trained(self) -> bool:
        """Whether vectors can be added now (False: :meth:`train` first)."""
        return bool(self.index.is_trained)

    @property
    def lossy(self) -> bool:
        """Whether the index keeps compressed codes (PQ, SQ) or PCA-reduced vectors (whose inner products
        are not the cosines) instead of the vectors themselves."""
        return any(part in self.spec.factory for part in ("PQ", "SQ", "PCA"))

    @property
    def rescores_internally(self) -> bool:
        """Whether :meth:`search` re-scores its candidates itself (the front then re-encodes no texts)."""
        return False

    def min_training_vectors(self) -> int:
        """Fewest vectors worth training this index on (0: it needs no training)."""
        return 0 if self.is_trained else factories.IVF_MIN_VECTORS

    def needs_compaction(self) -> bool:
        """Whether so many vectors are tombstoned that the index should be rebuilt."""
        return False

    # ------------------------------------------------------------------ writes
    def train(self, vectors: np.ndarray) -> None:
        """Train the index (IVF coarse quantizer, PQ codebooks) on unit vectors.

        Args:
            vectors: Training vectors (n, dim), float32, unit rows.
        """
        self.index.train(np.ascontiguousarray(vectors, dtype=np.float32))

    def add(self, ids: np.ndarray, vectors: np.ndarray, chunk: int = 65_536) -> None:
        """Store unit ``vectors`` under ``ids``.

        Args:
            ids: int64 ids, one per vector, not stored yet.
            vectors: (n, dim) float32 unit rows.
            chunk: Vectors handed to FAISS at a time.
        """
        ids = np.asarray(ids, dtype=np.int64)
        for start in range(0, len(ids), chunk):
            self.index.add_with_ids(np.ascontiguousarray(vectors[start:start + chunk], dtype=np.float32),
                                    ids[start:start + chunk])
        self._cache.clear()

    def remove(self, ids: np.ndarray) -> np.ndarray:
        """Delete the vectors of ``ids``: removed in place, or tombstoned where the index cannot.

        Args:
            ids: int64 ids that are stored.

        Returns:
            The ids tombstoned (empty when all were removed in place): the caller persists them.

        Raises:
            IndexCorruptError: FAISS removed a different number of vectors than asked.
        """
        ids = np.asarray(ids, dtype=np.int64)
        if self.removes_in_place():
            try:
                removed = self.index.remove_ids(ids)
            except RuntimeError:  # this index type cannot remove: mark them deleted instead
                pass
            else:
                if removed != len(ids):
                    raise IndexCorruptError(f"FAISS removed {removed} of {len(ids)} vectors")
                self._cache.clear()
                return np.zeros(0, dtype=np.int64)
        self._tombstones = np.union1d(self._tombstones, ids)
        self._cache.clear()
        return ids

    def removes_in_place(self) -> bool:
        """Whether :meth:`remove` tries FAISS ``remove_ids`` (once tombstones exist, it never does)."""
        return not len(self._tombstones)

    def reset(self) -> Backend:
        """An empty backend of the same kind (a trained index keeps its training).

        Returns:
            The emptied backend (``self`` or a new one).
        """
        return type(self).create(self.spec, self.dim)

    # ------------------------------------------------------------------ reads
    @abstractmethod
    def search(self, queries: np.ndarray, k: int, allowed: np.ndarray | None,
               options: SearchOptions) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` stored vectors of highest inner product with each query.

        Args:
            queries: (n, dim) float32 unit rows.
            k: Results per query (at most the number of allowed live vectors).
            allowed: Ids a result may have (a filter's matches, all live); None: every live id.
                Tombstoned ids are never returned.
            options: Overrides of the default search parameters.

        Returns:
            ``(scores, ids)``, each (n, k); missing results have id -1.
        """

    def allowed_or_live(self, allowed: np.ndarray | None) -> np.ndarray | None:
        """``allowed`` as given, or when None the live ids if some are tombstoned (else None: all)."""
        if allowed is None and len(self._tombstones):
            return self.live_ids()
        return allowed

    def stored_ids(self) -> np.ndarray | None:
        """Every id stored (tombstoned ones included) in storage order, or None if FAISS keeps no id map."""
        import faiss

        if "id_map" not in self._cache:
            if not hasattr(self.index, "id_map"):
                return None
            self._cache["id_map"] = faiss.vector_to_array(self.index.id_map).astype(np.int64)
        return self._cache["id_map"]

    def live_ids(self) -> np.ndarray:
        """Sorted ids stored and not tombstoned."""
        if "live" not in self._cache:
            stored = self.stored_ids()
            if stored is None:
                raise NotImplementedError(f"{type(self).__name__} cannot list its ids")
            self._cache["live"] = np.setdiff1d(stored, self._tombstones)
        return self._cache["live"]

    def reconstruct(self, ids: list[int]) -> dict[int, np.ndarray]:
        """The stored vectors of ``ids`` (approximations for lossy indexes).

        Args:
            ids: Stored ids.

        Returns:
            ``{id: vector}`` for every id this index can reconstruct (possibly none).
        """
        vectors: dict[int, np.ndarray] = {}
        for iid in ids:
            try:
                vectors[int(iid)] = np.asarray(self.index.reconstruct(int(iid)), dtype=np.float32)
            except RuntimeError:
                continue
        return vectors

    def live_vectors(self) -> tuple[np.ndarray, np.ndarray]:
        """``(ids, vectors)`` of every live vector, for a conversion to another kind.

        Returns:
            int64 ids (n,) and float32 vectors (n, dim).
        """
        ids = self.live_ids()
        if not len(ids):
            return ids, np.zeros((0, self.dim), np.float32)
        return ids, np.asarray(self.index.reconstruct_batch(ids), dtype=np.float32)


def bitmap_selector(ids: np.ndarray | None) -> tuple[Any, Any]:
    """A FAISS IDSelectorBitmap over ``ids`` and the buffer it reads (keep it alive while searching).

    Args:
        ids: Non-negative int64 ids, or None.

    Returns:
        ``(selector, buffer)``, or ``(None, None)`` for None.
    """
    if ids is None:
        return None, None
    import faiss

    size = int(ids.max()) + 1 if len(ids) else 1
    bits = np.zeros(size, dtype=bool)
    bits[ids] = True
    packed = np.packbits(bits, bitorder="little")
    return faiss.IDSelectorBitmap(len(packed), faiss.swig_ptr(packed)), packed
