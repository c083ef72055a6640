"""Index backends: one per family of FAISS index, behind the interface in :mod:`.base`.

``BACKENDS`` maps each index kind to the class that serves it; a new kind is a new module
plus one line here (see :mod:`m2v_search.index.backends.base`).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from m2v_search.index import factory as factories
from m2v_search.index.backends.base import Backend, SearchOptions
from m2v_search.index.backends.binary import BinaryBackend, BinaryHnswBackend
from m2v_search.index.backends.flat import FlatBackend
from m2v_search.index.backends.hnsw import HnswBackend
from m2v_search.index.backends.ivf import IvfBackend
from m2v_search.index.vectors import training_sample

BACKENDS: dict[str, type[Backend]] = {
    "flat": FlatBackend,
    "custom": FlatBackend,
    "hnsw": HnswBackend,
    "ivf": IvfBackend,
    "ivf-pq": IvfBackend,
    "binary": BinaryBackend,
    "binary-hnsw": BinaryHnswBackend,
}
_FAISS_FLOAT = (FlatBackend, HnswBackend, IvfBackend)

__all__ = ["BACKENDS", "Backend", "BinaryBackend", "BinaryHnswBackend", "FlatBackend", "HnswBackend", "IvfBackend", "SearchOptions", "backend_class",
           "conversion_target", "convert", "create_backend", "load_backend", "wrap_index"]


def backend_class(spec: factories.IndexSpec, index: Any = None) -> type[Backend]:
    """The backend class for ``spec`` (and, for FAISS float indexes, the structure of ``index``).

    Args:
        spec: The index's kind, factory and search defaults.
        index: The FAISS index, when built: a custom factory's structure (an HNSW graph, IVF
            lists) decides which of the built-in backends searches it.

    Returns:
        The Backend subclass.

    Raises:
        ValueError: No backend serves ``spec.kind``.
    """
    registered = BACKENDS.get(spec.kind)
    if registered is None:
        raise ValueError(f"no index backend for kind {spec.kind!r}; known kinds: {', '.join(BACKENDS)}")
    if registered in _FAISS_FLOAT and index is not None:
        if factories.hnsw_of(index) is not None:
            return HnswBackend
        if factories.ivf_of(index) is not None:
            return IvfBackend
        return FlatBackend
    return registered


def wrap_index(index: Any, spec: factories.IndexSpec, tombstones: np.ndarray | None = None) -> Backend:
    """A backend over an existing FAISS ``index``.

    Args:
        index: The FAISS index.
        spec: What it is.
        tombstones: Ids deleted but still stored.

    Returns:
        The backend.
    """
    return backend_class(spec, index)(index, spec, tombstones)


def create_backend(spec: factories.IndexSpec, dim: int) -> Backend:
    """A new, empty backend for ``spec`` (see :meth:`Backend.create`).

    Args:
        spec: The kind, factory and search defaults.
        dim: Dimensions of the vectors.

    Returns:
        The backend (untrained for IVF).

    Raises:
        ValueError: ``spec`` cannot be built.
    """
    backend = backend_class(spec).create(spec, dim)
    return wrap_index(backend.index, spec) if type(backend) in _FAISS_FLOAT else backend


def load_backend(data: bytes | np.ndarray, spec: factories.IndexSpec, tombstones: np.ndarray | None = None
                 ) -> Backend:
    """A backend from serialised bytes (see :meth:`Backend.from_bytes`).

    Args:
        data: The verified bytes of the index file.
        spec: What the manifest records for it.
        tombstones: Ids deleted but still stored.

    Returns:
        The backend.

    Raises:
        IndexCorruptError: ``data`` cannot be parsed.
    """
    backend = backend_class(spec).from_bytes(data, spec, tombstones)
    return wrap_index(backend.index, spec, tombstones) if type(backend) in _FAISS_FLOAT else backend


def convert(source: Backend, target: factories.IndexSpec, *, force: bool = False) -> Backend | None:
    """A new backend of kind ``target`` holding ``source``'s live vectors (tombstones dropped).

    Args:
        source: The backend to copy.
        target: The kind to build.
        force: Train even on fewer vectors than the target wants (a factory the user chose).

    Returns:
        The new backend, or None when there are too few vectors to train the target well.

    Raises:
        ValueError: ``force`` is set and FAISS cannot train the target on these vectors.
    """
    ids, vectors = source.live_vectors()
    new = create_backend(target, source.dim)
    if not new.is_trained:
        if len(ids) < new.min_training_vectors() and not force:
            return None
        try:
            new.train(training_sample(vectors))
        except RuntimeError as error:  # e.g. more IVF lists or PQ centroids than vectors
            raise ValueError(f"FAISS cannot train factory {target.factory!r} on {len(ids)} vectors: "
                             f"{factories.faiss_reason(error)}; add documents or choose a smaller index") from None
    new.add(ids, vectors)
    return new


def conversion_target(backend: Backend, requested: dict[str, Any], count: int) -> factories.IndexSpec | None:
    """The index ``backend`` should become before a save, or None to keep it.

    An exact (flat) staging index becomes the requested kind (``auto`` picks by size); an index
    with many tombstones is rebuilt as the same kind.

    Args:
        backend: The index in use.
        requested: What was asked for (``kind``, ``factory``, ``memory_budget``).
        count: Live documents.

    Returns:
        The spec to convert to, or None.
    """
    if backend.spec.kind == "flat" and count:
        if requested.get("factory"):
            target = factories.custom_spec(requested["factory"])
        else:
            target = factories.resolve(requested.get("kind", "auto"), count, backend.dim,
                                       requested.get("memory_budget"))
            if requested.get("rescore") and target.kind in factories.BINARY_KINDS:
                target.params["rescore"] = int(requested["rescore"])
        return None if target.factory == backend.spec.factory else target
    if backend.needs_compaction():
        return backend.spec
    return None
