"""Post-hoc whitening of a static model, folded into its table.

Mean pooling is affine-equivariant: for a text with at least one token,
``mean_t((E_t - mu) W) = (mean_t E_t - mu) W``. So centring the model's outputs over a
corpus and whitening them (PCA whitening, ``W = V diag(lambda^-power) V^T``) is one change
of the table, with no cost at encode time.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from m2v_search.model import StaticModel


def whiten(model: StaticModel, texts: Sequence[str], *, power: float = 0.5, max_texts: int = 100_000,
           seed: int = 0) -> StaticModel:
    """A copy of ``model`` whose outputs over ``texts`` are centred and whitened (``power`` 0.5: full)."""
    if not 0 <= power <= 1:
        raise ValueError(f"power must be in [0, 1], got {power}")
    if model.token_mapping is not None:
        raise ValueError("whitening needs one row per token (no token_mapping)")
    texts = list(texts)
    if len(texts) > max_texts:
        rng = np.random.default_rng(seed)
        texts = [texts[i] for i in rng.choice(len(texts), max_texts, replace=False)]
    outputs = model.encode(texts, normalize=False).astype(np.float64)
    outputs = outputs[np.abs(outputs).sum(1) > 0]  # texts without known tokens stay zero vectors
    if len(outputs) <= model.dim:
        raise ValueError(f"whitening needs more than {model.dim} texts with known tokens, got {len(outputs)}")
    mean = outputs.mean(0)
    values, vectors = np.linalg.eigh(np.cov((outputs - mean).T))
    transform = vectors @ np.diag(np.maximum(values, 1e-12) ** -power) @ vectors.T
    table = model.embedding.astype(np.float64)
    if model.weights is not None:
        table = table * model.weights[:, None]
    table = ((table - mean) @ transform).astype(np.float32)
    return StaticModel(table, model.tokenizer, config=dict(model.config), normalize=model.normalize,
                       base_model_name=model.base_model_name, language=model.language,
                       max_length=model.max_length)._named(model.name)
