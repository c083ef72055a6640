"""Exact search (``IDMap2,Flat``), and custom FAISS factories that are neither HNSW nor IVF."""

from __future__ import annotations

import numpy as np

from m2v_search.index.backends.base import SearchOptions, bitmap_selector
from m2v_search.index.backends.idmap import IdMapBackend


class FlatBackend(IdMapBackend):
    """Brute-force inner product over every stored vector (or codes, for a custom ``IDMap2,SQ8``...).

    Removal is in place where FAISS supports it; a filter becomes an id bitmap inside the scan.
    """

    kinds = ("flat", "custom")

    def search(self, queries: np.ndarray, k: int, allowed: np.ndarray | None,
               options: SearchOptions) -> tuple[np.ndarray, np.ndarray]:
        """Exact top ``k`` of each query among the allowed live vectors (see :meth:`Backend.search`)."""
        import faiss

        selector, _keep = bitmap_selector(self.allowed_or_live(allowed))
        params = faiss.SearchParameters(sel=selector) if selector is not None else None
        return self.index.search(queries, k, params=params)
