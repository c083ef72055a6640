"""LangChain ``Embeddings`` over an m2v-search static model."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from langchain_core.embeddings import Embeddings
from langchain_core.runnables.config import run_in_executor
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr

if TYPE_CHECKING:  # pragma: no cover
    from m2v_search.model import StaticModel

DEFAULT_MODEL_NAME = "m2v-base"


class M2VEmbeddings(BaseModel, Embeddings):
    """Static (Model2Vec-style) embeddings from m2v-search, with no torch and no network.

    The model is loaded once, when the object is created. ``embed_documents`` encodes in
    batches of ``batch_size`` texts; the async methods run in a worker thread so that the
    event loop stays free.

    Example:
        .. code-block:: python

            from langchain_m2v import M2VEmbeddings

            embeddings = M2VEmbeddings()                 # the bundled m2v-base model
            embeddings = M2VEmbeddings("path/to/model")  # a local Model2Vec folder (or model="...")
            vector = embeddings.embed_query("How do plants make sugar?")
    """

    model_config = ConfigDict(extra="forbid", populate_by_name=True, protected_namespaces=())

    model_name: str = Field(default=DEFAULT_MODEL_NAME, alias="model")
    """Bundled model name (``"m2v-base"``), a local model folder, or a hub id (needs network)."""
    normalize: bool | None = True
    """Return unit-length vectors from ``embed_*`` (None: the model's own setting). An
    ``M2VVectorStore`` scores by cosine whatever this says: its index normalises every vector."""
    batch_size: int = Field(default=1024, gt=0)
    """Texts encoded per batch."""
    max_length: int | None = Field(default=None, gt=0)
    """Tokens kept per text; None uses the model's own limit (512 for m2v-base)."""
    show_progress: bool = False
    """Show a tqdm progress bar while embedding documents."""
    tokenizer_backend: str | None = None
    """Tokenizer backend: "auto" (None), "hf" or "nanotoken"."""

    _client: Any = PrivateAttr(default=None)

    def __init__(self, model: str | None = None, /, **data: Any) -> None:
        """``M2VEmbeddings("path-or-name")``, like the community ``Model2vecEmbeddings(model)``;
        the keyword forms ``model=`` and ``model_name=`` work too."""
        if model is not None:
            if "model" in data or "model_name" in data:
                raise TypeError("M2VEmbeddings got the model twice (positional and keyword)")
            data["model_name"] = model
        super().__init__(**data)

    def model_post_init(self, context: Any, /) -> None:
        client = context.get("client") if isinstance(context, dict) else None
        if client is not None:  # from_model: an already loaded model
            self._client = client
            return
        from m2v_search.model import StaticModel

        kwargs: dict[str, Any] = {"tokenizer_backend": self.tokenizer_backend}
        if self.max_length is not None:
            kwargs["max_length"] = self.max_length
        self._client = StaticModel.from_pretrained(self.model_name, **kwargs)

    @classmethod
    def from_model(cls, model: StaticModel, **kwargs: Any) -> M2VEmbeddings:
        """Wrap an already loaded ``StaticModel`` (``model_name`` becomes its name).

        ``max_length`` and ``tokenizer_backend`` were fixed when the model was loaded.
        """
        from m2v_search.model import StaticModel

        if not isinstance(model, StaticModel):
            raise TypeError(f"model must be an m2v_search StaticModel, got {type(model).__name__}")
        for fixed in ("max_length", "tokenizer_backend", "model", "model_name"):
            if fixed in kwargs:
                raise ValueError(f"{fixed} is fixed by the model passed to from_model")
        return cls.model_validate({"model_name": model.name, **kwargs}, context={"client": model})

    @property
    def client(self) -> StaticModel:
        """The loaded ``m2v_search.StaticModel``."""
        return self._client

    @property
    def dim(self) -> int:
        """Number of dimensions of the vectors."""
        return int(self._client.dim)

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        """Embed a list of texts; returns one list of floats per text ([] for no texts)."""
        texts = list(texts)
        if not texts:
            return []
        for position, text in enumerate(texts):
            if not isinstance(text, str):
                raise TypeError(f"texts[{position}] is {type(text).__name__}, expected str")
        vectors = self._client.encode(texts, batch_size=self.batch_size, normalize=self.normalize,
                                      show_progress_bar=self.show_progress)
        return vectors.tolist()

    def embed_query(self, text: str) -> list[float]:
        """Embed one text."""
        if not isinstance(text, str):
            raise TypeError(f"text is {type(text).__name__}, expected str")
        return self._client.encode([text], normalize=self.normalize)[0].tolist()

    async def aembed_documents(self, texts: list[str]) -> list[list[float]]:
        """``embed_documents`` in a worker thread (the event loop keeps running)."""
        return await run_in_executor(None, self.embed_documents, texts)

    async def aembed_query(self, text: str) -> list[float]:
        """``embed_query`` in a worker thread."""
        return await run_in_executor(None, self.embed_query, text)
