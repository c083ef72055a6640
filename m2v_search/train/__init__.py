"""Train a static model on a teacher's sentence embeddings over a corpus (needs the ``distill`` extra).

- ``corpus``: build / read the training corpus (permissively licensed offline text).
- ``featurize``: teacher embeddings in resumable shards.
- ``fit``: fit the static table (from a distilled model) to those embeddings, with
  ``FitOptions``; its parts are ``student`` (the model trained), ``loop`` (the training loop)
  and ``early_stopping``.
- ``sif``: SIF weights from real token frequencies; ``whiten``: corpus whitening folded into the table.
- ``pipeline.train_static_model``: corpus -> features -> fit -> whiten in one call.
- ``contrastive`` (query -> document pairs) and ``similarity`` (a teacher's cosines on sentence
  pairs): terms that tune a trained table, each with the token anchor of ``anchor``; ``terms``
  runs them from a recipe's ``retrieval`` and ``similarity`` sections.
- ``recipe``: recipes as data (``load_recipe``; ``recipes/m2v-base.json`` is the shipped model's);
  ``runner.run_recipe`` rebuilds a model from one end to end (``m2v train --recipe default``).
"""

from __future__ import annotations

from typing import Any

__all__ = ["build_corpus", "read_corpus", "featurize", "load_features", "fit", "FitOptions", "train_static_model",
           "Recipe", "load_recipe", "run_recipe"]

_LAZY = {
    "build_corpus": ("m2v_search.train.corpus", "build_corpus"),
    "read_corpus": ("m2v_search.train.corpus", "read_corpus"),
    "featurize": ("m2v_search.train.featurize", "featurize"),
    "load_features": ("m2v_search.train.featurize", "load_features"),
    "fit": ("m2v_search.train.fit", "fit"),
    "FitOptions": ("m2v_search.train.options", "FitOptions"),
    "Recipe": ("m2v_search.train.recipe", "Recipe"),
    "load_recipe": ("m2v_search.train.recipe", "load_recipe"),
    "run_recipe": ("m2v_search.train.runner", "run_recipe"),
    "train_static_model": ("m2v_search.train.pipeline", "train_static_model"),
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        module_name, attribute = _LAZY[name]
        return getattr(importlib.import_module(module_name), attribute)
    raise AttributeError(f"module 'm2v_search.train' has no attribute {name!r}")
