"""LlamaIndex embeddings backed by m2v-search static models."""

from llama_index.embeddings.m2v.base import DEFAULT_M2V_MODEL, M2VEmbedding

__all__ = ["M2VEmbedding", "DEFAULT_M2V_MODEL"]
