"""LlamaIndex vector store backed by an m2v-search FAISS index."""

from llama_index.vector_stores.m2v.base import M2VVectorStore, metadata_filters_to_dict

__all__ = ["M2VVectorStore", "metadata_filters_to_dict"]
