"""OpenAI-compatible routes: ``POST /v1/embeddings`` and ``GET /v1/models`` (the ``openai``
client with ``base_url=".../v1"`` works against them)."""

from __future__ import annotations

import base64
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from fastapi import APIRouter
from fastapi.responses import Response

from m2v_search.server.errors import ApiError
from m2v_search.server.limits import ServerLimits
from m2v_search.server.schemas import EmbeddingRequest, EmbeddingResponse, ErrorBody, ModelCard, ModelList
from m2v_search.server.service import IndexService
from m2v_search.server.threads import WorkerThreads, json_response
from m2v_search.server.validation import check_batch, check_texts

if TYPE_CHECKING:  # pragma: no cover
    from m2v_search.model import StaticModel

_ERRORS = {status: {"model": ErrorBody} for status in (400, 401, 404, 413, 422)}
FLOAT_DECIMALS = 9  # decimals of each entry of a JSON ("float") embedding


def served_model_id(service: IndexService) -> str | None:
    """The id clients pass as ``model``: the model's name (None for an index of external vectors)."""
    return None if service.model is None else str(service.model.name)


def _accepted_ids(model_id: str) -> set[str]:
    return {model_id, Path(model_id).name}


def openai_router(service: IndexService, limits: ServerLimits, workers: WorkerThreads) -> APIRouter:
    """The ``/v1`` routes for ``service``'s model."""
    router = APIRouter(prefix="/v1", tags=["OpenAI-compatible"], responses=_ERRORS)
    created = int(time.time())

    @router.get("/models", response_model=ModelList, summary="The model this server embeds with")
    def list_models() -> ModelList:
        model_id = served_model_id(service)
        return ModelList(data=[] if model_id is None else [ModelCard(id=model_id, created=created)])

    @router.get("/models/{model_id:path}", response_model=ModelCard, summary="One model")
    def get_model(model_id: str) -> ModelCard:
        served = served_model_id(service)
        if served is None or model_id not in _accepted_ids(served):
            raise ApiError(404, f"model {model_id!r} is not served here; GET /v1/models lists it",
                           param="model", code="model_not_found")
        return ModelCard(id=served, created=created)

    @router.post("/embeddings", response_model=EmbeddingResponse, summary="Embed texts (OpenAI schema)")
    async def create_embeddings(request: EmbeddingRequest) -> Response:
        served = served_model_id(service)
        if served is None or service.model is None:
            raise ApiError(400, "this index holds vectors computed elsewhere and has no model to embed with",
                           param="model", code="no_model")
        if request.model not in _accepted_ids(served):
            raise ApiError(404, f"model {request.model!r} is not served here; use {served!r}",
                           param="model", code="model_not_found")
        texts = _texts_of(request.input)
        check_batch("input", len(texts), limits.max_batch)
        check_texts("input", texts, require_words=True)
        if request.dimensions is not None and request.dimensions > service.model.dim:
            raise ApiError(400, f"dimensions={request.dimensions}, but the model gives {service.model.dim}",
                           param="dimensions")
        return json_response(await workers.run(_embed, service.model, served, texts, request))

    return router


def _embed(model: StaticModel, served: str, texts: list[str], request: EmbeddingRequest) -> dict[str, Any]:
    ids, offsets = model.tokenize_flat(texts)  # tokenized once: the vectors and the token count
    vectors = model.pool(ids, offsets)
    empty = np.flatnonzero(~vectors.any(axis=1))
    if len(empty):  # e.g. only zero-width, control or unknown characters: every cosine with it NaN or 0
        name = "input" if isinstance(request.input, str) else f"input[{empty[0]}]"
        raise ApiError(400, f"{name} has no token the model knows ({_shown(texts[empty[0]])}): it has no "
                            "words to embed", param="input")
    if request.dimensions is not None:
        vectors = np.ascontiguousarray(vectors[:, :request.dimensions])
        if model.normalize:
            norms = np.linalg.norm(vectors, axis=1, keepdims=True)
            np.divide(vectors, norms, out=vectors, where=norms > 0)
    tokens = int(offsets[-1] - offsets[0])
    if request.encoding_format == "base64":
        rows: Any = [base64.b64encode(row.tobytes()).decode("ascii") for row in vectors.astype("<f4", copy=False)]
    else:  # 9 decimals: below float32's resolution for entries >= 0.01, and half the JSON of a float64 repr
        rows = np.round(vectors.astype(np.float64), FLOAT_DECIMALS).tolist()
    data = [{"object": "embedding", "index": position, "embedding": row} for position, row in enumerate(rows)]
    return {"object": "list", "data": data, "model": served, "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}


def _shown(text: str) -> str:
    """The start of ``text`` for a message, invisible characters escaped (``'\\u200b'``)."""
    return ascii(text[:24]) + (" ..." if len(text) > 24 else "")


def _texts_of(given: str | list[str] | list[int] | list[list[int]]) -> list[str]:
    if isinstance(given, str):
        return [given]
    if not given:
        raise ApiError(400, "input is empty; send a text or a list of texts", param="input")
    if not all(isinstance(item, str) for item in given):
        raise ApiError(400, "input holds token ids; this server takes texts only (the model has its own "
                            "tokenizer): send a string or a list of strings", param="input", code="token_ids")
    return list(given)  # type: ignore[arg-type]

