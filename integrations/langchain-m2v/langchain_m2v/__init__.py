"""LangChain integration for m2v-search: ``M2VEmbeddings`` and ``M2VVectorStore``."""

from __future__ import annotations

from importlib import metadata

from langchain_m2v.embeddings import DEFAULT_MODEL_NAME, M2VEmbeddings
from langchain_m2v.vectorstores import M2VVectorStore

try:
    __version__ = metadata.version("langchain-m2v")
except metadata.PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0.0.0"

__all__ = ["M2VEmbeddings", "M2VVectorStore", "DEFAULT_MODEL_NAME", "__version__"]
