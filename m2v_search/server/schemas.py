"""Request and response bodies of the HTTP API (pydantic models; they also make the OpenAPI docs)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import AliasChoices, BaseModel, ConfigDict, Field

MAX_EF_SEARCH = 65_536
MAX_NPROBE = 1 << 20


class _Strict(BaseModel):
    """Unknown fields are refused (a typo gets a 422 naming it); NaN and infinity too."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


# ---------------------------------------------------------------------- OpenAI-compatible
class EmbeddingRequest(BaseModel):
    """``POST /v1/embeddings``, as the OpenAI API defines it."""

    model_config = ConfigDict(extra="allow")  # OpenAI clients may send fields added later

    input: str | list[str] | list[int] | list[list[int]] = Field(
        description="A text or a list of texts. Token-id arrays are refused: the model has its own tokenizer.")
    model: str = Field(description="The served model's id (see GET /v1/models).")
    encoding_format: Literal["float", "base64"] = Field(
        "float", description="float: lists of numbers; base64: little-endian float32 bytes, base64-encoded.")
    dimensions: int | None = Field(None, ge=1, strict=True,
                                   description="Keep the first N dimensions (then re-normalized).")
    user: str | None = None


class EmbeddingData(BaseModel):
    object: Literal["embedding"] = "embedding"
    index: int
    embedding: list[float] | str


class EmbeddingUsage(BaseModel):
    prompt_tokens: int
    total_tokens: int


class EmbeddingResponse(BaseModel):
    object: Literal["list"] = "list"
    data: list[EmbeddingData]
    model: str
    usage: EmbeddingUsage


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str = "m2v-search"


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]


# ---------------------------------------------------------------------- search and documents
class SearchRequest(_Strict):
    """``POST /search``: one of ``query``, ``queries``, ``vector``, ``vectors``; or ``query`` with ``vector``
    (``queries`` with ``vectors``) for hybrid search of an index of vectors computed elsewhere."""

    query: str | None = Field(None, description="One query text.")
    queries: list[str] | None = Field(None, description="Several query texts (one result list each).")
    vector: list[float] | None = Field(None, description="One query vector (the index's dimensions).")
    vectors: list[list[float]] | None = Field(None, description="Several query vectors.")
    k: int = Field(10, ge=1, strict=True, description="Results per query (at most the server's max_k).")
    include_text: bool = Field(True, strict=True, description="Return each hit's text (false: ids, scores and "
                                                              "metadata only; no limit on the answer's text then).")
    filter: dict[str, Any] | None = Field(None, description='Metadata filter, e.g. {"year": {"$gte": 2020}}.')
    nprobe: int | None = Field(None, ge=1, le=MAX_NPROBE, strict=True, description="IVF lists probed (default: the index's).")
    ef_search: int | None = Field(None, ge=1, le=MAX_EF_SEARCH, strict=True, description="HNSW efSearch (default: the index's).")
    mode: str | None = Field(None, description="Search mode, passed to the index only when given "
                                               "(e.g. hybrid, where the index supports it).")
    alpha: float | None = Field(None, strict=True, description="Weight of the dense score in a hybrid search "
                                                  "(passed to the index only when given).")


class HitOut(BaseModel):
    id: str
    score: float
    text: str | None = Field(None, description="The document's text (null with include_text=false).")
    metadata: dict[str, Any]


class SearchResponse(BaseModel):
    results: list[list[HitOut]] = Field(description="One list of hits per query, best first.")


class UpsertRequest(_Strict):
    """``POST /documents``: add or replace documents (an id already stored is replaced)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, populate_by_name=True)

    ids: list[str] | None = Field(None, description="Document ids (default: new random ids).")
    texts: list[str] = Field(min_length=1, description="Document texts.")
    metadatas: list[dict[str, Any] | None] | None = Field(
        None, validation_alias=AliasChoices("metadatas", "metadata"),
        description="One metadata object per text (also accepted as 'metadata').")
    vectors: list[list[float]] | None = Field(
        None, description="Vectors to store instead of encoding the texts (indexes of external vectors).")


class UpsertResponse(BaseModel):
    ids: list[str]
    added: int
    replaced: int
    skipped: int = Field(description="Same id and same content already stored: nothing written.")
    documents: int = Field(description="Documents in the index after this write.")


class DeleteResponse(BaseModel):
    id: str
    deleted: int
    documents: int


class DocumentOut(BaseModel):
    id: str
    text: str
    metadata: dict[str, Any]


class ErrorDetail(BaseModel):
    message: str
    type: str
    param: str | None = None
    code: str | None = None


class ErrorBody(BaseModel):
    error: ErrorDetail
