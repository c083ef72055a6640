"""SIF token weights a / (a + p(token)) from real token frequencies of a corpus."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from m2v_search.model import StaticModel


def token_counts(model: StaticModel, texts: Sequence[str], max_length: int | None = 256,
                 batch_size: int = 20_000) -> np.ndarray:
    """How often each token id occurs in ``texts`` as ``model`` tokenizes them (int64, vocabulary size)."""
    counts = np.zeros(model.vocabulary_size, dtype=np.int64)
    for start in range(0, len(texts), batch_size):
        ids, _ = model.tokenize_flat(texts[start:start + batch_size], max_length)
        counts += np.bincount(ids, minlength=len(counts))[:len(counts)]
    return counts


def sif_weights(counts: np.ndarray, coefficient: float = 1e-4) -> np.ndarray:
    """``a / (a + p)`` per token, p its relative frequency; tokens never seen get weight 1."""
    if coefficient <= 0:
        raise ValueError(f"SIF coefficient must be > 0, got {coefficient}")
    counts = np.asarray(counts, dtype=np.float64)
    total = counts.sum()
    if total <= 0:
        raise ValueError("token counts are all zero: the corpus has no known tokens")
    return (coefficient / (coefficient + counts / total)).astype(np.float32)


def apply_sif(model: StaticModel, weights: np.ndarray) -> StaticModel:
    """A copy of ``model`` with each token's row scaled by its weight (baked into the table)."""
    table = model.embedding.astype(np.float32) * np.asarray(weights, dtype=np.float32)[:, None]
    if model.weights is not None:
        table *= model.weights[:, None]
    return StaticModel(table, model.tokenizer, config=dict(model.config), normalize=model.normalize,
                       base_model_name=model.base_model_name, language=model.language,
                       max_length=model.max_length)._named(model.name)
