"""Vectorised pooling of token vectors, straight from flat id/offset arrays.

A batch is a sparse (texts x vocabulary) matrix whose row ``i`` holds ``w_t / n_i`` for
each token ``t`` of text ``i`` (``n_i`` tokens, ``w_t`` the optional per-token weight):
the mean of the token vectors is then one sparse-dense product, with no Python loop and
no gathered (tokens x dim) copy. Empty rows give zero vectors.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp


def mean_pool(
    ids: np.ndarray,
    offsets: np.ndarray,
    table: np.ndarray,
    token_weights: np.ndarray | None = None,
    token_mapping: np.ndarray | None = None,
) -> np.ndarray:
    """Mean of ``table[mapping[id]] * weight[id]`` over each text's ids; float32 (n, dim)."""
    n_texts = len(offsets) - 1
    if n_texts <= _SMALL_BATCH:  # building a sparse matrix costs more than it saves here
        return _mean_pool_small(ids, offsets, table, token_weights, token_mapping)
    lengths = np.diff(offsets)
    inverse_lengths = (1.0 / np.maximum(lengths, 1)).astype(np.float32)
    data = np.repeat(inverse_lengths, lengths)
    if token_weights is not None:
        data *= token_weights[ids]
    rows = token_mapping[ids] if token_mapping is not None else ids
    matrix = sp.csr_matrix((data, rows, offsets), shape=(n_texts, table.shape[0]))
    return np.ascontiguousarray(matrix @ table, dtype=np.float32)


_SMALL_BATCH = 4


def _mean_pool_small(
    ids: np.ndarray,
    offsets: np.ndarray,
    table: np.ndarray,
    token_weights: np.ndarray | None,
    token_mapping: np.ndarray | None,
) -> np.ndarray:
    out = np.zeros((len(offsets) - 1, table.shape[1]), dtype=np.float32)
    for row, vectors in enumerate(token_vectors(ids, offsets, table, token_weights, token_mapping)):
        if len(vectors):
            out[row] = vectors.mean(axis=0)
    return out


def token_vectors(
    ids: np.ndarray,
    offsets: np.ndarray,
    table: np.ndarray,
    token_weights: np.ndarray | None = None,
    token_mapping: np.ndarray | None = None,
) -> list[np.ndarray]:
    """The per-token vectors of each text (``(n_i, dim)`` float32 arrays, empty for no tokens)."""
    rows = token_mapping[ids] if token_mapping is not None else ids
    vectors = table[rows]
    if token_weights is not None:
        vectors *= token_weights[ids][:, None]
    return np.split(vectors, offsets[1:-1])


def l2_normalize(vectors: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length in place; zero rows stay zero."""
    with np.errstate(over="ignore", under="ignore"):  # such rows are redone in float64 below
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    extreme = ~(np.isfinite(norms[:, 0]) & (norms[:, 0] > 1e-18))  # overflowed, underflowed or zero in float32
    if extreme.any():
        rows = vectors[extreme].astype(np.float64)
        row_norms = np.linalg.norm(rows, axis=1, keepdims=True)
        vectors[extreme] = np.divide(rows, row_norms, out=np.zeros_like(rows), where=row_norms > 0)
        norms[extreme] = 1.0
    vectors /= norms
    return vectors
