"""The records an index stores and the hits a search returns."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from m2v_search.index.docstore import metadata_json, utf8


@dataclass
class Record:
    """One stored document.

    Attributes:
        id: The document's id (a non-empty string).
        text: Its text.
        metadata: JSON-serialisable metadata (filters match on it).
    """

    id: str
    text: str
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass
class Hit:
    """One search result.

    Attributes:
        id: The document's id.
        score: Cosine similarity with the query (higher is better; approximate for PQ/SQ indexes
            of external vectors).
        text: The document's text.
        metadata: Its metadata (a copy).
        vector: Its unit vector, when asked for (``include_vectors=True``).
    """

    id: str
    score: float
    text: str
    metadata: dict[str, Any]
    vector: np.ndarray | None = None


@dataclass
class UpsertStats:
    """What the last upsert did.

    Attributes:
        added: New documents.
        replaced: Documents whose id was stored with other content.
        skipped: Documents stored already with the same id and content.
    """

    added: int = 0
    replaced: int = 0
    skipped: int = 0


def coerce_record(record: Record | dict[str, Any], position: int) -> tuple[str, str, str]:
    """``(id, text, metadata_json)`` of a record, with errors naming its position.

    Args:
        record: A Record, or a dict with ``id``, ``text`` and optional ``metadata``.
        position: Its position in the input (for messages).

    Returns:
        The id (an int id becomes its decimal string), the text and the canonical metadata JSON.

    Raises:
        ValueError: The id is missing or empty, or the metadata cannot be written as JSON.
        TypeError: The record, its text or its metadata has the wrong type.
    """
    if isinstance(record, Record):
        doc_id, text, metadata = record.id, record.text, record.metadata
    elif isinstance(record, dict):
        unknown = [key for key in record if key not in RECORD_KEYS]
        if unknown:  # a misspelt "metadata" would otherwise be dropped without a word
            raise ValueError(f"records[{position}] has the key {str(unknown[0])!r}, which a record does not take "
                             f"(keys: {', '.join(RECORD_KEYS)})")
        if "text" not in record:
            raise ValueError(f"records[{position}] has no 'text'")
        if "id" not in record or record["id"] is None:
            raise ValueError(f"records[{position}] has no 'id'")
        doc_id, text, metadata = record["id"], record["text"], record.get("metadata") or {}
    else:
        raise TypeError(f"records[{position}] is {type(record).__name__}; expected a Record or a dict")
    if isinstance(doc_id, (int, np.integer)) and not isinstance(doc_id, bool):
        doc_id = str(doc_id)
    if not isinstance(doc_id, str) or not doc_id:
        raise ValueError(f"records[{position}] id must be a non-empty str, got {doc_id!r}")
    if not isinstance(text, str):
        raise TypeError(f"records[{position}] text is {type(text).__name__}, expected str")
    if not isinstance(metadata, dict):
        raise TypeError(f"records[{position}] metadata is {type(metadata).__name__}, expected a dict")
    for value, what in ((doc_id, "id"), (text, "text")):  # checked with the rest, before any record is written
        if not value.isascii():  # ASCII (a flag Python keeps) holds no lone surrogate
            utf8(value, f"records[{position}] {what}")
    try:
        return doc_id, text, metadata_json(metadata)
    except (TypeError, ValueError) as error:
        where = _first_non_json(metadata, f"records[{position}] metadata")
        if where is not None:
            raise ValueError(where) from None
        raise ValueError(f"records[{position}] metadata is not JSON-serialisable: {error}") from None


RECORD_KEYS = ("id", "text", "metadata")
_JSON_SCALARS = (str, int, float, bool, type(None))


def _first_non_json(value: Any, path: str) -> str | None:
    """Where ``value`` holds a value JSON has no type for (a numpy scalar, a set, a date), and what
    it is; None when every value has a JSON type (the problem is elsewhere: NaN, depth, ...)."""
    stack = [(value, path)]
    while stack:
        item, where = stack.pop()
        if isinstance(item, dict):
            stack.extend((inner, f"{where}[{key!r}]") for key, inner in reversed(list(item.items())))
        elif isinstance(item, (list, tuple)):
            stack.extend((inner, f"{where}[{i}]") for i, inner in reversed(list(enumerate(item))))
        elif not isinstance(item, _JSON_SCALARS):
            kind = type(item)
            hint = " (convert it with .item() or int()/float()/bool())" if kind.__module__ == "numpy" else ""
            return f"{where} is {kind.__module__}.{kind.__qualname__}, which JSON cannot store{hint}"
    return None


def refuse_single_id(ids: Any, name: str = "ids") -> None:
    """Refuse a lone str (or bytes) where a list of ids belongs: being iterable, it would be taken
    for the ids of its characters.

    Raises:
        TypeError: ``ids`` is a str or bytes.
    """
    if isinstance(ids, (str, bytes)):
        raise TypeError(f"{name} must be a list of ids, got the single {type(ids).__name__} {ids[:80]!r}; "
                        f"pass [{ids[:80]!r}]")


def id_list(ids: Any, name: str = "ids") -> list[str]:
    """``ids`` as a list of strings (an int id becomes its decimal string), refusing a lone str.

    A str is iterable, so ``delete("doc-1")`` would otherwise delete the ids ``"d"``, ``"o"``, ...

    Args:
        ids: An iterable of ids.
        name: What to call them in messages.

    Returns:
        The ids, in the order given.

    Raises:
        TypeError: ``ids`` is a str or bytes, is not iterable, or holds an id that is neither a str
            nor an int.
    """
    refuse_single_id(ids, name)
    try:
        items = list(ids)
    except TypeError:
        raise TypeError(f"{name} must be a list of ids, got {type(ids).__name__}") from None
    out = []
    for position, doc_id in enumerate(items):
        if isinstance(doc_id, (int, np.integer)) and not isinstance(doc_id, bool):
            doc_id = str(doc_id)
        if not isinstance(doc_id, str):  # str() would make None "None" and b"x" "b'x'": another document's id
            raise TypeError(f"{name}[{position}] must be a str or an int, got {type(doc_id).__name__} {doc_id!r:.80}")
        out.append(doc_id)
    return out
