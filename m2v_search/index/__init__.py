"""FAISS vector index over static embeddings: ``VectorIndex``, ``Record``, ``Hit``.

faiss is imported only when an index is created or opened.
"""

from __future__ import annotations

from m2v_search.index.errors import (
    CorpusError,
    IndexConflictError,
    IndexCorruptError,
    IndexLockedError,
    IndexNotFoundError,
    ModelMismatchError,
)
from m2v_search.index.store import Hit, Record, UpsertStats, VectorIndex

__all__ = ["VectorIndex", "Record", "Hit", "UpsertStats", "CorpusError", "IndexConflictError", "IndexCorruptError",
           "IndexLockedError", "IndexNotFoundError", "ModelMismatchError"]
