"""M2VEmbedding against the real llama-index-core: values, batching, async, Settings, ingestion."""

from __future__ import annotations

import asyncio
import threading

import numpy as np
import pytest
from llama_index.core.base.embeddings.base import BaseEmbedding
from llama_index.embeddings.m2v import M2VEmbedding
from embedding_testdata import CORPUS, QUERIES

TEXTS = [text for text, _ in CORPUS]


class EncodeCounter:
    """Wraps a model's encode to count calls and record batch sizes and threads."""

    def __init__(self, model, monkeypatch):
        self.calls: list[int] = []
        self.threads: list[int] = []
        original = model.encode

        def encode(texts, **kwargs):
            texts = list(texts) if not isinstance(texts, str) else texts
            self.calls.append(1 if isinstance(texts, str) else len(texts))
            self.threads.append(threading.get_ident())
            return original(texts, **kwargs)

        monkeypatch.setattr(model, "encode", encode)


def test_is_a_llamaindex_embedding_with_sensible_defaults(embed_model, m2v_model):
    assert isinstance(embed_model, BaseEmbedding)
    assert M2VEmbedding.class_name() == "M2VEmbedding"
    assert embed_model.embed_batch_size == 1024
    assert embed_model.normalize is True
    assert embed_model.dim == m2v_model.dim
    payload = embed_model.to_dict()
    assert payload["class_name"] == "M2VEmbedding"
    assert payload["model_name"] == m2v_model.name


def test_vectors_are_the_models_unit_vectors_as_python_floats(embed_model, m2v_model):
    expected = m2v_model.encode(TEXTS, normalize=True)
    batch = embed_model.get_text_embedding_batch(TEXTS)
    assert len(batch) == len(TEXTS)
    assert all(type(value) is float for value in batch[0])
    np.testing.assert_allclose(np.array(batch), expected, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(embed_model.get_text_embedding(TEXTS[3]), expected[3], rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(embed_model.get_query_embedding(TEXTS[5]), expected[5], rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(np.array(batch), axis=1), 1.0, rtol=1e-5)


def test_normalize_false_and_max_length_reach_the_model(m2v_model):
    raw = M2VEmbedding(model=m2v_model, normalize=False)
    np.testing.assert_allclose(
        raw.get_text_embedding(TEXTS[0]),
        m2v_model.encode([TEXTS[0]], normalize=False)[0],
        rtol=1e-6,
        atol=1e-6,
    )
    short = M2VEmbedding(model=m2v_model, max_length=3)
    truncated = m2v_model.encode([TEXTS[1]], max_length=3, normalize=True)[0]
    full = m2v_model.encode([TEXTS[1]], normalize=True)[0]
    assert not np.allclose(truncated, full)
    np.testing.assert_allclose(short.get_text_embedding(TEXTS[1]), truncated, rtol=1e-6, atol=1e-6)


def test_query_embedding_ranks_the_matching_text_first(embed_model):
    documents = np.array(embed_model.get_text_embedding_batch(TEXTS))
    for query, expected in QUERIES.items():
        scores = documents @ np.array(embed_model.get_query_embedding(query))
        assert int(np.argmax(scores)) == expected, query


def test_a_batch_is_one_encode_call(m2v_model, monkeypatch):
    embedding = M2VEmbedding(model=m2v_model)
    counter = EncodeCounter(m2v_model, monkeypatch)
    embedding.get_text_embedding_batch(TEXTS * 6)
    assert counter.calls == [48]
    small = M2VEmbedding(model=m2v_model, embed_batch_size=16)
    counter.calls.clear()
    small.get_text_embedding_batch(TEXTS * 6)
    assert counter.calls == [16, 16, 16]


@pytest.mark.asyncio
async def test_async_batch_is_one_encode_call_off_the_event_loop(m2v_model, monkeypatch):
    embedding = M2VEmbedding(model=m2v_model)
    expected = np.array(embedding.get_text_embedding_batch(TEXTS * 6))
    counter = EncodeCounter(m2v_model, monkeypatch)
    loop_thread = threading.get_ident()
    result = await embedding.aget_text_embedding_batch(TEXTS * 6)
    assert counter.calls == [48]  # BaseEmbedding's own async path would make 48 calls of one text
    assert counter.threads and all(thread != loop_thread for thread in counter.threads)
    np.testing.assert_allclose(np.array(result), expected, rtol=1e-6, atol=1e-6)


@pytest.mark.asyncio
async def test_async_single_texts_match_sync(embed_model):
    query, text = "Which river flows through Vienna?", TEXTS[4]
    np.testing.assert_allclose(
        await embed_model.aget_query_embedding(query),
        embed_model.get_query_embedding(query),
        rtol=1e-6,
        atol=1e-6,
    )
    np.testing.assert_allclose(
        await embed_model.aget_text_embedding(text),
        embed_model.get_text_embedding(text),
        rtol=1e-6,
        atol=1e-6,
    )


@pytest.mark.asyncio
async def test_async_encode_does_not_block_the_event_loop(m2v_model, monkeypatch):
    """While encode runs (held on an event), other coroutines keep running."""
    embedding = M2VEmbedding(model=m2v_model)
    release = threading.Event()
    original = m2v_model.encode

    def slow_encode(texts, **kwargs):
        assert release.wait(10), "the event loop never got to release encode"
        return original(texts, **kwargs)

    monkeypatch.setattr(m2v_model, "encode", slow_encode)

    async def releaser():
        await asyncio.sleep(0.01)
        release.set()

    result, _ = await asyncio.gather(embedding.aget_text_embedding_batch(TEXTS), releaser())
    assert len(result) == len(TEXTS)


def test_empty_batch_and_empty_text(embed_model):
    assert embed_model.get_text_embedding_batch([]) == []
    assert embed_model.get_text_embedding("") == [0.0] * embed_model.dim


def test_bad_model_argument_is_rejected():
    with pytest.raises(TypeError, match="StaticModel"):
        M2VEmbedding(model="not a model")


def test_missing_model_folder_names_it(tmp_path):
    from m2v_search.errors import ModelLoadError

    with pytest.raises(ModelLoadError, match="nothing-here"):
        M2VEmbedding(model_name=str(tmp_path / "nothing-here"))


def test_default_is_the_bundled_model():
    from m2v_search import StaticModel

    embedding = M2VEmbedding()
    assert embedding.model_name == "m2v-base"
    reference = StaticModel.from_pretrained("m2v-base")
    np.testing.assert_allclose(
        embedding.get_text_embedding(TEXTS[0]),
        reference.encode([TEXTS[0]], normalize=True)[0],
        rtol=1e-6,
        atol=1e-6,
    )


def test_settings_embed_model_with_vector_store_index(embed_model, corpus_documents, monkeypatch):
    from llama_index.core import Settings, VectorStoreIndex

    monkeypatch.setattr(Settings, "_embed_model", None)
    Settings.embed_model = embed_model
    index = VectorStoreIndex.from_documents(corpus_documents)
    retriever = index.as_retriever(similarity_top_k=2)
    for query, expected in QUERIES.items():
        hits = retriever.retrieve(query)
        assert hits[0].node.ref_doc_id == f"doc-{expected}", query
        assert hits[0].score >= hits[1].score


def test_ingestion_pipeline_with_sentence_splitter(embed_model, corpus_documents):
    from llama_index.core.ingestion import IngestionPipeline
    from llama_index.core.node_parser import SentenceSplitter

    pipeline = IngestionPipeline(
        transformations=[SentenceSplitter(chunk_size=14, chunk_overlap=0), embed_model]
    )
    nodes = pipeline.run(documents=corpus_documents)
    assert len(nodes) > len(corpus_documents)  # the splitter really split
    assert {node.ref_doc_id for node in nodes} == {doc.doc_id for doc in corpus_documents}
    contents = [node.get_content(metadata_mode="embed") for node in nodes]
    np.testing.assert_allclose(
        np.array([node.embedding for node in nodes]),
        embed_model.model.encode(contents, normalize=True),
        rtol=1e-5,
        atol=1e-6,
    )


def test_serialized_form_rebuilds_the_same_embedding(embed_model):
    rebuilt = M2VEmbedding.from_dict(embed_model.to_dict())
    assert isinstance(rebuilt, M2VEmbedding) and rebuilt.model_name == embed_model.model_name
    np.testing.assert_allclose(
        rebuilt.get_text_embedding(TEXTS[2]), embed_model.get_text_embedding(TEXTS[2]), rtol=1e-6, atol=1e-6
    )


def test_namespace_packages_are_shared_with_llama_index_core():
    from pathlib import Path

    import llama_index
    import llama_index.core
    import llama_index.embeddings.m2v as module

    assert module.__file__.startswith(str(Path(__file__).resolve().parents[1]))
    assert not hasattr(llama_index, "__file__") or llama_index.__file__ is None  # PEP 420 namespace
    assert any("site-packages" in p for p in llama_index.__path__)  # core's half of the namespace


def test_readme_snippet_runs(monkeypatch):
    import re
    from pathlib import Path

    from llama_index.core import Settings

    readme = Path(__file__).resolve().parents[1] / "README.md"
    snippet = re.findall(r"```python\n(.*?)```", readme.read_text(encoding="utf-8"), flags=re.S)[0]
    monkeypatch.setattr(Settings, "_embed_model", None)  # restored after the test
    namespace: dict = {}
    exec(compile(snippet, str(readme), "exec"), namespace)
    assert len(namespace["vector"]) == 256 and len(namespace["vectors"]) == 2
    assert np.linalg.norm(namespace["vector"]) == pytest.approx(1.0, abs=1e-5)
