"""LangChain's standard integration tests for M2VEmbeddings and M2VVectorStore."""

from __future__ import annotations

import os
from collections.abc import Generator

import pytest
from langchain_core.embeddings import Embeddings
from langchain_tests.integration_tests import EmbeddingsIntegrationTests, VectorStoreIntegrationTests

from langchain_m2v import M2VEmbeddings, M2VVectorStore


class TestM2VEmbeddingsStandard(EmbeddingsIntegrationTests):
    @property
    def embeddings_class(self) -> type[M2VEmbeddings]:
        return M2VEmbeddings

    @property
    def embedding_model_params(self) -> dict:
        return {"model": os.environ.get("LANGCHAIN_M2V_TEST_MODEL", "m2v-base")}


class TestM2VVectorStoreStandard(VectorStoreIntegrationTests):
    """The suite's own deterministic 6-dim fake embeddings: vectors from another Embeddings."""

    @pytest.fixture
    def vectorstore(self) -> Generator[M2VVectorStore, None, None]:
        store = M2VVectorStore(self.get_embeddings())
        yield store
        store.delete()


class TestM2VVectorStoreNativeStandard(VectorStoreIntegrationTests):
    """The same suite with M2VEmbeddings, where the index encodes with the model itself."""

    @pytest.fixture
    def vectorstore(self, m2v_embeddings) -> Generator[M2VVectorStore, None, None]:
        store = M2VVectorStore(m2v_embeddings)
        yield store
        store.delete()

    @staticmethod
    def get_embeddings() -> Embeddings:
        return M2VEmbeddings(model=os.environ.get("LANGCHAIN_M2V_TEST_MODEL", "m2v-base"))
