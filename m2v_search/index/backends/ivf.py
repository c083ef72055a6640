"""Inverted-file search: ``IVF<n>,Flat``, ``IVF<n>,PQ<m>`` and custom IVF factories (``IVF256,SQ8``)."""

from __future__ import annotations

import math

import numpy as np

from m2v_search.index import factory as factories
from m2v_search.index.backends.base import Backend, SearchOptions, bitmap_selector

DEFAULT_NPROBE = 16


class IvfBackend(Backend):
    """Vectors clustered into lists; a search probes the ``nprobe`` lists nearest the query.

    IVF takes ids natively (a hashtable direct map makes remove and reconstruct by id work),
    so deletions are in place. It must be trained before vectors are added. A filter raises
    ``nprobe`` by the share of the index it removes, and queries that still find fewer than
    ``k`` matches probe every list.
    """

    kinds = ("ivf", "ivf-pq")

    def _ivf(self) -> object:
        return factories.ivf_of(self.index)

    def min_training_vectors(self) -> int:
        """At least 2,000 vectors and 39 per list (and per PQ centroid for ``ivf-pq``)."""
        return factories.ivf_training_minimum(self.spec.kind, int(self.spec.params.get("nlist", 1)))

    def reset(self) -> Backend:
        """Empty the lists in place; the training (centroids, codebooks) stays."""
        self.index.reset()
        self._tombstones = np.zeros(0, dtype=np.int64)
        self._cache.clear()
        return self

    def search(self, queries: np.ndarray, k: int, allowed: np.ndarray | None,
               options: SearchOptions) -> tuple[np.ndarray, np.ndarray]:
        """Top ``k`` over the probed lists (see :meth:`Backend.search`); ``options.nprobe`` sets how many."""
        import faiss

        ivf = self._ivf()
        nlist = int(ivf.nlist)  # type: ignore[attr-defined]
        allowed = self.allowed_or_live(allowed)
        ratio = 1.0 if allowed is None else len(allowed) / max(1, self.ntotal)
        selector, _keep = bitmap_selector(allowed)
        probes = int(options.nprobe or self.spec.params.get("nprobe") or DEFAULT_NPROBE)
        probes = int(min(nlist, math.ceil(probes / max(ratio, 1e-9))))
        scores, labels = self.index.search(queries, k, params=faiss.SearchParametersIVF(nprobe=probes, sel=selector))
        short = np.flatnonzero((labels >= 0).sum(axis=1) < k)
        if len(short) and probes < nlist:  # too few found in the probed lists: probe them all
            every_list = faiss.SearchParametersIVF(nprobe=nlist, sel=selector)
            scores[short], labels[short] = self.index.search(queries[short], k, params=every_list)
        return scores, labels

    def stored_ids(self) -> np.ndarray | None:
        """Every id stored, list by list."""
        import faiss

        if "id_map" not in self._cache:
            invlists = self._ivf().invlists  # type: ignore[attr-defined]
            parts = [np.zeros(0, dtype=np.int64)]
            for number in range(invlists.nlist):
                size = invlists.list_size(number)
                if size:
                    parts.append(faiss.rev_swig_ptr(invlists.get_ids(number), size).astype(np.int64))
            self._cache["id_map"] = np.concatenate(parts)
        return self._cache["id_map"]
