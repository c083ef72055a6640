"""Principal component analysis in numpy: one implementation for distillation and training.

The vectors distilled here are at most a few thousand wide, so the exact PCA is an
eigendecomposition of the (hidden x hidden) covariance, computed in float64. It gives what
``sklearn.decomposition.PCA`` gives (same components, signs, explained variance, whitening
and ``n_components`` semantics; checked against scikit-learn in the tests) without importing
scikit-learn, which costs more than the PCA itself when distilling.
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass

import numpy as np


def check_components(n_components: int | float) -> None:
    """Reject an ``n_components`` that can never work: an int < 1, or a float outside (0, 1)."""
    if isinstance(n_components, bool) or not isinstance(n_components, (numbers.Integral, numbers.Real)):
        raise TypeError(f"pca_dims must be an int, a float in (0, 1) or None, got {n_components!r}")
    if isinstance(n_components, numbers.Integral):
        if n_components < 1:
            raise ValueError(f"pca_dims must be >= 1, got {n_components}")
    elif not 0.0 < n_components < 1.0:
        raise ValueError(f"a float pca_dims is the variance to keep and must be in (0, 1), got {n_components}")


@dataclass
class PCA:
    """A fitted projection onto the top principal components.

    ``components`` is (k, d) with rows of unit length; ``variances`` the variance of the data
    along each (the covariance eigenvalues, ``n - 1`` normalised as in scikit-learn).
    """

    mean: np.ndarray
    components: np.ndarray
    variances: np.ndarray
    explained_variance_ratio: float
    whiten: bool = False

    @classmethod
    def fit(cls, data: np.ndarray, n_components: int | float, *, whiten: bool = False) -> PCA:
        """Fit on ``data`` (n, d). ``n_components``: an int (at most ``min(n, d)``), or a float in
        (0, 1): the fewest components whose explained variance exceeds that share."""
        check_components(n_components)
        rows, width = data.shape
        if isinstance(n_components, numbers.Integral) and n_components > min(rows, width):
            raise ValueError(f"n_components={n_components} is larger than min(rows={rows}, columns={width})")
        if rows < 2:
            raise ValueError(f"PCA needs at least 2 rows, got {rows}")
        mean = data.mean(axis=0, dtype=np.float64)
        covariance = _centred_gram(data, mean) / (rows - 1)
        values, vectors = np.linalg.eigh(covariance)
        order = np.argsort(values)[::-1]
        values, vectors = np.maximum(values[order], 0.0), vectors[:, order].T
        if rows <= width:  # rank is at most rows - 1: the remaining directions carry no variance
            values[rows - 1:] = 0.0
        total = values.sum()
        ratios = values / total if total > 0 else np.zeros_like(values)
        if isinstance(n_components, numbers.Integral):
            keep = int(n_components)
        else:
            keep = int(np.searchsorted(np.cumsum(ratios), float(n_components), side="right")) + 1
            keep = min(keep, len(values))
        components = vectors[:keep]
        # Deterministic signs, as scikit-learn: the largest-magnitude entry of each component is positive.
        signs = np.sign(components[np.arange(keep), np.abs(components).argmax(axis=1)])
        components = components * np.where(signs == 0, 1.0, signs)[:, None]
        return cls(mean, components, values[:keep], float(ratios[:keep].sum()), whiten)

    @property
    def n_components(self) -> int:
        return int(self.components.shape[0])

    def transform(self, data: np.ndarray) -> np.ndarray:
        """float32 (n, k): ``data`` centred and projected (and whitened if fitted so)."""
        projection = self.components.T
        if self.whiten:
            projection = projection / np.sqrt(np.maximum(self.variances, 1e-12))[None, :]
        offset = self.mean @ projection
        projected = data.astype(np.float32, copy=False) @ projection.astype(np.float32)
        projected -= offset.astype(np.float32)
        return projected


def _centred_gram(data: np.ndarray, mean: np.ndarray, block: int = 4096) -> np.ndarray:
    """``(data - mean).T @ (data - mean)``, a block of rows at a time through one reused float32
    buffer (single-precision products as scikit-learn uses for float32 data, summed in float64)."""
    width = data.shape[1]
    gram = np.zeros((width, width), dtype=np.float64)
    buffer = np.empty((min(block, data.shape[0]), width), dtype=np.float32)
    centre = mean.astype(np.float32)
    for start in range(0, data.shape[0], block):
        rows = data[start:start + block]
        centred = buffer[: len(rows)]
        np.subtract(rows, centre, out=centred, casting="unsafe")
        gram += centred.T @ centred
    return gram
