"""Distillation of transformers into static models (needs the ``distill`` extra: torch,
transformers). Heavy modules load only when a distillation runs.

``m2v_search.distill`` is both this package and, through ``m2v_search``'s lazy exports, the
``distill`` function; the package itself is callable too, so ``m2v_search.distill(...)``
works whichever of the two a program happened to import first.
"""

from __future__ import annotations

import sys
import types
from typing import Any

from m2v_search.distill.pipeline import distill, distill_from_model
from m2v_search.distill.device import select_device

__all__ = ["distill", "distill_from_model", "select_device"]


class _CallableModule(types.ModuleType):
    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return distill(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
