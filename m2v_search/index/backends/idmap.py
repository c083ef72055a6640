"""Shared parts of the backends whose FAISS index sits inside an ``IDMap2`` (flat, HNSW, custom)."""

from __future__ import annotations

import numpy as np

from m2v_search.index.backends.base import Backend


class IdMapBackend(Backend):
    """A backend over ``IDMap2,<inner>``: ids live in the id map, vectors in the inner index."""

    def _storage(self) -> object:
        """The index that holds the vectors themselves (inner index, or an HNSW's storage)."""
        import faiss

        inner = faiss.downcast_index(self.index.index)
        if isinstance(inner, faiss.IndexHNSW):
            inner = faiss.downcast_index(inner.storage)
        return inner

    def live_vectors(self) -> tuple[np.ndarray, np.ndarray]:
        """``(ids, vectors)`` of every live vector, read from the inner storage in one pass.

        Returns:
            int64 ids (n,) and float32 vectors (n, dim).
        """
        id_map = self.stored_ids()
        assert id_map is not None
        storage = self._storage()
        total = storage.ntotal  # type: ignore[attr-defined]
        vectors = storage.reconstruct_n(0, total) if total else np.zeros((0, self.dim), np.float32)  # type: ignore[attr-defined]
        if self.tombstone_count:
            keep = np.isin(id_map, self.live_ids())
            return id_map[keep], vectors[keep]
        return id_map, vectors
