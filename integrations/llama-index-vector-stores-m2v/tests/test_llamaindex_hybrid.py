"""Hybrid and text search through LlamaIndex's own retriever: VectorStoreQueryMode.HYBRID (with its
``alpha``, ``hybrid_top_k`` and ``sparse_top_k``), TEXT_SEARCH and SPARSE, against the real index."""

from __future__ import annotations

import pytest
from llama_index.core import StorageContext, VectorStoreIndex
from llama_index.core.embeddings import MockEmbedding
from llama_index.core.vector_stores.types import (
    FilterOperator,
    MetadataFilter,
    MetadataFilters,
    VectorStoreQuery,
    VectorStoreQueryMode,
)
from llama_index.vector_stores.m2v import M2VVectorStore
from m2v_search.index import NoLexicalPartError, VectorIndex
from llamaindex_testdata import CORPUS

QUERY = "yeast ferments sugar in bread dough"


@pytest.fixture
def filled(embed_model, corpus_documents):
    """A real VectorStoreIndex over the store, one node per corpus document."""
    store = M2VVectorStore(model=embed_model)
    return VectorStoreIndex.from_documents(corpus_documents, embed_model=embed_model,
                                            storage_context=StorageContext.from_defaults(vector_store=store))


def retrieve(index, query, **options):
    hits = index.as_retriever(**options).retrieve(query)
    return [hit.node.get_content() for hit in hits], [hit.score for hit in hits]


def text(position):
    return CORPUS[position][0]


def test_text_search_is_bm25_over_the_stored_texts(filled):
    texts, scores = retrieve(filled, "Photosynthesis", vector_store_query_mode="text_search", similarity_top_k=5)
    assert texts == [text(2)] and scores[0] > 0  # only the text holding the word; a BM25 score
    texts, _ = retrieve(filled, "river flows", vector_store_query_mode="text_search", similarity_top_k=5)
    assert set(texts) == {text(0), text(1)}
    texts, _ = retrieve(filled, "river flows", vector_store_query_mode="sparse", similarity_top_k=5, sparse_top_k=1)
    assert len(texts) == 1 and texts[0] in {text(0), text(1)}  # SPARSE: the same, sparse_top_k results
    assert retrieve(filled, "the and of", vector_store_query_mode="text_search")[0] == []  # stopwords only


def test_hybrid_is_the_index_hybrid_search_with_llamaindex_alpha(filled, embed_model):
    client = filled.vector_store.client
    vector = embed_model.get_query_embedding(QUERY)
    for alpha in (None, 0.0, 0.4, 0.8, 1.0):
        texts, scores = retrieve(filled, QUERY, vector_store_query_mode="hybrid", alpha=alpha, similarity_top_k=4)
        expected = client.search(QUERY, k=4, mode="hybrid", alpha=alpha, query_vector=vector)
        assert texts == [hit.text for hit in expected]
        assert scores == pytest.approx([hit.score for hit in expected]) and all(0 <= s <= 1 for s in scores)
        assert texts[0] == text(6)
    default_alpha = client.search(QUERY, k=4, mode="hybrid", alpha=0.4, query_vector=vector)
    assert retrieve(filled, QUERY, vector_store_query_mode="hybrid")[0] == [h.text for h in default_alpha][:2]
    # alpha 1 keeps the dense order, alpha 0 the BM25 order (LlamaIndex's convention)
    dense, _ = retrieve(filled, "river through a country", similarity_top_k=4)
    assert retrieve(filled, "river through a country", vector_store_query_mode="hybrid", alpha=1.0,
                    similarity_top_k=4)[0] == dense
    lexical, _ = retrieve(filled, "river flows", vector_store_query_mode="text_search", similarity_top_k=2)
    assert retrieve(filled, "river flows", vector_store_query_mode="hybrid", alpha=0.0,
                    similarity_top_k=2)[0] == lexical
    rrf = filled.as_retriever(vector_store_query_mode="hybrid", similarity_top_k=3,
                              vector_store_kwargs={"fusion": "rrf"}).retrieve(QUERY)
    expected = client.search(QUERY, k=3, mode="hybrid", fusion="rrf", query_vector=vector)
    assert [hit.node.get_content() for hit in rrf] == [hit.text for hit in expected]


def test_hybrid_top_k_and_filters_inside_both_legs(filled):
    texts, _ = retrieve(filled, QUERY, vector_store_query_mode="hybrid", similarity_top_k=2, hybrid_top_k=5)
    assert len(texts) == 5  # hybrid_top_k results; similarity_top_k is the dense leg's depth
    italian = MetadataFilters(filters=[MetadataFilter(key="country", operator=FilterOperator.EQ, value="it")])
    for mode in ("hybrid", "text_search"):
        texts, _ = retrieve(filled, "tomato sauce and violin strings", vector_store_query_mode=mode,
                            similarity_top_k=5, filters=italian)
        assert set(texts) == {text(7), text(8)}


@pytest.mark.asyncio
async def test_async_hybrid_retrieval(filled):
    hits = await filled.as_retriever(vector_store_query_mode="hybrid", alpha=0.5).aretrieve(QUERY)
    assert hits[0].node.get_content() == text(6)
    hits = await filled.as_retriever(vector_store_query_mode="text_search").aretrieve("marathon")
    assert [hit.node.get_content() for hit in hits] == [text(9)]


def test_hybrid_with_another_embed_model_uses_llamaindexs_query_vector(corpus_documents):
    embed = MockEmbedding(embed_dim=8)
    store = M2VVectorStore(dim=8)
    index = VectorStoreIndex.from_documents(corpus_documents, embed_model=embed,
                                             storage_context=StorageContext.from_defaults(vector_store=store))
    assert not store.embeds_text
    texts, _ = retrieve(index, "violin strings", vector_store_query_mode="hybrid", alpha=0.3, similarity_top_k=1)
    assert texts == [text(8)]  # the mock's vectors are all alike: BM25 decides
    assert retrieve(index, "marathon", vector_store_query_mode="text_search")[0] == [text(9)]
    with pytest.raises(ValueError, match="query_vector"):  # a query without LlamaIndex's embedding
        store.query(VectorStoreQuery(query_str="violin", mode=VectorStoreQueryMode.HYBRID))


def test_what_the_modes_refuse(filled, embed_model, embedded_nodes):
    store = filled.vector_store
    with pytest.raises(ValueError, match="alpha"):
        retrieve(filled, QUERY, vector_store_query_mode="hybrid", alpha=1.5)
    with pytest.raises(ValueError, match="fusion"):
        filled.as_retriever(vector_store_query_mode="hybrid", vector_store_kwargs={"fusion": "max"}).retrieve("x")
    with pytest.raises(ValueError, match="supports the DEFAULT, MMR, HYBRID, TEXT_SEARCH, SPARSE"):
        store.query(VectorStoreQuery(query_str="x", mode=VectorStoreQueryMode.SEMANTIC_HYBRID))
    for mode in (VectorStoreQueryMode.HYBRID, VectorStoreQueryMode.TEXT_SEARCH):
        with pytest.raises(ValueError, match="needs query_str"):
            store.query(VectorStoreQuery(query_embedding=[0.1] * embed_model.model.dim, mode=mode))
    old = M2VVectorStore(VectorIndex.create(model=embed_model.model, lexical=False))
    old.add(embedded_nodes)
    with pytest.raises(NoLexicalPartError, match="reindex --lexical"):
        old.query(VectorStoreQuery(query_str="violin", mode=VectorStoreQueryMode.TEXT_SEARCH))
