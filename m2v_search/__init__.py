"""m2v-search: static text embeddings for vector search.

Importing this package is cheap: heavy modules (faiss, torch, transformers) load only
when the feature that needs them is used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from m2v_search._version import __version__

if TYPE_CHECKING:  # pragma: no cover
    from m2v_search.model import StaticModel

__all__ = ["StaticModel", "__version__", "distill", "distill_from_model", "DEFAULT_MODEL_NAME"]

_LAZY = {
    "StaticModel": ("m2v_search.model", "StaticModel"),
    "DEFAULT_MODEL_NAME": ("m2v_search.persistence", "DEFAULT_MODEL_NAME"),
    "distill": ("m2v_search.distill", "distill"),
    "distill_from_model": ("m2v_search.distill", "distill_from_model"),
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        module_name, attribute = _LAZY[name]
        value = getattr(importlib.import_module(module_name), attribute)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'm2v_search' has no attribute {name!r}")
