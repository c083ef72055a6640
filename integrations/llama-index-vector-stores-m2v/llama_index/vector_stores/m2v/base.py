"""``M2VVectorStore``: a LlamaIndex vector store over m2v-search, through ``m2v_search.binding``.

Each node is one index document (id, text, and metadata that holds the node's own metadata plus
the serialized node and ``ref_doc_id``, so nodes come back whole). Queries run dense (cosine
scores; DEFAULT and MMR), hybrid (vectors + BM25 fused; HYBRID with its ``alpha``) or lexical
(BM25; TEXT_SEARCH and SPARSE).
"""

from __future__ import annotations

import asyncio
import math
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Sequence, Union

import numpy as np
from llama_index.core.bridge.pydantic import Field, PrivateAttr
from llama_index.core.indices.query.embedding_utils import get_top_k_mmr_embeddings
from llama_index.core.schema import BaseNode, MetadataMode
from llama_index.core.vector_stores.types import (
    DEFAULT_PERSIST_DIR,
    DEFAULT_PERSIST_FNAME,
    BasePydanticVectorStore,
    MetadataFilters,
    VectorStoreQuery,
    VectorStoreQueryMode,
    VectorStoreQueryResult,
)
from llama_index.core.vector_stores.utils import metadata_dict_to_node, node_to_metadata_dict
from m2v_search.binding import (
    UNPICKLABLE,
    IndexBinding,
    all_of,
    check_metadata,
    complete_vectors,
    pop_index_kind,
    resolve_model,
)

from llama_index.vector_stores.m2v.filters import metadata_filters_to_dict, to_filter_dict

if TYPE_CHECKING:  # pragma: no cover
    import fsspec
    from m2v_search.index import VectorIndex

NAMESPACE_SEP = "__"
DEFAULT_NAMESPACE = "default"
NODE_ID_KEY = "_node_id"
DEFAULT_MODEL = "m2v-base"
MMR_PREFETCH_FACTOR = 4
LEXICAL_MODES = (VectorStoreQueryMode.TEXT_SEARCH, VectorStoreQueryMode.SPARSE)
SUPPORTED_MODES = (VectorStoreQueryMode.DEFAULT, VectorStoreQueryMode.MMR, VectorStoreQueryMode.HYBRID,
                   *LEXICAL_MODES)


class M2VVectorStore(BasePydanticVectorStore):
    """LlamaIndex vector store over an m2v-search ``VectorIndex`` (FAISS + SQLite docstore).

    Args:
        index: an existing ``VectorIndex`` to use (its model and path are kept).
        model: the model of a new index: a ``StaticModel``, a model name or folder, or an
            ``M2VEmbedding`` (its model). None: the bundled default, or, when the first vectors
            LlamaIndex hands in have another size, an index of external vectors of that size.
        dim: create an index of external vectors of this size (for embed models that are not
            m2v models); such an index cannot embed text itself.
        index_kind: FAISS index kind of a new index: auto, flat, hnsw, ivf or ivf-pq.
        factory: a FAISS factory string for a new index (overrides ``index_kind``).
        flat_metadata: require flat metadata (str, int, float, None values) on every node.

    Persist with :meth:`persist` (an index directory: FAISS file, SQLite docstore and a manifest
    with checksums; no pickle), to a local path or any fsspec filesystem, and load with
    :meth:`from_persist_path` or :meth:`from_persist_dir`.
    """

    stores_text: bool = True
    is_embedding_query: bool = True
    flat_metadata: bool = Field(default=False, description="Require flat metadata on nodes.")
    index_kind: str = Field(default="auto", description="FAISS index kind of a new index.")
    factory: Optional[str] = Field(default=None, description="FAISS factory string of a new index.")

    _binding: IndexBinding = PrivateAttr()

    def __init__(self, index: Optional[VectorIndex] = None, *, model: Any = None, dim: Optional[int] = None,
                 index_kind: Optional[str] = None, factory: Optional[str] = None, flat_metadata: bool = False,
                 **kwargs: Any) -> None:
        kind = pop_index_kind(kwargs, index_kind, "M2VVectorStore")
        super().__init__(index_kind=kind, factory=factory, flat_metadata=flat_metadata, **kwargs)
        loaded, path = resolve_model(model)
        fallback = DEFAULT_MODEL if index is None and model is None and dim is None else None
        self._binding = IndexBinding(index, model=loaded, dim=dim, index_kind=kind, factory=factory,
                                     fallback_model=fallback, translate_filter=to_filter_dict,
                                     model_path=path)

    @classmethod
    def class_name(cls) -> str:
        return "M2VVectorStore"

    @property
    def client(self) -> Optional[VectorIndex]:
        """The underlying ``m2v_search.index.VectorIndex`` (None until the first write)."""
        return self._binding.index

    @property
    def index(self) -> VectorIndex:
        """The underlying ``VectorIndex``, created now when it does not exist yet."""
        return self._binding.require(None)

    @property
    def embeds_text(self) -> bool:
        """Whether the index has an m2v model that can embed nodes and queries given as text."""
        return self._binding.embeds_text

    def __getstate__(self) -> Dict[str, Any]:
        """Refuse, loudly: LlamaIndex's own pickling drops a private attribute it cannot pickle, which
        gave back an empty store."""
        raise TypeError(UNPICKLABLE)

    # ------------------------------------------------------------------ writes
    def add(self, nodes: Sequence[BaseNode], **add_kwargs: Any) -> List[str]:
        """Store nodes (with their embeddings when LlamaIndex computed them); returns their ids.

        Nodes without an embedding are embedded here, as LlamaIndex would (their EMBED-mode
        content), by the index's m2v model.
        """
        nodes = list(nodes)
        given = [node.node_id for node in nodes]
        last = {node.node_id: node for node in nodes}  # an id given twice keeps its last node, as SimpleVectorStore
        nodes = list(last.values()) if len(last) < len(given) else nodes
        if not nodes:
            return []
        ids, texts, metadatas = [], [], []
        for position, node in enumerate(nodes):
            check_metadata(node.metadata, f"nodes[{position}] (id {node.node_id!r}) metadata")
            try:
                metadata = node_to_metadata_dict(node, remove_text=True, flat_metadata=self.flat_metadata)
            except ValueError as error:
                raise ValueError(f"nodes[{position}] (id {node.node_id!r}): {error}") from None
            metadata[NODE_ID_KEY] = node.node_id
            ids.append(node.node_id)
            texts.append(node.get_content(metadata_mode=MetadataMode.NONE))
            metadatas.append(metadata)
        vectors = complete_vectors(self._binding, [node.embedding for node in nodes],
                                   lambda i: nodes[i].get_content(MetadataMode.EMBED),
                                   lambda i: f"node {nodes[i].node_id!r}")
        self._binding.add(texts, ids=ids, metadatas=metadatas, vectors=vectors)
        return given

    def delete(self, ref_doc_id: str, **delete_kwargs: Any) -> None:
        """Delete every node of the document ``ref_doc_id``."""
        self._binding.delete(self._binding.ids({"ref_doc_id": str(ref_doc_id)}))

    def delete_nodes(self, node_ids: Optional[List[str]] = None, filters: Optional[MetadataFilters] = None,
                     **delete_kwargs: Any) -> None:
        """Delete the nodes among ``node_ids`` that match ``filters`` (at least one of them is needed)."""
        if node_ids is None and (filters is None or not filters.filters):
            raise ValueError("delete_nodes needs node_ids or filters; use clear() to delete everything")
        self._binding.delete(self._select_ids(node_ids, filters))

    def clear(self) -> None:
        """Delete every node (the index keeps its model and kind)."""
        self._binding.clear()

    # ------------------------------------------------------------------ reads
    def get_nodes(self, node_ids: Optional[List[str]] = None,
                  filters: Optional[MetadataFilters] = None) -> List[BaseNode]:
        """Nodes by id and/or metadata filters (all nodes when both are None), in the order asked."""
        ids = self._select_ids(node_ids, filters)
        return [metadata_dict_to_node(record.metadata, text=record.text) for record in self._binding.get(ids)]

    def _select_ids(self, node_ids: Optional[List[str]], filters: Optional[MetadataFilters]) -> List[str]:
        """Ids among ``node_ids`` (None: all) matching ``filters``, in the order of ``node_ids``."""
        where = metadata_filters_to_dict(filters)
        if where is None and node_ids is not None:
            return [str(i) for i in node_ids]
        asked = None if node_ids is None else [str(i) for i in node_ids]
        matched = self._binding.ids(all_of(where, None if asked is None else {NODE_ID_KEY: {"$in": asked}}))
        if asked is None:
            return matched
        found = set(matched)
        return [i for i in asked if i in found]

    def query(self, query: VectorStoreQuery, **kwargs: Any) -> VectorStoreQueryResult:
        """The best nodes for the query, filters applied inside the search (in every leg).

        Modes (``vector_store_query_mode`` of a retriever):

        - DEFAULT: the ``similarity_top_k`` nodes closest to ``query_embedding`` (or to
          ``query_str``, embedded by the store's model); scores are cosine similarities.
        - MMR: maximal marginal relevance (``mmr_threshold`` from the query or kwargs, 0.5 by
          default, with LlamaIndex's own ``get_top_k_mmr_embeddings`` over ``mmr_prefetch_k``
          candidates, else ``mmr_prefetch_factor`` (default 4) times ``similarity_top_k``, as in
          LlamaIndex's Chroma and Milvus stores); scores stay cosine similarities.
        - HYBRID: the vectors and BM25 over the stored texts, fused; ``alpha`` weighs the dense
          leg as in LlamaIndex (1 = vectors only, 0 = BM25 only; None: m2v-search's measured
          default, 0.4). Returns ``hybrid_top_k`` (or ``similarity_top_k``) nodes; each leg
          fetches at least 100 candidates, and at least ``similarity_top_k`` (dense) and
          ``sparse_top_k`` (BM25). Scores are fused scores in [0, 1]. ``fusion`` in kwargs
          (``vector_store_kwargs={"fusion": "rrf"}``): ``relative`` (default), ``dbsf`` or ``rrf``.
          Uses ``query_embedding`` for the dense leg when LlamaIndex computed it.
        - TEXT_SEARCH and SPARSE: BM25 over the stored texts only (needs no embedding);
          ``sparse_top_k`` (or ``similarity_top_k``) nodes, scored by BM25.

        Raises:
            ValueError: an unsupported mode, a query without what its mode needs, bad ``alpha``
                or ``fusion``, or a malformed filter. ``NoLexicalPartError`` (a ValueError) for
                HYBRID or TEXT_SEARCH on an index saved without a lexical part.
        """
        mode = VectorStoreQueryMode(query.mode)
        if mode not in SUPPORTED_MODES:
            names = ", ".join(m.name for m in SUPPORTED_MODES)
            raise ValueError(f"M2VVectorStore supports the {names} query modes, not {mode.value!r}")
        restrict = self._node_restriction(query.node_ids)
        where = all_of(metadata_filters_to_dict(query.filters),
                       {"ref_doc_id": {"$in": [str(i) for i in query.doc_ids]}} if query.doc_ids else None,
                       {NODE_ID_KEY: {"$in": restrict}} if restrict else None)
        if mode in LEXICAL_MODES or mode == VectorStoreQueryMode.HYBRID:
            hits = self._text_query(query, mode, where, kwargs.get("fusion", "relative"))
        else:
            hits = self._vector_query(query, mode, where, kwargs)
        nodes = [metadata_dict_to_node(hit.metadata, text=hit.text) for hit in hits]
        return VectorStoreQueryResult(nodes=nodes, similarities=[float(hit.score) for hit in hits],
                                      ids=[hit.id for hit in hits])

    def _node_restriction(self, node_ids: Optional[List[str]]) -> Optional[List[str]]:
        """The node ids a query is restricted to, or None for no restriction.

        ``VectorStoreIndex.as_retriever`` passes ``node_ids`` = the ids its index struct lists. For a
        store that keeps the text, those are only its IndexNodes and ImageNodes (none: an empty list;
        deleted ones may stay listed), so that list is no restriction, as the whole list is none for
        LlamaIndex's own stores: a restriction to it would hide every text node once one IndexNode is
        added. So ids naming exactly the stored IndexNodes/ImageNodes (ids no longer stored aside) are
        no restriction; any other list restricts.
        """
        if not node_ids:
            return None
        asked = list(dict.fromkeys(str(i) for i in node_ids))
        struct_only = set(self._binding.ids({"_node_type": {"$in": sorted(STRUCT_ONLY_TYPES)}}))
        stored = set(self._binding.ids({NODE_ID_KEY: {"$in": asked}}))
        if stored == struct_only:
            return None
        return asked

    def _text_query(self, query: VectorStoreQuery, mode: VectorStoreQueryMode, where: Optional[dict],
                    fusion: str) -> List[Any]:
        """Hits of a HYBRID, TEXT_SEARCH or SPARSE query (see :meth:`query`)."""
        if not query.query_str:
            raise ValueError(f"the {mode.value!r} query mode needs query_str (the text to match)")
        dense_k, sparse_k = int(query.similarity_top_k), query.sparse_top_k
        if mode in LEXICAL_MODES:
            return self._binding.search(query.query_str, int(sparse_k or dense_k), filter=where, mode="lexical")
        wanted = int(query.hybrid_top_k or dense_k)
        depth = max(wanted, dense_k, int(sparse_k or 0))  # the index's legs fetch at least this many
        hits = self._binding.search(query.query_str, depth, filter=where, mode="hybrid", alpha=query.alpha,
                                    fusion=fusion, query_vector=query.query_embedding)
        return hits[:wanted]

    def _vector_query(self, query: VectorStoreQuery, mode: VectorStoreQueryMode, where: Optional[dict],
                      kwargs: dict) -> List[Any]:
        """Hits of a DEFAULT or MMR query (see :meth:`query`)."""
        k = int(query.similarity_top_k)
        target: Union[str, List[float], None] = query.query_embedding
        if target is None:
            target = query.query_str
            if target is None:
                raise ValueError("the query has neither query_embedding nor query_str")
            if not self._binding.embeds_text:
                raise ValueError("this store holds external vectors and cannot embed query_str; pass "
                                 "query_embedding")
        if mode != VectorStoreQueryMode.MMR:
            return self._binding.search(target, k, filter=where)
        threshold = kwargs.get("mmr_threshold", query.mmr_threshold)
        if threshold is not None and not 0.0 <= float(threshold) <= 1.0:
            raise ValueError(f"mmr_threshold must be in [0, 1], got {threshold}")

        def select(vector: np.ndarray, candidates: np.ndarray, count: int) -> List[int]:
            _, chosen = get_top_k_mmr_embeddings(vector.tolist(), candidates.tolist(),
                                                 similarity_top_k=count, mmr_threshold=threshold)
            return chosen

        return self._binding.search_mmr(target, k, max(_mmr_prefetch(k, kwargs), k), select, filter=where)

    # ------------------------------------------------------------------ async: the same, off the event loop
    async def async_add(self, nodes: Sequence[BaseNode], **kwargs: Any) -> List[str]:
        return await asyncio.to_thread(self.add, nodes, **kwargs)

    async def adelete(self, ref_doc_id: str, **delete_kwargs: Any) -> None:
        await asyncio.to_thread(self.delete, ref_doc_id, **delete_kwargs)

    async def adelete_nodes(self, node_ids: Optional[List[str]] = None,
                            filters: Optional[MetadataFilters] = None, **delete_kwargs: Any) -> None:
        await asyncio.to_thread(self.delete_nodes, node_ids, filters, **delete_kwargs)

    async def aget_nodes(self, node_ids: Optional[List[str]] = None,
                         filters: Optional[MetadataFilters] = None) -> List[BaseNode]:
        return await asyncio.to_thread(self.get_nodes, node_ids, filters)

    async def aclear(self) -> None:
        await asyncio.to_thread(self.clear)

    async def aquery(self, query: VectorStoreQuery, **kwargs: Any) -> VectorStoreQueryResult:
        return await asyncio.to_thread(self.query, query, **kwargs)

    # ------------------------------------------------------------------ persistence
    def persist(self, persist_path: str, fs: Optional[fsspec.AbstractFileSystem] = None) -> None:
        """Save the index as a directory at ``persist_path`` (FAISS + SQLite + checksummed manifest; no
        pickle): atomically on a local path, data files first and the manifest last on another ``fs``."""
        self._binding.save(persist_path, fs)

    @classmethod
    def from_persist_path(cls, persist_path: str, fs: Optional[fsspec.AbstractFileSystem] = None, *,
                          model: Any = None, **kwargs: Any) -> M2VVectorStore:
        """Load a store saved by :meth:`persist` (checksums verified before anything is parsed).

        ``model``: None reloads the model recorded in the index (the default or a folder; none for
        an index of external vectors); give it when the index was built with an in-memory model.
        """
        binding = IndexBinding.open(persist_path, fs, model=resolve_model(model)[0],
                                    translate_filter=to_filter_dict, factory=kwargs.get("factory"),
                                    index_kind=kwargs.get("index_kind") or "auto")
        store = cls(binding.index, **kwargs)
        store._binding = binding  # keeps a copy downloaded from a remote fs alive as long as the store
        return store

    @classmethod
    def from_persist_dir(cls, persist_dir: str = DEFAULT_PERSIST_DIR,
                         fs: Optional[fsspec.AbstractFileSystem] = None, *,
                         namespace: str = DEFAULT_NAMESPACE, model: Any = None, **kwargs: Any) -> M2VVectorStore:
        """Load the store that ``StorageContext.persist(persist_dir)`` saved under ``namespace``."""
        path = f"{str(persist_dir).rstrip('/')}/{namespace}{NAMESPACE_SEP}{DEFAULT_PERSIST_FNAME}"
        return cls.from_persist_path(path, fs, model=model, **kwargs)


# node types a VectorStoreIndex lists in its index struct although the store keeps their text
STRUCT_ONLY_TYPES = frozenset({"IndexNode", "ImageNode"})


def _mmr_prefetch(k: int, kwargs: dict) -> int:
    """How many candidates MMR picks among: ``mmr_prefetch_k``, else ``k * mmr_prefetch_factor``.

    Raises:
        ValueError: ``mmr_prefetch_factor`` is not a finite positive number.
    """
    if kwargs.get("mmr_prefetch_k") is not None:
        return int(kwargs["mmr_prefetch_k"])
    factor = kwargs.get("mmr_prefetch_factor", MMR_PREFETCH_FACTOR)
    if isinstance(factor, bool) or not isinstance(factor, (int, float)) or not 0 < factor < math.inf:
        raise ValueError(f"mmr_prefetch_factor must be a positive number, got {factor!r}")
    return int(k * factor)
