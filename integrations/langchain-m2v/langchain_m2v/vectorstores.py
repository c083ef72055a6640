"""LangChain ``VectorStore`` over m2v-search's index, through ``m2v_search.binding.IndexBinding``.

With ``M2VEmbeddings`` the index encodes texts and queries with the same ``StaticModel`` itself
(no round trip through Python lists). With any other ``Embeddings`` the store embeds with it and
hands the vectors to an index of external vectors, created when the first vectors arrive (or at
once with ``dim=``). The index normalises every vector.

Searches are dense by default (cosine scores); ``mode="hybrid"`` (vectors + BM25 over the stored
texts, fused) or ``mode="lexical"`` (BM25) per call, in a retriever's ``search_kwargs``, or for
every search with ``search_mode=`` (see :class:`M2VVectorStore`).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
from langchain_core.documents import Document
from langchain_core.embeddings import Embeddings
from langchain_core.vectorstores import VectorStore
from langchain_core.vectorstores.utils import maximal_marginal_relevance
from m2v_search.binding import IndexBinding, check_search_options, pop_index_kind, resolve_model

from langchain_m2v.embeddings import M2VEmbeddings

if TYPE_CHECKING:  # pragma: no cover
    from m2v_search.index import VectorIndex


def _cosine_relevance(score: float) -> float:
    """Cosine similarity in [-1, 1] -> relevance in [0, 1] (0.5 = orthogonal)."""
    return min(1.0, max(0.0, (float(score) + 1.0) / 2.0))


def _fused_relevance(score: float) -> float:
    """A hybrid search's fused score is already a relevance in [0, 1]."""
    return min(1.0, max(0.0, float(score)))


def _no_relevance(score: float) -> float:
    raise ValueError("relevance scores in [0, 1] exist for mode='dense' (cosine) and mode='hybrid' (fused); "
                     "BM25 scores of mode='lexical' have no upper bound: use similarity_search_with_score")


def _refuse_mode_but_dense(kwargs: dict[str, Any], search: str) -> None:
    """Refuse a ``mode`` other than dense for a search that compares vectors only."""
    if kwargs.get("mode", "dense") != "dense":
        raise ValueError(f"{search} compares vectors, so it searches dense only, not mode={kwargs['mode']!r}")


RELEVANCE_OF_MODE = {"dense": _cosine_relevance, "hybrid": _fused_relevance, "lexical": _no_relevance}
SEARCH_OPTIONS = ("mode", "alpha", "fusion")


def _document(hit_or_record: Any) -> Document:
    return Document(id=hit_or_record.id, page_content=hit_or_record.text,
                    metadata=dict(hit_or_record.metadata))


def _check_index(index: VectorIndex, embedding: Embeddings) -> None:
    """Refuse an index whose vectors are not comparable with ``embedding``'s."""
    if isinstance(embedding, M2VEmbeddings):
        client = embedding.client
        if index.model is None:
            raise ValueError("the index holds vectors from another Embeddings, not comparable with the "
                             f"embedding's model {client.name!r}")
        if client is not index.model and client.fingerprint != index.model.fingerprint:
            raise ValueError(f"the index was built with model {index.model.name!r}, not with the embedding's "
                             f"model {client.name!r}: their vectors are not comparable")
    elif index.model is not None:
        raise ValueError(f"the index encodes with model {index.model.name!r}; vectors from "
                         f"{type(embedding).__name__} are not comparable with its documents")


class M2VVectorStore(VectorStore):
    """A vector store on m2v-search's FAISS index (with a BM25 part): cosine scores, hybrid and
    lexical search, upserts by id, deletes, metadata filters applied inside the search, and saving
    without pickle.

    Search modes. Text searches (``similarity_search*``, retrievers) run in ``search_mode`` unless
    a call passes ``mode=`` (also through ``as_retriever(search_kwargs={"mode": ...})``):

    - ``"dense"`` (the default): the vectors. ``similarity_search_with_score`` gives cosine
      similarities, and relevance scores are ``(cosine + 1) / 2``, so score thresholds keep the
      meaning LangChain users expect of a vector store.
    - ``"hybrid"``: the vectors and BM25 over the stored texts, fused (``alpha`` weighs the dense
      leg: 1 = vectors only, 0 = BM25 only, default 0.4; ``fusion``: ``"relative"``, ``"dbsf"`` or
      ``"rrf"``). Better retrieval (on m2v-search's retrieval tasks hybrid beat both legs alone,
      see its README) at about the dense cost. Scores are fused scores in [0, 1], relative to the
      query's candidates (the best hit scores near 1), and are the relevance scores as they are.
    - ``"lexical"``: BM25 only (no embedding is computed); scores are BM25 scores, without an upper
      bound, so relevance scores (and the ``similarity_score_threshold`` retriever) refuse it.

    Vector searches (``*_by_vector``) and MMR are always dense. Hybrid and lexical need the index's
    lexical part (every index has one unless saved before it existed or built with
    ``--no-lexical``; else ``NoLexicalPartError`` says how to add it).

    Args:
        embedding: the embeddings; default ``M2VEmbeddings()`` (the bundled m2v-base model).
            Any LangChain ``Embeddings`` works; the index normalises its vectors.
        index: an existing ``m2v_search.index.VectorIndex`` to wrap (default: a new in-memory one).
        index_kind: FAISS index kind of a new index: auto, flat, hnsw, ivf or ivf-pq
            (``index_type`` is its deprecated name).
        dim: size of a non-m2v ``embedding``'s vectors; when not given, it is learned from the
            first vectors added.
        search_mode: the mode of text searches that do not pass ``mode=``: ``"dense"``,
            ``"hybrid"`` or ``"lexical"``.
        alpha: hybrid weight of the dense leg in [0, 1] (None: m2v-search's default, 0.4).
        fusion: how hybrid fuses its legs: ``"relative"``, ``"dbsf"`` or ``"rrf"``.

    Raises:
        ValueError: an unknown ``search_mode`` or ``fusion``, ``alpha`` outside [0, 1].

    Example:
        .. code-block:: python

            from langchain_m2v import M2VVectorStore

            store = M2VVectorStore.from_texts(["Paris is in France", "Bread needs yeast"],
                                              metadatas=[{"topic": "geo"}, {"topic": "food"}])
            store.similarity_search_with_score("capital of France", k=1, filter={"topic": "geo"})
            store.similarity_search("capital of France", k=1, mode="hybrid", alpha=0.4)
            retriever = store.as_retriever(search_kwargs={"k": 4, "mode": "hybrid"})
            store.save_local("my-index")
            store = M2VVectorStore.load_local("my-index")
    """

    def __init__(self, embedding: Embeddings | None = None, *, index: VectorIndex | None = None,
                 index_kind: str | None = None, dim: int | None = None, search_mode: str = "dense",
                 alpha: float | None = None, fusion: str = "relative", **options: Any) -> None:
        kind = pop_index_kind(options, index_kind, "M2VVectorStore")
        if options:
            raise TypeError(f"M2VVectorStore got unexpected options: {', '.join(sorted(options))}")
        if search_mode is None:
            raise ValueError("search_mode must be 'dense', 'hybrid' or 'lexical'")
        check_search_options(search_mode, alpha, fusion)
        self.search_options: dict[str, Any] = {"mode": search_mode, "alpha": alpha, "fusion": fusion}
        if embedding is None:
            if index is not None and index.model is None:
                raise ValueError("this index holds vectors from another Embeddings: pass the same embeddings")
            embedding = M2VEmbeddings.from_model(index.model) if index is not None else M2VEmbeddings()
        if not isinstance(embedding, Embeddings):
            raise TypeError(f"embedding must be a LangChain Embeddings, got {type(embedding).__name__}")
        if index is not None:
            _check_index(index, embedding)
        self._embedding = embedding
        self._native = isinstance(embedding, M2VEmbeddings)
        model, source = resolve_model(embedding) if self._native and index is None else (None, None)
        self._binding = IndexBinding(index, model=model, dim=dim, index_kind=kind, model_path=source)

    @property
    def embeddings(self) -> Embeddings:
        return self._embedding

    @property
    def index(self) -> VectorIndex | None:
        """The underlying ``m2v_search.index.VectorIndex`` (None until the first vectors arrive
        when a non-m2v embedding was given without ``dim``)."""
        return self._binding.index

    def __len__(self) -> int:
        return len(self._binding)

    # ------------------------------------------------------------------ writes
    def add_texts(self, texts: Iterable[str], metadatas: list[dict[str, Any]] | None = None, *,
                  ids: list[str | None] | None = None, **kwargs: Any) -> list[str]:
        """Add texts, replacing any stored document with the same id; returns the ids.

        Missing ids (None, or no ``ids``) get new uuid4 hex ids. Metadata must be JSON values
        (NaN and infinity are refused; numpy values are stored as the equal Python values).

        Raises:
            TypeError: ``texts`` is a single str (it would be added as one document a character).
        """
        if isinstance(texts, (str, bytes)):
            raise TypeError(f"texts must be a list of str, got the single {type(texts).__name__} {texts[:80]!r}; "
                            f"pass [{texts[:80]!r}]")
        texts = list(texts)
        vectors = None
        if not self._native and texts:
            vectors = self._embedding.embed_documents(texts)
        return self._binding.add(texts, ids=ids, metadatas=metadatas, vectors=vectors)

    def add_documents(self, documents: list[Document], **kwargs: Any) -> list[str]:
        """Add documents, replacing any stored document with the same id; returns the ids.

        ``ids`` given (not None) take precedence; absent or None, each document's own ``id`` is
        used (new uuid4 hex ids for documents without one), as in LangChain's in-memory store.
        """
        if kwargs.get("ids") is None:
            kwargs.pop("ids", None)  # else LangChain's base class passes ids=None on and drops Document.id
        return super().add_documents(documents, **kwargs)

    async def aadd_documents(self, documents: list[Document], **kwargs: Any) -> list[str]:
        """:meth:`add_documents` off the event loop."""
        if kwargs.get("ids") is None:
            kwargs.pop("ids", None)
        return await super().aadd_documents(documents, **kwargs)

    def delete(self, ids: list[str] | None = None, **kwargs: Any) -> bool | None:
        """Delete documents by id (unknown ids are ignored); ``ids=None`` deletes everything."""
        if ids is None:
            self._binding.clear()
        else:
            self._binding.delete(ids)
        return True

    # ------------------------------------------------------------------ reads
    def get_by_ids(self, ids: Sequence[str], /) -> list[Document]:
        """The stored documents among ``ids`` (unknown ids left out), in the order asked."""
        return [_document(record) for record in self._binding.get(ids)]

    def _query(self, query: str) -> str | list[float]:
        """A text query as the index takes it for a dense search: the text itself (native) or its embedding."""
        return query if self._native else self._embedding.embed_query(query)

    def _options(self, kwargs: dict[str, Any]) -> dict[str, Any]:
        """The mode, alpha and fusion of a text search: the call's, else the store's.

        Raises:
            ValueError: an unknown mode or fusion, or ``alpha`` outside [0, 1].
        """
        options = {name: kwargs.get(name, default) for name, default in self.search_options.items()}
        if options["mode"] is None:
            raise ValueError("mode must be 'dense', 'hybrid' or 'lexical'")
        check_search_options(options["mode"], options["alpha"], options["fusion"])
        return options

    def _search_text(self, query: str, k: int, filter: dict[str, Any] | None, options: dict[str, Any]) -> list[Any]:
        """Hits of a text query in the mode of ``options``: the index embeds the text itself
        (native), or gets the embedding's vector (for dense, and for hybrid's dense leg)."""
        if self._native or options["mode"] != "hybrid":
            return self._binding.search(self._query(query) if options["mode"] == "dense" else query, k,
                                        filter=filter, **options)
        vector = self._embedding.embed_query(query)
        return self._binding.search(query, k, filter=filter, query_vector=vector, **options)

    def similarity_search_with_score(self, query: str, k: int = 4, filter: dict[str, Any] | None = None,
                                     **kwargs: Any) -> list[tuple[Document, float]]:
        """Documents best matching ``query``, with their scores (higher is better).

        Args:
            query: the text.
            k: how many documents at most.
            filter: metadata conditions applied inside the search (inside both legs of hybrid),
                e.g. ``{"topic": "biology"}``, ``{"year": {"$gte": 2000}}``, ``{"country": ["fr", "it"]}``,
                ``{"$or": [...]}``, ``{"tags": {"$contains": "x"}}`` (see ``m2v_search.index.filters``).
            **kwargs: ``mode`` (``"dense"``, ``"hybrid"`` or ``"lexical"``; default the store's
                ``search_mode``), ``alpha`` and ``fusion`` (hybrid); other keywords are ignored.

        Returns:
            (document, score) pairs, best first: cosine similarities (dense), fused scores in
            [0, 1] (hybrid) or BM25 scores (lexical).

        Raises:
            ValueError: a bad mode, alpha, fusion or filter. ``NoLexicalPartError`` (a ValueError)
                for hybrid or lexical on an index without a lexical part.
        """
        options = self._options(kwargs)
        if len(self._binding) == 0:  # nothing to search, so the query is not embedded
            self._binding.ids(filter)  # but a bad filter fails on an empty store too
            return []
        return [(_document(hit), hit.score) for hit in self._search_text(query, k, filter, options)]

    def similarity_search(self, query: str, k: int = 4, filter: dict[str, Any] | None = None,
                          **kwargs: Any) -> list[Document]:
        """Documents best matching ``query`` (``mode``, ``alpha``, ``fusion``: see
        :meth:`similarity_search_with_score`)."""
        return [doc for doc, _ in self.similarity_search_with_score(query, k, filter=filter, **kwargs)]

    def _similarity_search_with_relevance_scores(self, query: str, k: int = 4, **kwargs: Any
                                                 ) -> list[tuple[Document, float]]:
        """Relevance in [0, 1]: ``(cosine + 1) / 2`` for dense, the fused score for hybrid.

        Raises:
            ValueError: ``mode="lexical"`` (BM25 scores have no upper bound).
        """
        relevance = RELEVANCE_OF_MODE[self._options(kwargs)["mode"]]
        return [(doc, relevance(score)) for doc, score in self.similarity_search_with_score(query, k, **kwargs)]

    async def _asimilarity_search_with_relevance_scores(self, query: str, k: int = 4, **kwargs: Any
                                                        ) -> list[tuple[Document, float]]:
        return await asyncio.to_thread(self._similarity_search_with_relevance_scores, query, k, **kwargs)

    def similarity_search_with_score_by_vector(self, embedding: list[float], k: int = 4,
                                               filter: dict[str, Any] | None = None, **kwargs: Any
                                               ) -> list[tuple[Document, float]]:
        """Documents closest to the vector ``embedding``, with their cosine similarities.

        Raises:
            ValueError: a ``mode`` other than ``"dense"`` (a vector has no text for BM25), or a
                vector of the wrong size.
        """
        _refuse_mode_but_dense(kwargs, "a vector search")
        return [(_document(hit), hit.score) for hit in self._binding.search(embedding, k, filter=filter)]

    def similarity_search_by_vector(self, embedding: list[float], k: int = 4,
                                    filter: dict[str, Any] | None = None, **kwargs: Any) -> list[Document]:
        """Documents closest to the vector ``embedding`` (as :meth:`similarity_search_with_score_by_vector`)."""
        scored = self.similarity_search_with_score_by_vector(embedding, k, filter=filter, **kwargs)
        return [doc for doc, _ in scored]

    def _select_relevance_score_fn(self) -> Callable[[float], float]:
        """Relevance of a dense (cosine) score: (cosine + 1) / 2, in [0, 1]."""
        return _cosine_relevance

    def max_marginal_relevance_search(self, query: str, k: int = 4, fetch_k: int = 20,
                                      lambda_mult: float = 0.5, filter: dict[str, Any] | None = None,
                                      **kwargs: Any) -> list[Document]:
        """Documents relevant to ``query`` but diverse among themselves (MMR over ``fetch_k`` candidates
        from the vectors: MMR is dense whatever the store's ``search_mode``).

        Raises:
            ValueError: ``mode`` other than ``"dense"`` is passed, or ``lambda_mult`` is outside [0, 1].
        """
        _refuse_mode_but_dense(kwargs, "max marginal relevance")
        if len(self._binding) == 0:  # nothing to search, so the query is not embedded
            self._binding.ids(filter)  # but a bad filter fails on an empty store too
            return []
        return self.max_marginal_relevance_search_by_vector(self._binding.query_vector(self._query(query)), k,
                                                            fetch_k, lambda_mult, filter=filter)

    def max_marginal_relevance_search_by_vector(self, embedding: list[float] | np.ndarray, k: int = 4,
                                                fetch_k: int = 20, lambda_mult: float = 0.5,
                                                filter: dict[str, Any] | None = None, **kwargs: Any
                                                ) -> list[Document]:
        """MMR with LangChain's own ``maximal_marginal_relevance`` over the index's ``fetch_k`` best
        candidates, so at most ``fetch_k`` documents come back when ``fetch_k < k`` (as in LangChain's
        own stores)."""
        if not 0.0 <= lambda_mult <= 1.0:
            raise ValueError(f"lambda_mult must be in [0, 1], got {lambda_mult}")

        if not np.any(np.asarray(embedding, dtype=np.float64)):  # LangChain's MMR would fail on NaN cosines
            return []  # no token of the query is known to the model: nothing is near it (as similarity_search)

        def select(query: np.ndarray, candidates: np.ndarray, count: int) -> list[int]:
            # the index fetches at least k candidates; MMR picks among the first fetch_k only
            pool = list(candidates[:fetch_k])
            return maximal_marginal_relevance(query, pool, lambda_mult=lambda_mult, k=count)

        hits = self._binding.search_mmr(embedding, k, fetch_k, select, filter=filter)
        return [_document(hit) for hit in hits]

    # ------------------------------------------------------------------ construction, persistence
    @classmethod
    def from_texts(cls, texts: list[str], embedding: Embeddings | None = None,
                   metadatas: list[dict[str, Any]] | None = None, *, ids: list[str] | None = None,
                   **kwargs: Any) -> M2VVectorStore:
        """A new store holding ``texts``; ``kwargs`` go to the constructor (index_kind, dim)."""
        store = cls(embedding, **kwargs)
        store.add_texts(texts, metadatas, ids=ids)
        return store

    def save_local(self, folder_path: str | os.PathLike[str]) -> None:
        """Save to ``folder_path`` as an m2v-search index directory (FAISS file, SQLite docstore and a
        checksummed manifest, written atomically; no pickle). ``m2v-index`` can read it too."""
        if self._binding.index is None:  # nothing added yet to a non-m2v store: learn the dimension now
            self._binding.require(len(self._embedding.embed_query("dimension")))
        self._binding.save(folder_path)

    @classmethod
    def load_local(cls, folder_path: str | os.PathLike[str], embeddings: Embeddings | None = None,
                   **kwargs: Any) -> M2VVectorStore:
        """Open a folder written by :meth:`save_local` (or by ``m2v-index build``); checksums are
        verified before anything is read. ``embeddings`` None: the m2v model recorded in the folder.
        ``allow_dangerous_deserialization`` (LangChain's FAISS option) is accepted and ignored: nothing
        here is unpickled."""
        kwargs.pop("allow_dangerous_deserialization", None)
        external = embeddings is not None and not isinstance(embeddings, M2VEmbeddings)
        model = embeddings.client if isinstance(embeddings, M2VEmbeddings) else None
        binding = IndexBinding.open(folder_path, model=model, external=external,
                                    embedder=type(embeddings).__name__)
        return cls(embeddings, index=binding.index, **kwargs)
