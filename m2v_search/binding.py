"""What a host library's vector store (LangChain, LlamaIndex, ...) needs from m2v-search, in one place.

An :class:`IndexBinding` holds one :class:`~m2v_search.index.VectorIndex` for a store and owns the
rules every adapter shares: which index to create (for a model, for external vectors of a given
size, or lazily when the first vectors arrive), checks on what is added (lengths, sizes, NaN and
infinity), queries given as text or as vectors, filters translated by a host-supplied hook, MMR
through a host-supplied selection helper, and saving to or opening from an fsspec filesystem.

Vectors are normalised in one place only: the index (on insert and on query). Adapters hand raw
vectors over as they are.
"""

from __future__ import annotations

import os
import shutil
import threading
import warnings
import weakref
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Union

import numpy as np

from m2v_search.binding_checks import (  # the checks are part of this module's API, for the adapters
    MAX_METADATA_DEPTH,
    check_count,
    check_finite_metadata,
    check_metadata,
    check_search_options,
    check_sources,
    checked_filter,
    checked_ids,
    checked_metadatas,
    finite_matrix,
    finite_vector,
    size_mismatch,
)
from m2v_search.binding_storage import open_index, save_index
from m2v_search.index.records import refuse_single_id

if TYPE_CHECKING:  # pragma: no cover
    from m2v_search.index import Hit, Record, VectorIndex
    from m2v_search.model import StaticModel

__all__ = ["MAX_METADATA_DEPTH", "IndexBinding", "all_of", "complete_vectors", "check_finite_metadata", "check_metadata",
           "check_search_options",
           "finite_matrix", "model_source", "no_translation", "pop_index_kind", "resolve_model"]

ModelLike = Union["StaticModel", str, os.PathLike]
FilterTranslator = Callable[[Any], "dict[str, Any] | None"]
# (query vector, candidate vectors (n, dim), k) -> positions of the chosen candidates, best first.
MMRSelector = Callable[[np.ndarray, np.ndarray, int], Sequence[int]]

#: Earlier names of the ``index_kind`` option, still accepted with a DeprecationWarning.
DEPRECATED_INDEX_KIND_NAMES = ("index_type",)


def pop_index_kind(options: dict[str, Any], index_kind: str | None, owner: str, default: str = "auto") -> str:
    """The index kind asked for, taking the deprecated option names out of ``options``.

    Args:
        options: keyword arguments of the caller; deprecated names are removed from it.
        index_kind: the value of the ``index_kind`` option (None when not given).
        owner: the class or function named in the warning.
        default: the kind used when none is given.

    Returns:
        auto, flat, hnsw, ivf or ivf-pq (checked when the index is created).

    Raises:
        TypeError: both ``index_kind`` and a deprecated name were given.
    """
    for name in DEPRECATED_INDEX_KIND_NAMES:
        if name in options:
            value = options.pop(name)
            if index_kind is not None:
                raise TypeError(f"{owner}: pass index_kind only ({name} is its deprecated name)")
            warnings.warn(f"{owner}({name}=...) is deprecated; use index_kind=", DeprecationWarning,
                          stacklevel=3)
            index_kind = value
    return default if index_kind is None else str(index_kind)


def no_translation(filter: Any) -> dict[str, Any] | None:
    """The default filter hook: the filter is already an m2v-search filter dict (or None)."""
    if filter is None or isinstance(filter, dict):
        return filter or None
    raise TypeError(f"filter must be a dict such as {{'topic': 'biology'}} or {{'year': {{'$gte': 2000}}}}, "
                    f"got {type(filter).__name__}")


def all_of(*filters: dict[str, Any] | None) -> dict[str, Any] | None:
    """The AND of several filter dicts (None entries ignored; None when all are None)."""
    present = [f for f in filters if f]
    if not present:
        return None
    return present[0] if len(present) == 1 else {"$and": present}


UNPICKLABLE = ("an m2v-search vector store holds a live index (open files, a writer lock) and cannot be pickled "
               "or copied: save it (LangChain: save_local, LlamaIndex: persist) and load the saved folder instead")


class IndexBinding:
    """One ``VectorIndex`` behind a host library's vector store.

    Args:
        index: an existing index to use as it is.
        model: create an index now that encodes with this model (a ``StaticModel``, a bundled
            model name or a model folder).
        dim: create an index now for vectors of this size computed elsewhere (no model).
        index_kind: FAISS index kind of a new index: auto, flat, hnsw, ivf or ivf-pq.
        factory: a FAISS factory string for a new index (overrides ``index_kind``).
        fallback_model: with no index, model or dim, the index is created when first needed:
            for this model when the first vectors have its size (or none are given), else for
            external vectors of their size. None: always external vectors, created on the first add.
        translate_filter: the host's filter -> m2v-search filter dict (default: dicts as they are).
        model_path: where an in-memory ``model`` was loaded from (a bundled name or a folder), so
            that the saved index reopens without naming it (see :func:`model_source`).

    Raises:
        ValueError: conflicting options, or a model whose size is not ``dim``.
        TypeError: ``index`` is not a VectorIndex.
    """

    def __init__(self, index: VectorIndex | None = None, *, model: ModelLike | None = None,
                 dim: int | None = None, index_kind: str = "auto", factory: str | None = None,
                 fallback_model: ModelLike | None = None, translate_filter: FilterTranslator = no_translation,
                 model_path: str | None = None) -> None:
        check_sources(index, model, dim)
        self.index_kind = index_kind
        self.factory = factory
        self.fallback_model = fallback_model
        self.translate_filter = translate_filter
        self.model_path = model_path
        self._guessed = False  # the index was made for fallback_model before any vector was seen
        self._scratch: Any = None  # keeps a downloaded copy alive as long as the index reads it
        self._lock = threading.RLock()  # two threads adding first must not create two indexes
        self._index = index
        if index is None and model is not None:
            self._index = self._create(model=model)
        elif index is None and dim is not None:
            self._index = self._create(dim=dim)

    def __getstate__(self) -> Any:
        """Refuse: a binding holds a live index (open files, a lock), which a pickle or a copy cannot carry."""
        raise TypeError(UNPICKLABLE)

    # ------------------------------------------------------------------ the index
    @property
    def index(self) -> VectorIndex | None:
        """The index, or None while a lazily created one has not been needed yet."""
        return self._index

    @property
    def embeds_text(self) -> bool:
        """Whether texts and text queries can be encoded here (the index has, or will have, a model)."""
        if self._index is not None:
            return not self._index.external_vectors
        return self.fallback_model is not None

    def __len__(self) -> int:
        return 0 if self._index is None else len(self._index)

    def _create(self, *, model: ModelLike | None = None, dim: int | None = None) -> VectorIndex:
        from m2v_search.index import VectorIndex

        options: dict[str, Any] = {"index_kind": self.index_kind, "factory": self.factory}
        if dim is not None and model is None:
            return VectorIndex.create(dim=int(dim), **options)
        return VectorIndex.create(model=model, model_path=self.model_path, **options)

    def require(self, dim: int | None = None) -> VectorIndex:
        """The index, created now when it does not exist yet.

        Args:
            dim: size of the vectors about to be stored or searched (None: texts).

        Returns:
            The index.

        Raises:
            ValueError: the vectors do not have the index's size, or there is nothing to learn a
                size from (no model and no vectors yet).
        """
        with self._lock:
            return self._require(dim)

    def _require(self, dim: int | None) -> VectorIndex:
        index = self._index
        if index is not None and dim is not None and dim != index.dim:
            if self._guessed and len(index) == 0:
                index = self._index = None  # made for the fallback model before any vector was seen
            else:
                raise ValueError(size_mismatch(index, dim))
        if index is None:
            if self.fallback_model is not None:
                index = self._create(model=self.fallback_model)
                self._guessed = dim is None
                if dim is not None and dim != index.dim:
                    index = self._create(dim=dim)
            elif dim is not None:
                index = self._create(dim=dim)
            else:
                raise ValueError("no vectors have been added yet, so the size of the index is unknown")
            self._index = index
        return index

    # ------------------------------------------------------------------ writes
    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """The index model's vectors of ``texts`` (not normalised: the index normalises).

        Raises:
            ValueError: the index holds external vectors and has no model.
        """
        index = self.require(None)
        if index.model is None:
            raise ValueError(f"this store holds vectors computed elsewhere ({index.dim} dims, no model) and "
                             "cannot embed text itself; embed with the store's embedding model first")
        return index.model.encode(list(texts), normalize=False)

    def add(self, texts: Sequence[str], *, ids: Sequence[Any] | None = None,
            metadatas: Sequence[Mapping[str, Any] | None] | None = None, vectors: Any = None) -> list[str]:
        """Add or replace documents; returns their ids (new uuid4 hex ids where ``ids`` has None).

        Args:
            texts: the documents' texts.
            ids: their ids (None, or None entries: new ids).
            metadatas: their metadata (JSON values; NaN and infinity are refused).
            vectors: (n, dim) vectors computed elsewhere; None: the index's model encodes the texts.

        Returns:
            The ids, in order.

        Raises:
            ValueError: lengths differ, an id is given twice (ids are compared as text, so 1
                and "1" are the same id), a metadata is not a JSON object or holds NaN or
                infinity, a vector is not finite, or sizes mismatch.
        """
        texts = list(texts)
        ids = checked_ids(ids, len(texts))
        metadatas = checked_metadatas(metadatas, len(texts))
        if not texts:
            return []
        if vectors is None:
            index = self.require(None)
        else:
            vectors = finite_matrix(vectors, len(texts), "vectors")
            index = self.require(vectors.shape[1])
        return index.add_texts(texts, ids=ids, metadatas=metadatas, vectors=vectors)

    def delete(self, ids: Sequence[str]) -> int:
        """Delete documents by id (unknown ids ignored); returns how many were deleted."""
        if self._index is None:
            refuse_single_id(ids)  # the index checks them itself
            return 0
        return self._index.delete(ids)

    def clear(self) -> None:
        """Delete every document (the index keeps its model and kind)."""
        if self._index is not None:
            self._index.clear()

    # ------------------------------------------------------------------ reads
    def get(self, ids: Sequence[str]) -> list[Record]:
        """The stored documents among ``ids`` (unknown ids left out), in the order asked."""
        if self._index is None:
            refuse_single_id(ids)
            return []
        return self._index.get(ids)

    def ids(self, filter: Any = None) -> list[str]:
        """Ids of the documents matching the host ``filter`` (all for None), in insertion order."""
        translated = self.translate_filter(filter)
        if self._index is None:
            checked_filter(translated)  # a bad filter fails before the store has an index too
            return []
        return self._index.ids(translated)

    def query_vector(self, query: str | Any) -> np.ndarray:
        """``query`` as a vector: a text encoded by the index's model, or a given vector checked.

        Raises:
            ValueError: an empty or white-space query, a text query for an index without a model, or a
                vector of the wrong size.
        """
        if isinstance(query, str):
            from m2v_search.index.collection import checked_texts

            return self.encode(checked_texts([query]))[0]  # an empty query is refused, as in a search
        vector = finite_vector(query)
        if self._index is not None and len(vector) != self._index.dim:
            raise ValueError(size_mismatch(self._index, len(vector)))
        return vector

    def search(self, query: str | Any, k: int, *, filter: Any = None, include_vectors: bool = False,
               mode: str | None = "dense", alpha: float | None = None, fusion: str = "relative",
               query_vector: Any = None) -> list[Hit]:
        """The ``k`` best documents for ``query`` (a text or a vector), filter applied inside every leg.

        Args:
            query: a text or a vector.
            k: how many documents at most.
            filter: a host filter, translated by ``translate_filter``.
            include_vectors: return the stored (unit) vectors with the hits.
            mode: ``dense`` (the default here: cosine scores, what the adapters promise unless asked
                otherwise), ``lexical`` (BM25 over the stored texts; needs no model), ``hybrid``
                (both, fused), or None (the index's default: hybrid for a text when it has a
                lexical part). A vector query searches dense only.
            alpha: hybrid weight of the dense leg in [0, 1] (1 = dense only, 0 = lexical only;
                None: the index's default, 0.4).
            fusion: how hybrid fuses the legs: ``relative``, ``dbsf`` or ``rrf``.
            query_vector: the text query's vector for the dense leg, instead of encoding the text
                (what a store of external vectors needs for hybrid).

        Returns:
            Hits, best first; scores are cosine similarities (dense), BM25 scores (lexical) or
            fused scores in [0, 1] (hybrid).

        Raises:
            ValueError: bad ``k``, ``mode``, ``alpha`` or ``fusion``; a text query that needs a model
                the store has not (dense or hybrid without ``query_vector``); lexical or hybrid for
                a vector query; a vector of the wrong size.
            NoLexicalPartError: lexical or hybrid on an index without a lexical part (a ValueError
                that says how to add one).
            FilterError: the translated filter is malformed.
        """
        translated = self.translate_filter(filter)
        check_count("k", k)
        check_search_options(mode, alpha, fusion)
        query, query_vector = _checked_query(self, query, mode, alpha, query_vector)
        if self._index is None or len(self._index) == 0:
            checked_filter(translated)  # a bad filter fails on an empty store too
            return []
        return self._index.search(query, int(k), filter=translated, include_vectors=include_vectors, mode=mode,
                                  alpha=alpha, fusion=fusion, query_vector=query_vector)

    def search_mmr(self, query: str | Any, k: int, fetch_k: int, select: MMRSelector, *,
                   filter: Any = None) -> list[Hit]:
        """Maximal marginal relevance: ``fetch_k`` candidates, then ``select`` (the host library's
        own MMR helper) picks ``k`` of them, relevant to the query but unlike each other.

        Args:
            query: a text (needs a model) or a vector.
            k: how many documents at most.
            fetch_k: how many candidates the selection sees (at least ``k``).
            select: ``(query_vector, candidate_vectors, k) -> chosen positions``, best first.
            filter: a host filter, translated by ``translate_filter``.

        Returns:
            The chosen hits, in the order ``select`` gave; scores stay the cosine similarities.

        Raises:
            ValueError: ``k`` or ``fetch_k`` is not a positive integer, or as :meth:`search`.
        """
        check_count("k", k)
        check_count("fetch_k", fetch_k)
        if self._index is None or len(self._index) == 0:
            checked_filter(self.translate_filter(filter))  # a bad filter fails even on an empty store
            return []
        vector = self.query_vector(query)
        hits = self.search(vector, max(int(fetch_k), int(k)), filter=filter, include_vectors=True)
        if not hits:
            return []
        candidates = np.stack([np.asarray(hit.vector, dtype=np.float32) for hit in hits])
        return [hits[int(i)] for i in select(vector, candidates, min(int(k), len(hits)))]

    # ------------------------------------------------------------------ persistence
    def save(self, path: str | os.PathLike[str], fs: Any = None) -> None:
        """Save the index as a directory at ``path``, locally or on an fsspec filesystem
        (see :func:`m2v_search.binding_storage.save_index`; no pickle).

        Raises:
            ValueError: ``path`` is a URL and fsspec (or the filesystem's package) is missing.
        """
        save_index(self.require(None), path, fs)

    @classmethod
    def open(cls, path: str | os.PathLike[str], fs: Any = None, *, model: ModelLike | None = None,
             external: bool = False, embedder: str = "another embedding model",
             **options: Any) -> IndexBinding:
        """A binding over the index directory at ``path``, opened (and checked, and downloaded from
        a remote ``fs`` for as long as the binding lives) by :func:`m2v_search.binding_storage.open_index`,
        which takes the arguments but ``options`` (for the constructor) and says what it raises.
        """
        index, scratch = open_index(path, fs, model=model, external=external, embedder=embedder)
        try:
            binding = cls(index, **options)
        except BaseException:
            index.close()
            if scratch is not None:
                shutil.rmtree(scratch, ignore_errors=True)
            raise
        if scratch is not None:
            binding._scratch = weakref.finalize(binding, shutil.rmtree, scratch, True)
        return binding


def complete_vectors(binding: IndexBinding, vectors: Sequence[Sequence[float] | None], text_of: Callable[[int], str],
                     name_of: Callable[[int], str]) -> np.ndarray:
    """The vectors of documents where the host embedded only some: the missing ones (None) are
    encoded by the index's model from ``text_of(position)``.

    Args:
        binding: the store's binding (its index is created on first use).
        vectors: one vector or None per document.
        text_of: the text to encode for a document without a vector.
        name_of: how errors name a document.

    Returns:
        An (n, dim) matrix.

    Raises:
        ValueError: vectors of different sizes or not finite, or missing vectors on an index
            without a model.
    """
    sizes = {len(v) for v in vectors if v is not None}
    if len(sizes) > 1:
        raise ValueError(f"the documents carry vectors of different sizes: {sorted(sizes)}")
    index = binding.require(sizes.pop() if sizes else None)
    missing = [i for i, v in enumerate(vectors) if v is None]
    if missing and index.model is None:
        raise ValueError(f"{name_of(missing[0])} has no embedding, and this store holds external vectors "
                         "so it cannot embed text itself; embed it first")
    matrix = np.zeros((len(vectors), index.dim), dtype=np.float32)
    for i, vector in enumerate(vectors):
        if vector is not None:
            matrix[i] = vector
    if missing:
        matrix[missing] = binding.encode([text_of(i) for i in missing])
    return finite_matrix(matrix, len(vectors), "vectors")


def _checked_query(binding: IndexBinding, query: str | Any, mode: str | None, alpha: float | None,
                   query_vector: Any) -> tuple[str | np.ndarray, np.ndarray | None]:
    """``(query, query_vector)`` of :meth:`IndexBinding.search`, vectors checked, or the error of a
    search the binding cannot run (a text needing a model it has not, a mode a vector cannot take)."""
    if not isinstance(query, str):
        if mode not in (None, "dense"):
            raise ValueError(f"mode {mode!r} needs a text query; a query vector searches dense only")
        return binding.query_vector(query), None
    if query_vector is not None:
        return query, binding.query_vector(query_vector)
    if mode in ("dense", "hybrid") and not binding.embeds_text and alpha != 0:
        if mode == "hybrid":
            raise ValueError("hybrid search on this store of vectors computed elsewhere (no model) needs the "
                             "query's vector for its dense leg: pass query_vector= (or search with "
                             "mode='lexical', which needs none)")
        binding.encode([])  # raises the "cannot embed text" error
    return query, None


def model_source(name: str | os.PathLike[str] | None) -> str | None:
    """Where a model given by ``name`` can be reloaded from: a bundled name, a model folder's
    absolute path, or None (a hub id or anything else that is not a local folder)."""
    if name is None:
        return None
    from m2v_search.persistence import bundled_model_names

    if str(name) in bundled_model_names():
        return str(name)
    folder = Path(name).expanduser()
    return str(folder.resolve()) if folder.is_dir() else None


def resolve_model(model: Any) -> tuple[ModelLike | None, str | None]:
    """A model as the binding takes it, and where it can be reloaded from.

    Args:
        model: None, a ``StaticModel``, a bundled model name or folder, or a host library's
            embeddings object that holds a ``StaticModel`` (as ``.model`` or ``.client``) and the
            name it was loaded by (``.model_name``).

    Returns:
        (the model, its reload source or None).

    Raises:
        TypeError: anything else.
    """
    if model is None or isinstance(model, (str, os.PathLike)):
        return model, None
    from m2v_search.model import StaticModel

    if isinstance(model, StaticModel):
        return model, None
    for attribute in ("model", "client"):
        inner = getattr(model, attribute, None)
        if isinstance(inner, StaticModel):
            return inner, model_source(getattr(model, "model_name", None))
    raise TypeError(f"model must be a StaticModel, a model name or folder, or m2v embeddings; "
                    f"got {type(model).__name__}")
