"""HNSW graph search (``IDMap2,HNSW32,Flat``), with exact fallbacks for narrow filters."""

from __future__ import annotations

import numpy as np

from m2v_search.index import factory as factories
from m2v_search.index.backends.base import SearchOptions, bitmap_selector
from m2v_search.index.backends.idmap import IdMapBackend

EXACT_RATIO = 0.05    # filters matching less than this share of the index search exactly
COMPACT_RATIO = 0.2   # tombstones above this share of the index call for a rebuild
EXACT_SEARCH_CAP = 4096  # largest efSearch a filter may raise the candidate list to


class HnswBackend(IdMapBackend):
    """An HNSW graph over flat vectors.

    HNSW cannot remove vectors: deletions are tombstones, excluded from every search, until
    :meth:`needs_compaction` asks for a rebuild. A filter is an id selector inside the graph
    walk with efSearch scaled by how much it keeps; a filter keeping under 5% of the index,
    and queries for which the walk found fewer than ``k`` matches, are searched exactly.
    """

    kinds = ("hnsw",)

    def removes_in_place(self) -> bool:
        """Never: HNSW graphs keep their nodes; deleted vectors become tombstones."""
        return False

    def needs_compaction(self) -> bool:
        """Whether tombstones exceed 20% of the stored vectors."""
        return self.tombstone_count > COMPACT_RATIO * max(1, self.ntotal)

    def search(self, queries: np.ndarray, k: int, allowed: np.ndarray | None,
               options: SearchOptions) -> tuple[np.ndarray, np.ndarray]:
        """Top ``k`` by graph walk (see :meth:`Backend.search`); ``options.ef_search`` sizes the walk."""
        import faiss

        allowed = self.allowed_or_live(allowed)
        ratio = 1.0 if allowed is None else len(allowed) / max(1, self.ntotal)
        if allowed is not None and ratio < EXACT_RATIO:
            return self._exact(queries, k, allowed)
        ef = int(options.ef_search or self.spec.params.get("efSearch") or factories.HNSW_EF_SEARCH)
        ef = int(min(max(ef, k) / max(ratio, 1e-9), max(ef, k, EXACT_SEARCH_CAP)))
        selector, _keep = bitmap_selector(allowed)
        params = faiss.SearchParametersHNSW(efSearch=max(ef, k), sel=selector)
        scores, labels = self.index.search(queries, k, params=params)
        short = np.flatnonzero((labels >= 0).sum(axis=1) < k)
        if len(short):  # the graph walk found too few matching documents: search those exactly
            scores[short], labels[short] = self._exact(queries[short], k, allowed)
        return scores, labels

    def _exact(self, queries: np.ndarray, k: int, allowed: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        """Exact search over the graph's flat storage, restricted to ``allowed`` (None: all)."""
        import faiss

        storage = self._storage()
        id_map = self.stored_ids()
        assert id_map is not None
        selector, keep = None, None
        if allowed is not None:
            order = np.argsort(id_map, kind="stable")
            positions = order[np.searchsorted(id_map, allowed, sorter=order)]
            selector, keep = bitmap_selector(positions)
        params = faiss.SearchParameters(sel=selector) if selector is not None else None
        scores, found = storage.search(queries, k, params=params)  # type: ignore[attr-defined]
        labels = np.where(found >= 0, id_map[np.maximum(found, 0)], -1)
        del keep
        return scores, labels
