"""Storage precision of an embedding table: float32, float16 or int8 with a scale.

int8 stores ``round(v / scale)`` with one scale for the whole table; the scale is folded
into the per-token ``weights`` vector that Model2Vec and Sentence Transformers already
apply, so an int8 model saved here gives correct (unnormalised) vectors in both.
"""

from __future__ import annotations

import numpy as np

SUPPORTED_DTYPES = ("float32", "float16", "int8")


def normalize_dtype_name(dtype: str | np.dtype | type) -> str:
    """Canonical name of a supported storage dtype; raises ValueError otherwise."""
    try:
        name = np.dtype(dtype).name
    except TypeError as error:
        raise ValueError(f"unsupported dtype {dtype!r}; choose one of {SUPPORTED_DTYPES}") from error
    if name == "float64":
        return "float32"
    if name not in SUPPORTED_DTYPES:
        raise ValueError(f"unsupported dtype {name!r}; choose one of {SUPPORTED_DTYPES}")
    return name


def quantize(
    embeddings: np.ndarray, weights: np.ndarray | None, dtype: str, vocabulary_size: int
) -> tuple[np.ndarray, np.ndarray | None]:
    """``(embeddings, weights)`` stored as ``dtype``; the effective vectors stay the same.

    ``weights`` is the per-token weight vector (or None); for int8 it carries the scale, so
    it is created (of length ``vocabulary_size``) when missing.

    Raises:
        ValueError: an unsupported ``dtype``, or float16 for a table with values past its range.
    """
    dtype = normalize_dtype_name(dtype)
    if embeddings.dtype == np.int8:
        if dtype == "int8":
            return embeddings, weights
        embeddings = embeddings.astype(np.float32)  # the scale stays in ``weights``
    if dtype == "float16" and embeddings.size and embeddings.dtype != np.float16:
        largest, limit = float(np.max(np.abs(embeddings))), float(np.finfo(np.float16).max)
        if largest > limit:  # it would become infinity, and the texts holding it NaN
            raise ValueError(f"the table holds values up to {largest:.6g}, past float16's largest ({limit:g}); "
                             "keep float32, or use int8 (it stores a scale)")
    if dtype != "int8":
        return embeddings.astype(dtype), weights
    values = embeddings.astype(np.float32)
    scale = float(np.max(np.abs(values))) / 127.0 or 1.0
    quantized = np.clip(np.rint(values / scale), -127, 127).astype(np.int8)
    base = np.ones(vocabulary_size, dtype=np.float32) if weights is None else weights.astype(np.float32)
    return quantized, base * np.float32(scale)
