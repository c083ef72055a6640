"""Fixtures for the LlamaIndex integration: the bundled m2v-base model and a small real-text corpus."""

from __future__ import annotations

import os

import pytest
from llamaindex_testdata import CORPUS, DEFAULT_MODEL

os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="session")
def m2v_model():
    """The bundled default model (shipped in m2v_search/models/m2v-base)."""
    from m2v_search import StaticModel

    return StaticModel.from_pretrained(DEFAULT_MODEL)


@pytest.fixture(scope="session")
def embed_model(m2v_model):
    from llama_index.embeddings.m2v import M2VEmbedding

    return M2VEmbedding(model=m2v_model)


@pytest.fixture
def corpus_documents():
    from llama_index.core import Document

    return [
        Document(text=text, metadata=dict(meta), doc_id=f"doc-{i}") for i, (text, meta) in enumerate(CORPUS)
    ]


@pytest.fixture
def embedded_nodes(embed_model):
    """One TextNode per corpus text, embedded by M2VEmbedding, each with its own ref doc."""
    from llama_index.core.schema import MetadataMode, NodeRelationship, RelatedNodeInfo, TextNode

    nodes = []
    for i, (text, meta) in enumerate(CORPUS):
        node = TextNode(text=text, metadata=dict(meta), id_=f"node-{i}")
        node.relationships[NodeRelationship.SOURCE] = RelatedNodeInfo(node_id=f"doc-{i}")
        nodes.append(node)
    texts = [node.get_content(metadata_mode=MetadataMode.EMBED) for node in nodes]
    for node, embedding in zip(nodes, embed_model.get_text_embedding_batch(texts), strict=True):
        node.embedding = embedding
    return nodes
