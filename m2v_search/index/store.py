"""VectorIndex: documents in a SQLite docstore, their unit vectors in an index backend, saved
atomically as generations of a directory.

Layout of an index directory::

    manifest.json              commit point: format, model, index, counts, sha256 of every file
    index.<generation>.faiss   the backend's serialised FAISS index (ids = docstore int ids); the
                               binary kinds' own format is index.<generation>.m2vbin
    docstore.<generation>.sqlite
    .lock                      writer lock (flock)

The front object here owns the records, the docstore, the model binding and the commits
(:mod:`m2v_search.index.generations`); the backend (:mod:`m2v_search.index.backends`) owns the
FAISS index, its ids and tombstones, and how each kind is trained, searched and converted.
Nothing is pickled.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

import numpy as np

from m2v_search.index import factory as factories
from m2v_search.index.backends import (
    Backend,
    backend_class,
    conversion_target,
    convert,
    create_backend,
    load_backend,
)
from m2v_search.index.checks import consistency_problems
from m2v_search.index import lexical as lexical_part
from m2v_search.index.docstore import DocStore
from m2v_search.index.errors import IndexConflictError, IndexCorruptError
from m2v_search.index.generations import (
    commit_generation,
    docstore_from_bytes,
    generation_on_disk,
    read_verified_generation,
)
from m2v_search.index.hub_methods import HubMethods
from m2v_search.index.record_methods import RecordMethods
from m2v_search.index.hybrid import HybridSearch
from m2v_search.index.locking import WriterLock
from m2v_search.index.manifest import MANIFEST_NAME, file_entry, index_manifest, refuse_foreign_manifest
from m2v_search.index.model_binding import load_model, model_for_manifest, model_source
from m2v_search.index.records import Hit, Record, UpsertStats
from m2v_search.index.urls import is_url, local_path
from m2v_search.index_kinds import index_file_suffix

if TYPE_CHECKING:  # pragma: no cover
    from m2v_search.model import StaticModel

__all__ = ["Hit", "Record", "UpsertStats", "VectorIndex", "model_source"]

MAX_DIM = 65_536  # widest vectors an index takes (FAISS takes more, but no embedding model is this wide)


class VectorIndex(HubMethods, RecordMethods, HybridSearch):
    """A document collection bound to a model and saved as generations of a directory.

    Create with :meth:`create` (in memory until :meth:`save`) or :meth:`open` (an existing
    directory, checksums verified first). Thread-safe: one lock guards every operation.

    Args:
        model: The model that encodes texts, or None for vectors computed elsewhere.
        model_path: The model's source as the manifest records it.
        requested: The index asked for (``kind``, ``factory``, ``memory_budget``); a save
            converts to it once there are enough vectors.
        docstore: The documents.
        path: Where :meth:`save` writes by default.
        index: A FAISS index to wrap (with ``spec``), when no ``backend`` is given.
        spec: What ``index`` is.
        generation: The generation this was opened from.
        build: Facts about how the index was built (recorded in the manifest).
        backend: The backend holding the vectors (instead of ``index`` and ``spec``).
    """

    def __init__(self, *, model: StaticModel | None, model_path: str | None, requested: dict[str, Any],
                 docstore: DocStore, path: Path | None, index: Any = None, spec: factories.IndexSpec | None = None,
                 generation: str | None = None, build: dict[str, Any] | None = None,
                 backend: Backend | None = None) -> None:
        if backend is None:
            if index is None or spec is None:
                raise ValueError("pass a backend, or a FAISS index and its spec")
            backend = backend_class(spec)(index, spec, docstore.tombstones())
        super().__init__(model, backend, docstore)
        self.model_path = model_path
        self.path = path
        self._requested = requested
        self._generation = generation
        self._found_empty: Path | None = None  # set by open(create=True): the directory held no index then
        self.build_info: dict[str, Any] = dict(build or {"complete": True})
        if generation is not None:
            self._mark_saved()

    # ------------------------------------------------------------------ construction
    @classmethod
    def create(cls, path: str | os.PathLike[str] | None = None, model: StaticModel | str | None = None, *,
               dim: int | None = None, index_kind: str = "auto", factory: str | None = None,
               memory_budget: int | None = None, model_path: str | None = None, index: str | None = None,
               lexical: bool | str = True, rescore: int | None = None) -> VectorIndex:
        """A new, empty index (in memory until :meth:`save`).

        Indexes that need training (IVF) collect vectors in an exact flat index and switch on save.

        Args:
            path: Where :meth:`save` writes by default.
            model: A StaticModel, a model name or folder, or None for the bundled default.
            dim: Without a model: an index of vectors computed elsewhere (any embedding model);
                every write and query then passes vectors, and the manifest records no model.
            index_kind: auto, flat, hnsw, ivf, ivf-pq, binary or binary-hnsw.
            factory: A FAISS factory string; overrides ``index_kind``.
            memory_budget: Bytes ``auto`` may use (default: half the physical memory).
            model_path: The source to record for an in-memory model.
            index: Deprecated alias of ``index_kind``.
            lexical: The lexical (BM25) part: True (English), a Snowball language name, or False (none).
            rescore: Binary kinds: candidates re-scored per query (default
                :data:`~m2v_search.index.factory.BINARY_RESCORE`, recall@10 >= 0.99); saved as the
                index's default.

        Returns:
            The empty index.

        Raises:
            ValueError: An unknown kind or language, a bad ``dim``, or a ``dim`` the model does not give.
        """
        docs = DocStore.in_memory(lexical_part.new_part(lexical))
        if index is not None:
            warnings.warn("VectorIndex.create(index=...) is deprecated; use index_kind=...", DeprecationWarning,
                          stacklevel=2)
            index_kind = index
        if factory is None and index_kind not in factories.KINDS:
            raise ValueError(f"unknown index kind {index_kind!r}; use one of {', '.join(factories.KINDS)}")
        memory_budget, model_path = _checked_create_arguments(dim, memory_budget, model_path)
        loaded: StaticModel | None
        if dim is not None and model is None:
            loaded, source, width = None, None, int(dim)
        else:
            loaded, source = load_model(model, model_path)
            width = int(loaded.dim)
            if dim is not None and int(dim) != width:
                raise ValueError(f"dim={dim} but model {loaded.name!r} gives {width}-dim vectors; "
                                 "leave dim out, or pass no model for vectors computed elsewhere")
        factories.check_rescore(rescore)
        requested = {"kind": "custom" if factory else index_kind, "factory": factory, "memory_budget": memory_budget,
                     "rescore": rescore}
        if factory:
            spec = factories.custom_spec(factory)
        elif index_kind == "auto":
            spec = factories.flat_spec()
        else:
            spec = factories.resolve(index_kind, 0, width, memory_budget)
        try:
            backend = create_backend(spec, width)
        except ValueError as error:
            raise ValueError(f"bad FAISS factory {factory!r}: {error}" if factory else str(error)) from None
        if not backend.is_trained:  # collect vectors exactly until there are enough to train
            backend = create_backend(factories.flat_spec(), width)
        return cls(model=loaded, model_path=source, backend=backend, requested=requested,
                   docstore=docs, path=None if path is None else Path(path))

    @classmethod
    def open(cls, path: str | os.PathLike[str], *, model: StaticModel | str | None = None, create: bool = False,
             allow_model_mismatch: bool = False, **create_kwargs: Any) -> VectorIndex:
        """Load an index directory; every checksum is verified before FAISS or SQLite reads a file.

        Args:
            path: The index directory, or an fsspec URL of one (``s3://bucket/idx``): its current
                generation is mirrored into a local cache folder and verified first
                (``m2v_search.index.remote.download_index``; saving then writes the mirror only).
            model: None reloads the model recorded in the manifest; a different model than the
                one the index was built with raises ModelMismatchError unless ``allow_model_mismatch``.
            create: Make a new index (with ``create_kwargs``) when ``path`` holds none.
            allow_model_mismatch: Accept a model other than the recorded one.
            **create_kwargs: Arguments of :meth:`create`, used with ``create=True``.

        Returns:
            The index.

        Raises:
            IndexNotFoundError: ``path`` holds no index (and ``create`` is False).
            IndexCorruptError: A file is missing, modified or unreadable.
            ModelMismatchError: The model differs from the one the index was built with.
        """
        if is_url(path):
            from m2v_search.index.remote import download_index

            path = download_index(os.fspath(path))
        directory = Path(local_path(path))  # file:///x is the folder /x
        if create and not (directory / MANIFEST_NAME).exists():
            created = cls.create(directory, model, **create_kwargs)
            created._found_empty = directory.resolve()  # a save finding an index there then is a conflict
            return created
        manifest, contents = read_verified_generation(directory)
        loaded, source = model_for_manifest(manifest, model, allow_model_mismatch, directory)
        info = manifest["index"]
        spec = factories.IndexSpec(info["kind"], info["factory"], dict(info.get("search_params") or {}))
        docs_name, index_name = manifest["docstore"]["file"], info["file"]
        docs = docstore_from_bytes(contents.pop(docs_name), directory / docs_name)
        try:
            backend = load_backend(contents.pop(index_name), spec, docs.tombstones())
        except (IndexCorruptError, ValueError) as error:  # unparseable bytes, or a kind no backend serves
            docs.close()
            raise IndexCorruptError(f"{directory / index_name}: {error}") from None
        _check_counts(directory, manifest, backend, docs)
        docs.lexical = lexical_part.from_manifest(manifest, contents, directory)  # None: saved without one
        requested = {"kind": info.get("requested", spec.kind), "factory": info.get("requested_factory"),
                     "memory_budget": info.get("memory_budget")}
        return cls(model=loaded, model_path=source, backend=backend, requested=requested, docstore=docs,
                   path=directory, generation=manifest.get("generation"), build=manifest.get("build"))

    # ------------------------------------------------------------------ basics
    @property
    def index_kind(self) -> str:
        """Kind of the index in use now (flat, hnsw, ivf, ivf-pq, binary, binary-hnsw or custom)."""
        return self._backend.spec.kind

    kind = index_kind

    @property
    def external_vectors(self) -> bool:
        """True for an index of vectors computed elsewhere (created with ``dim=`` and no model)."""
        return self.model is None

    @property
    def factory(self) -> str:
        """FAISS factory string of the index in use now."""
        return self._backend.spec.factory

    @property
    def search_params(self) -> dict[str, Any]:
        """Default search parameters of the index in use, with this object's overrides."""
        params = dict(self._backend.spec.params)
        if self.nprobe is not None:
            params["nprobe"] = self.nprobe
        if self.ef_search is not None:
            params["efSearch"] = self.ef_search
        if self.rescore is not None:
            params["rescore"] = self.rescore
        return params

    @property
    def faiss_index(self) -> Any:
        """The FAISS index object (read it, do not change it)."""
        return self._backend.index

    def __enter__(self) -> VectorIndex:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def __repr__(self) -> str:
        model = self.model.name if self.model is not None else None
        return (f"VectorIndex(path={str(self.path) if self.path else None!r}, documents={len(self)}, "
                f"dim={self.dim}, index={self.factory!r}, model={model!r})")

    # ------------------------------------------------------------------ locking
    def writer_lock(self, path: str | os.PathLike[str] | None = None) -> WriterLock:
        """The (process-wide, re-entrant) writer lock of ``path`` (default: this index's path).

        Hold it (``with index.writer_lock(): ...``) around a long series of writes to refuse other
        processes for the whole time; :meth:`save` takes it on its own otherwise.

        Args:
            path: An index directory (default: this index's path).

        Returns:
            The lock (a context manager).

        Raises:
            ValueError: This index has no path and none is given.
        """
        target = Path(path) if path is not None else self.path
        if target is None:
            raise ValueError("this index has no path yet; pass one")
        return WriterLock.for_directory(target)

    # ------------------------------------------------------------------ persistence
    def finalize(self) -> None:
        """Switch from the exact staging index to the requested one once there are enough vectors
        (IVF needs training; ``auto`` picks by size), and compact an index with many deletions.
        Called by :meth:`save`."""
        with self._lock:
            if self._count:
                self.build_info["index_choice"] = factories.choice_reason(self._requested, self._count, self.dim)
            target = conversion_target(self._backend, self._requested, self._count)
            if target is None:
                return
            converted = convert(self._backend, target, force=self._requested.get("factory") is not None)
            if converted is None:
                return  # too few vectors to train well: stay exact until the index grows
            self._backend = converted
            self._reranks = None
            if self._docs.count_tombstones():
                self._docs.clear_tombstones()
                self._docs.commit()

    def save(self, path: str | os.PathLike[str] | None = None, *, finalize: bool = True) -> None:
        """Write a new generation atomically (files first, then the manifest).

        Args:
            path: The index directory (None: :attr:`path`); it must exist.
            finalize: Convert to the requested index kind first (False: as it is, e.g. a checkpoint).

        Raises:
            ValueError: No path is given and the index has none.
            IndexClosedError: The index was closed.
            IndexLockedError: Another process is writing there.
            IndexConflictError: The index on disk changed since this one was opened from it.
            NotADirectoryError: The path is a file.
            OutputDirectoryError: The directory holds a ``manifest.json`` that is not an index's.
        """
        self._check_open()
        target = Path(path) if path is not None else self.path
        if target is None:
            raise ValueError("this index has no path: pass save(path)")
        if target.exists() and not target.is_dir():
            raise NotADirectoryError(f"cannot save the index to {target}: it is a file, not a directory")
        refuse_foreign_manifest(target)
        with self._lock, self.writer_lock(target):
            if finalize:
                self.finalize()
            same_place = self.path is not None and target.resolve() == self.path.resolve()
            on_disk = generation_on_disk(target)
            if same_place and self._generation is not None and on_disk != self._generation:
                raise IndexConflictError(f"{target} was changed by another writer since it was opened "
                                         f"(generation {self._generation} -> {on_disk}); open it again")
            if self._generation is None and on_disk is not None and self._found_empty == target.resolve():
                raise IndexConflictError(f"another writer created an index in {target} (generation {on_disk}) after "
                                         "this one was opened there with create=True; open it again")
            generation = commit_generation(
                target, self._backend.write, self._docs,
                lambda generation, index_name, docs_name: self._manifest(generation, index_name, docs_name, target),
                lambda generation: lexical_part.generation_contents(self._docs.lexical, generation, scores=finalize),
                index_suffix=index_file_suffix(self._backend.spec.kind))
            self.path = target
            self._generation = generation
            self._mark_saved()

    def _manifest(self, generation: str, index_name: str, docs_name: str, directory: Path) -> dict[str, Any]:
        counts = {"documents": self._count, "vectors": self._backend.ntotal, "deleted": self._docs.count_tombstones()}
        manifest = index_manifest(generation=generation, model=self.model, model_path=self.model_path, dim=self.dim,
                                  index_file=index_name, docstore_file=docs_name, spec=self._backend.spec,
                                  requested=self._requested, counts=counts, build=self.build_info, directory=directory)
        return lexical_part.add_to_manifest(manifest, self._docs.lexical, generation, file_entry, directory)

    def verify(self) -> list[str]:
        """Deep consistency check (beyond checksums): every document has one vector (and lexical entry).

        Returns:
            The problems found (empty: consistent).
        """
        with self._lock:
            return consistency_problems(self._docs, self._backend, self.embed if self._vectors_from_model() else None
                                        ) + self.lexical_problems()


def _checked_create_arguments(dim: Any, memory_budget: Any, model_path: Any) -> tuple[int | None, str | None]:
    """``create``'s arguments a save must be able to write (the memory budget as an int, the model
    path as a str), or ValueError / TypeError naming the argument."""
    if dim is not None and (isinstance(dim, bool) or not isinstance(dim, (int, np.integer)) or not 1 <= dim <= MAX_DIM):
        raise ValueError(f"dim must be an integer from 1 to {MAX_DIM}, got {dim!r}")
    if memory_budget is not None:
        if isinstance(memory_budget, bool) or not isinstance(memory_budget, (int, np.integer)) or memory_budget < 1:
            raise ValueError(f"memory_budget must be a positive number of bytes (an int) or None, got {memory_budget!r}")
        memory_budget = int(memory_budget)
    if model_path is not None:
        if not isinstance(model_path, (str, os.PathLike)):
            raise TypeError(f"model_path must be a str or a path, got {type(model_path).__name__}")
        model_path = os.fspath(model_path)
    return memory_budget, model_path


def _check_counts(directory: Path, manifest: dict[str, Any], backend: Backend, docs: DocStore) -> None:
    """Raise IndexCorruptError (closing ``docs``) when the backend and the docstore disagree."""
    import faiss

    problem = None
    live, dead = docs.count(), docs.count_tombstones()
    if backend.dim != manifest["dim"]:
        problem = f"the FAISS index has {backend.dim} dims, the manifest {manifest['dim']}"
    elif not backend.rescores_internally and getattr(backend.index, "metric_type", faiss.METRIC_INNER_PRODUCT) \
            != faiss.METRIC_INNER_PRODUCT:  # binary kinds rank by Hamming distance, then re-score by cosine
        problem = "the FAISS index does not use the inner-product metric (its scores would not be cosines)"
    elif backend.ntotal != live + dead:
        problem = f"the FAISS index holds {backend.ntotal} vectors but the docstore {live} documents (+{dead} deleted)"
    else:
        problem = _next_id_problem(docs)
    if problem is not None:
        docs.close()
        raise IndexCorruptError(f"{directory}: {problem}")


def _next_id_problem(docs: DocStore) -> str | None:
    """What is wrong with the docstore's next internal id (it must be past every id in use), or None."""
    recorded = docs.get_meta("next_iid")
    used = np.concatenate([docs.match_iids(None), docs.tombstones()])
    largest = int(used.max()) if len(used) else -1
    if recorded is None or not recorded.isdigit() or int(recorded) <= largest:
        return f"the docstore's next id {recorded!r} is not a number past its largest id {largest}"
    return None
