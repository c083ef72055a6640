"""Train a static model on a teacher's sentence embeddings over a corpus (needs the ``distill`` extra).

- ``corpus``: build / read the training corpus (permissively licensed offline text).
- ``featurize``: teacher embeddings in resumable shards.
- ``fit``: fit the static table (from a distilled model) to those embeddings.
- ``sif``: SIF weights from real token frequencies.
- ``pipeline.train_static_model``: all of it in one call.
"""

from __future__ import annotations

from typing import Any

__all__ = ["build_corpus", "read_corpus", "featurize", "load_features", "fit", "train_static_model"]

_LAZY = {
    "build_corpus": ("m2v_search.train.corpus", "build_corpus"),
    "read_corpus": ("m2v_search.train.corpus", "read_corpus"),
    "featurize": ("m2v_search.train.featurize", "featurize"),
    "load_features": ("m2v_search.train.featurize", "load_features"),
    "fit": ("m2v_search.train.fit", "fit"),
    "train_static_model": ("m2v_search.train.pipeline", "train_static_model"),
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        module_name, attribute = _LAZY[name]
        return getattr(importlib.import_module(module_name), attribute)
    raise AttributeError(f"module 'm2v_search.train' has no attribute {name!r}")
