"""Taking the parts of a loaded Sentence Transformers static model (``StaticEmbedding``).

Kept apart from ``model.py`` so that sentence-transformers and torch are touched only when
such an object is passed in (they are never imported here: the object brings them).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from tokenizers import Tokenizer


def static_parts(model: Any) -> tuple[np.ndarray, Tokenizer, bool, str]:
    """``(vectors, tokenizer, has a Normalize module, name)`` of a Sentence Transformers static model.

    Args:
        model: a ``SentenceTransformer`` whose first module is a ``StaticEmbedding``, or the
            ``StaticEmbedding`` module itself.

    Returns:
        The float32 embedding table, a copy of the module's tokenizer, whether the pipeline
        normalises, and a display name.

    Raises:
        TypeError: ``model`` holds no ``StaticEmbedding`` (e.g. a transformer: distil it first).
    """
    is_pipeline = type(model).__name__ != "StaticEmbedding" and hasattr(model, "_modules") and hasattr(model, "__iter__")
    modules = list(model) if is_pipeline else [model]
    if not modules or type(modules[0]).__name__ != "StaticEmbedding":
        kinds = ", ".join(type(m).__name__ for m in modules) or type(model).__name__
        raise TypeError(f"expected a Sentence Transformers static model (StaticEmbedding first), got {kinds}; "
                        "a transformer must be distilled first: m2v_search.distill(model_name=...)")
    static = modules[0]
    weight = static.embedding.weight.detach().to("cpu").float().numpy()
    tokenizer = Tokenizer.from_str(static.tokenizer.to_str())  # a copy: the caller's stays as it is
    has_normalize = any(type(m).__name__ == "Normalize" for m in modules[1:])
    card = getattr(model, "model_card_data", None)
    name = getattr(card, "model_name", None) or getattr(static, "base_model", None) or "sentence-transformers-static"
    return np.ascontiguousarray(weight, dtype=np.float32), tokenizer, has_normalize, str(name)

