"""Differential tests: ``M2VVectorStore`` against LlamaIndex's own ``SimpleVectorStore`` holding the
same nodes with the same embeddings (from ``M2VEmbedding``): the same queries must give the same
nodes, in the same order, with the same cosine similarities. The deliberate differences are
asserted as such at the end, each with its reason."""

from __future__ import annotations

import pytest
from llama_index.core.vector_stores import SimpleVectorStore
from llama_index.core.vector_stores.types import (
    FilterCondition,
    FilterOperator,
    MetadataFilter,
    MetadataFilters,
    VectorStoreQuery,
    VectorStoreQueryMode,
)
from llama_index.vector_stores.m2v import M2VVectorStore
from llamaindex_testdata import QUERIES

QUERY_TEXTS = list(QUERIES)
TAGS = [["water", "europe"], ["water"], ["life"], ["life", "energy"], ["code"], ["code"], ["food", "life"],
        ["food"], ["music"], ["sport"]]


@pytest.fixture
def pair(embed_model, embedded_nodes):
    """(ours, reference) holding the same ten nodes (node-i of doc-i, with a ``tags`` list)."""
    for node, tags in zip(embedded_nodes, TAGS, strict=True):
        node.metadata["tags"] = list(tags)
    ours, reference = M2VVectorStore(model=embed_model), SimpleVectorStore()
    assert ours.add(embedded_nodes) == reference.add(embedded_nodes)
    return ours, reference


QUERY_KWARGS = ("mmr_threshold", "mmr_prefetch_factor", "mmr_prefetch_k")


def _answers(store, embed_model, query_text: str, **fields):
    """(ids, similarities) of one query; the ``QUERY_KWARGS`` in ``fields`` go in as query kwargs,
    where SimpleVectorStore reads mmr_threshold (and ignores the others)."""
    kwargs = {name: fields.pop(name) for name in QUERY_KWARGS if name in fields}
    query = VectorStoreQuery(query_embedding=embed_model.get_query_embedding(query_text), **fields)
    result = store.query(query, **kwargs)
    return list(result.ids), [float(s) for s in result.similarities]


def _assert_same(pair, embed_model, scores: bool = True, **fields) -> None:
    ours, reference = pair
    for text in QUERY_TEXTS:
        mine = _answers(ours, embed_model, text, **dict(fields))
        theirs = _answers(reference, embed_model, text, **dict(fields))
        assert mine[0] == theirs[0], (text, fields)
        if scores:
            assert mine[1] == pytest.approx(theirs[1], abs=1e-5)


@pytest.mark.parametrize("top_k", [1, 3, 10, 100])
def test_default_query_matches_simple_vector_store(pair, embed_model, top_k):
    _assert_same(pair, embed_model, similarity_top_k=top_k)


FLAT_FILTERS = [
    (FilterOperator.EQ, "topic", "cooking"), (FilterOperator.NE, "country", "fr"),
    (FilterOperator.GT, "year", 2005), (FilterOperator.GTE, "rating", 4.5), (FilterOperator.LT, "year", 2005),
    (FilterOperator.LTE, "rating", 4.0), (FilterOperator.IN, "country", ["fr", "it"]),
    (FilterOperator.NIN, "topic", ["cooking", "biology"]), (FilterOperator.CONTAINS, "tags", "life"),
    (FilterOperator.TEXT_MATCH, "topic", "comp"), (FilterOperator.TEXT_MATCH_INSENSITIVE, "topic", "COOK"),
    (FilterOperator.ANY, "tags", ["food", "code"]), (FilterOperator.ALL, "tags", ["life", "food"]),
    (FilterOperator.NE, "missing", "x"), (FilterOperator.EQ, "missing", "x"),
    # empty lists: ANY of none matches no node, ALL of none every node holding the key (refused before)
    (FilterOperator.ANY, "tags", []), (FilterOperator.ALL, "tags", []), (FilterOperator.ALL, "missing", []),
]


@pytest.mark.parametrize(("operator", "key", "value"), FLAT_FILTERS, ids=[f[0].name for f in FLAT_FILTERS])
def test_each_filter_operator_matches_simple_vector_store(pair, embed_model, operator, key, value):
    filters = MetadataFilters(filters=[MetadataFilter(key=key, value=value, operator=operator)])
    _assert_same(pair, embed_model, similarity_top_k=10, filters=filters)


@pytest.mark.parametrize("condition", [FilterCondition.AND, FilterCondition.OR, FilterCondition.NOT])
def test_filter_conditions_match_simple_vector_store(pair, embed_model, condition):
    filters = MetadataFilters(filters=[MetadataFilter(key="topic", value="cooking"),
                                       MetadataFilter(key="country", value="fr")], condition=condition)
    _assert_same(pair, embed_model, similarity_top_k=10, filters=filters)


def test_node_ids_restriction_matches_simple_vector_store(pair, embed_model):
    _assert_same(pair, embed_model, similarity_top_k=10, node_ids=["node-1", "node-7", "no-such-node"])


@pytest.mark.parametrize("threshold", [None, 0.1, 0.3, 0.5, 0.9, 1.0])
def test_mmr_picks_the_nodes_simple_vector_store_picks(pair, embed_model, threshold):
    """Same nodes, same order (the similarities differ on purpose: see the last test). SimpleVectorStore
    runs MMR over every node, ours over ``mmr_prefetch_k`` (4 * top_k = 16) candidates: all ten here."""
    fields = {} if threshold is None else {"mmr_threshold": threshold}
    _assert_same(pair, embed_model, scores=False, similarity_top_k=4, mode=VectorStoreQueryMode.MMR, **fields)


@pytest.mark.parametrize("threshold", [0.1, 0.3, 0.5, 0.7])
@pytest.mark.parametrize("prefetch", [{"mmr_prefetch_factor": 5}, {"mmr_prefetch_factor": 5.0},
                                      {"mmr_prefetch_k": 10}])
def test_mmr_over_every_node_when_the_prefetch_covers_them(pair, embed_model, threshold, prefetch):
    """With ``mmr_prefetch_factor`` (LlamaIndex's name in its Chroma, Milvus, Cassandra... stores) or
    ``mmr_prefetch_k`` covering all ten nodes, MMR sees what SimpleVectorStore's sees: every node."""
    _assert_same(pair, embed_model, scores=False, similarity_top_k=2, mode=VectorStoreQueryMode.MMR,
                 mmr_threshold=threshold, **prefetch)


@pytest.mark.parametrize("factor", [0, -1, float("nan"), float("inf"), "4", True])
def test_a_bad_mmr_prefetch_factor_is_refused(pair, embed_model, factor):
    vector = embed_model.get_query_embedding(QUERY_TEXTS[0])
    query = VectorStoreQuery(query_embedding=vector, similarity_top_k=2, mode=VectorStoreQueryMode.MMR)
    with pytest.raises(ValueError, match="mmr_prefetch_factor must be a positive number"):
        pair[0].query(query, mmr_prefetch_factor=factor)


def test_deletes_and_clear_keep_matching_simple_vector_store(pair, embed_model):
    ours, reference = pair
    for store in pair:
        store.delete("doc-1")
        store.delete("no-such-doc")
        store.delete_nodes(["node-0", "no-such-node"])
        store.delete_nodes(filters=MetadataFilters(filters=[MetadataFilter(key="topic", value="music")]))
    _assert_same(pair, embed_model, similarity_top_k=10)
    ours.clear()
    reference.clear()
    _assert_same(pair, embed_model, similarity_top_k=10)


def test_persist_round_trip_matches_simple_vector_store(pair, embed_model, tmp_path):
    ours, reference = pair
    ours.persist(str(tmp_path / "ours"))
    reference.persist(str(tmp_path / "reference.json"))
    reopened = (M2VVectorStore.from_persist_path(str(tmp_path / "ours"), model=embed_model),
                SimpleVectorStore.from_persist_path(str(tmp_path / "reference.json")))
    filters = MetadataFilters(filters=[MetadataFilter(key="year", value=2000, operator=FilterOperator.GT)])
    _assert_same(reopened, embed_model, similarity_top_k=4, filters=filters)


def test_vector_store_index_retrievers_match(embed_model, corpus_documents, monkeypatch):
    """``Settings.embed_model = M2VEmbedding`` and a real ``VectorStoreIndex`` on each store."""
    from llama_index.core import Settings, StorageContext, VectorStoreIndex

    monkeypatch.setattr(Settings, "_embed_model", None)  # restored after the test
    Settings.embed_model = embed_model
    indexes = [VectorStoreIndex.from_documents(corpus_documents, storage_context=StorageContext.from_defaults(
        vector_store=store)) for store in (M2VVectorStore(model=embed_model), SimpleVectorStore())]
    filters = MetadataFilters(filters=[MetadataFilter(key="topic", value="geography")])
    retrievers = [{"similarity_top_k": 3}, {"similarity_top_k": 3, "filters": filters},
                  {"similarity_top_k": 3, "vector_store_query_mode": "mmr"},
                  {"similarity_top_k": 3, "vector_store_query_mode": "mmr",
                   "vector_store_kwargs": {"mmr_threshold": 0.2}}]
    for options in retrievers:
        for text in QUERY_TEXTS:
            ours, theirs = (index.as_retriever(**options).retrieve(text) for index in indexes)
            assert [(n.node.ref_doc_id, n.node.get_content(), n.node.metadata) for n in ours] == \
                [(n.node.ref_doc_id, n.node.get_content(), n.node.metadata) for n in theirs], options
            if "vector_store_query_mode" not in options:
                assert [n.score for n in ours] == pytest.approx([n.score for n in theirs], abs=1e-5)
    for index in indexes:
        index.delete_ref_doc("doc-0")
    ours, theirs = (index.as_retriever(similarity_top_k=3).retrieve(QUERY_TEXTS[0]) for index in indexes)
    assert [n.node.ref_doc_id for n in ours] == [n.node.ref_doc_id for n in theirs]


def test_an_index_node_does_not_hide_the_text_nodes_from_retrievers(embed_model, monkeypatch):
    """Before: ``as_retriever`` passes ``node_ids`` = the index struct's nodes, which for a store
    keeping the text are only its IndexNodes, and ours restricted the query to them: one IndexNode
    added and every text node vanished from retrieval (SimpleVectorStore returns them all)."""
    from llama_index.core import Settings, StorageContext, VectorStoreIndex
    from llama_index.core.indices.vector_store.retrievers import VectorIndexRetriever
    from llama_index.core.schema import IndexNode, TextNode

    monkeypatch.setattr(Settings, "_embed_model", None)  # restored after the test
    Settings.embed_model = embed_model
    answers = []
    for store in (M2VVectorStore(model=embed_model), SimpleVectorStore()):
        index = VectorStoreIndex([TextNode(text="Cats purr on warm mats", id_="cat"),
                                  TextNode(text="Dogs bark at night", id_="dog")],
                                 storage_context=StorageContext.from_defaults(vector_store=store))
        index.insert_nodes([IndexNode(text="summary of the bird chapter", id_="birds", index_id="bird-index")])
        for options in ({}, {"vector_store_query_mode": "mmr"}):
            answers.append(sorted(n.node.node_id for n in index.as_retriever(similarity_top_k=3, **options)
                                  .retrieve("cats purring")))
        answers.append([n.node.node_id for n in VectorIndexRetriever(index, node_ids=["dog"], similarity_top_k=3)
                        .retrieve("cats purring")])  # a restriction the caller chose still holds
        store.delete_nodes(node_ids=["birds"])  # the index struct still lists it: not a restriction to nothing
        answers.append(sorted(n.node.node_id for n in index.as_retriever(similarity_top_k=3).retrieve("cats")))
    expected = [["birds", "cat", "dog"], ["birds", "cat", "dog"], ["dog"], ["cat", "dog"]]
    assert answers[:4] == answers[4:] == expected


def test_deliberate_differences(pair, embed_model):
    """Where ours answers differently on purpose (each documented in the store's docstrings)."""
    ours, reference = pair
    vector = embed_model.get_query_embedding(QUERY_TEXTS[0])
    # doc_ids restrict the query (SimpleVectorStore ignores them and answers from every document).
    by_docs = VectorStoreQuery(query_embedding=vector, similarity_top_k=10, doc_ids=["doc-3", "doc-5"])
    assert sorted(ours.query(by_docs).ids) == ["node-3", "node-5"]
    assert len(reference.query(by_docs).ids) == 10
    # MMR similarities stay cosine similarities (SimpleVectorStore returns the MMR scores).
    mmr_query = VectorStoreQuery(query_embedding=vector, similarity_top_k=3, mode=VectorStoreQueryMode.MMR)
    mmr = ours.query(mmr_query)
    dense = dict(zip(*_answers(ours, embed_model, QUERY_TEXTS[0], similarity_top_k=10), strict=True))
    assert mmr.similarities == pytest.approx([dense[i] for i in mmr.ids], abs=1e-6)
    # mmr_threshold=0 scores every first pick 0: SimpleVectorStore takes the first node inserted, ours
    # the best match (our candidates come ranked), and the rest follows from that first pick.
    for text in QUERY_TEXTS:
        first = _answers(ours, embed_model, text, similarity_top_k=1)[0]
        assert _answers(ours, embed_model, text, similarity_top_k=4, mode=VectorStoreQueryMode.MMR,
                        mmr_threshold=0.0)[0][:1] == first
    assert _answers(reference, embed_model, QUERY_TEXTS[1], similarity_top_k=4, mode=VectorStoreQueryMode.MMR,
                    mmr_threshold=0.0)[0][0] == "node-0"
    # similarity_top_k=0: a clear error (SimpleVectorStore returns every node).
    with pytest.raises(ValueError, match="k must be a positive integer"):
        ours.query(VectorStoreQuery(query_embedding=vector, similarity_top_k=0))
    # An empty node_ids list is no restriction (SimpleVectorStore returns nothing), as in LlamaIndex's
    # other stores, which test `if query.node_ids:`.
    no_restriction = VectorStoreQuery(query_embedding=vector, similarity_top_k=3, node_ids=[])
    assert len(ours.query(no_restriction).ids) == 3
    assert reference.query(no_restriction).ids == []
    # Nested filter groups work (SimpleVectorStore refuses them).
    nested = MetadataFilters(filters=[MetadataFilters(filters=[MetadataFilter(key="topic", value="cooking"),
                                                               MetadataFilter(key="topic", value="music")],
                                                      condition=FilterCondition.OR)])
    assert {n.metadata["topic"] for n in ours.query(VectorStoreQuery(
        query_embedding=vector, similarity_top_k=10, filters=nested)).nodes} == {"cooking", "music"}
    with pytest.raises(ValueError, match="Nested"):
        reference.query(VectorStoreQuery(query_embedding=vector, similarity_top_k=10, filters=nested))
    # delete_nodes() without ids or filters is refused (clear() says it), not a silent no-op.
    with pytest.raises(ValueError, match="clear"):
        ours.delete_nodes()
