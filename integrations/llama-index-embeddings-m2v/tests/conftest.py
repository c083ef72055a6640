"""Fixtures for the M2VEmbedding tests: the bundled m2v-base model, its embedding, and documents."""

from __future__ import annotations

import os

import pytest
from embedding_testdata import CORPUS, DEFAULT_MODEL

os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="session")
def m2v_model():
    from m2v_search import StaticModel

    return StaticModel.from_pretrained(DEFAULT_MODEL)


@pytest.fixture(scope="session")
def embed_model(m2v_model):
    from llama_index.embeddings.m2v import M2VEmbedding

    return M2VEmbedding(model=m2v_model)


@pytest.fixture
def corpus_documents():
    """One LlamaIndex Document per test text, with ids doc-0, doc-1, ..."""
    from llama_index.core import Document

    return [Document(text=text, metadata=meta, doc_id=f"doc-{i}") for i, (text, meta) in enumerate(CORPUS)]
