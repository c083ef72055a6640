"""Differential tests: ``M2VVectorStore`` against LangChain's own ``InMemoryVectorStore`` given the
same embeddings object, same documents (ids, metadata) and same queries. Where a LangChain user
would expect the reference's answer, ours must give it; the differences that are deliberate are
asserted as such at the end (each with the reason)."""

from __future__ import annotations

import pytest
from lc_m2v_corpus import IDS, METADATAS, QUERIES, TEXTS
from langchain_core.documents import Document
from langchain_core.vectorstores import InMemoryVectorStore
from langchain_m2v import M2VVectorStore

QUERY_TEXTS = list(QUERIES)


def _documents() -> list[Document]:
    return [Document(page_content=text, metadata=dict(meta), id=doc_id)
            for text, meta, doc_id in zip(TEXTS, METADATAS, IDS, strict=True)]


@pytest.fixture
def pair(m2v_embeddings):
    """(ours, reference), both holding the corpus with ids doc-0..doc-11."""
    ours, reference = M2VVectorStore(m2v_embeddings), InMemoryVectorStore(m2v_embeddings)
    assert ours.add_documents(_documents()) == reference.add_documents(_documents()) == IDS
    return ours, reference


def _ids(documents: list[Document]) -> list[str]:
    return [document.id for document in documents]


@pytest.mark.parametrize("k", [1, 4, len(TEXTS), 100])
def test_similarity_search_matches_in_memory(pair, k):
    ours, reference = pair
    for query in QUERY_TEXTS:
        assert _ids(ours.similarity_search(query, k)) == _ids(reference.similarity_search(query, k))
        mine = ours.similarity_search_with_score(query, k)
        theirs = reference.similarity_search_with_score(query, k)
        assert [d for d, _ in mine] == [d for d, _ in theirs]  # ids, texts and metadata
        assert [s for _, s in mine] == pytest.approx([s for _, s in theirs], abs=1e-5)  # both cosine


def test_vector_search_matches_in_memory(pair, m2v_embeddings):
    ours, reference = pair
    for query in QUERY_TEXTS:
        vector = m2v_embeddings.embed_query(query)
        expected = _ids(reference.similarity_search_by_vector(vector, 3))
        assert _ids(ours.similarity_search_by_vector(vector, 3)) == expected


def test_filtered_search_matches_in_memory_callable(pair):
    """Our dict filter gives what the reference's equivalent callable gives."""
    ours, reference = pair
    cases = [({"topic": "cooking"}, lambda d: d.metadata["topic"] == "cooking"),
             ({"year": {"$gte": 2010}}, lambda d: d.metadata["year"] >= 2010),
             ({"country": ["fr", "it"]}, lambda d: d.metadata["country"] in ("fr", "it")),
             ({"$or": [{"topic": "music"}, {"year": {"$lt": 2000}}]},
              lambda d: d.metadata["topic"] == "music" or d.metadata["year"] < 2000)]
    for where, predicate in cases:
        for query in QUERY_TEXTS[:4]:
            assert _ids(ours.similarity_search(query, 5, filter=where)) == \
                _ids(reference.similarity_search(query, 5, filter=predicate)), where


@pytest.mark.parametrize(("k", "fetch_k", "lambda_mult"),
                         [(4, 20, 0.5), (4, 5, 0.0), (4, 12, 1.0), (3, 6, 0.25), (12, 100, 0.5),
                          (4, 3, 0.3), (5, 2, 0.5), (4, 1, 0.5)])
def test_mmr_matches_in_memory(pair, m2v_embeddings, k, fetch_k, lambda_mult):
    """Same ids as LangChain's MMR on the same vectors, also when ``fetch_k < k``: MMR picks among
    ``fetch_k`` candidates, so it returns at most ``fetch_k`` documents (as every LangChain store)."""
    ours, reference = pair
    for query in QUERY_TEXTS[:4]:
        options = {"fetch_k": fetch_k, "lambda_mult": lambda_mult}
        expected = _ids(reference.max_marginal_relevance_search(query, k, **options))
        assert _ids(ours.max_marginal_relevance_search(query, k, **options)) == expected
        vector = m2v_embeddings.embed_query(query)
        assert _ids(ours.max_marginal_relevance_search_by_vector(vector, k, **options)) == expected
    search_kwargs = {"k": k, "fetch_k": fetch_k}
    retrieved = ours.as_retriever(search_type="mmr", search_kwargs=search_kwargs).invoke(QUERY_TEXTS[0])
    assert _ids(retrieved) == _ids(reference.as_retriever(search_type="mmr", search_kwargs=search_kwargs)
                                   .invoke(QUERY_TEXTS[0]))


def test_reads_and_writes_match_in_memory(pair):
    ours, reference = pair
    asked = ["doc-3", "no-such-id", "doc-1", "doc-3"]
    assert ours.get_by_ids(asked) == reference.get_by_ids(asked)  # order asked, missing left out
    replacement = [Document(page_content="The Loire is the longest river in France.", metadata={"topic": "x"},
                            id="doc-0")]
    ours.add_documents(replacement)
    reference.add_documents(replacement)
    assert ours.get_by_ids(IDS) == reference.get_by_ids(IDS)  # upsert in place, 12 documents
    ours.delete(["doc-4", "no-such-id"])
    reference.delete(["doc-4", "no-such-id"])
    for query in QUERY_TEXTS:
        assert _ids(ours.similarity_search(query, 12)) == _ids(reference.similarity_search(query, 12))
    fresh = [Document(page_content="A text without an id about rivers.")]
    new_ids = ours.add_documents(fresh)
    assert len(new_ids) == 1 and ours.get_by_ids(new_ids)[0].page_content == fresh[0].page_content


async def test_async_matches_in_memory(m2v_embeddings):
    ours, reference = M2VVectorStore(m2v_embeddings), InMemoryVectorStore(m2v_embeddings)
    assert await ours.aadd_documents(_documents()) == await reference.aadd_documents(_documents())
    await ours.adelete(["doc-0"])
    await reference.adelete(["doc-0"])
    query = QUERY_TEXTS[0]
    assert _ids(await ours.asimilarity_search(query, 3)) == _ids(await reference.asimilarity_search(query, 3))
    assert _ids(await ours.amax_marginal_relevance_search(query, 3, fetch_k=6)) == \
        _ids(await reference.amax_marginal_relevance_search(query, 3, fetch_k=6))
    assert await ours.aget_by_ids(["doc-1", "doc-0"]) == await reference.aget_by_ids(["doc-1", "doc-0"])


def test_deliberate_differences(pair):
    """Where ours answers differently on purpose (each documented in the store's docstrings)."""
    ours, reference = pair
    query = QUERY_TEXTS[0]
    # Relevance scores: the reference has none (NotImplementedError); ours maps cosine to (c + 1) / 2.
    with pytest.raises(NotImplementedError):
        reference.similarity_search_with_relevance_scores(query, 2)
    relevance = ours.similarity_search_with_relevance_scores(query, 2)
    cosine = ours.similarity_search_with_score(query, 2)
    assert [r for _, r in relevance] == pytest.approx([(c + 1) / 2 for _, c in cosine])
    # k=0 (and negative k): a clear error, not [] (the reference) nor "all but the last" (k=-1 there).
    with pytest.raises(ValueError, match="k must be a positive integer"):
        ours.similarity_search(query, 0)
    # A callable filter (the reference's kind): a clear error, since filters run inside the search.
    with pytest.raises(TypeError, match="filter must be a dict"):
        ours.similarity_search(query, 2, filter=lambda d: True)
    # The same id twice in one call: refused (the reference keeps the last one silently).
    twice = [Document(page_content="a", id="dup"), Document(page_content="b", id="dup")]
    with pytest.raises(ValueError, match="dup"):
        ours.add_documents(twice)
    # delete(None) deletes everything, as LangChain's VectorStore.delete documents (the reference ignores it).
    reference.delete(None)
    assert len(reference.get_by_ids(IDS)) == len(IDS)
    ours.delete(None)
    assert ours.get_by_ids(IDS) == [] and len(ours) == 0
