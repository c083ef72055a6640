"""M2VVectorStore under langchain_core.indexing.index() / aindex() with an InMemoryRecordManager."""

from __future__ import annotations

from langchain_core.documents import Document
from langchain_core.indexing import InMemoryRecordManager, aindex, index

from langchain_m2v import M2VVectorStore

OPTIONS = {"source_id_key": "source", "key_encoder": "sha256"}


def documents(corpus, indices):
    return [Document(page_content=corpus.texts[i], metadata={**corpus.metadatas[i], "source": f"file-{i % 3}.txt"})
            for i in indices]


def test_index_incremental_and_full_cleanup(m2v_embeddings, corpus):
    store = M2VVectorStore(m2v_embeddings)
    manager = InMemoryRecordManager(namespace="m2v/test")
    manager.create_schema()

    first = index(documents(corpus, range(9)), manager, store, cleanup="incremental", **OPTIONS)
    assert first == {"num_added": 9, "num_updated": 0, "num_skipped": 0, "num_deleted": 0}
    assert len(store) == 9
    assert store.similarity_search("Which river flows through Paris?", k=1)[0].page_content == corpus.texts[0]

    again = index(documents(corpus, range(9)), manager, store, cleanup="incremental", **OPTIONS)
    assert again == {"num_added": 0, "num_updated": 0, "num_skipped": 9, "num_deleted": 0}
    assert len(store) == 9

    # file-0.txt now holds different text: its old documents (0, 3, 6) are removed, the new one added
    changed = documents(corpus, [0])
    changed[0].page_content = "The Loire is the longest river in France and flows past many castles."
    result = index(changed, manager, store, cleanup="incremental", **OPTIONS)
    assert result == {"num_added": 1, "num_updated": 0, "num_skipped": 0, "num_deleted": 3}
    assert len(store) == 7
    top = store.similarity_search("longest river in France with castles", k=1)[0]
    assert top.page_content == changed[0].page_content
    assert corpus.texts[3] not in {d.page_content for d in store.similarity_search("bread dough yeast", k=7)}

    # full cleanup: whatever is not in this batch goes
    result = index(documents(corpus, [1, 2]), manager, store, cleanup="full", **OPTIONS)
    assert result["num_deleted"] == 5 and result["num_skipped"] == 2
    assert sorted(d.page_content for d in store.similarity_search("anything", k=10)) == sorted(
        corpus.texts[i] for i in (1, 2))
    assert len(store.get_by_ids(manager.list_keys())) == 2


async def test_aindex(m2v_embeddings, corpus):
    store = M2VVectorStore(m2v_embeddings)
    manager = InMemoryRecordManager(namespace="m2v/async")
    await manager.acreate_schema()
    result = await aindex(documents(corpus, range(12)), manager, store, cleanup="full", **OPTIONS)
    assert result["num_added"] == 12 and len(store) == 12
    result = await aindex(documents(corpus, range(6)), manager, store, cleanup="full", **OPTIONS)
    assert result == {"num_added": 0, "num_updated": 0, "num_skipped": 6, "num_deleted": 6}
    assert len(store) == 6
