"""``M2VVectorStore``: a LlamaIndex vector store backed by ``m2v_search.index.VectorIndex``.

Each node is one index document: the node id is the document id, the node text is the
document text, and the metadata holds the node's own metadata (filterable) plus the
serialized node (``_node_content``) and ``ref_doc_id``, so nodes come back whole. LlamaIndex's
vectors are stored as given (the index normalises them); scores are cosine similarities.
Metadata filters become the index's filter dict and run inside the FAISS search.
"""

from __future__ import annotations

import asyncio
import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Sequence, Union

import numpy as np
from llama_index.core.bridge.pydantic import Field, PrivateAttr
from llama_index.core.schema import BaseNode, MetadataMode
from llama_index.core.vector_stores.types import (
    DEFAULT_PERSIST_DIR,
    DEFAULT_PERSIST_FNAME,
    BasePydanticVectorStore,
    FilterCondition,
    FilterOperator,
    MetadataFilter,
    MetadataFilters,
    VectorStoreQuery,
    VectorStoreQueryMode,
    VectorStoreQueryResult,
)
from llama_index.core.vector_stores.utils import metadata_dict_to_node, node_to_metadata_dict

if TYPE_CHECKING:  # pragma: no cover
    import fsspec

    from m2v_search import StaticModel
    from m2v_search.index import Hit, VectorIndex

logger = logging.getLogger(__name__)

NAMESPACE_SEP = "__"
DEFAULT_NAMESPACE = "default"
NODE_ID_KEY = "_node_id"
DEFAULT_MMR_THRESHOLD = 0.5
MMR_PREFETCH_FACTOR = 4

_OPERATORS = {
    FilterOperator.EQ: "$eq",
    FilterOperator.NE: "$ne",
    FilterOperator.GT: "$gt",
    FilterOperator.GTE: "$gte",
    FilterOperator.LT: "$lt",
    FilterOperator.LTE: "$lte",
    FilterOperator.IN: "$in",
    FilterOperator.NIN: "$nin",
}


# ---------------------------------------------------------------------- filters
def metadata_filters_to_dict(filters: Optional[MetadataFilters]) -> Optional[Dict[str, Any]]:
    """Translate LlamaIndex ``MetadataFilters`` into an ``m2v_search.index`` filter dict.

    Supported: EQ, NE, GT, GTE, LT, LTE, IN, NIN, combined with AND (nested AND groups are
    flattened). OR, NOT and the other operators raise ``ValueError`` naming them.
    """
    if filters is None or not filters.filters:
        return None
    result: Dict[str, Dict[str, Any]] = {}
    _collect(filters, result, "filters")
    return dict(result)


def _collect(filters: MetadataFilters, into: Dict[str, Dict[str, Any]], where: str) -> None:
    condition = filters.condition or FilterCondition.AND
    if condition != FilterCondition.AND and len(filters.filters) > 1:
        raise ValueError(f"M2VVectorStore supports only AND-combined metadata filters; {where} uses "
                         f"condition {condition.value!r}")
    if condition == FilterCondition.NOT:
        raise ValueError(f"M2VVectorStore does not support the NOT filter condition ({where})")
    for position, item in enumerate(filters.filters):
        here = f"{where}[{position}]"
        if isinstance(item, MetadataFilters):
            _collect(item, into, here)
            continue
        if not isinstance(item, MetadataFilter):
            raise TypeError(f"{here} is {type(item).__name__}; expected a MetadataFilter or MetadataFilters")
        operator = FilterOperator(item.operator)
        op = _OPERATORS.get(operator)
        if op is None:
            supported = ", ".join(o.name for o in _OPERATORS)
            raise ValueError(f"M2VVectorStore does not support filter operator {operator.name} "
                             f"({operator.value!r}) on key {item.key!r} ({here}); supported: {supported}")
        value = item.value
        if op in ("$in", "$nin"):
            if not isinstance(value, list):
                raise ValueError(f"{operator.name} filter on key {item.key!r} ({here}) needs a list, "
                                 f"got {type(value).__name__}")
        elif isinstance(value, list):
            raise ValueError(f"{operator.name} filter on key {item.key!r} ({here}) needs a single value, "
                             "got a list (use IN)")
        _merge(into, item.key, op, value, here)


def _merge(into: Dict[str, Dict[str, Any]], key: str, op: str, value: Any, where: str) -> None:
    conditions = into.setdefault(key, {})
    if op in conditions and conditions[op] != value:
        raise ValueError(f"two {op} conditions on key {key!r} ({where}) cannot both be applied in one "
                         "filter; combine them into one condition")
    conditions[op] = value


# ---------------------------------------------------------------------- the store
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
    with checksums, written atomically; no pickle) and load with :meth:`from_persist_path` or
    :meth:`from_persist_dir`.
    """

    stores_text: bool = True
    is_embedding_query: bool = True
    flat_metadata: bool = Field(default=False, description="Require flat metadata on nodes.")
    index_kind: str = Field(default="auto", description="FAISS index kind of a new index.")
    factory: Optional[str] = Field(default=None, description="FAISS factory string of a new index.")

    _index: Optional[VectorIndex] = PrivateAttr(default=None)
    _model: Any = PrivateAttr(default=None)
    _model_given: bool = PrivateAttr(default=False)
    _dim: Optional[int] = PrivateAttr(default=None)

    def __init__(
        self,
        index: Optional[VectorIndex] = None,
        *,
        model: Union[StaticModel, str, os.PathLike, Any, None] = None,
        dim: Optional[int] = None,
        index_kind: str = "auto",
        factory: Optional[str] = None,
        flat_metadata: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(index_kind=index_kind, factory=factory, flat_metadata=flat_metadata, **kwargs)
        if index is not None:
            from m2v_search.index import VectorIndex

            if not isinstance(index, VectorIndex):
                raise TypeError(f"index must be an m2v_search.index.VectorIndex, got {type(index).__name__}")
            if model is not None or dim is not None:
                raise ValueError("pass either index= or model=/dim=, not both")
        if dim is not None and model is not None:
            raise ValueError("pass either model= (an m2v model) or dim= (external vectors), not both")
        if dim is not None and (not isinstance(dim, int) or isinstance(dim, bool) or dim < 1):
            raise ValueError(f"dim must be a positive integer, got {dim!r}")
        self._index = index
        self._model = _as_model(model)
        self._model_given = model is not None or index is not None
        self._dim = dim

    @classmethod
    def class_name(cls) -> str:
        return "M2VVectorStore"

    @property
    def client(self) -> Optional[VectorIndex]:
        """The underlying ``m2v_search.index.VectorIndex`` (None until the first write)."""
        return self._index

    @property
    def index(self) -> VectorIndex:
        """The underlying ``VectorIndex``, created now when it does not exist yet."""
        return self._ensure_index(None)

    @property
    def embeds_text(self) -> bool:
        """Whether the index has an m2v model that can embed nodes and queries given as text."""
        index = self._index
        if index is not None:
            return not index.external_vectors
        return self._dim is None

    # ------------------------------------------------------------------ index creation
    def _ensure_index(self, dim: Optional[int]) -> VectorIndex:
        """The index, created on first use; ``dim``: size of the vectors about to be stored."""
        from m2v_search.index import VectorIndex

        if self._index is not None:
            if dim is not None and dim != self._index.dim:
                if len(self._index) == 0 and not self._model_given and not self._index.external_vectors \
                        and self._dim is None and self._index.path is None:
                    self._index = None  # an empty default index: make one of the right size instead
                else:
                    held = "external" if self._index.model is None else f"model {self._index.model.name!r}"
                    raise ValueError(
                        f"this store holds {self._index.dim}-dimensional vectors ({held}) but was given "
                        f"{dim}-dimensional embeddings; use the same embed model as the store, or a new store")
        if self._index is None:
            options: Dict[str, Any] = {"index": self.index_kind, "factory": self.factory}
            if self._dim is not None:
                index = VectorIndex.create(None, dim=self._dim, **options)  # vectors from elsewhere
            else:
                index = VectorIndex.create(None, self._model, **options)  # model None: the bundled default
            if dim is not None and dim != index.dim:
                if self._model_given or self._dim is not None:
                    held = (f"the store's model {index.model.name!r} gives {index.dim}-dimensional vectors"
                            if index.model is not None else
                            f"the store was made for {index.dim}-dimensional vectors (dim={index.dim})")
                    raise ValueError(
                        f"{held} but was given {dim}-dimensional embeddings; "
                        "use the same model for the store and the embed model (or dim= for embeddings from "
                        "elsewhere)")
                logger.info("embeddings have %d dimensions, the default m2v model %d: storing them as "
                            "external vectors", dim, index.dim)
                self._dim = dim
                index = VectorIndex.create(None, dim=dim, **options)
            self._index = index
        return self._index

    # ------------------------------------------------------------------ writes
    def add(self, nodes: Sequence[BaseNode], **add_kwargs: Any) -> List[str]:
        """Store nodes (with their embeddings when LlamaIndex computed them); returns their ids."""
        nodes = list(nodes)
        if not nodes:
            return []
        embeddings = [node.embedding for node in nodes]
        sizes = {len(e) for e in embeddings if e is not None}
        if len(sizes) > 1:
            raise ValueError(f"nodes carry embeddings of different sizes: {sorted(sizes)}")
        index = self._ensure_index(sizes.pop() if sizes else None)
        ids, texts, metadatas = [], [], []
        for position, node in enumerate(nodes):
            try:
                metadata = node_to_metadata_dict(node, remove_text=True, flat_metadata=self.flat_metadata)
            except ValueError as error:
                raise ValueError(f"nodes[{position}] (id {node.node_id!r}): {error}") from None
            metadata[NODE_ID_KEY] = node.node_id
            ids.append(node.node_id)
            texts.append(node.get_content(metadata_mode=MetadataMode.NONE))
            metadatas.append(metadata)
        vectors = self._vectors_for(index, nodes, embeddings)
        return index.add_texts(texts, ids=ids, metadatas=metadatas, vectors=vectors)

    def _vectors_for(self, index: VectorIndex, nodes: List[BaseNode],
                     embeddings: List[Optional[List[float]]]) -> np.ndarray:
        """The nodes' own embeddings; nodes without one are embedded here, as LlamaIndex would
        (their EMBED-mode content), by the index's m2v model."""
        missing = [i for i, e in enumerate(embeddings) if e is None]
        if missing and index.external_vectors:
            raise ValueError(f"node {nodes[missing[0]].node_id!r} has no embedding, and this store holds "
                             "external vectors so it cannot embed text itself; embed the nodes first")
        vectors = np.zeros((len(nodes), index.dim), dtype=np.float32)
        present = [i for i, e in enumerate(embeddings) if e is not None]
        if present:
            vectors[present] = np.asarray([embeddings[i] for i in present], dtype=np.float32)
        if missing:
            texts = [nodes[i].get_content(metadata_mode=MetadataMode.EMBED) for i in missing]
            vectors[missing] = index.model.encode(texts, normalize=True)
        return vectors

    def delete(self, ref_doc_id: str, **delete_kwargs: Any) -> None:
        """Delete every node of the document ``ref_doc_id``."""
        if self._index is None:
            return
        ids = self._matching_ids({"ref_doc_id": str(ref_doc_id)})
        if ids:
            self._index.delete(ids)

    def delete_nodes(self, node_ids: Optional[List[str]] = None, filters: Optional[MetadataFilters] = None,
                     **delete_kwargs: Any) -> None:
        """Delete the nodes among ``node_ids`` that match ``filters`` (at least one of them is needed)."""
        if node_ids is None and (filters is None or not filters.filters):
            raise ValueError("delete_nodes needs node_ids or filters; use clear() to delete everything")
        if self._index is None:
            return
        ids = self._select_ids(node_ids, filters)
        if ids:
            self._index.delete(ids)

    def clear(self) -> None:
        """Delete every node (the index keeps its model and kind)."""
        if self._index is not None:
            self._index.clear()

    # ------------------------------------------------------------------ reads
    def get_nodes(self, node_ids: Optional[List[str]] = None,
                  filters: Optional[MetadataFilters] = None) -> List[BaseNode]:
        """Nodes by id and/or metadata filters (all nodes when both are None)."""
        if self._index is None:
            return []
        if node_ids is None and (filters is None or not filters.filters):
            return [_to_node(record.text, record.metadata) for record in self._index.iter_records()]
        ids = self._select_ids(node_ids, filters)
        return [_to_node(record.text, record.metadata) for record in self._index.get(ids)]

    def _select_ids(self, node_ids: Optional[List[str]], filters: Optional[MetadataFilters]) -> List[str]:
        """Ids among ``node_ids`` (None: all) matching ``filters``, in the order of ``node_ids``."""
        where = metadata_filters_to_dict(filters)
        if where is None:
            return [str(i) for i in node_ids or []]
        if node_ids is not None:
            _add_condition(where, NODE_ID_KEY, "$in", [str(i) for i in node_ids])
        matched = self._matching_ids(where)
        if node_ids is None:
            return matched
        found = set(matched)
        return [str(i) for i in node_ids if str(i) in found]

    def _matching_ids(self, where: Dict[str, Any]) -> List[str]:
        """Every document id matching an index filter dict (an exact filtered search, k = all)."""
        index = self._index
        if index is None or len(index) == 0:
            return []
        return index.ids(where)

    def query(self, query: VectorStoreQuery, **kwargs: Any) -> VectorStoreQueryResult:
        """The ``similarity_top_k`` nodes closest to the query, filters applied inside the search.

        Modes: DEFAULT, and MMR (``mmr_threshold`` from the query or kwargs; 0.5 by default).
        """
        mode = VectorStoreQueryMode(query.mode)
        if mode not in (VectorStoreQueryMode.DEFAULT, VectorStoreQueryMode.MMR):
            raise ValueError(f"M2VVectorStore supports the DEFAULT and MMR query modes, not {mode.value!r}")
        k = int(query.similarity_top_k)
        if k < 1:
            raise ValueError(f"similarity_top_k must be >= 1, got {query.similarity_top_k!r}")
        empty = VectorStoreQueryResult(nodes=[], similarities=[], ids=[])
        if query.query_embedding is not None:
            vector = np.asarray(query.query_embedding, dtype=np.float32)
            if vector.ndim != 1:
                raise ValueError(f"query_embedding must be a flat list of floats, got shape {vector.shape}")
            if self._index is None and not self._model_given:
                return empty  # nothing stored yet, and no index size to check against
            index = self._ensure_index(len(vector))
            target: Union[str, np.ndarray] = vector
        elif query.query_str is not None:
            index = self._ensure_index(None)
            if index.external_vectors:
                raise ValueError("this store holds external vectors and cannot embed query_str; pass "
                                 "query_embedding")
            target = query.query_str
        else:
            raise ValueError("the query has neither query_embedding nor query_str")
        if len(index) == 0:
            return empty
        where = metadata_filters_to_dict(query.filters) or {}
        # LlamaIndex's retriever passes node_ids=[] (not None) for stores that keep the text: an
        # empty list means no restriction, as in LlamaIndex's own stores.
        if query.doc_ids:
            _add_condition(where, "ref_doc_id", "$in", [str(i) for i in query.doc_ids])
        if query.node_ids:
            _add_condition(where, NODE_ID_KEY, "$in", [str(i) for i in query.node_ids])
        if mode == VectorStoreQueryMode.MMR:
            threshold = kwargs.get("mmr_threshold", query.mmr_threshold)
            threshold = DEFAULT_MMR_THRESHOLD if threshold is None else float(threshold)
            if not 0.0 <= threshold <= 1.0:
                raise ValueError(f"mmr_threshold must be in [0, 1], got {threshold}")
            prefetch = int(kwargs.get("mmr_prefetch_k", k * MMR_PREFETCH_FACTOR))
            hits = index.search(target, k=max(prefetch, k), filter=where or None, include_vectors=True)
            hits = _mmr(hits, k, threshold)
        else:
            hits = index.search(target, k=k, filter=where or None)
        return VectorStoreQueryResult(
            nodes=[_to_node(hit.text, hit.metadata) for hit in hits],
            similarities=[float(hit.score) for hit in hits],
            ids=[hit.id for hit in hits],
        )

    # ------------------------------------------------------------------ async
    async def async_add(self, nodes: Sequence[BaseNode], **kwargs: Any) -> List[str]:
        return await asyncio.to_thread(self.add, nodes, **kwargs)

    async def adelete(self, ref_doc_id: str, **delete_kwargs: Any) -> None:
        await asyncio.to_thread(self.delete, ref_doc_id, **delete_kwargs)

    async def adelete_nodes(self, node_ids: Optional[List[str]] = None,
                            filters: Optional[MetadataFilters] = None,
                            **delete_kwargs: Any) -> None:
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
        """Save the index as a directory at ``persist_path`` (atomic; FAISS + SQLite + manifest)."""
        _require_local(fs)
        self._ensure_index(None).save(Path(persist_path))

    @classmethod
    def from_persist_path(cls, persist_path: str, fs: Optional[fsspec.AbstractFileSystem] = None, *,
                          model: Union[StaticModel, str, os.PathLike, Any, None] = None,
                          **kwargs: Any) -> M2VVectorStore:
        """Load a store saved by :meth:`persist` (checksums verified before anything is read).

        ``model``: None reloads the model recorded in the index (the default or a folder;
        none for an index of external vectors); give it when the index was built with an in-memory model.
        """
        from m2v_search.index import VectorIndex

        _require_local(fs)
        path = Path(persist_path)
        index = VectorIndex.open(path, model=_as_model(model))
        return cls(index, **kwargs)

    @classmethod
    def from_persist_dir(cls, persist_dir: str = DEFAULT_PERSIST_DIR,
                         fs: Optional[fsspec.AbstractFileSystem] = None, *,
                         namespace: str = DEFAULT_NAMESPACE, model: Any = None,
                         **kwargs: Any) -> M2VVectorStore:
        """Load the store that ``StorageContext.persist(persist_dir)`` saved under ``namespace``."""
        path = Path(persist_dir) / f"{namespace}{NAMESPACE_SEP}{DEFAULT_PERSIST_FNAME}"
        return cls.from_persist_path(str(path), fs, model=model, **kwargs)


# ---------------------------------------------------------------------- helpers
def _to_node(text: str, metadata: Dict[str, Any]) -> BaseNode:
    return metadata_dict_to_node(metadata, text=text)


def _add_condition(where: Dict[str, Any], key: str, op: str, value: Any) -> None:
    existing = where.get(key)
    if existing is None:
        where[key] = {op: value}
        return
    if not isinstance(existing, dict):
        existing = {"$in": existing} if isinstance(existing, list) else {"$eq": existing}
        where[key] = existing
    if op == "$in" and "$in" in existing:  # both restrict membership: keep the intersection
        allowed = set(value)
        existing["$in"] = [v for v in existing["$in"] if v in allowed]
    elif op in existing and existing[op] != value:
        raise ValueError(f"conflicting {op} conditions on key {key!r}")
    else:
        existing[op] = value


def _mmr(hits: List[Hit], k: int, threshold: float) -> List[Hit]:
    """Maximal marginal relevance over the candidates: ``threshold`` weighs relevance (1) against
    novelty (0). Scores stay the cosine similarities to the query."""
    if len(hits) <= 1:
        return hits[:k]
    vectors = np.stack([np.asarray(hit.vector, dtype=np.float32) for hit in hits])
    relevance = np.asarray([hit.score for hit in hits], dtype=np.float32)
    similarity = vectors @ vectors.T
    chosen: List[int] = [int(np.argmax(relevance))]
    redundancy = similarity[chosen[0]].copy()
    available = np.ones(len(hits), dtype=bool)
    available[chosen[0]] = False
    while len(chosen) < min(k, len(hits)):
        scores = threshold * relevance - (1.0 - threshold) * redundancy
        scores[~available] = -np.inf
        pick = int(np.argmax(scores))
        chosen.append(pick)
        available[pick] = False
        np.maximum(redundancy, similarity[pick], out=redundancy)
    return [hits[i] for i in chosen]


def _as_model(model: Any) -> Any:
    """A StaticModel, a name/folder (kept as is), or None; an M2VEmbedding gives its model."""
    if model is None or isinstance(model, (str, os.PathLike)):
        return model
    from m2v_search import StaticModel

    if isinstance(model, StaticModel):
        return model
    inner = getattr(model, "model", None)
    if isinstance(inner, StaticModel):  # e.g. llama_index.embeddings.m2v.M2VEmbedding
        return inner
    raise TypeError(f"model must be a StaticModel, a model name or folder, or an M2VEmbedding; "
                    f"got {type(model).__name__}")


def _require_local(fs: Any) -> None:
    if fs is None:
        return
    protocol = getattr(fs, "protocol", "file")
    protocols = (protocol,) if isinstance(protocol, str) else tuple(protocol)
    if not {"file", "local"} & set(protocols):
        raise ValueError(f"M2VVectorStore persists to the local filesystem only, got fs protocol "
                         f"{protocol!r}")
