"""Checks on what a host library hands to an :class:`~m2v_search.binding.IndexBinding`: vectors,
ids, metadata and counts, each failure a ValueError naming the place (``metadatas[3]['score']``)."""

from __future__ import annotations

import math
import uuid
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from m2v_search.index.records import refuse_single_id

if TYPE_CHECKING:  # pragma: no cover
    from m2v_search.index import VectorIndex

#: Deepest nesting of dicts and lists accepted inside one document's metadata.
MAX_METADATA_DEPTH = 32


def finite_matrix(vectors: Any, rows: int, what: str) -> np.ndarray:
    """``vectors`` as a float32 (rows, dim) matrix of finite numbers.

    Raises:
        ValueError: rows of different lengths, values that are not numbers, a wrong shape, or
            NaN/infinite values (naming the first bad row).
    """
    try:
        matrix = np.asarray(vectors, dtype=np.float32)
    except (TypeError, ValueError):
        lengths = sorted({len(row) for row in vectors if hasattr(row, "__len__")})
        if len(lengths) > 1:
            raise ValueError(f"{what} has rows of different lengths: {lengths[:5]}") from None
        raise ValueError(f"{what} must hold numbers only, in ({rows}, dim) rows") from None
    if matrix.ndim != 2 or len(matrix) != rows:
        raise ValueError(f"{what} must have shape ({rows}, dim), got {matrix.shape}")
    bad = ~np.isfinite(matrix).all(axis=1)
    if bad.any():
        raise ValueError(f"{what}[{int(np.argmax(bad))}] holds NaN or infinite values")
    return matrix


def refuse_repeated_ids(ids: Sequence[str]) -> None:
    """One call may not give an id twice: the later document would silently replace the earlier.

    Raises:
        ValueError: naming the two positions and the id.
    """
    if len(set(ids)) == len(ids):
        return
    first: dict[str, int] = {}
    for position, doc_id in enumerate(ids):
        if doc_id in first:
            raise ValueError(f"ids[{first[doc_id]}] and ids[{position}] are both {doc_id!r} (ids are compared as "
                             "text); give each document of one call its own id")
        first[doc_id] = position


def check_metadata(metadata: Any, where: str) -> None:
    """Refuse a document's metadata that the index cannot store as it was given.

    It must be None or a mapping with string keys (a JSON object), nested at most
    ``MAX_METADATA_DEPTH`` levels, without NaN or infinity anywhere (they are not JSON and no
    filter can match them).

    Raises:
        ValueError: naming the place, e.g. ``metadatas[3]['score']``.
    """
    _require_mapping(metadata, where)
    check_finite_metadata(metadata, where)


def _require_mapping(metadata: Any, where: str) -> None:
    if metadata is not None and not isinstance(metadata, Mapping):
        raise ValueError(f"{where} must be a dict of metadata (or None), got {type(metadata).__name__}")


def check_finite_metadata(metadata: Any, where: str, depth: int = 0) -> None:
    """Refuse numpy values (convert them with ``.item()`` or ``.tolist()``), NaN and infinity
    anywhere in a metadata value, integers beyond 64 bits (SQLite would compare them as rounded
    floats), keys that are not strings, and nesting deeper than ``MAX_METADATA_DEPTH``. Values of
    other types pass, for a host library that serialises them itself.

    Raises:
        ValueError: naming the place, e.g. ``metadatas[3]['score']``.
    """
    _json_value(metadata, where, depth, convert=False)


def json_metadata(metadata: Any, where: str) -> Any:
    """A copy of a metadata value as plain JSON values: numpy scalars and arrays become the equal
    Python values (``np.int64(3)`` -> 3, arrays -> lists), tuples lists, mappings dicts; then
    checked as :func:`check_finite_metadata` checks, and values of other types refused.

    Raises:
        ValueError: naming the place, e.g. ``metadatas[3]['score']``.
    """
    return _json_value(metadata, where, 0, convert=True)


def _json_value(value: Any, where: str, depth: int, convert: bool) -> Any:
    """``value`` checked (see :func:`check_finite_metadata`); with ``convert``, as plain JSON values."""
    if depth > MAX_METADATA_DEPTH:
        raise ValueError(f"{where} is nested more than {MAX_METADATA_DEPTH} levels deep")
    if convert and isinstance(value, (np.generic, np.ndarray)):
        value = value.tolist()  # np.float32 -> float, np.bool_ -> bool, arrays -> (nested) lists
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"{where} is {value!r}; metadata values must be finite numbers (NaN and "
                         "infinity are not JSON): store null or leave the key out")
    if isinstance(value, int) and not -2**63 <= value < 2**63:
        raise ValueError(f"{where} is {value}, an integer beyond 64 bits, which filters cannot compare "
                         "exactly; store it as a string")
    if value is None or isinstance(value, (str, int, float)):
        return value
    if isinstance(value, Mapping):
        for key in value:
            if not isinstance(key, str):
                raise ValueError(f"{where} has the key {key!r} ({type(key).__name__}); metadata keys must be "
                                 "strings (JSON object keys)")
        items = {key: _json_value(item, f"{where}[{key!r}]", depth + 1, convert)
                 for key, item in value.items()}
        return items if convert else value
    if isinstance(value, (list, tuple)):
        listed = [_json_value(item, f"{where}[{i}]", depth + 1, convert) for i, item in enumerate(value)]
        return listed if convert else value
    if isinstance(value, (np.generic, np.ndarray)):
        raise ValueError(f"{where} is of type {type(value).__name__} (a numpy value: convert it with .item() "
                         "or .tolist()); metadata values must be JSON values")
    if convert:
        raise ValueError(f"{where} is of type {type(value).__name__}; metadata values must be JSON values: "
                         "str, int, float, bool, None, and lists and dicts of them")
    return value  # a host library that serialises it itself (LlamaIndex: dates as ISO text)


def check_count(name: str, value: Any) -> None:
    """Refuse a count (``k``, ``fetch_k``, ``dim``) that is not a positive integer (bools and floats too).

    Raises:
        ValueError: naming ``name`` and the value.
    """
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")


def check_sources(index: Any, model: Any, dim: Any) -> None:
    """Refuse conflicting sources of a binding's index: an index with a model or another ``dim``,
    a model with a ``dim``, or a ``dim`` that is not a positive integer.

    Raises:
        TypeError: ``index`` is not a VectorIndex.
        ValueError: the conflict, named.
    """
    from m2v_search.index import VectorIndex

    if dim is not None:
        check_count("dim", dim)  # 1.5 was silently made 1
    if index is not None:
        if not isinstance(index, VectorIndex):
            raise TypeError(f"index must be an m2v_search.index.VectorIndex, got {type(index).__name__}")
        if dim is not None and dim != index.dim:
            raise ValueError(f"dim={dim} but the index holds {index.dim}-dimensional vectors")
        if model is not None:
            raise ValueError("pass either an index or model=, not both")
    elif model is not None and dim is not None:
        raise ValueError("pass either model= (an m2v model) or dim= (vectors computed elsewhere), not both")


def checked_ids(ids: Sequence[Any] | None, count: int) -> list[str] | None:
    """``ids`` as text, new uuid4 hex ids where they are None.

    Raises:
        ValueError: not ``count`` of them, or one given twice.
        TypeError: a single str instead of a list of ids.
    """
    if ids is None:
        return None
    refuse_single_id(ids)
    if len(ids) != count:
        raise ValueError(f"{count} texts but {len(ids)} ids")
    texts = [uuid.uuid4().hex if doc_id is None else str(doc_id) for doc_id in ids]
    refuse_repeated_ids(texts)
    return texts


def checked_metadatas(metadatas: Sequence[Mapping[str, Any] | None] | None, count: int
                      ) -> list[dict[str, Any]] | None:
    """``metadatas`` as plain dicts (``{}`` for None) of JSON values (see :func:`json_metadata`:
    numpy values become the equal Python values), each checked as :func:`check_metadata` checks.

    Raises:
        ValueError: not ``count`` of them, or one the index cannot store (naming the place).
    """
    if metadatas is None:
        return None
    if len(metadatas) != count:
        raise ValueError(f"{count} texts but {len(metadatas)} metadatas")
    checked = []
    for position, metadata in enumerate(metadatas):
        _require_mapping(metadata, f"metadatas[{position}]")
        checked.append(json_metadata(metadata, f"metadatas[{position}]") if metadata else {})
    return checked


def finite_vector(query: Any) -> np.ndarray:
    """A query vector as a flat float32 array of finite numbers.

    Raises:
        ValueError: not flat, or NaN/infinite values.
    """
    try:
        vector = np.asarray(query, dtype=np.float32)
    except (TypeError, ValueError):
        raise ValueError(f"a query vector must be a flat list of numbers, got {type(query).__name__} "
                         f"{str(query)[:60]}") from None
    if vector.ndim != 1:
        raise ValueError(f"a query vector must be a flat list of numbers, got shape {vector.shape}")
    if not np.isfinite(vector).all():
        raise ValueError("the query vector holds NaN or infinite values")
    return vector


def size_mismatch(index: VectorIndex, dim: int) -> str:
    """The message for ``dim``-dimensional vectors given to ``index``."""
    if index.model is not None:
        held = f"the model {index.model.name!r} gives {index.dim}-dimensional vectors"
    else:
        held = f"the index was made for {index.dim}-dimensional vectors (dim={index.dim})"
    return (f"{held} but {dim}-dimensional embeddings were given; use the same model for the store "
            "and the embeddings (or a new store)")


def checked_filter(filter: dict[str, Any] | None) -> dict[str, Any] | None:
    """``filter`` (an m2v-search filter dict) if it is well formed.

    Raises:
        FilterError: it is not (naming the place), as a search with it would.
    """
    from m2v_search.index.filters import filter_to_sql

    filter_to_sql(filter)
    return filter


def check_search_options(mode: str | None, alpha: float | None, fusion: str) -> None:
    """Check a search's mode, hybrid weight and fusion method (before anything is searched, so that
    an empty store refuses them too).

    Raises:
        ValueError: an unknown mode or fusion method, or ``alpha`` not a number in [0, 1].
    """
    from m2v_search.index.fusion import check_alpha, check_method, check_mode

    if mode is not None:
        check_mode(mode)
    if alpha is not None:
        check_alpha(alpha)
    check_method(fusion)
