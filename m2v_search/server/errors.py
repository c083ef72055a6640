"""Every error the server returns is a JSON body ``{"error": {"message", "type", "param", "code"}}``
(the OpenAI error shape, which its clients display) with a fitting status; never a traceback."""

from __future__ import annotations

import errno
import logging
import sqlite3
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from m2v_search.errors import ModelLoadError, system_error
from m2v_search.index.errors import (
    IndexConflictError,
    IndexCorruptError,
    IndexLockedError,
    IndexNotFoundError,
    ModelMismatchError,
)
from m2v_search.index.filters import FilterError
from m2v_search.server.service import ReadOnlyError, WriterBusyError

log = logging.getLogger("m2v_search.server")

_TYPES = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
          404: "not_found_error", 405: "invalid_request_error", 409: "conflict_error",
          413: "request_too_large", 422: "invalid_request_error", 503: "overloaded_error"}
_TYPES_BY_CODE = {"index_unusable": "server_error"}  # a 503 that waiting out a busy spell will not mend


class ApiError(Exception):
    """An error answered with ``status`` and a JSON error body.

    Args:
        status: HTTP status code.
        message: what was wrong, naming the field or value at fault.
        param: the request field at fault, if one.
        code: a short machine-readable code (e.g. ``model_not_found``).
    """

    def __init__(self, status: int, message: str, *, param: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.param = param
        self.code = code


def error_body(status: int, message: str, *, param: str | None = None, code: str | None = None) -> dict[str, Any]:
    """The JSON body of an error answer."""
    kind = _TYPES_BY_CODE.get(code or "") or _TYPES.get(status, "server_error" if status >= 500 else "invalid_request_error")
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


def error_response(status: int, message: str, *, param: str | None = None, code: str | None = None,
                   headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(error_body(status, message, param=param, code=code), status_code=status, headers=headers)


def api_error_from(error: BaseException) -> ApiError:
    """The HTTP answer for an exception raised by the index, the model or the writer thread."""
    if isinstance(error, ApiError):
        return error
    error = system_error(error) or error  # SQLite's "database or disk is full" is a full disk, not a bad filter
    message = str(error) or type(error).__name__
    if isinstance(error, ReadOnlyError):
        return ApiError(403, message, code="read_only")
    if isinstance(error, WriterBusyError):
        return ApiError(503, message, code="writer_busy")
    if isinstance(error, (IndexLockedError, IndexConflictError)):
        return ApiError(409, message, code="index_locked" if isinstance(error, IndexLockedError) else "conflict")
    if isinstance(error, (IndexCorruptError, IndexNotFoundError, ModelMismatchError, ModelLoadError)):
        # the service's own index is gone or broken: not the request's fault, and not a bug here
        return ApiError(503, f"the index on disk cannot be used: {message}", code="index_unusable")
    if isinstance(error, OSError):
        full = error.errno in (errno.ENOSPC, errno.EDQUOT)
        return ApiError(507 if full else 500, f"could not write the index: {message}", code="storage_error")
    if isinstance(error, FilterError):
        return ApiError(400, message, param="filter", code="invalid_filter")
    if isinstance(error, sqlite3.Error):
        return ApiError(400, f"the filter could not be evaluated: {message}", param="filter")
    if isinstance(error, (ValueError, TypeError, KeyError, UnicodeError, OverflowError)):
        return ApiError(400, message, param=getattr(error, "param", None))  # ArgumentError names it
    log.error("unexpected error", exc_info=error)
    return ApiError(500, f"internal error ({type(error).__name__}); see the server log", code="internal_error")


def _validation_message(error: RequestValidationError) -> tuple[str, str | None]:
    parts: list[str] = []
    first_param: str | None = None
    for item in error.errors()[:5]:
        location = [str(part) for part in item.get("loc", ()) if part != "body"]
        param = ".".join(location) or None
        first_param = first_param or param
        if item.get("type") == "json_invalid":
            detail = item.get("ctx", {}).get("error", "")
            parts.append(f"the body is not valid JSON ({detail} at character {location[-1] if location else '?'})")
            first_param = None
        else:
            parts.append(f"{param or 'body'}: {item.get('msg', 'invalid')}")
    extra = len(error.errors()) - 5
    if extra > 0:
        parts.append(f"and {extra} more")
    return "; ".join(parts) or "invalid request", first_param


def _is_json(content_type: str | None) -> bool:
    """Whether a Content-Type is one FastAPI parses as JSON (``application/json``, ``application/*+json``)."""
    media = (content_type or "").split(";", 1)[0].strip().lower()
    main, _, sub = media.partition("/")
    return main == "application" and (sub == "json" or sub.endswith("+json"))


def install_error_handlers(app: FastAPI) -> None:
    """Answer validation errors, HTTP errors, ApiErrors and unexpected errors with a JSON error body."""

    async def on_validation(request: Request, error: Exception) -> JSONResponse:
        assert isinstance(error, RequestValidationError)
        content_type = request.headers.get("content-type")
        if not _is_json(content_type):  # FastAPI then leaves the body unparsed: say why, not "Field required"
            return error_response(415, f"the body must be JSON, sent with 'Content-Type: application/json'; "
                                       f"got {'Content-Type: ' + content_type if content_type else 'no Content-Type'}",
                                  param="content-type", code="unsupported_media_type")
        message, param = _validation_message(error)
        return error_response(422, message, param=param)

    async def on_http(_: Request, error: Exception) -> JSONResponse:
        assert isinstance(error, StarletteHTTPException)
        message = str(error.detail)
        if isinstance(error.__cause__, RecursionError):  # json.loads gave up on the nesting
            message = "the body is not valid JSON here: it is nested too deeply to parse"
        return error_response(error.status_code, message, headers=getattr(error, "headers", None))

    async def on_api_error(_: Request, error: Exception) -> JSONResponse:
        assert isinstance(error, ApiError)
        headers = {"Retry-After": "1"} if error.status == 503 else None
        return error_response(error.status, error.message, param=error.param, code=error.code, headers=headers)

    async def on_unexpected(_: Request, error: Exception) -> JSONResponse:
        answer = api_error_from(error)
        return error_response(answer.status, answer.message, param=answer.param, code=answer.code)

    app.add_exception_handler(RequestValidationError, on_validation)
    app.add_exception_handler(StarletteHTTPException, on_http)
    app.add_exception_handler(ApiError, on_api_error)
    app.add_exception_handler(Exception, on_unexpected)
