"""HTTP server for an index: OpenAI-compatible embeddings, search, upserts (FastAPI + uvicorn).

Install with the ``serve`` extra. FastAPI and uvicorn are imported only when ``create_app``,
``serve`` or ``main`` is used; ``ServerLimits`` needs neither.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from m2v_search.server.limits import ServerLimits

if TYPE_CHECKING:  # pragma: no cover
    from m2v_search.server.app import create_app, serve
    from m2v_search.server.cli import main

__all__ = ["ServerLimits", "create_app", "serve", "main"]

_LAZY = {"create_app": "m2v_search.server.app", "serve": "m2v_search.server.app", "main": "m2v_search.server.cli"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'm2v_search.server' has no attribute {name!r}")
