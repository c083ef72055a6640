"""Vectors as the index stores them: unit rows of float32 (inner product = cosine).

Whether vectors are normalised is decided here and only here: :func:`unit_vectors` is applied
to every vector written to an index and to every query, by :class:`~m2v_search.index.VectorIndex`
and by the Dask build's workers alike.
"""

from __future__ import annotations

import numpy as np

from m2v_search.errors import ArgumentError

MAX_TRAIN = 100_000
"""Most vectors an index that needs training (IVF) is trained on; a larger set is sampled."""


def normalize_rows(matrix: np.ndarray) -> None:
    """Scale the rows of ``matrix`` to unit length, in place; rows of zeros stay zero.

    Args:
        matrix: A 2-D float array, changed in place.
    """
    with np.errstate(over="ignore", under="ignore"):
        norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    extreme = ~np.isfinite(norms[:, 0]) | (norms[:, 0] < 1e-30)  # zero rows too: told apart only if any
    if extreme.any() and (extreme := extreme & matrix.any(axis=1)).any():
        # float32 squares overflow past ~1e19 and underflow below ~1e-19: scale first
        rows = matrix[extreme].astype(np.float64)
        rows /= np.abs(rows).max(axis=1, keepdims=True)
        matrix[extreme] = rows / np.linalg.norm(rows, axis=1, keepdims=True)
        norms[extreme] = 1.0
    np.divide(matrix, norms, out=matrix, where=norms > 0)


def unit_vectors(vectors: np.ndarray) -> np.ndarray:
    """A float32 copy of ``vectors`` (n, dim) with every row scaled to unit length.

    Args:
        vectors: A 2-D array of any real dtype.

    Returns:
        A new C-contiguous float32 array of the same shape.
    """
    matrix = np.array(vectors, dtype=np.float32, order="C")
    normalize_rows(matrix)
    return matrix


def training_sample(vectors: np.ndarray, limit: int = MAX_TRAIN, seed: int = 0) -> np.ndarray:
    """The vectors an index is trained on: all of them up to ``limit``, else a seeded random choice.

    Args:
        vectors: The candidate vectors (n, dim).
        limit: The most rows to return.
        seed: Seed of the random choice (the same data always gives the same sample).

    Returns:
        A C-contiguous array of at most ``limit`` rows, in their original order.
    """
    if len(vectors) <= limit:
        return np.ascontiguousarray(vectors)
    rows = np.sort(np.random.default_rng(seed).choice(len(vectors), limit, replace=False))
    return np.ascontiguousarray(vectors[rows])


def checked_vectors(vectors: object, dim: int, name: str = "vectors", *, param: str | None = None) -> np.ndarray:
    """``vectors`` as a float32 (n, dim) array, refusing a wrong shape and NaN or infinite values.

    Args:
        vectors: Array-like vectors given by a caller.
        dim: The dimensions expected.
        name: What to call them in messages (``vectors``, ``query vectors``).
        param: The argument they were given as (default: ``name``), carried by the error.

    Returns:
        The float32 array (not yet normalised: see :func:`unit_vectors`).

    Raises:
        ArgumentError: Not a 2-D array of ``dim`` columns of real numbers, or a row holds NaN or
            infinity (a ValueError).
    """
    param = param or name
    try:
        if np.iscomplexobj(vectors):  # float32 would silently drop the imaginary parts
            raise ValueError("complex numbers have no place in an embedding")
        matrix = np.asarray(vectors, dtype=np.float32)
    except (TypeError, ValueError) as error:
        raise ArgumentError(f"{name} must be an (n, {dim}) array of numbers: {error}", param) from None
    if matrix.ndim != 2 or matrix.shape[1] != dim:
        raise ArgumentError(f"{name} must have shape (n, {dim}), got {matrix.shape}", param)
    finite = np.isfinite(matrix).all(axis=1)
    if not finite.all():
        row = int(np.flatnonzero(~finite)[0])
        raise ArgumentError(f"{name}[{row}] holds NaN or infinity ({int((~finite).sum())} such rows); "
                            "give finite vectors", param)
    return matrix
