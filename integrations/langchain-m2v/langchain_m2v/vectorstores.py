"""LangChain ``VectorStore`` backed by ``m2v_search.index.VectorIndex`` (FAISS + SQLite docstore).

With ``M2VEmbeddings`` the index encodes texts and queries with the same ``StaticModel`` itself
(no round trip through Python lists). With any other ``Embeddings`` the store embeds with it and
hands the vectors to an index of external vectors (``VectorIndex.create(dim=...)``, no model).
"""

from __future__ import annotations

import os
import threading
import uuid
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from langchain_core.documents import Document
from langchain_core.embeddings import Embeddings
from langchain_core.vectorstores import VectorStore
from langchain_core.vectorstores.utils import maximal_marginal_relevance

from langchain_m2v.embeddings import M2VEmbeddings

if TYPE_CHECKING:  # pragma: no cover
    from m2v_search.index import Hit, VectorIndex

def _cosine_relevance(score: float) -> float:
    """Cosine similarity in [-1, 1] -> relevance in [0, 1] (0.5 = orthogonal)."""
    return min(1.0, max(0.0, (float(score) + 1.0) / 2.0))


def _model_path(embedding: M2VEmbeddings) -> str | None:
    """What the index manifest should record so that the model can be reloaded, if anything."""
    from m2v_search.index.store import model_source
    from m2v_search.persistence import bundled_model_names

    name = embedding.model_name
    if name in bundled_model_names() or Path(name).expanduser().is_dir():
        return model_source(name)
    return None


def _check_filter(filter: Any) -> dict[str, Any] | None:
    if filter is None or isinstance(filter, dict):
        return filter or None
    raise TypeError(f"filter must be a dict such as {{'topic': 'biology'}} or {{'year': {{'$gte': 2000}}}} "
                    f"(applied inside the FAISS search), got {type(filter).__name__}")


def _document(hit_or_record: Any) -> Document:
    return Document(id=hit_or_record.id, page_content=hit_or_record.text, metadata=dict(hit_or_record.metadata))


class M2VVectorStore(VectorStore):
    """A vector store on m2v-search's FAISS index: cosine scores, upserts by id, deletes,
    metadata filters applied inside the search, and saving without pickle.

    Args:
        embedding: the embeddings; default ``M2VEmbeddings()`` (the bundled m2v-base model).
            Any LangChain ``Embeddings`` works; its vectors are stored as given (normalised).
        index: an existing ``VectorIndex`` to wrap (default: a new in-memory one).
        index_type: FAISS index kind for a new index: auto, flat, hnsw, ivf or ivf-pq.
        dim: dimension of a non-m2v ``embedding``; when not given, it is learned from the first
            vectors added.

    Example:
        .. code-block:: python

            from langchain_m2v import M2VVectorStore

            store = M2VVectorStore.from_texts(["Paris is in France", "Bread needs yeast"],
                                              metadatas=[{"topic": "geo"}, {"topic": "food"}])
            store.similarity_search_with_score("capital of France", k=1, filter={"topic": "geo"})
            store.save_local("my-index")
            store = M2VVectorStore.load_local("my-index")
    """

    def __init__(self, embedding: Embeddings | None = None, *, index: VectorIndex | None = None,
                 index_type: str = "auto", dim: int | None = None) -> None:
        if embedding is None:
            if index is not None and index.model is not None:
                embedding = M2VEmbeddings.from_model(index.model)
            elif index is not None:
                raise ValueError("this index holds vectors from another Embeddings; pass that embedding")
            else:
                embedding = M2VEmbeddings()
        if not isinstance(embedding, Embeddings):
            raise TypeError(f"embedding must be a LangChain Embeddings, got {type(embedding).__name__}")
        self._embedding = embedding
        self._native = isinstance(embedding, M2VEmbeddings)
        self._index_type = index_type
        self._lock = threading.Lock()
        self._index: VectorIndex | None = None
        if index is not None:
            self._check_index(index, dim)
            self._index = index
        elif self._native:
            from m2v_search.index import VectorIndex

            assert isinstance(embedding, M2VEmbeddings)
            self._index = VectorIndex.create(model=embedding.client, index=index_type,
                                             model_path=_model_path(embedding))
        elif dim is not None:
            self._ensure_index(dim)

    def _check_index(self, index: VectorIndex, dim: int | None) -> None:
        if dim is not None and dim != index.dim:
            raise ValueError(f"dim={dim} but the index holds {index.dim}-dim vectors")
        if self._native:
            client = self._embedding.client  # type: ignore[attr-defined]
            if index.model is None:
                raise ValueError("the index holds vectors from another Embeddings, not comparable with the "
                                 f"embedding's model {client.name!r}")
            if client is not index.model and client.fingerprint != index.model.fingerprint:
                raise ValueError(f"the index was built with model {index.model.name!r}, not with the embedding's "
                                 f"model {client.name!r}: their vectors are not comparable")
        elif index.model is not None:
            raise ValueError(f"the index encodes with model {index.model.name!r}; vectors from "
                             f"{type(self._embedding).__name__} are not comparable with its documents")

    def _ensure_index(self, dim: int) -> VectorIndex:
        with self._lock:
            if self._index is None:
                from m2v_search.index import VectorIndex

                self._index = VectorIndex.create(dim=int(dim), index=self._index_type)
            return self._index

    # ------------------------------------------------------------------ properties
    @property
    def embeddings(self) -> Embeddings:
        return self._embedding

    @property
    def index(self) -> VectorIndex | None:
        """The underlying ``m2v_search.index.VectorIndex`` (None until the first vectors arrive
        when a non-m2v embedding was given without ``dim``)."""
        return self._index

    def __len__(self) -> int:
        return 0 if self._index is None else len(self._index)

    # ------------------------------------------------------------------ writes
    def add_texts(self, texts: Iterable[str], metadatas: list[dict[str, Any]] | None = None, *,
                  ids: list[str | None] | None = None, **kwargs: Any) -> list[str]:
        """Add texts, replacing any stored document with the same id; returns the ids.

        Missing ids (None, or no ``ids``) get new uuid4 hex ids. Metadata must be JSON-serialisable.
        """
        texts = list(texts)
        if ids is not None and len(ids) != len(texts):
            raise ValueError(f"{len(texts)} texts but {len(ids)} ids")
        if metadatas is not None and len(metadatas) != len(texts):
            raise ValueError(f"{len(texts)} texts but {len(metadatas)} metadatas")
        if not texts:
            return []
        chosen = [uuid.uuid4().hex if doc_id is None else str(doc_id)
                  for doc_id in (ids if ids is not None else [None] * len(texts))]
        metas = [dict(meta) if meta else {} for meta in (metadatas or [None] * len(texts))]  # type: ignore[list-item]
        if self._native:
            assert self._index is not None
            return self._index.add_texts(texts, ids=chosen, metadatas=metas)
        vectors = np.asarray(self._embedding.embed_documents(texts), dtype=np.float32)
        if vectors.ndim != 2 or len(vectors) != len(texts):
            raise ValueError(f"{type(self._embedding).__name__}.embed_documents returned shape {vectors.shape} "
                             f"for {len(texts)} texts")
        index = self._ensure_index(vectors.shape[1])
        return index.add_texts(texts, ids=chosen, metadatas=metas, vectors=vectors)

    def delete(self, ids: list[str] | None = None, **kwargs: Any) -> bool | None:
        """Delete documents by id (unknown ids are ignored); ``ids=None`` deletes everything."""
        if self._index is None:
            return True
        if ids is None:
            self._index.clear()
        else:
            self._index.delete([str(i) for i in ids])
        return True

    # ------------------------------------------------------------------ reads
    def get_by_ids(self, ids: Sequence[str], /) -> list[Document]:
        """The stored documents among ``ids`` (unknown ids left out), in the order asked."""
        if self._index is None:
            return []
        return [_document(record) for record in self._index.get([str(i) for i in ids])]

    def _query_vector(self, query: str) -> np.ndarray:
        if self._native:
            assert self._index is not None
            return np.asarray(self._index.model.encode(query), dtype=np.float32)
        return np.asarray(self._embedding.embed_query(query), dtype=np.float32)

    def _empty(self) -> bool:
        return self._index is None or len(self._index) == 0

    def _search(self, query: str | np.ndarray, k: int, filter: Any, include_vectors: bool = False) -> list[Hit]:
        checked = _check_filter(filter)
        if self._empty():
            return []
        assert self._index is not None
        if isinstance(query, str) and not self._native:
            query = self._query_vector(query)
        return self._index.search(query, k, filter=checked, include_vectors=include_vectors)

    def similarity_search_with_score(self, query: str, k: int = 4, filter: dict[str, Any] | None = None,
                                     **kwargs: Any) -> list[tuple[Document, float]]:
        """Documents closest to ``query`` with their cosine similarity (higher is better).

        ``filter``: metadata conditions applied inside the search, e.g. ``{"topic": "biology"}``,
        ``{"year": {"$gte": 2000}}``, ``{"country": ["fr", "it"]}`` (several keys = AND).
        """
        return [(_document(hit), hit.score) for hit in self._search(query, k, filter)]

    def similarity_search(self, query: str, k: int = 4, filter: dict[str, Any] | None = None,
                          **kwargs: Any) -> list[Document]:
        return [doc for doc, _ in self.similarity_search_with_score(query, k, filter=filter)]

    def similarity_search_with_score_by_vector(self, embedding: list[float], k: int = 4,
                                               filter: dict[str, Any] | None = None, **kwargs: Any
                                               ) -> list[tuple[Document, float]]:
        vector = np.asarray(embedding, dtype=np.float32)
        return [(_document(hit), hit.score) for hit in self._search(vector, k, filter)]

    def similarity_search_by_vector(self, embedding: list[float], k: int = 4,
                                    filter: dict[str, Any] | None = None, **kwargs: Any) -> list[Document]:
        return [doc for doc, _ in self.similarity_search_with_score_by_vector(embedding, k, filter=filter)]

    def _select_relevance_score_fn(self) -> Callable[[float], float]:
        """Relevance = (cosine + 1) / 2, in [0, 1]."""
        return _cosine_relevance

    def max_marginal_relevance_search(self, query: str, k: int = 4, fetch_k: int = 20, lambda_mult: float = 0.5,
                                      filter: dict[str, Any] | None = None, **kwargs: Any) -> list[Document]:
        """Documents relevant to ``query`` but diverse among themselves (MMR over ``fetch_k`` candidates)."""
        _check_filter(filter)
        if self._empty():
            return []
        return self.max_marginal_relevance_search_by_vector(self._query_vector(query), k, fetch_k, lambda_mult,
                                                            filter=filter)

    def max_marginal_relevance_search_by_vector(self, embedding: list[float] | np.ndarray, k: int = 4,
                                                fetch_k: int = 20, lambda_mult: float = 0.5,
                                                filter: dict[str, Any] | None = None, **kwargs: Any
                                                ) -> list[Document]:
        if not 0.0 <= lambda_mult <= 1.0:
            raise ValueError(f"lambda_mult must be in [0, 1], got {lambda_mult}")
        vector = np.asarray(embedding, dtype=np.float32)
        hits = self._search(vector, max(int(fetch_k), int(k)), filter, include_vectors=True)
        if not hits:
            return []
        chosen = maximal_marginal_relevance(vector, [hit.vector for hit in hits], lambda_mult=lambda_mult,
                                            k=min(int(k), len(hits)))
        return [_document(hits[i]) for i in chosen]

    # ------------------------------------------------------------------ construction, persistence
    @classmethod
    def from_texts(cls, texts: list[str], embedding: Embeddings | None = None,
                   metadatas: list[dict[str, Any]] | None = None, *, ids: list[str] | None = None,
                   **kwargs: Any) -> M2VVectorStore:
        """A new store holding ``texts``; ``kwargs`` go to the constructor (index_type, dim)."""
        store = cls(embedding, **kwargs)
        store.add_texts(texts, metadatas, ids=ids)
        return store

    def save_local(self, folder_path: str | os.PathLike[str]) -> None:
        """Save to ``folder_path`` as an m2v-search index directory (FAISS file, SQLite docstore and a
        checksummed manifest, written atomically; no pickle). ``m2v-index`` can read it too."""
        if self._index is None:  # nothing added yet to a non-m2v store: learn the dimension now
            self._ensure_index(len(self._embedding.embed_query("dimension")))
        assert self._index is not None
        Path(folder_path).mkdir(parents=True, exist_ok=True)
        self._index.save(folder_path)

    @classmethod
    def load_local(cls, folder_path: str | os.PathLike[str], embeddings: Embeddings | None = None,
                   **kwargs: Any) -> M2VVectorStore:
        """Open a folder written by :meth:`save_local` (or by ``m2v-index build``); checksums are
        verified before anything is read. ``embeddings`` None: the m2v model recorded in the folder.
        ``allow_dangerous_deserialization`` (LangChain's FAISS option) is accepted and ignored: nothing
        here is unpickled."""
        kwargs.pop("allow_dangerous_deserialization", None)
        from m2v_search.index import ModelMismatchError, VectorIndex
        from m2v_search.index.manifest import read_manifest

        folder = Path(folder_path)
        manifest = read_manifest(folder)
        recorded_model = manifest.get("model", {})
        external = bool(recorded_model.get("external"))
        recorded = "vectors from another Embeddings" if external else repr(str(recorded_model.get("name")))
        try:
            if embeddings is None:
                if external:
                    raise ValueError(f"{folder} holds vectors from a non-m2v Embeddings: pass the same "
                                     "embeddings to load_local")
                index = VectorIndex.open(folder)
            elif isinstance(embeddings, M2VEmbeddings):
                index = VectorIndex.open(folder, model=embeddings.client)
            elif external:
                index = VectorIndex.open(folder)
            else:
                raise ValueError(f"{folder} was built with the m2v model {recorded}; its documents cannot be "
                                 f"searched with {type(embeddings).__name__} vectors")
        except ModelMismatchError as error:
            used = "its m2v model" if isinstance(embeddings, M2VEmbeddings) else type(embeddings).__name__
            raise ValueError(f"{folder} was built with {recorded}; it cannot be searched with {used}: "
                             f"{error}") from error
        return cls(embeddings, index=index, **kwargs)
