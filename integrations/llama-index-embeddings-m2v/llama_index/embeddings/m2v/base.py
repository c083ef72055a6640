"""``M2VEmbedding``: m2v-search static embeddings as a LlamaIndex embedding model."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any, List, Optional

from llama_index.core.base.embeddings.base import BaseEmbedding, Embedding
from llama_index.core.bridge.pydantic import Field, PrivateAttr
from llama_index.core.callbacks import CallbackManager

if TYPE_CHECKING:  # pragma: no cover
    from m2v_search import StaticModel

DEFAULT_M2V_MODEL = "m2v-base"
DEFAULT_EMBED_BATCH_SIZE = 1024


class M2VEmbedding(BaseEmbedding):
    """Static (Model2Vec-style) embeddings computed locally by m2v-search.

    Encoding is a table lookup and a mean per text, so a whole batch is one ``encode`` call;
    the async methods run it in a worker thread so the event loop is never blocked.

    Args:
        model_name: the bundled model name (default ``"m2v-base"``) or a model folder.
        normalize: return unit-length vectors (default True; None keeps the model's setting).
        max_length: token limit per text (None: the model's own limit).
        tokenizer_backend: "auto", "hf" or "nanotoken" (None: the library's choice).
        model: an already loaded ``StaticModel`` to use instead of loading ``model_name``.
        embed_batch_size: texts per ``encode`` call made by LlamaIndex's batch methods.
    """

    model_name: str = Field(default=DEFAULT_M2V_MODEL, description="Bundled model name or model folder.")
    normalize: Optional[bool] = Field(default=True, description="Unit-length vectors (None: model's own).")
    max_length: Optional[int] = Field(default=None, gt=0,
                                      description="Token limit per text (None: the model's own).")
    tokenizer_backend: Optional[str] = Field(default=None, description='"auto", "hf" or "nanotoken".')
    embed_batch_size: int = Field(default=DEFAULT_EMBED_BATCH_SIZE, gt=0, le=2048,
                                  description="Texts per encode call in batch methods.")

    _model: StaticModel = PrivateAttr()

    def __init__(
        self,
        model_name: str = DEFAULT_M2V_MODEL,
        normalize: Optional[bool] = True,
        max_length: Optional[int] = None,
        tokenizer_backend: Optional[str] = None,
        *,
        model: Optional[StaticModel] = None,
        embed_batch_size: int = DEFAULT_EMBED_BATCH_SIZE,
        callback_manager: Optional[CallbackManager] = None,
        **kwargs: Any,
    ) -> None:
        from m2v_search import StaticModel

        if model is not None:
            if not isinstance(model, StaticModel):
                raise TypeError(f"model must be an m2v_search.StaticModel, got {type(model).__name__}")
            if "model_name" not in kwargs and model_name == DEFAULT_M2V_MODEL:
                model_name = str(model.name)
        super().__init__(
            model_name=model_name,
            normalize=normalize,
            max_length=max_length,
            tokenizer_backend=tokenizer_backend,
            embed_batch_size=embed_batch_size,
            callback_manager=callback_manager,
            **kwargs,
        )
        if model is None:
            options: dict[str, Any] = {"tokenizer_backend": tokenizer_backend}
            if max_length is not None:
                options["max_length"] = max_length
            model = StaticModel.from_pretrained(model_name, **options)
        self._model = model

    @classmethod
    def class_name(cls) -> str:
        return "M2VEmbedding"

    @property
    def model(self) -> StaticModel:
        """The underlying ``m2v_search.StaticModel``."""
        return self._model

    @property
    def dim(self) -> int:
        """Number of dimensions of the vectors."""
        return self._model.dim

    # ------------------------------------------------------------------ encoding
    def _encode(self, texts: List[str]) -> List[Embedding]:
        """One ``encode`` call for the whole list; Python floats out."""
        if not texts:
            return []
        options: dict[str, Any] = {"batch_size": max(len(texts), 1), "normalize": self.normalize}
        if self.max_length is not None:
            options["max_length"] = self.max_length
        return self._model.encode(list(texts), **options).tolist()

    def _get_query_embedding(self, query: str) -> Embedding:
        return self._encode([query])[0]

    def _get_text_embedding(self, text: str) -> Embedding:
        return self._encode([text])[0]

    def _get_text_embeddings(self, texts: List[str]) -> List[Embedding]:
        return self._encode(texts)

    async def _aget_query_embedding(self, query: str) -> Embedding:
        return (await asyncio.to_thread(self._encode, [query]))[0]

    async def _aget_text_embedding(self, text: str) -> Embedding:
        return (await asyncio.to_thread(self._encode, [text]))[0]

    async def _aget_text_embeddings(self, texts: List[str]) -> List[Embedding]:
        # BaseEmbedding's default gathers one coroutine per text; a static model embeds the
        # whole batch in one call, off the event loop.
        return await asyncio.to_thread(self._encode, list(texts))
