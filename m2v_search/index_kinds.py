"""The index kinds users name, and the binary kinds' re-scoring bounds.

A module of constants only (no numpy, no FAISS), so that building the command line's parsers
stays light; :mod:`m2v_search.index.factory` resolves the kinds.
"""

from __future__ import annotations

KINDS = ("auto", "flat", "hnsw", "ivf", "ivf-pq", "binary", "binary-hnsw")
BINARY_KINDS = ("binary", "binary-hnsw")
BINARY_RESCORE = 1536       # binary kinds: Hamming candidates re-scored per query (recall@10 >= 0.99)
MAX_RESCORE = 1_000_000     # most candidates a search may re-score
