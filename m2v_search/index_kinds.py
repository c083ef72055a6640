"""The index kinds users name, and the binary kinds' re-scoring bounds.

A module of constants only (no numpy, no FAISS), so that building the command line's parsers
stays light; :mod:`m2v_search.index.factory` resolves the kinds.
"""

from __future__ import annotations

KINDS = ("auto", "flat", "hnsw", "ivf", "ivf-pq", "binary", "binary-hnsw")
BINARY_KINDS = ("binary", "binary-hnsw")
BINARY_RESCORE = 1536       # binary kinds: Hamming candidates re-scored per query (recall@10 >= 0.99)
MAX_RESCORE = 1_000_000     # most candidates a search may re-score


def index_file_suffix(kind: str) -> str:
    """The generation file's extension for an index kind: ``faiss`` where ``faiss.read_index`` reads
    the file, ``m2vbin`` for the binary kinds' own format (codes, int8 re-scoring vectors, ids)."""
    return "m2vbin" if kind in BINARY_KINDS else "faiss"
