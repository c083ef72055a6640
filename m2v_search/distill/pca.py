"""Dimensionality reduction of the distilled token vectors (``m2v_search.pca``)."""

from __future__ import annotations

import logging
import numbers
import warnings

import numpy as np

from m2v_search.pca import PCA, check_components

logger = logging.getLogger(__name__)


def check_pca_dims(pca_dims: int | float | None) -> None:
    """Reject values that can never work (before the slow teacher pass)."""
    if pca_dims is not None:
        check_components(pca_dims)


def apply_pca(vectors: np.ndarray, pca_dims: int | float | None, *, whiten: bool = False) -> tuple[np.ndarray, dict]:
    """Centre and rotate ``vectors`` onto their principal axes, keeping ``pca_dims`` of them.

    ``pca_dims``: an int (number of dimensions), a float in (0, 1) (keep the fewest dimensions
    explaining that share of the variance) or None (no PCA). An int above the hidden size or
    the number of tokens is lowered to what is possible, with a warning. Returns the float32
    vectors and a summary (dimensions, explained variance). ``whiten`` scales every kept
    dimension to unit variance.
    """
    check_pca_dims(pca_dims)
    if pca_dims is None:
        return vectors.astype(np.float32, copy=False), {"pca_dims": None}
    rows, hidden = vectors.shape
    components: int | float = int(pca_dims) if isinstance(pca_dims, numbers.Integral) else float(pca_dims)
    if isinstance(components, int):
        limit = min(hidden, rows)
        if components > limit:
            what = f"the hidden size ({hidden})" if hidden <= rows else f"the number of tokens ({rows})"
            warnings.warn(f"pca_dims={pca_dims} is larger than {what}; keeping {limit} dimensions", stacklevel=3)
            components = limit
    pca = PCA.fit(vectors, components, whiten=whiten)
    reduced = pca.transform(vectors)
    explained = pca.explained_variance_ratio
    logger.info("PCA: %d -> %d dimensions, %.3f of the variance kept", hidden, reduced.shape[1], explained)
    return np.ascontiguousarray(reduced), {"pca_dims": pca.n_components, "explained_variance": round(explained, 4)}
