"""Turning a backend's raw results into hits: exact re-scoring of lossy candidates, Hit objects."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import numpy as np

from m2v_search.index.records import Hit

RERANK_FACTOR = 4   # lossy (PQ/SQ) indexes: candidates fetched per result, re-scored exactly
SMALL_BATCH = 32    # fewer queries than this search on one thread: OpenMP start-up and spinning
                    # cost more than they save (25 ms instead of 0.4 ms per query on a busy host)

Rows = dict[int, tuple[str, str, str]]  # internal id -> (id, text, metadata JSON)


def rerank_exact(queries: np.ndarray, labels: np.ndarray, rows: Rows, k: int,
                 embed: Callable[[list[str]], np.ndarray], block: int = 1024) -> tuple[np.ndarray, np.ndarray]:
    """The best ``k`` of each query's candidates by exact cosine with their recomputed vectors.

    Args:
        queries: (n, dim) unit query vectors.
        labels: (n, c) candidate internal ids per query (-1: none).
        rows: The stored rows of the candidates.
        k: Results to keep per query.
        embed: Unit vectors of a list of texts (the index's model).
        block: Queries scored at a time (bounds the gathered candidate vectors).

    Returns:
        ``(scores, labels)``, each (n, k), best first; missing results have label -1.
    """
    present = np.asarray(sorted(rows), dtype=np.int64)
    exact_scores = np.full(labels.shape, -np.inf, dtype=np.float32)
    if len(present):
        vectors = embed([rows[int(iid)][1] for iid in present])
        position = np.searchsorted(present, labels).clip(0, len(present) - 1)
        valid = (labels >= 0) & (present[position] == labels)
        for start in range(0, len(queries), block):
            part = slice(start, start + block)
            scored = np.einsum("qd,qcd->qc", queries[part], vectors[position[part]])
            exact_scores[part] = np.where(valid[part], scored, -np.inf)
    order = np.argsort(-exact_scores, axis=1, kind="stable")[:, :k]
    best_scores = np.take_along_axis(exact_scores, order, axis=1)
    best_labels = np.where(np.isfinite(best_scores), np.take_along_axis(labels, order, axis=1), -1)
    return best_scores, best_labels


def to_hits(scores: np.ndarray, labels: np.ndarray, rows: Rows, vectors: dict[int, np.ndarray] | None
            ) -> list[list[Hit]]:
    """One list of hits per query row; labels without a stored row are left out.

    Args:
        scores: (n, k) scores.
        labels: (n, k) internal ids (-1: none).
        rows: Stored rows by internal id.
        vectors: Vectors by internal id to attach, or None.

    Returns:
        The hits, best first, per query.
    """
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
                            vectors.get(label) if vectors is not None else None))
        results.append(hits)
    return results


class omp_threads:  # noqa: N801 - used as a context manager
    """Run FAISS with ``count`` OpenMP threads in this block (None: leave as is)."""

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
