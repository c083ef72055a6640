"""M2VVectorStore against the real llama-index-core and the real m2v_search index."""

from __future__ import annotations

import json

import numpy as np
import pytest
from llama_index.core.schema import MetadataMode, NodeRelationship, RelatedNodeInfo, TextNode
from llama_index.core.vector_stores.types import (
    BasePydanticVectorStore,
    FilterCondition,
    FilterOperator,
    MetadataFilter,
    MetadataFilters,
    VectorStoreQuery,
    VectorStoreQueryMode,
)
from llama_index.core.vector_stores.utils import build_metadata_filter_fn
from llama_index.vector_stores.m2v import M2VVectorStore, metadata_filters_to_dict
from m2v_search.index import IndexNotFoundError
from llamaindex_testdata import CORPUS, QUERIES


@pytest.fixture
def store(embed_model, embedded_nodes):
    store = M2VVectorStore(model=embed_model)
    assert store.add(embedded_nodes) == [node.node_id for node in embedded_nodes]
    return store


def query_for(embed_model, text, k=3, **kwargs):
    return VectorStoreQuery(
        query_embedding=embed_model.get_query_embedding(text), similarity_top_k=k, **kwargs
    )


def filters(*items, condition=FilterCondition.AND):
    """MetadataFilters from (key, operator, value) items; a trailing "or"/"not" item sets the condition."""
    if items and isinstance(items[-1], str):
        *items, condition = items
    return MetadataFilters(
        filters=[MetadataFilter(key=k, value=v, operator=op) for k, op, v in items],
        condition=FilterCondition(condition),
    )


def test_is_a_pydantic_vector_store_that_stores_text(store):
    assert isinstance(store, BasePydanticVectorStore)
    assert store.stores_text is True
    assert M2VVectorStore.class_name() == "M2VVectorStore"
    assert len(store.client) == len(CORPUS)


def test_query_returns_whole_nodes_with_cosine_similarities(store, embed_model, embedded_nodes):
    for query, expected in QUERIES.items():
        vector = np.array(embed_model.get_query_embedding(query))
        result = store.query(query_for(embed_model, query, k=4))
        assert result.ids[0] == f"node-{expected}", query
        assert [node.node_id for node in result.nodes] == result.ids
        assert result.similarities == sorted(result.similarities, reverse=True)
        stored = np.array([embedded_nodes[int(i.split("-")[1])].embedding for i in result.ids])
        cosines = stored @ vector / np.linalg.norm(stored, axis=1) / np.linalg.norm(vector)
        np.testing.assert_allclose(result.similarities, cosines, rtol=1e-4, atol=1e-5)
    node = store.query(query_for(embed_model, "Which river flows through Paris?", k=1)).nodes[0]
    original = embedded_nodes[0]
    assert node.get_content() == original.get_content()
    assert node.metadata == original.metadata
    assert node.ref_doc_id == "doc-0"
    assert node.relationships[NodeRelationship.SOURCE].node_id == "doc-0"
    assert "_node_content" not in node.metadata


def test_add_replaces_nodes_with_the_same_id(store, embed_model):
    replacement = TextNode(
        text="Ice hockey is played on a frozen rink with a puck.", id_="node-0", metadata={"topic": "sport"}
    )
    replacement.embedding = embed_model.get_text_embedding(
        replacement.get_content(metadata_mode=MetadataMode.EMBED)
    )
    store.add([replacement])
    assert len(store.client) == len(CORPUS)
    assert store.get_nodes(node_ids=["node-0"])[0].get_content() == replacement.get_content()
    top = store.query(query_for(embed_model, "ice hockey puck on a frozen rink", k=1))
    assert top.ids == ["node-0"]


def test_nodes_without_embeddings_are_embedded_by_the_stores_model(embed_model, embedded_nodes):
    store = M2VVectorStore(model=embed_model)
    bare = [TextNode(text=n.text, metadata=n.metadata, id_=n.node_id) for n in embedded_nodes]
    store.add(bare[:4])  # none has an embedding
    store.add(bare[4:6] + embedded_nodes[6:])  # some have
    assert len(store.client) == len(CORPUS)
    for node in embedded_nodes:
        result = store.query(VectorStoreQuery(query_embedding=node.embedding, similarity_top_k=1))
        assert result.ids == [node.node_id]
        assert result.similarities[0] == pytest.approx(1.0, abs=1e-4)


@pytest.mark.parametrize(
    "items",
    [
        [("topic", FilterOperator.EQ, "cooking")],
        [("country", FilterOperator.NE, "fr")],
        [("country", FilterOperator.IN, ["it", "gr", "nl"])],
        [("topic", FilterOperator.NIN, ["biology", "computing"])],
        [("year", FilterOperator.GT, 2005)],
        [("year", FilterOperator.GTE, 2005)],
        [("rating", FilterOperator.LT, 4.0)],
        [("rating", FilterOperator.LTE, 4.0)],
        [
            ("year", FilterOperator.GTE, 2000),
            ("year", FilterOperator.LT, 2012),
            ("country", FilterOperator.NE, "us"),
        ],
        [("missing_key", FilterOperator.NE, "x"), ("topic", FilterOperator.NIN, ["music", "sport"])],
        [("missing_key", FilterOperator.EQ, "x")],
        [("topic", FilterOperator.EQ, "music"), ("country", FilterOperator.EQ, "de"), "or"],
        [("topic", FilterOperator.EQ, "geography"), ("year", FilterOperator.LT, 2000), "not"],
        [("topic", FilterOperator.CONTAINS, "og")],
        [("topic", FilterOperator.TEXT_MATCH, "ook")],
        [("topic", FilterOperator.TEXT_MATCH, "OOK")],
        [("topic", FilterOperator.TEXT_MATCH_INSENSITIVE, "OOK")],
        [("topic", FilterOperator.ANY, ["usi", "ook"])],
        [("topic", FilterOperator.ALL, ["o", "g"])],
        [("missing_key", FilterOperator.IS_EMPTY, None), ("year", FilterOperator.GT, 2010)],
        [("topic", FilterOperator.IS_EMPTY, None), ("year", FilterOperator.GT, 2010), "or"],
        [("missing_key", FilterOperator.IS_EMPTY, ["unused"]), ("year", FilterOperator.GT, 2010)],
    ],
)
def test_filters_select_exactly_what_llamaindex_semantics_select(store, embed_model, items):
    metadata = {f"node-{i}": meta for i, (_, meta) in enumerate(CORPUS)}
    wanted = filters(*items)
    reference = build_metadata_filter_fn(lambda node_id: metadata[node_id], wanted)
    expected = {node_id for node_id in metadata if reference(node_id)}
    assert expected != set(metadata)  # every case really filters
    result = store.query(
        query_for(embed_model, "rivers, plants, arrays and music", k=len(CORPUS), filters=wanted)
    )
    assert set(result.ids) == expected
    assert {node.node_id for node in store.get_nodes(filters=wanted)} == expected


def test_filter_runs_inside_the_search_not_after(store, embed_model):
    """k=1 with a filter that excludes the best match still returns the best allowed node."""
    query = "Which river flows through Paris?"
    assert store.query(query_for(embed_model, query, k=1)).ids == ["node-0"]
    result = store.query(
        query_for(embed_model, query, k=1, filters=filters(("country", FilterOperator.EQ, "de")))
    )
    assert result.ids == ["node-1"]
    result = store.query(
        query_for(embed_model, query, k=2, filters=filters(("topic", FilterOperator.EQ, "music")))
    )
    assert result.ids == ["node-8"]


def test_filter_translation():
    assert metadata_filters_to_dict(None) is None
    assert metadata_filters_to_dict(MetadataFilters(filters=[])) is None
    nested = MetadataFilters(
        filters=[
            MetadataFilter(key="year", value=2000, operator=FilterOperator.GTE),
            MetadataFilters(
                filters=[
                    MetadataFilter(key="year", value=2010, operator=FilterOperator.LT),
                    MetadataFilter(key="tag", value=["a", "b"], operator=FilterOperator.IN),
                ]
            ),
        ]
    )
    assert metadata_filters_to_dict(nested) == {
        "$and": [{"year": {"$gte": 2000}}, {"$and": [{"year": {"$lt": 2010}}, {"tag": {"$in": ["a", "b"]}}]}]
    }
    either = MetadataFilters(filters=[nested, MetadataFilters(filters=[
        MetadataFilter(key="tag", value="x", operator=FilterOperator.CONTAINS),
        MetadataFilter(key="year", value=1990, operator=FilterOperator.LT)], condition=FilterCondition.NOT)],
        condition=FilterCondition.OR)
    assert metadata_filters_to_dict(either) == {"$or": [
        metadata_filters_to_dict(nested),
        {"$not": {"$or": [{"tag": {"$contains": "x"}}, {"year": {"$lt": 1990}}]}},
    ]}


def test_nested_or_and_not_inside_the_search(store, embed_model):
    """(geography AND before 2000) OR NOT (year >= 2000 OR country == us): computed by hand."""
    geography_old = filters(("topic", FilterOperator.EQ, "geography"), ("year", FilterOperator.LT, 2000))
    neither = filters(("year", FilterOperator.GTE, 2000), ("country", FilterOperator.EQ, "us"), "not")
    wanted = MetadataFilters(filters=[geography_old, neither], condition=FilterCondition.OR)
    expected = {f"node-{i}" for i, (_, m) in enumerate(CORPUS)
                if (m["topic"] == "geography" and m["year"] < 2000) or not (m["year"] >= 2000 or m["country"] == "us")}
    assert expected and expected != {f"node-{i}" for i in range(len(CORPUS))}
    result = store.query(query_for(embed_model, "rivers and plants", k=len(CORPUS), filters=wanted))
    assert set(result.ids) == expected
    assert {node.node_id for node in store.get_nodes(filters=wanted)} == expected


@pytest.mark.parametrize(
    "bad, message",
    [
        (filters(("topic", FilterOperator.EQ, ["a", "b"])), r"EQ filter on key 'topic' \(filters\[0\]\) needs a single"),
        (filters(("topic", FilterOperator.IN, "a")), "IN filter on key 'topic' .* needs a list"),
        (filters(("topic", FilterOperator.TEXT_MATCH, 3)), "TEXT_MATCH filter on key 'topic' .* needs a string"),
        (filters(("year", FilterOperator.GT, float("nan"))), r"filter\['year'\]\['\$gt'\]: nan is not a finite"),
        (filters(("year", FilterOperator.GT, 2**70)), "outside the 64-bit range"),
        (filters(("", FilterOperator.EQ, 1)), "keys must be non-empty"),
        # LlamaIndex's own filters match nothing with EQ None and everything with NE None: refused,
        # not read as "is null" (which silently returned other nodes than LlamaIndex would)
        (filters(("topic", FilterOperator.EQ, None)), r"EQ filter on key 'topic' .* has no value.*IS_EMPTY"),
        (filters(("topic", FilterOperator.NE, None)), r"NE filter on key 'topic' .* has no value.*IS_EMPTY"),
        (filters(("year", FilterOperator.GT, None)), r"GT filter on key 'year' .* has no value"),
    ],
)
def test_bad_filters_raise_clear_errors(store, embed_model, bad, message):
    with pytest.raises(ValueError, match=message):
        store.query(query_for(embed_model, "anything", filters=bad))


def test_doc_ids_and_node_ids_restrict_the_query(store, embed_model):
    query = "Which river flows through Paris?"
    result = store.query(query_for(embed_model, query, k=5, doc_ids=["doc-3", "doc-7"]))
    assert set(result.ids) == {"node-3", "node-7"}
    result = store.query(
        query_for(
            embed_model,
            query,
            k=5,
            node_ids=["node-2", "node-4", "node-9"],
            filters=filters(("topic", FilterOperator.EQ, "computing")),
        )
    )
    assert result.ids == ["node-4"]
    # LlamaIndex's retriever passes node_ids=[] for stores that keep the text: no restriction
    assert store.query(query_for(embed_model, query, k=1, node_ids=[])).ids == ["node-0"]


def test_delete_by_ref_doc_id_removes_every_chunk_of_that_document(embed_model):
    nodes = []
    for doc in ("doc-a", "doc-b"):
        for part in range(3):
            node = TextNode(
                text=f"{doc} part {part}: the river flows through the old town", id_=f"{doc}-{part}"
            )
            node.relationships[NodeRelationship.SOURCE] = RelatedNodeInfo(node_id=doc)
            node.embedding = embed_model.get_text_embedding(node.text)
            nodes.append(node)
    store = M2VVectorStore(model=embed_model)
    store.add(nodes)
    store.delete("doc-a")
    assert sorted(n.node_id for n in store.get_nodes()) == ["doc-b-0", "doc-b-1", "doc-b-2"]
    store.delete("doc-unknown")
    assert len(store.client) == 3


def test_delete_nodes_by_ids_filters_or_both(store):
    store.delete_nodes(node_ids=["node-0", "node-1"])
    assert len(store.client) == len(CORPUS) - 2
    store.delete_nodes(filters=filters(("topic", FilterOperator.EQ, "cooking")))
    assert {n.metadata["topic"] for n in store.get_nodes()} == {"biology", "computing", "music", "sport"}
    store.delete_nodes(
        node_ids=["node-2", "node-4"], filters=filters(("topic", FilterOperator.EQ, "biology"))
    )
    remaining = {n.node_id for n in store.get_nodes()}
    assert "node-2" not in remaining and "node-4" in remaining and "node-3" in remaining
    with pytest.raises(ValueError, match="clear"):
        store.delete_nodes()


def test_get_nodes_by_ids_keeps_the_order_asked(store):
    nodes = store.get_nodes(node_ids=["node-5", "node-unknown", "node-1"])
    assert [n.node_id for n in nodes] == ["node-5", "node-1"]
    assert nodes[0].get_content() == CORPUS[5][0]
    assert len(store.get_nodes()) == len(CORPUS)
    both = store.get_nodes(
        node_ids=["node-0", "node-1", "node-2"], filters=filters(("country", FilterOperator.EQ, "de"))
    )
    assert [n.node_id for n in both] == ["node-1"]


def test_clear(store, embed_model):
    store.clear()
    assert len(store.client) == 0
    assert store.get_nodes() == []
    assert store.query(query_for(embed_model, "river")).ids == []


def test_mmr_query_diversifies(store, embed_model):
    query = "river flows through Paris Germany Alps"
    plain = store.query(query_for(embed_model, query, k=3))
    relevance_only = store.query(
        query_for(embed_model, query, k=3, mode=VectorStoreQueryMode.MMR, mmr_threshold=1.0)
    )
    assert relevance_only.ids == plain.ids
    diverse = store.query(
        query_for(embed_model, query, k=3, mode=VectorStoreQueryMode.MMR), mmr_threshold=0.1
    )
    assert diverse.ids[0] == plain.ids[0] and len(set(diverse.ids)) == 3
    vectors = {
        n.node_id: np.array(embed_model.get_text_embedding(n.get_content(metadata_mode=MetadataMode.EMBED)))
        for n in store.get_nodes()
    }

    def max_pair(ids):
        return max(float(vectors[a] @ vectors[b]) for a in ids for b in ids if a < b)

    assert max_pair(diverse.ids) <= max_pair(plain.ids) + 1e-6
    with pytest.raises(ValueError, match="mode"):
        store.query(query_for(embed_model, query, mode=VectorStoreQueryMode.SVM))


def test_query_by_text_uses_the_stores_model(store):
    result = store.query(VectorStoreQuery(query_str="Which river flows through Paris?", similarity_top_k=1))
    assert result.ids == ["node-0"]
    with pytest.raises(ValueError, match="neither"):
        store.query(VectorStoreQuery(similarity_top_k=1))


def test_persist_and_load_round_trip_without_pickle(store, embed_model, tmp_path):
    path = tmp_path / "vs"
    store.persist(str(path))
    manifest = json.loads((path / "manifest.json").read_text())
    assert manifest["model"]["name"] == embed_model.model.name
    for file in path.iterdir():
        if file.is_file() and file.stat().st_size:
            assert not file.read_bytes().startswith(b"\x80"), f"{file.name} looks like a pickle"
    loaded = M2VVectorStore.from_persist_path(str(path), model=embed_model)
    for query in QUERIES:
        a, b = store.query(query_for(embed_model, query)), loaded.query(query_for(embed_model, query))
        assert a.ids == b.ids
        np.testing.assert_allclose(a.similarities, b.similarities, rtol=1e-6)
    assert [n.get_content() for n in loaded.get_nodes(node_ids=["node-3"])] == [CORPUS[3][0]]
    loaded.delete("doc-3")  # the loaded store is writable and saves in place
    loaded.persist(str(path))
    assert len(M2VVectorStore.from_persist_path(str(path), model=embed_model).client) == len(CORPUS) - 1


def test_default_store_uses_the_bundled_model_and_reopens_without_naming_it(embedded_nodes, tmp_path):
    store = M2VVectorStore()
    store.add(embedded_nodes)
    store.persist(str(tmp_path / "vs"))
    loaded = M2VVectorStore.from_persist_path(str(tmp_path / "vs"))
    assert loaded.client.model.name == "m2v-base"
    assert len(loaded.client) == len(CORPUS)


def test_storage_context_persist_and_load_index_from_storage(embed_model, corpus_documents, tmp_path):
    from llama_index.core import StorageContext, VectorStoreIndex, load_index_from_storage

    storage = StorageContext.from_defaults(vector_store=M2VVectorStore(model=embed_model))
    VectorStoreIndex.from_documents(corpus_documents, storage_context=storage, embed_model=embed_model)
    storage.persist(persist_dir=str(tmp_path))
    store = M2VVectorStore.from_persist_dir(str(tmp_path), model=embed_model)
    restored = load_index_from_storage(
        StorageContext.from_defaults(persist_dir=str(tmp_path), vector_store=store), embed_model=embed_model
    )
    hits = restored.as_retriever(similarity_top_k=1).retrieve("how many strings does a violin have")
    assert hits[0].node.ref_doc_id == "doc-8"


def test_vector_store_index_from_vector_store_insert_and_delete(store, embed_model, corpus_documents):
    from llama_index.core import Document, VectorStoreIndex

    index = VectorStoreIndex.from_vector_store(store, embed_model=embed_model)
    hits = index.as_retriever(similarity_top_k=2).retrieve("Why does bread dough rise with yeast?")
    assert hits[0].node.node_id == "node-6"
    assert hits[0].score >= hits[1].score
    index.insert(
        Document(text="Glaciers carve U-shaped valleys as the ice slowly grinds the rock.", doc_id="ice")
    )
    hits = index.as_retriever(similarity_top_k=1).retrieve("ice glaciers carve valleys in rock")
    assert hits[0].node.ref_doc_id == "ice"
    index.delete_ref_doc("ice")
    assert all(n.ref_doc_id != "ice" for n in store.get_nodes())


@pytest.mark.asyncio
async def test_async_methods(embed_model, embedded_nodes):
    store = M2VVectorStore(model=embed_model)
    assert await store.async_add(embedded_nodes) == [n.node_id for n in embedded_nodes]
    query = VectorStoreQuery(
        query_embedding=await embed_model.aget_query_embedding("binary search on a sorted array"),
        similarity_top_k=2,
    )
    result = await store.aquery(query)
    assert result.ids[0] == "node-4"
    assert [n.node_id for n in await store.aget_nodes(node_ids=["node-1"])] == ["node-1"]
    await store.adelete("doc-4")
    assert "node-4" not in (await store.aquery(query)).ids
    await store.adelete_nodes(filters=filters(("topic", FilterOperator.EQ, "biology")))
    assert len(store.client) == len(CORPUS) - 3
    await store.aclear()
    assert await store.aget_nodes() == []


@pytest.mark.asyncio
async def test_async_retriever_and_query_engine(store, embed_model):
    from llama_index.core import VectorStoreIndex
    from llama_index.core.llms import MockLLM

    index = VectorStoreIndex.from_vector_store(store, embed_model=embed_model)
    hits = await index.as_retriever(similarity_top_k=1).aretrieve("how long is a marathon race in kilometres")
    assert hits[0].node.node_id == "node-9"
    response = await index.as_query_engine(llm=MockLLM(), similarity_top_k=2).aquery(
        "Which river flows through Paris?"
    )
    assert response.source_nodes[0].node.node_id == "node-0"


# ---------------------------------------------------------------------- vectors from other embed models
def external_nodes(dim, count=6, seed=0):
    rng = np.random.default_rng(seed)
    nodes = []
    for i in range(count):
        node = TextNode(text=f"text number {i}", id_=f"x-{i}", metadata={"i": i})
        node.embedding = rng.standard_normal(dim).tolist()
        nodes.append(node)
    return nodes


def test_embeddings_of_another_size_are_stored_as_external_vectors(tmp_path):
    nodes = external_nodes(7)
    store = M2VVectorStore()
    store.add(nodes)
    assert store.client.dim == 7 and not store.embeds_text
    result = store.query(
        VectorStoreQuery(
            query_embedding=nodes[3].embedding,
            similarity_top_k=2,
            filters=filters(("i", FilterOperator.GTE, 2)),
        )
    )
    assert result.ids[0] == "x-3" and result.similarities[0] == pytest.approx(1.0, abs=1e-5)
    assert all(int(i.split("-")[1]) >= 2 for i in result.ids)
    with pytest.raises(ValueError, match="no embedding"):
        store.add([TextNode(text="no vector", id_="bare")])
    with pytest.raises(ValueError, match="query_embedding"):
        store.query(VectorStoreQuery(query_str="text", similarity_top_k=1))
    with pytest.raises(ValueError, match="5-dimensional"):
        store.add(external_nodes(5))
    store.persist(str(tmp_path / "ext"))
    loaded = M2VVectorStore.from_persist_path(str(tmp_path / "ext"))
    again = loaded.query(
        VectorStoreQuery(
            query_embedding=nodes[3].embedding,
            similarity_top_k=2,
            filters=filters(("i", FilterOperator.GTE, 2)),
        )
    )
    assert again.ids == result.ids


def test_explicit_dim_and_mismatched_model(embed_model):
    store = M2VVectorStore(dim=5)
    store.add(external_nodes(5))
    assert store.client.dim == 5
    with pytest.raises(ValueError, match="dim="):
        M2VVectorStore(dim=5).add(external_nodes(6))
    with pytest.raises(ValueError, match="same model"):
        M2VVectorStore(model=embed_model).add(external_nodes(embed_model.dim + 1))
    with pytest.raises(ValueError, match="not both"):
        M2VVectorStore(model=embed_model, dim=3)
    with pytest.raises(TypeError, match="StaticModel"):
        M2VVectorStore(model=42)


def test_empty_store_answers_queries_and_persists(tmp_path):
    import fsspec

    store = M2VVectorStore(dim=4)
    assert store.query(VectorStoreQuery(query_embedding=[0.1, 0.2, 0.3, 0.4], similarity_top_k=3)).ids == []
    assert store.get_nodes() == []
    store.delete("anything")
    store.persist(str(tmp_path / "empty"), fs=fsspec.filesystem("file"))
    assert len(M2VVectorStore.from_persist_path(str(tmp_path / "empty")).client) == 0


@pytest.mark.parametrize("protocol", ["memory", "file"])
def test_persist_to_an_fsspec_filesystem_and_back(store, embed_model, tmp_path, protocol):
    import fsspec

    fs = fsspec.filesystem(protocol)
    root = f"/m2v-test-{tmp_path.name}" if protocol == "memory" else str(tmp_path / "remote")
    path = f"{root}/vs"
    store.persist(path, fs=fs)
    names = sorted(entry.rsplit("/", 1)[-1] for entry in fs.ls(path, detail=False))
    assert "manifest.json" in names and any(n.endswith(".faiss") for n in names)
    loaded = M2VVectorStore.from_persist_path(path, fs=fs, model=embed_model)
    query = "Which river flows through Paris?"
    assert loaded.query(query_for(embed_model, query, k=3)).ids == store.query(query_for(embed_model, query, k=3)).ids
    # a second persist after a delete replaces the files of the old generation
    loaded.delete("doc-0")
    loaded.persist(path, fs=fs)
    again = M2VVectorStore.from_persist_path(path, fs=fs, model=embed_model)
    assert len(again.client) == len(CORPUS) - 1 and "node-0" not in again.query(query_for(embed_model, query)).ids
    assert sorted(entry.rsplit("/", 1)[-1] for entry in fs.ls(path, detail=False)) != names
    assert len([n for n in fs.ls(path, detail=False) if n.endswith(".faiss")]) == 1
    # StorageContext-style loading from a directory on the same filesystem
    store.persist(f"{root}/storage/default__vector_store.json", fs=fs)
    from_dir = M2VVectorStore.from_persist_dir(f"{root}/storage", fs=fs, model=embed_model)
    assert len(from_dir.client) == len(CORPUS)
    with pytest.raises(IndexNotFoundError):
        M2VVectorStore.from_persist_path(f"{root}/nothing", fs=fs)
    if protocol == "memory":
        fs.rm(root, recursive=True)


def test_nan_and_infinite_values_are_refused_with_a_clear_error(embed_model):
    store = M2VVectorStore(model=embed_model)
    node = TextNode(text="a node", id_="n", metadata={"score": float("nan")})
    with pytest.raises(ValueError, match=r"nodes\[0\] \(id 'n'\) metadata\['score'\] is nan; metadata values must be finite"):
        store.add([node])
    vector = embed_model.get_text_embedding("a node")
    vector[3] = float("inf")
    with pytest.raises(ValueError, match=r"vectors\[0\] holds NaN or infinite values"):
        store.add([TextNode(text="a node", id_="n", embedding=vector)])
    assert len(store.client) == 0


@pytest.mark.parametrize("kind", ["hnsw", "flat"])
def test_other_faiss_kinds_filter_delete_and_persist(embed_model, embedded_nodes, tmp_path, kind):
    store = M2VVectorStore(model=embed_model, index_kind=kind)
    store.add(embedded_nodes)
    store.persist(str(tmp_path / kind))
    assert store.client.kind == kind
    store.delete("doc-0")  # deleting from HNSW marks tombstones; they must never come back
    query = "Which river flows through Paris?"
    assert "node-0" not in store.query(query_for(embed_model, query, k=len(CORPUS))).ids
    result = store.query(
        query_for(embed_model, query, k=2, filters=filters(("topic", FilterOperator.EQ, "geography")))
    )
    assert result.ids == ["node-1"]
    loaded = M2VVectorStore.from_persist_path(str(tmp_path / kind), model=embed_model)
    assert loaded.client.kind == kind
    assert loaded.query(query_for(embed_model, query, k=1)).ids == ["node-0"]


@pytest.mark.asyncio
async def test_ingestion_pipeline_async_into_the_vector_store(embed_model, corpus_documents):
    from llama_index.core.ingestion import IngestionPipeline
    from llama_index.core.node_parser import SentenceSplitter
    from llama_index.vector_stores.m2v import M2VVectorStore

    store = M2VVectorStore(model=embed_model)
    pipeline = IngestionPipeline(
        transformations=[SentenceSplitter(chunk_size=24, chunk_overlap=0), embed_model], vector_store=store
    )
    nodes = await pipeline.arun(documents=corpus_documents)
    assert len(store.client) == len(nodes) > len(corpus_documents)
    stored = store.get_nodes(node_ids=[nodes[0].node_id])
    assert stored[0].get_content() == nodes[0].get_content()


def test_is_empty_counts_an_empty_list_like_llamaindex(embed_model):
    """IS_EMPTY: a missing key, "" and an empty list, as LlamaIndex's own filter function says."""
    metadata = {"a": {"tags": []}, "b": {"tags": ["x"]}, "c": {}, "d": {"tags": ""}, "e": {"tags": "y"}}
    nodes = [TextNode(id_=key, text=f"text {key}", metadata=meta) for key, meta in metadata.items()]
    for node in nodes:
        node.embedding = embed_model.get_text_embedding(node.text)
    store = M2VVectorStore()
    store.add(nodes)
    wanted = filters(("tags", FilterOperator.IS_EMPTY, None))
    reference = build_metadata_filter_fn(lambda node_id: metadata[node_id], wanted)
    expected = {key for key in metadata if reference(key)}
    assert expected == {"a", "c", "d"}
    assert {node.node_id for node in store.get_nodes(filters=wanted)} == expected


@pytest.mark.parametrize("operator", [FilterOperator.TEXT_MATCH, FilterOperator.TEXT_MATCH_INSENSITIVE])
def test_text_match_takes_text_values_only(embed_model, operator):
    """Both TEXT_MATCH operators match a text holding the value; a list holding it as an item, or a
    number, does not match (LlamaIndex raises TypeError on such a node), the same for both."""
    metadata = {"a": {"tags": "code and food"}, "b": {"tags": ["food"]}, "c": {"tags": "Food"},
                "d": {"tags": 7}, "e": {}}
    nodes = [TextNode(id_=key, text=f"text {key}", metadata=meta) for key, meta in metadata.items()]
    for node in nodes:
        node.embedding = embed_model.get_text_embedding(node.text)
    store = M2VVectorStore()
    store.add(nodes)
    found = {node.node_id for node in store.get_nodes(filters=filters(("tags", operator, "food")))}
    assert found == ({"a"} if operator == FilterOperator.TEXT_MATCH else {"a", "c"})
    reference = build_metadata_filter_fn(lambda node_id: metadata[node_id], filters(("tags", operator, "food")))
    assert {key for key in ("a", "c") if reference(key)} == found & {"a", "c"}  # same as LlamaIndex on text
    with pytest.raises(TypeError):
        reference("b")
