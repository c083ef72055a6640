"""Hybrid and lexical search through M2VVectorStore: per call (``mode=``, ``alpha=``, ``fusion=``),
through a retriever's ``search_kwargs``, and for every search (``search_mode=``); scores and
relevance scores of each mode; stores on other Embeddings; what each mode refuses."""

from __future__ import annotations

import pytest
from langchain_core.embeddings import DeterministicFakeEmbedding
from m2v_search.index import NoLexicalPartError, VectorIndex

from langchain_m2v import M2VVectorStore

QUERY = "Why does bread dough rise with yeast?"


def pairs(results):
    return [(doc.id, round(score, 5)) for doc, score in results]


def test_default_stays_dense_with_cosine_scores(store):
    index = store.index
    assert pairs(store.similarity_search_with_score(QUERY, k=5)) == \
        [(hit.id, round(hit.score, 5)) for hit in index.search(QUERY, k=5, mode="dense")]


def test_hybrid_per_call_is_the_index_hybrid_search(store, corpus):
    index = store.index
    for options in ({}, {"alpha": 0.8}, {"alpha": 0.1, "fusion": "rrf"}, {"fusion": "dbsf"}):
        results = store.similarity_search_with_score(QUERY, k=5, mode="hybrid", **options)
        expected = index.search(QUERY, k=5, mode="hybrid", **options)
        assert pairs(results) == [(hit.id, round(hit.score, 5)) for hit in expected]
        assert all(0.0 <= score <= 1.0 for _, score in results) and results[0][0].id == corpus.ids[3]
    docs = store.similarity_search(QUERY, k=2, mode="hybrid", alpha=0.4, filter={"country": "it"})
    assert {doc.metadata["country"] for doc in docs} == {"it"} and len(docs) == 2  # filter inside both legs


def test_lexical_is_bm25_and_needs_no_embedding(store, corpus):
    results = store.similarity_search_with_score("Gutenberg", k=5, mode="lexical")
    assert [doc.id for doc, _ in results] == [corpus.ids[11]] and results[0][1] > 0
    assert store.similarity_search("the of and", k=3, mode="lexical") == []  # only stopwords: nothing


def test_retriever_search_kwargs(store, corpus):
    retriever = store.as_retriever(search_kwargs={"k": 4, "mode": "hybrid"})
    hybrid = store.similarity_search(QUERY, k=4, mode="hybrid")
    assert [doc.id for doc in retriever.invoke(QUERY)] == [doc.id for doc in hybrid]
    keyword = store.as_retriever(search_kwargs={"k": 3, "mode": "lexical"})
    assert [doc.id for doc in keyword.invoke("violin")] == [corpus.ids[5]]
    threshold = store.as_retriever(search_type="similarity_score_threshold",
                                   search_kwargs={"k": 12, "mode": "hybrid", "score_threshold": 0.5})
    kept = threshold.invoke(QUERY)
    fused = dict(pairs(store.similarity_search_with_score(QUERY, k=12, mode="hybrid")))
    assert [doc.id for doc in kept] == [doc_id for doc_id, score in fused.items() if score >= 0.5]


def test_relevance_scores_per_mode(store):
    fused = store.similarity_search_with_score(QUERY, k=6, mode="hybrid")
    relevance = store.similarity_search_with_relevance_scores(QUERY, k=6, mode="hybrid")
    assert pairs(relevance) == pairs(fused)  # fused scores are already in [0, 1]
    dense = store.similarity_search_with_score(QUERY, k=6)
    assert pairs(store.similarity_search_with_relevance_scores(QUERY, k=6)) == \
        [(doc.id, round((score + 1) / 2, 5)) for doc, score in dense]
    with pytest.raises(ValueError, match="no upper bound"):
        store.similarity_search_with_relevance_scores("violin", k=2, mode="lexical")


async def test_async_paths_take_the_mode(store, corpus):
    docs = await store.asimilarity_search("Gutenberg", k=3, mode="lexical")
    assert [doc.id for doc in docs] == [corpus.ids[11]]
    scored = await store.asimilarity_search_with_relevance_scores(QUERY, k=3, mode="hybrid")
    assert pairs(scored) == pairs(store.similarity_search_with_score(QUERY, k=3, mode="hybrid"))
    assert [d.id for d in await store.as_retriever(search_kwargs={"mode": "hybrid"}).ainvoke(QUERY)][0] == \
        corpus.ids[3]


def test_search_mode_for_every_search(m2v_embeddings, corpus):
    store = M2VVectorStore.from_texts(corpus.texts, m2v_embeddings, metadatas=corpus.metadatas, ids=corpus.ids,
                                      search_mode="hybrid", alpha=0.7, fusion="rrf")
    expected = store.index.search(QUERY, k=4, mode="hybrid", alpha=0.7, fusion="rrf")
    assert pairs(store.similarity_search_with_score(QUERY, k=4)) == [(h.id, round(h.score, 5)) for h in expected]
    dense = store.index.search(QUERY, k=4, mode="dense")
    assert [(d.id, round(s, 5)) for d, s in store.similarity_search_with_score(QUERY, k=4, mode="dense")] == \
        [(h.id, round(h.score, 5)) for h in dense]  # a call overrides the store's mode
    assert len(store.max_marginal_relevance_search(QUERY, k=2)) == 2  # MMR stays dense
    with pytest.raises(ValueError, match="dense only"):
        store.max_marginal_relevance_search(QUERY, k=2, mode="hybrid")


def test_hybrid_with_other_embeddings_uses_their_query_vector(corpus):
    store = M2VVectorStore.from_texts(corpus.texts, DeterministicFakeEmbedding(size=16), ids=corpus.ids)
    assert store.index.model is None
    results = store.similarity_search_with_score("Gutenberg printing press", k=3, mode="hybrid", alpha=0.2)
    vector = DeterministicFakeEmbedding(size=16).embed_query("Gutenberg printing press")
    expected = store.index.search("Gutenberg printing press", k=3, mode="hybrid", alpha=0.2, query_vector=vector)
    assert pairs(results) == [(h.id, round(h.score, 5)) for h in expected] and results[0][0].id == corpus.ids[11]
    assert [d.id for d in store.similarity_search("Gutenberg", k=3, mode="lexical")] == [corpus.ids[11]]


@pytest.mark.parametrize(("options", "word"), [({"mode": "sparse"}, "search mode"), ({"alpha": 2}, "alpha"),
                                               ({"fusion": "max"}, "fusion"), ({"mode": None}, "mode must")])
def test_bad_options_are_refused_even_on_an_empty_store(m2v_embeddings, options, word):
    empty = M2VVectorStore(m2v_embeddings)
    with pytest.raises(ValueError, match=word):
        empty.similarity_search("x", k=1, **options)
    with pytest.raises(ValueError, match=word):
        M2VVectorStore(m2v_embeddings, **{"search_mode" if k == "mode" else k: v for k, v in options.items()})


def test_an_index_without_a_lexical_part_says_how_to_add_one(m2v_embeddings, corpus):
    index = VectorIndex.create(model=m2v_embeddings.client, lexical=False)
    store = M2VVectorStore(m2v_embeddings, index=index)
    store.add_texts(corpus.texts)
    with pytest.raises(NoLexicalPartError, match="reindex --lexical"):
        store.similarity_search(QUERY, k=2, mode="hybrid")
    assert len(store.similarity_search(QUERY, k=2)) == 2  # dense still works


def test_readme_hybrid_example_runs_as_written():
    import re
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    section = readme.split("### Hybrid and lexical search", 1)[1]
    namespace: dict = {}
    exec(compile(re.search(r"```python\n(.*?)```", section, re.S).group(1), "README.md", "exec"), namespace)
    assert namespace["hybrid"][0].metadata["topic"] == "cooking"
    assert all(0.0 <= score <= 1.0 for _, score in namespace["scored"])
    assert [doc.metadata["topic"] for doc in namespace["keyword"]] == ["history"]
    assert [doc.id for doc in namespace["docs"]] == [doc.id for doc in namespace["hybrid"]]
    assert namespace["hybrid_store"].search_options["mode"] == "hybrid"
