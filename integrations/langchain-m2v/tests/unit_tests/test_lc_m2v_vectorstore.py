"""M2VVectorStore behaviour on real text: retrieval, cosine scores, filters inside the search,
upserts, deletes, MMR, retrievers, persistence without pickle, other Embeddings, async."""

from __future__ import annotations

import numpy as np
import pytest
from langchain_core.documents import Document
from langchain_core.embeddings import DeterministicFakeEmbedding

from langchain_m2v import M2VEmbeddings, M2VVectorStore


def unit(vectors):
    matrix = np.atleast_2d(np.asarray(vectors, dtype=np.float64))
    return matrix / np.linalg.norm(matrix, axis=1, keepdims=True)


def test_every_query_finds_its_document(store, corpus):
    for query, expected in corpus.queries.items():
        top = store.similarity_search(query, k=1)
        assert [doc.id for doc in top] == [corpus.ids[expected]], query
        assert top[0].page_content == corpus.texts[expected]
        assert top[0].metadata == corpus.metadatas[expected]


def test_paraphrases_find_their_document_with_the_bundled_model(store, corpus, test_model_name):
    if test_model_name != "m2v-base":
        pytest.skip("the random fallback model knows no meaning; needs the bundled m2v-base")
    retriever = store.as_retriever(search_kwargs={"k": 1})
    for query, expected in corpus.paraphrases.items():
        assert [doc.id for doc in retriever.invoke(query)] == [corpus.ids[expected]], query


def test_scores_are_cosine_similarities_best_first(store, corpus, m2v_embeddings):
    query = "Why does bread dough rise with yeast?"
    results = store.similarity_search_with_score(query, k=len(corpus.texts))
    assert len(results) == len(corpus.texts)
    scores = [score for _, score in results]
    assert scores == sorted(scores, reverse=True)
    documents = unit(m2v_embeddings.embed_documents([doc.page_content for doc, _ in results]))
    expected = documents @ unit(m2v_embeddings.embed_query(query))[0]
    np.testing.assert_allclose(scores, expected, atol=1e-5)
    assert all(-1.0 - 1e-6 <= s <= 1.0 + 1e-6 for s in scores)


def test_relevance_scores_are_in_unit_interval(store, corpus):
    query = "who invented the printing press"
    raw = store.similarity_search_with_score(query, k=len(corpus.texts))
    relevance = store.similarity_search_with_relevance_scores(query, k=len(corpus.texts))
    assert [d.id for d, _ in raw] == [d.id for d, _ in relevance]
    for (_, cosine), (_, rel) in zip(raw, relevance):
        assert 0.0 <= rel <= 1.0
        assert rel == pytest.approx((cosine + 1) / 2, abs=1e-6)


def test_filter_is_applied_inside_the_search(store, corpus):
    # Take the topic whose best text ranks lowest for the query: its texts are far down the
    # unfiltered ranking, yet k=2 with the filter returns them, so the filter selects
    # candidates before the top k are taken, not after.
    query = "Which river flows through Paris?"
    unfiltered = [d.id for d in store.similarity_search(query, k=len(corpus.texts))]
    topic_of = {corpus.ids[i]: m["topic"] for i, m in enumerate(corpus.metadatas)}
    by_topic: dict[str, list[str]] = {}
    for doc_id in unfiltered:
        by_topic.setdefault(topic_of[doc_id], []).append(doc_id)
    topic, ranked = max(by_topic.items(), key=lambda item: unfiltered.index(item[1][0]))
    assert unfiltered.index(ranked[0]) >= len(by_topic) - 1  # ranks below every other topic's best
    found = store.similarity_search(query, k=2, filter={"topic": topic})
    assert [d.id for d in found] == ranked[:2]


@pytest.mark.parametrize(("filter", "predicate"), [
    ({"country": "fr"}, lambda m: m["country"] == "fr"),
    ({"country": ["it", "de"]}, lambda m: m["country"] in ("it", "de")),
    ({"year": {"$gte": 2010}, "country": {"$ne": "us"}}, lambda m: m["year"] >= 2010 and m["country"] != "us"),
    ({"topic": {"$nin": ["cooking", "music"]}, "year": {"$lt": 2005}},
     lambda m: m["topic"] not in ("cooking", "music") and m["year"] < 2005),
])
def test_filter_operators(store, corpus, filter, predicate):
    expected = {corpus.ids[i] for i, m in enumerate(corpus.metadatas) if predicate(m)}
    assert expected  # the case selects something
    found = store.similarity_search("anything at all", k=len(corpus.texts), filter=filter)
    assert {d.id for d in found} == expected
    by_vector = store.similarity_search_by_vector(store.embeddings.embed_query("violin"), k=50, filter=filter)
    assert {d.id for d in by_vector} == expected


@pytest.mark.parametrize(("filter", "predicate"), [
    ({"$or": [{"topic": "music"}, {"year": {"$gte": 2021}}]}, lambda m: m["topic"] == "music" or m["year"] >= 2021),
    ({"$and": [{"country": "fr"}, {"$not": {"topic": "cooking"}}]},
     lambda m: m["country"] == "fr" and m["topic"] != "cooking"),
    ({"$not": {"country": {"$in": ["us", "fr", "it"]}}}, lambda m: m["country"] not in ("us", "fr", "it")),
    ({"topic": {"$contains": "ology"}}, lambda m: "ology" in m["topic"]),
    ({"topic": {"$exists": True}, "year": {"$lt": 2000}}, lambda m: m["year"] < 2000),
])
def test_logical_and_text_filters(store, corpus, filter, predicate):
    expected = {corpus.ids[i] for i, m in enumerate(corpus.metadatas) if predicate(m)}
    assert expected and len(expected) < len(corpus.ids)
    found = store.similarity_search("anything at all", k=len(corpus.texts), filter=filter)
    assert {d.id for d in found} == expected
    assert {d.id for d in store.max_marginal_relevance_search("violin", k=20, filter=filter)} == expected


def test_keys_with_quotes_and_accents_and_list_values(m2v_embeddings):
    store = M2VVectorStore(m2v_embeddings)
    store.add_texts(["un café", "a quote", "tagged"],
                    [{"catégorie": "boisson"}, {'say "hi"': 1}, {"tags": ["red", "blue"]}], ids=["a", "b", "c"])
    assert [d.id for d in store.similarity_search("x", filter={"catégorie": "boisson"})] == ["a"]
    assert [d.id for d in store.similarity_search("x", filter={'say "hi"': {"$gte": 1}})] == ["b"]
    assert [d.id for d in store.similarity_search("x", filter={"tags": {"$contains": "blue"}})] == ["c"]


@pytest.mark.parametrize(("filter", "message"), [
    ({"year": {"$regex": "a"}}, r"filter\['year'\]\['\$regex'\]: unknown filter operator"),
    ({"country": {"$in": "fr"}}, "needs a list"),
    ({"": 1}, "non-empty"),
    ({"year": 2**64}, "64-bit"),
    ({"$or": {"year": 1}}, "non-empty list of filters"),
    ({"year": float("nan")}, "not a finite number"),
])
def test_malformed_filters_raise_filter_error(store, filter, message):
    from m2v_search.index.filters import FilterError

    with pytest.raises(FilterError, match=message):
        store.similarity_search("violin", filter=filter)
    with pytest.raises(FilterError, match=message):
        store.max_marginal_relevance_search("violin", filter=filter)


def test_nan_and_infinite_metadata_or_vectors_are_refused(m2v_embeddings):
    store = M2VVectorStore(m2v_embeddings)
    with pytest.raises(ValueError, match=r"metadatas\[1\]\['scores'\]\[0\] is inf; metadata values must be finite"):
        store.add_texts(["a", "b"], [{"ok": 1.5}, {"scores": [float("inf")]}])

    class NaNEmbeddings(DeterministicFakeEmbedding):
        def embed_documents(self, texts):
            return [[float("nan")] * self.size for _ in texts]

    other = M2VVectorStore(NaNEmbeddings(size=4))
    with pytest.raises(ValueError, match=r"vectors\[0\] holds NaN or infinite values"):
        other.add_texts(["a"])
    assert len(store) == 0 and len(other) == 0


def test_index_type_is_a_deprecated_name_of_index_kind(m2v_embeddings):
    with pytest.warns(DeprecationWarning, match="index_type"):
        store = M2VVectorStore(m2v_embeddings, index_type="hnsw")
    store.add_texts(["one", "two"], ids=["1", "2"])
    assert store.index.kind == "hnsw"
    assert M2VVectorStore(m2v_embeddings, index_kind="hnsw").index.kind == "hnsw"
    with pytest.raises(TypeError, match="index_kind only"):
        M2VVectorStore(m2v_embeddings, index_kind="flat", index_type="hnsw")


def test_filter_must_be_a_dict(store):
    with pytest.raises(TypeError, match="filter must be a dict"):
        store.similarity_search("violin", filter=lambda metadata: True)


def test_upsert_replaces_by_id(store, corpus):
    assert len(store) == len(corpus.texts)
    new_text = "A cello is larger than a violin and is played sitting down, between the knees."
    ids = store.add_texts([new_text], [{"topic": "music", "country": "de", "year": 2024}], ids=["doc-5"])
    assert ids == ["doc-5"] and len(store) == len(corpus.texts)
    assert store.get_by_ids(["doc-5"]) == [Document(id="doc-5", page_content=new_text,
                                                    metadata={"topic": "music", "country": "de", "year": 2024})]
    top = store.similarity_search("cello played sitting between the knees", k=1)
    assert top[0].id == "doc-5" and top[0].page_content == new_text
    assert store.similarity_search("horsehair bow", k=1, filter={"year": 1999}) == []


def test_add_documents_keeps_ids_and_generates_missing_ones(m2v_embeddings):
    store = M2VVectorStore(m2v_embeddings)
    docs = [Document(page_content="Owls hunt at night.", id="owl"), Document(page_content="Bees make honey.")]
    ids = store.add_documents(docs)
    assert ids[0] == "owl" and len(ids[1]) == 32 and ids[1] != "owl"
    assert docs[1].id is None  # the caller's document is not mutated
    assert {d.id for d in store.get_by_ids(ids)} == set(ids)


def test_delete(store, corpus):
    assert store.delete(["no-such-id"]) is True
    assert store.delete(["doc-0", "doc-3", "also-missing"]) is True
    assert len(store) == len(corpus.texts) - 2
    assert store.get_by_ids(["doc-0", "doc-3"]) == []
    assert "doc-0" not in {d.id for d in store.similarity_search("Which river flows through Paris?", k=12)}
    assert store.delete() is True
    assert len(store) == 0 and store.similarity_search("violin") == []


def test_get_by_ids_in_order_without_missing(store, corpus):
    found = store.get_by_ids(["doc-7", "missing", "doc-2"])
    assert [d.id for d in found] == ["doc-7", "doc-2"]
    assert found[0] == Document(id="doc-7", page_content=corpus.texts[7], metadata=corpus.metadatas[7])


def test_native_path_does_not_go_through_python_lists(store, monkeypatch):
    """With M2VEmbeddings the index encodes with the same model itself."""
    def refuse(*args, **kwargs):
        raise AssertionError("embed_documents/embed_query should not be called")

    monkeypatch.setattr(M2VEmbeddings, "embed_documents", refuse)
    monkeypatch.setattr(M2VEmbeddings, "embed_query", refuse)
    store.add_texts(["Penguins cannot fly but swim very well."], ids=["penguin"])
    assert store.similarity_search("penguins swim", k=1)[0].id == "penguin"
    assert store.index.model is store.embeddings.client


def test_max_marginal_relevance_prefers_diverse_results(m2v_embeddings):
    texts = [
        "The Seine river flows through Paris.",
        "The Seine river flows through Paris and Rouen.",
        "The river Seine flows through the city of Paris.",
        "Paris has many museums, such as the Louvre.",
    ]
    store = M2VVectorStore.from_texts(texts, m2v_embeddings, ids=["a", "b", "c", "d"])
    query = "the Seine river in Paris"
    plain = [d.id for d in store.similarity_search(query, k=2)]
    assert set(plain) <= {"a", "b", "c"}  # two near-duplicates
    diverse = [d.id for d in store.max_marginal_relevance_search(query, k=2, fetch_k=4, lambda_mult=0.1)]
    assert diverse[0] == plain[0] and diverse[1] == "d"
    by_vector = store.max_marginal_relevance_search_by_vector(m2v_embeddings.embed_query(query), k=2, fetch_k=4,
                                                              lambda_mult=0.1)
    assert [d.id for d in by_vector] == diverse
    # lambda_mult=1 is plain relevance order
    assert [d.id for d in store.max_marginal_relevance_search(query, k=2, lambda_mult=1.0)] == plain
    assert store.max_marginal_relevance_search(query, k=2, filter={"missing": 1}) == []


def test_mmr_respects_filter(store, corpus):
    found = store.max_marginal_relevance_search("sugar", k=3, fetch_k=10, filter={"topic": "cooking"})
    assert {d.metadata["topic"] for d in found} == {"cooking"} and len(found) == 2


def test_retrievers(store, corpus):
    query = "What is the largest planet in the solar system?"
    relevance = store.similarity_search_with_relevance_scores(query, k=3)
    threshold = (relevance[0][1] + relevance[1][1]) / 2
    retriever = store.as_retriever(search_type="similarity_score_threshold",
                                   search_kwargs={"score_threshold": threshold, "k": 5})
    assert [d.id for d in retriever.invoke(query)] == ["doc-7"]
    assert store.as_retriever(search_kwargs={"k": 3}).invoke(query) == [d for d, _ in relevance]
    filtered = store.as_retriever(search_kwargs={"k": 3, "filter": {"topic": "cooking"}}).invoke(query)
    assert {d.metadata["topic"] for d in filtered} == {"cooking"}
    mmr = store.as_retriever(search_type="mmr", search_kwargs={"k": 2, "fetch_k": 6}).invoke(query)
    assert mmr[0].id == "doc-7" and len(mmr) == 2


def test_save_and_load_without_pickle(store, corpus, tmp_path, m2v_embeddings):
    folder = tmp_path / "store"
    store.save_local(folder)
    names = sorted(p.name for p in folder.iterdir() if not p.name.startswith("."))
    assert names[-1] == "manifest.json" and any(n.endswith(".faiss") for n in names)
    assert any(n.endswith(".sqlite") for n in names)
    for path in folder.iterdir():
        if path.is_file():
            assert not path.read_bytes().startswith(b"\x80"), f"{path.name} looks like a pickle"

    for loaded in (M2VVectorStore.load_local(folder, m2v_embeddings), M2VVectorStore.load_local(folder)):
        assert len(loaded) == len(corpus.texts)
        for query in corpus.queries:
            before = store.similarity_search_with_score(query, k=3)
            after = loaded.similarity_search_with_score(query, k=3)
            assert [d for d, _ in after] == [d for d, _ in before]
            assert [s for _, s in after] == pytest.approx([s for _, s in before], abs=1e-6)
        assert isinstance(loaded.embeddings, M2VEmbeddings)

    reopened = M2VVectorStore.load_local(folder, m2v_embeddings)
    reopened.add_texts(["Glaciers carve valleys as they slowly move downhill."], ids=["glacier"])
    reopened.delete(["doc-0"])
    reopened.save_local(folder)
    again = M2VVectorStore.load_local(folder)
    assert len(again) == len(corpus.texts)
    assert again.get_by_ids(["glacier", "doc-0"])[0].id == "glacier" and len(again.get_by_ids(["doc-0"])) == 0

    with pytest.raises(ValueError, match="cannot be searched"):
        M2VVectorStore.load_local(folder, DeterministicFakeEmbedding(size=again.index.dim))


def test_load_missing_folder_fails_clearly(tmp_path):
    from m2v_search.index import IndexNotFoundError

    with pytest.raises(IndexNotFoundError):
        M2VVectorStore.load_local(tmp_path / "nothing-here")


def test_other_embeddings_any_dimension(tmp_path, corpus):
    fake = DeterministicFakeEmbedding(size=12)
    store = M2VVectorStore(fake)
    assert store.index is None and store.similarity_search("x") == [] and store.get_by_ids(["a"]) == []
    assert store.delete(["a"]) is True
    store.add_texts(corpus.texts, corpus.metadatas, ids=corpus.ids)
    assert store.index.dim == 12 and len(store) == len(corpus.texts)
    # the fake embedding is a hash of the text: a text is its own nearest neighbour, score 1
    for i, text in enumerate(corpus.texts):
        (doc, score), *_ = store.similarity_search_with_score(text, k=2)
        assert doc.id == corpus.ids[i] and score == pytest.approx(1.0, abs=1e-5)
    hits = store.similarity_search_with_score_by_vector(fake.embed_query(corpus.texts[4]), k=3,
                                                        filter={"topic": "cooking"})
    assert [d.id for d, _ in hits] == ["doc-4", "doc-3"]

    folder = tmp_path / "fake"
    store.save_local(folder)
    loaded = M2VVectorStore.load_local(folder, fake)
    assert [d.id for d in loaded.similarity_search(corpus.texts[9], k=1)] == ["doc-9"]
    with pytest.raises(ValueError, match="pass the same embeddings"):
        M2VVectorStore.load_local(folder)


def test_other_embeddings_dim_given_up_front_and_checked(tmp_path):
    store = M2VVectorStore(DeterministicFakeEmbedding(size=5), dim=5)
    assert store.index is not None and store.index.dim == 5
    empty = tmp_path / "empty"
    M2VVectorStore(DeterministicFakeEmbedding(size=7)).save_local(empty)
    assert len(M2VVectorStore.load_local(empty, DeterministicFakeEmbedding(size=7))) == 0
    with pytest.raises(ValueError, match="dim=4"):
        M2VVectorStore(DeterministicFakeEmbedding(size=5), index=store.index, dim=4)


def test_index_from_another_model_is_refused(m2v_embeddings):
    store = M2VVectorStore(m2v_embeddings)
    with pytest.raises(ValueError, match="not comparable"):
        M2VVectorStore(DeterministicFakeEmbedding(size=store.index.dim), index=store.index)


def test_from_documents(m2v_embeddings, corpus):
    docs = [Document(page_content=t, metadata=m, id=i) for t, m, i in zip(corpus.texts, corpus.metadatas, corpus.ids)]
    store = M2VVectorStore.from_documents(docs, m2v_embeddings)
    assert store.similarity_search("who invented the printing press", k=1)[0] == docs[11]


def test_metadata_must_be_json(m2v_embeddings):
    store = M2VVectorStore(m2v_embeddings)
    with pytest.raises(ValueError, match=r"metadatas\[1\]\[.bad.\] is of type object; metadata values must be JSON"):
        store.add_texts(["a", "b"], [{"ok": 1}, {"bad": object()}])
    assert store.delete([]) is True and len(store) == 0


def test_loads_folders_built_by_the_index_itself(tmp_path, corpus, m2v_embeddings):
    from m2v_search.index import VectorIndex

    index = VectorIndex.create(model=m2v_embeddings.client)
    index.add_texts(corpus.texts, ids=corpus.ids, metadatas=corpus.metadatas)
    index.save(tmp_path / "built")
    store = M2VVectorStore.load_local(tmp_path / "built", m2v_embeddings, allow_dangerous_deserialization=False)
    assert store.similarity_search("who invented the printing press", k=1)[0].id == "doc-11"


def test_mismatched_lengths_are_refused(m2v_embeddings):
    store = M2VVectorStore(m2v_embeddings)
    with pytest.raises(ValueError, match="2 texts but 1 ids"):
        store.add_texts(["a", "b"], ids=["x"])
    with pytest.raises(ValueError, match="2 texts but 3 metadatas"):
        store.add_texts(["a", "b"], [{}, {}, {}])
    assert store.add_texts([]) == []


async def test_async_api(store, corpus):
    ids = await store.aadd_texts(["Koalas sleep most of the day in eucalyptus trees."], ids=["koala"])
    assert ids == ["koala"]
    assert (await store.asimilarity_search("koalas sleep in eucalyptus trees", k=1))[0].id == "koala"
    scored = await store.asimilarity_search_with_relevance_scores("koalas", k=2)
    assert all(0 <= s <= 1 for _, s in scored)
    assert [d.id for d in await store.aget_by_ids(["koala", "nope"])] == ["koala"]
    assert (await store.amax_marginal_relevance_search("koalas sleep", k=1))[0].id == "koala"
    assert await store.adelete(["koala"]) is True
    assert await store.aget_by_ids(["koala"]) == []
    retrieved = await store.as_retriever(search_kwargs={"k": 1}).ainvoke("binary search on a sorted array")
    assert retrieved[0].id == "doc-2"
    built = await M2VVectorStore.afrom_texts(corpus.texts[:3], store.embeddings, ids=corpus.ids[:3])
    assert len(built) == 3
