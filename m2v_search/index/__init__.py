"""FAISS vector index over static embeddings: ``VectorIndex``, ``Record``, ``Hit``.

``VectorIndex`` (:mod:`.store`) is the front: documents, docstore, model binding and saved
generations (:mod:`.generations`). The vectors live in a backend per index kind
(:mod:`.backends`); :mod:`.vectors` decides normalisation, :mod:`.model_binding` loads models.
Searches run dense, lexical (BM25, :mod:`.lexical`) or hybrid (:mod:`.hybrid`, :mod:`.fusion`).
faiss is imported only when an index is created or opened.
"""

from __future__ import annotations

from m2v_search.index.errors import (
    CorpusError,
    IndexClosedError,
    IndexConflictError,
    IndexCorruptError,
    IndexLockedError,
    IndexNotFoundError,
    ModelMismatchError,
    NoLexicalPartError,
    OutputDirectoryError,
)
from m2v_search.index.store import Hit, Record, UpsertStats, VectorIndex

__all__ = ["VectorIndex", "Record", "Hit", "UpsertStats", "CorpusError", "IndexClosedError", "IndexConflictError",
           "IndexCorruptError", "IndexLockedError", "IndexNotFoundError", "ModelMismatchError", "NoLexicalPartError",
           "OutputDirectoryError"]
