"""Fusing a dense and a lexical result list into one ranking.

``alpha`` follows LlamaIndex's hybrid-search convention: 1.0 is pure dense, 0.0 pure lexical.
Methods:

- ``relative`` (default): each leg's scores are min-max scaled to [0, 1] within the query's
  candidates (LlamaIndex's and Weaviate's *relative score fusion*), then summed with weights
  ``alpha`` and ``1 - alpha``; a document missing from a leg scores 0 there.
- ``dbsf``: distribution-based score fusion (Qdrant's): each leg scaled so that its mean +- 3
  standard deviations span [0, 1] (clipped), instead of its minimum and maximum.
- ``rrf``: reciprocal-rank fusion, ``alpha / (60 + rank_dense) + (1 - alpha) / (60 + rank_lexical)``
  (ranks from 1); scores ignored, only ranks count.

Each leg comes as ``(ids, scores)`` numpy arrays, best first, ids unique within a leg. A leg
that found nothing leaves the other leg's order (a query of only stopwords: hybrid = dense).
"""

from __future__ import annotations

import numpy as np

from m2v_search.errors import ArgumentError

METHODS = ("relative", "dbsf", "rrf")
DEFAULT_METHOD = "relative"
RRF_K = 60
MODES = ("dense", "lexical", "hybrid")
DEFAULT_ALPHA = 0.4      # chosen on benchmarks/retrieval.py's tasks (best mean MRR@10), see its results
CANDIDATES = 100         # results each leg of a hybrid search contributes (at least k)


def check_mode(mode: str) -> str:
    """``mode``, checked.

    Raises:
        ValueError: not one of :data:`MODES`.
    """
    if mode not in MODES:
        raise ArgumentError(f"unknown search mode {mode!r}; use one of {', '.join(MODES)}", "mode")
    return mode


def leg_depth(k: int) -> int:
    """How many candidates each leg of a hybrid search of ``k`` results fetches."""
    return max(int(k), CANDIDATES)


def check_alpha(alpha: float) -> float:
    """``alpha`` as a float, checked.

    Raises:
        ValueError: ``alpha`` is not a number in [0, 1].
    """
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float, np.floating, np.integer)) \
            or not 0.0 <= float(alpha) <= 1.0:
        raise ArgumentError(f"alpha must be a number in [0, 1] (1 = dense only, 0 = lexical only), got {alpha!r}",
                            "alpha")
    return float(alpha)


def check_method(method: str) -> str:
    """``method``, checked.

    Raises:
        ValueError: not one of :data:`METHODS`.
    """
    if method not in METHODS:
        raise ArgumentError(f"unknown fusion method {method!r}; use one of {', '.join(METHODS)}", "fusion")
    return method


def _all_equal(scores: np.ndarray) -> np.ndarray:
    """Scaled scores of a leg that cannot rank (every score equal): all 1 when they match at all
    (> 0), all 0 when they do not (a zero query vector, from an empty or all-unknown text, gives
    cosine 0 everywhere; scaling that to 1 made every document a perfect hybrid match)."""
    return np.full(len(scores), 1.0 if len(scores) and float(scores.max()) > 0 else 0.0, dtype=np.float64)


def _min_max(scores: np.ndarray) -> np.ndarray:
    if not len(scores):
        return scores
    low, high = float(scores.min()), float(scores.max())
    if high - low <= 1e-12:
        return _all_equal(scores)
    return (scores - low) / (high - low)


def _distribution(scores: np.ndarray) -> np.ndarray:
    mean, spread = (float(scores.mean()), float(scores.std())) if len(scores) else (0.0, 0.0)
    if len(scores) < 2 or spread <= 1e-12:
        return _all_equal(scores)
    low, high = mean - 3 * spread, mean + 3 * spread
    return np.clip((scores - low) / (high - low), 0.0, 1.0)


def _reciprocal_rank(scores: np.ndarray) -> np.ndarray:
    return 1.0 / (RRF_K + np.arange(1, len(scores) + 1, dtype=np.float64))


_SCALERS = {"relative": _min_max, "dbsf": _distribution, "rrf": _reciprocal_rank}


def fuse(dense: tuple[np.ndarray, np.ndarray], lexical: tuple[np.ndarray, np.ndarray], k: int, *,
         alpha: float = 0.5, method: str = DEFAULT_METHOD) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` best documents of two result lists.

    Args:
        dense: ``(ids, scores)`` of the dense leg, best first.
        lexical: ``(ids, scores)`` of the lexical leg, best first.
        k: how many fused results at most.
        alpha: weight of the dense leg in [0, 1] (1 = dense only, 0 = lexical only).
        method: ``relative``, ``dbsf`` or ``rrf`` (see the module docstring).

    Returns:
        ``(ids, scores)``: fused scores (higher is better), best first; ties broken by the dense
        leg's order, then the lexical leg's.

    Raises:
        ValueError: a bad ``alpha``, ``method`` or ``k``.
    """
    alpha = check_alpha(alpha)
    scale = _SCALERS[check_method(method)]
    if k < 1:
        raise ArgumentError(f"k must be >= 1, got {k}", "k")
    dense_ids, dense_scores = np.asarray(dense[0], dtype=np.int64), np.asarray(dense[1], dtype=np.float64)
    lexical_ids, lexical_scores = np.asarray(lexical[0], dtype=np.int64), np.asarray(lexical[1], dtype=np.float64)
    if alpha == 1.0 or not len(lexical_ids):
        lexical_ids, lexical_scores = lexical_ids[:0], lexical_scores[:0]
    if alpha == 0.0 or not len(dense_ids):
        dense_ids, dense_scores = dense_ids[:0], dense_scores[:0]
    weights = (alpha if len(lexical_ids) else 1.0, 1.0 - alpha if len(dense_ids) else 1.0)
    ids = np.concatenate([dense_ids, lexical_ids])
    if not len(ids):
        return ids, np.zeros(0, dtype=np.float32)
    unique, first_seen, inverse = np.unique(ids, return_index=True, return_inverse=True)
    fused = np.zeros(len(unique), dtype=np.float64)
    fused[inverse[:len(dense_ids)]] += weights[0] * scale(dense_scores)
    fused[inverse[len(dense_ids):]] += weights[1] * scale(lexical_scores)
    order = np.lexsort((first_seen, -fused))[:k]
    return unique[order], fused[order].astype(np.float32)


def fuse_batch(dense_scores: np.ndarray | None, dense_labels: np.ndarray | None,
               lexical: list[tuple[np.ndarray, np.ndarray]] | None, k: int, *, alpha: float = DEFAULT_ALPHA,
               method: str = DEFAULT_METHOD) -> tuple[np.ndarray, np.ndarray]:
    """:func:`fuse` for a batch of queries, in FAISS's result layout.

    Args:
        dense_scores: (n, depth) scores of the dense leg (None: no dense leg).
        dense_labels: (n, depth) int ids, -1 where a query has fewer results.
        lexical: one ``(ids, scores)`` per query (None: no lexical leg).
        k: results per query.
        alpha: weight of the dense leg (1 = dense only, 0 = lexical only).
        method: the fusion method.

    Returns:
        ``(scores, labels)``, both (n, k), best first, labels -1 (score NaN) past the results.
    """
    count = len(dense_labels) if dense_labels is not None else len(lexical or [])
    scores = np.full((count, k), np.nan, dtype=np.float32)
    labels = np.full((count, k), -1, dtype=np.int64)
    empty = (np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32))
    for row in range(count):
        dense = empty
        if dense_labels is not None and dense_scores is not None:
            valid = dense_labels[row] >= 0
            dense = (dense_labels[row][valid], dense_scores[row][valid])
        ids, fused = fuse(dense, lexical[row] if lexical is not None else empty, k, alpha=alpha, method=method)
        labels[row, :len(ids)] = ids
        scores[row, :len(ids)] = fused
    return scores, labels
