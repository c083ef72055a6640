"""Index routes: ``POST /search``, ``POST /documents`` (upsert), ``GET``/``DELETE /documents/{id}``,
``GET /info``, and (on a router of its own, open without a key) ``GET /health``."""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from typing import Any

import numpy as np
from fastapi import APIRouter
from fastapi.responses import JSONResponse, Response
from starlette.convertors import Convertor, register_url_convertor

from m2v_search._version import __version__
from m2v_search.index.manifest import MANIFEST_NAME
from m2v_search.server.errors import ApiError, api_error_from
from m2v_search.server.limits import ServerLimits
from m2v_search.server.schemas import (
    DeleteResponse,
    DocumentOut,
    ErrorBody,
    SearchRequest,
    SearchResponse,
    UpsertRequest,
    UpsertResponse,
)
from m2v_search.server.service import IndexService, WriteResult
from m2v_search.server.threads import WorkerThreads, json_response
from m2v_search.server.validation import as_matrix, check_batch, check_json_value, check_texts


class WholeIdConvertor(Convertor[str]):
    """The rest of the path, line breaks included: Starlette's ``path`` (``.*``, then ``$``) dropped a
    final newline and could not match one inside, so ``DELETE /documents/r1%0A`` deleted ``r1``."""

    regex = "[\\s\\S]*"

    def convert(self, value: str) -> str:
        return value

    def to_string(self, value: str) -> str:
        return value


register_url_convertor("m2v_document_id", WholeIdConvertor())

_ERRORS = {status: {"model": ErrorBody} for status in (400, 401, 403, 404, 409, 413, 422, 503)}


def health_router(service: IndexService) -> APIRouter:
    """``GET``/``HEAD /health``: open without a key, and documented so (no error bodies but 503)."""
    router = APIRouter()

    @router.get("/health", tags=["status"], summary="Liveness (no key needed; HEAD works too)",
                responses={503: {"description": "the served index directory no longer holds an index"}})
    async def health() -> Any:
        if service.path is not None and not (service.path / MANIFEST_NAME).is_file():
            return JSONResponse({"status": "index_missing",
                                 "message": f"{service.path} no longer holds an index ({MANIFEST_NAME} is missing)"},
                                status_code=503)
        return {"status": "ok"}

    router.add_api_route("/health", health, methods=["HEAD"], include_in_schema=False)  # one operation id in the schema
    return router


def index_router(service: IndexService, limits: ServerLimits, workers: WorkerThreads) -> APIRouter:
    """The search, document and info routes of ``service``."""
    router = APIRouter(responses=_ERRORS)

    @router.get("/info", tags=["status"], summary="The served index: size, type, model, limits")
    def info() -> dict[str, Any]:
        with service.reading() as index:
            return {
                "documents": len(index), "dim": index.dim, "kind": index.kind, "factory": index.factory,
                "search_params": index.search_params, "external_vectors": index.external_vectors,
                "model": None if index.model is None else index.model.name,
                "path": None if service.path is None else str(service.path), "writable": service.writable,
                "commits": service.commits, "hybrid": index.lexical is not None, "version": __version__,
                "limits": dataclasses.asdict(limits),
            }

    @router.post("/search", tags=["index"], response_model=SearchResponse, summary="Search the index")
    async def search(request: SearchRequest) -> Response:
        k = request.k if "k" in request.model_fields_set else min(request.k, limits.max_k)
        if k > limits.max_k:
            raise ApiError(422, f"k: {k} is more than the server's limit of {limits.max_k}", param="k")
        queries = len(request.queries or request.vectors or [None])
        if queries * k > limits.max_hits:
            raise ApiError(422, f"k: {queries} queries x k={k} = {queries * k} hits, more than the server's "
                                f"limit of {limits.max_hits} per request; ask fewer queries at a time or a "
                                "smaller k", param="k", code="too_many_hits")
        if request.filter is not None:
            check_json_value("filter", request.filter)
        return json_response(await workers.run(_search, service, limits, request, k))

    @router.post("/documents", tags=["index"], response_model=UpsertResponse,
                 summary="Add or replace documents; answers once they are committed to disk")
    async def upsert(request: UpsertRequest) -> dict[str, Any]:
        records, vectors = _records_of(request, limits)

        def apply(index: Any) -> WriteResult:
            ids = index.upsert(records, vectors=vectors, batch_size=len(records))
            stats = index.last_upsert
            value = {"ids": ids, "added": stats.added, "replaced": stats.replaced, "skipped": stats.skipped,
                     "documents": len(index)}
            return WriteResult(value, changed=bool(stats.added or stats.replaced))

        return await _write(service, apply)

    @router.get("/documents/{doc_id:m2v_document_id}", tags=["index"], response_model=DocumentOut,
                summary="One document")
    def get_document(doc_id: str) -> dict[str, Any]:
        with service.reading() as index:
            found = index.get([doc_id])
        if not found:
            raise ApiError(404, f"no document with id {doc_id!r}", param="id", code="not_found")
        return {"id": found[0].id, "text": found[0].text, "metadata": found[0].metadata}

    @router.delete("/documents/{doc_id:m2v_document_id}", tags=["index"], response_model=DeleteResponse,
                   summary="Delete one document; answers once the deletion is committed to disk")
    async def delete_document(doc_id: str) -> dict[str, Any]:
        check_texts("id", [doc_id])

        def apply(index: Any) -> WriteResult:
            removed = index.delete([doc_id])
            return WriteResult({"id": doc_id, "deleted": removed, "documents": len(index)}, changed=removed > 0)

        result = await _write(service, apply)
        if not result["deleted"]:
            raise ApiError(404, f"no document with id {doc_id!r}", param="id", code="not_found")
        return result

    return router


async def _write(service: IndexService, apply: Any) -> Any:
    try:
        future = service.submit(apply)
        return await asyncio.wrap_future(future)
    except Exception as error:  # noqa: BLE001 - mapped to a status and a JSON body
        raise api_error_from(error) from None


def _search(service: IndexService, limits: ServerLimits, request: SearchRequest, k: int) -> dict[str, Any]:
    with service.reading() as index:
        queries, query_vectors = _queries_of(request, index.dim, limits)
        _check_query_kind(request, index.model is None)
        try:
            results = index.search_batch(queries, k, filter=request.filter, nprobe=request.nprobe,
                                         ef_search=request.ef_search, mode=request.mode, alpha=request.alpha,
                                         query_vectors=query_vectors)
        except Exception as error:  # noqa: BLE001 - mapped to a status and a JSON body
            mapped = api_error_from(error)
            if mapped.param in ("queries", "query"):  # the index's argument: whichever the request gave
                mapped.param = next(name for name in ("query", "queries", "vector", "vectors")
                                    if getattr(request, name) is not None)
            raise mapped from None
    if request.include_text:
        total = 0
        for hits in results:
            total += sum(len(hit.text) for hit in hits)
            if total > limits.max_response_text:
                raise ApiError(422, f"the hits' texts come to more than the server's limit of {limits.max_response_text} "
                                    "characters per answer; ask fewer queries or a smaller k, or pass "
                                    "include_text=false", param="include_text", code="response_too_large")
    return {"results": [[{"id": hit.id, "score": hit.score, "text": hit.text if request.include_text else None,
                          "metadata": hit.metadata} for hit in hits] for hits in results]}


def _check_query_kind(request: SearchRequest, without_model: bool) -> None:
    """Refuse, in the request's own fields, what the index would refuse naming its Python arguments:
    text alone for an index without a model, a vector alone for a lexical or hybrid search."""
    texts = request.query is not None or request.queries is not None
    vectors = request.vector is not None or request.vectors is not None
    wants_words = request.mode in ("hybrid", "lexical") or (request.mode is None and request.alpha is not None)
    if texts and not vectors and without_model and request.mode != "lexical":
        raise ApiError(400, "this index holds vectors computed elsewhere and no model to encode text: send vector "
                            "(vectors), alone for a dense search or beside query (queries) for hybrid", param="vector")
    if vectors and not texts and wants_words:
        what = f"mode {request.mode!r}" if request.mode is not None else f"alpha={request.alpha}"
        raise ApiError(400, f"{what} needs query text: a vector alone searches dense only; send query (queries) "
                            "beside vector (vectors) for hybrid search with your own vectors", param="mode")


def _queries_of(request: SearchRequest, dim: int, limits: ServerLimits) -> tuple[Any, np.ndarray | None]:
    """``(queries, query_vectors)``: texts or vectors, or texts with their vectors (query + vector,
    queries + vectors: hybrid search of an index of vectors computed elsewhere)."""
    given = [name for name in ("query", "queries", "vector", "vectors") if getattr(request, name) is not None]
    if given not in (["query"], ["queries"], ["vector"], ["vectors"], ["query", "vector"], ["queries", "vectors"]):
        raise ApiError(422, "give one of query, queries, vector, vectors (or query with vector, queries with "
                            "vectors, for hybrid search with your own vectors)"
                            + (f"; got {', '.join(given)}" if given else ""), param=given[-1] if given else "query")
    texts = None
    if request.query is not None:
        check_texts("query", [request.query], require_words=True)
        texts = [request.query]
    elif request.queries is not None:
        check_batch("queries", len(request.queries), limits.max_batch)
        check_texts("queries", request.queries, require_words=True)
        texts = list(request.queries)
    rows = [request.vector] if request.vector is not None else request.vectors
    if rows is None:
        return texts, None
    field = "vector" if request.vector is not None else "vectors"
    check_batch(field, len(rows), limits.max_batch)
    matrix = as_matrix(field, rows, dim)
    if texts is not None and len(texts) != len(matrix):
        raise ApiError(422, f"{len(texts)} queries but {len(matrix)} vectors", param=field)
    return (texts, matrix) if texts is not None else (matrix, None)


def _records_of(request: UpsertRequest, limits: ServerLimits) -> tuple[list[dict[str, Any]], np.ndarray | None]:
    count = len(request.texts)
    check_batch("texts", count, limits.max_batch)
    check_texts("texts", request.texts)
    for field in ("ids", "metadatas", "vectors"):
        values = getattr(request, field)
        if values is not None and len(values) != count:
            raise ApiError(422, f"{field}: {len(values)} items for {count} texts", param=field)
    if request.ids is not None:
        check_texts("ids", request.ids)
        if any(not doc_id for doc_id in request.ids):
            raise ApiError(422, f"ids[{request.ids.index('')}] is empty", param="ids")
        duplicates = len(request.ids) - len(set(request.ids))
        if duplicates:
            raise ApiError(422, f"ids: {duplicates} repeated id(s) in one request", param="ids")
    metadatas = request.metadatas or [None] * count
    for position, metadata in enumerate(metadatas):
        check_json_value(f"metadatas[{position}]", metadata)
    ids = request.ids or [uuid.uuid4().hex for _ in range(count)]
    records = [{"id": doc_id, "text": text, "metadata": metadata or {}}
               for doc_id, text, metadata in zip(ids, request.texts, metadatas)]
    vectors = None if request.vectors is None else as_matrix("vectors", request.vectors, None)
    return records, vectors
