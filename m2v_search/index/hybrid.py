"""Search modes of an index: ``dense`` (vectors), ``lexical`` (BM25 over the stored texts) and
``hybrid`` (both legs fused, see :mod:`m2v_search.index.fusion`).

A text query defaults to ``hybrid`` when the index has a lexical part and to ``dense`` when it
has none (an index saved before lexical parts existed, or built with ``--no-lexical``); a
vector query is always dense. Metadata filters apply inside both legs: the dense leg searches
only the allowed ids, the lexical leg scores only them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from m2v_search.errors import ArgumentError
from m2v_search.index.backends import Backend, SearchOptions
from m2v_search.index.collection import (
    DocumentCollection,
    allowed_ids,
    checked_texts,
    one_query,
    stored_vectors_for,
)
from m2v_search.index.errors import NoLexicalPartError
from m2v_search.index.fusion import (
    DEFAULT_ALPHA,
    DEFAULT_METHOD,
    check_alpha,
    check_method,
    check_mode,
    fuse_batch,
    leg_depth,
)
from m2v_search.index.lexical import DEFAULT_LANGUAGE, Analyzer, LexicalIndex, from_rows
from m2v_search.index.records import Hit
from m2v_search.index.results import SMALL_BATCH, omp_threads, to_hits
from m2v_search.index.vectors import checked_vectors, unit_vectors

HOW_TO_ADD = ("add one with `m2v-index reindex --lexical DIR` (VectorIndex.reindex_lexical() in Python) or "
              "rebuild the index, or search with mode='dense'")


def resolve_mode(mode: str | None, text_queries: bool, has_lexical: bool) -> str:
    """The mode a search runs in.

    Args:
        mode: What the caller asked for (None: the default for the query type).
        text_queries: The queries are texts (False: vectors).
        has_lexical: The index has a lexical part.

    Returns:
        ``dense``, ``lexical`` or ``hybrid``.

    Raises:
        ValueError: An unknown mode, or lexical/hybrid asked for vector queries.
        NoLexicalPartError: lexical/hybrid asked of an index without a lexical part.
    """
    if mode is None:
        return "hybrid" if text_queries and has_lexical else "dense"
    check_mode(mode)
    if mode == "dense":
        return mode
    if not text_queries:
        raise ArgumentError(f"mode {mode!r} needs query texts; a query vector searches dense only "
                            "(for hybrid with your own vectors, pass the texts and query_vectors=)", "mode")
    if not has_lexical:
        raise NoLexicalPartError(f"mode {mode!r} needs the index's lexical part, and this index has none: "
                                 f"{HOW_TO_ADD}")
    return mode


def search_modes(texts: Sequence[str], k: int, *, mode: str, alpha: float | None, fusion: str, lexical: LexicalIndex,
                 backend: Backend, allowed: np.ndarray | None, available: int, options: SearchOptions,
                 query_vectors: Callable[[], np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Raw results of a lexical or hybrid search, in FAISS's layout.

    Args:
        texts: The query texts.
        k: Results per query.
        mode: ``lexical`` or ``hybrid``.
        alpha: Weight of the dense leg in hybrid (None: :data:`~m2v_search.index.fusion.DEFAULT_ALPHA`).
        fusion: ``relative``, ``dbsf`` or ``rrf`` (see :mod:`m2v_search.index.fusion`).
        lexical: The lexical part.
        backend: The vectors (the dense leg; not re-ranked: BM25 makes up for lossy codes).
        allowed: Sorted ids a metadata filter allows (None: all live documents).
        available: How many live documents the search may return (at least 1).
        options: Search parameters of the dense leg.
        query_vectors: Returns the (n, dim) unit query vectors (called when the dense leg runs).

    Returns:
        ``(scores, labels)``, each (n, k), best first; label -1 past the results. Scores are BM25
        scores in lexical mode and fused scores in [0, 1] in hybrid mode.

    Raises:
        ValueError: ``alpha`` outside [0, 1], or an unknown ``fusion``.
    """
    weight = DEFAULT_ALPHA if alpha is None else check_alpha(alpha)
    check_method(fusion)
    depth = leg_depth(k)
    lexical_leg = [lexical.search(text, depth, allowed=allowed) for text in texts]
    if mode == "lexical":
        return _lexical_layout(lexical_leg, k)
    dense_scores = dense_labels = None
    if weight > 0.0:
        matrix = query_vectors()
        with omp_threads(1 if len(matrix) < SMALL_BATCH else None):
            dense_scores, dense_labels = backend.search(matrix, int(min(depth, available)), allowed, options)
        dense_labels[~matrix.any(axis=1)] = -1  # a zero query vector ranks nothing: the lexical leg alone counts
    return fuse_batch(dense_scores, dense_labels, lexical_leg, k, alpha=weight, method=fusion)


def _lexical_layout(legs: list[tuple[np.ndarray, np.ndarray]], k: int) -> tuple[np.ndarray, np.ndarray]:
    scores = np.full((len(legs), k), np.nan, dtype=np.float32)
    labels = np.full((len(legs), k), -1, dtype=np.int64)
    for row, (ids, leg_scores) in enumerate(legs):
        labels[row, :len(ids[:k])] = ids[:k]
        scores[row, :len(ids[:k])] = leg_scores[:k]
    return scores, labels


class HybridSearch(DocumentCollection):
    """A document collection whose searches run in three modes (dense, lexical, hybrid).

    The lexical part is the docstore's (``DocStore.lexical``): the docstore keeps it in step
    with every write. See the module docstring for the modes.
    """

    @property
    def lexical(self) -> LexicalIndex | None:
        """The lexical (BM25) part, or None for an index without one."""
        return self._docs.lexical

    def reindex_lexical(self, language: str | None = DEFAULT_LANGUAGE) -> None:
        """Rebuild the lexical part from the stored texts (e.g. for an index saved without one).

        Args:
            language: The analyzer's language (a Snowball stemmer name); None removes the lexical part.

        Raises:
            ValueError: An unknown language.
        """
        analyzer = None if language is None else Analyzer(language)
        with self._lock:
            self._docs.lexical = None if analyzer is None else from_rows(
                ((iid, text) for iid, _, text, _, _ in self._docs.iter_rows()), analyzer)

    def lexical_problems(self) -> list[str]:
        """What is inconsistent between the lexical part and the docstore (empty: consistent)."""
        with self._lock:
            lexical = self._docs.lexical
            if lexical is None:
                return []
            indexed, stored = lexical.iids(), self._docs.match_iids(None)
        if len(indexed) != len(stored):
            return [f"the lexical part indexes {len(indexed)} documents, the docstore holds {len(stored)}"]
        if not np.array_equal(indexed, stored):
            return ["the lexical part's ids and the docstore's ids differ"]
        return []

    def search(self, query: str | np.ndarray, k: int = 10, *, filter: dict[str, Any] | None = None,
               include_vectors: bool = False, nprobe: int | None = None, ef_search: int | None = None,
               mode: str | None = None, alpha: float | None = None, fusion: str = DEFAULT_METHOD,
               query_vector: np.ndarray | None = None, rescore: int | None = None) -> list[Hit]:
        """The ``k`` best documents for ``query``, best first.

        Args:
            query: A text, or a 1-D vector of ``dim`` values (normalised to unit length).
            k: Most hits to return (fewer when fewer documents match).
            filter: A metadata filter, applied inside every leg of the search (see
                :mod:`m2v_search.index.filters`); None: every document.
            include_vectors: Attach each hit's unit vector (``Hit.vector``).
            nprobe: IVF lists to probe (default: the index's).
            ef_search: HNSW candidate list size (default: the index's).
            mode: ``dense``, ``lexical`` or ``hybrid``; None: hybrid for a text when the index has a
                lexical part, else dense (a vector query is always dense).
            alpha: Hybrid weight of the dense leg in [0, 1] (1 = dense only, 0 = lexical only;
                None: :data:`~m2v_search.index.fusion.DEFAULT_ALPHA`).
            fusion: How hybrid fuses the legs: ``relative`` (default), ``dbsf`` or ``rrf``.
            query_vector: The text query's vector for the dense leg, instead of encoding the text
                (an index of vectors computed elsewhere needs it for hybrid).
            rescore: Binary kinds: candidates re-scored exactly per query (default: the index's).

        Returns:
            The hits. ``Hit.score``: cosine similarity (dense), BM25 score (lexical) or fused
            score in [0, 1] (hybrid).

        Raises:
            ValueError: ``k`` < 1, a bad vector, filter, mode, alpha or fusion, lexical/hybrid for
                a vector query, or a text query on an index without a model (dense/hybrid).
            NoLexicalPartError: lexical/hybrid asked of an index without a lexical part.
            TypeError: ``query`` is neither a str nor a numpy array.
        """
        vectors = None
        if query_vector is not None:
            if np.ndim(query_vector) != 1:  # a str (ndim 0) included
                raise ArgumentError(f"query_vector must be 1-D with {self.dim} values, got "
                                    f"{type(query_vector).__name__} of shape {np.shape(query_vector)}", "query_vector")
            vectors = checked_vectors([query_vector], self.dim, "query_vector")  # its errors name query_vector
        return self.search_batch(one_query(query, self.dim), k, filter=filter, include_vectors=include_vectors, nprobe=nprobe,
                                 ef_search=ef_search, mode=mode, alpha=alpha, fusion=fusion, query_vectors=vectors,
                                 rescore=rescore)[0]

    def search_batch(self, queries: Sequence[str] | np.ndarray, k: int = 10, *, filter: dict[str, Any] | None = None,
                     include_vectors: bool = False, nprobe: int | None = None, ef_search: int | None = None,
                     mode: str | None = None, alpha: float | None = None, fusion: str = DEFAULT_METHOD,
                     query_vectors: np.ndarray | None = None, rescore: int | None = None) -> list[list[Hit]]:
        """The ``k`` best documents for each query, best first (see :meth:`search` for the arguments).

        Args:
            queries: A list of texts, or an (n, dim) array of vectors.
            k: Most hits per query.
            filter: A metadata filter, applied inside every leg; None: every document.
            include_vectors: Attach each hit's unit vector.
            nprobe: IVF lists to probe.
            ef_search: HNSW candidate list size.
            mode: ``dense``, ``lexical``, ``hybrid`` or None (the default for the query type).
            alpha: Hybrid weight of the dense leg in [0, 1].
            fusion: ``relative``, ``dbsf`` or ``rrf``.
            query_vectors: (n, dim) vectors of text queries for the dense leg, instead of encoding them.
            rescore: Binary kinds: candidates re-scored exactly per query.

        Returns:
            One list of hits per query.

        Raises:
            ValueError: as :meth:`search`.
            NoLexicalPartError: lexical/hybrid asked of an index without a lexical part.
            TypeError: ``queries`` is a str, or holds something other than str.
        """
        if alpha is not None:
            check_alpha(alpha)
        check_method(fusion)
        texts = not isinstance(queries, np.ndarray)
        lexical = self.lexical  # read once: reindex_lexical() may replace or drop it meanwhile
        chosen = resolve_mode(mode, texts, lexical is not None)
        if alpha is not None and mode is None and chosen == "dense":
            if texts:  # the default mode is dense here only because the index has no lexical part
                raise NoLexicalPartError(f"alpha={alpha} weighs a hybrid search, which needs the index's lexical "
                                         f"part, and this index has none: {HOW_TO_ADD}")
            raise ArgumentError(f"alpha={alpha} weighs a hybrid search of query texts; a query vector searches "
                                "dense only (pass the texts, with query_vectors= for your own vectors)", "alpha")
        if query_vectors is not None and texts:
            query_vectors = checked_vectors(query_vectors, self.dim, "query_vectors")
            if len(query_vectors) != len(queries):
                raise ArgumentError(f"query_vectors must have shape ({len(queries)}, {self.dim}), "
                                    f"got {query_vectors.shape}", "query_vectors")
        if chosen == "dense":
            dense_queries = query_vectors if query_vectors is not None and texts else queries
            return super().search_batch(dense_queries, k, filter=filter, include_vectors=include_vectors,
                                        nprobe=nprobe, ef_search=ef_search, rescore=rescore)
        options = self._search_options(k, nprobe, ef_search, rescore)
        text_list = checked_texts(queries)

        def dense_vectors() -> np.ndarray:
            if query_vectors is not None:
                return unit_vectors(query_vectors)
            return self.embed(text_list, "pass query vectors (query_vectors=)")

        with self._lock:
            matched, available = allowed_ids(self._docs, self._count, filter)
            if not text_list or available == 0:
                return [[] for _ in text_list]
            scores, labels = search_modes(text_list, int(min(k, available)), mode=chosen, alpha=alpha, fusion=fusion,
                                          lexical=lexical, backend=self._backend, allowed=matched,
                                          available=available, options=options, query_vectors=dense_vectors)
            rows = self._docs.rows_by_iid(np.unique(labels[labels >= 0]).tolist())
            vectors = stored_vectors_for(self._backend, rows, self.embed) if include_vectors else None
        return to_hits(scores, labels, rows, vectors)
