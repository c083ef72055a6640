"""Checks on request values that the schemas cannot express; each failure names the field."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from m2v_search.server.errors import ApiError

INT64_MAX = 2**63 - 1
MAX_JSON_DEPTH = 32


def check_batch(field: str, count: int, limit: int) -> None:
    """413 when a request carries more items than the server accepts at once."""
    if count > limit:
        raise ApiError(413, f"{field}: {count} items, more than the server's limit of {limit} per request",
                       param=field, code="batch_too_large")


def check_texts(field: str, texts: Sequence[str], *, require_words: bool = False) -> None:
    """400 for a text that is not valid Unicode (a lone surrogate from a ``\\ud800`` escape), and with
    ``require_words`` for an empty or white-space text (its vector would be all zeros: every cosine
    with it NaN or 0, as OpenAI refuses an empty input)."""
    for position, text in enumerate(texts):
        name = f"{field}[{position}]" if len(texts) > 1 or field.endswith("s") else field
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as error:
            raise ApiError(400, f"{name} is not valid Unicode (a lone surrogate at character {error.start})",
                           param=name) from None
        if require_words and not text.strip():
            raise ApiError(400, f"{name} is {'empty' if not text else 'only white space'}: it has no words to "
                                "embed or search for", param=field)


def check_json_value(field: str, value: Any, depth: int = 0) -> None:
    """400 for NaN or infinity, an integer beyond int64, a text with a lone surrogate, or
    nesting deeper than ``MAX_JSON_DEPTH`` anywhere inside ``value`` (metadata, filters)."""
    if depth > MAX_JSON_DEPTH:
        raise ApiError(400, f"{field} is nested more than {MAX_JSON_DEPTH} levels deep", param=field)
    if isinstance(value, bool) or value is None:
        return
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ApiError(400, f"{field} holds {value!r}, which JSON cannot store; use null or a number",
                           param=field)
    elif isinstance(value, int):
        if not -INT64_MAX - 1 <= value <= INT64_MAX:
            raise ApiError(400, f"{field} holds an integer beyond 64 bits ({value})", param=field)
    elif isinstance(value, str):
        check_texts(field, [value])
    elif isinstance(value, dict):
        for key, item in value.items():
            check_texts(f"{field} key", [key])
            check_json_value(f"{field}.{key}", item, depth + 1)
    elif isinstance(value, list):
        for position, item in enumerate(value):
            check_json_value(f"{field}[{position}]", item, depth + 1)


def as_matrix(field: str, rows: list[list[float]], dim: int | None) -> np.ndarray:
    """A (n, dim) float32 matrix of the vectors in ``field``; 400 for ragged rows or a wrong width."""
    widths = {len(row) for row in rows}
    if len(widths) > 1:
        raise ApiError(400, f"{field}: rows of different lengths ({sorted(widths)[:5]})", param=field)
    with np.errstate(over="ignore"):
        matrix = np.asarray(rows, dtype=np.float32).reshape(len(rows), -1 if rows else (dim or 0))
    if not np.isfinite(matrix).all():
        raise ApiError(400, f"{field}: a value overflows float32", param=field)
    if dim is not None and matrix.shape[1] != dim:
        raise ApiError(400, f"{field}: vectors of {matrix.shape[1]} values, but the index holds {dim}-dim vectors",
                       param=field)
    return matrix
