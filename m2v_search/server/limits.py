"""Request limits of the HTTP server (plain data; no web framework imported here)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

DEFAULT_MAX_BODY_BYTES = 8 * 1024 * 1024
DEFAULT_MAX_BATCH = 2048  # texts (or vectors, or documents) in one request; OpenAI's own limit
DEFAULT_MAX_K = 1000
DEFAULT_MAX_HITS = 100_000  # queries x k in one search: 2048 x 1000 hits would be gigabytes of JSON
DEFAULT_MAX_PENDING_WRITES = 64
DEFAULT_MAX_RESPONSE_TEXT = 32 * 1024 * 1024  # characters of hit texts in one search answer


def default_compute_threads() -> int:
    """One thread per core, at most 8: more only make CPU-bound requests fight over the GIL."""
    return max(1, min(8, os.cpu_count() or 1))


@dataclass(frozen=True)
class ServerLimits:
    """Bounds the server enforces on every request.

    Attributes:
        max_body_bytes: largest request body; a larger one gets 413 before it is parsed.
        max_batch: most texts, queries, vectors or documents in one request (413 beyond).
        max_k: largest ``k`` a search may ask for (422 beyond).
        max_hits: largest number of queries times ``k`` in one search (422 beyond), which bounds
            the memory one answer takes.
        max_response_text: most characters of hit texts in one search answer (422 beyond: a
            few queries hitting one long document would otherwise build gigabytes of JSON).
        max_pending_writes: writes waiting for the writer thread; more get 503 (try again).
        compute_threads: searches and embeddings computed at once; more requests wait their
            turn (queued, not refused).
    """

    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    max_batch: int = DEFAULT_MAX_BATCH
    max_k: int = DEFAULT_MAX_K
    max_hits: int = DEFAULT_MAX_HITS
    max_response_text: int = DEFAULT_MAX_RESPONSE_TEXT
    max_pending_writes: int = DEFAULT_MAX_PENDING_WRITES
    compute_threads: int = field(default_factory=default_compute_threads)

    def __post_init__(self) -> None:
        for name in ("max_body_bytes", "max_batch", "max_k", "max_hits", "max_response_text", "max_pending_writes",
                     "compute_threads"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"ServerLimits.{name} must be a positive integer, got {value!r}")
